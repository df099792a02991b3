/*
 * fuzz_metrics.c - libFuzzer target for master's side of lib/metrics: a
 * child's METRICS payload merged into a small store (mstore_merge) and the
 * store rendered. Whatever a child sends, master must neither crash nor
 * grow past the store's bound, and the output stays one sample per line.
 * Seeds: t/fuzz/corpus/metrics/
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "metrics/metrics.h"

static void on_error(int64_t when, const char *text, void *arg)
{
    if (strchr(text, '\n'))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mstore *s = mstore_new(16);
    mstore_merge(s, 1, (const char *)data, size, on_error, NULL);
    mstore_merge(s, 2, (const char *)data, size, on_error, NULL);
    mstore_drop_src(s, 1);
    buf_t out;
    buf_init(&out, 4096);
    mstore_render(s, &out);
    if (memchr(out.data, '\0', out.len))
        abort();
    buf_free(&out);
    mstore_free(s);
    return 0;
}
