/*
 * fuzz_smtp_data.c - libFuzzer target for the DATA decoder
 * (lib/mail/smtp_data.c). The first byte picks a chunk size; the input is fed
 * in those chunks and checked against invariants: the result does not
 * depend on how the input is split; the terminator is a real CRLF.CRLF;
 * clean output never holds CR or NUL; output never exceeds the input; clean
 * output's size in CRLF octets is the counted size; and the
 * result equals the plain byte-at-a-time reference (smtp_data_ref.h).
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Ilib \
 *        t/fuzz/fuzz_smtp_data.c lib/mail/smtp_data.c lib/util/buf.c lib/util/log.c
 * Seeds: t/fuzz/corpus/smtp_data/
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "mail/smtp_data.h"
#include "smtp_data_ref.h"

static uint64_t max_line;     /* 0 (no limit) or small, from the first byte */

static size_t feed_all_x(const uint8_t *p, size_t n, size_t step, struct smtp_data *d,
                         buf_t *out, int ref)
{
    size_t off = 0;
    if (ref)
        ref_data_init(d, 4096, max_line);
    else
        smtp_data_init(d, 4096, max_line);
    while (off < n && !d->done) {
        size_t len = n - off < step ? n - off : step;
        size_t used = ref ? ref_data_feed(d, p + off, len, out)
                          : smtp_data_feed(d, p + off, len, out);
        if (used > len)
            abort();
        off += used;
    }
    return off;
}

static size_t feed_all(const uint8_t *p, size_t n, size_t step, struct smtp_data *d, buf_t *out)
{
    return feed_all_x(p, n, step, d, out, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)data[0] % 17 + 1;
    max_line = data[0] & 0x80 ? (uint64_t)(data[0] & 0x70) : 0;    /* 0, 16, ... 112 */
    data++;
    size--;
    struct smtp_data a, b;
    buf_t oa, ob;
    buf_init(&oa, 64);
    buf_init(&ob, 64);
    size_t ua = feed_all(data, size, size ? size : 1, &a, &oa);
    size_t ub = feed_all(data, size, step, &b, &ob);
    if (ua != ub || a.done != b.done || a.errors != b.errors || a.size != b.size ||
        oa.len != ob.len || memcmp(oa.data, ob.data, oa.len) != 0)
        abort();            /* chunking changed the result */
    {
        struct smtp_data r;
        buf_t orf;
        buf_init(&orf, 64);
        size_t ur = feed_all_x(data, size, step, &r, &orf, 1);
        if (ur != ub || r.done != b.done || r.errors != b.errors || r.size != b.size ||
            r.linelen != b.linelen || r.state != b.state ||
            orf.len != ob.len || memcmp(orf.data, ob.data, orf.len) != 0)
            abort();        /* differs from the byte-at-a-time reference */
        buf_free(&orf);
    }
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
