/*
 * test_idna.c - U-labels to A-labels (lib/util/idna.c, libidn2). The
 * expected A-labels were computed with Python's own punycode codec.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "util/idna.h"

static void test_domain_ascii(void **st)
{
    (void)st;
    static const struct { const char *in, *want; } t[] = {
        { "example.com", "example.com" },
        { "Example.COM", "example.com" },
        { "b\xc3\xbc" "cher.example", "xn--bcher-kva.example" },
        { "B\xc3\x9c" "CHER.Example", "xn--bcher-kva.example" },     /* case folded */
        { "bu\xcc\x88" "cher.example", "xn--bcher-kva.example" },    /* NFC: u + U+0308 */
        { "b\xc3\xa4nk.com", "xn--bnk-qla.com" },
        { "xn--bnk-qla.com", "xn--bnk-qla.com" },
        { "\xe4\xbe\x8b\xe3\x81\x88.\xe3\x83\x86\xe3\x82\xb9\xe3\x83\x88",
          "xn--r8jz45g.xn--zckzah" },                                 /* 例え.テスト */
        { "b\xc3\xa4nk\xe2\x80\xa8.com", NULL },                      /* U+2028 */
        { "b\xff\xfenk.com", NULL },                                  /* not UTF-8 */
        { "b\xc3\xa4nk/x.com", NULL },                                /* '/' */
        { "a b.com", NULL },
        { "", "" },
    };
    char out[IDNA_ASCII_MAX];
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        int rc = idna_domain_ascii(t[i].in, strlen(t[i].in), out, sizeof out);
        if (t[i].want == NULL ? rc != -1 : rc != 0 || strcmp(out, t[i].want) != 0)
            fail_msg("%s: rc %d, got \"%s\", want \"%s\"", t[i].in, rc, rc == 0 ? out : "",
                     t[i].want ? t[i].want : "(refused)");
    }
    /* only n bytes are read; out too small is a refusal, never a cut name */
    assert_int_equal(idna_domain_ascii("b\xc3\xbc" "cher.example", 7, out, sizeof out), 0);
    assert_string_equal(out, "xn--bcher-kva");
    char small[8];
    assert_int_equal(idna_domain_ascii("b\xc3\xbc" "cher.example", 15, small, sizeof small), -1);
    assert_int_equal(idna_domain_ascii("example.com", 11, small, sizeof small), -1);
}

static void test_lookup_name(void **st)
{
    (void)st;
    char ace[IDNA_ASCII_MAX];
    const char *d = "Mixed.Example";
    assert_ptr_equal(idna_lookup_name(d, ace), d);          /* ASCII: itself, as it is */
    assert_string_equal(idna_lookup_name("b\xc3\xa4nk.com", ace), "xn--bnk-qla.com");
    assert_null(idna_lookup_name("b\xc3\xa4nk\xe2\x80\xa8.com", ace));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_domain_ascii),
        cmocka_unit_test(test_lookup_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
