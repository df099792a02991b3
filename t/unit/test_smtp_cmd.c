/*
 * test_smtp_cmd.c - lib/mail/smtp_cmd.c: verb split, MAIL/RCPT argument parsing
 * (path, spaces, parameters) and the BDAT size parser.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "mail/smtp_cmd.h"

static void test_split(void **state)
{
    struct smtp_cmd c;
    assert_int_equal(smtp_cmd_split("mail FROM:<a@b>  ", 17, &c), 0);
    assert_string_equal(c.verb, "MAIL");
    assert_int_equal(c.arglen, 10);
    assert_memory_equal(c.arg, "FROM:<a@b>", 10);
    assert_int_equal(smtp_cmd_split("QUIT", 4, &c), 0);
    assert_string_equal(c.verb, "QUIT");
    assert_int_equal(c.arglen, 0);
    assert_int_equal(smtp_cmd_split("", 0, &c), 0);
    assert_string_equal(c.verb, "");
    assert_int_equal(smtp_cmd_split("MA:L x", 6, &c), -1);          /* not a letter */
    assert_int_equal(smtp_cmd_split("NO\rOP", 5, &c), -1);          /* bare CR */
    assert_int_equal(smtp_cmd_split("NO\xc3\x96P", 5, &c), -1);      /* 8-bit verb */
    assert_int_equal(smtp_cmd_split("ABCDEFGHIJKLMNOP", 16, &c), -1); /* verb > 15 */
}

struct bdat_case { const char *arg; int rc; uint64_t size; int last; };

static const struct bdat_case bcases[] = {
    { "0", 0, 0, 0 },
    { "0 LAST", 0, 0, 1 },
    { "100 last", 0, 100, 1 },
    { "7  LAST", 0, 7, 1 },
    { "9999999999999999999", 0, 9999999999999999999ull, 0 },   /* 19 digits */
    { "99999999999999999999", -1, 0, 0 },                       /* 20 digits */
    { "", -1, 0, 0 },
    { "abc", -1, 0, 0 },
    { "-1", -1, 0, 0 },
    { "+1", -1, 0, 0 },
    { "12x", -1, 0, 0 },
    { "12 LASTX", -1, 0, 0 },
    { "12 LAS", -1, 0, 0 },
    { "12 LAST 1", -1, 0, 0 },
    { "12\tLAST", -1, 0, 0 },
    { "LAST", -1, 0, 0 },
};

static void test_bdat(void **state)
{
    for (size_t i = 0; i < sizeof(bcases) / sizeof(bcases[0]); i++) {
        const struct bdat_case *b = &bcases[i];
        uint64_t n = 12345;
        int last = -1;
        int rc = smtp_cmd_bdat(b->arg, strlen(b->arg), &n, &last);
        if (rc != b->rc)
            fail_msg("\"%s\": rc %d, want %d", b->arg, rc, b->rc);
        if (rc == 0 && (n != b->size || last != b->last))
            fail_msg("\"%s\": size %llu last %d", b->arg, (unsigned long long)n, last);
    }
}

static void test_mailrcpt(void **state)
{
    buf_t a;
    struct smtp_mailrcpt r;
    buf_init(&a, 64);
    const char *s1 = "FROM:<a@example.test> SIZE=10 RET=HDRS ENVID=x+2By";
    assert_int_equal(smtp_cmd_mailrcpt(s1, strlen(s1), "FROM:", ADDR_F_NULL_OK, &a, &r), SMTP_MR_OK);
    assert_string_equal(a.data, "a@example.test");
    assert_int_equal(r.nparams, 3);
    const char *s0 = "from: <>";
    assert_int_equal(smtp_cmd_mailrcpt(s0, strlen(s0), "FROM:", ADDR_F_NULL_OK, &a, &r), SMTP_MR_OK);
    assert_string_equal(a.data, "");
    const char *s2 = "FROM: <a@example.test>";      /* space after the colon: lenient */
    assert_int_equal(smtp_cmd_mailrcpt(s2, strlen(s2), "FROM:", 0, &a, &r), SMTP_MR_OK);
    const char *s3 = "FROM :<a@example.test>";
    assert_int_equal(smtp_cmd_mailrcpt(s3, strlen(s3), "FROM:", 0, &a, &r), SMTP_MR_SYNTAX);
    const char *s4 = "TO:<j\xc3\xb6rg@example.test>";
    assert_int_equal(smtp_cmd_mailrcpt(s4, strlen(s4), "TO:", 0, &a, &r), SMTP_MR_ADDR);
    assert_int_equal(smtp_cmd_mailrcpt(s4, strlen(s4), "TO:", ADDR_F_UTF8, &a, &r), SMTP_MR_OK);
    const char *s5 = "TO:<a@example.test>junk";
    assert_int_equal(smtp_cmd_mailrcpt(s5, strlen(s5), "TO:", 0, &a, &r), SMTP_MR_ADDR);
    const char *s6 = "TO:<a@example.test> =x";
    assert_int_equal(smtp_cmd_mailrcpt(s6, strlen(s6), "TO:", 0, &a, &r), SMTP_MR_PARAM);
    const char *s8 = "TO:<>";
    assert_int_equal(smtp_cmd_mailrcpt(s8, strlen(s8), "TO:", ADDR_F_POSTMASTER, &a, &r), SMTP_MR_ADDR);
    assert_int_equal(r.addr_err, ADDR_ERR_NULL);
    const char *s9 = "TO:<a@b> A B C D E F G H I J K L M N O P Q";
    assert_int_equal(smtp_cmd_mailrcpt(s9, strlen(s9), "TO:", 0, &a, &r), SMTP_MR_TOOMANY);
    const char *s10 = "FROM <a@b>";                 /* no colon */
    assert_int_equal(smtp_cmd_mailrcpt(s10, strlen(s10), "FROM:", 0, &a, &r), SMTP_MR_SYNTAX);
    const char *s7 = "TO:<a\xc2\x85@example.test>";  /* C1 control, even as UTF-8 */
    assert_int_equal(smtp_cmd_mailrcpt(s7, strlen(s7), "TO:", ADDR_F_UTF8, &a, &r), SMTP_MR_ADDR);
    buf_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        { "verb split", test_split, NULL, NULL, NULL },
        { "BDAT size [LAST]", test_bdat, NULL, NULL, NULL },
        { "MAIL/RCPT arguments", test_mailrcpt, NULL, NULL, NULL },
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
