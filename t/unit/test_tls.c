/*
 * test_tls.c - lib/tls/tls.c: the protocol range from tls.protocols (never
 * below TLSv1.2) and the server context's refusal of missing files.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include <openssl/ssl.h>

#include "tls/tls.h"

static int range(const char *a, const char *b, int *lo, int *hi)
{
    char *v[2] = { (char *)a, (char *)b };
    struct strlist l = { v, b ? 2 : 1 };
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    buf_t err;
    buf_init(&err, 64);
    int rc = tls_ctx_set_protocols(ctx, &l, &err);
    *lo = (int)SSL_CTX_get_min_proto_version(ctx);
    *hi = (int)SSL_CTX_get_max_proto_version(ctx);
    buf_free(&err);
    SSL_CTX_free(ctx);
    return rc;
}

static void test_protocols(void **st)
{
    (void)st;
    int lo, hi;
    assert_int_equal(range("TLSv1.2", "TLSv1.3", &lo, &hi), 0);
    assert_int_equal(lo, TLS1_2_VERSION);
    assert_int_equal(hi, TLS1_3_VERSION);
    assert_int_equal(range("TLSv1.3", NULL, &lo, &hi), 0);
    assert_int_equal(lo, TLS1_3_VERSION);
    assert_int_equal(range("TLSv1", "TLSv1.2", &lo, &hi), 0);     /* TLSv1 never enabled */
    assert_int_equal(lo, TLS1_2_VERSION);
    assert_int_equal(hi, TLS1_2_VERSION);
    assert_int_equal(range("TLSv1", "TLSv1.1", &lo, &hi), -1);
}

static void test_server_needs_files(void **st)
{
    (void)st;
    struct config c;
    memset(&c, 0, sizeof(c));
    char *p[] = { "TLSv1.2", "TLSv1.3" };
    c.tls_protocols.v = p;
    c.tls_protocols.n = 2;
    buf_t err;
    buf_init(&err, 64);
    assert_null(tls_server_new(&c, &err));
    assert_non_null(strstr(err.data, "no tls.certificate"));
    buf_reset(&err);
    c.tls_certificate = "/nonexistent/c.pem";
    c.tls_key = "/nonexistent/c.key";
    assert_null(tls_server_new(&c, &err));
    assert_non_null(strstr(err.data, "/nonexistent/c.pem"));
    buf_free(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_protocols),
        cmocka_unit_test(test_server_needs_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
