/*
 * mime8.h - 8-bit to 7-bit MIME downgrade (RFC 6152 section 3, RFC 2045):
 * what the smtp agent sends to a next hop that does not offer 8BITMIME.
 *
 * Two passes over the same content (LF line ends, as in the queue file),
 * each fed in chunks of any size:
 *   1. mime8_scan*: walks the MIME structure (multipart bodies and
 *      message/rfc822 parts, at most MIME8_MAX_DEPTH deep) and records, per
 *      part, its Content-Type kind, its Content-Transfer-Encoding and
 *      whether its body holds 8-bit bytes. mime8_scan_end says whether a
 *      7-bit form exists: not when a header holds an 8-bit byte (that needs
 *      SMTPUTF8 or RFC 2047), a base64 / quoted-printable / unknown-encoded
 *      part, a preamble or an epilogue holds one, or 8-bit data sits deeper
 *      than the bounds (MIME8_MAX_DEPTH, MIME8_MAX_PARTS).
 *   2. mime8_convert*: the same walk again, writing the 7-bit form: every
 *      leaf part labelled 8bit or binary, or unlabelled / 7bit but holding
 *      8-bit bytes, gets "Content-Transfer-Encoding: quoted-printable" in
 *      place of its old CTE field (at the end of its header) and a
 *      quoted-printable body (lines <= 76 octets); a multipart or message
 *      part labelled 8bit or binary is relabelled 7bit (as Postfix does);
 *      a message header (the top one, or a message/rfc822 part's) gains
 *      "MIME-Version: 1.0" when its own body is converted and it had none. Everything else passes byte for byte.
 *
 * Pure: no I/O, no allocation beyond the state and the caller's buf_t.
 * Used by the smtp agent (smtp/smtp_mime.c); the fuzz target
 * t/fuzz/fuzz_mime8.c and t/unit/test_mime8.c drive it directly. Must never
 * read past what it is given or grow without bound on any input.
 */
#ifndef POSTERN_MIME8_H
#define POSTERN_MIME8_H

#include <stddef.h>
#include "util/buf.h"

#define MIME8_MAX_DEPTH 20      /* nested multipart / message levels walked */
#define MIME8_MAX_PARTS 4096    /* parts tracked; 8-bit data past them: no 7-bit form */

struct mime8;

struct mime8 *mime8_new(void);
void mime8_free(struct mime8 *m);

/* Pass 1. */
void mime8_scan(struct mime8 *m, const char *p, size_t n);
/* End of pass 1: 1 a conversion is needed and possible, 0 nothing to
 * convert (the content is 7-bit already), -1 no 7-bit form (why set). */
int mime8_scan_end(struct mime8 *m, char *why, size_t whylen);

/* Pass 2 (only after mime8_scan_end returned 1): append the 7-bit form of
 * p[0..n) to out. */
void mime8_convert(struct mime8 *m, const char *p, size_t n, buf_t *out);
void mime8_convert_end(struct mime8 *m, buf_t *out);

#endif
