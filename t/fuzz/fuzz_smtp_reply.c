/*
 * fuzz_smtp_reply.c - libFuzzer target for the smtp agent's reply parser
 * (smtp/smtp_reply.c, compiled in here: it lives in the process folder):
 * the input is split at LF into lines and fed the way smtp_io.c does,
 * a complete 250 reply is also read as EHLO keywords, and every finished
 * reply is formatted for a log line / DSN reason.
 * Invariants checked: the kept text never exceeds SMTP_REPLY_MAX, the code
 * is 200..599, the enhanced code is short and of the reply's class.
 * Build: make fuzz (obj-fuzz/fuzz_smtp_reply). Seeds: t/fuzz/corpus/smtp_reply/
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../smtp/smtp_reply.c"

static void check(const struct smtp_reply *r)
{
    if (r->len > SMTP_REPLY_MAX || r->text[r->len] != '\0' || r->code < 200 || r->code > 599)
        abort();
    if (r->enh[0] && (strlen(r->enh) > 11 || r->enh[0] != '0' + r->code / 100))
        abort();
    char out[300];
    smtp_reply_format(r, out, sizeof(out));
    if (strlen(out) >= sizeof(out))
        abort();
    if (r->code == 250) {
        struct smtp_ext e;
        smtp_ext_parse(r, &e);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct smtp_reply *r = malloc(sizeof(*r));
    char err[128];
    smtp_reply_init(r);
    const char *p = (const char *)data, *end = p + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        int rc = smtp_reply_line(r, p, n, err, sizeof(err));
        if (rc != 0) {
            if (rc > 0)
                check(r);
            smtp_reply_init(r);
        }
        p += n + 1;
    }
    free(r);
    return 0;
}
