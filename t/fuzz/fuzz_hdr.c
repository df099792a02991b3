/*
 * fuzz_hdr.c - libFuzzer target for the header-section scanner (lib/mail/hdr.c).
 * The first byte picks a chunk size; the rest is message content, scanned
 * once whole and once in chunks: both must agree, offsets must stay inside
 * the input, and nothing may read out of bounds (ASan).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mail/hdr.h"

static void check(const struct hdr_scan *a, const struct hdr_scan *b, size_t n)
{
    if (a->end != b->end || a->end_off != b->end_off || a->body_off != b->body_off ||
        a->seen != b->seen || a->nfields != b->nfields || a->received != b->received)
        abort();
    if (a->end == HDR_END_NONE || a->end_off > n || a->body_off > n || a->body_off < a->end_off)
        abort();
    if (a->end == HDR_END_BLANK && (a->body_off != a->end_off + 1))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t chunk = (size_t)data[0] % 17 + 1;
    const uint8_t *p = data + 1;
    size_t n = size - 1;

    struct hdr_scan whole, part;
    hdr_scan_init(&whole);
    size_t used = hdr_scan_feed(&whole, p, n);
    if (used > n)
        abort();
    hdr_scan_finish(&whole);

    hdr_scan_init(&part);
    for (size_t off = 0; off < n; off += chunk) {
        size_t len = n - off < chunk ? n - off : chunk;
        /* a private copy so ASan sees reads past the chunk */
        uint8_t *c = malloc(len);
        memcpy(c, p + off, len);
        size_t u = hdr_scan_feed(&part, c, len);
        free(c);
        if (u > len)
            abort();
    }
    hdr_scan_finish(&part);
    check(&whole, &part, n);
    return 0;
}
