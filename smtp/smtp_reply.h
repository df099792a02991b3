/*
 * smtp_reply.h - the SMTP client's reply parser: multiline replies
 * ("250-a" ... "250 z") assembled line by line, bounded, and the EHLO
 * capabilities read from a finished 250 reply.
 *
 * Self-contained (libc only): the libFuzzer harness
 * t/fuzz/fuzz_smtp_reply.c compiles this file directly. Must never accept
 * a reply whose lines disagree on the code, a line over SMTP_REPLY_LINE_MAX,
 * more than SMTP_REPLY_LINES lines or SMTP_REPLY_MAX text bytes: the peer
 * is then broken or hostile and the caller drops the connection.
 */
#ifndef POSTERN_SMTP_REPLY_H
#define POSTERN_SMTP_REPLY_H

#include <stddef.h>
#include <stdint.h>

#define SMTP_REPLY_LINE_MAX 2048    /* one line without CRLF (RFC 5321: 512) */
#define SMTP_REPLY_LINES    200     /* lines in one reply */
#define SMTP_REPLY_MAX      16384   /* text bytes kept in one reply */

struct smtp_reply {
    int  code;                      /* 250; 0 = nothing parsed yet */
    char enh[16];                   /* enhanced code "5.1.1" from the first line, or "" */
    int  nlines;
    size_t len;                     /* bytes used in text */
    char text[SMTP_REPLY_MAX + 1];  /* lines' text (after "ddd-"), '\n'-separated */
};

void smtp_reply_init(struct smtp_reply *r);
/* Feed one line (CRLF or LF already stripped; a trailing CR is ignored).
 * 0 = more lines follow, 1 = the reply is complete, -1 = malformed
 * (why in err). After 1 or -1 call smtp_reply_init before the next. */
int  smtp_reply_line(struct smtp_reply *r, const char *line, size_t len,
                     char *err, size_t errlen);
/* The reply for a log line or a DSN reason: "550 5.1.1 text text" (lines
 * joined with spaces, non-printable bytes as '?'). */
void smtp_reply_format(const struct smtp_reply *r, char *out, size_t size);

/* EHLO capabilities */
enum {
    EXT_PIPELINING = 1, EXT_SIZE = 2, EXT_8BITMIME = 4, EXT_SMTPUTF8 = 8, EXT_DSN = 16,
    EXT_STARTTLS = 32, EXT_AUTH = 64, EXT_ENHANCEDSTATUSCODES = 128,
};
enum { AUTHM_PLAIN = 1, AUTHM_LOGIN = 2 };
struct smtp_ext {
    unsigned flags;                 /* EXT_* */
    uint64_t size;                  /* SIZE limit, 0 = none announced */
    unsigned auth;                  /* AUTHM_* offered */
};
/* Read the keywords of a complete 250 EHLO reply (the first line is the
 * greeting and is skipped). Unknown keywords are ignored. */
void smtp_ext_parse(const struct smtp_reply *r, struct smtp_ext *e);

#endif
