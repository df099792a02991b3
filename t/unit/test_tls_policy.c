/*
 * test_tls_policy.c - delivery.tls and the delivery.tls_policy map
 * (lib/config): parsing, errors (the old scalar form), the lookup the smtp
 * agent does; and which TLSA records DANE can use (lib/tls/tls_client).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "config/config.h"
#include "tls/tls_client.h"

static struct config *load(const char *text, buf_t *errs_r)
{
    struct config_errors errs = { 0 };
    struct config *c = config_load_buffer("/tmp/x.conf", text, strlen(text), &errs);
    for (int i = 0; i < errs.n; i++) {
        config_error_format(errs_r, &errs.v[i]);
        buf_append_char(errs_r, '\n');
    }
    config_errors_free(&errs);
    return c;
}

static void expect_error(const char *text, const char *want)
{
    buf_t e;
    buf_init(&e, 64);
    struct config *c = load(text, &e);
    assert_null(c);
    if (strstr(e.data, want) == NULL)
        print_error("wanted: %s\ngot:\n%s", want, e.data);
    assert_non_null(strstr(e.data, want));
    buf_free(&e);
}

static const char *level(const struct config *c, const char *key)
{
    enum tls_policy p;
    return config_tls_policy_lookup(c, key, &p) ? config_tls_policy_name(p) : "-";
}

static void test_map(void **st)
{
    (void)st;
    buf_t e;
    buf_init(&e, 64);
    struct config *c = load(
        "hostname = \"h.test\";\n"
        "delivery { tls = \"dane\";\n"
        "  tls_policy { \"bank.example\" = \"verify\"; \"[mx.partner.example]\" = \"dane\";\n"
        "               \"[relay.example]:587\" = \"encrypt\"; \".corp.example\" = \"none\";\n"
        "               plain.example = \"may\"; } }\n", &e);
    if (c == NULL)
        print_error("%s", e.data);
    assert_non_null(c);
    assert_int_equal(c->delivery_tls, TLSP_DANE);
    assert_int_equal(c->ntls_policies, 5);
    assert_string_equal(level(c, "bank.example"), "verify");
    assert_string_equal(level(c, "BANK.example."), "verify");
    assert_string_equal(level(c, "sub.bank.example"), "-");        /* no ".bank.example" */
    assert_string_equal(level(c, "[mx.partner.example]"), "dane");
    assert_string_equal(level(c, "[mx.partner.example]:25"), "-");  /* caller tries both */
    assert_string_equal(level(c, "mx.partner.example"), "-");       /* a host is no domain */
    assert_string_equal(level(c, "[relay.example]:587"), "encrypt");
    assert_string_equal(level(c, "[relay.example]"), "-");
    assert_string_equal(level(c, "a.b.corp.example"), "none");      /* parent entry */
    assert_string_equal(level(c, "corp.example"), "-");
    assert_string_equal(level(c, "plain.example"), "may");
    assert_string_equal(config_tls_policy_name(TLSP_ENCRYPT), "encrypt");
    config_free(c);
    buf_free(&e);
}

static void test_default(void **st)
{
    (void)st;
    buf_t e;
    buf_init(&e, 64);
    struct config *c = load("hostname = \"h.test\";\n", &e);
    assert_non_null(c);
    assert_int_equal(c->delivery_tls, TLSP_MAY);
    assert_int_equal(c->ntls_policies, 0);
    assert_string_equal(level(c, "example.com"), "-");
    config_free(c);
    buf_free(&e);
}

static void test_errors(void **st)
{
    (void)st;
    /* the old form: the default policy was called delivery.tls_policy */
    expect_error("delivery { tls_policy = \"may\"; }\n",
                 "/tmp/x.conf:1:12: delivery.tls_policy: delivery.tls_policy is a map of "
                 "per-destination policies now; set the default policy with delivery.tls = "
                 "\"may\"");
    expect_error("delivery.tls_policy = \"verify\";\n", "delivery.tls = \"verify\"");
    expect_error("delivery { tls = \"secure\"; }\n",
                 "delivery.tls: expected one of \"none\", \"may\", \"encrypt\", \"dane\", "
                 "\"verify\", got \"secure\"");
    expect_error("delivery { tls_policy { \"a.example\" = \"strict\"; } }\n",
                 "delivery.tls_policy[\"a.example\"]: expected one of");
    expect_error("delivery { tls_policy { \"bad host\" = \"may\"; } }\n",
                 "expected a destination like");
    expect_error("delivery { tls_policy { \"[x.example]:99999\" = \"may\"; } }\n",
                 "expected a destination like");
    expect_error("delivery { tls_policy { \"a.example\" = \"may\"; \"A.example\" = \"none\"; } }\n",
                 "delivery.tls_policy[\"A.example\"]: duplicate destination");
    expect_error("delivery { tls_policy { \"a.example\" = [\"may\"]; } }\n",
                 "delivery.tls_policy[\"a.example\"]: expected one of");
    /* quoted keys only in the map */
    expect_error("limits { \"message_size\" = 10M; }\n", "unexpected quoted key");
}

static struct dns_tlsa tl(uint8_t u, uint8_t s, uint8_t m, size_t len)
{
    static uint8_t data[64];
    return (struct dns_tlsa){ u, s, m, len, data };
}

static void test_tlsa_usable(void **st)
{
    (void)st;
    struct dns_tlsa t;
    t = tl(3, 1, 1, 32); assert_true(tls_client_tlsa_usable(&t));
    t = tl(2, 0, 2, 64); assert_true(tls_client_tlsa_usable(&t));
    t = tl(3, 0, 0, 10); assert_true(tls_client_tlsa_usable(&t));
    t = tl(1, 1, 1, 32); assert_false(tls_client_tlsa_usable(&t));   /* PKIX-EE: not for SMTP */
    t = tl(0, 1, 1, 32); assert_false(tls_client_tlsa_usable(&t));
    t = tl(3, 2, 1, 32); assert_false(tls_client_tlsa_usable(&t));   /* selector */
    t = tl(3, 1, 3, 32); assert_false(tls_client_tlsa_usable(&t));   /* matching type */
    t = tl(3, 1, 1, 31); assert_false(tls_client_tlsa_usable(&t));   /* digest length */
    t = tl(3, 1, 2, 32); assert_false(tls_client_tlsa_usable(&t));
    struct dns_rr rr[3] = { { .type = DNS_T_TLSA }, { .type = DNS_T_TLSA },
                            { .type = DNS_T_A } };
    rr[0].u.tlsa = tl(1, 1, 1, 32);
    rr[1].u.tlsa = tl(3, 1, 1, 32);
    struct dns_answer a = { .n = 3, .rr = rr };
    assert_int_equal(tls_client_tlsa_count(&a), 1);
    assert_int_equal(tls_client_tlsa_count(NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_map),
        cmocka_unit_test(test_default),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_tlsa_usable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
