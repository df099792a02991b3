/*
 * test_addr.c - lib/mail/addr.c: RFC 5321 paths, limits, quoted local parts,
 * IP literals, source routes, ESMTP parameters, xtext (the command parser
 * that uses them: test_smtp_cmd.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include "mail/addr.h"

struct path_case {
    const char *in;
    unsigned flags;
    int err;
    const char *addr;       /* expected mailbox on ADDR_OK */
};

#define NUL_OK ADDR_F_NULL_OK
#define PM     ADDR_F_POSTMASTER
#define U8     ADDR_F_UTF8

static const struct path_case path_cases[] = {
    /* valid */
    { "<user@example.com>", 0, ADDR_OK, "user@example.com" },
    { "<u@e>", 0, ADDR_OK, "u@e" },
    { "<first.last@sub.example.com>", 0, ADDR_OK, "first.last@sub.example.com" },
    { "<a+tag@example.com>", 0, ADDR_OK, "a+tag@example.com" },
    { "<!#$%&'*+-/=?^_`{|}~@example.com>", 0, ADDR_OK, "!#$%&'*+-/=?^_`{|}~@example.com" },
    { "<x@a-b.example>", 0, ADDR_OK, "x@a-b.example" },
    { "<x@123.example>", 0, ADDR_OK, "x@123.example" },
    { "<>", NUL_OK, ADDR_OK, "" },
    { "<\"a b\"@example.com>", 0, ADDR_OK, "\"a b\"@example.com" },
    { "<\"a\\\"b\"@example.com>", 0, ADDR_OK, "\"a\\\"b\"@example.com" },
    { "<\"a@b\"@example.com>", 0, ADDR_OK, "\"a@b\"@example.com" },
    { "<\"\"@example.com>", 0, ADDR_OK, "\"\"@example.com" },
    { "<u@[192.0.2.1]>", 0, ADDR_OK, "u@[192.0.2.1]" },
    { "<u@[IPv6:2001:db8::1]>", 0, ADDR_OK, "u@[IPv6:2001:db8::1]" },
    { "<u@[ipv6:::1]>", 0, ADDR_OK, "u@[ipv6:::1]" },
    { "<u@[IPv6:::ffff:192.0.2.1]>", 0, ADDR_OK, "u@[IPv6:::ffff:192.0.2.1]" },
    { "<@relay.example:u@example.com>", 0, ADDR_OK, "u@example.com" },
    { "<@r1.example,@r2.example:u@example.com>", 0, ADDR_OK, "u@example.com" },
    { "<Postmaster>", PM, ADDR_OK, "postmaster" },
    { "<postmaster>", PM, ADDR_OK, "postmaster" },
    { "<postmaster@example.com>", PM, ADDR_OK, "postmaster@example.com" },
    { "<j\xc3\xb6rg@b\xc3\xbc\x63her.example>", U8, ADDR_OK, "j\xc3\xb6rg@b\xc3\xbc\x63her.example" },
    /* invalid syntax */
    { "user@example.com", 0, ADDR_ERR_SYNTAX, NULL },
    { "<user@example.com", 0, ADDR_ERR_SYNTAX, NULL },
    { "<user>", 0, ADDR_ERR_SYNTAX, NULL },
    { "<@example.com>", 0, ADDR_ERR_SYNTAX, NULL },
    { "<user@>", 0, ADDR_ERR_SYNTAX, NULL },
    { "<a@@b>", 0, ADDR_ERR_SYNTAX, NULL },
    { "<a@b@c>", 0, ADDR_ERR_SYNTAX, NULL },
    { "<.a@b>", 0, ADDR_ERR_SYNTAX, NULL },
    { "<a.@b>", 0, ADDR_ERR_SYNTAX, NULL },
    { "<a..b@c>", 0, ADDR_ERR_SYNTAX, NULL },
    { "<a b@c>", 0, ADDR_ERR_SYNTAX, NULL },
    { "<a@-b.com>", 0, ADDR_ERR_SYNTAX, NULL },
    { "<a@b-.com>", 0, ADDR_ERR_SYNTAX, NULL },
    { "<a@b..com>", 0, ADDR_ERR_SYNTAX, NULL },
    { "<a@b.com.>", 0, ADDR_ERR_SYNTAX, NULL },
    { "<a@b_c.com>", 0, ADDR_ERR_SYNTAX, NULL },
    { "<\"unterminated@b>", 0, ADDR_ERR_SYNTAX, NULL },
    { "<\"a\x01\"@b>", 0, ADDR_ERR_SYNTAX, NULL },
    { "<a\x01@b>", 0, ADDR_ERR_SYNTAX, NULL },
    { "<a@[192.0.2.256]>", 0, ADDR_ERR_SYNTAX, NULL },
    { "<a@[192.0.2]>", 0, ADDR_ERR_SYNTAX, NULL },
    { "<a@[192.0.2.1.5]>", 0, ADDR_ERR_SYNTAX, NULL },
    { "<a@[IPv6:2001:db8::g]>", 0, ADDR_ERR_SYNTAX, NULL },
    { "<a@[IPv6:1:2:3:4:5:6:7:8:9]>", 0, ADDR_ERR_SYNTAX, NULL },
    { "<a@[x-tag:foo]>", 0, ADDR_ERR_SYNTAX, NULL },
    { "<a@[192.0.2.1>", 0, ADDR_ERR_SYNTAX, NULL },
    { "<@r1.example u@example.com>", 0, ADDR_ERR_SYNTAX, NULL },
    { "<@r1.example,u@example.com>", 0, ADDR_ERR_SYNTAX, NULL },
    { "<@[1.2.3.4]:u@example.com>", 0, ADDR_ERR_SYNTAX, NULL },
    { "<j\xc3\xb6rg@example.com>", 0, ADDR_ERR_SYNTAX, NULL },        /* 8-bit without SMTPUTF8 */
    { "<j\xc3rg@example.com>", U8, ADDR_ERR_SYNTAX, NULL },           /* broken UTF-8 */
    { "<j\xc0\xafrg@example.com>", U8, ADDR_ERR_SYNTAX, NULL },       /* overlong */
    { "<a%b@c>", 0, ADDR_OK, "a%b@c" },      /* legal syntax; relay policy is filter's */
    { "<postmaster>", 0, ADDR_ERR_SYNTAX, NULL },
    { "<>", 0, ADDR_ERR_NULL, NULL },
    { "", 0, ADDR_ERR_SYNTAX, NULL },
    { "<", 0, ADDR_ERR_SYNTAX, NULL },
};

static void test_path_table(void **state)
{
    buf_t a;
    buf_init(&a, 64);
    for (size_t i = 0; i < sizeof(path_cases) / sizeof(path_cases[0]); i++) {
        const struct path_case *c = &path_cases[i];
        size_t used = 0;
        int e = addr_parse_path(c->in, strlen(c->in), c->flags, &a, &used);
        if (e != c->err)
            fail_msg("case %zu \"%s\": got %d want %d", i, c->in, e, c->err);
        if (e == ADDR_OK) {
            assert_string_equal(a.data, c->addr);
            assert_int_equal(used, strlen(c->in));
        }
    }
    buf_free(&a);
}

static void make_path(buf_t *b, size_t local, size_t domain_labels, size_t label_len)
{
    buf_reset(b);
    buf_append_char(b, '<');
    for (size_t i = 0; i < local; i++)
        buf_append_char(b, 'l');
    buf_append_char(b, '@');
    for (size_t l = 0; l < domain_labels; l++) {
        if (l)
            buf_append_char(b, '.');
        for (size_t i = 0; i < label_len; i++)
            buf_append_char(b, 'd');
    }
    buf_append_char(b, '>');
}

static int parse(buf_t *in, buf_t *out)
{
    size_t used;
    return addr_parse_path(in->data, in->len, 0, out, &used);
}

static void test_limits(void **state)
{
    buf_t in, out;
    buf_init(&in, 600);
    buf_init(&out, 600);
    make_path(&in, 64, 1, 10);
    assert_int_equal(parse(&in, &out), ADDR_OK);
    make_path(&in, 65, 1, 10);
    assert_int_equal(parse(&in, &out), ADDR_ERR_LOCAL_LONG);
    make_path(&in, 1, 1, 63);
    assert_int_equal(parse(&in, &out), ADDR_OK);
    make_path(&in, 1, 1, 64);
    assert_int_equal(parse(&in, &out), ADDR_ERR_DOMAIN_LONG);
    /* 4 labels of 63 + 3 dots = 255: domain ok, but path = 1+1+1+255+1 = 259 > 256 */
    make_path(&in, 1, 4, 63);
    assert_int_equal(parse(&in, &out), ADDR_ERR_PATH_LONG);
    /* domain of 5*60+4 = 304 > 255 */
    make_path(&in, 1, 5, 60);
    assert_int_equal(parse(&in, &out), ADDR_ERR_DOMAIN_LONG);
    /* path exactly 256: "<" + 64 + "@" + 189 + ">" */
    make_path(&in, 64, 3, 63);
    assert_int_equal(in.len, 1 + 64 + 1 + 191 + 1);
    assert_int_equal(parse(&in, &out), ADDR_ERR_PATH_LONG);
    make_path(&in, 62, 3, 63);
    assert_int_equal(in.len, 256);
    assert_int_equal(parse(&in, &out), ADDR_OK);
    /* quoted local part counts its quotes */
    buf_set(&in, "<\"", 2);
    for (int i = 0; i < 63; i++)
        buf_append_char(&in, 'q');
    buf_append_str(&in, "\"@x>");
    assert_int_equal(parse(&in, &out), ADDR_ERR_LOCAL_LONG);
    buf_free(&in);
    buf_free(&out);
}

static void test_used_stops_at_bracket(void **state)
{
    buf_t a;
    buf_init(&a, 64);
    size_t used = 0;
    const char *s = "<a@b.c> SIZE=10";
    assert_int_equal(addr_parse_path(s, strlen(s), 0, &a, &used), ADDR_OK);
    assert_int_equal(used, 7);
    /* not NUL-terminated input: the parser must stop at n */
    char raw[5] = { '<', 'a', '@', 'b', '>' };
    assert_int_equal(addr_parse_path(raw, 4, 0, &a, &used), ADDR_ERR_SYNTAX);
    assert_int_equal(addr_parse_path(raw, 5, 0, &a, &used), ADDR_OK);
    buf_free(&a);
}

static void test_domain_local(void **state)
{
    assert_string_equal(addr_domain("user@example.com"), "example.com");
    assert_string_equal(addr_domain("\"a@b\"@example.com"), "example.com");
    assert_string_equal(addr_domain("postmaster"), "");
    assert_string_equal(addr_domain(""), "");
    assert_string_equal(addr_domain("u@[192.0.2.1]"), "[192.0.2.1]");
    assert_int_equal(addr_local_part_len("user@example.com"), 4);
    assert_int_equal(addr_local_part_len("\"a@b\"@x"), 5);
    buf_t b;
    buf_init(&b, 16);
    addr_local_part("first.last@x", &b);
    assert_string_equal(b.data, "first.last");
    addr_local_part("postmaster", &b);
    assert_string_equal(b.data, "postmaster");
    buf_free(&b);
}

static void test_check_mailbox(void **state)
{
    assert_int_equal(addr_check_mailbox("a@b.c", 5, 0), ADDR_OK);
    assert_int_equal(addr_check_mailbox("a@b.c>", 6, 0), ADDR_ERR_SYNTAX);
    assert_int_equal(addr_check_mailbox("a", 1, 0), ADDR_ERR_SYNTAX);
    assert_int_equal(addr_check_mailbox("\"x y\"@[IPv6:::1]", 16, 0), ADDR_OK);
}

static void test_params(void **state)
{
    struct esmtp_param p[4];
    int n = -1;
    const char *s = " SIZE=1000 BODY=8BITMIME SMTPUTF8";
    assert_int_equal(esmtp_parse_params(s, strlen(s), p, 4, &n), 0);
    assert_int_equal(n, 3);
    assert_true(esmtp_param_is(&p[0], "size"));
    assert_int_equal(p[0].vallen, 4);
    assert_memory_equal(p[0].val, "1000", 4);
    assert_true(esmtp_param_is(&p[1], "BODY"));
    assert_true(esmtp_param_is(&p[2], "SMTPUTF8"));
    assert_null(p[2].val);
    assert_int_equal(esmtp_parse_params("", 0, p, 4, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(esmtp_parse_params("   ", 3, p, 4, &n), 0);
    assert_int_equal(esmtp_parse_params(" SIZE=", 6, p, 4, &n), -1);
    assert_int_equal(esmtp_parse_params(" =1", 3, p, 4, &n), -1);
    assert_int_equal(esmtp_parse_params(" A=1=2", 6, p, 4, &n), -1);
    assert_int_equal(esmtp_parse_params(" A\x01", 3, p, 4, &n), -1);
    assert_int_equal(esmtp_parse_params("SIZE=1", 6, p, 4, &n), -1);   /* no leading space */
    assert_int_equal(esmtp_parse_params(" A B C D E", 10, p, 4, &n), -2);
}

static void test_xtext(void **state)
{
    buf_t b;
    buf_init(&b, 16);
    assert_int_equal(xtext_decode("rfc822;a+2Bb@x", 14, &b), 0);
    assert_string_equal(b.data, "rfc822;a+b@x");
    assert_int_equal(xtext_decode("a+3Db", 5, &b), 0);
    assert_string_equal(b.data, "a=b");
    assert_int_equal(xtext_decode("a+0Db", 5, &b), -1);      /* CR */
    assert_int_equal(xtext_decode("a+00", 4, &b), -1);       /* NUL */
    assert_int_equal(xtext_decode("a+2", 3, &b), -1);        /* truncated */
    assert_int_equal(xtext_decode("a+2b", 4, &b), -1);       /* lower-case hex */
    assert_int_equal(xtext_decode("a=b", 3, &b), -1);        /* "=" must be encoded */
    assert_int_equal(xtext_decode("a b", 3, &b), -1);
    buf_free(&b);
}

/* The author domains of From field bodies (addr_author_domains): "want" is
 * the domains found, space-separated, in order. */
static void test_author_domains(void **state)
{
    static const struct { const char *body, *want; } t[] = {
        { " ceo@bank.example", "bank.example" },
        { " Ceo <CEO@Bank.Example>", "bank.example" },
        { " \"Mallory <a@evil.example>\" <ceo@bank.example>", "bank.example" },
        { " \"x\\\" <a@evil.example>\" <ceo@bank.example>", "bank.example" },
        { " ceo@bank.example (via <a@evil.example>)", "bank.example" },
        { " ceo@bank.example (a (nested <b@evil.example>) c)", "bank.example" },
        { " (<a@evil.example>) ceo@bank.example", "bank.example" },
        { " \"ceo@bank.example\" <a@evil.example>", "evil.example" },
        { " a@evil.example, ceo@bank.example", "evil.example bank.example" },
        { " \"A, B\" <a@evil.example>, \"C\" <ceo@bank.example>", "evil.example bank.example" },
        { " a@x.example, b@X.EXAMPLE, c@y.example, d@x.example", "x.example y.example" },
        { " Team: a@x.example, b@y.example;", "x.example y.example" },
        { " undisclosed-recipients:;", "" },
        { " \"a@b\"@quoted.example", "quoted.example" },
        { " <\"a@b\"@quoted.example>", "quoted.example" },
        { " ceo@bank.example.", "bank.example" },
        { " ceo@ bank.example", "bank.example" },
        { " ceo@bank.example>", "bank.example" },
        { "\n ceo@bank.example\n", "bank.example" },
        { " a@[192.0.2.1]", "" },
        { " no address", "" },
        { "", "" },
        { " \"unterminated <a@evil.example>", "" },
        { " (unterminated <a@evil.example>", "" },
        { " <a@evil.example", "evil.example" },
        { " @", "" },
        { " <ceo@bank.example> <a@evil.example>", "bank.example evil.example" },
        /* U-labels (SMTPUTF8, RFC 6532) as A-labels (RFC 8616) */
        { " ceo@bank.example\xc3\xa4.example, x@b\xc3\xa4nk.example",
          "bank.xn--example-cxa.example xn--bnk-qla.example" },
        { " x@B\xc3\x84NK.Example, y@xn--bnk-qla.example", "xn--bnk-qla.example" },
        { " x@b\xc3\xa4nk.example\xe3\x80\x82", "xn--bnk-qla.example" },
        { " x@b\xc3\xa4nk\xe2\x80\xa8.example", "" },     /* U+2028: no IDN */
        { " x@b\xff\xfenk.example", "" },                   /* not UTF-8 */
        { " x@example.com\xc2\xa0", "" },                   /* NBSP: no IDN */
        { " \"B\xc3\xa4nk\" <ceo@bank.example>", "bank.example" },
        { " Bank <ceo@bank.example> a@evil.example", "bank.example evil.example" },
        { " ceo@bank.example <a@evil.example>", "evil.example bank.example" },
        { " <a@evil.example> (ceo@bank.example)", "evil.example" },
        { " e<b@..:v", "" },
        { " a@.x.example, b@x..example, c@x.example..", "" },
        { " ,,, ;;; :::", "" },
    };
    char out[4][ADDR_DOMAIN_MAX + 1];
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        int n = addr_author_domains(t[i].body, strlen(t[i].body), out, 4, 0);
        char got[1024] = "";
        size_t len = 0;
        for (int k = 0; k < n && k < 4; k++)
            len += (size_t)snprintf(got + len, sizeof(got) - len, "%s%s", k ? " " : "", out[k]);
        if (strcmp(got, t[i].want) != 0)
            fail_msg("%s: got \"%s\", want \"%s\"", t[i].body, got, t[i].want);
    }
    /* more distinct domains than stored: all counted */
    const char *many = "a@a.example, b@b.example, c@c.example, d@d.example, e@e.example, a@a.example";
    assert_int_equal(addr_author_domains(many, strlen(many), out, 4, 0), 5);
    assert_string_equal(out[3], "d.example");
    /* a domain over 255 octets is none */
    char lng[400] = "a@";
    memset(lng + 2, 'x', 300);
    lng[302] = '\0';
    assert_int_equal(addr_author_domains(lng, strlen(lng), out, 4, 0), 0);
    /* a second From field adds only what the first did not have */
    int c = addr_author_domains("a@x.example, b@y.example", 24, out, 4, 0);
    assert_int_equal(c, 2);
    assert_int_equal(addr_author_domains(" b@Y.example, c@z.example", 25, out, 4, c), 3);
    assert_string_equal(out[2], "z.example");
    /* bytes are read only within n */
    assert_int_equal(addr_author_domains("a@b.example, c@d.example", 12, out, 4, 0), 1);
    assert_string_equal(out[0], "b.example");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        { "path table", test_path_table, NULL, NULL, NULL },
        { "length limits", test_limits, NULL, NULL, NULL },
        { "used stops at >", test_used_stops_at_bracket, NULL, NULL, NULL },
        { "domain and local part", test_domain_local, NULL, NULL, NULL },
        { "bare mailbox", test_check_mailbox, NULL, NULL, NULL },
        { "ESMTP parameters", test_params, NULL, NULL, NULL },
        { "xtext", test_xtext, NULL, NULL, NULL },
        { "author domains of From", test_author_domains, NULL, NULL, NULL },
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
