/*
 * test_smtp_data.c - lib/mail/smtp_data.c, the DATA decoder: end detection
 * (also split at every chunk boundary), SMTP smuggling sequences,
 * dot-unstuffing, CRLF -> LF, NUL, line and size limits (size counted as
 * SIZE= counts: after unstuffing, CRLF = 2 octets; lines of any length
 * without a line limit); and the BDAT chunk decoder (no unstuffing, no
 * terminator, CRLF split across chunks).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "mail/smtp_data.h"

struct result {
    buf_t out;
    unsigned errors;
    int done;
    size_t consumed;
    uint64_t size;
};

/* Feed in with chunks of at most step bytes (0 = at split, then rest). */
static void run_l(const char *in, size_t n, size_t step, size_t split, uint64_t max,
                  uint64_t max_line, struct result *r)
{
    struct smtp_data d;
    smtp_data_init(&d, max, max_line);
    buf_init(&r->out, 64);
    size_t off = 0;
    while (off < n && !d.done) {
        size_t len;
        if (step)
            len = n - off < step ? n - off : step;
        else
            len = off < split ? split - off : n - off;
        off += smtp_data_feed(&d, (const unsigned char *)in + off, len, &r->out);
    }
    r->errors = d.errors;
    r->done = d.done;
    r->consumed = off;
    r->size = d.size;
}

static void run(const char *in, size_t n, size_t step, size_t split, uint64_t max, struct result *r)
{
    run_l(in, n, step, split, max, 0, r);
}

struct dcase {
    const char *in;
    const char *out;        /* expected content when errors == 0 */
    unsigned errors;
    int done;
    size_t rest;            /* bytes left after the terminator */
};

static const struct dcase cases[] = {
    { ".\r\n", "", 0, 1, 0 },
    { "a\r\n.\r\n", "a\n", 0, 1, 0 },
    { "a\r\nb\r\n.\r\nQUIT\r\n", "a\nb\n", 0, 1, 6 },
    { "..\r\n.\r\n", ".\n", 0, 1, 0 },
    { "..x\r\n...\r\n.\r\n", ".x\n..\n", 0, 1, 0 },
    { ".x\r\n.\r\n", "x\n", 0, 1, 0 },
    { "\r\n\r\n.\r\n", "\n\n", 0, 1, 0 },
    { "a.\r\n.\r\n", "a.\n", 0, 1, 0 },
    { "a\r\n. \r\n.\r\n", "a\n \n", 0, 1, 0 },
    /* not terminators */
    { "a\n.\n", NULL, SMTP_DATA_E_BARE, 0, 0 },
    { "a\r\n.\n", NULL, SMTP_DATA_E_BARE, 0, 0 },
    { "a\n.\r\n", NULL, SMTP_DATA_E_BARE, 0, 0 },
    { "a\r.\r\n", NULL, SMTP_DATA_E_BARE, 0, 0 },
    { "a\r\n.\r", NULL, 0, 0, 0 },
    { "a\r\n.\rx\r\n", NULL, SMTP_DATA_E_BARE, 0, 0 },
    /* smuggling: bare LF/CR variants followed later by the real end */
    { "a\n.\nMAIL FROM:<x>\r\n.\r\n", NULL, SMTP_DATA_E_BARE, 1, 0 },
    { "a\r\n.\nRCPT TO:<x>\r\n.\r\n", NULL, SMTP_DATA_E_BARE, 1, 0 },
    { "a\n.\r\nDATA\r\n.\r\n", NULL, SMTP_DATA_E_BARE, 1, 0 },
    { "a\r.\r\nx\r\n.\r\n", NULL, SMTP_DATA_E_BARE, 1, 0 },
    { "a\r\r\n.\r\n", NULL, SMTP_DATA_E_BARE, 1, 0 },
    { "a\rb\r\n.\r\n", NULL, SMTP_DATA_E_BARE, 1, 0 },
    { "a\x00" "b\r\n.\r\n", NULL, SMTP_DATA_E_NUL, 1, 0 },
    { "\n.\r\n.\r\n", NULL, SMTP_DATA_E_BARE, 1, 0 },
};

static void check_case(const struct dcase *c, size_t n, size_t step, size_t split)
{
    struct result r;
    run(c->in, n, step, split, 0, &r);
    if (r.errors != c->errors || r.done != c->done)
        fail_msg("\"%s\" step %zu split %zu: errors %u done %d", c->in, step, split,
                 r.errors, r.done);
    if (c->done)
        assert_int_equal(n - r.consumed, c->rest);
    if (c->done && c->errors == 0)
        assert_string_equal(r.out.data, c->out);
    buf_free(&r.out);
}

static size_t case_len(const struct dcase *c)
{
    /* the NUL case holds an embedded NUL: measure up to the terminator */
    size_t n = strlen(c->in);
    if (c->errors & SMTP_DATA_E_NUL)
        n = 2 + strlen(c->in + 2);
    return n;
}

static void test_cases_whole(void **state)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check_case(&cases[i], case_len(&cases[i]), 0, 0);
}

static void test_cases_byte_by_byte(void **state)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check_case(&cases[i], case_len(&cases[i]), 1, 0);
}

static void test_cases_every_split(void **state)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = case_len(&cases[i]);
        for (size_t split = 1; split < n; split++)
            check_case(&cases[i], n, 0, split);
    }
}

static void test_line_limit(void **state)
{
    buf_t in;
    struct result r;
    buf_init(&in, 2100);
    for (int i = 0; i < 998; i++)
        buf_append_char(&in, 'x');
    buf_append_str(&in, "\r\n.\r\n");          /* 998 + CRLF: ok at 998 */
    run_l(in.data, in.len, 7, 0, 0, 998, &r);
    assert_int_equal(r.errors, 0);
    assert_int_equal(r.out.len, 999);
    buf_free(&r.out);
    buf_reset(&in);
    for (int i = 0; i < 999; i++)
        buf_append_char(&in, 'x');
    buf_append_str(&in, "\r\n.\r\n");          /* 999: too long at 998 */
    run_l(in.data, in.len, 0, 0, 0, 998, &r);
    assert_int_equal(r.errors, SMTP_DATA_E_LINE);
    assert_true(r.done);
    buf_free(&r.out);
    /* a stuffed dot is removed before the line is measured */
    buf_reset(&in);
    buf_append_char(&in, '.');
    for (int i = 0; i < 998; i++)
        buf_append_char(&in, 'x');
    buf_append_str(&in, "\r\n.\r\n");
    run_l(in.data, in.len, 0, 0, 0, 998, &r);
    assert_int_equal(r.errors, 0);
    assert_int_equal(r.out.len, 999);
    buf_free(&r.out);
    buf_free(&in);
}

/* Without a line limit (the default) lines of any length pass through,
 * whatever the chunking. */
static void test_long_lines(void **state)
{
    static const size_t lens[] = { 999, 1500, 200000 };
    for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
        buf_t in, want;
        struct result r;
        buf_init(&in, lens[k] + 64);
        buf_init(&want, lens[k] + 64);
        buf_append_str(&in, "Subject: ");
        buf_append_str(&want, "Subject: ");
        for (size_t i = 0; i < lens[k]; i++) {
            buf_append_char(&in, (char)('a' + i % 26));
            buf_append_char(&want, (char)('a' + i % 26));
        }
        buf_append_str(&in, "\r\n\r\n.");           /* and a stuffed dot line */
        buf_append_str(&want, "\n\n");
        for (size_t i = 0; i < lens[k]; i++) {
            buf_append_char(&in, '.');
            buf_append_char(&want, '.');
        }
        buf_append_str(&in, "\r\n.\r\n");
        buf_append_str(&want, "\n");
        for (size_t step = 0; step < 3; step++) {
            run(in.data, in.len, step == 0 ? 0 : step == 1 ? 1 : 4093, 0, 0, &r);
            assert_int_equal(r.errors, 0);
            assert_true(r.done);
            assert_int_equal(r.out.len, want.len);
            assert_memory_equal(r.out.data, want.data, want.len);
            assert_int_equal(r.size, want.len + 3);     /* 3 LF were CRLF */
            buf_free(&r.out);
        }
        buf_free(&in);
        buf_free(&want);
    }
}

static void test_size_limit(void **state)
{
    struct result r;
    /* SIZE octets: 10 + CRLF = 12 (the terminator does not count) */
    const char *m = "0123456789\r\n.\r\n";
    run(m, strlen(m), 0, 0, 12, &r);
    assert_int_equal(r.errors, 0);
    assert_int_equal(r.size, 12);
    buf_free(&r.out);
    run(m, strlen(m), 3, 0, 11, &r);            /* the CR counts too */
    assert_int_equal(r.errors, SMTP_DATA_E_SIZE);
    assert_true(r.done);
    assert_true(r.out.len <= 11);
    buf_free(&r.out);
    /* a stuffed dot does not count */
    const char *s2 = "..ab\r\n.\r\n";       /* ".ab" CRLF = 5 */
    run(s2, strlen(s2), 1, 0, 5, &r);
    assert_int_equal(r.errors, 0);
    assert_int_equal(r.size, 5);
    buf_free(&r.out);
    /* many short lines: CRLF counted as 2 at every line (the old LF count
     * let a message 1/line-length over the limit through) */
    buf_t big;
    buf_init(&big, 80 * 1000 + 8);
    for (int i = 0; i < 1000; i++)
        buf_append_str(&big, "0123456789012345678901234567890123456789012345678901234567890123456789012345\r\n");
    buf_append_str(&big, ".\r\n");
    run(big.data, big.len, 0, 0, 78000, &r);
    assert_int_equal(r.errors, 0);
    assert_int_equal(r.size, 78000);
    buf_free(&r.out);
    run(big.data, big.len, 0, 0, 77999, &r);
    assert_int_equal(r.errors, SMTP_DATA_E_SIZE);
    buf_free(&r.out);
    run(big.data, big.len, 0, 0, 77001, &r);    /* the LF count would be 77000 */
    assert_int_equal(r.errors, SMTP_DATA_E_SIZE);
    buf_free(&r.out);
    buf_free(&big);
}

static void test_stops_after_end(void **state)
{
    struct smtp_data d;
    buf_t out;
    buf_init(&out, 16);
    smtp_data_init(&d, 0, 0);
    const char *m = "x\r\n.\r\nMAIL FROM:<a@b>\r\n";
    size_t used = smtp_data_feed(&d, (const unsigned char *)m, strlen(m), &out);
    assert_true(d.done);
    assert_int_equal(used, 6);
    /* feeding after done consumes nothing */
    assert_int_equal(smtp_data_feed(&d, (const unsigned char *)m, strlen(m), &out), 0);
    assert_string_equal(out.data, "x\n");
    buf_free(&out);
}

static void test_output_stops_on_error(void **state)
{
    struct result r;
    const char *m = "a\nbbbbbbbb\r\n.\r\n";
    run(m, strlen(m), 0, 0, 0, &r);
    assert_int_equal(r.errors, SMTP_DATA_E_BARE);
    assert_true(r.out.len <= 1);     /* nothing after the bare LF reaches the output */
    buf_free(&r.out);
}

/* ---- BDAT chunk decoding ---------------------------------------------- */

struct bcase {
    const char *in;
    const char *out;        /* expected content when errors == 0 */
    unsigned errors;
};

static const struct bcase bcases[] = {
    { "", "", 0 },
    { "a\r\n", "a\n", 0 },
    { ".\r\n..x\r\n", ".\n..x\n", 0 },            /* no unstuffing */
    { "a\r\n.\r\nQUIT\r\n", "a\n.\nQUIT\n", 0 },   /* no terminator */
    { "no line end", "no line end\n", 0 },           /* a line end is added */
    { "a\nb\r\n", NULL, SMTP_DATA_E_BARE },
    { "a\rb\r\n", NULL, SMTP_DATA_E_BARE },
    { "a\r", NULL, SMTP_DATA_E_BARE },                /* CR at the very end */
    { "a\r\n.\n", NULL, SMTP_DATA_E_BARE },
    { "a\r\r\n", NULL, SMTP_DATA_E_BARE },
};

static void test_bdat_every_split(void **state)
{
    for (size_t i = 0; i < sizeof(bcases) / sizeof(bcases[0]); i++) {
        const struct bcase *c = &bcases[i];
        size_t n = strlen(c->in);
        for (size_t split = 0; split <= n; split++) {
            struct smtp_data d;
            buf_t out;
            buf_init(&out, 16);
            smtp_bdat_init(&d, 0, 0);
            smtp_bdat_feed(&d, (const unsigned char *)c->in, split, &out);
            smtp_bdat_feed(&d, (const unsigned char *)c->in + split, n - split, &out);
            smtp_bdat_end(&d, &out);
            if (d.errors != c->errors || !d.done)
                fail_msg("case %zu split %zu: errors %u, want %u", i, split, d.errors, c->errors);
            if (c->out && strcmp(out.data, c->out) != 0)
                fail_msg("case %zu split %zu: got \"%s\"", i, split, out.data);
            buf_free(&out);
        }
    }
}

static void test_bdat_nul_line_size(void **state)
{
    struct smtp_data d;
    buf_t out;
    buf_init(&out, 16);
    smtp_bdat_init(&d, 0, 0);
    smtp_bdat_feed(&d, (const unsigned char *)"a\0b\r\n", 5, &out);
    smtp_bdat_end(&d, &out);
    assert_int_equal(d.errors, SMTP_DATA_E_NUL);
    char line[1501];
    memset(line, 'x', sizeof(line));
    buf_reset(&out);
    smtp_bdat_init(&d, 0, 998);             /* 998 + CRLF: fine at 998 */
    smtp_bdat_feed(&d, (const unsigned char *)line, 998, &out);
    smtp_bdat_feed(&d, (const unsigned char *)"\r\n", 2, &out);
    smtp_bdat_end(&d, &out);
    assert_int_equal(d.errors, 0);
    smtp_bdat_init(&d, 0, 998);             /* 999: too long at 998 */
    smtp_bdat_feed(&d, (const unsigned char *)line, 999, &out);
    smtp_bdat_feed(&d, (const unsigned char *)"\r\n", 2, &out);
    smtp_bdat_end(&d, &out);
    assert_int_equal(d.errors, SMTP_DATA_E_LINE);
    buf_reset(&out);
    smtp_bdat_init(&d, 0, 0);               /* no line limit: 1500 pass */
    smtp_bdat_feed(&d, (const unsigned char *)line, 1500, &out);
    smtp_bdat_feed(&d, (const unsigned char *)"\r\n", 2, &out);
    smtp_bdat_end(&d, &out);
    assert_int_equal(d.errors, 0);
    assert_int_equal(out.len, 1501);
    assert_int_equal(d.size, 1502);
    buf_reset(&out);
    smtp_bdat_init(&d, 12, 0);              /* size: every chunk octet, CRLF = 2 */
    smtp_bdat_feed(&d, (const unsigned char *)"abcd\r\nefgh\r\n", 12, &out);
    smtp_bdat_end(&d, &out);
    assert_int_equal(d.errors, 0);
    assert_int_equal(d.size, 12);
    smtp_bdat_init(&d, 11, 0);
    smtp_bdat_feed(&d, (const unsigned char *)"abcd\r\nefgh\r\n", 12, &out);
    smtp_bdat_end(&d, &out);
    assert_int_equal(d.errors, SMTP_DATA_E_SIZE);
    smtp_bdat_init(&d, 10, 0);              /* the LF added at the end is not counted */
    smtp_bdat_feed(&d, (const unsigned char *)"abcdefghij", 10, &out);
    smtp_bdat_end(&d, &out);
    assert_int_equal(d.errors, 0);
    assert_int_equal(d.size, 10);
    smtp_bdat_init(&d, 10, 0);
    smtp_bdat_feed(&d, (const unsigned char *)"abcdefghijk", 11, &out);
    smtp_bdat_end(&d, &out);
    assert_int_equal(d.errors, SMTP_DATA_E_SIZE);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        { "cases, whole", test_cases_whole, NULL, NULL, NULL },
        { "cases, byte by byte", test_cases_byte_by_byte, NULL, NULL, NULL },
        { "cases, every split point", test_cases_every_split, NULL, NULL, NULL },
        { "line limit (limits.line_length)", test_line_limit, NULL, NULL, NULL },
        { "long lines without a limit", test_long_lines, NULL, NULL, NULL },
        { "size limit", test_size_limit, NULL, NULL, NULL },
        { "stops at the terminator", test_stops_after_end, NULL, NULL, NULL },
        { "no output after an error", test_output_stops_on_error, NULL, NULL, NULL },
        { "BDAT: cases, every split point", test_bdat_every_split, NULL, NULL, NULL },
        { "BDAT: NUL, line and size limits", test_bdat_nul_line_size, NULL, NULL, NULL },
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
