/*
 * test_dsn.c - delivery status notification texts (lib/mail/dsn.c), byte
 * for byte: a failure report with two recipients (an SMTP reply and a
 * local agent's reason, ORCPT, ENVID, headers returned), a delay warning,
 * a success report returning the full message; NOTIFY choices, dates,
 * the header section, and envelope text that must not break a line.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "mail/dsn.h"
#include "mail/qfile.h"

#define T_ARRIVAL 1796474000    /* Sat, 05 Dec 2026 12:33:20 +0000 */
#define T_NOW     1796474402
#define BOUNDARY  "1DEF.1796474402/mx.example.test"

static const char orig_msg[] = "Subject: hi\nFrom: a@b\n\nbody\n";

static struct dsn_msg msg(enum dsn_action a, const struct dsn_rcpt *r, int n)
{
    struct dsn_msg d = {
        .action = a, .hostname = "mx.example.test", .to = "alice@example.test",
        .queue_id = "1ABC", .message_id = "1DEF.dsn@mx.example.test", .boundary = BOUNDARY,
        .envid = "", .arrival = T_ARRIVAL, .now = T_NOW, .retry_until = T_ARRIVAL + 432000,
        .full = 0, .rcpts = r, .nrcpts = n,
    };
    return d;
}

static void expect(const struct dsn_msg *d, const char *orig, size_t olen, const char *want)
{
    buf_t o;
    buf_init(&o, 256);
    dsn_format(&o, d, orig, olen);
    buf_append_char(&o, '\0');
    assert_string_equal(o.data, want);
    buf_free(&o);
}

#define HEAD(subject) \
    "From: Mail Delivery System <MAILER-DAEMON@mx.example.test>\n" \
    "To: <alice@example.test>\n" \
    "Subject: " subject "\n" \
    "Date: Sat, 05 Dec 2026 12:40:02 +0000\n" \
    "Message-ID: <1DEF.dsn@mx.example.test>\n" \
    "Auto-Submitted: auto-replied\n" \
    "MIME-Version: 1.0\n" \
    "Content-Type: multipart/report; report-type=delivery-status;\n" \
    "\tboundary=\"" BOUNDARY "\"\n" \
    "\n" \
    "This is a MIME-encapsulated message.\n" \
    "\n" \
    "--" BOUNDARY "\n" \
    "Content-Description: Notification\n" \
    "Content-Type: text/plain; charset=utf-8\n" \
    "\n" \
    "This is the mail system at host mx.example.test.\n" \
    "\n"

#define STATUS_PART \
    "--" BOUNDARY "\n" \
    "Content-Description: Delivery report\n" \
    "Content-Type: message/delivery-status\n" \
    "\n" \
    "Reporting-MTA: dns; mx.example.test\n" \
    "X-Postern-Queue-ID: 1ABC\n"

static void test_failed(void **st)
{
    (void)st;
    struct dsn_rcpt r[2] = {
        { "bob@example.test", "rfc822;Bob@Example.test", "5.1.1",
          "550 5.1.1 <bob@example.test>: no such user", T_NOW - 2, 0 },
        { "c#d@example.test", "", "5.1.3", "bad address syntax for a local mailbox", T_NOW - 1, 0 },
    };
    struct dsn_msg d = msg(DSN_FAILED, r, 2);
    d.envid = "env-1";
    expect(&d, orig_msg, dsn_header_len(orig_msg, strlen(orig_msg)),
        HEAD("Undelivered Mail Returned to Sender")
        "I'm sorry to have to inform you that your message could not be\n"
        "delivered to one or more recipients.\n"
        "\n"
        "<bob@example.test>: 550 5.1.1 <bob@example.test>: no such user\n"
        "<c#d@example.test>: bad address syntax for a local mailbox\n"
        "\n"
        STATUS_PART
        "Original-Envelope-Id: env-1\n"
        "Arrival-Date: Sat, 05 Dec 2026 12:33:20 +0000\n"
        "\n"
        "Original-Recipient: rfc822;Bob@Example.test\n"
        "Final-Recipient: rfc822; bob@example.test\n"
        "Action: failed\n"
        "Status: 5.1.1\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <bob@example.test>: no such user\n"
        "Last-Attempt-Date: Sat, 05 Dec 2026 12:40:00 +0000\n"
        "\n"
        "Final-Recipient: rfc822; c#d@example.test\n"
        "Action: failed\n"
        "Status: 5.1.3\n"
        "Diagnostic-Code: X-Postern; bad address syntax for a local mailbox\n"
        "Last-Attempt-Date: Sat, 05 Dec 2026 12:40:01 +0000\n"
        "\n"
        "--" BOUNDARY "\n"
        "Content-Description: Undelivered Message Headers\n"
        "Content-Type: text/rfc822-headers\n"
        "\n"
        "Subject: hi\n"
        "From: a@b\n"
        "\n"
        "\n"
        "--" BOUNDARY "--\n");
}

static void test_delayed(void **st)
{
    (void)st;
    struct dsn_rcpt r[1] = {
        { "dave@example.test", "bare@example.test", "4.2.0", "mailbox not writable", T_NOW, 0 },
    };
    struct dsn_msg d = msg(DSN_DELAYED, r, 1);
    expect(&d, "Subject: x", 10,
        HEAD("Delayed Mail (still being retried)")
        "Your message could not be delivered yet to one or more recipients.\n"
        "It will be retried until it is delivered or it expires; you do not\n"
        "need to send it again.\n"
        "It will be tried until Thu, 10 Dec 2026 12:33:20 +0000.\n"
        "\n"
        "<dave@example.test>: mailbox not writable\n"
        "\n"
        STATUS_PART
        "Arrival-Date: Sat, 05 Dec 2026 12:33:20 +0000\n"
        "\n"
        "Original-Recipient: rfc822;bare@example.test\n"
        "Final-Recipient: rfc822; dave@example.test\n"
        "Action: delayed\n"
        "Status: 4.2.0\n"
        "Diagnostic-Code: X-Postern; mailbox not writable\n"
        "Last-Attempt-Date: Sat, 05 Dec 2026 12:40:02 +0000\n"
        "Will-Retry-Until: Thu, 10 Dec 2026 12:33:20 +0000\n"
        "\n"
        "--" BOUNDARY "\n"
        "Content-Description: Message Headers\n"
        "Content-Type: text/rfc822-headers\n"
        "\n"
        "Subject: x\n"
        "\n"
        "--" BOUNDARY "--\n");
}

static void test_delivered_full(void **st)
{
    (void)st;
    struct dsn_rcpt r[1] = { { "bob@example.test", "", "2.0.0", "delivered to maildir", 0, 0 } };
    struct dsn_msg d = msg(DSN_DELIVERED, r, 1);
    d.full = 1;
    expect(&d, orig_msg, strlen(orig_msg),
        HEAD("Successful Mail Delivery Report")
        "Your message was delivered to the recipients below, as you asked\n"
        "with NOTIFY=SUCCESS.\n"
        "\n"
        "<bob@example.test>: delivered to maildir\n"
        "\n"
        STATUS_PART
        "Arrival-Date: Sat, 05 Dec 2026 12:33:20 +0000\n"
        "\n"
        "Final-Recipient: rfc822; bob@example.test\n"
        "Action: delivered\n"
        "Status: 2.0.0\n"
        "\n"
        "--" BOUNDARY "\n"
        "Content-Description: Message\n"
        "Content-Type: message/rfc822\n"
        "\n"
        "Subject: hi\n"
        "From: a@b\n"
        "\n"
        "body\n"
        "\n"
        "--" BOUNDARY "--\n");
}

/* A next hop without DSN took one of two NOTIFY=SUCCESS recipients:
 * Action: relayed for it, with the explanation (RFC 3461 5.2.2.1). */
static void test_relayed(void **st)
{
    (void)st;
    struct dsn_rcpt r[2] = {
        { "far@remote.test", "", "2.0.0", "250 2.0.0 queued as X1", 0, 1 },
        { "bob@example.test", "", "2.0.0", "delivered to maildir", 0, 0 },
    };
    struct dsn_msg d = msg(DSN_DELIVERED, r, 2);
    expect(&d, orig_msg, strlen(orig_msg),
        HEAD("Successful Mail Delivery Report")
        "Your message was delivered to the recipients below, as you asked\n"
        "with NOTIFY=SUCCESS.\n"
        "\n"
        "Recipients marked \"relayed\" were handed to a mail system that\n"
        "does not send delivery reports: you may still hear of a failure\n"
        "from there, but of no success.\n"
        "\n"
        "<far@remote.test>: 250 2.0.0 queued as X1\n"
        "<bob@example.test>: delivered to maildir\n"
        "\n"
        STATUS_PART
        "Arrival-Date: Sat, 05 Dec 2026 12:33:20 +0000\n"
        "\n"
        "Final-Recipient: rfc822; far@remote.test\n"
        "Action: relayed\n"
        "Status: 2.0.0\n"
        "\n"
        "Final-Recipient: rfc822; bob@example.test\n"
        "Action: delivered\n"
        "Status: 2.0.0\n"
        "\n"
        "--" BOUNDARY "\n"
        "Content-Description: Message Headers\n"
        "Content-Type: text/rfc822-headers\n"
        "\n"
        "Subject: hi\n"
        "From: a@b\n"
        "\n"
        "body\n"
        "\n"
        "--" BOUNDARY "--\n");
}

/* CR/LF in envelope text (ENVID, reasons, addresses) never starts a line. */
static void test_no_line_injection(void **st)
{
    (void)st;
    struct dsn_rcpt r[1] = { { "a\n@b", "", "5.0.0", "x\r\nBcc: evil", 0, 0 } };
    struct dsn_msg d = msg(DSN_FAILED, r, 1);
    d.envid = "e\nX-Injected: 1";
    d.to = "s\r\nBcc: evil";
    buf_t o;
    buf_init(&o, 256);
    dsn_format(&o, &d, "", 0);
    buf_append_char(&o, '\0');
    assert_null(strstr(o.data, "\nBcc:"));
    assert_null(strstr(o.data, "\nX-Injected:"));
    assert_non_null(strstr(o.data, "Original-Envelope-Id: e X-Injected: 1\n"));
    assert_non_null(strstr(o.data, "To: <s  Bcc: evil>\n"));
    buf_free(&o);
}

static void test_wanted(void **st)
{
    (void)st;
    assert_true(dsn_wanted(NOTIFY_NONE, DSN_FAILED));
    assert_true(dsn_wanted(NOTIFY_NONE, DSN_DELAYED));
    assert_false(dsn_wanted(NOTIFY_NONE, DSN_DELIVERED));
    assert_false(dsn_wanted(NOTIFY_NEVER, DSN_FAILED));
    assert_false(dsn_wanted(NOTIFY_NEVER, DSN_DELAYED));
    assert_true(dsn_wanted(NOTIFY_SUCCESS, DSN_DELIVERED));
    assert_false(dsn_wanted(NOTIFY_SUCCESS, DSN_FAILED));
    assert_false(dsn_wanted(NOTIFY_SUCCESS, DSN_DELAYED));
    assert_true(dsn_wanted(NOTIFY_FAILURE | NOTIFY_DELAY, DSN_DELAYED));
    assert_false(dsn_wanted(NOTIFY_FAILURE, DSN_DELAYED));
    assert_true(dsn_wanted(NOTIFY_FAILURE, DSN_FAILED));
}

static void test_date_and_headers(void **st)
{
    (void)st;
    char b[64];
    dsn_date(b, sizeof(b), 0);
    assert_string_equal(b, "Thu, 01 Jan 1970 00:00:00 +0000");
    dsn_date(b, sizeof(b), T_ARRIVAL);
    assert_string_equal(b, "Sat, 05 Dec 2026 12:33:20 +0000");
    assert_int_equal(dsn_header_len(orig_msg, strlen(orig_msg)), 23);   /* through the blank line */
    assert_int_equal(dsn_header_len("A: b\n", 5), 5);                   /* never ends: all */
    assert_int_equal(dsn_header_len("A: b\nnot a field\n", 17), 5);      /* ends at a non-field */
    assert_int_equal(dsn_header_len("", 0), 0);
    assert_string_equal(dsn_subject(DSN_FAILED), "Undelivered Mail Returned to Sender");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failed),
        cmocka_unit_test(test_relayed),
        cmocka_unit_test(test_delayed),
        cmocka_unit_test(test_delivered_full),
        cmocka_unit_test(test_no_line_injection),
        cmocka_unit_test(test_wanted),
        cmocka_unit_test(test_date_and_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
