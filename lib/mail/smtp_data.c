/*
 * smtp_data.c - DATA decoder (see smtp_data.h for the rules).
 *
 * States: BOL (at the start of a line: after CRLF or at the start of
 * data), TEXT (inside a line), CR (CR seen inside a line), DOT (a "." at
 * BOL), DOTCR (".\r" at BOL). Only DOTCR + LF ends the data, and DOT is only
 * entered from BOL, which only CRLF (or the start) reaches: a bare LF or
 * bare CR goes to TEXT, so "\n.\r\n" and "\r.\r\n" never end the message.
 *
 * Counting: a content octet counts 1 in size and in linelen (emit_text),
 * a CRLF counts 2 in size and ends the line (emit_eol); a stuffing dot, the
 * terminator and the LF smtp_bdat_end() adds count nothing. The counters
 * are 64-bit: no size a client can send makes them wrap.
 *
 * Speed: a run of plain bytes (no CR, LF, NUL) inside a line is found with
 * memchr and handled at once by plain_run(), which has exactly the effect of
 * feeding those bytes one by one (same output, size, linelen, errors);
 * only line ends, dots at the start of a line and odd bytes go through the
 * byte-at-a-time state machine. t/fuzz checks the result against the same
 * machine fed byte by byte (smtp_data_feed_bytewise, smtp_bdat_feed_bytewise).
 */
#include <string.h>
#include "mail/smtp_data.h"

enum { ST_BOL = 0, ST_TEXT, ST_CR, ST_DOT, ST_DOTCR };

void smtp_data_init(struct smtp_data *d, uint64_t max_size, uint64_t max_line)
{
    d->state = ST_BOL;
    d->linelen = 0;
    d->size = 0;
    d->max_size = max_size;
    d->max_line = max_line;
    d->errors = 0;
    d->done = 0;
}

/* One content octet (not a line end). */
static void emit_text(struct smtp_data *d, buf_t *out, char c)
{
    d->size++;
    d->linelen++;
    if (d->max_line && d->linelen > d->max_line)
        d->errors |= SMTP_DATA_E_LINE;
    if (d->max_size && d->size > d->max_size)
        d->errors |= SMTP_DATA_E_SIZE;
    if (d->errors == 0)
        buf_append_char(out, c);
}

/* A CRLF: two octets on the wire, one LF in the output. */
static void emit_eol(struct smtp_data *d, buf_t *out)
{
    d->size += 2;
    d->linelen = 0;
    if (d->max_size && d->size > d->max_size)
        d->errors |= SMTP_DATA_E_SIZE;
    if (d->errors == 0)
        buf_append_char(out, '\n');
}

/* A byte inside a line (state TEXT). */
static void text_byte(struct smtp_data *d, buf_t *out, unsigned char c)
{
    if (c == '\r') {
        d->state = ST_CR;
        return;
    }
    d->state = ST_TEXT;
    if (c == '\n')
        d->errors |= SMTP_DATA_E_BARE;
    else if (c == '\0')
        d->errors |= SMTP_DATA_E_NUL;
    emit_text(d, out, (char)c);
}

/* Length of the run of bytes at p that are neither CR, LF nor NUL. */
static size_t plain_span(const unsigned char *p, size_t n)
{
    const unsigned char *q = memchr(p, '\r', n);
    size_t k = q ? (size_t)(q - p) : n;
    if (k && (q = memchr(p, '\n', k)) != NULL)
        k = (size_t)(q - p);
    if (k && (q = memchr(p, '\0', k)) != NULL)
        k = (size_t)(q - p);
    return k;
}

/* k plain bytes inside a line (state TEXT after them): the same as k calls
 * of text_byte(), but one append. Byte m (0-based) is output iff no error
 * is flagged before it: no earlier error, linelen + m + 1 <= max_line and
 * size + m + 1 <= max_size (each when not 0). */
static void plain_run(struct smtp_data *d, buf_t *out, const unsigned char *p, size_t k)
{
    uint64_t e = 0;
    if (d->errors == 0) {
        e = k;
        if (d->max_line) {
            uint64_t lroom = d->linelen < d->max_line ? d->max_line - d->linelen : 0;
            if (e > lroom)
                e = lroom;
        }
        if (d->max_size) {
            uint64_t sroom = d->size < d->max_size ? d->max_size - d->size : 0;
            if (e > sroom)
                e = sroom;
        }
    }
    if (e)
        buf_append(out, p, (size_t)e);
    d->linelen += k;
    if (d->max_line && d->linelen > d->max_line)
        d->errors |= SMTP_DATA_E_LINE;
    d->size += k;
    if (d->max_size && d->size > d->max_size)
        d->errors |= SMTP_DATA_E_SIZE;
    d->state = ST_TEXT;
}

/* fast = 0: every byte through the state machine (the fuzzers' reference) */
static size_t data_feed(struct smtp_data *d, const unsigned char *p, size_t n, buf_t *out,
                        int fast)
{
    size_t i;
    for (i = 0; i < n && !d->done; i++) {
        unsigned char c = p[i];
        /* inside a line (a dot at the start of one is removed first) */
        if (fast &&
            (d->state == ST_TEXT || d->state == ST_DOT || (d->state == ST_BOL && c != '.'))) {
            size_t k = plain_span(p + i, n - i);
            if (k) {
                plain_run(d, out, p + i, k);
                i += k - 1;
                continue;
            }
        }
        switch (d->state) {
        case ST_BOL:
            if (c == '.')
                d->state = ST_DOT;      /* removed: stuffing or terminator */
            else
                text_byte(d, out, c);
            break;
        case ST_TEXT:
            text_byte(d, out, c);
            break;
        case ST_CR:
            if (c == '\n') {
                emit_eol(d, out);
                d->state = ST_BOL;
            } else {
                d->errors |= SMTP_DATA_E_BARE;     /* the CR before c was bare */
                emit_text(d, out, '\r');
                text_byte(d, out, c);
            }
            break;
        case ST_DOT:
            if (c == '\r')
                d->state = ST_DOTCR;
            else
                text_byte(d, out, c);   /* "..x" -> ".x", ".x" -> "x" */
            break;
        case ST_DOTCR:
            if (c == '\n') {
                d->done = 1;
            } else {
                d->errors |= SMTP_DATA_E_BARE;
                emit_text(d, out, '\r');
                text_byte(d, out, c);
            }
            break;
        }
    }
    return i;
}

size_t smtp_data_feed(struct smtp_data *d, const unsigned char *p, size_t n, buf_t *out)
{
    return data_feed(d, p, n, out, 1);
}

size_t smtp_data_feed_bytewise(struct smtp_data *d, const unsigned char *p, size_t n, buf_t *out)
{
    return data_feed(d, p, n, out, 0);
}

/* ---- BDAT: states BOL (after LF or at the start), TEXT, CR ---------------- */

void smtp_bdat_init(struct smtp_data *d, uint64_t max_size, uint64_t max_line)
{
    smtp_data_init(d, max_size, max_line);
}

static void bdat_feed(struct smtp_data *d, const unsigned char *p, size_t n, buf_t *out, int fast)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (fast && d->state != ST_CR) {
            size_t k = plain_span(p + i, n - i);
            if (k) {
                plain_run(d, out, p + i, k);
                i += k - 1;
                continue;
            }
        }
        if (d->state == ST_CR) {
            if (c == '\n') {
                emit_eol(d, out);
                d->state = ST_BOL;
                continue;
            }
            d->errors |= SMTP_DATA_E_BARE;     /* the CR before c was bare */
            emit_text(d, out, '\r');
        }
        text_byte(d, out, c);                   /* CR -> ST_CR, else ST_TEXT */
    }
}

void smtp_bdat_feed(struct smtp_data *d, const unsigned char *p, size_t n, buf_t *out)
{
    bdat_feed(d, p, n, out, 1);
}

void smtp_bdat_feed_bytewise(struct smtp_data *d, const unsigned char *p, size_t n, buf_t *out)
{
    bdat_feed(d, p, n, out, 0);
}

void smtp_bdat_end(struct smtp_data *d, buf_t *out)
{
    if (d->state == ST_CR) {
        d->errors |= SMTP_DATA_E_BARE;
        emit_text(d, out, '\r');
        d->state = ST_TEXT;
    }
    if (d->state == ST_TEXT) {
        d->linelen = 0;                         /* added, not transmitted: not counted */
        if (d->errors == 0)
            buf_append_char(out, '\n');
    }
    d->state = ST_BOL;
    d->done = 1;
}
