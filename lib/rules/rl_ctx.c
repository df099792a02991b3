/*
 * rl_ctx.c - the transaction context as the rules see it: the one table of
 * context values {name, type, stages where it exists} that the checker
 * enforces, how the VM reads each of them from a struct rl_txn, and the
 * lazily loaded message (headers and the first RL_BODY_MAX body bytes read
 * from the queue file with lib/mail/qfile.h + lib/mail/hdr.h, exactly as cleanup
 * wrote it). Values from the wire are data only: nothing here interprets
 * them beyond parsing an IP address.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include "util/fdio.h"
#include "mail/hdr.h"
#include "mail/qfile.h"
#include "rules/rl_int.h"

enum {
    C_CLIENT_IP, C_CLIENT_PORT, C_CLIENT_PTR, C_HELO, C_AUTH_USER, C_TLS_VERSION, C_TLS_CIPHER,
    C_MAIL_FROM, C_RCPT, C_RCPT_LIST, C_MSG_HEADER, C_MSG_SUBJECT, C_MSG_SIZE, C_MSG_BODY,
    C_SPF, C_DKIM, C_DMARC, C_QUEUE_ID, C_SPF_DOMAIN, C_DKIM_DOMAINS, C_DMARC_POLICY,
    C__COUNT
};

#define PREQ_AND_AFTER(s) STAGES_FROM(s)
const struct rl_ctxdef rl_ctx_table[C__COUNT] = {
    [C_CLIENT_IP]   = { "client.ip",    TY(T_IP, 0),     STAGES_ALL, 0 },
    [C_CLIENT_PORT] = { "client.port",  TY(T_INT, 0),    STAGES_ALL, 0 },
    [C_CLIENT_PTR]  = { "client.ptr",   TY(T_FQDN, 0),   STAGES_ALL, 0 },
    [C_HELO]        = { "helo",         TY(T_STRING, 0), STAGES_FROM(STAGE_HELO), 0 },
    [C_AUTH_USER]   = { "auth.user",    TY(T_STRING, 0), STAGES_FROM(STAGE_AUTH), 0 },
    [C_TLS_VERSION] = { "tls.version",  TY(T_STRING, 0), STAGES_ALL, 0 },
    [C_TLS_CIPHER]  = { "tls.cipher",   TY(T_STRING, 0), STAGES_ALL, 0 },
    [C_MAIL_FROM]   = { "mail_from",    TY(T_ADDR, 0),   STAGES_FROM(STAGE_MAIL), 0 },
    [C_RCPT]        = { "rcpt",         TY(T_ADDR, 0),   STAGE_BIT(STAGE_RCPT), 0 },
    [C_RCPT_LIST]   = { "rcpt_list",    TY(T_LIST, T_ADDR), STAGES_FROM(STAGE_RCPT), 0 },
    [C_MSG_HEADER]  = { "msg.header",   TY(T_STRING, 0), STAGES_FROM(STAGE_DATA), 1 },
    [C_MSG_SUBJECT] = { "msg.subject",  TY(T_STRING, 0), STAGES_FROM(STAGE_DATA), 0 },
    [C_MSG_SIZE]    = { "msg.size",     TY(T_INT, 0),    STAGES_FROM(STAGE_DATA), 0 },
    [C_MSG_BODY]    = { "msg.body",     TY(T_STRING, 0), STAGES_FROM(STAGE_DATA), 0 },
    [C_SPF]         = { "spf.result",   TY(T_STRING, 0), STAGES_FROM(STAGE_MAIL), 0 },
    [C_DKIM]        = { "dkim.result",  TY(T_STRING, 0), STAGES_FROM(STAGE_DATA), 0 },
    [C_DMARC]       = { "dmarc.result", TY(T_STRING, 0), STAGES_FROM(STAGE_DATA), 0 },
    [C_QUEUE_ID]    = { "queue_id",     TY(T_STRING, 0), STAGES_FROM(STAGE_DATA), 0 },
    [C_SPF_DOMAIN]  = { "spf.domain",   TY(T_FQDN, 0),   STAGES_FROM(STAGE_MAIL), 0 },
    [C_DKIM_DOMAINS] = { "dkim.domains", TY(T_LIST, T_FQDN), STAGES_FROM(STAGE_DATA), 0 },
    [C_DMARC_POLICY] = { "dmarc.policy", TY(T_STRING, 0), STAGES_FROM(STAGE_DATA), 0 },
};
const int rl_ctx_count = C__COUNT;

int rl_ctx_find(const char *name, size_t n)
{
    for (int i = 0; i < C__COUNT; i++)
        if (strlen(rl_ctx_table[i].name) == n && memcmp(rl_ctx_table[i].name, name, n) == 0)
            return i;
    return -1;
}

int rl_ctx_is_namespace(const char *name, size_t n)
{
    return rl_ctx_example(name, n) != NULL;
}

const char *rl_ctx_example(const char *ns, size_t n)
{
    for (int i = 0; i < C__COUNT; i++) {
        const char *nm = rl_ctx_table[i].name;
        if (strncmp(nm, ns, n) == 0 && nm[n] == '.')
            return nm;
    }
    return NULL;
}

/* ---- the transaction ----------------------------------------------------------------------- */
static char empty[1];

void rl_txn_init(struct rl_txn *t)
{
    memset(t, 0, sizeof(*t));
    for (int i = 0; i < RL_F__COUNT; i++)
        t->f[i] = empty;
    t->faccept_stage = -1;
}

void rl_txn_set(struct rl_txn *t, enum rl_field f, const char *v)
{
    if ((unsigned)f >= RL_F__COUNT)
        return;
    if (t->f[f] != empty)
        free(t->f[f]);
    t->f[f] = v && *v ? xstrdup(v) : empty;
    if (f == RL_MSG_PATH && t->msg) {
        rl_msgcache_free(t->msg);
        t->msg = NULL;
    }
}

void rl_txn_add_rcpt(struct rl_txn *t, const char *addr)
{
    if (t->nrcpts == t->caprcpts) {
        t->caprcpts = t->caprcpts ? t->caprcpts * 2 : 8;
        t->rcpts = xrealloc(t->rcpts, sizeof(char *) * (size_t)t->caprcpts);
    }
    t->rcpts[t->nrcpts++] = xstrdup(addr ? addr : "");
}

void rl_txn_reset_mail(struct rl_txn *t)
{
    static const enum rl_field mail_fields[] = { RL_MAIL_FROM, RL_RCPT, RL_QUEUE_ID, RL_MSG_PATH,
                                                 RL_SPF, RL_DKIM, RL_DMARC, RL_SPF_DOMAIN,
                                                 RL_DKIM_DOMAINS, RL_DMARC_POLICY };
    for (size_t i = 0; i < sizeof(mail_fields) / sizeof(mail_fields[0]); i++)
        rl_txn_set(t, mail_fields[i], NULL);
    for (int i = 0; i < t->nrcpts; i++)
        free(t->rcpts[i]);
    t->nrcpts = 0;
    t->msg_size = 0;
    if (t->faccept && t->faccept_stage >= STAGE_MAIL) {
        t->faccept = 0;
        t->faccept_stage = -1;
        t->faccept_rule[0] = '\0';
    }
}

void rl_txn_free(struct rl_txn *t)
{
    for (int i = 0; i < RL_F__COUNT; i++)
        if (t->f[i] != empty)
            free(t->f[i]);
    for (int i = 0; i < t->nrcpts; i++)
        free(t->rcpts[i]);
    free(t->rcpts);
    if (t->msg)
        rl_msgcache_free(t->msg);
    rl_txn_init(t);
}

/* ---- the message ---------------------------------------------------------------------------- */
struct rl_msgcache {
    int failed;
    char *hdr; size_t hlen;       /* header section (LF line ends) */
    char *body; size_t blen;      /* first RL_BODY_MAX bytes of the body */
    uint64_t size;                /* whole content */
};

void rl_msgcache_free(struct rl_msgcache *m)
{
    free(m->hdr);
    free(m->body);
    free(m);
}

static struct rl_msgcache *msg_load(struct rl_vm *vm)
{
    struct rl_txn *t = vm->txn;
    if (t->msg)
        return t->msg->failed ? NULL : t->msg;
    struct rl_msgcache *m = xcalloc(1, sizeof(*m));
    t->msg = m;
    m->hdr = xstrdup("");
    m->body = xstrdup("");
    if (t->f[RL_MSG_PATH][0] == '\0')
        return m;            /* no message (yet): empty headers and body */
    int fd = open(t->f[RL_MSG_PATH], O_RDONLY | O_CLOEXEC);
    struct qf_env env;
    char err[128] = "";
    if (fd < 0 || qf_read(fd, &env, err, sizeof(err)) < 0) {
        rl_vm_fail(vm, V_TEMPFAIL, "cannot read message %s: %s", t->f[RL_MSG_PATH],
                   fd < 0 ? strerror(errno) : err);
        if (fd >= 0)
            close(fd);
        m->failed = 1;
        return NULL;
    }
    m->size = env.content_len;
    size_t want = env.content_len > RL_HEADERS_MAX + RL_BODY_MAX ? RL_HEADERS_MAX + RL_BODY_MAX
                                                                  : (size_t)env.content_len;
    char *all = xmalloc(want + 1);
    if (fdio_pread_all(fd, all, want, env.content_off) < 0) {
        rl_vm_fail(vm, V_TEMPFAIL, "cannot read message %s: short read", t->f[RL_MSG_PATH]);
        free(all);
        close(fd);
        qf_env_free(&env);
        m->failed = 1;
        return NULL;
    }
    close(fd);
    qf_env_free(&env);
    all[want] = '\0';
    struct hdr_scan hs;
    hdr_scan_init(&hs);
    hdr_scan_feed(&hs, all, want > RL_HEADERS_MAX ? RL_HEADERS_MAX : want);
    hdr_scan_finish(&hs);
    size_t hend = (size_t)hs.end_off, bstart = (size_t)hs.body_off;
    if (hend > want)
        hend = want;
    if (bstart > want)
        bstart = want;
    free(m->hdr);
    free(m->body);
    m->hdr = xstrndup(all, hend);
    m->hlen = hend;
    size_t bl = want - bstart > RL_BODY_MAX ? RL_BODY_MAX : want - bstart;
    m->body = xstrndup(all + bstart, bl);
    m->blen = bl;
    free(all);
    return m;
}

/* The first field `name` (unfolded, leading blanks dropped), "" if absent. */
static void header_value(struct rl_vm *vm, const struct rl_msgcache *m, const char *name,
                         size_t nlen, struct rl_value *out)
{
    out->t = T_STRING;
    out->u.s = "";
    out->len = 0;
    const char *p = m->hdr, *end = m->hdr + m->hlen;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;
        if (*p != ' ' && *p != '\t' && (size_t)(le - p) > nlen && p[nlen] == ':' &&
            strncasecmp(p, name, nlen) == 0) {
            buf_reset(&vm->tmp);
            const char *v = p + nlen + 1;
            for (;;) {
                buf_append(&vm->tmp, v, (size_t)(le - v));
                if (le >= end || le + 1 >= end || (le[1] != ' ' && le[1] != '\t'))
                    break;
                v = le + 1;
                const char *e2 = memchr(v, '\n', (size_t)(end - v));
                le = e2 ? e2 : end;
            }
            size_t s = 0;
            while (s < vm->tmp.len && (vm->tmp.data[s] == ' ' || vm->tmp.data[s] == '\t'))
                s++;
            size_t e = vm->tmp.len;
            while (e > s && (vm->tmp.data[e - 1] == ' ' || vm->tmp.data[e - 1] == '\t' ||
                             vm->tmp.data[e - 1] == '\r'))
                e--;
            out->u.s = rl_vm_strdup(vm, vm->tmp.data + s, e - s);
            out->len = (uint32_t)(e - s);
            return;
        }
        p = le + 1;
    }
}

static void str_val(struct rl_value *out, int t, const char *s)
{
    out->t = (uint8_t)t;
    out->u.s = s;
    out->len = (uint32_t)strlen(s);
}

/* A value that may still be unset ("none" for the authentication results). */
static void result_val(struct rl_value *out, const char *s)
{
    str_val(out, T_STRING, *s ? s : "none");
}

/* A list value of n elements of type et in VM memory (n set), or NULL:
 * then out is the empty list (memory cap reached). */
static struct rl_list *list_val(struct rl_vm *vm, struct rl_value *out, int et, uint32_t n)
{
    struct rl_list *l = rl_vm_alloc(vm, sizeof(*l) + sizeof(l->v[0]) * (size_t)n);
    out->t = T_LIST;
    out->et = (uint8_t)et;
    if (l == NULL) {
        static const struct rl_list none = { 0 };
        out->u.p = &none;
        return NULL;
    }
    l->n = n;
    out->u.p = l;
    return l;
}

/* "a.test b.test" -> a list of fqdn (dkim.domains) */
static void domains_val(struct rl_vm *vm, struct rl_value *out, const char *s)
{
    uint32_t n = 0;
    for (const char *p = s; *p; p++)
        n += *p != ' ' && (p == s || p[-1] == ' ');
    struct rl_list *l = list_val(vm, out, T_FQDN, n);
    if (l == NULL)
        return;
    l->n = 0;
    for (const char *p = s; *p && l->n < n;) {
        while (*p == ' ')
            p++;
        size_t len = strcspn(p, " ");
        if (len == 0)
            break;
        struct rl_value *v = &l->v[l->n++];
        memset(v, 0, sizeof(*v));
        v->t = T_FQDN;
        v->u.s = rl_vm_strdup(vm, p, len);
        v->len = v->u.s ? (uint32_t)len : 0;
        if (v->u.s == NULL)
            v->u.s = "";
        p += len;
    }
}

void rl_ctx_get(struct rl_vm *vm, int id, const struct rl_value *arg, struct rl_value *out)
{
    struct rl_txn *t = vm->txn;
    memset(out, 0, sizeof(*out));
    switch (id) {
    case C_CLIENT_IP:
        out->t = T_IP;
        if (rl_ip_parse(t->f[RL_CLIENT_IP], strlen(t->f[RL_CLIENT_IP]), out->u.ip) < 0)
            memset(out->u.ip, 0, 16);
        return;
    case C_CLIENT_PORT: out->t = T_INT; out->u.i = t->client_port; return;
    case C_CLIENT_PTR: str_val(out, T_FQDN, t->f[RL_CLIENT_PTR]); return;
    case C_HELO: str_val(out, T_STRING, t->f[RL_HELO]); return;
    case C_AUTH_USER: str_val(out, T_STRING, t->f[RL_AUTH_USER]); return;
    case C_TLS_VERSION: str_val(out, T_STRING, t->f[RL_TLS_VERSION]); return;
    case C_TLS_CIPHER: str_val(out, T_STRING, t->f[RL_TLS_CIPHER]); return;
    case C_MAIL_FROM: str_val(out, T_ADDR, t->f[RL_MAIL_FROM]); return;
    case C_RCPT: str_val(out, T_ADDR, t->f[RL_RCPT]); return;
    case C_RCPT_LIST: {
        struct rl_list *l = list_val(vm, out, T_ADDR, (uint32_t)t->nrcpts);
        if (l == NULL)
            return;
        for (int i = 0; i < t->nrcpts; i++) {
            memset(&l->v[i], 0, sizeof(l->v[i]));
            str_val(&l->v[i], T_ADDR, t->rcpts[i]);
        }
        out->u.p = l;
        return;
    }
    case C_SPF: result_val(out, t->f[RL_SPF]); return;
    case C_SPF_DOMAIN: str_val(out, T_FQDN, t->f[RL_SPF_DOMAIN]); return;
    case C_DKIM: result_val(out, t->f[RL_DKIM]); return;
    case C_DKIM_DOMAINS: domains_val(vm, out, t->f[RL_DKIM_DOMAINS]); return;
    case C_DMARC: result_val(out, t->f[RL_DMARC]); return;
    case C_DMARC_POLICY: result_val(out, t->f[RL_DMARC_POLICY]); return;
    case C_QUEUE_ID: str_val(out, T_STRING, t->f[RL_QUEUE_ID]); return;
    default: break;
    }
    /* message values */
    struct rl_msgcache *m = msg_load(vm);
    if (id == C_MSG_SIZE) {
        out->t = T_INT;
        out->u.i = (int64_t)(t->msg_size ? t->msg_size : m ? m->size : 0);
        return;
    }
    if (m == NULL) {
        str_val(out, T_STRING, "");
        return;
    }
    if (id == C_MSG_BODY) {
        out->t = T_STRING;
        out->u.s = m->body;
        out->len = (uint32_t)m->blen;
    } else if (id == C_MSG_SUBJECT) {
        header_value(vm, m, "Subject", 7, out);
    } else if (id == C_MSG_HEADER && arg) {
        char name[HDR_NAME_MAX + 1];
        size_t n = arg->len > HDR_NAME_MAX ? HDR_NAME_MAX : arg->len;
        memcpy(name, arg->u.s, n);
        name[n] = '\0';
        header_value(vm, m, name, strlen(name), out);
    } else {
        str_val(out, T_STRING, "");
    }
}
