/*
 * test_tls_client.c - lib/tls/tls_client: which TLSA records DANE for SMTP
 * can use (RFC 7672 3.1), and lib/dns's TLSA name. (delivery.tls and its
 * map: test_config.c.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tls/tls_client.h"

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

static void test_tlsa_name(void **st)
{
    (void)st;
    char n[64];
    assert_int_equal(dns_tlsa_name(25, "mx.example.com", n, sizeof(n)), 0);
    assert_string_equal(n, "_25._tcp.mx.example.com");
    assert_int_equal(dns_tlsa_name(25, "a-very-long-host-name.example.com.xx.yy.zz.example", n,
                                   24), -1);
    assert_int_equal(dns_tlsa_name(0, "mx", n, sizeof(n)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tlsa_usable),
        cmocka_unit_test(test_tlsa_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
