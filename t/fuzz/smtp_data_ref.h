/*
 * smtp_data_ref.h - the reference DATA/BDAT decoder for the fuzzers: the
 * plain byte-at-a-time state machine lib/mail/smtp_data.c started from, kept to
 * check that its fast paths (runs of plain bytes at once) change nothing.
 * Counting as in smtp_data.h: size = octets after unstuffing with CRLF as
 * 2, linelen = octets of the line without its line end.
 * Included by t/fuzz/fuzz_smtp_data.c and fuzz_bdat.c only.
 */
#ifndef POSTERN_SMTP_DATA_REF_H
#define POSTERN_SMTP_DATA_REF_H
#include "mail/smtp_data.h"

enum { R_BOL = 0, R_TEXT, R_CR, R_DOT, R_DOTCR };

static void ref_data_init(struct smtp_data *d, uint64_t max_size, uint64_t max_line)
{
    d->state = R_BOL;
    d->linelen = 0;
    d->size = 0;
    d->max_size = max_size;
    d->max_line = max_line;
    d->errors = 0;
    d->done = 0;
}

/* A content octet: 1 in size and in the line length. */
static void ref_emit(struct smtp_data *d, buf_t *out, char c)
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

/* CRLF: 2 in size, ends the line, one LF out. */
static void ref_eol(struct smtp_data *d, buf_t *out)
{
    d->size += 2;
    d->linelen = 0;
    if (d->max_size && d->size > d->max_size)
        d->errors |= SMTP_DATA_E_SIZE;
    if (d->errors == 0)
        buf_append_char(out, '\n');
}

/* A byte inside a line (state TEXT). */
static void ref_text_byte(struct smtp_data *d, buf_t *out, unsigned char c)
{
    if (c == '\r') {
        d->state = R_CR;
        return;
    }
    d->state = R_TEXT;
    if (c == '\n')
        d->errors |= SMTP_DATA_E_BARE;
    else if (c == '\0')
        d->errors |= SMTP_DATA_E_NUL;
    ref_emit(d, out, (char)c);
}

static size_t ref_data_feed(struct smtp_data *d, const unsigned char *p, size_t n, buf_t *out)
{
    size_t i;
    for (i = 0; i < n && !d->done; i++) {
        unsigned char c = p[i];
        switch (d->state) {
        case R_BOL:
            if (c == '.')
                d->state = R_DOT;      /* removed: stuffing or terminator */
            else
                ref_text_byte(d, out, c);
            break;
        case R_TEXT:
            ref_text_byte(d, out, c);
            break;
        case R_CR:
            if (c == '\n') {
                ref_eol(d, out);
                d->state = R_BOL;
            } else {
                d->errors |= SMTP_DATA_E_BARE;     /* the CR before c was bare */
                ref_emit(d, out, '\r');
                ref_text_byte(d, out, c);
            }
            break;
        case R_DOT:
            if (c == '\r')
                d->state = R_DOTCR;
            else
                ref_text_byte(d, out, c);   /* "..x" -> ".x", ".x" -> "x" */
            break;
        case R_DOTCR:
            if (c == '\n') {
                d->done = 1;
            } else {
                d->errors |= SMTP_DATA_E_BARE;
                ref_emit(d, out, '\r');
                ref_text_byte(d, out, c);
            }
            break;
        }
    }
    return i;
}

/* ---- BDAT: states BOL (after LF or at the start), TEXT, CR ---------------- */

static void ref_bdat_init(struct smtp_data *d, uint64_t max_size, uint64_t max_line)
{
    ref_data_init(d, max_size, max_line);
}

static void ref_bdat_feed(struct smtp_data *d, const unsigned char *p, size_t n, buf_t *out)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (d->state == R_CR) {
            if (c == '\n') {
                ref_eol(d, out);
                d->state = R_BOL;
                continue;
            }
            d->errors |= SMTP_DATA_E_BARE;     /* the CR before c was bare */
            ref_emit(d, out, '\r');
        }
        ref_text_byte(d, out, c);                   /* CR -> R_CR, else R_TEXT */
    }
}

static void ref_bdat_end(struct smtp_data *d, buf_t *out)
{
    if (d->state == R_CR) {
        d->errors |= SMTP_DATA_E_BARE;
        ref_emit(d, out, '\r');
        d->state = R_TEXT;
    }
    if (d->state == R_TEXT) {
        d->linelen = 0;             /* added, not transmitted: not counted */
        if (d->errors == 0)
            buf_append_char(out, '\n');
    }
    d->state = R_BOL;
    d->done = 1;
}

#endif
