/*
 * dns.h - DNS lookups for every Postern process, on libunbound.
 *
 * One struct dns_ctx per process wraps a libunbound context (a resolver
 * thread behind a pipe). Asynchronous queries run inside the caller's
 * libevent loop: ub_fd() is watched with an event and ub_process() runs on
 * readiness, so answers arrive as callbacks in the loop thread. The *_sync
 * variants (CLI, tests) drive the same machinery with poll() until done.
 *
 * Every answer is tri-state (found / not found / temporary failure) and
 * carries its DNSSEC status; a bogus answer is a temporary failure, never
 * data. Rdata is parsed here (dns_rr.c), bounded, from wire format: the
 * answer holds typed records (MX, A/AAAA, TLSA, TXT, PTR), never raw bytes
 * a caller must decode.
 *
 * Bounds: at most DNS_MAX_RR records and DNS_ANSWER_MAX bytes are copied
 * out of one answer (beyond that the answer is a temporary failure), at most
 * dns_config.max_queries queries are outstanding per context, and each
 * query ends after dns_config.timeout_ms (temporary failure "timeout").
 *
 * Never: block an event loop (only the *_sync calls wait), or call back
 * from inside dns_query() itself (a query that cannot start returns NULL).
 */
#ifndef POSTERN_DNS_H
#define POSTERN_DNS_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

struct event_base;
struct config;

#define DNS_NAME_MAX     253      /* a name in text, without the final dot */
#define DNS_MAX_RR       100      /* records copied from one answer */
#define DNS_ANSWER_MAX   65536    /* rdata bytes copied from one answer */
#define DNS_FCRDNS_NAMES 10       /* PTR names tried by dns_fcrdns() */
#define DNS_ROOT_KEY     "/usr/share/dns/root.key"

enum dns_type {
    DNS_T_A = 1, DNS_T_PTR = 12, DNS_T_MX = 15, DNS_T_TXT = 16, DNS_T_AAAA = 28,
    DNS_T_TLSA = 52,
};

/* Tri-state result. DNS_NULL_MX only comes from the MX lookups: the domain
 * publishes RFC 7505 "MX 0 ." (it accepts no mail: undeliverable, 5xx). */
enum dns_status { DNS_FOUND, DNS_NOTFOUND, DNS_TEMPFAIL, DNS_NULL_MX };
enum dns_sec { DNS_SEC_INSECURE, DNS_SEC_SECURE, DNS_SEC_BOGUS };

struct dns_mx {
    uint16_t pref;
    char    *host;           /* lower case, no final dot; "." = the root */
};
struct dns_addr {
    int      family;         /* AF_INET or AF_INET6 */
    uint8_t  addr[16];       /* 4 or 16 bytes, network order */
    char     text[46];       /* inet_ntop form */
};
struct dns_tlsa {
    uint8_t  usage, selector, mtype;
    size_t   len;
    uint8_t *data;           /* the certificate association data */
};
struct dns_txt {
    size_t   len;
    char    *text;           /* the strings concatenated (RFC 7208 3.3, RFC 6376
                              * 3.6.2.2), NUL-terminated; may contain NULs */
};

struct dns_rr {
    uint16_t type;
    uint32_t ttl;
    union {
        struct dns_mx   mx;
        struct dns_addr addr;      /* A, AAAA */
        struct dns_tlsa tlsa;
        struct dns_txt  txt;
        char           *ptr;       /* PTR target, lower case, no final dot */
    } u;
};

struct dns_answer {
    enum dns_status status;
    enum dns_sec    sec;
    int       rcode;           /* DNS rcode; -1 when there was no answer */
    int       nxdomain;        /* the name does not exist (vs. NODATA) */
    int       implicit_mx;     /* MX lookups: no MX, the domain itself (RFC 5321 5.1) */
    uint16_t  qtype;
    char      qname[DNS_NAME_MAX + 2];
    char      why[160];        /* temporary failures: a reason for logs */
    int       n;
    struct dns_rr *rr;         /* n records; for MX sorted by preference */
};

/* Resolver settings; dns_config_from() fills them from postern.conf. */
struct dns_config {
    const char *unbound_config;  /* NULL: forward to /etc/resolv.conf */
    const char *resolv_conf;     /* NULL: /etc/resolv.conf */
    const char *trust_anchor;    /* NULL: DNS_ROOT_KEY (when dnssec) */
    int dnssec;                  /* validate (without unbound_config) */
    int timeout_ms;              /* per query; 0: 10 s */
    int max_queries;             /* outstanding per context; 0: 1000 */
};

struct dns_ctx;
struct dns_query;

/* The callback owns the answer: free it with dns_answer_free(). It runs in
 * the loop thread; it may start or cancel queries, not free the context. */
typedef void (*dns_cb)(struct dns_answer *a, void *arg);
/* FCrDNS result: name is the confirmed PTR name (valid during the call)
 * when st == DNS_FOUND, else "". */
typedef void (*dns_fcrdns_cb)(enum dns_status st, const char *name, void *arg);

void dns_config_from(const struct config *c, struct dns_config *dc_r);

/* base may be NULL (only the *_sync calls then). Reads every file now
 * (resolv.conf, unbound.conf, trust anchors: a local "localhost" lookup
 * makes libunbound load them), so it runs before a chroot. NULL with the
 * reason in err on failure. */
struct dns_ctx *dns_ctx_new(const struct dns_config *dc, struct event_base *base, buf_t *err);
/* A daemon's resolver from postern.conf's dns.* keys, made before its
 * chroot with no event base yet: on failure logs "dns: REASON: consequence"
 * (what the daemon does without DNS) and returns NULL. */
struct dns_ctx *dns_ctx_for_daemon(const struct config *cfg, const char *consequence);
/* Gives a context made before the loop existed (pre-chroot) its event
 * base; only while nothing is outstanding. */
void dns_ctx_attach(struct dns_ctx *ctx, struct event_base *base);
void dns_ctx_free(struct dns_ctx *ctx);          /* cancels what is outstanding */
int  dns_ctx_pending(const struct dns_ctx *ctx);  /* outstanding queries */
/* Questions answered from the context's cache (lib/dns/dns_cache.c: an
 * answer is kept for its TTL, at most an hour; never a temporary failure). */
long dns_ctx_cache_hits(const struct dns_ctx *ctx);

/* Asynchronous lookups: NULL when the query cannot start (bad name, too
 * many outstanding, no event base): the caller treats that as DNS_TEMPFAIL. */
struct dns_query *dns_query(struct dns_ctx *ctx, const char *name, uint16_t type,
                            dns_cb cb, void *arg);
/* MX with RFC 5321/7505 semantics (see dns_mx_finish). */
struct dns_query *dns_query_mx(struct dns_ctx *ctx, const char *domain, dns_cb cb, void *arg);
void dns_cancel(struct dns_query *q);              /* its callback never runs */

/* Forward-confirmed reverse DNS of a textual IPv4/IPv6 address: PTR, then
 * A/AAAA of each name (at most DNS_FCRDNS_NAMES) until one lists the
 * address. Returns 0, or -1 (bad address, cannot start: no callback). */
struct dns_fcrdns;
struct dns_fcrdns *dns_fcrdns(struct dns_ctx *ctx, const char *ip, dns_fcrdns_cb cb, void *arg);
void dns_fcrdns_cancel(struct dns_fcrdns *f);

/* Blocking variants: wait (poll) until the answer or the timeout. Never
 * NULL: a failure is an answer with DNS_TEMPFAIL. */
struct dns_answer *dns_resolve(struct dns_ctx *ctx, const char *name, uint16_t type);
struct dns_answer *dns_resolve_mx(struct dns_ctx *ctx, const char *domain);
/* TLSA of a service (RFC 6698 3): "_PORT._tcp.HOST"; DANE (RFC 7672) asks
 * it only when the host's MX and address answers were secure. */
struct dns_answer *dns_resolve_tlsa(struct dns_ctx *ctx, int port, const char *host);
/* "_25._tcp.mx.example.com" into out. 0, or -1 when it does not fit. */
int dns_tlsa_name(int port, const char *host, char *out, size_t cap);
enum dns_status dns_fcrdns_sync(struct dns_ctx *ctx, const char *ip, char *name_r, size_t cap);

void dns_answer_free(struct dns_answer *a);

/* ---- dns_step.c: driving an evaluator that names its lookups --------- */
/* lib/spf and lib/dmarc evaluate with no I/O: step names the next lookup
 * (1) or says the evaluation is over (0), answer takes ownership of its
 * answer, abort ends it as a temporary failure (overall deadline). */
struct dns_step_ops {
    int  (*step)(void *ev, const char **name_r, uint16_t *type_r);
    void (*answer)(void *ev, struct dns_answer *a);
    void (*abort)(void *ev, const char *why);
    const char *too_long;        /* abort's reason at the overall deadline */
};
/* Blocking: every lookup through dns_resolve, the whole at most overall_ms. */
void dns_step_sync(struct dns_ctx *ctx, const struct dns_step_ops *ops, void *ev,
                   int overall_ms);
/* In the context's event loop: done(arg) runs once, later (never from
 * inside dns_step_start), when ev is finished, unless cancelled first; the
 * driver is freed before done runs. NULL when it cannot start. */
struct dns_step;
struct dns_step *dns_step_start(struct dns_ctx *ctx, struct event_base *base,
                                const struct dns_step_ops *ops, void *ev, int overall_ms,
                                void (*done)(void *arg), void *arg);
void dns_step_cancel(struct dns_step *s);

/* ---- dns_rr.c: wire-format rdata, no libunbound (fuzzed) ------------- */

/* Parses one record's rdata (no rdlength prefix, names uncompressed as
 * libunbound gives them) into rr (type set). 0, or -1 when malformed or of
 * a type not parsed here (nothing to free then). */
int  dns_rdata_parse(uint16_t type, const uint8_t *p, size_t n, struct dns_rr *rr);
void dns_rr_clear(struct dns_rr *rr);
/* A wire name at p[*off..n) to text (lower case, no final dot, "." for the
 * root; bytes outside letters, digits, '-', '_' as \DDD). 0 or -1. */
int  dns_name_text(const uint8_t *p, size_t n, size_t *off, char *out, size_t cap);
/* MX post-processing on a raw MX answer for domain: sort by preference,
 * shuffle equal preferences; NODATA -> DNS_FOUND with the domain itself
 * (implicit_mx); one "MX 0 ." -> DNS_NULL_MX (n = 0). */
void dns_mx_finish(struct dns_answer *a, const char *domain);
/* "1.2.3.4" -> "4.3.2.1.in-addr.arpa"; IPv6 -> nibbles under ip6.arpa.
 * family_r/addr_r (16 bytes) get the parsed address. 0 or -1. */
int  dns_reverse_name(const char *ip, char *out, size_t cap, int *family_r, uint8_t *addr_r);
const char *dns_status_name(enum dns_status st);
const char *dns_sec_name(enum dns_sec s);

#endif
