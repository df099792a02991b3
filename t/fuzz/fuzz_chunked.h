/*
 * fuzz_chunked.h - what the two decoder fuzzers (fuzz_smtp_data.c,
 * fuzz_bdat.c) share: the first input byte picks the chunk size the input
 * is fed in and the line limit; the rest is the input.
 */
#ifndef POSTERN_FUZZ_CHUNKED_H
#define POSTERN_FUZZ_CHUNKED_H
#include <stdint.h>
#include <string.h>
#include "mail/smtp_data.h"

static uint64_t max_line;     /* 0 (no limit) or small, from the first byte */

/* Takes the first byte off the input: returns the chunk size (1..17) and
 * sets max_line (0, 16, ... 112); 0 when there is no input. */
static size_t chunk_params(const uint8_t **data, size_t *size)
{
    if (*size < 1)
        return 0;
    uint8_t b = (*data)[0];
    max_line = b & 0x80 ? (uint64_t)(b & 0x70) : 0;
    (*data)++;
    (*size)--;
    return (size_t)b % 17 + 1;
}

/* Did two decodings end in the same state with the same output? */
static int same_decoding(const struct smtp_data *a, const buf_t *oa, const struct smtp_data *b,
                         const buf_t *ob)
{
    return a->done == b->done && a->errors == b->errors && a->size == b->size &&
           a->linelen == b->linelen && a->state == b->state && oa->len == ob->len &&
           memcmp(oa->data, ob->data, oa->len) == 0;
}

#endif
