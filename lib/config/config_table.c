/*
 * config_table.c - postern.conf's parameter tables and typed values: one
 * row per parameter {dotted name, type, offset, default, min, max, enum
 * values, item check}, and the parsers that turn a value node into a
 * field (with a message naming what was expected). config.c walks the tree
 * against these tables; nothing here knows about blocks or includes.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config_private.h"
#include "util/idna.h"

_Static_assert(sizeof(enum log_level) == sizeof(int), "enum width");
_Static_assert(sizeof(enum tls_mode) == sizeof(int), "enum width");
_Static_assert(sizeof(enum tls_level) == sizeof(int), "enum width");
_Static_assert(sizeof(enum tls_policy) == sizeof(int), "enum width");
_Static_assert(sizeof(enum mailbox_kind) == sizeof(int), "enum width");

static const struct enumval ev_level[] = {
    { "debug", LOG_L_DEBUG }, { "info", LOG_L_INFO }, { "warning", LOG_L_WARN },
    { "warn", LOG_L_WARN }, { "error", LOG_L_ERROR }, { NULL, 0 } };
static const struct enumval ev_format[] = { { "text", 0 }, { "json", 1 }, { NULL, 0 } };
static const struct enumval ev_tls_level[] = {
    { "none", TLSL_NONE }, { "may", TLSL_MAY }, { "encrypt", TLSL_ENCRYPT }, { NULL, 0 } };
const struct enumval cfg_ev_tls_policy[] = {
    { "none", TLSP_NONE }, { "may", TLSP_MAY }, { "encrypt", TLSP_ENCRYPT },
    { "dane", TLSP_DANE }, { "verify", TLSP_VERIFY }, { NULL, 0 } };
static const struct enumval ev_tls_mode[] = {
    { "none", TLSM_NONE }, { "may", TLSM_MAY }, { "required", TLSM_REQUIRED },
    { "implicit", TLSM_IMPLICIT }, { NULL, 0 } };
static const struct enumval ev_auth[] = {
    { "none", AUTH_NONE }, { "optional", AUTH_OPTIONAL }, { "required", AUTH_REQUIRED },
    { NULL, 0 } };
static const struct enumval ev_dmarc_failure[] = {
    { "none", DMF_NONE }, { "quarantine", DMF_QUARANTINE }, { "reject", DMF_REJECT },
    { NULL, 0 } };
static const struct enumval ev_mailbox[] = {
    { "maildir", MBOX_MAILDIR }, { "mbox", MBOX_MBOX }, { "discard", MBOX_DISCARD },
    { NULL, 0 } };

static int check_protocol(const char *s, buf_t *msg);
static int check_address(const char *s, buf_t *msg);
static int check_ip(const char *s, buf_t *msg);

#define DAY 86400LL
#define C(f) offsetof(struct config, f)
const struct param cfg_params[] = {
    { "hostname", P_STR, C(hostname), 0, NULL, 0, 0, NULL, F_REQUIRED, cfg_check_hostname },
    { "spool", P_PATH, C(spool), 0, "/var/spool/postern", 0, 0, NULL, F_REQUIRED, NULL },
    { "user", P_STR, C(user), 0, "postern", 0, 0, NULL, F_REQUIRED, cfg_check_identifier },
    { "group", P_STR, C(group), 0, NULL, 0, 0, NULL, 0, cfg_check_identifier },
    { "pid_file", P_PATH, C(pid_file), 0, NULL, 0, 0, NULL, 0, NULL },
    { "run_dir", P_PATH, C(run_dir), 0, NULL, 0, 0, NULL, 0, NULL },
    { "log.level", P_ENUM, C(log_level), 0, "info", 0, 0, ev_level, 0, NULL },
    { "log.format", P_ENUM, C(log_json), 0, "text", 0, 0, ev_format, 0, NULL },
    { "log.file", P_PATH, C(log_file), 0, NULL, 0, 0, NULL, 0, NULL },
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
    { "dns.timeout", P_DUR, C(dns_timeout), 0, "10s", 1, 300, NULL, 0, NULL },
    { "mynetworks", P_CIDRLIST, C(mynetworks), 0, "127.0.0.0/8,[::1]/128", 0, 0, NULL, 0, NULL },
    { "auth.users", P_PATH, C(auth_users), 0, NULL, 0, 0, NULL, 0, NULL },
    { "auth.plaintext_without_tls", P_BOOL, C(auth_plaintext_without_tls), 0, "false", 0, 0,
      NULL, 0, NULL },
    { "authentication.spf", P_BOOL, C(authentication_spf), 0, "false", 0, 0, NULL, 0, NULL },
    { "authentication.dkim", P_BOOL, C(authentication_dkim), 0, "false", 0, 0, NULL, 0, NULL },
    { "authentication.authserv_id", P_STR, C(authserv_id), 0, NULL, 0, 0, NULL, 0,
      cfg_check_hostname },
    { "authentication.dkim_keys", P_PATH, C(dkim_keys), 0, NULL, 0, 0, NULL, 0, NULL },
    { "authentication.dmarc", P_BOOL, C(authentication_dmarc), 0, "false", 0, 0, NULL, 0, NULL },
    { "authentication.dmarc_failure", P_ENUM, C(authentication_dmarc_failure), 0, "none", 0, 0,
      ev_dmarc_failure, 0, NULL },
    { "local_domains", P_STRLIST, C(local_domains), 0, "", 0, 0, NULL, 0, cfg_check_hostname },
    { "local.mailbox", P_ENUM, C(local_mailbox), 0, "maildir", 0, 0, ev_mailbox, 0, NULL },
    { "local.maildir", P_PATH, C(local_maildir), 0, "~/Maildir", 0, 0, NULL,
      F_REQUIRED | F_TEMPLATE, NULL },
    { "local.mbox", P_PATH, C(local_mbox), 0, "/var/mail/%u", 0, 0, NULL,
      F_REQUIRED | F_TEMPLATE, NULL },
    { "local.aliases", P_PATH, C(local_aliases), 0, "/etc/aliases", 0, 0, NULL, 0, NULL },
    { "local.forward", P_BOOL, C(local_forward), 0, "true", 0, 0, NULL, 0, NULL },
    { "local.default_user", P_STR, C(local_default_user), 0, "nobody", 0, 0, NULL, F_REQUIRED,
      NULL },
    { "local.vmail_user", P_STR, C(local_vmail_user), 0, "", 0, 0, NULL, 0, NULL },
    { "local.users", P_PATH, C(local_users), 0, NULL, 0, 0, NULL, 0, NULL },
    { "delivery.relayhost", P_STR, C(relayhost), 0, NULL, 0, 0, NULL, 0, cfg_check_relayhost },
    { "delivery.source_address", P_STR, C(source_address), 0, NULL, 0, 0, NULL, 0, check_ip },
    { "delivery.smtp_port", P_INT, C(smtp_port), 0, "25", 1, 65535, NULL, 0, NULL },
    { "delivery.tls", P_ENUM, C(delivery_tls), 0, "may", 0, 0, cfg_ev_tls_policy, 0, NULL },
    { "delivery.tls_ca_file", P_PATH, C(tls_ca_file), 0, NULL, 0, 0, NULL, 0, NULL },
    { "delivery.mta_sts", P_BOOL, C(mta_sts), 0, "true", 0, 0, NULL, 0, NULL },
    { "delivery.relay_auth", P_PATH, C(relay_auth), 0, NULL, 0, 0, NULL, 0, NULL },
    { "delivery.connect_timeout", P_DUR, C(smtp_connect_timeout), 0, "30s", 1, 3600, NULL, 0,
      NULL },
    { "delivery.command_timeout", P_DUR, C(smtp_command_timeout), 0, "300s", 1, 3600, NULL, 0,
      NULL },
    { "delivery.data_timeout", P_DUR, C(smtp_data_timeout), 0, "600s", 1, 3600, NULL, 0, NULL },
    { "delivery.retry", P_DURLIST, C(retry), C(nretry), "5m,15m,30m,1h,2h,4h", 1, 30 * DAY,
      NULL, F_REQUIRED, NULL },
    { "delivery.lifetime", P_DUR, C(lifetime), 0, "5d", 60, 365 * DAY, NULL, 0, NULL },
    { "delivery.delay_warning", P_DUR, C(delay_warning), 0, "4h", 0, 365 * DAY, NULL, 0, NULL },
    { "delivery.concurrency", P_INT, C(concurrency), 0, "20", 1, 10000, NULL, 0, NULL },
    { "delivery.rate", P_INT, C(rate), 0, "0", 0, 6000000, NULL, 0, NULL },
    /* each message in memory holds its open queue file (raise_fd_limit) */
    { "limits.active_queue", P_INT, C(active_queue), 0, "10000", 1, 1000000, NULL, 0, NULL },
    { "rules", P_PATH, C(rules), 0, NULL, 0, 0, NULL, 0, NULL },
    /* wall-clock limit of one stage's evaluation; at most 100s (RL_SVC_TIMEOUT_MAX,
     * below smtpd's 120 s wait for filter) */
    { "limits.rules_timeout", P_DUR, C(rules_timeout), 0, "30s", 1, 100, NULL, 0, NULL },
    { "processes.smtpd", P_INT, C(smtpd_processes), 0, NULL, 1, 1024, NULL, 0, NULL },
    { "processes.cleanup_threads", P_INT, C(cleanup_threads), 0, "8", 1, 256, NULL, 0, NULL },
    /* libopendkim 2.11 leaks ~0.5 KiB per Ed25519 signature: cleanup asks
     * master for a replacement after this many (0 = never) */
    { "processes.cleanup_max_ed25519", P_INT, C(cleanup_max_ed25519), 0, "20000", 0, 1000000000,
      NULL, 0, NULL },
    /* master's metrics endpoint; unset = off. Loopback only unless allow_remote
     * (there is no authentication: config.c checks the pair) */
    { "metrics.address", P_STR, C(metrics_address), 0, NULL, 0, 0, NULL, 0, check_address },
    { "metrics.allow_remote", P_BOOL, C(metrics_allow_remote), 0, "false", 0, 0, NULL, 0, NULL },
    { "processes.delivery", P_INT, C(delivery_processes), 0, "4", 1, 1024, NULL, 0, NULL },
};
#undef C
const int cfg_nparams = (int)(sizeof(cfg_params) / sizeof(cfg_params[0]));
_Static_assert(sizeof(cfg_params) / sizeof(cfg_params[0]) <= CFG_TABLE_MAX, "CFG_TABLE_MAX");

#define L(f) offsetof(struct listener, f)
const struct param cfg_listener_params[] = {
    { "address", P_STRLIST, L(address), 0, "", 0, 0, NULL, F_REQUIRED, check_address },
    { "tls", P_ENUM, L(tls), 0, "may", 0, 0, ev_tls_mode, 0, NULL },
    { "auth", P_ENUM, L(auth_required), 0, "optional", 0, 0, ev_auth, 0, NULL },
};
#undef L
const int cfg_nlistener = (int)(sizeof(cfg_listener_params) / sizeof(cfg_listener_params[0]));
_Static_assert(sizeof(cfg_listener_params) / sizeof(cfg_listener_params[0]) <= CFG_TABLE_MAX,
               "CFG_TABLE_MAX");

#define D(f) offsetof(struct domain_conf, f)
const struct param cfg_domain_params[] = {
    { "mailboxes", P_PATH, D(mailboxes), 0, NULL, 0, 0, NULL, F_TEMPLATE, NULL },
    { "users", P_PATH, D(users), 0, NULL, 0, 0, NULL, 0, NULL },
    { "dkim.selector", P_STR, D(dkim_selector), 0, NULL, 0, 0, NULL, 0, cfg_check_identifier },
    { "dkim.key", P_PATH, D(dkim_key), 0, NULL, 0, 0, NULL, 0, NULL },
    { "tls.certificate", P_PATH, D(tls_certificate), 0, NULL, 0, 0, NULL, 0, NULL },
    { "tls.key", P_PATH, D(tls_key), 0, NULL, 0, 0, NULL, 0, NULL },
    { "limits.messages_per_hour", P_LONG, D(messages_per_hour), 0, "0", 0, 1000000000, NULL, 0,
      NULL },
};
#undef D
const int cfg_ndomain = (int)(sizeof(cfg_domain_params) / sizeof(cfg_domain_params[0]));
_Static_assert(sizeof(cfg_domain_params) / sizeof(cfg_domain_params[0]) <= CFG_TABLE_MAX, "CFG_TABLE_MAX");

/* ", got \"TEXT\"" (printable, at most 80 bytes) after an expectation. */
static void got_text(buf_t *msg, const char *s)
{
    size_t n = strlen(s);
    buf_append_str(msg, ", got \"");
    buf_append_printable(msg, s, n > 80 ? 80 : n);
    buf_append_char(msg, '"');
}

/* ---- item checks ----------------------------------------------------- */

int cfg_check_hostname(const char *s, buf_t *msg)
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
    buf_append_str(msg, "expected a domain name like mx.example.com");
    char ace[IDNA_ASCII_MAX];
    if (n > 0 && idna_domain_ascii(s, n, ace, sizeof ace) == 0 && strcmp(ace, s) != 0)
        buf_printf(msg, " (an internationalized name in its A-label form: \"%s\")", ace);
    got_text(msg, s);
    return -1;
}

int cfg_check_identifier(const char *s, buf_t *msg)
{
    size_t n = strlen(s);
    int ok = n > 0 && n <= 64;
    for (size_t i = 0; ok && i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        ok = isalnum(c) || c == '_' || c == '-' || c == '.';
    }
    if (ok)
        return 0;
    buf_append_str(msg, "expected a name of letters, digits, '_', '-' and '.'");
    got_text(msg, s);
    return -1;
}

static int check_protocol(const char *s, buf_t *msg)
{
    static const char *ok[] = { "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3" };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (strcmp(s, ok[i]) == 0)
            return 0;
    buf_append_str(msg, "expected one of \"TLSv1\", \"TLSv1.1\", \"TLSv1.2\", \"TLSv1.3\"");
    got_text(msg, s);
    return -1;
}

/* An IPv4 or IPv6 address literal, without port or brackets. */
static int check_ip(const char *s, buf_t *msg)
{
    unsigned char a[16];
    if (inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1)
        return 0;
    buf_append_str(msg, "expected an IP address like 192.0.2.1 or 2001:db8::1");
    got_text(msg, s);
    return -1;
}

static int check_address(const char *s, buf_t *msg)
{
    if (config_parse_address(s, NULL, NULL) == 0)
        return 0;
    buf_append_str(msg, "expected an address like 0.0.0.0:25 or [::]:25");
    got_text(msg, s);
    return -1;
}

/* "[host]:port", "host:port", "host" or "[host]". */
int cfg_check_relayhost(const char *s, buf_t *msg)
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
    int hbad = cfg_check_hostname(host, &ignore) < 0 && strchr(host, ':') == NULL;
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
    buf_append_str(msg, "expected a relay like [smtp.example.com]:587");
    got_text(msg, s);
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

void cfg_format_size(buf_t *b, int64_t v)
{
    static const char suf[] = "kMGT";
    int i = -1;
    while (i < 3 && v != 0 && v % 1024 == 0) {
        v /= 1024;
        i++;
    }
    buf_printf(b, "%lld", (long long)v);
    if (i >= 0)
        buf_append_char(b, suf[i]);
}

static void describe_num(buf_t *b, enum ptype t, int64_t v)
{
    if (t == P_SIZE) {
        cfg_format_size(b, v);
    } else if (t == P_DUR || t == P_DURLIST) {
        buf_printf(b, "%llds", (long long)v);
    } else {
        buf_printf(b, "%lld", (long long)v);
    }
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

void cfg_free_strlist(struct strlist *l)
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

static void report(struct config_errors *errs, const char *file, int line, int col,
                   const char *key, buf_t *msg)
{
    cfg_error_add(errs, file, line, col, key, "%s", msg->data);
}

/* Store a list from items (already positioned). Elements failing are reported. */
static void store_list(struct config_errors *errs, const struct param *p, void *base,
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
            report(errs, it[i].file, it[i].line, it[i].col, key, &msg);
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
        cfg_free_strlist(f);
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

void cfg_apply_value(struct config_errors *errs, const struct param *p, void *base,
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
        report(errs, v->file, v->line, v->col, key, &msg);
    } else if (is_list_type(p->type)) {
        /* a single value stands for a one-element list */
        int n = v->kind == CN_LIST ? v->nkids : 1;
        struct item *it = xcalloc((size_t)(n ? n : 1), sizeof(*it));
        for (int i = 0; i < n; i++) {
            const struct cnode *x = v->kind == CN_LIST ? v->kids[i] : v;
            it[i] = (struct item){ x->text, x->file, x->dir, x->line, x->col };
        }
        int before = errs->n;
        store_list(errs, p, base, it, n, key);
        if (n == 0 && (p->flags & F_REQUIRED) && errs->n == before)
            cfg_error_add(errs, v->file, v->line, v->col, key, "must not be empty");
        free(it);
    } else {
        int64_t num = 0;
        char *str = NULL;
        struct cidr net;
        if (parse_scalar(p, p->type, v->text, v->dir, &num, &str, &net, &msg) < 0)
            report(errs, v->file, v->line, v->col, key, &msg);
        else if ((p->flags & F_REQUIRED) && str && *str == '\0') {
            cfg_error_add(errs, v->file, v->line, v->col, key, "must not be empty");
            free(str);
        } else
            store_scalar(p, base, num, str);
    }
    buf_free(&msg);
}

void cfg_apply_defaults(const struct param *tab, int n, void *base)
{
    struct config_errors errs = { 0 };
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
            store_list(&errs, p, base, it, k, p->name);
        } else {
            struct cnode v = { .kind = CN_VALUE, .text = (char *)p->def, .file = "default",
                               .dir = "/" };
            cfg_apply_value(&errs, p, base, &v, p->name);
        }
    }
    if (errs.n)
        log_panic("config: bad default for %s: %s", errs.v[0].key, errs.v[0].msg);
}

void cfg_free_fields(const struct param *tab, int n, void *base)
{
    for (int i = 0; i < n; i++) {
        void *f = field(base, tab[i].off);
        switch (tab[i].type) {
        case P_STR: case P_PATH: free(*(char **)f); break;
        case P_STRLIST: cfg_free_strlist(f); break;
        case P_CIDRLIST: free(((struct cidrlist *)f)->v); break;
        case P_DURLIST: free(*(int **)f); break;
        default: break;
        }
    }
}
