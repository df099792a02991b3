/*
 * dns.c - the resolver context and its queries: libunbound inside a
 * libevent loop (ub_fd watched, ub_process on readiness), per-query
 * timeouts, the outstanding-query bound, answers copied into typed
 * records, and the blocking variants (poll on the same fd).
 *
 * Used by every process that looks names up (smtpd for client.ptr, the
 * smtp agent for MX/A/AAAA/TLSA). Never blocks a loop; never hands out
 * data from a bogus or malformed answer.
 */
#include <errno.h>
#include <unistd.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <unbound.h>

#include "config/config.h"
#include "dns/dns_int.h"
#include "util/clock.h"
#include "util/log.h"
#include "metrics/metrics.h"

void dns_config_from(const struct config *c, struct dns_config *dc_r)
{
    memset(dc_r, 0, sizeof *dc_r);
    dc_r->unbound_config = c->dns_unbound_config;
    dc_r->dnssec = c->dns_dnssec;
    dc_r->timeout_ms = c->dns_timeout > 0 ? c->dns_timeout * 1000 : 0;
}

/* Applies the settings to a fresh ub_ctx; 0, or -1 with the reason. */
static int ctx_setup(struct ub_ctx *ub, const struct dns_config *dc, buf_t *err)
{
    int rc;
    if ((rc = ub_ctx_async(ub, 1)) != 0) {
        buf_printf(err, "libunbound threads: %s", ub_strerror(rc));
        return -1;
    }
    if (dc->unbound_config) {
        /* the file says everything: forwarders, stubs, anchors, local-data */
        if ((rc = ub_ctx_config(ub, dc->unbound_config)) != 0) {
            buf_printf(err, "%s: %s (errno %d)", dc->unbound_config, ub_strerror(rc), errno);
            return -1;
        }
        return 0;
    }
    const char *rconf = dc->resolv_conf ? dc->resolv_conf : "/etc/resolv.conf";
    if ((rc = ub_ctx_resolvconf(ub, rconf)) != 0) {
        buf_printf(err, "%s: %s", rconf, ub_strerror(rc));
        return -1;
    }
    if (dc->dnssec) {
        const char *ta = dc->trust_anchor ? dc->trust_anchor : DNS_ROOT_KEY;
        if (access(ta, R_OK) != 0) {
            buf_printf(err, "DNSSEC trust anchor %s: %s", ta, strerror(errno));
            return -1;
        }
        if ((rc = ub_ctx_add_ta_file(ub, ta)) != 0) {
            buf_printf(err, "DNSSEC trust anchor %s: %s", ta, ub_strerror(rc));
            return -1;
        }
    }
    return 0;
}

/* libunbound reads trust anchor files when it first resolves: resolve
 * "localhost" (always answered from its built-in local zone, no packet
 * sent) now, so that happens before a chroot and a bad anchor fails here. */
static int ctx_prime(struct ub_ctx *ub, buf_t *err)
{
    struct ub_result *r = NULL;
    int rc = ub_resolve(ub, "localhost.", DNS_T_A, 1, &r);
    if (r)
        ub_resolve_free(r);
    if (rc != 0) {
        buf_printf(err, "libunbound start-up: %s", ub_strerror(rc));
        return -1;
    }
    return 0;
}

struct dns_ctx *dns_ctx_new(const struct dns_config *dc, struct event_base *base, buf_t *err)
{
    struct ub_ctx *ub = ub_ctx_create();
    if (!ub) {
        buf_printf(err, "cannot create a libunbound context");
        return NULL;
    }
    if (ctx_setup(ub, dc, err) < 0 || ctx_prime(ub, err) < 0) {
        ub_ctx_delete(ub);
        return NULL;
    }
    struct dns_ctx *ctx = xcalloc(1, sizeof *ctx);
    ctx->ub = ub;
    ctx->base = base;
    ctx->timeout_ms = dc->timeout_ms > 0 ? dc->timeout_ms : 10000;
    ctx->max_queries = dc->max_queries > 0 ? dc->max_queries : 1000;
    return ctx;
}

void dns_ctx_attach(struct dns_ctx *ctx, struct event_base *base)
{
    if (ctx->nq > 0)
        log_panic("dns_ctx_attach with %d queries outstanding", ctx->nq);
    if (ctx->ev)
        event_free(ctx->ev);
    ctx->ev = NULL;
    ctx->base = base;
}

void dns_ctx_free(struct dns_ctx *ctx)
{
    if (!ctx)
        return;
    while (ctx->head)
        dns_cancel(ctx->head);
    if (ctx->ev)
        event_free(ctx->ev);
    ub_ctx_delete(ctx->ub);
    dns_cache_free(ctx);
    free(ctx);
}

int dns_ctx_pending(const struct dns_ctx *ctx)
{
    return ctx->nq;
}

long dns_ctx_cache_hits(const struct dns_ctx *ctx)
{
    return ctx->hits;
}

/* ---- the loop side ---------------------------------------------------- */

static void on_ub_fd(evutil_socket_t fd, short what, void *arg)
{
    struct dns_ctx *ctx = arg;
    int rc = ub_process(ctx->ub);
    if (rc != 0)
        log_warn("dns: ub_process: %s", ub_strerror(rc));
}

/* Watches ub_fd while queries are outstanding only, so an idle context
 * never keeps a loop alive. */
static int ctx_watch(struct dns_ctx *ctx, int on)
{
    if (!ctx->base)
        return 0;
    if (!ctx->ev) {
        int fd = ub_fd(ctx->ub);
        if (fd < 0)
            return -1;
        ctx->ev = event_new(ctx->base, fd, EV_READ | EV_PERSIST, on_ub_fd, ctx);
        if (!ctx->ev)
            return -1;
    }
    return on ? event_add(ctx->ev, NULL) : event_del(ctx->ev);
}

static void query_unlink(struct dns_query *q)
{
    struct dns_ctx *ctx = q->ctx;
    if (q->prev)
        q->prev->next = q->next;
    else
        ctx->head = q->next;
    if (q->next)
        q->next->prev = q->prev;
    if (q->timer)
        event_free(q->timer);
    ctx->nq--;
    if (!q->cached && --ctx->nub == 0)
        ctx_watch(ctx, 0);
}

static struct dns_answer *answer_new(const struct dns_query *q)
{
    struct dns_answer *a = xcalloc(1, sizeof *a);
    a->qtype = q->type;
    a->rcode = -1;
    a->status = DNS_TEMPFAIL;
    str_copy(a->qname, sizeof a->qname, q->name);
    return a;
}

static const char *type_label(uint16_t t)
{
    switch (t) {
    case DNS_T_A:    return "A";
    case DNS_T_AAAA: return "AAAA";
    case DNS_T_MX:   return "MX";
    case DNS_T_TXT:  return "TXT";
    case DNS_T_PTR:  return "PTR";
    case DNS_T_TLSA: return "TLSA";
    default:         return "other";
    }
}

/* Finishes q: unlinks, post-processes, hands a to the callback, frees q. */
static void query_done(struct dns_query *q, struct dns_answer *a)
{
    dns_cb cb = q->cb;
    void *arg = q->arg;
    query_unlink(q);
    if (q->kind == Q_MX)
        dns_mx_finish(a, q->name);
    metric_add(MET_DNS_QUERIES, 1, log_progname(), type_label(q->type));
    if (a->status == DNS_TEMPFAIL)
        metric_add(MET_DNS_FAILURES, 1, log_progname(), type_label(q->type));
    if (log_trace_on(TRACE_DNS))
        log_trace(TRACE_DNS, "dns: %s type %u: %s, %s, %d records%s%s", a->qname, a->qtype,
                  dns_status_name(a->status), dns_sec_name(a->sec), a->n,
                  a->why[0] ? ": " : "", a->why);
    free(q);
    cb(a, arg);
}

static void on_ub_answer(void *arg, int err, struct ub_result *r)
{
    struct dns_query *q = arg;
    struct dns_answer *a = answer_new(q);
    if (err != 0)
        str_format(a->why, sizeof a->why, "resolver: %s", ub_strerror(err));
    else {
        dns_answer_fill(a, r);
        dns_cache_put(q->ctx, q->name, q->type, q->kind, a, r->ttl < 0 ? 0 : (uint32_t)r->ttl);
    }
    if (r)
        ub_resolve_free(r);
    query_done(q, a);
}

/* Per-query timeout: cancel inside libunbound, answer "timeout". */
static void query_expire(struct dns_query *q)
{
    struct dns_answer *a = answer_new(q);
    ub_cancel(q->ctx->ub, q->async_id);
    str_format(a->why, sizeof a->why, "timeout after %d ms", q->ctx->timeout_ms);
    query_done(q, a);
}

/* A cached answer, delivered from the loop like any other. */
static void query_hit(struct dns_query *q)
{
    struct dns_answer *a = q->hit;
    q->hit = NULL;
    query_done(q, a);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct dns_query *q = arg;
    if (q->hit)
        query_hit(q);
    else
        query_expire(q);
}

/* Common start: checks the bounds, registers with libunbound and the loop. */
static struct dns_query *query_start(struct dns_ctx *ctx, const char *name, uint16_t type,
                                     int kind, dns_cb cb, void *arg)
{
    size_t len = strlen(name);
    if (len == 0 || len > DNS_NAME_MAX + 1 || ctx->nq >= ctx->max_queries) {
        log_trace(TRACE_DNS, "dns: %s type %u not started (%s)", name, type,
                  ctx->nq >= ctx->max_queries ? "too many queries" : "bad name");
        return NULL;
    }
    struct dns_query *q = xcalloc(1, sizeof *q);
    q->ctx = ctx;
    q->type = type;
    q->kind = kind;
    q->cb = cb;
    q->arg = arg;
    q->deadline = clock_now_ms() + ctx->timeout_ms;
    memcpy(q->name, name, len + 1);
    if (ctx->base) {
        struct timeval tv = { ctx->timeout_ms / 1000, (ctx->timeout_ms % 1000) * 1000 };
        q->timer = evtimer_new(ctx->base, on_timeout, q);
        if (!q->timer || evtimer_add(q->timer, &tv) < 0)
            goto fail;
    }
    q->hit = dns_cache_get(ctx, name, type, kind);
    q->cached = q->hit != NULL;
    if (q->hit) {
        ctx->hits++;
        if (q->timer)                  /* answered from the loop, never from here */
            event_active(q->timer, EV_TIMEOUT, 0);
    } else {
        int rc = ub_resolve_async(ctx->ub, name, type, 1, q, on_ub_answer, &q->async_id);
        if (rc != 0) {
            log_warn("dns: %s: %s", name, ub_strerror(rc));
            goto fail;
        }
        if (ctx->nub++ == 0 && ctx_watch(ctx, 1) < 0)
            log_warn("dns: cannot watch the resolver");
    }
    q->next = ctx->head;
    if (ctx->head)
        ctx->head->prev = q;
    ctx->head = q;
    ctx->nq++;
    return q;
fail:
    if (q->timer)
        event_free(q->timer);
    free(q);
    return NULL;
}

struct dns_query *dns_query(struct dns_ctx *ctx, const char *name, uint16_t type,
                            dns_cb cb, void *arg)
{
    if (!ctx->base)
        return NULL;
    return query_start(ctx, name, type, Q_PLAIN, cb, arg);
}

struct dns_query *dns_query_mx(struct dns_ctx *ctx, const char *domain, dns_cb cb, void *arg)
{
    if (!ctx->base)
        return NULL;
    return query_start(ctx, domain, DNS_T_MX, Q_MX, cb, arg);
}

void dns_cancel(struct dns_query *q)
{
    if (!q)
        return;
    if (q->hit)
        dns_answer_free(q->hit);
    else
        ub_cancel(q->ctx->ub, q->async_id);
    query_unlink(q);
    free(q);
}

/* ---- blocking -------------------------------------------------------- */

/* Polls ub_fd and expires overdue queries until *done. Also delivers the
 * answers of other outstanding queries (their callbacks run here). */
void dns_wait(struct dns_ctx *ctx, const int *done)
{
    int fd = ub_fd(ctx->ub);
    while (!*done && ctx->head) {
        struct dns_query *hit = ctx->head;
        while (hit && !hit->hit)
            hit = hit->next;
        if (hit) {                     /* answered from the cache */
            query_hit(hit);
            continue;
        }
        int64_t now = clock_now_ms(), next = INT64_MAX;
        for (struct dns_query *q = ctx->head; q; q = q->next)
            if (q->deadline < next)
                next = q->deadline;
        if (next <= now) {
            for (struct dns_query *q = ctx->head; q; q = q->next)
                if (q->deadline <= now) {
                    query_expire(q);
                    break;          /* the list changed: look again */
                }
            continue;
        }
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int n = poll(&pfd, 1, (int)(next - now));
        if (n < 0 && errno != EINTR)
            log_fatal("dns: poll: %s", strerror(errno));
        if (n > 0)
            ub_process(ctx->ub);
    }
}

struct sync_state {
    int done;
    struct dns_answer *a;
};

static void on_sync(struct dns_answer *a, void *arg)
{
    struct sync_state *s = arg;
    s->a = a;
    s->done = 1;
}

static struct dns_answer *resolve_kind(struct dns_ctx *ctx, const char *name, uint16_t type,
                                       int kind)
{
    struct sync_state s = { 0, NULL };
    if (!query_start(ctx, name, type, kind, on_sync, &s)) {
        struct dns_query tmp = { .type = type };
        str_copy(tmp.name, sizeof tmp.name, name);
        struct dns_answer *a = answer_new(&tmp);
        str_copy(a->why, sizeof a->why, "query not started (bad name or too many queries)");
        return a;
    }
    dns_wait(ctx, &s.done);
    return s.a;
}

struct dns_answer *dns_resolve(struct dns_ctx *ctx, const char *name, uint16_t type)
{
    return resolve_kind(ctx, name, type, Q_PLAIN);
}

struct dns_answer *dns_resolve_mx(struct dns_ctx *ctx, const char *domain)
{
    return resolve_kind(ctx, domain, DNS_T_MX, Q_MX);
}

int dns_tlsa_name(int port, const char *host, char *out, size_t cap)
{
    int n = snprintf(out, cap, "_%d._tcp.%s", port, host);
    return n < 0 || (size_t)n >= cap || port < 1 || port > 65535 ? -1 : 0;
}

struct dns_answer *dns_resolve_tlsa(struct dns_ctx *ctx, int port, const char *host)
{
    char name[DNS_NAME_MAX + 32];
    if (dns_tlsa_name(port, host, name, sizeof(name)) < 0)
        name[0] = '\0';   /* not started: a temporary failure answer */
    return resolve_kind(ctx, name, DNS_T_TLSA, Q_PLAIN);
}

/* internal: start without needing an event base (fcrdns in sync mode) */
struct dns_query *dns_query_any(struct dns_ctx *ctx, const char *name, uint16_t type,
                                dns_cb cb, void *arg)
{
    return query_start(ctx, name, type, Q_PLAIN, cb, arg);
}

struct dns_ctx *dns_ctx_for_daemon(const struct config *cfg, const char *consequence)
{
    struct dns_config dc;
    buf_t err;
    dns_config_from(cfg, &dc);
    buf_init(&err, 64);
    struct dns_ctx *ctx = dns_ctx_new(&dc, NULL, &err);
    if (ctx == NULL)
        log_error("dns: %s: %s", err.data, consequence);
    buf_free(&err);
    return ctx;
}
