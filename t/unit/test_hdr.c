/*
 * test_hdr.c - the streaming header-section scanner (lib/mail/hdr.c).
 * Every case is also fed in every two-chunk split and byte by byte: the
 * result must not depend on where the content was cut.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mail/hdr.h"

/* Scan s in chunks cut at the given positions (ascending, < n). */
static void scan_cuts(struct hdr_scan *hs, const char *s, size_t n, const size_t *cuts, int ncuts)
{
    hdr_scan_init(hs);
    size_t pos = 0;
    for (int i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        if (hs->end == HDR_END_NONE) {
            size_t used = hdr_scan_feed(hs, s + pos, end - pos);
            assert_true(used <= end - pos);
            if (hs->end == HDR_END_NONE)
                assert_int_equal(used, end - pos);
        }
        pos = end;
    }
    hdr_scan_finish(hs);
}

static void same(const struct hdr_scan *a, const struct hdr_scan *b)
{
    assert_int_equal(a->end, b->end);
    assert_int_equal(a->end_off, b->end_off);
    assert_int_equal(a->body_off, b->body_off);
    assert_int_equal(a->seen, b->seen);
    assert_int_equal(a->nfields, b->nfields);
    assert_int_equal(a->received, b->received);
}

/* Scan whole, in every 2-way split and byte by byte; all must agree. */
static struct hdr_scan scan(const char *s)
{
    size_t n = strlen(s);
    struct hdr_scan whole, part;
    scan_cuts(&whole, s, n, NULL, 0);
    for (size_t cut = 1; cut < n; cut++) {
        scan_cuts(&part, s, n, &cut, 1);
        same(&whole, &part);
    }
    if (n > 1) {
        size_t *cuts = malloc(sizeof(size_t) * n);
        for (size_t i = 0; i + 1 < n; i++)
            cuts[i] = i + 1;
        scan_cuts(&part, s, n, cuts, (int)(n - 1));
        same(&whole, &part);
        free(cuts);
    }
    return whole;
}

static void test_basic(void **st)
{
    const char *m = "Subject: a\nFrom: b@c\n\nbody\n";
    struct hdr_scan hs = scan(m);
    assert_int_equal(hs.end, HDR_END_BLANK);
    assert_int_equal(hs.end_off, strlen("Subject: a\nFrom: b@c\n"));
    assert_int_equal(hs.body_off, hs.end_off + 1);
    assert_int_equal(hs.seen, HDR_SEEN_SUBJECT | HDR_SEEN_FROM);
    assert_int_equal(hs.nfields, 2);
}

static void test_feed_return(void **st)
{
    struct hdr_scan hs;
    hdr_scan_init(&hs);
    const char *m = "A: b\n\nbody\n";
    assert_int_equal(hdr_scan_feed(&hs, m, strlen(m)), 6);   /* through the empty line */
    assert_int_equal(hs.end, HDR_END_BLANK);
    /* more input after the end is not looked at */
    assert_int_equal(hdr_scan_feed(&hs, "X: y\n", 5), 0);
    assert_int_equal(hs.nfields, 1);
}

static void test_folded(void **st)
{
    struct hdr_scan hs = scan("Subject: a\n b\n\tc\nMessage-ID:\n <x@y>\nDATE: Mon, 1 Jan 2024\n\n");
    assert_int_equal(hs.end, HDR_END_BLANK);
    assert_int_equal(hs.nfields, 3);
    assert_int_equal(hs.seen, HDR_SEEN_SUBJECT | HDR_SEEN_MESSAGE_ID | HDR_SEEN_DATE);
}

static void test_missing_blank_line(void **st)
{
    const char *m = "Subject: a\nX-A: b\nthis is the body\nmore\n";
    struct hdr_scan hs = scan(m);
    assert_int_equal(hs.end, HDR_END_LINE);
    assert_int_equal(hs.end_off, strlen("Subject: a\nX-A: b\n"));
    assert_int_equal(hs.body_off, hs.end_off);
    assert_int_equal(hs.nfields, 2);
}

static void test_no_headers(void **st)
{
    struct hdr_scan hs = scan("hello world\n");
    assert_int_equal(hs.end, HDR_END_LINE);
    assert_int_equal(hs.end_off, 0);
    hs = scan(" leading space\n");
    assert_int_equal(hs.end, HDR_END_LINE);
    assert_int_equal(hs.end_off, 0);
    hs = scan(":no name\n");
    assert_int_equal(hs.end, HDR_END_LINE);
    hs = scan("\nbody\n");
    assert_int_equal(hs.end, HDR_END_BLANK);
    assert_int_equal(hs.end_off, 0);
    assert_int_equal(hs.body_off, 1);
}

static void test_empty_and_eof(void **st)
{
    struct hdr_scan hs = scan("");
    assert_int_equal(hs.end, HDR_END_EOF);
    assert_int_equal(hs.end_off, 0);
    hs = scan("Subject: only");
    assert_int_equal(hs.end, HDR_END_EOF);
    assert_int_equal(hs.end_off, 13);
    assert_int_equal(hs.nfields, 1);
    hs = scan("Subject: x\n");
    assert_int_equal(hs.end, HDR_END_EOF);
    assert_int_equal(hs.end_off, 11);
    /* an unterminated last line that is not a field belongs to the body */
    hs = scan("A: b\nSubj");
    assert_int_equal(hs.end, HDR_END_LINE);
    assert_int_equal(hs.end_off, 5);
    hs = scan("A: b\nSubj  ");
    assert_int_equal(hs.end, HDR_END_LINE);
    assert_int_equal(hs.end_off, 5);
}

static void test_obsolete_wsp_and_controls(void **st)
{
    struct hdr_scan hs = scan("Subject : x\nDate\t: y\n\n");
    assert_int_equal(hs.end, HDR_END_BLANK);
    assert_int_equal(hs.seen, HDR_SEEN_SUBJECT | HDR_SEEN_DATE);
    hs = scan("A: b\nSub\001ject: x\n\n");
    assert_int_equal(hs.end, HDR_END_LINE);
    assert_int_equal(hs.end_off, 5);
    hs = scan("A: b\nSubject x\n\n");           /* no colon */
    assert_int_equal(hs.end, HDR_END_LINE);
    /* CRLF content is not ours to fix: "\r" alone is not an empty line */
    hs = scan("A: b\r\n\r\nbody");
    assert_int_equal(hs.end, HDR_END_LINE);
    assert_int_equal(hs.end_off, 6);
    hs = scan("A: \x80\xff\x01x\n\n");                /* anything goes in a value */
    assert_int_equal(hs.nfields, 1);
}

static void test_received_count(void **st)
{
    struct hdr_scan hs = scan("Received: a\nreceived: b\n c\nRECEIVED: d\nReceived-SPF: x\n\n");
    assert_int_equal(hs.received, 3);
    assert_int_equal(hs.nfields, 4);
}

/* Names longer than HDR_NAME_MAX are fields but never classified; huge
 * names and values do not overflow anything. */
static void test_oversize(void **st)
{
    size_t big = 200000;
    char *m = malloc(big + 64);
    memset(m, 'X', big);
    memcpy(m + big, ": v\nDate: x\n\n", 14);
    struct hdr_scan hs;
    size_t cuts[3] = { 10, 70000, big + 2 };
    scan_cuts(&hs, m, strlen(m), cuts, 3);
    assert_int_equal(hs.end, HDR_END_BLANK);
    assert_int_equal(hs.nfields, 2);
    assert_int_equal(hs.seen, HDR_SEEN_DATE);
    assert_int_equal(hs.longest_line, big + 3);

    /* a name that starts like a known one but is longer is not it */
    char name[HDR_NAME_MAX + 20];
    memset(name, 'a', sizeof(name));
    memcpy(name, "Date", 4);
    memcpy(name + sizeof(name) - 4, ":\n\n", 4);
    hs = scan(name);
    assert_int_equal(hs.seen, 0);

    /* a 1 MB value */
    memset(m, 0, big + 64);
    char *v = malloc(1 << 20);
    memset(v, 'v', 1 << 20);
    hdr_scan_init(&hs);
    hdr_scan_feed(&hs, "Subject: ", 9);
    hdr_scan_feed(&hs, v, 1 << 20);
    hdr_scan_feed(&hs, "\n\n", 2);
    assert_int_equal(hs.end, HDR_END_BLANK);
    assert_int_equal(hs.end_off, 9 + (1 << 20) + 1);
    free(v);
    free(m);
}

static void test_name_eq(void **st)
{
    assert_true(hdr_name_eq("Message-ID", 10, "message-id"));
    assert_false(hdr_name_eq("Message-ID", 9, "message-id"));
    assert_false(hdr_name_eq("Message-IDs", 11, "message-id"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_feed_return),
        cmocka_unit_test(test_folded),
        cmocka_unit_test(test_missing_blank_line),
        cmocka_unit_test(test_no_headers),
        cmocka_unit_test(test_empty_and_eof),
        cmocka_unit_test(test_obsolete_wsp_and_controls),
        cmocka_unit_test(test_received_count),
        cmocka_unit_test(test_oversize),
        cmocka_unit_test(test_name_eq),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
