/*
 * fuzz_spf.c - libFuzzer target for SPF (lib/spf): the record parser, the
 * macro expander (domain-specs and explanation text) and the evaluator.
 * Input: a record, then optionally "\n" and an explanation text. The
 * record is parsed; every term's domain-spec and the exp= and redirect=
 * values are expanded; the text after the newline is checked and expanded
 * as an explanation; and the evaluator runs with every TXT lookup answered
 * by the record (the explanation for exp= lookups) and every other lookup
 * answered "no such name", so include/redirect recursion and the limits
 * are exercised. The evaluator must finish with one of the seven results.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spf/spf_int.h"

static const struct spf_macro_env env = {
    .s = "user@example.com", .l = "user", .o = "example.com", .d = "example.com",
    .i = "192.0.2.3", .p = "mx.example.com", .h = "helo.example.org", .c = "192.0.2.3",
    .r = "mx.example.test", .t = "1700000000", .v = "in-addr",
};

static void expand(const struct spf_span *s, int ctx, buf_t *out)
{
    if (!s->p)
        return;
    spf_macro_uses_p(s->p, s->n);
    if (spf_macro_expand(&env, s->p, s->n, ctx, out) == 0 &&
        (out->len > SPF_EXPAND_MAX || (ctx == SPF_MX_DOMAIN && out->len > 253 &&
                                       memchr(out->data, '.', out->len))))
        abort();
}

static struct dns_answer *answer(uint16_t type, const char *text, size_t len)
{
    struct dns_answer *a = xcalloc(1, sizeof *a);
    a->qtype = type;
    a->rcode = 3;
    a->status = DNS_NOTFOUND;
    if (type == DNS_T_TXT && len > 0) {
        a->rcode = 0;
        a->status = DNS_FOUND;
        a->n = 1;
        a->rr = xcalloc(1, sizeof *a->rr);
        a->rr[0].type = DNS_T_TXT;
        a->rr[0].u.txt.text = xstrndup(text, len);
        a->rr[0].u.txt.len = len;
    }
    return a;
}

static void evaluate(const char *rec, size_t rn, const char *exp, size_t en)
{
    struct spf_request rq = { .ip = "192.0.2.3", .sender = "user@example.com",
                              .helo = "helo.example.org", .receiver = "mx.example.test" };
    struct spf_eval *e = spf_eval_new(&rq);
    const char *name;
    uint16_t type;
    int steps = 0;
    while (spf_eval_step(e, &name, &type)) {
        if (++steps > 2 * SPF_MAX_ANSWERS)
            abort();                      /* the limits must end it */
        int is_exp = strncmp(name, "exp", 3) == 0;
        spf_eval_answer(e, answer(type, is_exp ? exp : rec, is_exp ? en : rn));
    }
    if ((unsigned)spf_eval_outcome(e)->result > SPF_PERMERROR)
        abort();
    spf_eval_free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    const char *nl = memchr(p, '\n', size);
    size_t rn = nl ? (size_t)(nl - p) : size;
    const char *exp = nl ? nl + 1 : "";
    size_t en = nl ? size - rn - 1 : 0;
    struct spf_record r;
    buf_t err, out;
    buf_init(&err, 64);
    buf_init(&out, 64);
    if (spf_record_parse(p, rn, &r, &err) == 0) {
        for (int k = 0; k < r.n; k++)
            expand(&r.terms[k].spec, SPF_MX_DOMAIN, &out);
        expand(&r.redirect, SPF_MX_DOMAIN, &out);
        expand(&r.exp, SPF_MX_DOMAIN, &out);
        spf_record_free(&r);
    }
    if (spf_macro_check(exp, en, SPF_MX_EXP) == 0) {
        /* checked syntax must expand (short texts: no SPF_EXPAND_MAX) */
        if (spf_macro_expand(&env, exp, en, SPF_MX_EXP, &out) < 0 && en < 256)
            abort();
    }
    spf_domain_spec_check(exp, en);
    evaluate(p, rn, exp, en);
    buf_free(&err);
    buf_free(&out);
    return 0;
}
