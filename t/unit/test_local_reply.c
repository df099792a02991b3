/*
 * test_local_reply.c - the table of replies for local failures
 * (lib/mail/local_reply.c): every row is a well-formed refusal, and the replies
 * clients have always seen keep their exact code, enhanced code and text.
 */
#include <ctype.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "mail/local_reply.h"
#include "util/log.h"

static void test_every_row_well_formed(void **state)
{
    (void)state;
    for (int i = 1; i < LR__COUNT; i++) {
        const struct local_reply *r = local_reply((enum local_status)i);
        assert_true(r->code >= 400 && r->code <= 599);
        /* enhanced class digit matches the reply class (RFC 3463) */
        assert_int_equal(r->enhanced[0], '0' + r->code / 100);
        assert_int_equal(r->enhanced[1], '.');
        assert_true(strlen(r->text) > 0 && strlen(r->text) < 200);
        for (const char *p = r->text; *p; p++)
            assert_true(isprint((unsigned char)*p) && *p != '%');
        assert_int_equal(local_reply_verdict((enum local_status)i),
                         r->code >= 500 ? V_REJECT : V_TEMPFAIL);
        for (int j = 1; j < i; j++)
            assert_string_not_equal(local_reply_name((enum local_status)i),
                                    local_reply_name((enum local_status)j));
    }
}

static void expect(enum local_status s, const char *line)
{
    buf_t b;
    buf_init(&b, 64);
    local_reply_format(&b, s);
    assert_string_equal(b.data, line);
    buf_free(&b);
}

static void test_user_visible_replies(void **state)
{
    (void)state;
    expect(LR_TEMP, "451 4.3.0 Temporary local problem, try again later");
    expect(LR_NOSPACE, "452 4.3.1 Insufficient system storage");
    expect(LR_WRITE, "451 4.3.0 Queue file write error");
    expect(LR_SIZE_DECLARED, "552 5.3.4 Message size exceeds fixed limit");
    expect(LR_TOO_BIG, "552 5.3.4 Message too big");
    expect(LR_TOO_MANY_RCPTS, "452 4.5.3 Too many recipients");
    expect(LR_LOOP, "554 5.4.6 Too many hops (mail forwarding loop)");
    expect(LR_TIMEOUT, "421 4.4.2 Timeout");
    expect(LR_CONNECTIONS, "421 4.7.0 Too many connections");
}

static void test_unknown_and_errno(void **state)
{
    (void)state;
    /* a number from a bad peer renders as the generic temporary failure */
    assert_ptr_equal(local_reply((enum local_status)9999), local_reply(LR_TEMP));
    assert_ptr_equal(local_reply(LR_NONE), local_reply(LR_TEMP));
    assert_string_equal(local_reply_name((enum local_status)9999), "unknown");
    assert_string_equal(local_reply_name(LR_NOSPACE), "NOSPACE");
    assert_int_equal(local_reply_errno(ENOSPC, LR_WRITE), LR_NOSPACE);
    assert_int_equal(local_reply_errno(EDQUOT, LR_WRITE), LR_NOSPACE);
    assert_int_equal(local_reply_errno(EIO, LR_WRITE), LR_WRITE);
}

int main(void)
{
    log_init("test_local_reply", 1, 0, LOG_L_PANIC);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_row_well_formed),
        cmocka_unit_test(test_user_visible_replies),
        cmocka_unit_test(test_unknown_and_errno),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
