/*
 * dns_int.h - private to lib/dns: the context and query structures shared
 * by dns.c (queries, loop), dns_answer.c (copying answers) and
 * dns_fcrdns.c. Nothing outside lib/dns includes it.
 */
#ifndef POSTERN_DNS_INT_H
#define POSTERN_DNS_INT_H

#include <stdint.h>

#include "dns/dns.h"

struct ub_ctx;
struct ub_result;
struct event;

enum { Q_PLAIN, Q_MX };

struct dns_cache;

struct dns_ctx {
    struct ub_ctx     *ub;
    struct event_base *base;          /* NULL: blocking calls only */
    struct event      *ev;            /* ub_fd, added while nub > 0 */
    int                timeout_ms, max_queries, nq;
    int                nub;           /* of nq, those inside libunbound */
    struct dns_query  *head;          /* outstanding */
    struct dns_cache  *cache;         /* dns_cache.c; NULL until the first answer */
    long               hits;          /* answered from it */
};

struct dns_query {
    struct dns_ctx   *ctx;
    struct dns_query *next, *prev;
    struct event     *timer;          /* with an event base */
    int64_t           deadline;       /* clock_now_ms(); for dns_wait */
    int               async_id, kind;
    struct dns_answer *hit;           /* answered from the cache: delivered from the
                                       * loop (timer made active) or dns_wait */
    int               cached;         /* hit was set (never inside libunbound) */
    uint16_t          type;
    dns_cb            cb;
    void             *arg;
    char              name[DNS_NAME_MAX + 2];
};

/* dns_cache.c: answers kept for their TTL (see there). get returns a copy
 * the caller owns, or NULL; put copies a; free empties the cache. */
struct dns_answer *dns_cache_get(struct dns_ctx *ctx, const char *name, uint16_t type,
                                 int kind);
void dns_cache_put(struct dns_ctx *ctx, const char *name, uint16_t type, int kind,
                   const struct dns_answer *a, uint32_t ttl);
void dns_cache_free(struct dns_ctx *ctx);
struct dns_answer *dns_answer_dup(const struct dns_answer *a);

/* dns_answer.c: ub_result -> status, DNSSEC state and parsed records */
void dns_answer_fill(struct dns_answer *a, const struct ub_result *r);
/* dns.c: poll until *done (blocking calls); query without an event base */
void dns_wait(struct dns_ctx *ctx, const int *done);
struct dns_query *dns_query_any(struct dns_ctx *ctx, const char *name, uint16_t type,
                                dns_cb cb, void *arg);

#endif
