/*
 * smtp_data.h - the DATA phase decoder: a byte-at-a-time state machine (runs
 * of plain bytes are handled at once), pure (no I/O), used by smtpd and
 * unit-tested/fuzzed on its own. It never holds a line: bytes are passed
 * to the output as they are decoded, however long the line.
 *
 * Rules (RFC 5321 4.1.1.4, 4.5.2; TESTING.md checklist items 1 and 4):
 *  - only <CRLF>.<CRLF> ends the data (the start of DATA counts as after a
 *    CRLF); a bare CR or bare LF never ends it, "\n.\n" and "\r\n.\n" are
 *    content;
 *  - a leading dot on a line is removed (dot-unstuffing);
 *  - CRLF becomes LF in the output;
 *  - a bare CR or bare LF, a NUL, a line longer than max_line (when not 0)
 *    or a size over max_size (when not 0) marks the message refused
 *    (SMTP_DATA_E_*); output stops at the first problem but the input is
 *    still consumed up to the terminator so the session stays in sync.
 * Input may be split at any byte boundary between calls.
 *
 * What is counted (the same octets as the ESMTP SIZE parameter, RFC 1870,
 * and as BDAT chunk sizes, RFC 3030): `size` is the message as transmitted
 * AFTER dot-unstuffing, WITH CRLF line ends - every content octet counts 1
 * and every CRLF counts 2; the stuffing dots and the final ".CRLF" do not
 * count. A message of exactly max_size such octets is accepted.
 * `linelen` is the length of the current line after unstuffing, its line
 * end excluded (limits.line_length = 998 is RFC 5322's limit).
 */
#ifndef POSTERN_SMTP_DATA_H
#define POSTERN_SMTP_DATA_H

#include <stddef.h>
#include <stdint.h>
#include "util/buf.h"

enum {
    SMTP_DATA_E_BARE    = 1,    /* bare CR or bare LF */
    SMTP_DATA_E_NUL     = 2,
    SMTP_DATA_E_LINE    = 4,    /* a line over max_line */
    SMTP_DATA_E_SIZE    = 8,    /* size over max_size */
};

struct smtp_data {
    int      state;
    uint64_t linelen;       /* octets on the current line, line end excluded */
    uint64_t size;          /* message octets, CRLF counted as 2 (see above) */
    uint64_t max_size;      /* 0 = unlimited */
    uint64_t max_line;      /* 0 = unlimited */
    unsigned errors;        /* SMTP_DATA_E_* bits */
    int      done;          /* terminator seen */
};

void smtp_data_init(struct smtp_data *d, uint64_t max_size, uint64_t max_line);
/* Decode up to n input bytes, appending content to out while no error is
 * flagged. Returns the bytes consumed: all n, or fewer when the terminator
 * ended inside them (d->done set; the rest belongs to the next command). */
size_t smtp_data_feed(struct smtp_data *d, const unsigned char *p, size_t n, buf_t *out);

/* ---- BDAT chunks (RFC 3030, without BINARYMIME) ---------------------------
 * The same struct decodes the content of BDAT chunks: every byte counts
 * (size = the sum of the chunk sizes), no dot-unstuffing and no terminator;
 * CRLF becomes LF; a bare CR or LF, a NUL, a long line or a size over
 * max_size set the same SMTP_DATA_E_* bits (the message is refused at BDAT
 * LAST). A CRLF may be split across chunks. */
void smtp_bdat_init(struct smtp_data *d, uint64_t max_size, uint64_t max_line);
/* Decode all n bytes of a chunk (or part of one). */
void smtp_bdat_feed(struct smtp_data *d, const unsigned char *p, size_t n, buf_t *out);
/* End of the last chunk: a pending CR is bare; a last line without a line
 * end gets "\n" (the queue file holds whole lines, like after DATA; that LF
 * was not transmitted and is not counted in size). Sets d->done. */
void smtp_bdat_end(struct smtp_data *d, buf_t *out);

/* The same decoders with every byte through the state machine (no run of
 * plain bytes at once): the reference the fuzzers hold the fast paths to. */
size_t smtp_data_feed_bytewise(struct smtp_data *d, const unsigned char *p, size_t n, buf_t *out);
void smtp_bdat_feed_bytewise(struct smtp_data *d, const unsigned char *p, size_t n, buf_t *out);

#endif
