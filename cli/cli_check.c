/*
 * cli_check.c - postern check: load the configuration (every syntax and
 * value error as file:line:col: key: message), then check what the file
 * points at: the user and group exist, the spool's parent directory exists,
 * TLS certificates and keys and the users file are readable, DKIM keys are
 * private, parse and match their DNS record (cli_check_dkim.c), the
 * rules file compiles, local.aliases parses (file:line:col) and its index
 * is not older than it, local.default_user and local.vmail_user exist and
 * are not root, pipe transports' users and commands exist. A missing
 * local.aliases file is not an error.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "rules/rules.h"
#include "local/aliases.h"

struct checker {
    const char *path;    /* config file, the prefix of every message */
    int problems;
    const char *as_user;   /* set while checking as the daemons' user */
};

static void problem(struct checker *k, const char *key, const char *fmt, ...) PRINTF_LIKE(3, 4);

static void problem(struct checker *k, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: %s: ", k->path, key);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    k->problems++;
}

static void problem_at(struct checker *k, const char *file, int line, int col, const char *key,
                       const char *fmt, ...) PRINTF_LIKE(6, 7);

/* A file the daemons must be able to read (checked as the invoking user). */
static void readable(struct checker *k, const char *key, const char *file)
{
    if (file == NULL || *file == '\0')
        return;
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        problem(k, key, "cannot read %s%s%s: %s", file, k->as_user ? " as user " : "",
                k->as_user ? k->as_user : "", strerror(errno));
        return;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && !S_ISREG(st.st_mode))
        problem(k, key, "%s is not a regular file", file);
    close(fd);
}

/* readable() for a file named in a domain block (key: domain "NAME".FIELD). */
static void domain_readable(struct checker *k, const struct domain_conf *d, const char *field,
                            const char *file)
{
    buf_t key;
    buf_init(&key, 64);
    buf_printf(&key, "domain \"%s\".%s", d->name, field);
    readable(k, key.data, file);
    buf_free(&key);
}

static void check_user(struct checker *k, const struct config *cfg)
{
    struct passwd *pw = getpwnam(cfg->user);
    if (pw == NULL)
        problem(k, "user", "user \"%s\" does not exist (create it with: useradd --system "
                "--no-create-home --shell /usr/sbin/nologin %s)", cfg->user, cfg->user);
    else if (pw->pw_uid == 0)
        problem(k, "user", "\"%s\" is root: the daemons must run unprivileged", cfg->user);
    if (cfg->group && *cfg->group && getgrnam(cfg->group) == NULL)
        problem(k, "group", "group \"%s\" does not exist", cfg->group);
}

/* One problem per line of aliases_check's errors. */
static void alias_problems(struct checker *k, const char *text)
{
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        int len = nl ? (int)(nl - p) : (int)strlen(p);
        problem(k, "local.aliases", "%.*s", len, p);
        p += len + (nl != NULL);
    }
}

static void check_local(struct checker *k, const struct config *cfg)
{
    const char *users[2][2] = { { "local.default_user", cfg->local_default_user },
                                { "local.vmail_user", cfg->local_vmail_user } };
    for (int i = 0; i < 2; i++) {
        if (users[i][1] == NULL || users[i][1][0] == '\0')
            continue;
        struct passwd *pw = getpwnam(users[i][1]);
        if (pw == NULL)
            problem(k, users[i][0], "user \"%s\" does not exist", users[i][1]);
        else if (pw->pw_uid == 0)
            problem(k, users[i][0], "\"%s\" is root: deliveries never run as root", users[i][1]);
    }
    const char *src = cfg->local_aliases;
    struct stat ss, si;
    if (src == NULL || src[0] == '\0' || stat(src, &ss) < 0)
        return;
    buf_t err, idx;
    buf_init(&err, 128);
    buf_init(&idx, 64);
    if (aliases_check(src, &err) < 0)
        alias_problems(k, err.data);
    aliases_db_path(src, &idx);
    if (stat(idx.data, &si) == 0 && (ss.st_mtim.tv_sec > si.st_mtim.tv_sec ||
        (ss.st_mtim.tv_sec == si.st_mtim.tv_sec && ss.st_mtim.tv_nsec > si.st_mtim.tv_nsec)))
        problem(k, "local.aliases", "index %s is older than %s: run newaliases", idx.data, src);
    buf_free(&err);
    buf_free(&idx);
}

static void check_spool(struct checker *k, const struct config *cfg)
{
    char *copy = xstrdup(cfg->spool);
    const char *parent = dirname(copy);
    struct stat st;
    if (stat(parent, &st) < 0)
        problem(k, "spool", "parent directory %s of the spool: %s", parent, strerror(errno));
    else if (!S_ISDIR(st.st_mode))
        problem(k, "spool", "%s (parent of the spool) is not a directory", parent);
    else if (lstat(cfg->spool, &st) == 0 && !S_ISDIR(st.st_mode))
        problem(k, "spool", "%s exists and is not a directory", cfg->spool);
    free(copy);
}

/* master creates log.file but not its directory; an existing file must be
 * a regular one (master refuses anything else at start). */
static void check_log_file(struct checker *k, const struct config *cfg)
{
    if (cfg->log_file == NULL || cfg->log_file[0] == '\0')
        return;
    char *copy = xstrdup(cfg->log_file);
    const char *parent = dirname(copy);
    struct stat st;
    if (stat(parent, &st) < 0 || !S_ISDIR(st.st_mode))
        problem(k, "log.file", "directory %s does not exist", parent);
    else if (lstat(cfg->log_file, &st) == 0 && (!S_ISREG(st.st_mode) || st.st_nlink != 1))
        problem(k, "log.file", "%s is not a regular file with one link", cfg->log_file);
    free(copy);
}

/* smtpd reads TLS certificates and keys and auth.users before it drops
 * root (keys are often root-only): checked as the invoking user. */
static void check_root_files(struct checker *k, const struct config *cfg)
{
    if ((cfg->tls_certificate && *cfg->tls_certificate) != (cfg->tls_key && *cfg->tls_key))
        problem(k, "tls", "certificate and key must be set together");
    readable(k, "tls.certificate", cfg->tls_certificate);
    readable(k, "tls.key", cfg->tls_key);
    readable(k, "auth.users", cfg->auth_users);
    for (int i = 0; i < cfg->ndomains; i++) {
        const struct domain_conf *d = &cfg->domains[i];
        domain_readable(k, d, "tls.certificate", d->tls_certificate);
        domain_readable(k, d, "tls.key", d->tls_key);
    }
}

int cli_print_rule_diags(const struct rl_diag *d)
{
    buf_t b;
    buf_init(&b, 128);
    for (int i = 0; i < d->n; i++) {
        buf_reset(&b);
        rl_diag_format(&b, &d->v[i]);
        fprintf(stderr, "%s\n", b.data);
    }
    buf_free(&b);
    return d->n;
}

struct tref_ctx { struct checker *k; const struct config *cfg; };

/* transport("X") / lmtp("X") in the rules: the config must have the block. */
static void check_tref(const char *name, int lmtp, const char *file, int line, int col,
                       void *arg)
{
    struct tref_ctx *x = arg;
    const struct transport_conf *t = config_transport(x->cfg, name);
    if (t == NULL)
        problem_at(x->k, file, line, col, lmtp ? "lmtp" : "transport",
                   "no transport \"%s\" { } block in %s", name, x->cfg->path);
    else if (lmtp && t->type != TR_LMTP)
        problem_at(x->k, file, line, col, "lmtp", "transport \"%s\" is not of type lmtp", name);
}

/* Compile the rules as filter will: every error as file:line:col: message. */
static void check_rules(struct checker *k, const struct config *cfg, const char *path)
{
    struct rl_diag d = { 0 };
    struct rl_program *p = rl_compile_file(path, &d);
    k->problems += cli_print_rule_diags(&d);
    if (p == NULL && d.n == 0)
        problem(k, "rules", "%s does not compile", path);
    struct tref_ctx x = { k, cfg };
    rl_program_transports(p, check_tref, &x);
    rl_program_free(p);
    rl_diag_free(&d);
}

static void check_files(struct checker *k, const struct config *cfg)
{
    check_log_file(k, cfg);
    if (cfg->dns_unbound_config && *cfg->dns_unbound_config)
        readable(k, "dns.unbound_config", cfg->dns_unbound_config);
    /* the smtp agent reads both as the user, at delivery / start-up */
    readable(k, "delivery.tls_ca_file", cfg->tls_ca_file);
    readable(k, "delivery.relay_auth", cfg->relay_auth);
    struct stat rst;
    if (cfg->relay_auth && stat(cfg->relay_auth, &rst) == 0 && (rst.st_mode & 007))
        problem(k, "delivery.relay_auth", "%s is readable by others (the smtp agent refuses it)",
                cfg->relay_auth);
    if (cfg->rules && *cfg->rules) {
        struct stat st;
        if (stat(cfg->rules, &st) < 0)
            problem(k, "rules", "%s: %s", cfg->rules, strerror(errno));
        else if (!S_ISREG(st.st_mode))
            problem(k, "rules", "%s is not a regular file", cfg->rules);
        else
            check_rules(k, cfg, cfg->rules);
    }
    for (int i = 0; i < cfg->ndomains; i++) {
        const struct domain_conf *d = &cfg->domains[i];
        domain_readable(k, d, "users", d->users);
    }
    readable(k, "local.users", cfg->local_users);
}

/* One problem at a place in the config (transport blocks keep theirs). */
static void problem_at(struct checker *k, const char *file, int line, int col, const char *key,
                       const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s:%d:%d: %s: ", file, line, col, key);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    k->problems++;
}

/* Pipe transports: the user exists and is not root, the command is an
 * executable file that user may run (the pipe agent's runners need both). */
static void check_transports(struct checker *k, const struct config *cfg)
{
    for (int i = 0; i < cfg->ntransports; i++) {
        const struct transport_conf *t = &cfg->transports[i];
        if (t->type != TR_PIPE)
            continue;
        char key[200];
        snprintf(key, sizeof(key), "transport.%s.user", t->name);
        struct passwd *pw = getpwnam(t->user);
        if (pw == NULL)
            problem_at(k, t->file, t->user_line, t->user_col, key, "user \"%s\" does not exist",
                       t->user);
        else if (pw->pw_uid == 0)
            problem_at(k, t->file, t->user_line, t->user_col, key,
                       "\"%s\" is root: pipe commands must run unprivileged", t->user);
        snprintf(key, sizeof(key), "transport.%s.command", t->name);
        struct stat st;
        const char *cmd = t->command.v[0];
        if (stat(cmd, &st) < 0) {
            problem_at(k, t->file, t->cmd_line, t->cmd_col, key, "%s: %s", cmd, strerror(errno));
            continue;
        }
        mode_t x = pw == NULL ? 0111 : st.st_uid == pw->pw_uid ? S_IXUSR :
                   st.st_gid == pw->pw_gid ? S_IXGRP : S_IXOTH;
        if (!S_ISREG(st.st_mode) || !(st.st_mode & x))
            problem_at(k, t->file, t->cmd_line, t->cmd_col, key,
                       "%s is not an executable file%s%s", cmd, pw ? " for user " : "",
                       pw ? t->user : "");
    }
}

/* The daemons read these files after dropping to the user: when we are
 * root, check them as that user (in a child, so we keep root here). */
static void check_files_as_user(struct checker *k, const struct config *cfg)
{
    struct passwd *pw = geteuid() == 0 ? getpwnam(cfg->user) : NULL;
    if (pw == NULL || pw->pw_uid == 0) {
        check_files(k, cfg);
        return;
    }
    gid_t gid = pw->pw_gid;
    struct group *gr = cfg->group && *cfg->group ? getgrnam(cfg->group) : NULL;
    if (gr)
        gid = gr->gr_gid;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        check_files(k, cfg);
        return;
    }
    if (pid == 0) {
        if (setgroups(1, &gid) < 0 || setresgid(gid, gid, gid) < 0 ||
            setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0) {
            fprintf(stderr, "%s: user: cannot switch to user %s: %s\n", k->path, cfg->user,
                    strerror(errno));
            _exit(1);
        }
        k->problems = 0;
        k->as_user = cfg->user;
        check_files(k, cfg);
        fflush(stderr);
        _exit(k->problems > 255 ? 255 : k->problems);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(status))
        k->problems += WEXITSTATUS(status);
    else
        k->problems++;
}

/* DMARC with neither SPF nor DKIM checked fails every message of a domain
 * that publishes a policy: with a failure action that would refuse or
 * quarantine all of them. */
static void check_dmarc(struct checker *k, const struct config *cfg)
{
    if (cfg->authentication_dmarc && cfg->authentication_dmarc_failure != DMF_NONE &&
        !cfg->authentication_spf && !cfg->authentication_dkim)
        problem(k, "authentication.dmarc_failure",
                "DMARC can only pass with authentication.spf or authentication.dkim on: "
                "every message of a domain with a policy would be refused or quarantined");
}

int cli_check(struct cli *c, int argc, char **argv)
{
    if (argc > 1) {
        fprintf(stderr, "postern: check takes no arguments\nusage: postern [-c FILE] check\n");
        return EX_USAGE_;
    }
    struct config *cfg = cli_load_config(c->config_path);
    if (cfg == NULL)
        return EX_FAIL;
    struct checker k = { c->config_path, 0, NULL };
    check_user(&k, cfg);
    check_spool(&k, cfg);
    check_local(&k, cfg);
    check_root_files(&k, cfg);
    check_transports(&k, cfg);
    check_files_as_user(&k, cfg);
    k.problems += cli_check_dkim(k.path, cfg);
    check_dmarc(&k, cfg);
    config_free(cfg);
    if (k.problems > 0) {
        fprintf(stderr, "%s: %d problem%s\n", c->config_path, k.problems,
                k.problems == 1 ? "" : "s");
        return EX_FAIL;
    }
    printf("%s: ok\n", c->config_path);
    return 0;
}
