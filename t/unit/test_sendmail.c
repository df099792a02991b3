/*
 * test_sendmail.c - sendmail's pure parts (cli/sendmail_args.c, compiled
 * in: it lives in the command's folder): the command line, address lists,
 * the header section for -t, address qualification; and the maildrop file
 * format every submission goes through (lib/mail/maildrop.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "../../cli/sendmail_args.c"
#include "mail/maildrop.h"

static int parse(struct sm_opts *o, char **argv)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    char err[128];
    return sm_parse_args(argc, argv, o, err, sizeof(err));
}

static void test_args(void **st)
{
    struct sm_opts o;
    char *a1[] = { "/usr/sbin/sendmail", "-ti", "-fbob@x.test", "-F", "Bob B", "-oi", "-odb",
                   "-N", "success,delay", "-R", "hdrs", "-B", "8bitmime", "--", "-x@y",
                   "c@d", NULL };
    assert_int_equal(parse(&o, a1), 0);
    assert_int_equal(o.mode, SM_DELIVER);
    assert_true(o.extract && o.dots_ok && o.body_8bit);
    assert_string_equal(o.from, "bob@x.test");
    assert_string_equal(o.fullname, "Bob B");
    assert_int_equal(o.notify, NOTIFY_SUCCESS | NOTIFY_DELAY);
    assert_int_equal(o.ret, 2);
    assert_int_equal(o.nrcpts, 2);
    assert_string_equal(o.rcpts[0], "-x@y");
    /* modes, by option and by name */
    char *a2[] = { "sendmail", "-bs", NULL };
    assert_int_equal(parse(&o, a2), 0);
    assert_int_equal(o.mode, SM_SMTP);
    char *a3[] = { "mailq", NULL };
    assert_int_equal(parse(&o, a3), 0);
    assert_int_equal(o.mode, SM_QUEUE_LIST);
    char *a4[] = { "/x/newaliases", NULL };
    assert_int_equal(parse(&o, a4), 0);
    assert_int_equal(o.mode, SM_ALIASES);
    char *a5[] = { "sendmail", "-q1h", NULL };
    assert_int_equal(parse(&o, a5), 0);
    assert_int_equal(o.mode, SM_FLUSH);
    /* -o with its value as the next word; harmless flags; options end at a word */
    char *a6[] = { "sendmail", "-o", "i", "-em", "-m", "-n", "-U", "-h", "3", "a@b", "-t", NULL };
    assert_int_equal(parse(&o, a6), 0);
    assert_true(o.dots_ok && !o.extract);
    assert_int_equal(o.nrcpts, 2);
}

static void test_args_refused(void **st)
{
    struct sm_opts o;
    char *bad[][4] = {
        { "sendmail", "-Z", NULL }, { "sendmail", "-N", "sometimes", NULL },
        { "sendmail", "-N", "never,success", NULL }, { "sendmail", "-R", "all", NULL },
        { "sendmail", "-B", "BINARYMIME", NULL }, { "sendmail", "-f", NULL },
        { "sendmail", "-bt", NULL }, { "sendmail", "-b", NULL },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(parse(&o, bad[i]), EX_USAGE);
}

static void list_is(const char *hdr, const char *const *want)
{
    struct sm_list l = { 0 };
    sm_addr_list(hdr, strlen(hdr), &l);
    int n = 0;
    while (want[n])
        n++;
    assert_int_equal(l.n, n);
    for (int i = 0; i < n; i++)
        assert_string_equal(l.v[i], want[i]);
    sm_list_free(&l);
}

static void test_addr_list(void **st)
{
    list_is(" a@b.test", (const char *const[]){ "a@b.test", NULL });
    list_is(" \"Doe, John\" <john@x.test>, Jane (the boss) <jane@x.test>",
            (const char *const[]){ "john@x.test", "jane@x.test", NULL });
    list_is(" team: a@x.test, b@x.test;, c@x.test",
            (const char *const[]){ "a@x.test", "b@x.test", "c@x.test", NULL });
    list_is(" undisclosed-recipients:;", (const char *const[]){ NULL });
    list_is(" <@relay.test,@r2.test:route@x.test>, (comment, with comma) plain@x.test",
            (const char *const[]){ "route@x.test", "plain@x.test", NULL });
    list_is(" \"quoted local\"@x.test,\n\tfolded@x.test",
            (const char *const[]){ "\"quoted local\"@x.test", "folded@x.test", NULL });
    list_is(" bob", (const char *const[]){ "bob", NULL });
    list_is(" ((nested) comment) <>, ,", (const char *const[]){ NULL });
}

static void test_headers(void **st)
{
    const char *h = "To: a@x.test\nBcc: secret@x.test,\n  other@x.test\nSubject: s\n"
                    "cc: b@x.test\nBCC : third@x.test\n";
    buf_t out;
    buf_init(&out, 128);
    struct sm_list r = { 0 };
    sm_headers(h, strlen(h), 1, "From: me@x.test", &out, &r);
    assert_string_equal(out.data, "To: a@x.test\nSubject: s\ncc: b@x.test\nFrom: me@x.test\n");
    assert_int_equal(r.n, 5);
    assert_string_equal(r.v[1], "secret@x.test");
    assert_string_equal(r.v[4], "third@x.test");
    sm_list_free(&r);
    /* Resent- fields win; an existing From stays; without -t nothing is taken */
    buf_reset(&out);
    const char *h2 = "From: x@y.test\nTo: old@x.test\nResent-To: new@x.test\n"
                     "Resent-Bcc: hidden@x.test";
    sm_headers(h2, strlen(h2), 1, "From: me@x.test", &out, &r);
    assert_string_equal(out.data, "From: x@y.test\nTo: old@x.test\nResent-To: new@x.test\n");
    assert_int_equal(r.n, 2);
    assert_string_equal(r.v[0], "new@x.test");
    sm_list_free(&r);
    buf_reset(&out);
    sm_headers(h2, strlen(h2), 0, NULL, &out, &r);
    assert_int_equal(r.n, 0);
    buf_free(&out);
}

static void test_qualify(void **st)
{
    char *a = sm_qualify(" <bob> ", "example.test");
    assert_string_equal(a, "bob@example.test");
    free(a);
    a = sm_qualify("Bob@Example.Test", "x");
    assert_string_equal(a, "Bob@Example.Test");
    free(a);
    assert_null(sm_qualify("bob@", "x"));
    assert_null(sm_qualify("", "x"));
    assert_null(sm_qualify("two words@x.test", "x"));
    assert_null(sm_qualify("a@b@c", "x"));
}

/* A maildrop file as postdrop writes it. */
static void drop_file(buf_t *b, const char *user, const char *rcpt, const char *body)
{
    md_put_str(b, MD_VERSION, MD_MAGIC);
    md_put_str(b, MD_USER, user);
    md_put_str(b, MD_SENDER, "");
    md_put_str(b, MD_RCPT, rcpt);
    md_put_str(b, MD_NOTIFY, "6");
    md_put_str(b, MD_BODY, "8BITMIME");
    md_put_str(b, MD_CONTENT, body);
    char n[24];
    snprintf(n, sizeof(n), "%zu", strlen(body));
    md_put_str(b, MD_END, n);
}

static void test_maildrop(void **st)
{
    buf_t b;
    buf_init(&b, 256);
    drop_file(&b, "1001 bob", "a@x.test", "Subject: x\n\nhi\n");
    struct md_state s;
    char err[128];
    assert_int_equal(md_parse((unsigned char *)b.data, b.len, &s, NULL, NULL, err,
                              sizeof(err)), 0);
    assert_int_equal(s.uid, 1001);
    assert_string_equal(s.login, "bob");
    assert_int_equal(s.notify, 6);
    assert_true(s.body_8bit && s.done && s.nrcpt == 1);
    /* every truncation is refused */
    for (size_t n = 0; n < b.len; n++)
        assert_int_equal(md_parse((unsigned char *)b.data, n, &s, NULL, NULL, err,
                                  sizeof(err)), -1);
    /* bytes after END, a wrong length, bad records */
    buf_append_char(&b, 'M');
    assert_int_equal(md_parse((unsigned char *)b.data, b.len, &s, NULL, NULL, err,
                              sizeof(err)), -1);
    const char *bad[][3] = {
        { "1001 bob", "a@x.test", NULL }, { "bob 1001", "a@x.test", "" },
        { "1001", "a@x.test", "" }, { "1001 b b", "a@x.test", "" },
        { "1001 bob", "not an address", "" }, { "1001 bob", "a@x.test\n", "" },
        { "99999999999 bob", "a@x.test", "" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        buf_reset(&b);
        drop_file(&b, bad[i][0], bad[i][1], "x\n");
        if (bad[i][2] == NULL)          /* END disagreeing with the content */
            b.data[b.len - 1] = '9';
        assert_int_equal(md_parse((unsigned char *)b.data, b.len, &s, NULL, NULL, err,
                                  sizeof(err)), -1);
    }
    /* from the caller, postdrop refuses VERSION and USER records */
    buf_reset(&b);
    md_put_str(&b, MD_USER, "0 root");
    struct md_rec r;
    assert_true(md_rec_next((unsigned char *)b.data, b.len, &r, err, sizeof(err)) > 0);
    md_state_init(&s);
    assert_int_equal(md_check(&s, &r, 1, err, sizeof(err)), -1);
    /* framing: unknown type, oversized record */
    unsigned char junk[] = { 'Q', 0, 0, 0, 0 }, big[] = { 'M', 0, 2, 0, 1 };
    assert_int_equal(md_rec_next(junk, sizeof(junk), &r, err, sizeof(err)), -1);
    assert_int_equal(md_rec_next(big, sizeof(big), &r, err, sizeof(err)), -1);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        { "options", test_args, NULL, NULL, NULL },
        { "options refused", test_args_refused, NULL, NULL, NULL },
        { "address lists", test_addr_list, NULL, NULL, NULL },
        { "header section for -t", test_headers, NULL, NULL, NULL },
        { "qualification", test_qualify, NULL, NULL, NULL },
        { "maildrop format", test_maildrop, NULL, NULL, NULL },
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
