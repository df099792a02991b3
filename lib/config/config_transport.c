/*
 * config_transport.c - `transport "NAME" { type = ...; }` blocks of
 * postern.conf and the next-hop syntax they share with the rule language's
 * forward()/lmtp() and the smtp agent:
 *
 *   transport "dovecot" { type = "lmtp"; address = "unix:/run/dovecot/lmtp"; }
 *   transport "lmtp-tcp" { type = "lmtp"; address = "[127.0.0.1]:24"; }
 *   transport "archive" { type = "pipe"; user = "archive"; timeout = 60s;
 *                         command = ["/usr/local/bin/archive", "${sender}", "${recipient}"]; }
 *   transport "null"    { type = "discard"; }
 *   transport "partner" { type = "smtp"; nexthop = "[mx.partner.example]:2525"; }
 *
 * Everything here is syntax: a key that does not belong to the type, a
 * relative command path, an unknown ${variable} or a bad address is an
 * error with file:line:col. Whether the user exists and the command is
 * executable is for `postern check` (cli_check.c), which has the positions
 * kept here; the pipe agent refuses to start without them too.
 */
#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <sys/un.h>

#include "config/config_private.h"

#define CFG_TRANSPORTS_MAX 64

static const struct enumval ev_type[] = {
    { "lmtp", TR_LMTP }, { "pipe", TR_PIPE }, { "discard", TR_DISCARD }, { "smtp", TR_SMTP },
    { NULL, 0 } };

_Static_assert(sizeof(enum transport_type) == sizeof(int), "enum width");

/* Rows; "types" says which transport types take the key. */
#define T(f) offsetof(struct transport_conf, f)
#define B(t) (1u << (t))
static const struct {
    struct param p;
    unsigned types;
} rows[] = {
    { { "type", P_ENUM, T(type), 0, NULL, 0, 0, ev_type, 0, NULL },
      B(TR_LMTP) | B(TR_PIPE) | B(TR_DISCARD) | B(TR_SMTP) },
    { { "address", P_STR, T(address), 0, NULL, 0, 0, NULL, F_REQUIRED, NULL }, B(TR_LMTP) },
    { { "nexthop", P_STR, T(nexthop), 0, NULL, 0, 0, NULL, 0, NULL }, B(TR_SMTP) },
    { { "command", P_STRLIST, T(command), 0, NULL, 0, 0, NULL, F_REQUIRED, NULL }, B(TR_PIPE) },
    { { "user", P_STR, T(user), 0, NULL, 0, 0, NULL, F_REQUIRED, cfg_check_identifier },
      B(TR_PIPE) },
    /* at most the pipe agent's PIPE_TIMEOUT_MAX (pipe/pipe.h) */
    { { "timeout", P_DUR, T(timeout), 0, NULL, 1, 300, NULL, 0, NULL }, B(TR_PIPE) },
};
#undef T
enum { ROW_TYPE, ROW_ADDRESS, ROW_NEXTHOP, ROW_COMMAND, ROW_USER, ROW_TIMEOUT, NROWS };
_Static_assert(sizeof(rows) / sizeof(rows[0]) == NROWS, "rows");

/* The ${name} a pipe command may use; the pipe agent expands the same list. */
const char *const config_pipe_vars[] = {
    "sender", "recipient", "original_recipient", "domain", "local_part", "queue_id", "size",
    "nexthop", "user", NULL };

/* ---- next hops ------------------------------------------------------------------- */

static int hop_fail(buf_t *msg, const char *what, const char *s)
{
    size_t n = strlen(s);
    buf_printf(msg, "%s, got \"", what);
    buf_append_printable(msg, s, n > 80 ? 80 : n);
    buf_append_char(msg, '"');
    return -1;
}

static int host_ok(const char *h, int bracketed)
{
    unsigned char a[16];
    if (inet_pton(AF_INET, h, a) == 1)
        return 1;
    if (bracketed && strncasecmp(h, "IPv6:", 5) == 0)
        h += 5;
    if (inet_pton(AF_INET6, h, a) == 1)
        return bracketed;           /* "::1:25" would be ambiguous without brackets */
    size_t n = strlen(h);
    if (n == 0 || n > 253 || h[0] == '-' || h[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)h[i]) && h[i] != '-' && h[i] != '.' && h[i] != '_')
            return 0;
    return 1;
}

/* A Unix socket path: absolute, printable, no "." or ".." component (a
 * value from the rules must not walk the tree), fits sun_path. */
static int unix_path_ok(const char *p)
{
    struct sockaddr_un su;
    size_t n = strlen(p);
    if (p[0] != '/' || n >= sizeof(su.sun_path))
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] <= 0x20 || p[i] == 0x7f)
            return 0;
    for (const char *c = p; (c = strchr(c, '/')) != NULL; c++)
        if ((c[1] == '.' && (c[2] == '/' || c[2] == '\0')) ||
            (c[1] == '.' && c[2] == '.' && (c[3] == '/' || c[3] == '\0')))
            return 0;
    return 1;
}

int config_parse_nexthop(const char *s, int default_port, int allow_unix, struct nexthop *r,
                         buf_t *msg)
{
    memset(r, 0, sizeof(*r));
    if (strncmp(s, "unix:", 5) == 0) {
        if (!allow_unix)
            return hop_fail(msg, "expected \"[host]:port\" (no unix: here)", s);
        if (!unix_path_ok(s + 5))
            return hop_fail(msg, "expected \"unix:/absolute/path\" (under 108 octets, "
                            "no . or .. component)", s);
        r->is_unix = 1;
        str_copy(r->path, sizeof(r->path), s + 5);
        return 0;
    }
    const char *host = s, *port = NULL;
    size_t hl;
    int br = s[0] == '[';
    if (br) {
        const char *close = strchr(s, ']');
        if (close == NULL || (close[1] != '\0' && close[1] != ':'))
            return hop_fail(msg, "expected \"[host]:port\"", s);
        host = s + 1;
        hl = (size_t)(close - host);
        port = close[1] == ':' ? close + 2 : NULL;
    } else {
        const char *colon = strrchr(s, ':');
        hl = colon ? (size_t)(colon - s) : strlen(s);
        port = colon ? colon + 1 : NULL;
    }
    if (hl == 0 || hl >= sizeof(r->host))
        return hop_fail(msg, "expected \"host:port\" or \"[host]:port\"", s);
    memcpy(r->host, host, hl);
    r->host[hl] = '\0';
    if (!host_ok(r->host, br))
        return hop_fail(msg, "expected a host name or an address literal in brackets", s);
    r->port = default_port;
    if (port) {
        char *end;
        long v = strtol(port, &end, 10);
        if (*port == '\0' || *end != '\0' || v < 1 || v > 65535)
            return hop_fail(msg, "expected a port 1-65535 after the colon", s);
        r->port = (int)v;
    }
    if (r->port == 0)
        return hop_fail(msg, "expected a port: \"host:port\" or \"[host]:port\"", s);
    r->bracketed = br;
    return 0;
}

/* ---- pipe commands ------------------------------------------------------------ */

static int known_var(const char *name, size_t n)
{
    for (int i = 0; config_pipe_vars[i]; i++)
        if (strlen(config_pipe_vars[i]) == n && memcmp(config_pipe_vars[i], name, n) == 0)
            return 1;
    return 0;
}

/* One argv element: every "${" opens a known variable that closes. */
static int check_element(const char *s, buf_t *msg)
{
    for (const char *p = s; (p = strstr(p, "${")) != NULL;) {
        const char *close = strchr(p, '}');
        if (close == NULL)
            return hop_fail(msg, "\"${\" without \"}\"", s);
        if (!known_var(p + 2, (size_t)(close - p - 2))) {
            buf_printf(msg, "unknown variable \"%.*s\" (known:", (int)(close - p + 1), p);
            for (int i = 0; config_pipe_vars[i]; i++)
                buf_printf(msg, " ${%s}", config_pipe_vars[i]);
            buf_append_char(msg, ')');
            return -1;
        }
        p = close + 1;
    }
    return 0;
}

/* ---- the block ---------------------------------------------------------------- */

static void err_at(struct config_errors *errs, const struct cnode *n, const char *key,
                   buf_t *msg)
{
    cfg_error_add(errs, n->file, n->line, n->col, key, "%s", msg->data);
    buf_reset(msg);
}

/* What the type needs, once its keys are read. */
static void check_type(struct config_errors *errs, struct transport_conf *t,
                       const struct cnode **seen, const struct cnode *blk, const char *ekey)
{
    buf_t msg;
    buf_init(&msg, 128);
    char key[400];
    for (int r = 0; r < NROWS; r++) {
        snprintf(key, sizeof(key), "%s.%s", ekey, rows[r].p.name);
        if (seen[r] && !(rows[r].types & B(t->type)))
            cfg_error_add(errs, seen[r]->file, seen[r]->kline, seen[r]->kcol, key,
                          "not a key of a transport of type \"%s\"", ev_type[t->type - 1].name);
        else if (!seen[r] && (rows[r].p.flags & F_REQUIRED) && (rows[r].types & B(t->type)))
            cfg_error_add(errs, blk->file, blk->kline, blk->kcol, key,
                          "transport of type \"%s\" needs %s", ev_type[t->type - 1].name,
                          rows[r].p.name);
    }
    struct nexthop nh;
    snprintf(key, sizeof(key), "%s.address", ekey);
    if (t->type == TR_LMTP && t->address && seen[ROW_ADDRESS] &&
        config_parse_nexthop(t->address, 0, 1, &nh, &msg) < 0)
        err_at(errs, seen[ROW_ADDRESS], key, &msg);
    snprintf(key, sizeof(key), "%s.nexthop", ekey);
    if (t->type == TR_SMTP && t->nexthop && seen[ROW_NEXTHOP] && t->nexthop[0] &&
        config_parse_nexthop(t->nexthop, 25, 0, &nh, &msg) < 0)
        err_at(errs, seen[ROW_NEXTHOP], key, &msg);
    snprintf(key, sizeof(key), "%s.command", ekey);
    const struct cnode *cn = seen[ROW_COMMAND];
    for (int i = 0; t->type == TR_PIPE && cn && i < t->command.n; i++) {
        const struct cnode *x = cn->kind == CN_LIST ? cn->kids[i] : cn;
        const char *a = t->command.v[i];
        if (i == 0 && (a[0] != '/' || strstr(a, "${") != NULL))
            hop_fail(&msg, "expected the command's absolute path first (no ${...}: run "
                     "without a shell)", a);
        else if (i > 0)
            check_element(a, &msg);
        if (msg.len)
            err_at(errs, x, key, &msg);
    }
    buf_free(&msg);
}

void cfg_apply_transport(struct config *c, struct config_errors *errs, const struct cnode *e)
{
    if (e->label == NULL || e->kind != CN_BLOCK) {
        cfg_error_add(errs, e->file, e->kline, e->kcol, "transport",
                      "expected transport \"NAME\" { type = \"lmtp\" | \"pipe\" | \"discard\" "
                      "| \"smtp\"; ... }");
        return;
    }
    char ekey[320];
    snprintf(ekey, sizeof(ekey), "transport.%s", e->label);
    buf_t msg;
    buf_init(&msg, 64);
    int bad = cfg_check_identifier(e->label, &msg) < 0;
    if (bad)
        cfg_error_add(errs, e->file, e->kline, e->kcol, "transport", "%s", msg.data);
    buf_free(&msg);
    if (bad)
        return;
    if (config_transport(c, e->label)) {
        cfg_error_add(errs, e->file, e->kline, e->kcol, ekey, "duplicate transport block");
        return;
    }
    if (c->ntransports >= CFG_TRANSPORTS_MAX) {
        cfg_error_add(errs, e->file, e->kline, e->kcol, ekey,
                      "too many transport blocks (limit %d)", CFG_TRANSPORTS_MAX);
        return;
    }
    c->transports = xrealloc(c->transports, (size_t)(c->ntransports + 1) * sizeof(*c->transports));
    struct transport_conf *t = &c->transports[c->ntransports++];
    memset(t, 0, sizeof(*t));
    t->name = xstrdup(e->label);
    t->file = xstrdup(e->file);
    t->line = e->kline;
    t->col = e->kcol;
    const struct cnode *seen[NROWS] = { 0 };
    for (int i = 0; i < e->nkids; i++) {
        const struct cnode *k = e->kids[i];
        char key[400];
        snprintf(key, sizeof(key), "%s.%s", ekey, k->key);
        int r = 0;
        while (r < NROWS && strcmp(rows[r].p.name, k->key) != 0)
            r++;
        if (r == NROWS || k->label)
            cfg_error_add(errs, k->file, k->kline, k->kcol, key, "unknown key \"%s\" (type "
                          "address nexthop command user timeout)", k->key);
        else if (seen[r])
            cfg_error_add(errs, k->file, k->kline, k->kcol, key,
                          "duplicate key (already set at line %d, column %d)", seen[r]->kline,
                          seen[r]->kcol);
        else {
            seen[r] = k;
            cfg_apply_value(errs, &rows[r].p, t, k, key);
        }
    }
    if (seen[ROW_USER]) {
        t->user_line = seen[ROW_USER]->line;
        t->user_col = seen[ROW_USER]->col;
    }
    if (seen[ROW_COMMAND]) {
        t->cmd_line = seen[ROW_COMMAND]->line;
        t->cmd_col = seen[ROW_COMMAND]->col;
    }
    if (t->type == 0)
        cfg_error_add(errs, e->file, e->kline, e->kcol, ekey,
                      "missing type = \"lmtp\" | \"pipe\" | \"discard\" | \"smtp\"");
    else
        check_type(errs, t, seen, e, ekey);
}

void cfg_transports_free(struct config *c)
{
    for (int i = 0; i < c->ntransports; i++) {
        struct transport_conf *t = &c->transports[i];
        free(t->name);
        free(t->file);
        free(t->address);
        free(t->nexthop);
        free(t->user);
        cfg_free_strlist(&t->command);
    }
    free(c->transports);
    c->transports = NULL;
    c->ntransports = 0;
}

int config_is_transport_name(const char *s)
{
    buf_t msg;
    buf_init(&msg, 16);
    int ok = cfg_check_identifier(s, &msg) == 0;
    buf_free(&msg);
    return ok;
}

const struct transport_conf *config_transport(const struct config *c, const char *name)
{
    for (int i = 0; i < c->ntransports; i++)
        if (strcmp(c->transports[i].name, name) == 0)
            return &c->transports[i];
    return NULL;
}
