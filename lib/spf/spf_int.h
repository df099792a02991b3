/*
 * spf_int.h - private to lib/spf: the parsed record (spf_parse.c) and the
 * macro language (spf_macro.c), pure functions the evaluator, the unit
 * tests and the fuzz target share. Nothing outside lib/spf and t/ uses it.
 */
#ifndef POSTERN_SPF_INT_H
#define POSTERN_SPF_INT_H

#include <stddef.h>
#include <stdint.h>

#include "spf/spf.h"
#include "util/buf.h"

#define SPF_MAX_LOOKUPS 10     /* DNS-querying terms (RFC 7208 4.6.4) */
#define SPF_MAX_VOID    2      /* void lookups (4.6.4) */
#define SPF_MAX_MX      10     /* MX names: more is a permerror (4.6.4) */
#define SPF_MAX_PTR     10     /* PTR names looked at (4.6.4) */
#define SPF_MAX_ANSWERS 160    /* answers kept by one check (> every limit allows) */
#define SPF_EXPAND_MAX  8192   /* bytes of one macro expansion */
#define SPF_MAX_TERMS   1024   /* terms of one record (a TXT answer is < 64 KiB) */

enum spf_mech { SPF_M_ALL, SPF_M_INCLUDE, SPF_M_A, SPF_M_MX, SPF_M_PTR, SPF_M_IP4,
                SPF_M_IP6, SPF_M_EXISTS };

/* A piece of the record text; p == NULL: absent. */
struct spf_span { const char *p; size_t n; };

struct spf_term {
    enum spf_mech   mech;
    enum spf_result qual;         /* the result when it matches */
    struct spf_span spec;         /* domain-spec; absent: the current domain */
    int             cidr4, cidr6; /* prefix lengths (32 / 128 when not given) */
    uint8_t         net[16];      /* ip4 (4 bytes) / ip6 */
    struct spf_span text;         /* the whole term, for reasons and logs */
};

struct spf_record {
    int              n;
    struct spf_term *terms;
    struct spf_span  redirect, exp;
};

/* Is text (len bytes) an SPF version 1 record ("v=spf1" then SP or end,
 * any case)? */
int  spf_record_is_v1(const char *text, size_t len);
/* Parses a whole v=spf1 record; every syntax error of RFC 7208 (and a
 * non-ASCII byte) is -1 with the reason in err (a permerror), else 0. The
 * spans point into text, which must outlive r. */
int  spf_record_parse(const char *text, size_t len, struct spf_record *r, buf_t *err);
void spf_record_free(struct spf_record *r);

/* ---- macros (RFC 7208 7) ----------------------------------------------- */
struct spf_macro_env {
    const char *s, *l, *o, *d, *i, *p, *h, *c, *r, *t, *v;
};
enum { SPF_MX_DOMAIN = 0, SPF_MX_EXP = 1 };   /* context: c, r, t only in exp */

/* Syntax of a macro-string: 0 or -1. */
int spf_macro_check(const char *s, size_t n, int ctx);
/* Does the macro-string use %{p}? (the evaluator looks it up first) */
int spf_macro_uses_p(const char *s, size_t n);
/* A domain-spec: a macro-string whose end is "." toplabel ["."] or a
 * macro-expand (4.6.1); 0 or -1. */
int spf_domain_spec_check(const char *s, size_t n);
/* Expands into out (reset first); 0, or -1 on a syntax error or an
 * expansion over SPF_EXPAND_MAX. For a domain (SPF_MX_DOMAIN) one final dot
 * is removed and a name over 253 bytes loses labels from the left (7.3). */
int spf_macro_expand(const struct spf_macro_env *env, const char *s, size_t n, int ctx,
                     buf_t *out);

#endif
