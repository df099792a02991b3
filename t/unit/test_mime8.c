/*
 * test_mime8.c - the 8-bit to 7-bit MIME downgrade (lib/mail/mime8.c),
 * byte for byte: a plain 8-bit message, multipart with 8bit / base64 /
 * binary parts, message/rfc822 relabelled 7bit, quoted-printable line
 * width, blanks and '=', header ending without the empty line; refusals
 * (8-bit header, 8-bit base64 part, 8-bit preamble, nesting too deep); the
 * same output whatever the chunk size.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "mail/mime8.h"

/* Run both passes over in, fed in chunks of `chunk` octets (0 = whole).
 * Returns mime8_scan_end's value; out gets the converted text (NUL-ended). */
static int run(const char *in, size_t chunk, buf_t *out, char *why, size_t whylen)
{
    size_t n = strlen(in);
    if (chunk == 0)
        chunk = n ? n : 1;
    struct mime8 *m = mime8_new();
    for (size_t i = 0; i < n; i += chunk)
        mime8_scan(m, in + i, n - i < chunk ? n - i : chunk);
    int rc = mime8_scan_end(m, why, whylen);
    if (rc == 1) {
        for (size_t i = 0; i < n; i += chunk)
            mime8_convert(m, in + i, n - i < chunk ? n - i : chunk, out);
        mime8_convert_end(m, out);
    }
    buf_append_char(out, '\0');
    mime8_free(m);
    return rc;
}

/* Expect conversion of in to give want, for several chunk sizes. */
static void expect(const char *in, const char *want)
{
    static const size_t chunks[] = { 0, 1, 2, 3, 7, 64, 4095, 4096, 4097 };
    for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
        buf_t out;
        char why[200] = "";
        buf_init(&out, 256);
        int rc = run(in, chunks[c], &out, why, sizeof(why));
        if (rc != 1)
            fail_msg("chunk %zu: rc %d (%s)", chunks[c], rc, why);
        assert_string_equal(out.data, want);
        buf_free(&out);
    }
}

static void expect_refused(const char *in, const char *reason)
{
    buf_t out;
    char why[200] = "";
    buf_init(&out, 64);
    assert_int_equal(run(in, 0, &out, why, sizeof(why)), -1);
    if (strstr(why, reason) == NULL)
        fail_msg("reason \"%s\" does not contain \"%s\"", why, reason);
    buf_free(&out);
}

static void test_plain_8bit_message(void **st)
{
    (void)st;
    expect("Subject: caf\\xc3\\xa9 is ascii here\nFrom: a@b\n\n"
           "H\xc3\xa9llo = world \nsecond\tline\t\n.dot\n",
           "Subject: caf\\xc3\\xa9 is ascii here\nFrom: a@b\n"
           "MIME-Version: 1.0\nContent-Transfer-Encoding: quoted-printable\n\n"
           "H=C3=A9llo =3D world=20\nsecond\tline=09\n.dot\n");
}

static void test_7bit_needs_nothing(void **st)
{
    (void)st;
    buf_t out;
    char why[100];
    buf_init(&out, 64);
    assert_int_equal(run("Subject: x\n\nplain = ascii\n", 0, &out, why, sizeof(why)), 0);
    buf_free(&out);
}

static void test_multipart(void **st)
{
    (void)st;
    expect("MIME-Version: 1.0\n"
           "Content-Type: multipart/mixed;\n boundary=\"b1\"\n"
           "Content-Transfer-Encoding: 8bit\n"
           "\n"
           "preamble\n"
           "--b1\n"
           "Content-Type: text/plain; charset=utf-8\n"
           "Content-Transfer-Encoding: 8BIT (a comment)\n"
           "X-After: kept\n"
           "\n"
           "caf\xc3\xa9\n"
           "--b1  \n"
           "Content-Type: application/octet-stream\n"
           "Content-Transfer-Encoding: base64\n"
           "\n"
           "AAAA\n"
           "--b1\n"
           "Content-Type: text/plain\n"
           "\n"
           "unlabelled \xff\n"
           "--b1--\n"
           "epilogue\n",
           "MIME-Version: 1.0\n"
           "Content-Type: multipart/mixed;\n boundary=\"b1\"\n"
           "Content-Transfer-Encoding: 7bit\n"
           "\n"
           "preamble\n"
           "--b1\n"
           "Content-Type: text/plain; charset=utf-8\n"
           "X-After: kept\n"
           "Content-Transfer-Encoding: quoted-printable\n"
           "\n"
           "caf=C3=A9\n"
           "--b1  \n"
           "Content-Type: application/octet-stream\n"
           "Content-Transfer-Encoding: base64\n"
           "\n"
           "AAAA\n"
           "--b1\n"
           "Content-Type: text/plain\n"
           "Content-Transfer-Encoding: quoted-printable\n"
           "\n"
           "unlabelled =FF\n"
           "--b1--\n"
           "epilogue\n");
}

/* A message/rfc822 part: relabelled 7bit, its own header gains
 * MIME-Version, its nested multipart is walked; an inner boundary that
 * is a prefix of the outer one does not confuse the two. */
static void test_nested_message(void **st)
{
    (void)st;
    expect("Content-Type: multipart/mixed; boundary=outer\n"
           "\n"
           "--outer\n"
           "Content-Type: message/rfc822\n"
           "Content-Transfer-Encoding: 8bit\n"
           "\n"
           "Subject: inner\n"
           "Content-Type: multipart/alternative; boundary=\"out\"\n"
           "\n"
           "--out\n"
           "Content-Transfer-Encoding: binary\n"
           "\n"
           "\xe2\x82\xac\n"
           "--outer\n"
           "Content-Type: text/plain\n"
           "\n"
           "seven\n"
           "--outer--\n",
           "Content-Type: multipart/mixed; boundary=outer\n"
           "\n"
           "--outer\n"
           "Content-Type: message/rfc822\n"
           "Content-Transfer-Encoding: 7bit\n"
           "\n"
           "Subject: inner\n"
           "Content-Type: multipart/alternative; boundary=\"out\"\n"
           "\n"
           "--out\n"
           "Content-Transfer-Encoding: quoted-printable\n"
           "\n"
           "=E2=82=AC\n"
           "--outer\n"
           "Content-Type: text/plain\n"
           "\n"
           "seven\n"
           "--outer--\n");
}

/* Lines stay within 76 octets with soft breaks; '=' is encoded, an
 * encoded octet is never split, a continuation never starts with '-'. */
static void test_qp_width(void **st)
{
    (void)st;
    char in[600], line[200];
    memset(line, 'a', 74);
    memcpy(line + 74, "\xc3\xa9--b=\n", 8);
    snprintf(in, sizeof(in), "Content-Transfer-Encoding: 8bit\n\n%s", line);
    buf_t out;
    char why[100];
    buf_init(&out, 256);
    assert_int_equal(run(in, 0, &out, why, sizeof(why)), 1);
    /* MIME-Version comes before the new CTE field */
    assert_non_null(strstr(out.data, "MIME-Version: 1.0\nContent-Transfer-Encoding: "
                                     "quoted-printable\n\n"));
    const char *body = strstr(out.data, "\n\n") + 2;
    char expect_body[200];
    snprintf(expect_body, sizeof(expect_body), "%.*s=\n=C3=A9--b=3D\n", 74, line);
    assert_string_equal(body, expect_body);
    buf_free(&out);

    /* a long line of '-' after 8-bit data: no output line starts with '-'
     * except where the original did */
    char in2[400];
    memset(line, '-', 150);
    line[150] = '\0';
    snprintf(in2, sizeof(in2), "\n\xc3\xa9%s\n", line);
    buf_init(&out, 256);
    assert_int_equal(run(in2, 0, &out, why, sizeof(why)), 1);
    for (const char *p = out.data; (p = strchr(p, '\n')) != NULL; p++) {
        assert_true(p[1] != '-');
        const char *e = strchr(p + 1, '\n');
        if (e)
            assert_true(e - (p + 1) <= 76);
    }
    buf_free(&out);
}

/* A header that ends at a line that is not a field (no empty line). */
static void test_header_without_empty_line(void **st)
{
    (void)st;
    expect("Subject: x\nMIME-Version: 1.0\nnot a field \xc3\xa9\nmore\n",
           "Subject: x\nMIME-Version: 1.0\nContent-Transfer-Encoding: quoted-printable\n"
           "not a field =C3=A9\nmore\n");
    /* the last line has no LF: a trailing blank is still encoded */
    expect("\n\xc3\xa9 ", "MIME-Version: 1.0\nContent-Transfer-Encoding: quoted-printable\n"
                          "\n=C3=A9=20");
}

static void test_refusals(void **st)
{
    (void)st;
    expect_refused("Subject: caf\xc3\xa9\n\nbody\n", "8-bit byte in a header");
    expect_refused("Content-Type: multipart/mixed; boundary=b\n\n--b\n"
                   "X-Name: \xc3\xa9\n\nx\n--b--\n", "8-bit byte in a header");
    expect_refused("Content-Transfer-Encoding: base64\n\n\xc3\xa9\n",
                   "encoding is not 7bit, 8bit or binary");
    expect_refused("Content-Type: multipart/mixed; boundary=b\n\npre \xc3\xa9\n--b\n\nx\n--b--\n",
                   "preamble or epilogue");
    /* 25 nested multiparts, 8-bit data at the bottom */
    buf_t in;
    buf_init(&in, 4096);
    for (int i = 0; i < 25; i++)
        buf_printf(&in, "Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n", i, i);
    buf_append_str(&in, "\n\xc3\xa9\n");
    expect_refused(in.data, "nested too deeply");
    /* 15 levels are fine */
    buf_reset(&in);
    for (int i = 0; i < 15; i++)
        buf_printf(&in, "Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n", i, i);
    buf_append_str(&in, "\n\xc3\xa9\n");
    buf_t out;
    char why[100];
    buf_init(&out, 256);
    assert_int_equal(run(in.data, 0, &out, why, sizeof(why)), 1);
    assert_non_null(strstr(out.data, "--b14\nContent-Transfer-Encoding: quoted-printable\n\n"
                                     "=C3=A9\n"));
    buf_free(&out);
    buf_free(&in);
}

/* A multipart/digest part without Content-Type is a message/rfc822. */
static void test_digest_default(void **st)
{
    (void)st;
    expect("Content-Type: multipart/digest; boundary=d\n\n--d\n\n"
           "Subject: one\n\nbody \xc3\xa9\n--d--\n",
           "Content-Type: multipart/digest; boundary=d\n\n--d\n\n"
           "Subject: one\nMIME-Version: 1.0\nContent-Transfer-Encoding: quoted-printable\n\n"
           "body =C3=A9\n--d--\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_8bit_message),
        cmocka_unit_test(test_7bit_needs_nothing),
        cmocka_unit_test(test_multipart),
        cmocka_unit_test(test_nested_message),
        cmocka_unit_test(test_qp_width),
        cmocka_unit_test(test_header_without_empty_line),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_digest_default),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
