/*
 * dmarc_eval.c - the DMARC evaluator (RFC 7489 6.6), with no I/O.
 *
 * Policy discovery (6.6.3) is two lookups at most: _dmarc.<From domain>,
 * and when that holds no DMARC record, _dmarc.<organizational domain>
 * (skipped when both are the same). A temporary failure of either ends in
 * temperror. More than one DMARC record at a name: no DMARC processing
 * (none). Identifier alignment (3.1): strict = the same name, relaxed = the
 * same organizational domain; SPF counts when its result is pass, DKIM
 * when any signature passes. The policy is sp= for a From domain below the
 * organizational domain whose record came from the organizational domain,
 * else p=; pct= (6.6.4) lowers a failing message's policy one step
 * (reject -> quarantine -> none) when the draw falls outside it.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dmarc/dmarc.h"
#include "util/buf.h"

const char *dmarc_result_name(enum dmarc_result r)
{
    static const char *n[] = { "none", "pass", "fail", "temperror", "permerror" };
    return (unsigned)r < sizeof n / sizeof n[0] ? n[r] : "permerror";
}

const char *dmarc_policy_name(enum dmarc_policy p)
{
    static const char *n[] = { "none", "quarantine", "reject" };
    return (unsigned)p < sizeof n / sizeof n[0] ? n[p] : "none";
}

/* Lower case, no final dot, bounded. */
static void norm(const char *s, char *out, size_t cap)
{
    size_t n = 0;
    for (; s && s[n] && n + 1 < cap; n++)
        out[n] = (s[n] >= 'A' && s[n] <= 'Z') ? (char)(s[n] + 32) : s[n];
    while (n > 0 && out[n - 1] == '.')
        n--;
    out[n] = '\0';
}

static int aligned(const char *from, const char *from_org, const char *id, char mode)
{
    char d[DNS_NAME_MAX + 1], org[DNS_NAME_MAX + 1];
    norm(id, d, sizeof d);
    if (!d[0])
        return 0;
    if (mode == 's')
        return strcmp(d, from) == 0;
    dmarc_org_domain(d, org, sizeof org);
    return strcmp(org, from_org) == 0;
}

static enum dmarc_policy lower(enum dmarc_policy p)
{
    return p == DMARC_P_REJECT ? DMARC_P_QUARANTINE : DMARC_P_NONE;
}

/* The DKIM side: any aligned pass; remembers the domain shown in reports. */
static void dkim_side(const struct dmarc_input *in, struct dmarc_outcome *o, char adkim)
{
    str_copy(o->dkim_result, sizeof o->dkim_result, "none");
    int n = in->ndkim < DMARC_DKIM_MAX ? in->ndkim : DMARC_DKIM_MAX;
    for (int i = 0; i < n; i++) {
        const struct dmarc_dkim *k = &in->dkim[i];
        if (!k->domain || !k->result)
            continue;
        int pass = strcasecmp(k->result, "pass") == 0;
        int al = pass && aligned(o->from_domain, o->org_domain, k->domain, adkim);
        if (i == 0 || al) {
            norm(k->domain, o->dkim_domain, sizeof o->dkim_domain);
            norm(k->result, o->dkim_result, sizeof o->dkim_result);
        }
        if (al) {
            o->dkim_aligned = 1;
            return;
        }
    }
}

static void start(const struct dmarc_input *in, struct dmarc_outcome *o)
{
    memset(o, 0, sizeof *o);
    o->adkim = o->aspf = 'r';
    o->pct = 100;
    norm(in->from_domain, o->from_domain, sizeof o->from_domain);
    if (o->from_domain[0])
        dmarc_org_domain(o->from_domain, o->org_domain, sizeof o->org_domain);
    str_copy(o->dkim_result, sizeof o->dkim_result, "none");
}

void dmarc_decide(const struct dmarc_input *in, const char *record, const char *record_domain,
                  int tempfail, struct dmarc_outcome *o)
{
    start(in, o);
    if (!o->from_domain[0]) {
        str_copy(o->reason, sizeof o->reason, "no From domain");
        return;
    }
    if (!str_hostname_ok(o->from_domain, strlen(o->from_domain), 0)) {
        o->result = DMARC_R_PERMERROR;            /* no lookup: it is not a name */
        str_copy(o->reason, sizeof o->reason, "invalid From domain");
        return;
    }
    if (tempfail) {
        o->result = DMARC_R_TEMPERROR;
        str_copy(o->reason, sizeof o->reason, "DNS lookup failed temporarily");
        return;
    }
    if (record == NULL) {
        str_copy(o->reason, sizeof o->reason, "no DMARC record");
        return;
    }
    str_copy(o->record, sizeof o->record, record);
    norm(record_domain, o->record_domain, sizeof o->record_domain);
    struct dmarc_record r;
    if (dmarc_record_parse(record, &r, o->reason, sizeof o->reason) < 0) {
        o->result = DMARC_R_PERMERROR;
        return;
    }
    o->has_record = 1;
    o->adkim = r.adkim;
    o->aspf = r.aspf;
    o->pct = r.pct;
    o->sp_used = strcmp(o->record_domain, o->from_domain) != 0;
    o->published = o->policy = o->sp_used ? r.sp : r.p;
    o->spf_aligned = in->spf_result && strcasecmp(in->spf_result, "pass") == 0 &&
                     aligned(o->from_domain, o->org_domain, in->spf_domain, r.aspf);
    dkim_side(in, o, r.adkim);
    if (o->spf_aligned || o->dkim_aligned) {
        o->result = DMARC_R_PASS;
        str_format(o->reason, sizeof o->reason, "aligned %s pass",
                   o->dkim_aligned ? "DKIM" : "SPF");
        return;
    }
    o->result = DMARC_R_FAIL;
    int draw = in->draw >= 0 ? in->draw % 100 : (int)arc4random_uniform(100);
    if (o->policy != DMARC_P_NONE && draw >= o->pct) {
        o->sampled_out = 1;
        o->policy = lower(o->policy);
    }
    str_format(o->reason, sizeof o->reason, "no aligned SPF or DKIM pass%s",
               o->sampled_out ? " (policy lowered by pct=)" : "");
}

/* ---- the stepper ------------------------------------------------------ */

struct dmarc_eval {
    struct dmarc_input in;
    struct dmarc_dkim dkim[DMARC_DKIM_MAX];
    char *dkim_text;             /* one block holding every copied string */
    int stage;                   /* 0: From domain, 1: organizational domain, 2: done */
    char qname[DNS_NAME_MAX + 8];
    struct dmarc_outcome out;
};

/* Copies of the caller's strings, so the check may outlive them. */
static void copy_input(struct dmarc_eval *e, const struct dmarc_input *in)
{
    buf_t b;
    buf_init(&b, 256);
    size_t off[3 + 2 * DMARC_DKIM_MAX];
    int k = 0;
    const char *s[3] = { in->from_domain, in->spf_result, in->spf_domain };
    for (int i = 0; i < 3; i++) {
        off[k++] = b.len;
        buf_append(&b, s[i] ? s[i] : "", strlen(s[i] ? s[i] : "") + 1);
    }
    int n = in->ndkim < DMARC_DKIM_MAX ? in->ndkim : DMARC_DKIM_MAX;
    for (int i = 0; i < n; i++) {
        const char *d = in->dkim[i].domain ? in->dkim[i].domain : "";
        const char *r = in->dkim[i].result ? in->dkim[i].result : "";
        off[k++] = b.len;
        buf_append(&b, d, strlen(d) + 1);
        off[k++] = b.len;
        buf_append(&b, r, strlen(r) + 1);
    }
    e->dkim_text = buf_steal(&b);
    buf_free(&b);                    /* steal left a fresh buffer */
    e->in = *in;
    e->in.from_domain = e->dkim_text + off[0];
    e->in.spf_result = e->dkim_text + off[1];
    e->in.spf_domain = e->dkim_text + off[2];
    for (int i = 0; i < n; i++) {
        e->dkim[i].domain = e->dkim_text + off[3 + 2 * i];
        e->dkim[i].result = e->dkim_text + off[4 + 2 * i];
    }
    e->in.dkim = e->dkim;
    e->in.ndkim = n;
}

struct dmarc_eval *dmarc_eval_new(const struct dmarc_input *in)
{
    struct dmarc_eval *e = xcalloc(1, sizeof *e);
    copy_input(e, in);
    start(&e->in, &e->out);
    if (!e->out.from_domain[0] ||
        !str_hostname_ok(e->out.from_domain, strlen(e->out.from_domain), 0)) {
        dmarc_decide(&e->in, NULL, NULL, 0, &e->out);
        e->stage = 2;
    }
    return e;
}

int dmarc_eval_step(struct dmarc_eval *e, const char **name_r)
{
    if (e->stage >= 2)
        return 0;
    str_format(e->qname, sizeof e->qname, "_dmarc.%s",
               e->stage == 0 ? e->out.from_domain : e->out.org_domain);
    *name_r = e->qname;
    return 1;
}

/* The one DMARC record of a: 0 none, 1 found (*i_r), 2 more than one. */
static int pick(const struct dns_answer *a, int *i_r)
{
    int found = 0;
    for (int i = 0; i < a->n; i++) {
        const struct dns_rr *rr = &a->rr[i];
        if (rr->type != DNS_T_TXT || !dmarc_record_is_dmarc(rr->u.txt.text, rr->u.txt.len))
            continue;
        if (found++)
            return 2;
        *i_r = i;
    }
    return found;
}

/* A record was found at dom: decide; a NUL inside it makes it invalid. */
static void found(struct dmarc_eval *e, const struct dns_txt *t, const char *dom)
{
    dmarc_decide(&e->in, t->text, dom, 0, &e->out);
    if (strlen(t->text) != t->len) {
        e->out.result = DMARC_R_PERMERROR;
        e->out.has_record = 0;
        e->out.policy = e->out.published = DMARC_P_NONE;
        str_copy(e->out.reason, sizeof e->out.reason, "invalid DMARC record: NUL byte");
    }
}

void dmarc_eval_answer(struct dmarc_eval *e, struct dns_answer *a)
{
    const char *dom = e->stage == 0 ? e->out.from_domain : e->out.org_domain;
    int i = 0;
    int k = a->status == DNS_FOUND ? pick(a, &i) : 0;
    int next = 0;
    if (a->status == DNS_TEMPFAIL) {
        dmarc_decide(&e->in, NULL, NULL, 1, &e->out);
        str_format(e->out.reason, sizeof e->out.reason, "_dmarc.%s: %s", dom,
                   a->why[0] ? a->why : "temporary DNS failure");
    } else if (k == 1) {
        found(e, &a->rr[i].u.txt, dom);
    } else if (k == 2) {
        dmarc_decide(&e->in, NULL, NULL, 0, &e->out);
        str_format(e->out.reason, sizeof e->out.reason, "more than one DMARC record at _dmarc.%s",
                   dom);
    } else if (e->stage == 0 && strcmp(e->out.org_domain, e->out.from_domain) != 0) {
        next = 1;
    } else {
        dmarc_decide(&e->in, NULL, NULL, 0, &e->out);
    }
    e->stage = next ? 1 : 2;
    dns_answer_free(a);
}

void dmarc_eval_abort(struct dmarc_eval *e, const char *why)
{
    dmarc_decide(&e->in, NULL, NULL, 1, &e->out);
    str_copy(e->out.reason, sizeof e->out.reason, why);
    e->stage = 2;
}

const struct dmarc_outcome *dmarc_eval_outcome(const struct dmarc_eval *e)
{
    return &e->out;
}

void dmarc_eval_free(struct dmarc_eval *e)
{
    if (!e)
        return;
    free(e->dkim_text);
    free(e);
}
