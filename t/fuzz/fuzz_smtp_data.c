/*
 * fuzz_smtp_data.c - libFuzzer target for the DATA decoder
 * (lib/mail/smtp_data.c). The first byte picks a chunk size; the input is fed
 * in those chunks and checked against invariants: the result does not
 * depend on how the input is split; the terminator is a real CRLF.CRLF;
 * clean output never holds CR or NUL; output never exceeds the input; clean
 * output's size in CRLF octets is the counted size; and the
 * result equals the same decoder fed byte by byte (smtp_data_feed_bytewise:
 * the fast path changes nothing).
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Ilib \
 *        t/fuzz/fuzz_smtp_data.c lib/mail/smtp_data.c lib/util/buf.c lib/util/log.c
 * Seeds: t/fuzz/corpus/smtp_data/
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "mail/smtp_data.h"
#include "fuzz_chunked.h"

static size_t feed_all(const uint8_t *p, size_t n, size_t step, struct smtp_data *d,
                       buf_t *out, int bytewise)
{
    size_t off = 0;
    smtp_data_init(d, 4096, max_line);
    while (off < n && !d->done) {
        size_t len = n - off < step ? n - off : step;
        size_t used = bytewise ? smtp_data_feed_bytewise(d, p + off, len, out)
                               : smtp_data_feed(d, p + off, len, out);
        if (used > len)
            abort();
        off += used;
    }
    return off;
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
    size_t ua = feed_all(data, size, size ? size : 1, &a, &oa, 0);
    size_t ub = feed_all(data, size, step, &b, &ob, 0);
    size_t ur = feed_all(data, size, step, &r, &orf, 1);
    if (ua != ub || a.done != b.done || a.errors != b.errors || a.size != b.size ||
        oa.len != ob.len || memcmp(oa.data, ob.data, oa.len) != 0)
        abort();            /* chunking changed the result */
    if (ur != ub || !same_decoding(&r, &orf, &b, &ob))
        abort();            /* differs from the byte-at-a-time decoding */
    buf_free(&orf);
    if (a.done) {
        if (ua < 3 || memcmp(data + ua - 3, ".\r\n", 3) != 0)
            abort();
        if (ua > 3 && (ua < 5 || memcmp(data + ua - 5, "\r\n", 2) != 0))
            abort();        /* the dot line must follow a CRLF (or start the data) */
    }
    if (oa.len > ua)
        abort();
    if (a.errors == 0 && (memchr(oa.data, '\r', oa.len) || memchr(oa.data, '\0', oa.len)))
        abort();
    if (a.errors == 0) {
        uint64_t wire = oa.len;             /* SIZE octets: each LF was a CRLF */
        for (size_t i = 0; i < oa.len; i++)
            wire += oa.data[i] == '\n';
        if (wire != a.size)
            abort();
    }
    buf_free(&oa);
    buf_free(&ob);
    return 0;
}
