/*
 * config.c - postern.conf: the parameter table, loading and validation.
 *
 * Used by every process (server_init) and by `postern check`. The syntax is
 * parsed by config_parse.c into a tree; this file walks the tree against
 * one table row per parameter {dotted name, type, offset, default, min,
 * max, enum values}, so defaults, bounds and messages live in one place.
 * Every problem is collected (never the first only); config_load() returns
 * NULL if there was any. It never touches the files the config names
 * (certificates, users...): `postern check` and the daemons do.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config_private.h"

enum ptype { P_STR, P_PATH, P_INT, P_LONG, P_SIZE, P_DUR, P_BOOL, P_ENUM,
             P_STRLIST, P_CIDRLIST, P_DURLIST };

#define F_REQUIRED 1            /* may not be empty */
#define F_TEMPLATE 2            /* path template: "~/..." is left alone */

struct enumval { const char *name; int v; };

/* An item check for strings and list elements: 0 ok, -1 with a message. */
typedef int (*item_check_fn)(const char *s, buf_t *msg);

struct param {
    const char *name;           /* dotted, relative to the table's block */
    enum ptype type;
    size_t off, off2;           /* off2: element count of P_DURLIST */
    const char *def;            /* default, in config syntax; lists comma-separated */
    int64_t min, max;           /* for numbers and each list element */
    const struct enumval *ev;   /* P_ENUM: NULL-terminated */
    unsigned flags;
    item_check_fn check;
};

_Static_assert(sizeof(enum log_level) == sizeof(int), "enum width");
_Static_assert(sizeof(enum tls_mode) == sizeof(int), "enum width");
_Static_assert(sizeof(enum tls_level) == sizeof(int), "enum width");
_Static_assert(sizeof(enum mailbox_kind) == sizeof(int), "enum width");

static const struct enumval ev_level[] = {
    { "debug", LOG_L_DEBUG }, { "info", LOG_L_INFO }, { "warning", LOG_L_WARN },
    { "warn", LOG_L_WARN }, { "error", LOG_L_ERROR }, { NULL, 0 } };
static const struct enumval ev_format[] = { { "text", 0 }, { "json", 1 }, { NULL, 0 } };
static const struct enumval ev_tls_level[] = {
    { "none", TLSL_NONE }, { "may", TLSL_MAY }, { "encrypt", TLSL_ENCRYPT }, { NULL, 0 } };
static const struct enumval ev_tls_mode[] = {
    { "none", TLSM_NONE }, { "may", TLSM_MAY }, { "required", TLSM_REQUIRED },
    { "implicit", TLSM_IMPLICIT }, { NULL, 0 } };
/* listen.X.auth is stored here as 0/1/2, then split into the two flags. */
enum { AUTH_NONE = 0, AUTH_OPTIONAL = 1, AUTH_REQUIRED = 2 };
static const struct enumval ev_auth[] = {
    { "none", AUTH_NONE }, { "optional", AUTH_OPTIONAL }, { "required", AUTH_REQUIRED },
    { NULL, 0 } };
static const struct enumval ev_mailbox[] = {
    { "maildir", MBOX_MAILDIR }, { "mbox", MBOX_MBOX }, { "discard", MBOX_DISCARD },
    { NULL, 0 } };

static int check_hostname(const char *s, buf_t *msg);
static int check_protocol(const char *s, buf_t *msg);
static int check_address(const char *s, buf_t *msg);
static int check_relayhost(const char *s, buf_t *msg);
static int check_identifier(const char *s, buf_t *msg);

#define DAY 86400LL
#define C(f) offsetof(struct config, f)
static const struct param params[] = {
    { "hostname", P_STR, C(hostname), 0, NULL, 0, 0, NULL, F_REQUIRED, check_hostname },
    { "spool", P_PATH, C(spool), 0, "/var/spool/postern", 0, 0, NULL, F_REQUIRED, NULL },
    { "user", P_STR, C(user), 0, "postern", 0, 0, NULL, F_REQUIRED, check_identifier },
    { "group", P_STR, C(group), 0, NULL, 0, 0, NULL, 0, check_identifier },
    { "pid_file", P_PATH, C(pid_file), 0, NULL, 0, 0, NULL, 0, NULL },
    { "run_dir", P_PATH, C(run_dir), 0, NULL, 0, 0, NULL, 0, NULL },
    { "log.level", P_ENUM, C(log_level), 0, "info", 0, 0, ev_level, 0, NULL },
    { "log.format", P_ENUM, C(log_json), 0, "text", 0, 0, ev_format, 0, NULL },
    { "limits.message_size", P_SIZE, C(message_size), 0, "50M", 1024, 1LL << 40, NULL, 0, NULL },
    { "limits.recipients", P_INT, C(recipients), 0, "1000", 1, 1000000, NULL, 0, NULL },
    { "limits.sessions", P_INT, C(sessions), 0, "10000", 1, 10000000, NULL, 0, NULL },
    { "limits.sessions_per_ip", P_INT, C(sessions_per_ip), 0, "50", 1, 10000000, NULL, 0, NULL },
    { "limits.idle_timeout", P_DUR, C(idle_timeout), 0, "300s", 1, DAY, NULL, 0, NULL },
    { "limits.command_timeout", P_DUR, C(command_timeout), 0, "300s", 1, DAY, NULL, 0, NULL },
    { "limits.data_timeout", P_DUR, C(data_timeout), 0, "600s", 1, DAY, NULL, 0, NULL },
    { "limits.max_errors", P_INT, C(max_errors), 0, "20", 1, 100000, NULL, 0, NULL },
    { "limits.line_length", P_INT, C(line_length), 0, "0", 0, 1000000000, NULL, 0, NULL },
    { "limits.junk_commands", P_INT, C(junk_commands), 0, "100", 0, 1000000, NULL, 0, NULL },
    { "tls.level", P_ENUM, C(tls_level), 0, "may", 0, 0, ev_tls_level, 0, NULL },
    { "tls.protocols", P_STRLIST, C(tls_protocols), 0, "TLSv1.2,TLSv1.3", 0, 0, NULL, F_REQUIRED,
      check_protocol },
    { "tls.certificate", P_PATH, C(tls_certificate), 0, NULL, 0, 0, NULL, 0, NULL },
    { "tls.key", P_PATH, C(tls_key), 0, NULL, 0, 0, NULL, 0, NULL },
    { "tls.handshake_timeout", P_DUR, C(tls_handshake_timeout), 0, "10s", 1, 3600, NULL, 0, NULL },
    { "dns.unbound_config", P_PATH, C(dns_unbound_config), 0, NULL, 0, 0, NULL, 0, NULL },
    { "dns.dnssec", P_BOOL, C(dns_dnssec), 0, "true", 0, 0, NULL, 0, NULL },
    { "mynetworks", P_CIDRLIST, C(mynetworks), 0, "127.0.0.0/8,[::1]/128", 0, 0, NULL, 0, NULL },
    { "auth.users", P_PATH, C(auth_users), 0, NULL, 0, 0, NULL, 0, NULL },
    { "auth.plaintext_without_tls", P_BOOL, C(auth_plaintext_without_tls), 0, "false", 0, 0,
      NULL, 0, NULL },
    { "local_domains", P_STRLIST, C(local_domains), 0, "", 0, 0, NULL, 0, check_hostname },
    { "local.mailbox", P_ENUM, C(local_mailbox), 0, "maildir", 0, 0, ev_mailbox, 0, NULL },
    { "local.maildir", P_PATH, C(local_maildir), 0, "~/Maildir", 0, 0, NULL,
      F_REQUIRED | F_TEMPLATE, NULL },
    { "local.mbox", P_PATH, C(local_mbox), 0, "/var/mail/%u", 0, 0, NULL,
      F_REQUIRED | F_TEMPLATE, NULL },
    { "local.aliases", P_PATH, C(local_aliases), 0, "/etc/aliases", 0, 0, NULL, 0, NULL },
    { "delivery.relayhost", P_STR, C(relayhost), 0, NULL, 0, 0, NULL, 0, check_relayhost },
    { "delivery.smtp_port", P_INT, C(smtp_port), 0, "25", 1, 65535, NULL, 0, NULL },
    { "delivery.retry", P_DURLIST, C(retry), C(nretry), "5m,15m,30m,1h,2h,4h", 1, 30 * DAY,
      NULL, F_REQUIRED, NULL },
    { "delivery.lifetime", P_DUR, C(lifetime), 0, "5d", 60, 365 * DAY, NULL, 0, NULL },
    { "delivery.delay_warning", P_DUR, C(delay_warning), 0, "4h", 0, 365 * DAY, NULL, 0, NULL },
    { "rules", P_PATH, C(rules), 0, NULL, 0, 0, NULL, 0, NULL },
    /* wall-clock limit of one stage's evaluation; at most 100s (RL_SVC_TIMEOUT_MAX,
     * below smtpd's 120 s wait for filter) */
    { "limits.rules_timeout", P_DUR, C(rules_timeout), 0, "30s", 1, 100, NULL, 0, NULL },
    { "processes.smtpd", P_INT, C(smtpd_processes), 0, NULL, 1, 1024, NULL, 0, NULL },
    { "processes.cleanup_threads", P_INT, C(cleanup_threads), 0, "8", 1, 256, NULL, 0, NULL },
    { "processes.delivery", P_INT, C(delivery_processes), 0, "4", 1, 1024, NULL, 0, NULL },
};
#undef C
#define NPARAMS ((int)(sizeof(params) / sizeof(params[0])))

#define L(f) offsetof(struct listener, f)
static const struct param listener_params[] = {
    { "address", P_STRLIST, L(address), 0, "", 0, 0, NULL, F_REQUIRED, check_address },
    { "tls", P_ENUM, L(tls), 0, "may", 0, 0, ev_tls_mode, 0, NULL },
    { "auth", P_ENUM, L(auth_required), 0, "optional", 0, 0, ev_auth, 0, NULL },
};
#undef L
#define NLISTENER ((int)(sizeof(listener_params) / sizeof(listener_params[0])))

#define D(f) offsetof(struct domain_conf, f)
static const struct param domain_params[] = {
    { "mailboxes", P_PATH, D(mailboxes), 0, NULL, 0, 0, NULL, F_TEMPLATE, NULL },
    { "users", P_PATH, D(users), 0, NULL, 0, 0, NULL, 0, NULL },
    { "dkim.selector", P_STR, D(dkim_selector), 0, NULL, 0, 0, NULL, 0, check_identifier },
    { "dkim.key", P_PATH, D(dkim_key), 0, NULL, 0, 0, NULL, 0, NULL },
    { "tls.certificate", P_PATH, D(tls_certificate), 0, NULL, 0, 0, NULL, 0, NULL },
    { "tls.key", P_PATH, D(tls_key), 0, NULL, 0, 0, NULL, 0, NULL },
    { "limits.messages_per_hour", P_LONG, D(messages_per_hour), 0, "0", 0, 1000000000, NULL, 0,
      NULL },
};
#undef D
#define NDOMAIN ((int)(sizeof(domain_params) / sizeof(domain_params[0])))
#define NSEEN_MAX NPARAMS

struct table {
    const struct param *p;
    int n;
    const char *prefix;          /* error-key prefix: "", "listen.smtp", "domain.x" */
    const char *const *extra;    /* extra keys valid at the top of this table */
};

struct loadctx {
    struct config *c;
    struct config_errors *errs;
    const struct cnode *seen[NSEEN_MAX];   /* main table: where each was set */
    int listen_seen;
};

/* ---- item checks ----------------------------------------------------- */

static int check_hostname(const char *s, buf_t *msg)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253)
        goto bad;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '-' && c != '.' && c != '_')
            goto bad;
    }
    return 0;
bad:
    buf_append_str(msg, "expected a domain name like mx.example.com, got \"");
    buf_append_printable(msg, s, n > 80 ? 80 : n);
    buf_append_char(msg, '"');
    return -1;
}

static int check_identifier(const char *s, buf_t *msg)
{
    size_t n = strlen(s);
    int ok = n > 0 && n <= 64;
    for (size_t i = 0; ok && i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        ok = isalnum(c) || c == '_' || c == '-' || c == '.';
    }
    if (ok)
        return 0;
    buf_append_str(msg, "expected a name of letters, digits, '_', '-' and '.', got \"");
    buf_append_printable(msg, s, n > 80 ? 80 : n);
    buf_append_char(msg, '"');
    return -1;
}

static int check_protocol(const char *s, buf_t *msg)
{
    static const char *ok[] = { "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3" };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (strcmp(s, ok[i]) == 0)
            return 0;
    buf_append_str(msg, "expected one of \"TLSv1\", \"TLSv1.1\", \"TLSv1.2\", \"TLSv1.3\", got \"");
    buf_append_printable(msg, s, strlen(s) > 80 ? 80 : strlen(s));
    buf_append_char(msg, '"');
    return -1;
}

static int check_address(const char *s, buf_t *msg)
{
    if (config_parse_address(s, NULL, NULL) == 0)
        return 0;
    buf_append_str(msg, "expected an address like 0.0.0.0:25 or [::]:25, got \"");
    buf_append_printable(msg, s, strlen(s) > 80 ? 80 : strlen(s));
    buf_append_char(msg, '"');
    return -1;
}

/* "[host]:port", "host:port", "host" or "[host]". */
static int check_relayhost(const char *s, buf_t *msg)
{
    const char *port = NULL;
    char host[256];
    size_t hl;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || (close[1] != '\0' && close[1] != ':'))
            goto bad;
        hl = (size_t)(close - s - 1);
        memcpy(host, s + 1, hl < sizeof(host) ? hl : 0);
        port = close[1] == ':' ? close + 2 : NULL;
    } else {
        const char *colon = strchr(s, ':');
        hl = colon ? (size_t)(colon - s) : strlen(s);
        if (hl < sizeof(host))
            memcpy(host, s, hl);
        port = colon ? colon + 1 : NULL;
    }
    if (hl == 0 || hl >= sizeof(host))
        goto bad;
    host[hl] = '\0';
    buf_t ignore;
    buf_init(&ignore, 16);
    int hbad = check_hostname(host, &ignore) < 0 && strchr(host, ':') == NULL;
    buf_free(&ignore);
    if (hbad)
        goto bad;
    if (port) {
        char *end;
        long p = strtol(port, &end, 10);
        if (!isdigit((unsigned char)*port) || *end != '\0' || p < 1 || p > 65535)
            goto bad;
    }
    return 0;
bad:
    buf_append_str(msg, "expected a relay like [smtp.example.com]:587, got \"");
    buf_append_printable(msg, s, strlen(s) > 80 ? 80 : strlen(s));
    buf_append_char(msg, '"');
    return -1;
}

/* ---- typed values ----------------------------------------------------- */

static void *field(void *base, size_t off) { return (char *)base + off; }

static const char *type_expect(const struct param *p)
{
    switch (p->type) {
    case P_STR: return "a string";
    case P_PATH: return "a path";
    case P_INT: case P_LONG: return "an integer";
    case P_SIZE: return "a size like 50M";
    case P_DUR: return "a duration like 300s or 5m";
    case P_DURLIST: return "a list of durations like [5m, 1h]";
    case P_BOOL: return "true or false";
    case P_ENUM: return "one of";
    case P_STRLIST: return "a list of strings";
    case P_CIDRLIST: return "a list of networks like [\"10.0.0.0/8\"]";
    }
    return "?";
}

static void describe_num(buf_t *b, enum ptype t, int64_t v)
{
    if (t == P_SIZE) {
        static const char suf[] = "kMGT";
        int i = -1;
        while (i < 3 && v != 0 && v % 1024 == 0) {
            v /= 1024;
            i++;
        }
        buf_printf(b, "%lld", (long long)v);
        if (i >= 0)
            buf_append_char(b, suf[i]);
    } else if (t == P_DUR || t == P_DURLIST) {
        buf_printf(b, "%llds", (long long)v);
    } else {
        buf_printf(b, "%lld", (long long)v);
    }
}

static void got_text(buf_t *msg, const char *s)
{
    size_t n = strlen(s);
    buf_append_str(msg, ", got \"");
    buf_append_printable(msg, s, n > 80 ? 80 : n);
    buf_append_char(msg, '"');
}

/* One scalar (or one list element, with et the element type) from text.
 * Numbers come back in *num, strings in *str (malloc'd), networks in *net. */
static int parse_scalar(const struct param *p, enum ptype et, const char *s, const char *dir,
                        int64_t *num, char **str, struct cidr *net, buf_t *msg)
{
    switch (et) {
    case P_STR: case P_PATH: case P_STRLIST:
        if (et == P_STRLIST && *s == '\0') {
            buf_append_str(msg, "empty string in list");
            return -1;
        }
        if (p->check && *s && p->check(s, msg) < 0)
            return -1;
        if (et == P_PATH && *s && !((p->flags & F_TEMPLATE) && s[0] == '~'))
            *str = cfg_path_resolve(dir, s);
        else
            *str = xstrdup(s);
        return 0;
    case P_CIDRLIST:
        if (cidr_parse(s, net) == 0)
            return 0;
        buf_append_str(msg, "expected a network like 10.0.0.0/8 or [::1]/128");
        got_text(msg, s);
        return -1;
    case P_BOOL:
        if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0) {
            *num = s[0] == 't';
            return 0;
        }
        buf_append_str(msg, "expected true or false");
        got_text(msg, s);
        return -1;
    case P_ENUM:
        for (const struct enumval *e = p->ev; e->name; e++) {
            if (strcmp(s, e->name) == 0) {
                *num = e->v;
                return 0;
            }
        }
        buf_append_str(msg, "expected one of ");
        for (const struct enumval *e = p->ev; e->name; e++)
            buf_printf(msg, "%s\"%s\"", e == p->ev ? "" : ", ", e->name);
        got_text(msg, s);
        return -1;
    default:
        break;
    }
    /* numbers */
    int r;
    if (et == P_SIZE) {
        r = config_parse_size(s, num);
    } else if (et == P_DUR || et == P_DURLIST) {
        r = config_parse_duration(s, num);
    } else {
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        r = (*s == '\0' || *end != '\0' || errno == ERANGE) ? -1 : 0;
        *num = v;
    }
    if (r < 0) {
        buf_printf(msg, "expected %s", et == P_DURLIST ? "a duration like 300s or 5m"
                                                       : type_expect(p));
        got_text(msg, s);
        return -1;
    }
    if (*num < p->min || *num > p->max) {
        buf_printf(msg, "\"%.40s\" is out of range (", s);
        describe_num(msg, et, p->min);
        buf_append_str(msg, "..");
        describe_num(msg, et, p->max);
        buf_append_char(msg, ')');
        return -1;
    }
    return 0;
}

static void free_strlist(struct strlist *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* Store one scalar value into its field. */
static void store_scalar(const struct param *p, void *base, int64_t num, char *str)
{
    void *f = field(base, p->off);
    switch (p->type) {
    case P_STR: case P_PATH:
        free(*(char **)f);
        if (str && *str == '\0') {
            free(str);
            str = NULL;
        }
        *(char **)f = str;
        break;
    case P_INT: case P_DUR: case P_BOOL: case P_ENUM:
        *(int *)f = (int)num;
        break;
    case P_LONG:
        *(long *)f = (long)num;
        break;
    case P_SIZE:
        *(int64_t *)f = num;
        break;
    default:
        break;
    }
}

struct item { const char *text; const char *file; const char *dir; int line, col; };

static void report(struct loadctx *lc, const char *file, int line, int col, const char *key,
                   buf_t *msg)
{
    cfg_error_add(lc->errs, file, line, col, key, "%s", msg->data);
}

/* Store a list from items (already positioned). Elements failing are reported. */
static void store_list(struct loadctx *lc, const struct param *p, void *base,
                       const struct item *it, int n, const char *key)
{
    void *f = field(base, p->off);
    struct strlist sl = { 0 };
    struct cidrlist cl = { 0 };
    int *durs = NULL, nd = 0;
    buf_t msg;
    buf_init(&msg, 64);
    if (n > 0) {
        sl.v = p->type == P_STRLIST ? xcalloc((size_t)n, sizeof(char *)) : NULL;
        cl.v = p->type == P_CIDRLIST ? xcalloc((size_t)n, sizeof(struct cidr)) : NULL;
        durs = p->type == P_DURLIST ? xcalloc((size_t)n, sizeof(int)) : NULL;
    }
    for (int i = 0; i < n; i++) {
        int64_t num = 0;
        char *str = NULL;
        struct cidr net;
        buf_reset(&msg);
        if (parse_scalar(p, p->type, it[i].text, it[i].dir, &num, &str, &net, &msg) < 0) {
            report(lc, it[i].file, it[i].line, it[i].col, key, &msg);
            continue;
        }
        if (p->type == P_STRLIST)
            sl.v[sl.n++] = str;
        else if (p->type == P_CIDRLIST)
            cl.v[cl.n++] = net;
        else
            durs[nd++] = (int)num;
    }
    if (p->type == P_STRLIST) {
        free_strlist(f);
        *(struct strlist *)f = sl;
    } else if (p->type == P_CIDRLIST) {
        free(((struct cidrlist *)f)->v);
        *(struct cidrlist *)f = cl;
    } else {
        free(*(int **)f);
        *(int **)f = durs;
        *(int *)field(base, p->off2) = nd;
    }
    buf_free(&msg);
}

static int is_list_type(enum ptype t)
{
    return t == P_STRLIST || t == P_CIDRLIST || t == P_DURLIST;
}

/* Apply a parsed value node to parameter p of base. */
static void apply_value(struct loadctx *lc, const struct param *p, void *base,
                        const struct cnode *v, const char *key)
{
    buf_t msg;
    buf_init(&msg, 64);
    if (v->kind == CN_BLOCK || (v->kind == CN_LIST && !is_list_type(p->type))) {
        buf_printf(&msg, "expected %s", type_expect(p));
        if (p->type == P_ENUM) {
            for (const struct enumval *e = p->ev; e->name; e++)
                buf_printf(&msg, "%s\"%s\"", e == p->ev ? " " : ", ", e->name);
        }
        buf_printf(&msg, ", got a %s", v->kind == CN_BLOCK ? "block" : "list");
        report(lc, v->file, v->line, v->col, key, &msg);
    } else if (is_list_type(p->type)) {
        /* a single value stands for a one-element list */
        int n = v->kind == CN_LIST ? v->nkids : 1;
        struct item *it = xcalloc((size_t)(n ? n : 1), sizeof(*it));
        for (int i = 0; i < n; i++) {
            const struct cnode *x = v->kind == CN_LIST ? v->kids[i] : v;
            it[i] = (struct item){ x->text, x->file, x->dir, x->line, x->col };
        }
        int before = lc->errs->n;
        store_list(lc, p, base, it, n, key);
        if (n == 0 && (p->flags & F_REQUIRED) && lc->errs->n == before)
            cfg_error_add(lc->errs, v->file, v->line, v->col, key, "must not be empty");
        free(it);
    } else {
        int64_t num = 0;
        char *str = NULL;
        struct cidr net;
        if (parse_scalar(p, p->type, v->text, v->dir, &num, &str, &net, &msg) < 0)
            report(lc, v->file, v->line, v->col, key, &msg);
        else if ((p->flags & F_REQUIRED) && str && *str == '\0') {
            cfg_error_add(lc->errs, v->file, v->line, v->col, key, "must not be empty");
            free(str);
        } else
            store_scalar(p, base, num, str);
    }
    buf_free(&msg);
}

/* Fill base with the table's defaults (which are known to be valid). */
static void apply_defaults(const struct param *tab, int n, void *base)
{
    struct config_errors errs = { 0 };
    struct loadctx lc = { .errs = &errs };
    for (int i = 0; i < n; i++) {
        const struct param *p = &tab[i];
        if (p->def == NULL)
            continue;
        if (is_list_type(p->type)) {
            struct item it[16];
            char tmp[256];
            int k = 0;
            str_copy(tmp, sizeof(tmp), p->def);
            for (char *sv, *t = strtok_r(tmp, ",", &sv); t && k < 16; t = strtok_r(NULL, ",", &sv))
                it[k++] = (struct item){ t, "default", "/", 0, 0 };
            store_list(&lc, p, base, it, k, p->name);
        } else {
            struct cnode v = { .kind = CN_VALUE, .text = (char *)p->def, .file = "default",
                               .dir = "/" };
            apply_value(&lc, p, base, &v, p->name);
        }
    }
    if (errs.n)
        log_panic("config: bad default for %s: %s", errs.v[0].key, errs.v[0].msg);
}

/* ---- walking the tree -------------------------------------------------- */

static void join(char *out, size_t size, const char *a, const char *b)
{
    if (a && *a)
        snprintf(out, size, "%s.%s", a, b);
    else
        snprintf(out, size, "%s", b);
}

static int find_param(const struct table *t, const char *name)
{
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->p[i].name, name) == 0)
            return i;
    return -1;
}

/* Is name a block inside the table ("limits" for "limits.x")? */
static int is_block(const struct table *t, const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; i < t->n; i++)
        if (strncmp(t->p[i].name, name, n) == 0 && t->p[i].name[n] == '.')
            return 1;
    return 0;
}

/* "unknown key" with the nearest valid key at the same level, or the full
 * dotted name when the key belongs in a block ("message_size"). */
static void unknown_key(struct loadctx *lc, const struct table *t, const char *level,
                        const struct cnode *e, const char *ekey)
{
    const char *best = NULL;
    char bestbuf[128] = "";
    int bestd = 3;
    size_t ll = strlen(level), kl = strlen(e->key);
    int cap = kl >= 5 ? 2 : 1;
    int next = 0;
    for (int i = 0; i < t->n || (!*level && t->extra && t->extra[next]); i++) {
        char cand[128];
        if (i < t->n) {
            const char *nm = t->p[i].name;
            if (ll && (strncmp(nm, level, ll) != 0 || nm[ll] != '.'))
                continue;
            const char *rest = nm + (ll ? ll + 1 : 0);
            size_t cl = strcspn(rest, ".");
            snprintf(cand, sizeof(cand), "%.*s", (int)cl, rest);
        } else {
            snprintf(cand, sizeof(cand), "%s", t->extra[next++]);
        }
        int d = cfg_edit_distance(e->key, cand, cap);
        if (d <= cap && d < bestd) {
            bestd = d;
            str_copy(bestbuf, sizeof(bestbuf), cand);
            best = bestbuf;
        }
    }
    if (best == NULL) {
        for (int i = 0; i < t->n; i++) {
            const char *dot = strrchr(t->p[i].name, '.');
            if (dot && strcmp(dot + 1, e->key) == 0) {
                snprintf(bestbuf, sizeof(bestbuf), "%s", t->p[i].name);
                if (*t->prefix)
                    snprintf(bestbuf, sizeof(bestbuf), "%s.%s", t->prefix, t->p[i].name);
                best = bestbuf;
                break;
            }
        }
    }
    if (best)
        cfg_error_add(lc->errs, e->file, e->kline, e->kcol, ekey,
                      "unknown key \"%s\" (did you mean \"%s\"?)", e->key, best);
    else
        cfg_error_add(lc->errs, e->file, e->kline, e->kcol, ekey, "unknown key \"%s\"", e->key);
}

static void duplicate(struct loadctx *lc, const struct cnode *e, const struct cnode *first,
                      const char *ekey)
{
    if (strcmp(e->file, first->file) == 0)
        cfg_error_add(lc->errs, e->file, e->kline, e->kcol, ekey,
                      "duplicate key (already set at line %d, column %d)", first->kline,
                      first->kcol);
    else
        cfg_error_add(lc->errs, e->file, e->kline, e->kcol, ekey,
                      "duplicate key (already set at %s:%d:%d)", first->file, first->kline,
                      first->kcol);
}

static void apply_listen(struct loadctx *lc, const struct cnode *blk);
static void apply_domain(struct loadctx *lc, const struct cnode *e);

/* Walk one block of a table; level is the table-relative dotted prefix. */
static void apply_block(struct loadctx *lc, const struct table *t, void *base,
                        const struct cnode **seen, const struct cnode *blk, const char *level)
{
    for (int i = 0; i < blk->nkids; i++) {
        const struct cnode *e = blk->kids[i];
        char name[256], ekey[512];
        join(name, sizeof(name), level, e->key);
        join(ekey, sizeof(ekey), t->prefix, name);
        if (t->p == params && !*level && strcmp(e->key, "domain") == 0) {
            apply_domain(lc, e);
            continue;
        }
        if (e->label) {
            cfg_error_add(lc->errs, e->file, e->kline, e->kcol, ekey,
                          "unexpected label \"%.60s\" (only domain blocks take one)", e->label);
            continue;
        }
        if (t->p == params && !*level && strcmp(e->key, "listen") == 0) {
            if (e->kind != CN_BLOCK)
                cfg_error_add(lc->errs, e->file, e->line, e->col, ekey,
                              "expected a block: listen { smtp { address = [...]; } }");
            else
                apply_listen(lc, e);
            continue;
        }
        int r = find_param(t, name);
        if (r >= 0) {
            if (seen[r])
                duplicate(lc, e, seen[r], ekey);
            else {
                seen[r] = e;
                apply_value(lc, &t->p[r], base, e, ekey);
            }
        } else if (is_block(t, name)) {
            if (e->kind != CN_BLOCK)
                cfg_error_add(lc->errs, e->file, e->line, e->col, ekey,
                              "expected a block { ... }, got a %s",
                              e->kind == CN_LIST ? "list" : "value");
            else
                apply_block(lc, t, base, seen, e, name);
        } else {
            unknown_key(lc, t, level, e, ekey);
        }
    }
}

static const struct cnode *seen_of(const struct cnode **seen, const struct table *t,
                                   const char *name)
{
    int r = find_param(t, name);
    return r >= 0 ? seen[r] : NULL;
}

/* certificate and key come as a pair; report against the one that is set. */
static void check_pair(struct loadctx *lc, const struct table *t, const struct cnode **seen,
                       const char *a, const void *va, const char *b, const void *vb)
{
    if ((va == NULL) == (vb == NULL))
        return;
    const char *set = va ? a : b, *unset = va ? b : a;
    const struct cnode *n = seen_of(seen, t, set);
    char ekey[256];
    join(ekey, sizeof(ekey), t->prefix, set);
    cfg_error_add(lc->errs, n ? n->file : lc->c->path, n ? n->kline : 0, n ? n->kcol : 0, ekey,
                  "%s is set but %s is not: both are needed", set, unset);
}

static void apply_listen(struct loadctx *lc, const struct cnode *blk)
{
    struct config *c = lc->c;
    lc->listen_seen = 1;
    for (int i = 0; i < blk->nkids; i++) {
        const struct cnode *e = blk->kids[i];
        char ekey[256];
        buf_t msg;
        join(ekey, sizeof(ekey), "listen", e->key);
        buf_init(&msg, 64);
        if (check_identifier(e->key, &msg) < 0 || e->label || e->kind != CN_BLOCK) {
            cfg_error_add(lc->errs, e->file, e->kline, e->kcol, ekey,
                          "expected a listener block: NAME { address = [\"0.0.0.0:25\"]; }");
            buf_free(&msg);
            continue;
        }
        buf_free(&msg);
        int dup = 0;
        for (int k = 0; k < c->nlisteners; k++)
            dup |= strcmp(c->listeners[k].name, e->key) == 0;
        if (dup) {
            cfg_error_add(lc->errs, e->file, e->kline, e->kcol, ekey, "duplicate listener");
            continue;
        }
        if (c->nlisteners >= CFG_LISTENERS_MAX) {
            cfg_error_add(lc->errs, e->file, e->kline, e->kcol, ekey,
                          "too many listeners (limit %d)", CFG_LISTENERS_MAX);
            return;
        }
        c->listeners = xrealloc(c->listeners, (size_t)(c->nlisteners + 1) * sizeof(*c->listeners));
        struct listener *l = &c->listeners[c->nlisteners++];
        memset(l, 0, sizeof(*l));
        l->name = xstrdup(e->key);
        apply_defaults(listener_params, NLISTENER, l);
        const struct cnode *seen[NLISTENER] = { 0 };
        struct table t = { listener_params, NLISTENER, ekey, NULL };
        apply_block(lc, &t, l, seen, e, "");
        int auth = l->auth_required;
        l->auth_offered = auth != AUTH_NONE;
        l->auth_required = auth == AUTH_REQUIRED;
        if (seen[0] == NULL)
            cfg_error_add(lc->errs, e->file, e->kline, e->kcol, ekey,
                          "missing address = [\"host:port\", ...]");
    }
}

static void apply_domain(struct loadctx *lc, const struct cnode *e)
{
    struct config *c = lc->c;
    buf_t msg;
    if (e->label == NULL || e->kind != CN_BLOCK) {
        cfg_error_add(lc->errs, e->file, e->kline, e->kcol, "domain",
                      "expected domain \"example.com\" { ... }");
        return;
    }
    char ekey[320];
    join(ekey, sizeof(ekey), "domain", e->label);
    buf_init(&msg, 64);
    if (check_hostname(e->label, &msg) < 0) {
        report(lc, e->file, e->kline, e->kcol, "domain", &msg);
        buf_free(&msg);
        return;
    }
    buf_free(&msg);
    for (int k = 0; k < c->ndomains; k++) {
        if (strcasecmp(c->domains[k].name, e->label) == 0) {
            cfg_error_add(lc->errs, e->file, e->kline, e->kcol, ekey, "duplicate domain block");
            return;
        }
    }
    if (c->ndomains >= CFG_DOMAINS_MAX) {
        cfg_error_add(lc->errs, e->file, e->kline, e->kcol, ekey,
                      "too many domain blocks (limit %d)", CFG_DOMAINS_MAX);
        return;
    }
    c->domains = xrealloc(c->domains, (size_t)(c->ndomains + 1) * sizeof(*c->domains));
    struct domain_conf *d = &c->domains[c->ndomains++];
    memset(d, 0, sizeof(*d));
    d->name = xstrdup(e->label);
    apply_defaults(domain_params, NDOMAIN, d);
    const struct cnode *seen[NDOMAIN] = { 0 };
    struct table t = { domain_params, NDOMAIN, ekey, NULL };
    apply_block(lc, &t, d, seen, e, "");
    check_pair(lc, &t, seen, "dkim.selector", d->dkim_selector, "dkim.key", d->dkim_key);
    check_pair(lc, &t, seen, "tls.certificate", d->tls_certificate, "tls.key", d->tls_key);
}

/* ---- whole-config checks and computed defaults ------------------------- */

static const char *const main_extra[] = { "listen", "domain", "include", NULL };

static void finish(struct loadctx *lc, const struct table *t, const struct cnode *root)
{
    struct config *c = lc->c;
    const struct cnode **seen = lc->seen;
    if (c->hostname == NULL) {
        char h[256];
        if (gethostname(h, sizeof(h)) < 0 || h[0] == '\0')
            str_copy(h, sizeof(h), "localhost");
        h[sizeof(h) - 1] = '\0';
        c->hostname = xstrdup(h);
    }
    if (c->run_dir == NULL)   /* root-owned; unprivileged (dev) runs: the spool */
        c->run_dir = xstrdup(geteuid() == 0 ? "/run/postern" : c->spool);
    if (c->pid_file == NULL) {
        buf_t b;
        buf_init(&b, 64);
        buf_printf(&b, "%s/postern.pid", c->run_dir);
        c->pid_file = buf_steal(&b);
        buf_free(&b);
    }
    if (c->smtpd_processes == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c->smtpd_processes = n < 1 ? 1 : n > 1024 ? 1024 : (int)n;
    }
    if (!lc->listen_seen) {
        c->listeners = xcalloc(1, sizeof(*c->listeners));
        c->nlisteners = 1;
        struct listener *l = &c->listeners[0];
        l->name = xstrdup("smtp");
        apply_defaults(listener_params, NLISTENER, l);
        free_strlist(&l->address);
        l->address.v = xcalloc(1, sizeof(char *));
        l->address.v[l->address.n++] = xstrdup("0.0.0.0:25");
        l->auth_offered = 1;
        l->auth_required = 0;
    } else if (c->nlisteners == 0) {
        cfg_error_add(lc->errs, root->file, 0, 0, "listen", "no listener defined");
    }
    check_pair(lc, t, seen, "tls.certificate", c->tls_certificate, "tls.key", c->tls_key);
    if (c->tls_level == TLSL_ENCRYPT && c->tls_certificate == NULL) {
        const struct cnode *n = seen_of(seen, t, "tls.level");
        cfg_error_add(lc->errs, n ? n->file : root->file, n ? n->line : 0, n ? n->col : 0,
                      "tls.level", "level \"encrypt\" needs tls.certificate and tls.key");
    }
    for (int i = 0; i < c->nlisteners; i++) {
        struct listener *l = &c->listeners[i];
        char ekey[256];
        if ((l->tls == TLSM_REQUIRED || l->tls == TLSM_IMPLICIT) && c->tls_certificate == NULL) {
            join(ekey, sizeof(ekey), "listen", l->name);
            cfg_error_add(lc->errs, root->file, 0, 0, ekey,
                          "tls = \"%s\" needs tls.certificate and tls.key",
                          l->tls == TLSM_REQUIRED ? "required" : "implicit");
        }
        if (l->auth_required && c->auth_users == NULL) {
            join(ekey, sizeof(ekey), "listen", l->name);
            cfg_error_add(lc->errs, root->file, 0, 0, ekey,
                          "auth = \"required\" needs auth.users");
        }
    }
}

/* The listener checks above run without positions; give them the
 * listener's own place in the file when there is one. */
static void place_listener_errors(struct config_errors *errs, int from, const struct cnode *root)
{
    for (int i = from; i < errs->n; i++) {
        struct config_error *e = &errs->v[i];
        if (e->line != 0 || strncmp(e->key, "listen.", 7) != 0)
            continue;
        for (int k = 0; k < root->nkids; k++) {
            const struct cnode *lb = root->kids[k];
            if (strcmp(lb->key, "listen") != 0 || lb->kind != CN_BLOCK)
                continue;
            for (int j = 0; j < lb->nkids; j++) {
                const struct cnode *x = lb->kids[j];
                if (strcmp(x->key, e->key + 7) != 0)
                    continue;
                free(e->file);
                e->file = xstrdup(x->file);
                e->line = x->kline;
                e->col = x->kcol;
            }
        }
    }
}

/* ---- public ------------------------------------------------------------ */

static struct config *load_tree(struct cfg_tree *tree, const char *path,
                                struct config_errors *errs)
{
    struct config *c = xcalloc(1, sizeof(*c));
    struct loadctx lc = { .c = c, .errs = errs };
    if (path[0] == '/') {
        c->path = cfg_path_resolve("/", path);
    } else {
        char cwd[PATH_MAX];
        c->path = cfg_path_resolve(getcwd(cwd, sizeof(cwd)) ? cwd : "/", path);
    }
    apply_defaults(params, NPARAMS, c);
    struct table t = { params, NPARAMS, "", main_extra };
    apply_block(&lc, &t, c, lc.seen, tree->root, "");
    int before = errs->n;
    finish(&lc, &t, tree->root);
    place_listener_errors(errs, before, tree->root);
    return c;
}

/* Report in file order: insertion sort (stable; at most CFG_ERRORS_MAX). */
static void sort_errors(struct config_errors *errs, int from)
{
    for (int i = from + 1; i < errs->n; i++) {
        struct config_error x = errs->v[i];
        int j = i - 1;
        while (j >= from) {
            const struct config_error *y = &errs->v[j];
            int fc = strcmp(y->file, x.file);
            if (fc < 0 || (fc == 0 && (y->line < x.line ||
                                       (y->line == x.line && y->col <= x.col))))
                break;
            errs->v[j + 1] = errs->v[j];
            j--;
        }
        errs->v[j + 1] = x;
    }
}

static struct config *load_common(const char *path, const char *data, size_t len,
                                  struct config_errors *errs_r)
{
    struct config_errors local = { 0 };
    struct config_errors *errs = errs_r ? errs_r : &local;
    struct cfg_tree tree;
    int before = errs->n;
    cfg_tree_parse(&tree, path, data, len, errs);
    struct config *c = load_tree(&tree, path, errs);
    cfg_tree_free(&tree);
    sort_errors(errs, before);
    int failed = errs->n > before;
    if (errs == &local) {
        for (int i = 0; i < local.n; i++) {
            buf_t b;
            buf_init(&b, 128);
            config_error_format(&b, &local.v[i]);
            log_error("%s", b.data);
            buf_free(&b);
        }
        config_errors_free(&local);
    }
    if (failed) {
        config_free(c);
        return NULL;
    }
    return c;
}

struct config *config_load(const char *path, struct config_errors *errs)
{
    return load_common(path, NULL, 0, errs);
}

struct config *config_load_buffer(const char *name, const char *data, size_t len,
                                  struct config_errors *errs)
{
    return load_common(name, data ? data : "", data ? len : 0, errs);
}

static void free_fields(const struct param *tab, int n, void *base)
{
    for (int i = 0; i < n; i++) {
        void *f = field(base, tab[i].off);
        switch (tab[i].type) {
        case P_STR: case P_PATH: free(*(char **)f); break;
        case P_STRLIST: free_strlist(f); break;
        case P_CIDRLIST: free(((struct cidrlist *)f)->v); break;
        case P_DURLIST: free(*(int **)f); break;
        default: break;
        }
    }
}

void config_free(struct config *c)
{
    if (c == NULL)
        return;
    free_fields(params, NPARAMS, c);
    for (int i = 0; i < c->nlisteners; i++) {
        free(c->listeners[i].name);
        free_fields(listener_params, NLISTENER, &c->listeners[i]);
    }
    free(c->listeners);
    for (int i = 0; i < c->ndomains; i++) {
        free(c->domains[i].name);
        free_fields(domain_params, NDOMAIN, &c->domains[i]);
    }
    free(c->domains);
    free(c->path);
    free(c);
}

void config_errors_free(struct config_errors *e)
{
    if (e == NULL)
        return;
    for (int i = 0; i < e->n; i++) {
        free(e->v[i].file);
        free(e->v[i].key);
        free(e->v[i].msg);
    }
    free(e->v);
    e->v = NULL;
    e->n = 0;
}

void config_error_format(buf_t *out, const struct config_error *e)
{
    buf_append_str(out, e->file && *e->file ? e->file : "-");
    if (e->line > 0)
        buf_printf(out, ":%d:%d", e->line, e->col);
    buf_append_str(out, ": ");
    if (e->key && *e->key)
        buf_printf(out, "%s: ", e->key);
    buf_append_str(out, e->msg ? e->msg : "");
}

static int domain_eq(const char *a, const char *d, size_t dl)
{
    return strlen(a) == dl && strncasecmp(a, d, dl) == 0;
}

const struct domain_conf *config_domain(const struct config *c, const char *d)
{
    size_t dl = strlen(d);
    if (dl > 0 && d[dl - 1] == '.')
        dl--;
    for (int i = 0; i < c->ndomains; i++)
        if (domain_eq(c->domains[i].name, d, dl))
            return &c->domains[i];
    return NULL;
}

int config_is_local_domain(const struct config *c, const char *d)
{
    size_t dl = strlen(d);
    if (dl > 0 && d[dl - 1] == '.')
        dl--;
    if (dl == 0)
        return 0;
    for (int i = 0; i < c->local_domains.n; i++)
        if (domain_eq(c->local_domains.v[i], d, dl))
            return 1;
    return config_domain(c, d) != NULL;
}

const char *config_default_path(const char *opt_c)
{
    if (opt_c && *opt_c)
        return opt_c;
    const char *env = getenv("POSTERN_CONFIG");
    if (env && *env)
        return env;
    return POSTERN_PREFIX "/etc/postern/postern.conf";
}
