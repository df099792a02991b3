/*
 * spf_eval.c - check_host() (RFC 7208 4) as a replayed computation: the
 * identity and macro values from the request (4.1-4.3), record lookup and
 * selection (4.4-4.5: DNS error -> temperror, none or several v=spf1
 * records), evaluation in order with redirect= (6.1) and exp= (6.2), and
 * the store of answers the replay reads.
 *
 * A run stops at the first lookup not yet answered (SPF_X_NEED); the driver
 * answers it and the next run starts from the beginning with one more
 * answer. Runs are deterministic, so the last run is exactly the check the
 * RFC describes, and the counters (terms, voids) are those of that run.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "util/idna.h"
#include "spf/spf_eval_int.h"

static const char *const names[] = {
    [SPF_NONE] = "none", [SPF_NEUTRAL] = "neutral", [SPF_PASS] = "pass", [SPF_FAIL] = "fail",
    [SPF_SOFTFAIL] = "softfail", [SPF_TEMPERROR] = "temperror", [SPF_PERMERROR] = "permerror",
};

const char *spf_result_name(enum spf_result r)
{
    return (unsigned)r < sizeof names / sizeof names[0] ? names[r] : "permerror";
}

int spf_why(struct spf_eval *e, int r, const char *fmt, ...)
{
    va_list ap;
    buf_reset(&e->why);
    va_start(ap, fmt);
    buf_vprintf(&e->why, fmt, ap);
    va_end(ap);
    return r;
}

/* The client address and the values of %{i} %{c} %{v} (IPv4-mapped IPv6
 * is IPv4, as everywhere in SPF). 0 or -1. */
static int set_ip(struct spf_eval *e, const char *ip)
{
    uint8_t a6[16];
    if (ip && inet_pton(AF_INET, ip, e->addr) == 1) {
        e->family = AF_INET;
    } else if (ip && inet_pton(AF_INET6, ip, a6) == 1) {
        static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
        if (memcmp(a6, mapped, 12) == 0) {
            e->family = AF_INET;
            memcpy(e->addr, a6 + 12, 4);
        } else {
            e->family = AF_INET6;
            memcpy(e->addr, a6, 16);
        }
    } else {
        return -1;
    }
    inet_ntop(e->family, e->addr, e->c, sizeof e->c);
    if (e->family == AF_INET) {
        str_copy(e->i, sizeof e->i, e->c);
        str_copy(e->v, sizeof e->v, "in-addr");
        return 0;
    }
    static const char hex[] = "0123456789ABCDEF";   /* as python3-spf writes %{i} */
    size_t o = 0;
    for (int k = 0; k < 16; k++) {
        e->i[o++] = hex[e->addr[k] >> 4];
        e->i[o++] = '.';
        e->i[o++] = hex[e->addr[k] & 15];
        e->i[o++] = k == 15 ? '\0' : '.';
    }
    str_copy(e->v, sizeof e->v, "ip6");
    return 0;
}

/* 4.3: the identity: MAIL FROM's local-part and domain, "postmaster"
 * when the local-part is empty or missing, postmaster@HELO for <>. */
static void set_identity(struct spf_eval *e, const struct spf_request *rq)
{
    const char *s = rq->sender ? rq->sender : "";
    const char *h = rq->helo ? rq->helo : "";
    e->h = xstrdup(h);
    e->r = xstrdup(rq->receiver && rq->receiver[0] ? rq->receiver : "unknown");
    if (!s[0]) {
        e->out.helo_identity = 1;
        e->l = xstrdup("postmaster");
        e->o = xstrdup(h);
    } else {
        const char *at = strchr(s, '@');
        if (!at) {
            e->l = xstrdup("postmaster");
            e->o = xstrdup(s);
        } else {
            e->l = at == s ? xstrdup("postmaster") : xstrndup(s, (size_t)(at - s));
            e->o = xstrdup(at + 1);
        }
    }
    /* RFC 8616 4: an SMTPUTF8 sender's U-labels are looked up as A-labels;
     * one that is no valid IDN stays as it is (and is no valid domain) */
    char a[IDNA_ASCII_MAX];
    const char *ace = idna_lookup_name(e->o, a);
    if (ace != NULL && ace != e->o) {
        free(e->o);
        e->o = xstrdup(ace);
    }
    buf_t b;
    buf_init(&b, 64);
    buf_printf(&b, "%s@%s", e->l, e->o);
    e->s = buf_steal(&b);
    buf_free(&b);
    str_copy(e->out.domain, sizeof e->out.domain, e->o);
    str_copy(e->out.sender, sizeof e->out.sender, e->s);
    str_format(e->t, sizeof e->t, "%lld", (long long)time(NULL));
}

struct spf_eval *spf_eval_new(const struct spf_request *rq)
{
    struct spf_eval *e = xcalloc(1, sizeof *e);
    buf_init(&e->why, 64);
    set_identity(e, rq);
    if (set_ip(e, rq->ip) < 0) {
        e->done = 1;
        e->out.result = SPF_PERMERROR;
        str_format(e->out.reason, sizeof e->out.reason, "invalid client address");
    }
    return e;
}

void spf_eval_free(struct spf_eval *e)
{
    if (!e)
        return;
    for (int k = 0; k < e->ncache; k++) {
        free(e->cache[k].name);
        dns_answer_free(e->cache[k].a);
    }
    free(e->l), free(e->o), free(e->s), free(e->h), free(e->r), free(e->p);
    buf_free(&e->why);
    free(e);
}

/* 4.4-4.5: the one v=spf1 record of domain, parsed into rec (spans into
 * the stored answer). SPF_X_MATCH when there is one, else a result (none
 * included) or SPF_X_NEED. */
static int find_record(struct spf_eval *e, const char *domain, struct spf_record *rec)
{
    const struct dns_answer *a;
    buf_t err;
    int r = spf_lookup(e, domain, DNS_T_TXT, 1, &a);
    if (r != 0)
        return r;
    if (!a || a->status == DNS_NOTFOUND || (a->status == DNS_FOUND && a->n == 0))
        return spf_why(e, SPF_NONE, "no SPF record for %s", domain);
    if (a->status == DNS_TEMPFAIL)
        return spf_why(e, SPF_TEMPERROR, "DNS lookup of %s TXT failed: %s", domain, a->why);
    int found = -1;
    for (int k = 0; k < a->n; k++)
        if (spf_record_is_v1(a->rr[k].u.txt.text, a->rr[k].u.txt.len)) {
            if (found >= 0)
                return spf_why(e, SPF_PERMERROR, "%s has more than one SPF record", domain);
            found = k;
        }
    if (found < 0)
        return spf_why(e, SPF_NONE, "no SPF record for %s", domain);
    buf_init(&err, 64);
    if (spf_record_parse(a->rr[found].u.txt.text, a->rr[found].u.txt.len, rec, &err) < 0) {
        spf_why(e, SPF_PERMERROR, "%s in the record of %s", err.data, domain);
        buf_free(&err);
        return SPF_PERMERROR;
    }
    buf_free(&err);
    return SPF_X_MATCH;
}

/* 4.3: a name that cannot be looked up (empty or over-long label) */
static int domain_ok(const char *d)
{
    size_t n = strlen(d), label = 0;
    if (n == 0 || n > DNS_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (d[i] == '.') {
            if (label == 0)
                return 0;
            label = 0;
        } else if (++label > 63) {
            return 0;
        }
    }
    return label > 0;
}

/* No mechanism matched: redirect= (6.1), else neutral. */
static int no_match(struct spf_eval *e, const struct spf_record *rec, const char *domain,
                    int top)
{
    if (!rec->redirect.p)
        return spf_why(e, SPF_NEUTRAL, "no mechanism matched in %s", domain);
    int r = spf_count_term(e, "redirect");
    if (r != 0)
        return r;
    buf_t target;
    buf_init(&target, 64);
    r = spf_expand_domain(e, &rec->redirect, domain, SPF_MX_DOMAIN, &target);
    if (r == 0) {
        r = spf_check_host(e, target.data, top);
        if (r == SPF_NONE)
            r = spf_why(e, SPF_PERMERROR, "redirect=%s has no SPF record", target.data);
    }
    buf_free(&target);
    return r;
}

int spf_check_host(struct spf_eval *e, const char *domain, int top)
{
    if (!domain_ok(domain))
        return spf_why(e, SPF_NONE, "no valid domain in \"%.80s\"", domain);
    struct spf_record rec;
    int r = find_record(e, domain, &rec);
    if (r != SPF_X_MATCH)
        return r;
    for (int k = 0; k < rec.n; k++) {
        const struct spf_term *t = &rec.terms[k];
        r = spf_mech_eval(e, t, domain);
        if (r == SPF_X_NOMATCH)
            continue;
        if (r == SPF_X_MATCH) {
            r = (int)t->qual;
            spf_why(e, r, "matched %.*s in %s",
                    (int)(t->text.n > 100 ? 100 : t->text.n), t->text.p, domain);
            if (top && r == SPF_FAIL) {
                /* the explanation of the record that failed (6.2) */
                e->fail_at_top = 1;
                e->fail_exp = rec.exp;
                str_copy(e->fail_d, sizeof e->fail_d, domain);
            }
        }
        spf_record_free(&rec);
        return r;
    }
    r = no_match(e, &rec, domain, top);
    spf_record_free(&rec);
    return r;
}

/* 6.2: the exp= text of the failing record, expanded; 0 with out empty
 * when there is none usable (then the default), or SPF_X_NEED. */
static int explanation(struct spf_eval *e, buf_t *out)
{
    buf_t name;
    const struct dns_answer *a;
    buf_reset(out);
    if (!e->fail_exp.p)
        return 0;
    buf_init(&name, 64);
    int r = spf_expand_domain(e, &e->fail_exp, e->fail_d, SPF_MX_DOMAIN, &name);
    if (r == 0)
        r = spf_lookup(e, name.data, DNS_T_TXT, 0, &a);
    buf_free(&name);
    if (r != 0)
        return r == SPF_X_NEED ? r : 0;
    if (!a || a->status != DNS_FOUND || a->n != 1)
        return 0;                      /* none, several, or a DNS error: ignored */
    const char *txt = a->rr[0].u.txt.text;
    size_t len = a->rr[0].u.txt.len;
    struct spf_macro_env env = { .s = e->s, .l = e->l, .o = e->o, .d = e->fail_d, .i = e->i,
                                 .p = e->p, .h = e->h, .c = e->c, .r = e->r, .t = e->t,
                                 .v = e->v };
    if (spf_macro_uses_p(txt, len) && (r = spf_compute_p(e, e->fail_d)) != 0)
        return r == SPF_X_NEED ? r : 0;
    env.p = e->p;
    if (spf_macro_expand(&env, txt, len, SPF_MX_EXP, out) < 0)
        buf_reset(out);
    return 0;
}

static void finish(struct spf_eval *e, int r, const buf_t *exp)
{
    struct spf_outcome *o = &e->out;
    o->result = (enum spf_result)r;
    str_copy(o->reason, sizeof o->reason, e->why.data);
    if (r == SPF_FAIL) {
        if (exp && exp->len)
            str_copy(o->explanation, sizeof o->explanation, exp->data);
        else
            str_format(o->explanation, sizeof o->explanation,
                       "%s does not designate %s as permitted sender", o->domain, e->c);
    }
    e->done = 1;
}

int spf_eval_step(struct spf_eval *e, const char **name_r, uint16_t *type_r)
{
    if (e->done)
        return 0;
    e->lookups = e->voids = 0;
    e->fail_at_top = 0;
    e->fail_exp.p = NULL;
    free(e->p);
    e->p = NULL;
    buf_reset(&e->why);
    int r = spf_check_host(e, e->o, 1);
    buf_t exp;
    buf_init(&exp, 64);
    if (r == SPF_FAIL && e->fail_at_top)
        if (explanation(e, &exp) == SPF_X_NEED)
            r = SPF_X_NEED;
    if (r == SPF_X_NEED) {
        buf_free(&exp);
        *name_r = e->need;
        *type_r = e->need_type;
        return 1;
    }
    finish(e, r, &exp);
    buf_free(&exp);
    return 0;
}

void spf_eval_answer(struct spf_eval *e, struct dns_answer *a)
{
    if (e->done || e->ncache >= SPF_MAX_ANSWERS) {
        dns_answer_free(a);
        if (!e->done)
            spf_eval_abort(e, "too many DNS lookups");
        return;
    }
    struct spf_cached *c = &e->cache[e->ncache++];
    c->name = xstrdup(e->need_key);
    c->type = e->need_type;
    c->a = a;
}

void spf_eval_abort(struct spf_eval *e, const char *why)
{
    if (e->done)
        return;
    spf_why(e, SPF_TEMPERROR, "%s", why);
    finish(e, SPF_TEMPERROR, NULL);
}

const struct spf_outcome *spf_eval_outcome(const struct spf_eval *e)
{
    return &e->out;
}
