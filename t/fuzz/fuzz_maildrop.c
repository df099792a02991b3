/*
 * fuzz_maildrop.c - libFuzzer target for pickup's maildrop file parser
 * (lib/mail/maildrop.c: md_rec_next, md_check, md_parse). Any input must be
 * refused cleanly or parse into a state that holds together: END seen, at
 * least one recipient, the content length END promised, a login without
 * blanks. The same bytes fed in arbitrary chunks (as pickup reads them)
 * must reach the same verdict.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "mail/maildrop.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s (line %d)\n", #c, __LINE__); abort(); } } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_init("fuzz_maildrop", 1, 0, LOG_L_PANIC);
    return 0;
}

static int count(const struct md_rec *r, void *arg)
{
    uint64_t *content = arg;
    if (r->type == MD_CONTENT)
        *content += r->len;
    return 0;
}

/* pickup's way: records as whole ones appear in a growing buffer. */
static int streamed(const uint8_t *data, size_t size, size_t step)
{
    struct md_state st;
    md_state_init(&st);
    char err[128];
    size_t have = 0, off = 0;
    while (off < size || have > off) {
        if (have < size)
            have = have + step < size ? have + step : size;
        struct md_rec r;
        long n = md_rec_next(data + off, have - off, &r, err, sizeof(err));
        if (n < 0)
            return -1;
        if (n == 0) {
            if (have == size)
                return -1;
            continue;
        }
        if (md_check(&st, &r, 0, err, sizeof(err)) < 0)
            return -1;
        off += (size_t)n;
    }
    return st.done ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct md_state st;
    char err[128];
    uint64_t content = 0;
    int rc = md_parse(data, size, &st, count, &content, err, sizeof(err));
    CHECK(rc == 0 || rc == -1);
    if (rc == 0) {
        CHECK(st.done);
        CHECK(st.nrcpt >= 1 && st.nrcpt <= MD_RCPT_MAX);
        CHECK(st.content == content);
        CHECK(strchr(st.login, ' ') == NULL && st.login[0] != '\0');
        CHECK(st.ret <= 2 && st.notify <= 15);
    } else {
        CHECK(err[0] != '\0');
    }
    size_t step = size ? (size_t)data[0] % 97 + 1 : 1;
    CHECK(streamed(data, size, step) == rc);
    return 0;
}
