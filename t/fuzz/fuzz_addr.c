/*
 * fuzz_addr.c - libFuzzer target for lib/mail/addr.c: paths under every flag
 * combination, bare mailboxes, addr_domain/local part on what parsed,
 * ESMTP parameter lists, xtext, and the author domains of a From field.
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Ilib \
 *        t/fuzz/fuzz_addr.c lib/mail/addr.c lib/util/buf.c lib/util/log.c
 * Seeds: t/fuzz/corpus/addr/
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "mail/addr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* copy into an exact-size heap block so ASan catches any over-read */
    char *p = malloc(size ? size : 1);
    if (size)
        memcpy(p, data, size);
    buf_t a, x;
    buf_init(&a, 64);
    buf_init(&x, 64);
    for (unsigned flags = 0; flags < 8; flags++) {
        size_t used = 0;
        if (addr_parse_path(p, size, flags, &a, &used) == ADDR_OK) {
            if (used > size || used > ADDR_PATH_MAX)
                abort();
            if (memchr(a.data, '\0', a.len) || memchr(a.data, '\r', a.len) ||
                memchr(a.data, '\n', a.len))
                abort();        /* no NUL/CR/LF ever leaves the parser */
            const char *d = addr_domain(a.data);
            if (d < a.data || d > a.data + a.len)
                abort();
            if (addr_local_part_len(a.data) > a.len)
                abort();
            addr_local_part(a.data, &x);
            if (a.len && addr_check_mailbox(a.data, a.len, flags) != ADDR_OK &&
                strcmp(a.data, "postmaster") != 0)
                abort();        /* a parsed mailbox must re-validate */
        }
    }
    addr_check_mailbox(p, size, ADDR_F_UTF8);
    struct esmtp_param v[ESMTP_MAX_PARAMS];
    int n = 0;
    if (esmtp_parse_params(p, size, v, ESMTP_MAX_PARAMS, &n) == 0) {
        for (int i = 0; i < n; i++) {
            if (v[i].key < p || v[i].key + v[i].keylen > p + size)
                abort();
            if (v[i].val && xtext_decode(v[i].val, v[i].vallen, &x) == 0 &&
                (memchr(x.data, '\r', x.len) || memchr(x.data, '\0', x.len)))
                abort();
        }
    }
    if (xtext_decode(p, size, &x) == 0 && (memchr(x.data, '\n', x.len) || memchr(x.data, '\0', x.len)))
        abort();
    /* author domains: distinct, lower case, domain characters only */
    char dom[4][ADDR_DOMAIN_MAX + 1];
    int nd = addr_author_domains(p, size, dom, 4, 0);
    if (nd < 0)
        abort();
    for (int i = 0; i < nd && i < 4; i++) {
        size_t l = strnlen(dom[i], sizeof(dom[i]));
        if (l == 0 || l > ADDR_DOMAIN_MAX || dom[i][l - 1] == '.')
            abort();
        for (size_t j = 0; j < l; j++)
            if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789-_.", dom[i][j]))
                abort();
        for (int k = 0; k < i; k++)
            if (strcmp(dom[k], dom[i]) == 0)
                abort();
    }
    buf_free(&a);
    buf_free(&x);
    free(p);
    return 0;
}
