/*
 * smtp_data.h - the DATA phase decoder: a byte-at-a-time state machine (runs
 * of plain bytes are handled at once), pure (no I/O), used by smtpd and
 * unit-tested/fuzzed on its own.
 *
 * Rules (RFC 5321 4.1.1.4, 4.5.2; TESTING.md checklist items 1 and 4):
 *  - only <CRLF>.<CRLF> ends the data (the start of DATA counts as after a
 *    CRLF); a bare CR or bare LF never ends it, "\n.\n" and "\r\n.\n" are
 *    content;
 *  - a leading dot on a line is removed (dot-unstuffing);
 *  - CRLF becomes LF in the output;
 *  - a bare CR or bare LF, a NUL, a line over 1000 octets (CRLF included)
 *    or a decoded size over max_size marks the message refused
 *    (SMTP_DATA_E_*); output stops at the first problem but the input is
 *    still consumed up to the terminator so the session stays in sync.
 * Input may be split at any byte boundary between calls.
 */
#ifndef POSTERN_SMTP_DATA_H
#define POSTERN_SMTP_DATA_H

#include <stddef.h>
#include <stdint.h>
#include "buf.h"

#define SMTP_DATA_LINE_MAX 1000     /* octets per text line, CRLF included */

enum {
    SMTP_DATA_E_BARE    = 1,    /* bare CR or bare LF */
    SMTP_DATA_E_NUL     = 2,
    SMTP_DATA_E_LINE    = 4,    /* line over SMTP_DATA_LINE_MAX */
    SMTP_DATA_E_SIZE    = 8,    /* decoded size over max_size */
};

struct smtp_data {
    int      state;
    size_t   linelen;       /* raw octets on the current line */
    uint64_t size;          /* decoded octets (LF line ends), counted even after errors */
    uint64_t max_size;      /* 0 = unlimited */
    unsigned errors;        /* SMTP_DATA_E_* bits */
    int      done;          /* terminator seen */
};

void smtp_data_init(struct smtp_data *d, uint64_t max_size);
/* Decode up to n input bytes, appending content to out while no error is
 * flagged. Returns the bytes consumed: all n, or fewer when the terminator
 * ended inside them (d->done set; the rest belongs to the next command). */
size_t smtp_data_feed(struct smtp_data *d, const unsigned char *p, size_t n, buf_t *out);

/* ---- BDAT chunks (RFC 3030, without BINARYMIME) ---------------------------
 * The same struct decodes the content of BDAT chunks: every byte counts, no
 * dot-unstuffing and no terminator; CRLF becomes LF; a bare CR or LF, a NUL,
 * a long line or a size over max_size set the same SMTP_DATA_E_* bits (the
 * message is refused at BDAT LAST). A CRLF may be split across chunks. */
void smtp_bdat_init(struct smtp_data *d, uint64_t max_size);
/* Decode all n bytes of a chunk (or part of one). */
void smtp_bdat_feed(struct smtp_data *d, const unsigned char *p, size_t n, buf_t *out);
/* End of the last chunk: a pending CR is bare; a last line without a line
 * end gets "\n" (the queue file holds whole lines, like after DATA).
 * Sets d->done. */
void smtp_bdat_end(struct smtp_data *d, buf_t *out);

#endif
