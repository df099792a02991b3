/*
 * fuzz_ipc.c - libFuzzer target for the IPC frame reader. Frames are taken
 * from the input one after another with ipc_next (as an event loop does);
 * each decoded message is formatted for the trace log and re-encoded, which
 * must give back exactly the bytes it came from (the wire form is canonical),
 * and decoding those again must succeed with the same type.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "ipc/ipc.h"
#include "util/log.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s (line %d)\n", #c, __LINE__); abort(); } } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_init("fuzz_ipc", 1, 0, LOG_L_PANIC);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    buf_t out, enc;
    buf_init(&out, 256);
    buf_init(&enc, 256);
    size_t off = 0;
    while (off < size) {
        enum ipc_type t;
        union ipc_msg m;
        size_t used = 0;
        int r = ipc_next(data + off, size - off, &t, &m, &used, "fuzz");
        if (r == 0) {
            CHECK(ipc_frame_len(data + off, size - off) == 0);
            break;
        }
        if (r < 0)
            break;
        CHECK(used >= 6 && used <= size - off && (unsigned)t < IPC__COUNT);
        buf_reset(&out);
        ipc_format(&out, t, &m);
        CHECK(strlen(out.data) == out.len && memchr(out.data, '\n', out.len) == NULL);
        buf_reset(&enc);
        /* whatever decodes is within the limits, so it encodes again */
        CHECK(ipc_check(t, &m) == 0);
        CHECK(ipc_encode(&enc, t, &m) == 0);
        CHECK(enc.len == used && memcmp(enc.data, data + off, used) == 0);
        enum ipc_type t2;
        union ipc_msg m2;
        char err[256];
        CHECK(ipc_decode((const unsigned char *)enc.data, enc.len, &t2, &m2, err, sizeof(err)) == 0);
        CHECK(t2 == t);
        off += used;
    }
    buf_free(&enc);
    buf_free(&out);
    return 0;
}
