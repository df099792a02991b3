/*
 * cli.h - bin/postern: the administrator's command (also run as mailq and
 * newaliases). postern.c dispatches; cli_ctl.c controls master
 * (run/start/stop/reload/status); cli_check.c validates the configuration;
 * cli_queue.c reads and changes the queue. Exit status: 0 ok, 1 failure
 * (message on stderr), 2 usage. The CLI never trusts a path from the user
 * inside the spool: queue ids are validated with queue_id_valid().
 */
#ifndef POSTERN_CLI_H
#define POSTERN_CLI_H

#include "config/config.h"

enum { EX_OK_ = 0, EX_FAIL = 1, EX_USAGE_ = 2 };

struct cli {
    const char *config_path;   /* resolved with config_default_path */
};

/* "postern: " + message on stderr. */
void cli_err(const char *fmt, ...) PRINTF_LIKE(1, 2);
/* A blocking resolver from the configuration's dns.* keys; NULL after
 * printing "dns: REASON" (cli_spf.c). */
struct dns_ctx;
struct dns_ctx *cli_dns_ctx(const struct config *cfg);
/* Load the configuration, printing every error; NULL on failure. */
struct config *cli_load_config(const char *path);
int cli_newaliases(struct cli *c, int argc, char **argv);   /* cli_aliases.c */
void cli_usage_hint(void);

/* Is master running? 1 = yes (*pid_r set), 0 = no (no or stale pid file),
 * -1 = cannot tell (message printed). */
int cli_master_running(const struct config *cfg, long *pid_r);

int cli_run(struct cli *c, int argc, char **argv);
int cli_start(struct cli *c, int argc, char **argv);
int cli_stop(struct cli *c, int argc, char **argv);
int cli_reload(struct cli *c, int argc, char **argv);
int cli_status(struct cli *c, int argc, char **argv);
int cli_top(struct cli *c, int argc, char **argv);        /* cli_top.c */
int cli_check(struct cli *c, int argc, char **argv);
int cli_queue(struct cli *c, int argc, char **argv);   /* argv[0] = "queue" */
int cli_mailq(struct cli *c, int argc, char **argv);   /* queue list */
/* `postern status`'s queue table: messages, bytes and the oldest arrival
 * per queue (cli_queue.c). */
void cli_queue_summary(const struct config *cfg);
int cli_version(struct cli *c, int argc, char **argv);  /* cli_info.c */
int cli_config(struct cli *c, int argc, char **argv);   /* config show */
int cli_spf(struct cli *c, int argc, char **argv);     /* cli_spf.c: argv[0] = "spf" */
int cli_log(struct cli *c, int argc, char **argv);     /* cli_log.c: argv[0] = "log" */
/* The CLI's own log lines (admin actions when qmgr is away) go where the
 * daemons' go: the log file, else syslog; detach returns to stderr. */
void cli_log_attach(const struct config *cfg);
void cli_log_detach(void);
int cli_dkim(struct cli *c, int argc, char **argv);    /* cli_dkim.c: argv[0] = "dkim" */
/* postern check's DKIM key checks: problems printed, their number returned. */
int cli_check_dkim(const char *path, const struct config *cfg);
/* cli_spf.c: the configuration and its resolver, or NULL (said on stderr) */
struct dns_ctx *cli_resolver(const char *config_path, struct config **cfg_r);
int cli_dmarc(struct cli *c, int argc, char **argv);   /* cli_dmarc.c: argv[0] = "dmarc" */
/* bin/sendmail (and newaliases): the whole command, argv[0] included
 * (sendmail.c); returns a sysexits code. */
int cli_sendmail(int argc, char **argv);
/* Compile cfg's local.aliases into its index (cli_aliases.c; newaliases,
 * sendmail -bi): 0, or -1 with every error printed. */
int cli_aliases_build(const struct config *cfg);
/* <bindir>/../libexec/NAME (build tree), else <bindir>/../libexec/postern/NAME;
 * 0, or -1 with a message printed. */
int cli_find_libexec(const char *name, char *out, size_t size);

/* Prints every diagnostic of a rules compilation to stderr as
 * file:line:col: message; returns how many (cli_check.c). */
struct rl_diag;
int cli_print_rule_diags(const struct rl_diag *d);

#endif
