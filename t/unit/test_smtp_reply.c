/*
 * test_smtp_reply.c - the smtp agent's reply parser (smtp/smtp_reply.c,
 * compiled in: it lives in the process folder): multiline assembly,
 * enhanced codes, bounds, formatting, EHLO keywords.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "../../smtp/smtp_reply.c"

static int feed(struct smtp_reply *r, const char *text)
{
    char err[128];
    int rc = 0;
    smtp_reply_init(r);
    while (*text) {
        const char *nl = strchr(text, '\n');
        size_t n = nl ? (size_t)(nl - text) : strlen(text);
        rc = smtp_reply_line(r, text, n, err, sizeof(err));
        if (rc != 0)
            return rc;
        text += n + (nl != NULL);
    }
    return rc;
}

static void test_multiline(void **st)
{
    struct smtp_reply r;
    assert_int_equal(feed(&r, "451-4.3.2 first\r\n451-4.3.2 second\r\n451 4.3.2 third\r\n"), 1);
    assert_int_equal(r.code, 451);
    assert_string_equal(r.enh, "4.3.2");
    assert_int_equal(r.nlines, 3);
    char out[200];
    smtp_reply_format(&r, out, sizeof(out));
    assert_string_equal(out, "451 4.3.2 first 4.3.2 second 4.3.2 third");
    assert_int_equal(feed(&r, "250-a\r\n"), 0);   /* more to come */
}

static void test_enhanced(void **st)
{
    struct smtp_reply r;
    assert_int_equal(feed(&r, "550 5.1.1 <x@y>: unknown\n"), 1);
    assert_string_equal(r.enh, "5.1.1");
    assert_int_equal(feed(&r, "550 4.1.1 wrong class\n"), 1);
    assert_string_equal(r.enh, "");
    assert_int_equal(feed(&r, "250 ok\n"), 1);
    assert_string_equal(r.enh, "");
    assert_int_equal(feed(&r, "250\n"), 1);
    assert_int_equal(r.code, 250);
}

static void test_malformed(void **st)
{
    struct smtp_reply r;
    assert_int_equal(feed(&r, "250-a\n251 b\n"), -1);     /* codes disagree */
    assert_int_equal(feed(&r, "25 short\n"), -1);
    assert_int_equal(feed(&r, "250x\n"), -1);
    assert_int_equal(feed(&r, "199 no\n"), -1);
    assert_int_equal(feed(&r, "600 no\n"), -1);
    char line[SMTP_REPLY_LINE_MAX + 10];
    memset(line, 'a', sizeof(line));
    memcpy(line, "250 ", 4);
    char err[64];
    smtp_reply_init(&r);
    assert_int_equal(smtp_reply_line(&r, line, sizeof(line), err, sizeof(err)), -1);
    assert_string_equal(err, "reply line too long");
    smtp_reply_init(&r);
    int rc = 0;
    for (int i = 0; i <= SMTP_REPLY_LINES && rc == 0; i++)
        rc = smtp_reply_line(&r, "250-x", 5, err, sizeof(err));
    assert_int_equal(rc, -1);
}

static void test_ehlo(void **st)
{
    struct smtp_reply r;
    struct smtp_ext e;
    assert_int_equal(feed(&r, "250-mx Hello\n250-PIPELINING\n250-SIZE 10240\n250-8bitmime\n"
                              "250-DSN\n250-STARTTLS\n250-AUTH LOGIN PLAIN\n250 SMTPUTF8\n"), 1);
    smtp_ext_parse(&r, &e);
    assert_int_equal(e.flags, EXT_PIPELINING | EXT_SIZE | EXT_8BITMIME | EXT_DSN |
                     EXT_STARTTLS | EXT_AUTH | EXT_SMTPUTF8);
    assert_int_equal(e.size, 10240);
    assert_int_equal(e.auth, AUTHM_PLAIN | AUTHM_LOGIN);
    /* the greeting line is not a keyword */
    assert_int_equal(feed(&r, "250 PIPELINING\n"), 1);
    smtp_ext_parse(&r, &e);
    assert_int_equal(e.flags, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        { "multiline", test_multiline, NULL, NULL, NULL },
        { "enhanced codes", test_enhanced, NULL, NULL, NULL },
        { "malformed and bounds", test_malformed, NULL, NULL, NULL },
        { "EHLO keywords", test_ehlo, NULL, NULL, NULL },
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
