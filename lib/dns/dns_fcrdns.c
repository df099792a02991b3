/*
 * dns_fcrdns.c - forward-confirmed reverse DNS: the PTR names of an
 * address, then the A (or AAAA) records of each name in turn, until one
 * lists the address again. Only such a name may stand for the client
 * (smtpd's client.ptr): a PTR alone is whatever the address owner wrote.
 *
 * Asynchronous (one query at a time, so a client costs at most one slot of
 * the context), with a blocking wrapper. A temporary failure on the way is
 * reported only when no name could be confirmed.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "dns/dns_int.h"

struct dns_fcrdns {
    struct dns_ctx   *ctx;
    struct dns_query *q;
    dns_fcrdns_cb     cb;
    void             *arg;
    int               family, tempfail, nnames, idx;
    uint8_t           addr[16];
    char             *names[DNS_FCRDNS_NAMES];
};

static void fc_free(struct dns_fcrdns *f)
{
    for (int i = 0; i < f->nnames; i++)
        free(f->names[i]);
    free(f);
}

static void fc_finish(struct dns_fcrdns *f, enum dns_status st, const char *name)
{
    dns_fcrdns_cb cb = f->cb;
    void *arg = f->arg;
    char copy[DNS_NAME_MAX * 4 + 8];
    str_copy(copy, sizeof copy, name);   /* f is freed before the callback */
    fc_free(f);
    cb(st, copy, arg);
}

static void on_forward(struct dns_answer *a, void *arg);

/* Looks up the next PTR name's addresses, or ends. */
static void fc_next(struct dns_fcrdns *f)
{
    uint16_t type = f->family == AF_INET ? DNS_T_A : DNS_T_AAAA;
    while (f->idx < f->nnames) {
        f->q = dns_query_any(f->ctx, f->names[f->idx], type, on_forward, f);
        if (f->q)
            return;
        f->tempfail = 1;         /* could not start: counts as not known */
        f->idx++;
    }
    fc_finish(f, f->tempfail ? DNS_TEMPFAIL : DNS_NOTFOUND, "");
}

static void on_forward(struct dns_answer *a, void *arg)
{
    struct dns_fcrdns *f = arg;
    size_t alen = f->family == AF_INET ? 4 : 16;
    f->q = NULL;
    if (a->status == DNS_TEMPFAIL)
        f->tempfail = 1;
    for (int i = 0; a->status == DNS_FOUND && i < a->n; i++)
        if (a->rr[i].u.addr.family == f->family && memcmp(a->rr[i].u.addr.addr, f->addr, alen) == 0) {
            dns_answer_free(a);
            fc_finish(f, DNS_FOUND, f->names[f->idx]);
            return;
        }
    dns_answer_free(a);
    f->idx++;
    fc_next(f);
}

static void on_ptr(struct dns_answer *a, void *arg)
{
    struct dns_fcrdns *f = arg;
    f->q = NULL;
    if (a->status != DNS_FOUND) {
        enum dns_status st = a->status == DNS_TEMPFAIL ? DNS_TEMPFAIL : DNS_NOTFOUND;
        dns_answer_free(a);
        fc_finish(f, st, "");
        return;
    }
    for (int i = 0; i < a->n && f->nnames < DNS_FCRDNS_NAMES; i++)
        if (strcmp(a->rr[i].u.ptr, ".") != 0 && strlen(a->rr[i].u.ptr) <= DNS_NAME_MAX)
            f->names[f->nnames++] = xstrdup(a->rr[i].u.ptr);
    dns_answer_free(a);
    fc_next(f);
}

struct dns_fcrdns *dns_fcrdns(struct dns_ctx *ctx, const char *ip, dns_fcrdns_cb cb, void *arg)
{
    char rev[80];
    struct dns_fcrdns *f = xcalloc(1, sizeof *f);
    /* an IPv4 client on a dual-stack socket: ::ffff:a.b.c.d */
    if (strncasecmp(ip, "::ffff:", 7) == 0 && strchr(ip + 7, '.'))
        ip += 7;
    if (dns_reverse_name(ip, rev, sizeof rev, &f->family, f->addr) < 0) {
        free(f);
        return NULL;
    }
    f->ctx = ctx;
    f->cb = cb;
    f->arg = arg;
    f->q = dns_query_any(ctx, rev, DNS_T_PTR, on_ptr, f);
    if (!f->q) {
        free(f);
        return NULL;
    }
    return f;
}

void dns_fcrdns_cancel(struct dns_fcrdns *f)
{
    if (!f)
        return;
    dns_cancel(f->q);
    fc_free(f);
}

struct fc_sync {
    int done;
    enum dns_status st;
    char *name_r;
    size_t cap;
};

static void on_fc_sync(enum dns_status st, const char *name, void *arg)
{
    struct fc_sync *s = arg;
    s->st = st;
    if (s->cap)
        str_copy(s->name_r, s->cap, name);
    s->done = 1;
}

enum dns_status dns_fcrdns_sync(struct dns_ctx *ctx, const char *ip, char *name_r, size_t cap)
{
    struct fc_sync s = { 0, DNS_TEMPFAIL, name_r, cap };
    if (cap)
        name_r[0] = '\0';
    if (!dns_fcrdns(ctx, ip, on_fc_sync, &s))
        return DNS_TEMPFAIL;
    dns_wait(ctx, &s.done);
    return s.st;
}
