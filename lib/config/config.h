/*
 * config.h - postern.conf: the parsed configuration every process reads.
 *
 * The file syntax (PRODUCT.md) is parsed by config.c with our own small
 * parser; every parameter is one typed row {name, type, default, min, max}
 * in config.c's table, so `postern check` knows every parameter and bound.
 * config_load() reports *every* problem (unknown key, wrong type, bad value,
 * syntax error) as "file:line:col: key: message" and returns NULL if any.
 * Relative paths in the file are resolved against the directory of the
 * file that contains them, so a config works from any working directory.
 */
#ifndef POSTERN_CONFIG_H
#define POSTERN_CONFIG_H

#include <stdint.h>
#include <sys/socket.h>
#include "util/buf.h"
#include "util/log.h"

enum tls_mode { TLSM_NONE = 0, TLSM_MAY, TLSM_REQUIRED, TLSM_IMPLICIT };
enum tls_level { TLSL_NONE = 0, TLSL_MAY, TLSL_ENCRYPT };
/* authentication.dmarc_failure: what cleanup does with a message failing
 * DMARC whose policy asks it (never on temperror) */
enum dmarc_failure { DMF_NONE = 0, DMF_QUARANTINE, DMF_REJECT };
/* delivery.tls and delivery.tls_policy: STARTTLS towards the next hop
 * (smtp agent). Ordered by strength. */
enum tls_policy { TLSP_NONE = 0, TLSP_MAY, TLSP_ENCRYPT, TLSP_DANE, TLSP_VERIFY };

/* One delivery.tls_policy { "DEST" = "LEVEL"; } entry: DEST is a domain
 * (".example.com": its subdomains), "[host]" or "[host]:port". */
struct tls_policy_entry {
    char *dest;
    enum tls_policy level;
};
enum mailbox_kind { MBOX_MAILDIR = 0, MBOX_MBOX, MBOX_DISCARD };

struct strlist { char **v; int n; };

/* An IPv4 or IPv6 network; IPv4 is stored as v4-mapped IPv6 (::ffff:a.b.c.d). */
struct cidr { unsigned char addr[16]; int prefix; /* 0..128, over the 16 bytes */ };
struct cidrlist { struct cidr *v; int n; };

struct listener {
    char *name;                 /* block label: smtp, submission, ... */
    struct strlist address;     /* "host:port", "[v6]:port" */
    enum tls_mode tls;          /* listen.X.tls: none|may|required|implicit (default may) */
    int auth_required;          /* listen.X.auth = "required" | "optional" | "none" */
    int auth_offered;           /* AUTH advertised on this listener */
};

/* One signing key of a domain: a `dkim { selector; key; }` block (the
 * block may come more than once per domain: every key signs, so a new
 * selector can be published and used before the old one is retired). */
struct dkim_key_conf {
    char *selector, *key;
};
#define CFG_DKIM_KEYS_MAX 8      /* dkim blocks per domain (PDK_MAX_KEYS) */

struct domain_conf {
    char *name;
    char *mailboxes;            /* template: "%d" domain, "%u" local part */
    char *users;
    char *dkim_selector, *dkim_key;   /* the first dkim block (also in dkim[0]) */
    struct dkim_key_conf *dkim; int ndkim;   /* every dkim block, in order */
    char *tls_certificate, *tls_key;
    long messages_per_hour;
};

/* transport "NAME" { ... } (config_transport.c): delivery choices the rules
 * name with transport("NAME") or lmtp("NAME"). */
enum transport_type { TR_LMTP = 1, TR_PIPE, TR_DISCARD, TR_SMTP };
struct transport_conf {
    char *name;
    enum transport_type type;
    char *address;              /* lmtp: "unix:/path" | "host:port" | "[host]:port" */
    char *nexthop;              /* smtp: "[host]:port" ("" or NULL = MX) */
    struct strlist command;     /* pipe: absolute path, then args with ${var} */
    char *user;                 /* pipe: runs as this user (never root) */
    int timeout;                /* pipe: seconds, 0 = delivery.command_timeout */
    char *file; int line, col;  /* the block, for `postern check` messages */
    int user_line, user_col, cmd_line, cmd_col;
};

struct config {
    char *path;                 /* the main file */
    unsigned char param_set[128];   /* per main-table row: set in a file (config show -n) */
    char *hostname;
    char *spool;                /* absolute */
    char *user;                 /* unprivileged user */
    char *group;                /* its group (default: user's primary group) */
    enum log_level log_level;
    int log_json;
    char *log_file;             /* log.file: absolute path, NULL = syslog/stderr */
    char *metrics_address;      /* "127.0.0.1:9153", NULL = no metrics endpoint */
    int metrics_allow_remote;   /* a non-loopback metrics.address is allowed */
    char *run_dir;              /* root-owned: pid file, smtpd's jail; default
                                   /run/postern (the spool when not root) */
    char *pid_file;             /* default <run_dir>/postern.pid */

    struct listener *listeners; int nlisteners;

    int64_t  message_size;      /* bytes */
    int      recipients;        /* per message */
    int      sessions;
    int      sessions_per_ip;
    int      idle_timeout;      /* seconds */
    int      command_timeout;   /* seconds */
    int      data_timeout;      /* seconds */
    int      max_errors;        /* errors per session before 421 */
    int      line_length;       /* limits.line_length: 0 = any length, else octets w/o CRLF */
    int      junk_commands;     /* limits.junk_commands: NOOP/HELP/VRFY/RSET before 421; 0 = no limit */

    enum tls_level tls_level;
    struct strlist tls_protocols;
    char    *tls_certificate, *tls_key;
    int      tls_handshake_timeout;

    char    *dns_unbound_config;
    int      dns_dnssec;
    int      dns_timeout;       /* seconds, one query */

    struct cidrlist mynetworks;
    char    *auth_users;
    int      auth_plaintext_without_tls;
    int      authentication_spf;    /* SPF at MAIL FROM (smtpd_spf.c), Received-SPF */
    int      authentication_dkim;   /* verify DKIM in cleanup (cleanup_auth.c) */
    char    *authserv_id;           /* authentication.authserv_id (default: hostname) */
    char    *dkim_keys;             /* authentication.dkim_keys: keygen's directory */
    int      authentication_dmarc;  /* DMARC at end of data (cleanup_dmarc.c) */
    enum dmarc_failure authentication_dmarc_failure;

    struct strlist local_domains;
    enum mailbox_kind local_mailbox;   /* local.mailbox: maildir | mbox | discard */
    char    *local_maildir;     /* template; "~" = user's home, %u local part, %d domain */
    char    *local_mbox;        /* template, default "/var/mail/%u" */
    char    *local_aliases;
    int      local_forward;     /* local.forward: honour ~/.forward */
    char    *local_default_user;   /* local.default_user: pipes/files of root's aliases */
    char    *local_vmail_user;  /* local.vmail_user: owner of template mailboxes ("" = user) */
    char    *local_users;       /* local.users: allowed local parts with a catch-all template */

    struct domain_conf *domains; int ndomains;
    struct transport_conf *transports; int ntransports;

    char    *relayhost;
    int      smtp_port;
    char    *source_address;     /* delivery.source_address: bind outbound SMTP, NULL = any */
    enum tls_policy delivery_tls;  /* delivery.tls: the default policy (may) */
    struct tls_policy_entry *tls_policies; int ntls_policies;  /* delivery.tls_policy map */
    char    *tls_ca_file;        /* delivery.tls_ca_file: CA for verify, NULL = system store */
    int      mta_sts;            /* delivery.mta_sts: honour RFC 8461 policies (smtp agent) */
    char    *relay_auth;         /* delivery.relay_auth: "host user password" lines, or NULL */
    int      smtp_connect_timeout;  /* delivery.connect_timeout: seconds */
    int      smtp_command_timeout;  /* delivery.command_timeout: seconds per reply */
    int      smtp_data_timeout;     /* delivery.data_timeout: seconds for the final "." */
    int     *retry; int nretry;  /* seconds */
    int      lifetime;           /* seconds */
    int      delay_warning;      /* seconds */
    int      concurrency;        /* delivery.concurrency: deliveries at once per destination */
    int      rate;               /* delivery.rate: messages per minute per destination, 0 = any */
    int      active_queue;       /* limits.active_queue: messages qmgr holds in memory */

    char    *rules;              /* rules file or NULL */
    int      rules_timeout;      /* limits.rules_timeout: seconds one stage's evaluation may
                                    take; then that stage answers 451 4.4.3 */

    int      smtpd_processes;    /* processes.smtpd  (default: number of cores) */
    int      cleanup_threads;    /* processes.cleanup_threads: fsync workers (default 8) */
    int      cleanup_max_ed25519;/* processes.cleanup_max_ed25519: Ed25519 signatures before
                                    cleanup is replaced (a libopendkim leak), 0 = never */
    int      delivery_processes; /* processes.delivery: local agents (default 4) */
};

/* One problem found while loading. */
struct config_error {
    char *file;
    int line, col;
    char *key;                  /* dotted key ("limits.message_size") or "" */
    char *msg;
};

struct config_errors {
    struct config_error *v;
    int n;
};

/* Load and validate; on any problem returns NULL and fills errs (all of them).
 * errs may be NULL (problems are then only logged). */
struct config *config_load(const char *path, struct config_errors *errs);
/* Same, from memory: name is used in messages and as the base for relative
 * paths and includes (the fuzz target and tests use it). */
struct config *config_load_buffer(const char *name, const char *data, size_t len,
                                  struct config_errors *errs);
void config_free(struct config *c);
void config_errors_free(struct config_errors *e);
/* "file:line:col: key: message" */
void config_error_format(buf_t *out, const struct config_error *e);
/* fn once per error, with it formatted as above: the one loop every
 * printer (CLI, master, daemons) goes through. */
typedef void config_error_fn(const char *line, void *arg);
void config_errors_each(const struct config_errors *e, config_error_fn *fn, void *arg);
/* log_error() each error after prefix. */
void config_errors_log(const struct config_errors *e, const char *prefix);

/* Parse helpers shared with other parsers (rules, CLI). 0 ok, -1 bad. */
int config_parse_size(const char *s, int64_t *r);        /* 50M, 1024, 2G, 10k */
int config_parse_duration(const char *s, int64_t *secs); /* 300s, 5m, 4h, 5d */
int cidr_parse(const char *s, struct cidr *r);           /* "10.0.0.0/8", "[::1]/128", "::1" */
/* A listen address "a.b.c.d:port" or "[v6]:port" (literals only) into a
 * sockaddr; ss and len_r may be NULL (validation only). */
int config_parse_address(const char *s, struct sockaddr_storage *ss, socklen_t *len_r);
/* Would listen addresses x and y take the same port: one family (v6
 * sockets are IPV6_V6ONLY), one port, the same address or either the
 * family's wildcard? 0 when either does not parse. */
int config_address_overlap(const char *x, const char *y);
/* Does a sockaddr (v4 or v6) fall in any of the networks? */
int cidr_match_sa(const struct cidrlist *l, const struct sockaddr *sa);
/* Is d (case-insensitive) one of the local domains or a domain block? */
int config_is_local_domain(const struct config *c, const char *d);
const struct domain_conf *config_domain(const struct config *c, const char *d);
/* delivery.tls_policy lookup of one key, as the smtp agent builds them (a
 * domain, "[host]:port", "[host]"): exact (case-insensitive, final dot
 * ignored), then for a domain the nearest ".parent" entry. 1 found, 0 not. */
int config_tls_policy_lookup(const struct config *c, const char *key, enum tls_policy *r);
/* "none", "may", "encrypt", "dane", "verify" */
const char *config_tls_policy_name(enum tls_policy p);
/* The transport block of that name, or NULL. */
const struct transport_conf *config_transport(const struct config *c, const char *name);
/* Is s a transport name (letters, digits, '_', '-', '.'), not a next hop? */
int config_is_transport_name(const char *s);
/* ${name}s a pipe command may use (NULL-terminated). */
extern const char *const config_pipe_vars[];
/* A next hop: "unix:/path" (allow_unix), "[host]:port", "host:port", "host"
 * (default_port; 0 = a port is required). 0, or -1 with msg saying why. */
struct nexthop {
    int is_unix;
    int bracketed;              /* "[host]": no MX lookup, an address or a name */
    char host[256];
    int port;
    char path[108];
};
int config_parse_nexthop(const char *s, int default_port, int allow_unix, struct nexthop *r,
                         buf_t *msg);
/* The config path to use: -c, else $POSTERN_CONFIG, else the compiled default
 * PREFIX/etc/postern/postern.conf (PREFIX from make, via gen/postern_prefix.h). */
const char *config_default_path(const char *opt_c);
/* `postern config show`: append "key = value;" lines to out for the main
 * table's parameters (mode 'n': only those set in the files; 'd': the
 * defaults; 0: every effective value), restricted to keys[0..nkeys) when
 * nkeys > 0. Returns how many keys were unknown (each reported in err). */
int config_show(const struct config *c, int mode, char *const *keys, int nkeys, buf_t *out,
                buf_t *err);
/* The installation prefix the programs were built for (make PREFIX=...). */
const char *config_prefix(void);

#endif
