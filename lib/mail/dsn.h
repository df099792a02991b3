/*
 * dsn.h - delivery status notifications (RFC 3464 / RFC 3462): the text of
 * a bounce, a delay warning or a success report, built from plain values.
 *
 * Used by qmgr (qmgr/qmgr_bounce.c), which gathers the recipients of one
 * event, reads the original message and queues what dsn_format() returns
 * as a new message from <>. Pure: no clock, no file, no hostname lookup
 * (the caller passes dates, ids and the boundary), so t/unit/test_dsn.c can
 * compare whole reports byte for byte. Output has LF line ends, like every
 * queue file's content. Must never put CR, LF or NUL from envelope data
 * into a header line (they become spaces).
 */
#ifndef POSTERN_DSN_H
#define POSTERN_DSN_H

#include <stddef.h>
#include <stdint.h>
#include "util/buf.h"

#define DSN_HDRS_MAX  (256 * 1024)        /* header section copied at most */
#define DSN_FULL_MAX  (10 * 1024 * 1024)  /* RET=FULL above this: headers only */

enum dsn_action { DSN_FAILED = 0, DSN_DELAYED, DSN_DELIVERED };

struct dsn_rcpt {
    const char *addr;        /* Final-Recipient */
    const char *orig;        /* ORCPT as stored ("rfc822;a@b"), "" = none */
    const char *status;      /* enhanced status "5.1.1" */
    const char *reason;      /* the agent's or remote server's text, "" = none */
    int64_t last_try;        /* unix seconds, 0 = never tried */
    int relayed;             /* DSN_DELIVERED only: handed to a next hop that does not
                              * send reports itself: Action: relayed (RFC 3461 5.2.2.1) */
};

struct dsn_msg {
    enum dsn_action action;
    const char *hostname;    /* Reporting-MTA, MAILER-DAEMON@ */
    const char *to;          /* the header To: (original sender or postmaster) */
    const char *queue_id;    /* of the original message */
    const char *message_id;  /* of the report, without <> */
    const char *boundary;
    const char *envid;       /* ENVID, "" = none */
    int64_t arrival;         /* unix seconds of the original */
    int64_t now;             /* Date: */
    int64_t retry_until;     /* delayed: Will-Retry-Until */
    int full;                /* RET=FULL: message/rfc822, else text/rfc822-headers */
    const struct dsn_rcpt *rcpts;
    int nrcpts;
};

/* Append the whole report to out: header, notification, delivery-status
 * and the original (orig: the header section, or the whole message when
 * d->full; LF line ends). */
void dsn_format(buf_t *out, const struct dsn_msg *d, const char *orig, size_t olen);

/* Does a recipient with these NOTIFY bits (lib/mail/qfile.h) want a report
 * of action a? No NOTIFY: failures and delays (RFC 3461 4.1 lets the MTA
 * choose), never success. NEVER: nothing. */
int dsn_wanted(uint32_t notify, enum dsn_action a);

/* RFC 5322 date in UTC ("Sat, 05 Dec 2026 12:50:58 +0000"). */
void dsn_date(char *out, size_t size, int64_t t);

const char *dsn_subject(enum dsn_action a);

/* A report's Message-ID (without <>) and MIME boundary, named after the
 * report's own fresh queue id (qmgr's and pickup's reports alike). */
void dsn_names(char *msgid, size_t msize, char *boundary, size_t bsize, const char *id,
               int64_t now, const char *hostname);

/* Length of the header section of content p[0..n) including the blank line
 * that ends it (lib/mail/hdr.h rules); n when it never ends. */
size_t dsn_header_len(const char *p, size_t n);

#endif
