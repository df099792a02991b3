/*
 * test_sts.c - MTA-STS (lib/sts): the policy parser, the TXT record
 * parser, MX pattern matching, domain checks and the cache file round trip.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "sts/sts.h"

static struct sts_policy P;

static int parse(const char *text)
{
    char why[100] = "";
    return sts_policy_parse(text, strlen(text), &P, why, sizeof(why));
}

static void test_policy_ok(void **st)
{
    (void)st;
    assert_int_equal(parse("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\n"
                           "mx: *.example.net\r\nmx: backupmx.example.com\r\n"
                           "max_age: 604800\r\n"), 0);
    assert_int_equal(P.mode, STS_ENFORCE);
    assert_int_equal(P.max_age, 604800);
    assert_int_equal(P.nmx, 3);
    assert_string_equal(P.mx[1], "*.example.net");
    /* LF only, no final newline, blanks around the value, unknown fields */
    assert_int_equal(parse("version: STSv1\nmode:testing\nfoo_bar: baz\nmx: MX.Example.COM. \n"
                           "max_age: 99999999999"), -1);   /* 11 digits */
    assert_int_equal(parse("version: STSv1\nmode:testing\nfoo_bar: baz\nmx: MX.Example.COM. \n"
                           "max_age: 9999999999"), 0);
    assert_int_equal(P.mode, STS_TESTING);
    assert_int_equal(P.max_age, STS_MAX_AGE_MAX);        /* capped at a year */
    assert_string_equal(P.mx[0], "mx.example.com");
    /* mode none needs no mx; a repeated mode keeps the first */
    assert_int_equal(parse("version: STSv1\nmode: none\nmax_age: 86400\nmode: enforce\n"), 0);
    assert_int_equal(P.mode, STS_NONE);
    assert_int_equal(P.nmx, 0);
}

static void test_policy_bad(void **st)
{
    (void)st;
    static const char *const bad[] = {
        "",
        "\n\n",
        "mode: enforce\nversion: STSv1\nmx: a.b\nmax_age: 1\n",     /* version not first */
        "version: STSv2\nmode: enforce\nmx: a.b\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmax_age: 1\n",               /* no mx */
        "version: STSv1\nmode: enforce\nmx: a.b\n",                  /* no max_age */
        "version: STSv1\nmx: a.b\nmax_age: 1\n",                     /* no mode */
        "version: STSv1\nmode: Enforce\nmx: a.b\nmax_age: 1\n",      /* values are case-sensitive */
        "version: STSv1\nmode: enforce\nmx: a.b\nmax_age: -1\n",
        "version: STSv1\nmode: enforce\nmx: a.b\nmax_age:\n",
        "version: STSv1\nmode: enforce\nmx: a..b\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmx: *.\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmx: a*.b\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmx: a/b\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmx a.b\nmax_age: 1\n",       /* no colon */
        "version: STSv1\nmode: enforce\nm x: a.b\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmx: a.b\xff\nmax_age: 1\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse(bad[i]) != -1)
            fail_msg("accepted: %s", bad[i]);
    }
    char why[100];
    const char nul[] = "version: STSv1\nmode: enforce\nmx: a\0b\nmax_age: 1\n";
    assert_int_equal(sts_policy_parse(nul, sizeof(nul) - 1, &P, why, sizeof(why)), -1);
}

static void test_policy_bounds(void **st)
{
    (void)st;
    buf_t b;
    buf_init(&b, 8192);
    buf_append_str(&b, "version: STSv1\nmode: enforce\nmax_age: 10\n");
    for (int i = 0; i < STS_MX_MAX; i++)
        buf_printf(&b, "mx: mx%d.example.net\n", i);
    assert_int_equal(parse(b.data), 0);
    assert_int_equal(P.nmx, STS_MX_MAX);
    buf_append_str(&b, "mx: one.too.many\n");
    assert_int_equal(parse(b.data), -1);
    /* larger than STS_POLICY_MAX: refused before parsing */
    buf_reset(&b);
    buf_append_str(&b, "version: STSv1\nmode: none\nmax_age: 10\n");
    while (b.len <= STS_POLICY_MAX)
        buf_append_str(&b, "x-padding: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n");
    assert_int_equal(parse(b.data), -1);
    buf_free(&b);
}

static int txt(const char *s, char *id)
{
    return sts_txt_parse(s, strlen(s), id, STS_ID_MAX + 1);
}

static void test_txt(void **st)
{
    (void)st;
    char id[STS_ID_MAX + 1];
    assert_int_equal(txt("v=STSv1; id=20160831085700Z;", id), 1);
    assert_string_equal(id, "20160831085700Z");
    assert_int_equal(txt("v=STSv1;id=abc", id), 1);
    assert_string_equal(id, "abc");
    assert_int_equal(txt("v=STSv1 ; ext=x ; id=A1 ;  ", id), 1);
    assert_string_equal(id, "A1");
    assert_int_equal(txt("v=spf1 -all", id), 0);            /* not ours: discarded */
    assert_int_equal(txt("v=STSv10; id=1", id), 0);
    assert_int_equal(txt("", id), 0);
    assert_int_equal(txt("v=STSv1", id), -1);               /* no id */
    assert_int_equal(txt("v=STSv1; ext=1", id), -1);
    assert_int_equal(txt("v=STSv1; id=", id), -1);
    assert_int_equal(txt("v=STSv1; id=a-b", id), -1);       /* id: letters and digits */
    assert_int_equal(txt("v=STSv1; id=123456789012345678901234567890123", id), -1); /* 33 */
    assert_int_equal(txt("v=STSv1; id=12345678901234567890123456789012", id), 1);  /* 32 */
    assert_int_equal(txt("v=STSv1 id=1", id), -1);           /* no delimiter */
    assert_int_equal(txt("v=STSv1; id=1; bad", id), -1);
    assert_int_equal(txt("v=STSv1; id=1; x=a;b", id), -1);
    char small[4];
    assert_int_equal(sts_txt_parse("v=STSv1; id=12345", 17, small, sizeof(small)), -1);
}

static void test_mx_match(void **st)
{
    (void)st;
    assert_int_equal(parse("version: STSv1\nmode: enforce\nmax_age: 1\n"
                           "mx: mail.example.com\nmx: *.example.net\n"), 0);
    assert_true(sts_mx_match(&P, "mail.example.com"));
    assert_true(sts_mx_match(&P, "MAIL.Example.Com."));
    assert_true(sts_mx_match(&P, "mx1.example.net"));
    assert_true(sts_mx_match(&P, "MX2.EXAMPLE.NET"));
    assert_false(sts_mx_match(&P, "example.net"));          /* "*." needs a label */
    assert_false(sts_mx_match(&P, "a.b.example.net"));      /* exactly one label */
    assert_false(sts_mx_match(&P, ".example.net"));
    assert_false(sts_mx_match(&P, "xmail.example.com"));
    assert_false(sts_mx_match(&P, "mail.example.com.evil"));
    assert_false(sts_mx_match(&P, "mail.example.co"));
    assert_false(sts_mx_match(&P, ""));
    assert_false(sts_mx_match(&P, "."));
}

static void test_domain_ok(void **st)
{
    (void)st;
    assert_true(sts_domain_ok("example.com"));
    assert_true(sts_domain_ok("a-b_c.example"));
    assert_false(sts_domain_ok(""));
    assert_false(sts_domain_ok("."));
    assert_false(sts_domain_ok(".."));
    assert_false(sts_domain_ok("../etc"));
    assert_false(sts_domain_ok("a/b"));
    assert_false(sts_domain_ok(".hidden"));
    assert_false(sts_domain_ok("a..b"));
    assert_false(sts_domain_ok("a.b."));
    assert_false(sts_domain_ok("[127.0.0.1]"));
    assert_false(sts_domain_ok("a:443"));
    assert_false(sts_domain_ok("a@b"));
    char big[300];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_false(sts_domain_ok(big));
}

static void test_cache_roundtrip(void **st)
{
    (void)st;
    char dir[] = "/tmp/test_sts.XXXXXX";
    assert_non_null(mkdtemp(dir));
    const char *body = "version: STSv1\nmode: enforce\nmx: *.example.net\nmax_age: 3600\n";
    assert_int_equal(parse(body), 0);
    str_copy(P.id, sizeof(P.id), "ID123");
    P.fetched = 1700000000;
    assert_int_equal(sts_cache_write(dir, "example.net", &P, body, strlen(body)), 0);
    assert_int_equal(sts_cache_write(dir, "../escape", &P, body, strlen(body)), -1);
    struct sts_policy *q = calloc(1, sizeof(*q));
    assert_int_equal(sts_cache_read(dir, "example.net", q), 0);
    assert_int_equal(q->mode, STS_ENFORCE);
    assert_int_equal(q->max_age, 3600);
    assert_string_equal(q->id, "ID123");
    assert_int_equal((long)q->fetched, 1700000000L);
    assert_int_equal(q->from_cache, 1);
    assert_true(sts_mx_match(q, "mx.example.net"));
    assert_int_equal(sts_cache_read(dir, "other.net", q), -1);
    /* a damaged file is no cache */
    char path[300];
    snprintf(path, sizeof(path), "%s/example.net", dir);
    FILE *f = fopen(path, "w");
    fputs("postern-sts 1\nid ID123\nfetched 1\n\nversion: STSv2\n", f);
    fclose(f);
    assert_int_equal(sts_cache_read(dir, "example.net", q), -1);
    unlink(path);
    rmdir(dir);
    free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policy_ok),
        cmocka_unit_test(test_policy_bad),
        cmocka_unit_test(test_policy_bounds),
        cmocka_unit_test(test_txt),
        cmocka_unit_test(test_mx_match),
        cmocka_unit_test(test_domain_ok),
        cmocka_unit_test(test_cache_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
