/*
 * spf_eval_int.h - private to lib/spf: the evaluator's state, shared by
 * spf_eval.c (set-up, answers, replay, check_host) and spf_mech.c (the
 * mechanisms, %{p}, lookups with the limits).
 */
#ifndef POSTERN_SPF_EVAL_INT_H
#define POSTERN_SPF_EVAL_INT_H

#include "spf/spf_int.h"

/* Control values next to the seven results: a lookup is missing (the run
 * stops and is replayed once it is answered), a mechanism (did not) match. */
enum { SPF_X_NEED = 100, SPF_X_MATCH, SPF_X_NOMATCH };

struct spf_cached {
    char              *name;      /* lower case, no final dot */
    uint16_t           type;
    struct dns_answer *a;
};

struct spf_eval {
    int      family;              /* AF_INET (also IPv4-mapped IPv6) or AF_INET6 */
    uint8_t  addr[16];
    char     c[64], i[80], v[8], t[24];
    char    *l, *o, *s, *h, *r;
    struct spf_cached cache[SPF_MAX_ANSWERS];
    int      ncache;
    char     need[DNS_NAME_MAX * 4 + 8];  /* the lookup asked for (escaped) */
    char     need_key[DNS_NAME_MAX + 2];
    uint16_t need_type;
    /* per run (replay) */
    int      lookups, voids;
    char    *p;                   /* %{p} once computed in this run */
    char     fail_d[DNS_NAME_MAX + 2];   /* fail at the top chain: its domain ... */
    struct spf_span fail_exp;     /* ... and that record's exp= */
    int      fail_at_top;
    buf_t    why;                 /* the reason of this run */
    int      done;
    struct spf_outcome out;
};

/* spf_mech.c */
/* The answer to name/type: 0 (*a_r NULL when the name is not a valid DNS
 * name: no data), SPF_X_NEED, or SPF_PERMERROR (void lookup limit). A
 * temporary failure is an answer with DNS_TEMPFAIL; callers decide. */
int spf_lookup(struct spf_eval *e, const char *name, uint16_t type, int count_void,
               const struct dns_answer **a_r);
/* One more DNS-querying term: 0, or SPF_PERMERROR past the limit. */
int spf_count_term(struct spf_eval *e, const char *term);
/* Expands a domain-spec (absent: d) into out: 0, SPF_X_NEED, SPF_PERMERROR. */
int spf_expand_domain(struct spf_eval *e, const struct spf_span *spec, const char *d,
                      int ctx, buf_t *out);
/* %{p} for domain d into e->p (once per run): 0, SPF_X_NEED, SPF_PERMERROR. */
int spf_compute_p(struct spf_eval *e, const char *d);
/* One mechanism against the client: SPF_X_MATCH / SPF_X_NOMATCH, a result
 * (temperror, permerror), or SPF_X_NEED. */
int spf_mech_eval(struct spf_eval *e, const struct spf_term *t, const char *d);
/* spf_eval.c: check_host() of domain (for include: top = 0). */
int spf_check_host(struct spf_eval *e, const char *domain, int top);
/* Sets the reason of this run (the last one wins), returns r. */
int spf_why(struct spf_eval *e, int r, const char *fmt, ...) PRINTF_LIKE(3, 4);

#endif
