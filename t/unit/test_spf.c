/*
 * test_spf.c - lib/spf without DNS: the record parser (RFC 7208 4.6, 5,
 * 6: every syntax error is a permerror), the macro expander (the examples
 * of RFC 7208 7.4, transformers, escapes, URL encoding, the 253-byte rule)
 * and the evaluator driven by a table of answers instead of a resolver.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include "spf/spf_int.h"

static int parses(const char *rec)
{
    struct spf_record r;
    buf_t err;
    buf_init(&err, 64);
    int rc = spf_record_parse(rec, strlen(rec), &r, &err);
    if (rc == 0)
        spf_record_free(&r);
    buf_free(&err);
    return rc == 0;
}

static void test_parse_valid(void **state)
{
    static const char *const ok[] = {
        "v=spf1", "v=spf1 -all", "V=SPF1 +ALL", "v=spf1   ip4:192.0.2.0/24  ~all  ",
        "v=spf1 ip4:0.0.0.0/0 ip6:::/0 ip6:2001:db8::/32 ip6:::ffff:1.2.3.4",
        "v=spf1 a a:example.com a/24 a//64 a:example.com/24//64 mx mx:%{d}/0",
        "v=spf1 ptr ptr:example.com exists:%{ir}.%{l1r+-}._spf.%{d} include:_spf.example.com",
        "v=spf1 redirect=_spf.example.com exp=explain._spf.%{d}",
        "v=spf1 foo=bar x-y.z_1=%{d} -all", "v=spf1 a:foo-bar.example.com. -all",
        "v=spf1 mx:%%%_/.Clara.de/27 -all", "v=spf1 a:example.x-1",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (!parses(ok[i]))
            fail_msg("should parse: %s", ok[i]);
}

static void test_parse_errors(void **state)
{
    static const char *const bad[] = {
        "v=spf1 foo", "v=spf1 -all:foo", "v=spf1 all/24", "v=spf1 =a",
        "v=spf1 ip4:192.0.2.0/33", "v=spf1 ip4:192.0.2.01", "v=spf1 ip4:192.0.2",
        "v=spf1 ip4:192.0.2.0/024", "v=spf1 ip4:192.0.2.0//64", "v=spf1 ip6:2001:db8::/129",
        "v=spf1 ip6:2001:db8:zz::", "v=spf1 ip4", "v=spf1 a:", "v=spf1 a:foo.123",
        "v=spf1 a:museum", "v=spf1 a:example.-com", "v=spf1 a:example.com,",
        "v=spf1 a/33", "v=spf1 a//129", "v=spf1 include", "v=spf1 include:",
        "v=spf1 exists", "v=spf1 exists:%{x}.example.com", "v=spf1 exists:%{d0}.example.com",
        "v=spf1 exists:%{c}.example.com", "v=spf1 exists:%.example.com",
        "v=spf1 exists:%{d", "v=spf1 redirect=a.example.com redirect=b.example.com",
        "v=spf1 exp=a.example.com exp=b.example.com", "v=spf1 exp=", "v=spf1 redirect=",
        "v=spf1 redirect=foo", "v=spf1 foo=%{q}", "v=spf1 ptr/24", "v=spf1 include:a.com/8",
        "v=spf1 -all\tfoo", "v=spf1 a:caf\xc3\xa9.example.com", "v=spf1 a:%{d}x",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (parses(bad[i]))
            fail_msg("should fail: %s", bad[i]);
    assert_false(spf_record_is_v1("v=spf10", 7));
    assert_false(spf_record_is_v1("v=spf1-all", 10));
    assert_true(spf_record_is_v1("v=spf1 -all", 11));
}

static void test_parse_terms(void **state)
{
    struct spf_record r;
    buf_t err;
    buf_init(&err, 64);
    const char *rec = "v=spf1 ~a:x.example.com/24//64 ?ip4:192.0.2.128/25 -ip6:2001:db8::/48 "
                      "mx redirect=r.example.com";
    assert_int_equal(spf_record_parse(rec, strlen(rec), &r, &err), 0);
    assert_int_equal(r.n, 4);
    assert_int_equal(r.terms[0].mech, SPF_M_A);
    assert_int_equal(r.terms[0].qual, SPF_SOFTFAIL);
    assert_int_equal(r.terms[0].cidr4, 24);
    assert_int_equal(r.terms[0].cidr6, 64);
    assert_int_equal(r.terms[0].spec.n, strlen("x.example.com"));
    assert_int_equal(r.terms[1].qual, SPF_NEUTRAL);
    assert_int_equal(r.terms[1].net[3], 128);
    assert_int_equal(r.terms[1].cidr4, 25);
    assert_int_equal(r.terms[2].qual, SPF_FAIL);
    assert_int_equal(r.terms[2].cidr6, 48);
    assert_int_equal(r.terms[3].qual, SPF_PASS);
    assert_null(r.terms[3].spec.p);
    assert_int_equal(r.terms[3].cidr4, 32);
    assert_memory_equal(r.redirect.p, "r.example.com", r.redirect.n);
    assert_null(r.exp.p);
    spf_record_free(&r);
    buf_free(&err);
}

static const struct spf_macro_env env4 = {
    .s = "strong-bad@email.example.com", .l = "strong-bad", .o = "email.example.com",
    .d = "email.example.com", .i = "192.0.2.3", .p = "mx.example.org", .h = "mx.example.org",
    .c = "192.0.2.3", .r = "receiver.example.net", .t = "1234", .v = "in-addr",
};

static void expands(const struct spf_macro_env *env, const char *in, int ctx, const char *want)
{
    buf_t out;
    buf_init(&out, 64);
    if (spf_macro_expand(env, in, strlen(in), ctx, &out) != 0)
        fail_msg("expansion failed: %s", in);
    if (strcmp(out.data, want) != 0)
        fail_msg("%s: got \"%s\", want \"%s\"", in, out.data, want);
    buf_free(&out);
}

/* RFC 7208 7.4 */
static void test_macro_rfc_examples(void **state)
{
    static const char *const t[][2] = {
        { "%{s}", "strong-bad@email.example.com" }, { "%{o}", "email.example.com" },
        { "%{d}", "email.example.com" }, { "%{d4}", "email.example.com" },
        { "%{d3}", "email.example.com" }, { "%{d2}", "example.com" }, { "%{d1}", "com" },
        { "%{dr}", "com.example.email" }, { "%{d2r}", "example.email" },
        { "%{l}", "strong-bad" }, { "%{l-}", "strong.bad" }, { "%{lr}", "strong-bad" },
        { "%{lr-}", "bad.strong" }, { "%{l1r-}", "strong" },
        { "%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com" },
        { "%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com" },
        { "%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "bad.strong.lp.3.2.0.192.in-addr._spf.example.com" },
        { "%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "3.2.0.192.in-addr.strong.lp._spf.example.com" },
        { "%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net" },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        expands(&env4, t[i][0], SPF_MX_DOMAIN, t[i][1]);
    struct spf_macro_env env6 = env4;
    env6.i = "2.0.0.1.0.D.B.8.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.C.B.0.1";
    env6.v = "ip6";
    expands(&env6, "%{ir}.%{v}._spf.%{d2}",  SPF_MX_DOMAIN,
            "1.0.B.C.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2.ip6._spf.example.com");
}

static void test_macro_escapes(void **state)
{
    expands(&env4, "%%%_%-x", SPF_MX_EXP, "% %20x");
    expands(&env4, "%{L}", SPF_MX_EXP, "strong-bad");
    struct spf_macro_env e = env4;
    e.l = "~jack&jill=up-a_b3.c";
    expands(&e, "http://x/?l=%{L}", SPF_MX_EXP, "http://x/?l=~jack%26jill%3Dup-a_b3.c");
    expands(&env4, "%{c} %{r} %{t}", SPF_MX_EXP, "192.0.2.3 receiver.example.net 1234");
    expands(&env4, "%{d}.", SPF_MX_DOMAIN, "email.example.com");
    expands(&env4, "%{d}.", SPF_MX_EXP, "email.example.com.");
    expands(&env4, "%{d200}", SPF_MX_DOMAIN, "email.example.com");
}

static void test_macro_errors(void **state)
{
    static const char *const bad[] = { "%", "%x", "%{", "%{d", "%{x}", "%{d0}", "%{d2q}",
                                       "%{dr r}", "a b" };
    buf_t out;
    buf_init(&out, 16);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (spf_macro_expand(&env4, bad[i], strlen(bad[i]), SPF_MX_DOMAIN, &out) == 0)
            fail_msg("should fail: %s", bad[i]);
    assert_int_equal(spf_macro_check("%{c}", 4, SPF_MX_DOMAIN), -1);
    assert_int_equal(spf_macro_check("%{c} x", 6, SPF_MX_EXP), 0);
    assert_true(spf_macro_uses_p("x.%{p2}.y", 9));
    assert_false(spf_macro_uses_p("x.%{d2}.y", 9));
    buf_free(&out);
}

static void test_domain_spec(void **state)
{
    static const char *const ok[] = { "example.com", "example.com.", "%{d}", "x.%{d}",
                                      "%{d}.com", "a.x-1", "a.1-x", "%{ir}.%{v}._spf.%{d2}" };
    static const char *const bad[] = { "", "com", "example.123", "example.-com", "example.com-",
                                       "example..", "%{d}.", "%{d}x", "a.b_c", "a.%{d}.1" };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (spf_domain_spec_check(ok[i], strlen(ok[i])) != 0)
            fail_msg("should pass: %s", ok[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (spf_domain_spec_check(bad[i], strlen(bad[i])) == 0)
            fail_msg("should fail: %s", bad[i]);
}

static void test_macro_truncation(void **state)
{
    /* 7.3: over 253 bytes, labels go from the left */
    struct spf_macro_env e = env4;
    char l[64 * 5];
    buf_t out;
    size_t o = 0;
    for (int k = 0; k < 5; k++) {
        memset(l + o, 'a' + k, 60);
        o += 60;
        l[o++] = '.';
    }
    l[o - 1] = '\0';
    e.l = l;
    buf_init(&out, 64);
    assert_int_equal(spf_macro_expand(&e, "%{l}.example.com", 16, SPF_MX_DOMAIN, &out), 0);
    assert_true(out.len <= 253);
    assert_int_equal(out.data[0], 'c');   /* 316 -> 255 -> 194 bytes */
    assert_int_equal(out.len, 194);
    buf_free(&out);
}

/* ---- the evaluator on a table of answers ------------------------------ */

struct zrec { const char *name; uint16_t type; const char *v; };

static struct dns_answer *zone_answer(const struct zrec *z, const char *name, uint16_t type)
{
    struct dns_answer *a = xcalloc(1, sizeof *a);
    a->qtype = type;
    a->status = DNS_NOTFOUND;
    a->rcode = 3;
    a->rr = xcalloc(8, sizeof *a->rr);
    for (; z->name; z++) {
        if (strcmp(z->name, name) != 0)
            continue;
        a->rcode = 0;
        if (z->type == 0) {
            a->status = DNS_TEMPFAIL;
            continue;
        }
        if (z->type != type || a->n == 8)
            continue;
        struct dns_rr *rr = &a->rr[a->n++];
        rr->type = type;
        if (type == DNS_T_TXT) {
            rr->u.txt.text = xstrdup(z->v);
            rr->u.txt.len = strlen(z->v);
        } else if (type == DNS_T_A) {
            rr->u.addr.family = AF_INET;
            inet_pton(AF_INET, z->v, rr->u.addr.addr);
        } else if (type == DNS_T_MX) {
            rr->u.mx.host = xstrdup(z->v);
        } else if (type == DNS_T_PTR) {
            rr->u.ptr = xstrdup(z->v);
        }
        a->status = DNS_FOUND;
    }
    return a;
}

static enum spf_result run(const struct zrec *z, const char *ip, const char *sender,
                           struct spf_outcome *o_r)
{
    struct spf_request rq = { .ip = ip, .sender = sender, .helo = "helo.test" };
    struct spf_eval *e = spf_eval_new(&rq);
    const char *name;
    uint16_t type;
    int steps = 0;
    while (spf_eval_step(e, &name, &type)) {
        assert_true(++steps < 200);
        spf_eval_answer(e, zone_answer(z, name, type));
    }
    *o_r = *spf_eval_outcome(e);
    spf_eval_free(e);
    return o_r->result;
}

static const struct zrec zone[] = {
    { "a.test", DNS_T_TXT, "v=spf1 ip4:192.0.2.0/24 include:b.test mx -all exp=e.test" },
    { "a.test", DNS_T_MX, "mx.a.test" },
    { "mx.a.test", DNS_T_A, "198.51.100.9" },
    { "b.test", DNS_T_TXT, "v=spf1 ip4:203.0.113.1 -all" },
    { "e.test", DNS_T_TXT, "%{i} is not one of %{d}'s" },
    { "void.test", DNS_T_TXT, "v=spf1 a:n1.test a:n2.test a:n3.test +all" },
    { "loop.test", DNS_T_TXT, "v=spf1 include:loop.test" },
    { "temp.test", DNS_T_TXT, "v=spf1 a:down.test -all" },
    { "down.test", 0, NULL },
    { "red.test", DNS_T_TXT, "v=spf1 redirect=b.test" },
    { NULL, 0, NULL },
};

static void test_eval(void **state)
{
    static const struct { const char *ip, *sender; enum spf_result want; } t[] = {
        { "192.0.2.1", "x@a.test", SPF_PASS },           /* ip4 */
        { "203.0.113.1", "x@a.test", SPF_PASS },         /* include */
        { "198.51.100.9", "x@a.test", SPF_PASS },        /* mx */
        { "::ffff:198.51.100.9", "x@a.test", SPF_PASS }, /* IPv4-mapped */
        { "2001:db8::1", "x@a.test", SPF_FAIL },
        { "192.0.2.1", "x@void.test", SPF_PERMERROR },   /* 3 void lookups */
        { "192.0.2.1", "x@loop.test", SPF_PERMERROR },   /* > 10 terms */
        { "192.0.2.1", "x@temp.test", SPF_TEMPERROR },
        { "192.0.2.1", "x@nothing.test", SPF_NONE },
        { "203.0.113.1", "x@red.test", SPF_PASS },
        { "not-an-ip", "x@a.test", SPF_PERMERROR },
    };
    struct spf_outcome o;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (run(zone, t[i].ip, t[i].sender, &o) != t[i].want)
            fail_msg("%s %s: %s", t[i].ip, t[i].sender, spf_result_name(o.result));
    assert_int_equal(run(zone, "198.51.100.10", "x@a.test", &o), SPF_FAIL);
    assert_string_equal(o.explanation, "198.51.100.10 is not one of a.test's");
    assert_int_equal(run(zone, "203.0.113.2", "x@red.test", &o), SPF_FAIL);
    assert_string_equal(o.explanation, "red.test does not designate 203.0.113.2 as permitted sender");
    assert_int_equal(run(zone, "192.0.2.1", "", &o), SPF_NONE);
    assert_true(o.helo_identity);
    assert_string_equal(o.sender, "postmaster@helo.test");
}

static void test_received_spf(void **state)
{
    struct spf_outcome o = { .result = SPF_PERMERROR };
    struct spf_request rq = { .ip = "192.0.2.1", .sender = "a b\"@x.test", .helo = "h\r\nX: y" };
    buf_t out;
    str_copy(o.sender, sizeof o.sender, "a b\"@x.test");
    str_copy(o.reason, sizeof o.reason, "unknown mechanism: foo (in x.test)");
    buf_init(&out, 64);
    spf_received_spf(&o, &rq, "mx.test", &out);
    assert_string_equal(out.data,
        "Received-SPF: permerror (mx.test: error in processing during lookup of a b\"@x.test: "
        "unknown mechanism: foo in x.test) client-ip=192.0.2.1; envelope-from=\"a b\\\"@x.test\"; "
        "helo=\"hX: y\"; receiver=mx.test; identity=mailfrom; "
        "problem=\"unknown mechanism: foo (in x.test)\"");
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_terms),
        cmocka_unit_test(test_macro_rfc_examples),
        cmocka_unit_test(test_macro_escapes),
        cmocka_unit_test(test_macro_errors),
        cmocka_unit_test(test_domain_spec),
        cmocka_unit_test(test_macro_truncation),
        cmocka_unit_test(test_eval),
        cmocka_unit_test(test_received_spf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
