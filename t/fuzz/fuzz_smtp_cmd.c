/*
 * fuzz_smtp_cmd.c - libFuzzer target for one SMTP command line: verb split
 * (lib/mail/smtp_cmd.c) and, for MAIL/RCPT, the path + parameter parser
 * (lib/mail/addr.c) the way smtpd calls them, and the BDAT size parser.
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Ilib \
 *        t/fuzz/fuzz_smtp_cmd.c lib/mail/smtp_cmd.c lib/mail/addr.c lib/util/buf.c lib/util/log.c
 * Seeds: t/fuzz/corpus/smtp_cmd/ (dictionary: ../shared/testdata/fuzz-dict/)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "mail/smtp_cmd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4 * SMTP_LINE_MAX)
        return 0;
    char *p = malloc(size ? size : 1);
    if (size)
        memcpy(p, data, size);
    struct smtp_cmd c;
    if (smtp_cmd_split(p, size, &c) == 0) {
        if (strlen(c.verb) > SMTP_VERB_MAX || c.arg < p || c.arg + c.arglen > p + size)
            abort();
        buf_t a;
        buf_init(&a, 64);
        struct smtp_mailrcpt r;
        const char *prefix = strcmp(c.verb, "RCPT") == 0 ? "TO:" : "FROM:";
        unsigned flags = c.verb[0] == 'R' ? ADDR_F_POSTMASTER : ADDR_F_NULL_OK;
        if (c.verb[0] == 'U')
            flags |= ADDR_F_UTF8;
        int rc = smtp_cmd_mailrcpt(c.arg, c.arglen, prefix, flags, &a, &r);
        if (rc == SMTP_MR_OK) {
            if (r.nparams < 0 || r.nparams > ESMTP_MAX_PARAMS)
                abort();
            for (int i = 0; i < r.nparams; i++)
                if (r.params[i].key < c.arg || r.params[i].key + r.params[i].keylen > c.arg + c.arglen)
                    abort();
        }
        buf_free(&a);
        uint64_t n = 0;
        int last = -1;
        if (smtp_cmd_bdat(c.arg, c.arglen, &n, &last) == 0) {
            /* a parsed BDAT size is all digits, at most 19 of them */
            size_t d = 0;
            while (d < c.arglen && c.arg[d] >= '0' && c.arg[d] <= '9')
                d++;
            if (d == 0 || d > 19 || (last != 0 && last != 1) || (last == 0 && d != c.arglen))
                abort();
            uint64_t v = 0;
            for (size_t k = 0; k < d; k++)
                v = v * 10 + (uint64_t)(c.arg[k] - '0');
            if (v != n)
                abort();
        }
    }
    free(p);
    return 0;
}
