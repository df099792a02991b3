/*
 * spf.h - Sender Policy Framework (RFC 7208) on Postern's own resolver.
 *
 * One evaluator (spf_eval.c) with no I/O of its own: it asks for one DNS
 * lookup at a time (spf_eval_step) and is handed the answer
 * (spf_eval_answer). It keeps every answer and re-runs check_host() from the
 * start after each one ("replay"), so the algorithm is written as the RFC's
 * plain recursive procedure and still runs inside an event loop. Two
 * drivers: spf_check_sync (CLI: blocking lookups) and spf_check_start
 * (smtpd: lookups in the loop, a callback at the end).
 *
 * Bounds: the RFC's limits (10 DNS-querying terms, 2 void lookups, 10 MX
 * and 10 PTR names) plus at most SPF_MAX_ANSWERS answers kept, macro
 * expansions of at most SPF_EXPAND_MAX bytes, each query bounded by
 * dns.timeout and the whole check by the drivers' overall cap (temperror).
 *
 * Never: trust record text (every parse is bounded and checked), or return
 * anything but one of the seven results.
 */
#ifndef POSTERN_SPF_H
#define POSTERN_SPF_H

#include <stdint.h>

#include "dns/dns.h"

enum spf_result {
    SPF_NONE, SPF_NEUTRAL, SPF_PASS, SPF_FAIL, SPF_SOFTFAIL, SPF_TEMPERROR, SPF_PERMERROR,
};

#define SPF_EXPLAIN_MAX 512          /* bytes kept of an explanation */
#define SPF_OVERALL_MS  20000        /* default cap on one whole check */

struct spf_request {
    const char *ip;         /* the client's address, IPv4 or IPv6 text */
    const char *sender;     /* MAIL FROM (without <>); "" or NULL: the HELO identity */
    const char *helo;       /* HELO/EHLO name; may be "" */
    const char *receiver;   /* %{r}: our host name; NULL: "unknown" */
};

struct spf_outcome {
    enum spf_result result;
    int  helo_identity;                  /* checked postmaster@HELO */
    char domain[DNS_NAME_MAX + 1];       /* the identity's domain */
    char sender[DNS_NAME_MAX + 80];      /* the identity checked (l@o) */
    char explanation[SPF_EXPLAIN_MAX];   /* fail: exp= text or the default */
    char reason[256];                    /* what decided: mechanism or error */
};

const char *spf_result_name(enum spf_result r);

/* ---- the evaluator (no I/O) ------------------------------------------ */
struct spf_eval;
struct spf_eval *spf_eval_new(const struct spf_request *rq);
/* 1: the lookup *name_r / *type_r is needed next (hand its answer to
 * spf_eval_answer); 0: finished, see spf_eval_outcome. */
int  spf_eval_step(struct spf_eval *e, const char **name_r, uint16_t *type_r);
/* Takes ownership of a (the answer to the lookup step asked for). */
void spf_eval_answer(struct spf_eval *e, struct dns_answer *a);
/* Ends an unfinished check as temperror (overall time cap). */
void spf_eval_abort(struct spf_eval *e, const char *why);
const struct spf_outcome *spf_eval_outcome(const struct spf_eval *e);
void spf_eval_free(struct spf_eval *e);

/* ---- drivers (spf_run.c) --------------------------------------------- */
/* Blocking: every lookup through dns_resolve, the whole check at most
 * overall_ms (0: SPF_OVERALL_MS). */
void spf_check_sync(struct dns_ctx *ctx, const struct spf_request *rq, int overall_ms,
                    struct spf_outcome *out);

/* Asynchronous, in the dns context's event loop: cb runs once, later (never
 * from inside spf_check_start), unless cancelled first. NULL when it cannot
 * start (no event base): the caller treats that as temperror. */
typedef void (*spf_cb)(const struct spf_outcome *o, void *arg);
struct spf_check;
struct event_base;
struct spf_check *spf_check_start(struct dns_ctx *ctx, struct event_base *base,
                                  const struct spf_request *rq, int overall_ms,
                                  spf_cb cb, void *arg);
void spf_check_cancel(struct spf_check *c);

/* ---- spf_header.c ---------------------------------------------------- */
/* The Received-SPF field (RFC 7208 9.1) for o, unfolded, without CRLF:
 * "Received-SPF: pass (HOST: comment) client-ip=...; envelope-from=...". */
struct buf;
void spf_received_spf(const struct spf_outcome *o, const struct spf_request *rq,
                      const char *host, struct buf *out);

#endif
