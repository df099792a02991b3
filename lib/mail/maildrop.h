/*
 * maildrop.h - the format of a file in <spool>/maildrop/: a message
 * submitted by sendmail(1) through the setgid postdrop helper, waiting for
 * pickup(8) to hand it to cleanup.
 *
 * Who writes what: sendmail builds the envelope and content records and
 * pipes them to postdrop; postdrop writes its own VERSION and USER records
 * first (the uid from getuid(), never from the caller), copies the caller's
 * records after checking their framing (md_rec_next), and renames the file
 * into place only once END arrived. pickup trusts none of it: the file is
 * owned by the submitting user, who may change it at any time, so every
 * record is checked again here (md_check) and the uid is the file's owner.
 *
 * Record: u8 type (an ASCII letter), u32 BE payload length, payload (at
 * most MD_REC_MAX bytes). Order, checked by md_check:
 *   V "POSTERN-MAILDROP 1"       once, first           (postdrop)
 *   U "<uid> <login>"            once, second          (postdrop)
 *   S sender ("" = <>)           once                  (sendmail, then:)
 *   R recipient                  1..MD_RCPT_MAX
 *   N DSN NOTIFY bits (decimal)  at most once, applies to every recipient
 *   E DSN RET: 0 none, 1 FULL, 2 HDRS; at most once
 *   B body type: 7BIT or 8BITMIME; at most once
 *   M content, LF line ends (any number, each <= MD_REC_MAX)
 *   Z total content length (decimal), once, last; nothing may follow.
 * Pure functions: no I/O, no allocation (the fuzz target calls md_parse).
 */
#ifndef POSTERN_MAILDROP_H
#define POSTERN_MAILDROP_H

#include <stddef.h>
#include <stdint.h>
#include "util/buf.h"

#define MD_MAGIC      "POSTERN-MAILDROP 1"
#define MD_REC_MAX    65536u        /* payload bytes of one record */
#define MD_HDR_LEN    5             /* type + length */
#define MD_RCPT_MAX   10000         /* recipients per submitted message */
#define MD_TEXT_MAX   512           /* sender, recipient, login */

enum md_type {
    MD_VERSION = 'V', MD_USER = 'U', MD_SENDER = 'S', MD_RCPT = 'R', MD_NOTIFY = 'N',
    MD_RET = 'E', MD_BODY = 'B', MD_CONTENT = 'M', MD_END = 'Z',
};

struct md_rec {
    int type;
    const unsigned char *p;
    size_t len;
};

/* Framing only: the record at p. >0 = a whole record of that many bytes
 * (header included) decoded into *r; 0 = more bytes needed; -1 = not a
 * record (unknown type, payload over MD_REC_MAX), reason in err. */
long md_rec_next(const unsigned char *p, size_t avail, struct md_rec *r, char *err,
                 size_t errlen);

/* Append one record to out (n <= MD_REC_MAX: the caller splits content). */
void md_put(buf_t *out, int type, const void *p, size_t n);
void md_put_str(buf_t *out, int type, const char *s);

/* What md_check learned; the strings point into the records checked. */
struct md_state {
    int phase;                  /* internal: where in the order we are */
    unsigned seen;              /* internal: once-only records seen */
    uint32_t uid;
    char login[MD_TEXT_MAX + 1];
    uint32_t notify, ret;
    int body_8bit;
    int nrcpt;
    uint64_t content;           /* content bytes so far */
    int done;                   /* END seen and valid */
};

void md_state_init(struct md_state *st);
/* Check record r in the order above (from_user: V and U are refused, as
 * postdrop writes them itself). Sender and recipients must be mailboxes
 * (RFC 5321 syntax, UTF-8 allowed; the sender may be empty), texts NUL- and
 * control-free. 0 = fine, -1 = refused with the reason in err. */
int md_check(struct md_state *st, const struct md_rec *r, int from_user, char *err,
             size_t errlen);

/* A whole file in memory: every record framed and checked, END last and
 * nothing after it. cb (may be NULL) sees each valid record in order; a
 * non-zero return from it stops with that value. 0 = valid, -1 = refused
 * (err), else cb's value. */
int md_parse(const unsigned char *p, size_t len, struct md_state *st,
             int (*cb)(const struct md_rec *r, void *arg), void *arg, char *err,
             size_t errlen);

#endif
