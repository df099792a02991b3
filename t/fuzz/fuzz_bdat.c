/*
 * fuzz_bdat.c - libFuzzer target for the BDAT chunk decoder
 * (lib/mail/smtp_data.c smtp_bdat_*). The first byte picks a chunk size; the
 * input is fed in those chunks and checked against invariants: the result
 * does not depend on how the input is split into chunks (a CRLF may straddle
 * two); every input byte counts (no terminator); clean output never holds
 * CR or NUL and ends with LF; output never exceeds the input plus the one
 * LF added to an unterminated last line; clean input's counted size is its
 * length; and for input that ends in CRLF,
 * the BDAT decoder agrees with the DATA decoder fed the same content
 * dot-stuffed and terminated (same content, same size, same refusals:
 * sizes and line lengths are counted after unstuffing); and the result equals
 * the same decoder fed byte by byte (smtp_bdat_feed_bytewise: the fast path
 * changes nothing).
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Ilib \
 *        t/fuzz/fuzz_bdat.c lib/mail/smtp_data.c lib/util/buf.c lib/util/log.c
 * Seeds: t/fuzz/corpus/bdat/
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "mail/smtp_data.h"
#include "fuzz_chunked.h"

#define MAX_SIZE 4096

static void bdat_all(const uint8_t *p, size_t n, size_t step, struct smtp_data *d, buf_t *out,
                     int bytewise)
{
    smtp_bdat_init(d, MAX_SIZE, max_line);
    for (size_t off = 0; off < n; off += step)
        (bytewise ? smtp_bdat_feed_bytewise : smtp_bdat_feed)(d, p + off,
                                                             n - off < step ? n - off : step, out);
    smtp_bdat_end(d, out);
}

/* The same content through DATA: stuff leading dots, add CRLF.CRLF. */
static void data_equiv(const uint8_t *p, size_t n, struct smtp_data *d, buf_t *out)
{
    buf_t wire;
    buf_init(&wire, n + n / 8 + 8);
    int bol = 1;
    for (size_t i = 0; i < n; i++) {
        if (bol && p[i] == '.')
            buf_append_char(&wire, '.');
        buf_append_char(&wire, (char)p[i]);
        bol = i > 0 && p[i] == '\n' && p[i - 1] == '\r';
    }
    buf_append(&wire, ".\r\n", 3);
    smtp_data_init(d, MAX_SIZE, max_line);
    size_t used = smtp_data_feed(d, (const unsigned char *)wire.data, wire.len, out);
    if (!d->done || used != wire.len)
        abort();            /* a stuffed message must end exactly at its dot */
    buf_free(&wire);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t step = chunk_params(&data, &size);
    if (step == 0)
        return 0;
    struct smtp_data a, b, r;
    buf_t oa, ob, orf;
    buf_init(&oa, 64);
    buf_init(&ob, 64);
    buf_init(&orf, 64);
    bdat_all(data, size, size ? size : 1, &a, &oa, 0);
    bdat_all(data, size, step, &b, &ob, 0);
    bdat_all(data, size, step, &r, &orf, 1);
    if (a.errors != b.errors || a.size != b.size || !a.done || !b.done ||
        oa.len != ob.len || memcmp(oa.data, ob.data, oa.len) != 0)
        abort();            /* chunking changed the result */
    if (!same_decoding(&r, &orf, &b, &ob))
        abort();            /* differs from the byte-at-a-time decoding */
    buf_free(&orf);
    if (oa.len > size + 1)
        abort();
    if (a.errors == 0) {
        if (memchr(oa.data, '\r', oa.len) || memchr(oa.data, '\0', oa.len))
            abort();
        if (oa.len && oa.data[oa.len - 1] != '\n')
            abort();
        if (a.size != size)
            abort();        /* every octet of every chunk counts, nothing else */
    }
    if (size == 0 || (size >= 2 && data[size - 2] == '\r' && data[size - 1] == '\n')) {
        struct smtp_data c;
        buf_t oc;
        buf_init(&oc, 64);
        data_equiv(data, size, &c, &oc);
        if (a.errors != c.errors || a.size != c.size)
            abort();        /* same octets counted, same refusals */
        if (a.errors == 0 && c.errors == 0 &&
            (oa.len != oc.len || memcmp(oa.data, oc.data, oa.len) != 0))
            abort();
        buf_free(&oc);
    }
    buf_free(&oa);
    buf_free(&ob);
    return 0;
}
