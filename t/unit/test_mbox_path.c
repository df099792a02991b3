/*
 * test_mbox_path.c - mailbox template expansion, local-part sanitising,
 * Maildir names and mboxrd quoting (lib/mail/mbox_path.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "mail/mbox_path.h"

static enum mbox_path_rc expand(const char *tmpl, const char *addr, const char *home, buf_t *out)
{
    buf_t l, d;
    buf_init(&l, 16);
    buf_init(&d, 16);
    mbox_addr_split(addr, &l, &d);
    enum mbox_path_rc rc = mbox_path_expand(tmpl, l.data, d.data, home, out);
    buf_free(&l);
    buf_free(&d);
    return rc;
}

static void test_split(void **st)
{
    (void)st;
    buf_t l, d;
    buf_init(&l, 16);
    buf_init(&d, 16);
    mbox_addr_split("Joe.User@Example.TEST", &l, &d);
    assert_string_equal(l.data, "joe.user");
    assert_string_equal(d.data, "example.test");
    mbox_addr_split("a@b@C", &l, &d);
    assert_string_equal(l.data, "a@b");
    assert_string_equal(d.data, "c");
    mbox_addr_split("Root", &l, &d);
    assert_string_equal(l.data, "root");
    assert_string_equal(d.data, "");
    buf_free(&l);
    buf_free(&d);
}

static void test_expand(void **st)
{
    (void)st;
    buf_t o;
    buf_init(&o, 64);
    assert_int_equal(expand("/var/vmail/%d/%u/Maildir", "Bob@Example.Test", NULL, &o), MBP_OK);
    assert_string_equal(o.data, "/var/vmail/example.test/bob/Maildir");
    assert_int_equal(expand("/m/100%%/%u", "x@y", NULL, &o), MBP_OK);
    assert_string_equal(o.data, "/m/100%/x");
    assert_int_equal(expand("~/Maildir", "bob@y", "/home/bob", &o), MBP_OK);
    assert_string_equal(o.data, "/home/bob/Maildir");
    assert_int_equal(expand("~/Maildir", "bob@y", "/home/bob/", &o), MBP_OK);
    assert_string_equal(o.data, "/home/bob/Maildir");
    assert_int_equal(expand("~", "bob@y", "/home/bob", &o), MBP_OK);
    assert_string_equal(o.data, "/home/bob");
    assert_int_equal(expand("~/Maildir", "nobody-here@y", NULL, &o), MBP_NO_USER);
    assert_int_equal(expand("/var/mail/%u", "a+ext=x_y-z@y", NULL, &o), MBP_OK);
    assert_string_equal(o.data, "/var/mail/a+ext=x_y-z");
    /* "~" in the middle is literal */
    assert_int_equal(expand("/x/~/%u", "a@y", NULL, &o), MBP_OK);
    assert_string_equal(o.data, "/x/~/a");
    /* bad templates */
    assert_int_equal(expand("/x/%q", "a@y", NULL, &o), MBP_BAD_TEMPLATE);
    assert_int_equal(expand("/x/%", "a@y", NULL, &o), MBP_BAD_TEMPLATE);
    buf_free(&o);
}

static void test_sanitise(void **st)
{
    (void)st;
    static const char *bad[] = {
        "..@y", ".@y", ".hidden@y", "a/b@y", "../../etc/passwd@y", "a b@y",
        "a\tb@y", "a\nb@y", "a\x01@y", "a;rm -rf@y", "\"q\"@y", "a\\b@y",
        "$(id)@y", "`id`@y", "@y", "a\xc3@y", "a\xc0\xaf@y", "a\xc2\x85@y", "a\xed\xa0\x80@y", "a*@y",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@y",
    };
    buf_t o;
    buf_init(&o, 64);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (expand("/var/mail/%u", bad[i], NULL, &o) != MBP_BAD_ADDR)
            fail_msg("accepted %s", bad[i]);
        assert_int_equal(o.len, 0);
    }
    /* domain checked only when used */
    assert_int_equal(expand("/v/%d/%u", "a@../x", NULL, &o), MBP_BAD_ADDR);
    assert_int_equal(expand("/v/%d/%u", "a@x/y", NULL, &o), MBP_BAD_ADDR);
    assert_int_equal(expand("/v/%d/%u", "a@.x", NULL, &o), MBP_BAD_ADDR);
    assert_int_equal(expand("/v/%d/%u", "a@[1.2.3.4]", NULL, &o), MBP_BAD_ADDR);
    assert_int_equal(expand("/v/%d/%u", "a", NULL, &o), MBP_BAD_ADDR);
    assert_int_equal(expand("/v/%u", "a@../x", NULL, &o), MBP_OK);
    assert_true(mbox_local_ok("a.b"));
    assert_true(mbox_local_ok("j\xc3\xb6rg"));         /* SMTPUTF8: UTF-8 local part */
    assert_int_equal(expand("/var/mail/%u", "J\xc3\xb6rg@y", NULL, &o), MBP_OK);
    assert_string_equal(o.data, "/var/mail/j\xc3\xb6rg");
    assert_false(mbox_local_ok(""));
    assert_false(mbox_local_ok(".."));
    /* %d of a domain in U-labels (SMTPUTF8): its A-labels, as configured */
    assert_int_equal(expand("/v/%d/%u", "a@B\xc3\x9c" "cher.Test", NULL, &o), MBP_OK);
    assert_string_equal(o.data, "/v/xn--bcher-kva.test/a");
    assert_int_equal(expand("/v/%d/%u", "a@b\xc3\xbc" "cher\xe2\x80\xa8.test", NULL, &o),
                     MBP_BAD_ADDR);                   /* U+2028: no IDN */
    assert_int_equal(expand("/v/%d/%u", "a@b\xc3\xbc/../x", NULL, &o), MBP_BAD_ADDR);
    assert_int_equal(expand("/v/%d/%u", "a@\xc3\xbc\xff", NULL, &o), MBP_BAD_ADDR);
    assert_true(mbox_domain_ok("ex-ample.test"));
    assert_false(mbox_domain_ok("a..b"));
    buf_free(&o);
}

static void test_maildir_name(void **st)
{
    (void)st;
    buf_t o;
    buf_init(&o, 64);
    mbox_maildir_name(&o, 1700000000, "ABC123", 7, "mx.example.test");
    assert_string_equal(o.data, "1700000000.PABC123R7.mx.example.test");
    mbox_maildir_name(&o, 1, "Q", 0, "h/o:st");
    assert_string_equal(o.data, "1.PQR0.h\\057o\\072st");
    buf_free(&o);
}

static void quote_all(const char *in, size_t chunk, buf_t *out)
{
    buf_t carry;
    buf_init(&carry, 16);
    int mid = 0;
    size_t n = strlen(in);
    buf_reset(out);
    for (size_t off = 0; off < n; off += chunk) {
        size_t k = n - off < chunk ? n - off : chunk;
        buf_append(&carry, in + off, k);
        size_t used = mbox_from_quote(out, carry.data, carry.len, 0, &mid);
        buf_consume(&carry, used);
    }
    mbox_from_quote(out, carry.data, carry.len, 1, &mid);
    buf_free(&carry);
}

static void test_from_quote(void **st)
{
    (void)st;
    const char *in = "From me\nSubject: x\n\nFrom here\n>From there\n>>From x\nFromage\n"
                     " From a\n>Fro\nxFrom y\nFrom ";
    const char *want = ">From me\nSubject: x\n\n>From here\n>>From there\n>>>From x\nFromage\n"
                       " From a\n>Fro\nxFrom y\n>From ";
    buf_t o;
    buf_init(&o, 64);
    for (size_t chunk = 1; chunk <= strlen(in) + 1; chunk++) {
        quote_all(in, chunk, &o);
        if (strcmp(o.data, want) != 0)
            fail_msg("chunk %zu: got [%s]", chunk, o.data);
    }
    /* undecidable tail stays unconsumed unless final */
    int mid = 0;
    buf_reset(&o);
    assert_int_equal(mbox_from_quote(&o, "a\n>>Fro", 7, 0, &mid), 2);
    assert_int_equal(mbox_from_quote(&o, ">>Fro", 5, 1, &mid), 5);
    assert_string_equal(o.data, "a\n>>Fro");
    /* partial final line without From */
    quote_all("Fro", 2, &o);
    assert_string_equal(o.data, "Fro");
    buf_free(&o);
}

static void test_from_line(void **st)
{
    (void)st;
    struct tm tm = { .tm_year = 86, .tm_mon = 10, .tm_mday = 4, .tm_hour = 8,
                     .tm_min = 2, .tm_sec = 9, .tm_wday = 2 };
    buf_t o;
    buf_init(&o, 64);
    mbox_from_line(&o, "a@b", &tm);
    assert_string_equal(o.data, "From a@b Tue Nov  4 08:02:09 1986\n");
    buf_reset(&o);
    mbox_from_line(&o, "", &tm);
    assert_string_equal(o.data, "From MAILER-DAEMON Tue Nov  4 08:02:09 1986\n");
    buf_reset(&o);
    mbox_from_line(&o, "a b\n@c", &tm);
    assert_string_equal(o.data, "From a_b_@c Tue Nov  4 08:02:09 1986\n");
    buf_free(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_expand),
        cmocka_unit_test(test_sanitise),
        cmocka_unit_test(test_maildir_name),
        cmocka_unit_test(test_from_quote),
        cmocka_unit_test(test_from_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
