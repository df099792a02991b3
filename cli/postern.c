/*
 * postern.c - bin/postern: option parsing and subcommand dispatch; also
 * behaves as mailq and newaliases when called by those names.
 */
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "util/log.h"

static const char usage_text[] =
    "usage: postern [-c FILE] COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  run                      run in the foreground, log to stderr (Ctrl-C stops)\n"
    "  start | stop | reload    control the background daemon\n"
    "  status                   processes, queues, last errors; exit 0 when running\n"
    "  top [--once | -n N]      live view: sessions, rates, queues, deferred destinations\n"
    "  check                    validate the configuration and the files it names\n"
    "  queue list [--json]      list queued messages (also: mailq)\n"
    "  queue show ID [--json|--raw]\n"
    "  queue hold|release|delete|requeue ID...|ALL\n"
    "  queue flush              retry deferred mail now\n"
    "  queue shape [--json]     queued mail by destination domain and age (qshape)\n"
    "  rules check [FILE] | rules test FILE ...\n"
    "  config show [-n|-d] [KEY...]  effective settings (-n: set in files, -d: defaults)\n"
    "  spf IP SENDER [HELO]     SPF through the configured resolver\n"
    "  dkim keygen DOMAIN SELECTOR [--type rsa|ed25519]  new key, prints the DNS record\n"
    "  dkim verify [FILE]       one line per DKIM-Signature (stdin without FILE)\n"
    "  dkim sign DOMAIN [FILE]  the message signed with the domain's keys\n"
    "  log ID                   a message's (queue id) or session's whole life from the log\n"
    "  dmarc DOMAIN             the DMARC record, organizational domain and policy\n"
    "  version                  version, build options and library versions\n"
    "  newaliases               compile local.aliases into its index (file:line errors)\n"
    "\n"
    "The configuration is -c FILE, else $POSTERN_CONFIG, else PREFIX/etc/postern/postern.conf\n"
    "(postern version shows PREFIX).\n";

void cli_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("postern: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void cli_usage_hint(void)
{
    fputs("try 'postern help'\n", stderr);
}

static void print_error(const char *line, void *arg)
{
    fprintf(stderr, "%s\n", line);
}

struct config *cli_load_config(const char *path)
{
    struct config_errors errs = { 0 };
    struct config *cfg = config_load(path, &errs);
    if (cfg == NULL) {
        config_errors_each(&errs, print_error, NULL);
        if (errs.n == 0)
            cli_err("cannot load configuration %s", path);
    }
    config_errors_free(&errs);
    return cfg;
}

static int not_yet(const char *what)
{
    cli_err("%s: not implemented yet", what);
    return EX_FAIL;
}

int cli_rules(struct cli *c, int argc, char **argv);   /* cli_rules.c */

static const struct command {
    const char *name;
    int (*fn)(struct cli *c, int argc, char **argv);
} commands[] = {
    { "run", cli_run }, { "start", cli_start }, { "stop", cli_stop },
    { "reload", cli_reload }, { "status", cli_status }, { "check", cli_check },
    { "top", cli_top },
    { "queue", cli_queue }, { "rules", cli_rules }, { "version", cli_version },
    { "config", cli_config }, { "spf", cli_spf }, { "dkim", cli_dkim },
    { "log", cli_log },
    { "dmarc", cli_dmarc },
    { "newaliases", cli_newaliases },
};

int main(int argc, char **argv)
{
    const char *prog = basename(argv[0]);
    log_init("postern", 1, 0, LOG_L_WARN);
    struct cli c = { NULL };
    if (strcmp(prog, "newaliases") == 0 || strcmp(prog, "sendmail") == 0)
        return cli_sendmail(argc, argv);
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            c.config_path = argv[++i];
        } else if (strncmp(argv[i], "-c", 2) == 0 && argv[i][2]) {
            c.config_path = argv[i] + 2;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage_text, stdout);
            return 0;
        } else if (strcmp(prog, "mailq") == 0 && strcmp(argv[i], "--json") == 0) {
            break;
        } else {
            fprintf(stderr, "postern: unknown option %s\n%s", argv[i], usage_text);
            return EX_USAGE_;
        }
    }
    c.config_path = config_default_path(c.config_path);
    if (strcmp(prog, "mailq") == 0)
        return cli_mailq(&c, argc - i, argv + i);
    if (i >= argc) {
        fputs(usage_text, stderr);
        return EX_USAGE_;
    }
    const char *cmd = argv[i];
    if (strcmp(cmd, "help") == 0) {
        fputs(usage_text, stdout);
        return 0;
    }
    for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]); k++)
        if (strcmp(cmd, commands[k].name) == 0)
            return commands[k].fn(&c, argc - i, argv + i);
    if (strcmp(cmd, "sendmail") == 0) {
        setenv("POSTERN_CONFIG", c.config_path, 1);   /* -c FILE reaches sendmail */
        return cli_sendmail(argc - i, argv + i);
    }
    if (strcmp(cmd, "rules") == 0) {
        if (i + 1 < argc) {
            buf_t b;
            buf_init(&b, 32);
            buf_printf(&b, "%s %s", cmd, argv[i + 1]);
            int rc = not_yet(b.data);
            buf_free(&b);
            return rc;
        }
        return not_yet(cmd);
    }
    fprintf(stderr, "postern: unknown command \"%s\"\n%s", cmd, usage_text);
    return EX_USAGE_;
}
