/*
 * dsn.c - the text of delivery status notifications (see dsn.h). Pure
 * formatting: every date, id and name comes from the caller.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "mail/dsn.h"
#include "mail/hdr.h"
#include "mail/qfile.h"

void dsn_names(char *msgid, size_t msize, char *boundary, size_t bsize, const char *id,
               int64_t now, const char *hostname)
{
    snprintf(msgid, msize, "%s.dsn@%s", id, hostname);
    snprintf(boundary, bsize, "%s.%lld/%s", id, (long long)now, hostname);
}

const char *dsn_subject(enum dsn_action a)
{
    switch (a) {
    case DSN_DELAYED:   return "Delayed Mail (still being retried)";
    case DSN_DELIVERED: return "Successful Mail Delivery Report";
    default:            return "Undelivered Mail Returned to Sender";
    }
}

static const char *action_word(enum dsn_action a)
{
    switch (a) {
    case DSN_DELAYED:   return "delayed";
    case DSN_DELIVERED: return "delivered";
    default:            return "failed";
    }
}

int dsn_wanted(uint32_t notify, enum dsn_action a)
{
    if (notify & NOTIFY_NEVER)
        return 0;
    switch (a) {
    case DSN_FAILED:    return notify == NOTIFY_NONE || (notify & NOTIFY_FAILURE);
    case DSN_DELAYED:   return notify == NOTIFY_NONE || (notify & NOTIFY_DELAY);
    case DSN_DELIVERED: return (notify & NOTIFY_SUCCESS) != 0;
    }
    return 0;
}

void dsn_date(char *out, size_t size, int64_t t)
{
    static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    time_t tt = (time_t)t;
    struct tm tm;
    if (gmtime_r(&tt, &tm) == NULL) {
        str_copy(out, size, "Thu, 01 Jan 1970 00:00:00 +0000");
        return;
    }
    snprintf(out, size, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday % 7],
             tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
             tm.tm_sec);
}

size_t dsn_header_len(const char *p, size_t n)
{
    struct hdr_scan s;
    hdr_scan_init(&s);
    hdr_scan_feed(&s, p, n);
    if (s.end == HDR_END_NONE)
        hdr_scan_finish(&s);
    return s.body_off < n ? (size_t)s.body_off : n;
}

/* Append s with CR and LF flattened to spaces: envelope text never breaks
 * a header line. */
static void put_text(buf_t *out, const char *s)
{
    for (; *s; s++)
        buf_append_char(out, (*s == '\r' || *s == '\n') ? ' ' : *s);
}

/* "Name: value\n" with value flattened. */
static void put_field(buf_t *out, const char *name, const char *value)
{
    buf_append_str(out, name);
    buf_append_str(out, ": ");
    put_text(out, value);
    buf_append_char(out, '\n');
}

static void put_date_field(buf_t *out, const char *name, int64_t t)
{
    char date[64];
    dsn_date(date, sizeof(date), t);
    put_field(out, name, date);
}

static void put_header(buf_t *out, const struct dsn_msg *d)
{
    buf_append_str(out, "From: Mail Delivery System <MAILER-DAEMON@");
    put_text(out, d->hostname);
    buf_append_str(out, ">\nTo: <");
    put_text(out, d->to);
    buf_append_str(out, ">\n");
    put_field(out, "Subject", dsn_subject(d->action));
    put_date_field(out, "Date", d->now);
    buf_append_str(out, "Message-ID: <");
    put_text(out, d->message_id);
    buf_append_str(out, ">\n");
    put_field(out, "Auto-Submitted", "auto-replied");
    put_field(out, "MIME-Version", "1.0");
    buf_append_str(out, "Content-Type: multipart/report; report-type=delivery-status;\n"
                        "\tboundary=\"");
    put_text(out, d->boundary);
    buf_append_str(out, "\"\n\nThis is a MIME-encapsulated message.\n\n");
}

static void part_begin(buf_t *out, const struct dsn_msg *d, const char *desc, const char *type)
{
    buf_append_str(out, "--");
    put_text(out, d->boundary);
    buf_append_char(out, '\n');
    put_field(out, "Content-Description", desc);
    put_field(out, "Content-Type", type);
    buf_append_char(out, '\n');
}

static const char *intro(enum dsn_action a)
{
    switch (a) {
    case DSN_DELAYED:
        return "Your message could not be delivered yet to one or more recipients.\n"
               "It will be retried until it is delivered or it expires; you do not\n"
               "need to send it again.\n";
    case DSN_DELIVERED:
        return "Your message was delivered to the recipients below, as you asked\n"
               "with NOTIFY=SUCCESS.\n";
    default:
        return "I'm sorry to have to inform you that your message could not be\n"
               "delivered to one or more recipients.\n";
    }
}

static int any_relayed(const struct dsn_msg *d)
{
    for (int i = 0; i < d->nrcpts; i++)
        if (d->rcpts[i].relayed)
            return 1;
    return 0;
}

static void put_notification(buf_t *out, const struct dsn_msg *d)
{
    part_begin(out, d, "Notification", "text/plain; charset=utf-8");
    buf_append_str(out, "This is the mail system at host ");
    put_text(out, d->hostname);
    buf_append_str(out, ".\n\n");
    buf_append_str(out, intro(d->action));
    if (d->action == DSN_DELAYED) {
        char date[64];
        dsn_date(date, sizeof(date), d->retry_until);
        buf_printf(out, "It will be tried until %s.\n", date);
    }
    if (d->action == DSN_DELIVERED && any_relayed(d))
        buf_append_str(out, "\nRecipients marked \"relayed\" were handed to a mail system that\n"
                            "does not send delivery reports: you may still hear of a failure\n"
                            "from there, but of no success.\n");
    buf_append_char(out, '\n');
    for (int i = 0; i < d->nrcpts; i++) {
        const struct dsn_rcpt *r = &d->rcpts[i];
        buf_append_char(out, '<');
        put_text(out, r->addr);
        buf_append_str(out, ">: ");
        put_text(out, r->reason[0] ? r->reason : action_word(d->action));
        buf_append_char(out, '\n');
    }
    buf_append_char(out, '\n');
}

/* An SMTP reply ("550 5.1.1 ...") keeps the smtp type; any other text is
 * our own local agent's wording. */
static int is_smtp_reply(const char *s)
{
    return s[0] >= '2' && s[0] <= '5' && s[1] >= '0' && s[1] <= '9' && s[2] >= '0' &&
           s[2] <= '9' && (s[3] == ' ' || s[3] == '-' || s[3] == '\0');
}

static void put_rcpt_status(buf_t *out, const struct dsn_msg *d, const struct dsn_rcpt *r)
{
    buf_append_char(out, '\n');
    if (r->orig[0]) {
        buf_append_str(out, "Original-Recipient: ");
        if (strchr(r->orig, ';') == NULL)
            buf_append_str(out, "rfc822;");
        put_text(out, r->orig);
        buf_append_char(out, '\n');
    }
    buf_append_str(out, "Final-Recipient: rfc822; ");
    put_text(out, r->addr);
    buf_append_char(out, '\n');
    put_field(out, "Action", r->relayed && d->action == DSN_DELIVERED ? "relayed"
                                                                      : action_word(d->action));
    put_field(out, "Status", r->status);
    if (r->reason[0] && d->action != DSN_DELIVERED) {
        buf_append_str(out, is_smtp_reply(r->reason) ? "Diagnostic-Code: smtp; "
                                                     : "Diagnostic-Code: X-Postern; ");
        put_text(out, r->reason);
        buf_append_char(out, '\n');
    }
    if (r->last_try > 0)
        put_date_field(out, "Last-Attempt-Date", r->last_try);
    if (d->action == DSN_DELAYED)
        put_date_field(out, "Will-Retry-Until", d->retry_until);
}

static void put_status(buf_t *out, const struct dsn_msg *d)
{
    part_begin(out, d, "Delivery report", "message/delivery-status");
    buf_append_str(out, "Reporting-MTA: dns; ");
    put_text(out, d->hostname);
    buf_append_char(out, '\n');
    put_field(out, "X-Postern-Queue-ID", d->queue_id);
    if (d->envid[0])
        put_field(out, "Original-Envelope-Id", d->envid);
    put_date_field(out, "Arrival-Date", d->arrival);
    for (int i = 0; i < d->nrcpts; i++)
        put_rcpt_status(out, d, &d->rcpts[i]);
    buf_append_char(out, '\n');
}

void dsn_format(buf_t *out, const struct dsn_msg *d, const char *orig, size_t olen)
{
    put_header(out, d);
    put_notification(out, d);
    put_status(out, d);
    int failed = d->action == DSN_FAILED;
    if (d->full)
        part_begin(out, d, failed ? "Undelivered Message" : "Message", "message/rfc822");
    else
        part_begin(out, d, failed ? "Undelivered Message Headers" : "Message Headers",
                   "text/rfc822-headers");
    buf_append(out, orig, olen);
    if (olen > 0 && orig[olen - 1] != '\n')
        buf_append_char(out, '\n');
    buf_append_str(out, "\n--");
    put_text(out, d->boundary);
    buf_append_str(out, "--\n");
}
