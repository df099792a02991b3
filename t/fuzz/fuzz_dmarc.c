/*
 * fuzz_dmarc.c - libFuzzer target for DMARC (lib/dmarc): record selection
 * (dmarc_record_is_dmarc), the tag-list parse through libopendmarc
 * (dmarc_record_parse), organizational domains, and the evaluator with the
 * input as the TXT answer at _dmarc.<From domain> (a NUL-free prefix) or,
 * split at the first newline, as two records at one name. The evaluator
 * must end with one of the five results after at most two lookups, and a
 * temperror or a pass never carries a policy stronger than published.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dmarc/dmarc.h"
#include "util/buf.h"

static struct dns_answer *answer(const char *p, size_t n)
{
    struct dns_answer *a = xcalloc(1, sizeof *a);
    a->qtype = DNS_T_TXT;
    a->status = DNS_FOUND;
    const char *nl = memchr(p, '\n', n);
    size_t first = nl ? (size_t)(nl - p) : n;
    a->rr = xcalloc(2, sizeof *a->rr);
    a->n = nl ? 2 : 1;
    a->rr[0].type = DNS_T_TXT;
    a->rr[0].u.txt.text = xstrndup(p, first);
    a->rr[0].u.txt.len = first;
    if (nl) {
        a->rr[1].type = DNS_T_TXT;
        a->rr[1].u.txt.text = xstrndup(nl + 1, n - first - 1);
        a->rr[1].u.txt.len = n - first - 1;
    }
    return a;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init++)
        dmarc_init(NULL);
    const char *p = (const char *)data;
    dmarc_record_is_dmarc(p, size);
    char rec[DMARC_RECORD_MAX + 64];
    size_t n = size < sizeof rec - 1 ? size : sizeof rec - 1;
    memcpy(rec, p, n);
    rec[n] = '\0';
    struct dmarc_record r;
    char why[160];
    if (dmarc_record_parse(rec, &r, why, sizeof why) == 0 &&
        ((unsigned)r.p > DMARC_P_REJECT || r.pct < 0 || r.pct > 100))
        abort();
    char org[DNS_NAME_MAX + 1];
    if (n <= DNS_NAME_MAX)
        dmarc_org_domain(rec, org, sizeof org);
    struct dmarc_dkim k = { "example.com", "pass" };
    struct dmarc_input in = { .from_domain = "a.example.com", .spf_result = "fail",
                              .spf_domain = "example.com", .dkim = &k, .ndkim = size & 1,
                              .draw = (int)(size % 100) };
    struct dmarc_eval *e = dmarc_eval_new(&in);
    const char *name;
    int steps = 0;
    while (dmarc_eval_step(e, &name)) {
        if (++steps > 2)
            abort();
        dmarc_eval_answer(e, answer(p, size));
    }
    const struct dmarc_outcome *o = dmarc_eval_outcome(e);
    if ((unsigned)o->result > DMARC_R_PERMERROR || o->policy > o->published ||
        (o->result != DMARC_R_FAIL && o->policy != o->published))
        abort();
    buf_t b;
    buf_init(&b, 256);
    struct dmarc_report_row row = { 0, "Q", "192.0.2.1", "none", o, "fail", "example.com" };
    dmarc_report_line(&row, &b);
    buf_free(&b);
    dmarc_eval_free(e);
    return 0;
}
