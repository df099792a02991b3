/*
 * fuzz_mime8.c - libFuzzer target for the 8-bit to 7-bit MIME downgrade
 * (lib/mail/mime8.c). The input is a message (LF line ends); both passes
 * run twice, once on the whole input and once in chunks whose size comes
 * from the first byte.
 * Invariants checked: when the scan says a conversion exists, the output
 * holds no 8-bit byte; both chunkings give the same verdict and the same
 * output byte for byte.
 * Build: make fuzz (obj-fuzz/fuzz_mime8). Seeds: t/fuzz/corpus/mime8/
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mail/mime8.h"

static int run(const char *p, size_t n, size_t chunk, buf_t *out)
{
    struct mime8 *m = mime8_new();
    char why[200];
    for (size_t i = 0; i < n; i += chunk)
        mime8_scan(m, p + i, n - i < chunk ? n - i : chunk);
    int rc = mime8_scan_end(m, why, sizeof(why));
    if (rc == 1) {
        for (size_t i = 0; i < n; i += chunk)
            mime8_convert(m, p + i, n - i < chunk ? n - i : chunk, out);
        mime8_convert_end(m, out);
    } else if (rc == -1 && strlen(why) == 0) {
        abort();
    }
    mime8_free(m);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t chunk = 1 + data[0] % 64;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    buf_t a, b;
    buf_init(&a, n * 3 + 64);
    buf_init(&b, n * 3 + 64);
    int ra = run(p, n, n ? n : 1, &a);
    int rb = run(p, n, chunk, &b);
    if (ra != rb || a.len != b.len || memcmp(a.data, b.data, a.len) != 0)
        abort();
    if (ra == 1)
        for (size_t i = 0; i < a.len; i++)
            if ((unsigned char)a.data[i] & 0x80)
                abort();
    buf_free(&a);
    buf_free(&b);
    return 0;
}
