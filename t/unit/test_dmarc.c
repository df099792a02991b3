/*
 * test_dmarc.c - lib/dmarc without DNS: record selection and parsing,
 * organizational domains from the Public Suffix List, the evaluator on
 * fabricated records (alignment relaxed and strict, p= and sp=, pct= with
 * fixed draws, temperror, permerror), policy discovery driven by a table of
 * answers and the report line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "dmarc/dmarc.h"
#include "util/buf.h"

static int setup(void **state)
{
    assert_int_equal(dmarc_init(NULL), 0);
    return 0;
}

static void test_is_dmarc(void **state)
{
    static const char *const yes[] = { "v=DMARC1", "v=DMARC1;", "v = DMARC1 ; p=none",
                                       "v=DMARC1\t;p=reject" };
    static const char *const no[] = { "", "v=DMARC2; p=none", "v=dmarc1; p=none",
                                      " v=DMARC1; p=none", "p=none; v=DMARC1", "v=DMARC10",
                                      "v=spf1 -all", "v=DMARC1 p=none" };
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        assert_true(dmarc_record_is_dmarc(yes[i], strlen(yes[i])));
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        assert_false(dmarc_record_is_dmarc(no[i], strlen(no[i])));
}

static void test_parse(void **state)
{
    struct dmarc_record r;
    char why[128];
    assert_int_equal(dmarc_record_parse("v=DMARC1; p=reject", &r, why, sizeof why), 0);
    assert_int_equal(r.p, DMARC_P_REJECT);
    assert_int_equal(r.sp, DMARC_P_REJECT);          /* sp defaults to p */
    assert_false(r.has_sp);
    assert_int_equal(r.pct, 100);
    assert_int_equal(r.adkim, 'r');
    assert_int_equal(r.aspf, 'r');
    assert_int_equal(dmarc_record_parse("v=DMARC1; p=quarantine; sp=none; pct=20; adkim=s; "
                                        "aspf=s; rua=mailto:d@example.com", &r, why, sizeof why), 0);
    assert_int_equal(r.p, DMARC_P_QUARANTINE);
    assert_int_equal(r.sp, DMARC_P_NONE);
    assert_true(r.has_sp);
    assert_int_equal(r.pct, 20);
    assert_int_equal(r.adkim, 's');
    assert_int_equal(r.aspf, 's');
    /* no p= but rua=: as p=none (RFC 7489 6.6.3) */
    assert_int_equal(dmarc_record_parse("v=DMARC1; rua=mailto:d@example.com", &r, why,
                                        sizeof why), 0);
    assert_int_equal(r.p, DMARC_P_NONE);
    static const char *const bad[] = { "v=DMARC1", "v=DMARC1; p=bogus", "v=DMARC1; p=none; pct=101",
                                       "v=DMARC1; p=none; adkim=x", "p=none",
                                       "v=DMARC1; sp=reject" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(dmarc_record_parse(bad[i], &r, why, sizeof why), -1);
    char big[DMARC_RECORD_MAX + 10];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    memcpy(big, "v=DMARC1; p=none; x=", 20);
    assert_int_equal(dmarc_record_parse(big, &r, why, sizeof why), -1);
}

static void test_org_domain(void **state)
{
    static const char *const t[][2] = {
        { "example.com", "example.com" }, { "a.b.Example.COM", "example.com" },
        { "mail.example.co.uk", "example.co.uk" }, { "example.com.", "example.com" },
        { "www.bbc.co.uk", "bbc.co.uk" }, { "x.example.test", "example.test" },
    };
    char out[256];
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        dmarc_org_domain(t[i][0], out, sizeof out);
        assert_string_equal(out, t[i][1]);
    }
}

/* One decision on a fabricated record found at rdom. */
static void decide(const char *from, const char *spf, const char *spfdom, const char *dkdom,
                   const char *dkres, const char *rec, const char *rdom, int draw,
                   struct dmarc_outcome *o)
{
    struct dmarc_dkim k = { dkdom, dkres };
    struct dmarc_input in = { .from_domain = from, .spf_result = spf, .spf_domain = spfdom,
                              .dkim = &k, .ndkim = dkdom ? 1 : 0, .draw = draw };
    dmarc_decide(&in, rec, rdom, 0, o);
}

static void test_alignment(void **state)
{
    struct dmarc_outcome o;
    const char *rec = "v=DMARC1; p=reject";
    /* relaxed SPF: a subdomain of the same organizational domain aligns */
    decide("example.com", "pass", "bounce.example.com", NULL, NULL, rec, "example.com", 0, &o);
    assert_int_equal(o.result, DMARC_R_PASS);
    assert_true(o.spf_aligned);
    assert_false(o.dkim_aligned);
    /* SPF passes for another organization: fail */
    decide("example.com", "pass", "other.net", NULL, NULL, rec, "example.com", 0, &o);
    assert_int_equal(o.result, DMARC_R_FAIL);
    assert_int_equal(o.policy, DMARC_P_REJECT);
    /* aligned SPF domain but SPF fails: fail */
    decide("example.com", "softfail", "example.com", NULL, NULL, rec, "example.com", 0, &o);
    assert_int_equal(o.result, DMARC_R_FAIL);
    /* strict SPF: the subdomain no longer aligns */
    decide("example.com", "pass", "bounce.example.com", NULL, NULL,
           "v=DMARC1; p=reject; aspf=s", "example.com", 0, &o);
    assert_int_equal(o.result, DMARC_R_FAIL);
    assert_int_equal(o.aspf, 's');
    /* DKIM relaxed and strict */
    decide("news.example.com", "", "", "example.com", "pass", rec, "example.com", 0, &o);
    assert_int_equal(o.result, DMARC_R_PASS);
    assert_true(o.dkim_aligned);
    assert_string_equal(o.dkim_domain, "example.com");
    decide("news.example.com", "", "", "example.com", "pass",
           "v=DMARC1; p=reject; adkim=s", "example.com", 0, &o);
    assert_int_equal(o.result, DMARC_R_FAIL);
    /* a failing aligned signature does not count */
    decide("example.com", "", "", "example.com", "fail", rec, "example.com", 0, &o);
    assert_int_equal(o.result, DMARC_R_FAIL);
    assert_string_equal(o.dkim_result, "fail");
    /* public suffixes: example.co.uk and other.co.uk do not align */
    decide("example.co.uk", "pass", "other.co.uk", NULL, NULL, rec, "example.co.uk", 0, &o);
    assert_int_equal(o.result, DMARC_R_FAIL);
    /* case and final dots do not matter */
    decide("Example.COM.", "pass", "EXAMPLE.com", NULL, NULL, rec, "example.com", 0, &o);
    assert_int_equal(o.result, DMARC_R_PASS);
}

static void test_dkim_many(void **state)
{
    struct dmarc_dkim k[3] = { { "other.net", "pass" }, { "example.com", "fail" },
                               { "mail.example.com", "pass" } };
    struct dmarc_input in = { .from_domain = "example.com", .dkim = k, .ndkim = 3, .draw = 0 };
    struct dmarc_outcome o;
    dmarc_decide(&in, "v=DMARC1; p=quarantine", "example.com", 0, &o);
    assert_int_equal(o.result, DMARC_R_PASS);
    assert_string_equal(o.dkim_domain, "mail.example.com");
    in.ndkim = 2;
    dmarc_decide(&in, "v=DMARC1; p=quarantine", "example.com", 0, &o);
    assert_int_equal(o.result, DMARC_R_FAIL);
    assert_string_equal(o.dkim_domain, "other.net");     /* the first, for reports */
}

static void test_policy_sp_pct(void **state)
{
    struct dmarc_outcome o;
    const char *rec = "v=DMARC1; p=reject; sp=quarantine; pct=30";
    /* the organizational domain itself: p= */
    decide("example.com", "", "", NULL, NULL, rec, "example.com", 0, &o);
    assert_int_equal(o.policy, DMARC_P_REJECT);
    assert_false(o.sp_used);
    /* a subdomain whose record came from the organizational domain: sp= */
    decide("a.example.com", "", "", NULL, NULL, rec, "example.com", 0, &o);
    assert_int_equal(o.policy, DMARC_P_QUARANTINE);
    assert_true(o.sp_used);
    /* pct=30: draws 0..29 apply the policy, 30..99 lower it one step */
    decide("example.com", "", "", NULL, NULL, rec, "example.com", 29, &o);
    assert_int_equal(o.policy, DMARC_P_REJECT);
    assert_false(o.sampled_out);
    decide("example.com", "", "", NULL, NULL, rec, "example.com", 30, &o);
    assert_int_equal(o.policy, DMARC_P_QUARANTINE);
    assert_int_equal(o.published, DMARC_P_REJECT);
    assert_true(o.sampled_out);
    decide("a.example.com", "", "", NULL, NULL, rec, "example.com", 99, &o);
    assert_int_equal(o.policy, DMARC_P_NONE);
    /* pct=0 never applies, pct=100 always (random draws) */
    for (int i = 0; i < 50; i++) {
        decide("example.com", "", "", NULL, NULL, "v=DMARC1; p=reject; pct=0", "example.com", -1,
               &o);
        assert_int_equal(o.policy, DMARC_P_QUARANTINE);
        decide("example.com", "", "", NULL, NULL, "v=DMARC1; p=reject; pct=100", "example.com",
               -1, &o);
        assert_int_equal(o.policy, DMARC_P_REJECT);
    }
    /* a pass keeps the published policy, never sampled */
    decide("example.com", "pass", "example.com", NULL, NULL, rec, "example.com", 99, &o);
    assert_int_equal(o.result, DMARC_R_PASS);
    assert_false(o.sampled_out);
}

static void test_none_temp_perm(void **state)
{
    struct dmarc_input in = { .from_domain = "example.com", .draw = 0 };
    struct dmarc_outcome o;
    dmarc_decide(&in, NULL, NULL, 0, &o);
    assert_int_equal(o.result, DMARC_R_NONE);
    assert_int_equal(o.policy, DMARC_P_NONE);
    dmarc_decide(&in, "v=DMARC1; p=reject", "example.com", 1, &o);
    assert_int_equal(o.result, DMARC_R_TEMPERROR);
    assert_int_equal(o.policy, DMARC_P_NONE);          /* never a policy on temperror */
    dmarc_decide(&in, "v=DMARC1; p=rejekt", "example.com", 0, &o);
    assert_int_equal(o.result, DMARC_R_PERMERROR);
    assert_int_equal(o.policy, DMARC_P_NONE);
    in.from_domain = "";
    dmarc_decide(&in, "v=DMARC1; p=reject", "example.com", 0, &o);
    assert_int_equal(o.result, DMARC_R_NONE);
    in.from_domain = "a..example.com";           /* never looked up */
    struct dmarc_eval *e = dmarc_eval_new(&in);
    const char *name;
    assert_int_equal(dmarc_eval_step(e, &name), 0);
    assert_int_equal(dmarc_eval_outcome(e)->result, DMARC_R_PERMERROR);
    assert_int_equal(dmarc_eval_outcome(e)->policy, DMARC_P_NONE);
    dmarc_eval_free(e);
}

/* ---- discovery through the stepper ----------------------------------- */
struct zone { const char *name; const char *txt[3]; int temp; };

static struct dns_answer *answer_for(const struct zone *z, const char *name)
{
    struct dns_answer *a = xcalloc(1, sizeof *a);
    a->qtype = DNS_T_TXT;
    a->status = DNS_NOTFOUND;
    a->rcode = 3;
    for (; z->name; z++) {
        if (strcmp(z->name, name) != 0)
            continue;
        if (z->temp) {
            a->status = DNS_TEMPFAIL;
            a->rcode = 2;
            return a;
        }
        a->status = DNS_FOUND;
        a->rcode = 0;
        a->rr = xcalloc(3, sizeof *a->rr);
        for (; a->n < 3 && z->txt[a->n]; a->n++) {
            a->rr[a->n].type = DNS_T_TXT;
            a->rr[a->n].u.txt.text = xstrdup(z->txt[a->n]);
            a->rr[a->n].u.txt.len = strlen(z->txt[a->n]);
        }
        return a;
    }
    return a;
}

static void discover(const struct zone *z, const char *from, struct dmarc_outcome *o, int *n_r)
{
    struct dmarc_input in = { .from_domain = from, .spf_result = "pass",
                              .spf_domain = "other.net", .draw = 0 };
    struct dmarc_eval *e = dmarc_eval_new(&in);
    const char *name;
    *n_r = 0;
    while (dmarc_eval_step(e, &name)) {
        assert_true(++*n_r <= 2);
        dmarc_eval_answer(e, answer_for(z, name));
    }
    *o = *dmarc_eval_outcome(e);
    dmarc_eval_free(e);
}

static void test_discovery(void **state)
{
    static const struct zone z[] = {
        { "_dmarc.example.com", { "v=spf1 -all", "v=DMARC1; p=reject; sp=none" }, 0 },
        { "_dmarc.own.example.com", { "v=DMARC1; p=quarantine" }, 0 },
        { "_dmarc.two.test", { "v=DMARC1; p=reject", "v=DMARC1; p=none" }, 0 },
        { "_dmarc.temp.test", { NULL }, 1 },
        { "_dmarc.sub.orgtemp.test", { NULL }, 0 },
        { "_dmarc.orgtemp.test", { NULL }, 1 },
        { NULL, { NULL }, 0 },
    };
    struct dmarc_outcome o;
    int n;
    discover(z, "example.com", &o, &n);
    assert_int_equal(n, 1);
    assert_int_equal(o.result, DMARC_R_FAIL);
    assert_int_equal(o.policy, DMARC_P_REJECT);
    assert_string_equal(o.record, "v=DMARC1; p=reject; sp=none");
    discover(z, "a.b.example.com", &o, &n);       /* falls back to the org domain */
    assert_int_equal(n, 2);
    assert_int_equal(o.policy, DMARC_P_NONE);
    assert_true(o.sp_used);
    assert_string_equal(o.record_domain, "example.com");
    discover(z, "own.example.com", &o, &n);       /* its own record: p= */
    assert_int_equal(n, 1);
    assert_int_equal(o.policy, DMARC_P_QUARANTINE);
    assert_false(o.sp_used);
    discover(z, "none.test", &o, &n);             /* the org domain itself: one lookup */
    assert_int_equal(n, 1);
    assert_int_equal(o.result, DMARC_R_NONE);
    discover(z, "two.test", &o, &n);
    assert_int_equal(o.result, DMARC_R_NONE);
    discover(z, "temp.test", &o, &n);
    assert_int_equal(o.result, DMARC_R_TEMPERROR);
    discover(z, "sub.orgtemp.test", &o, &n);
    assert_int_equal(n, 2);
    assert_int_equal(o.result, DMARC_R_TEMPERROR);
    discover(z, "", &o, &n);
    assert_int_equal(n, 0);
    assert_int_equal(o.result, DMARC_R_NONE);
}

static void test_report(void **state)
{
    struct dmarc_outcome o;
    decide("example.com", "pass", "x.net", "d.test", "pass", "v=DMARC1; p=reject; pct=50",
           "example.com", 0, &o);
    /* values from mail and DNS as they might be: sanitised in the line */
    str_copy(o.from_domain, sizeof o.from_domain, "ex ample=.com");
    str_copy(o.record_domain, sizeof o.record_domain, "ex ample=.com");
    str_copy(o.org_domain, sizeof o.org_domain, "ex ample=.com");
    str_copy(o.dkim_domain, sizeof o.dkim_domain, "d\n.test");
    struct dmarc_report_row row = { 1700000000, "Q1", "192.0.2.1", "reject", &o, "pass",
                                    "x.net" };
    buf_t b;
    buf_init(&b, 256);
    dmarc_report_line(&row, &b);
    assert_string_equal(b.data,
        "time=1700000000 queue_id=Q1 source_ip=192.0.2.1 header_from=ex?ample?.com "
        "policy_domain=ex?ample?.com org_domain=ex?ample?.com dmarc=fail disposition=reject "
        "dkim_aligned=fail spf_aligned=fail dkim_domain=d?.test dkim_result=pass "
        "spf_domain=x.net spf_result=pass p=reject sp_used=no pct=50 sampled_out=no adkim=r "
        "aspf=r");
    buf_free(&b);
}

/* The records file stays open between lines; one moved away (a report
 * sender took it) is followed by a new file within a second. */
static void test_report_append(void **state)
{
    struct dmarc_outcome o;
    decide("example.com", "pass", "example.com", NULL, NULL, "v=DMARC1; p=none",
           "example.com", 0, &o);
    struct dmarc_report_row row = { 1700000000, "Q1", "192.0.2.1", "none", &o, "pass",
                                    "example.com" };
    char dir[] = "/tmp/test_dmarc.XXXXXX", path[64], moved[80];
    assert_non_null(mkdtemp(dir));
    str_format(path, sizeof path, "%s/records", dir);
    str_format(moved, sizeof moved, "%s/taken", dir);
    assert_int_equal(dmarc_report_append(path, &row), 0);
    assert_int_equal(dmarc_report_append(path, &row), 0);
    assert_int_equal(rename(path, moved), 0);
    usleep(1100 * 1000);
    assert_int_equal(dmarc_report_append(path, &row), 0);
    buf_t a, b;
    buf_init(&a, 256);
    buf_init(&b, 256);
    FILE *f = fopen(moved, "r");
    for (int c; f && (c = fgetc(f)) != EOF;)
        buf_append_char(&a, (char)c);
    fclose(f);
    f = fopen(path, "r");
    for (int c; f && (c = fgetc(f)) != EOF;)
        buf_append_char(&b, (char)c);
    fclose(f);
    assert_int_equal(b.len * 2, a.len);          /* two lines there, one here */
    assert_int_equal(b.data[b.len - 1], '\n');
    buf_free(&a);
    buf_free(&b);
    unlink(path);
    unlink(moved);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_is_dmarc),
        cmocka_unit_test(test_report_append),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_org_domain),
        cmocka_unit_test(test_alignment),
        cmocka_unit_test(test_dkim_many),
        cmocka_unit_test(test_policy_sp_pct),
        cmocka_unit_test(test_none_temp_perm),
        cmocka_unit_test(test_discovery),
        cmocka_unit_test(test_report),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
