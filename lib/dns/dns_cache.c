/*
 * dns_cache.c - a small answer cache in front of libunbound, per context.
 *
 * Why: libunbound answers a repeated question from its own cache, but every
 * question still crosses to its resolver thread and back through a pipe
 * (several syscalls and two thread wake-ups; a blocking ub_resolve costs
 * more). Mail repeats questions all the time: the SPF record of a sender's
 * domain, its _dmarc record, the MX of a busy destination. Keeping the
 * parsed answer here makes a repeat cost a hash lookup and a copy.
 *
 * What is kept: complete answers (found, not found, Null MX) with a time to
 * live above 0, never a temporary failure or a bogus answer (those are
 * asked again). An entry lives for the answer's TTL (the smallest of its
 * records, or the negative TTL libunbound derived from the SOA), at most
 * DNS_CACHE_TTL_MAX seconds, so a change in DNS is seen as soon as it
 * would be through libunbound itself. The DNSSEC state is kept with it.
 *
 * Bounds: at most DNS_CACHE_ENTRIES entries and DNS_CACHE_BYTES of record
 * data per context; an answer over DNS_CACHE_ANSWER_MAX bytes is not kept.
 * When full, the oldest entry goes (insertion order). Keys are the type,
 * the query kind and the name folded to lower case.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "util/hash.h"
#include "dns/dns_int.h"
#include "util/clock.h"

#define DNS_CACHE_BUCKETS    512
#define DNS_CACHE_ENTRIES    1024
#define DNS_CACHE_BYTES      (1024 * 1024)
#define DNS_CACHE_ANSWER_MAX 8192
#define DNS_CACHE_TTL_MAX    3600

struct centry {
    struct centry *hnext;              /* bucket chain */
    struct centry *older, *newer;      /* insertion order */
    uint32_t hash;
    uint16_t type;
    int kind;
    int64_t expires_ms;
    size_t bytes;
    struct dns_answer *a;
    char name[DNS_NAME_MAX + 2];       /* lower case */
};

struct dns_cache {
    struct centry *bucket[DNS_CACHE_BUCKETS];
    struct centry *oldest, *newest;
    int n;
    size_t bytes;
};

static void fold(const char *in, char *out, size_t cap)
{
    size_t i = 0;
    for (; in[i] && i + 1 < cap; i++)
        out[i] = (char)tolower((unsigned char)in[i]);
    if (i > 0 && out[i - 1] == '.')
        i--;                           /* "example.com." is "example.com" */
    out[i] = '\0';
}

static uint32_t hash_of(const char *name, uint16_t type, int kind)
{
    return fnv1a_str(FNV1A_INIT ^ type ^ ((uint32_t)kind << 16), name);
}

/* Bytes an answer's records hold (the bound and the budget). */
static size_t answer_bytes(const struct dns_answer *a)
{
    size_t b = sizeof(*a) + (size_t)a->n * sizeof(struct dns_rr);
    for (int i = 0; i < a->n; i++) {
        const struct dns_rr *r = &a->rr[i];
        switch (r->type) {
        case DNS_T_MX:   b += strlen(r->u.mx.host) + 1; break;
        case DNS_T_TLSA: b += r->u.tlsa.len; break;
        case DNS_T_TXT:  b += r->u.txt.len + 1; break;
        case DNS_T_PTR:  b += strlen(r->u.ptr) + 1; break;
        default: break;
        }
    }
    return b;
}

static void *memdup(const void *p, size_t n)
{
    void *c = xmalloc(n ? n : 1);
    if (n)
        memcpy(c, p, n);
    return c;
}

struct dns_answer *dns_answer_dup(const struct dns_answer *a)
{
    struct dns_answer *c = xmalloc(sizeof *c);
    *c = *a;
    c->rr = xcalloc((size_t)(a->n ? a->n : 1), sizeof *c->rr);
    for (int i = 0; i < a->n; i++) {
        const struct dns_rr *r = &a->rr[i];
        struct dns_rr *d = &c->rr[i];
        *d = *r;
        switch (r->type) {
        case DNS_T_MX:   d->u.mx.host = xstrdup(r->u.mx.host); break;
        case DNS_T_TLSA: d->u.tlsa.data = memdup(r->u.tlsa.data, r->u.tlsa.len); break;
        case DNS_T_TXT:  d->u.txt.text = memdup(r->u.txt.text, r->u.txt.len + 1); break;
        case DNS_T_PTR:  d->u.ptr = xstrdup(r->u.ptr); break;
        default: break;
        }
    }
    return c;
}

static void entry_unlink(struct dns_cache *c, struct centry *e)
{
    struct centry **pp = &c->bucket[e->hash % DNS_CACHE_BUCKETS];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    if (e->older)
        e->older->newer = e->newer;
    else
        c->oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        c->newest = e->older;
    c->n--;
    c->bytes -= e->bytes;
    dns_answer_free(e->a);
    free(e);
}

static struct centry *find(struct dns_cache *c, const char *name, uint16_t type, int kind,
                           uint32_t h)
{
    for (struct centry *e = c->bucket[h % DNS_CACHE_BUCKETS]; e; e = e->hnext)
        if (e->hash == h && e->type == type && e->kind == kind && strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

struct dns_answer *dns_cache_get(struct dns_ctx *ctx, const char *name, uint16_t type,
                                 int kind)
{
    struct dns_cache *c = ctx->cache;
    if (c == NULL || c->n == 0)
        return NULL;
    char key[DNS_NAME_MAX + 2];
    fold(name, key, sizeof key);
    uint32_t h = hash_of(key, type, kind);
    struct centry *e = find(c, key, type, kind, h);
    if (e == NULL)
        return NULL;
    if (e->expires_ms <= clock_now_ms()) {
        entry_unlink(c, e);
        return NULL;
    }
    struct dns_answer *a = dns_answer_dup(e->a);
    str_copy(a->qname, sizeof a->qname, name);    /* as this caller asked it */
    return a;
}

void dns_cache_put(struct dns_ctx *ctx, const char *name, uint16_t type, int kind,
                   const struct dns_answer *a, uint32_t ttl)
{
    if (ttl == 0 || a->sec == DNS_SEC_BOGUS ||
        (a->status != DNS_FOUND && a->status != DNS_NOTFOUND))
        return;
    size_t bytes = answer_bytes(a);
    if (bytes > DNS_CACHE_ANSWER_MAX)
        return;
    if (ctx->cache == NULL)
        ctx->cache = xcalloc(1, sizeof *ctx->cache);
    struct dns_cache *c = ctx->cache;
    char key[DNS_NAME_MAX + 2];
    fold(name, key, sizeof key);
    uint32_t h = hash_of(key, type, kind);
    struct centry *old = find(c, key, type, kind, h);
    if (old)
        entry_unlink(c, old);
    while (c->oldest && (c->n >= DNS_CACHE_ENTRIES || c->bytes + bytes > DNS_CACHE_BYTES))
        entry_unlink(c, c->oldest);
    struct centry *e = xcalloc(1, sizeof *e);
    e->hash = h;
    e->type = type;
    e->kind = kind;
    e->bytes = bytes;
    e->expires_ms = clock_now_ms() + 1000 * (int64_t)(ttl > DNS_CACHE_TTL_MAX ?
                                                       DNS_CACHE_TTL_MAX : ttl);
    e->a = dns_answer_dup(a);
    str_copy(e->name, sizeof e->name, key);
    e->hnext = c->bucket[h % DNS_CACHE_BUCKETS];
    c->bucket[h % DNS_CACHE_BUCKETS] = e;
    e->older = c->newest;
    if (c->newest)
        c->newest->newer = e;
    else
        c->oldest = e;
    c->newest = e;
    c->n++;
    c->bytes += bytes;
}

void dns_cache_free(struct dns_ctx *ctx)
{
    struct dns_cache *c = ctx->cache;
    if (c == NULL)
        return;
    while (c->oldest)
        entry_unlink(c, c->oldest);
    free(c);
    ctx->cache = NULL;
}
