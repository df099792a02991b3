/*
 * fuzz_sts.c - libFuzzer target for the MTA-STS parsers (lib/sts/sts_policy.c):
 * the input is parsed as a policy body and as a _mta-sts TXT record; a
 * parsed policy is matched against a few MX names and its own patterns.
 * Invariants checked: a policy that parses has a known mode, max_age in
 * 0..STS_MAX_AGE_MAX, at most STS_MX_MAX mx patterns each a NUL-terminated
 * lower-case name (an mx is required unless mode is none); a TXT id that
 * parses is 1..32 letters and digits.
 * Build: make fuzz (obj-fuzz/fuzz_sts). Seeds: t/fuzz/corpus/sts/
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sts/sts.h"

static void check_policy(const struct sts_policy *p)
{
    if (p->mode != STS_NONE && p->mode != STS_TESTING && p->mode != STS_ENFORCE)
        abort();
    if (p->max_age < 0 || p->max_age > STS_MAX_AGE_MAX || p->nmx < 0 || p->nmx > STS_MX_MAX)
        abort();
    if (p->nmx == 0 && p->mode != STS_NONE)
        abort();
    for (int i = 0; i < p->nmx; i++) {
        size_t n = strnlen(p->mx[i], sizeof(p->mx[i]));
        if (n == 0 || n >= sizeof(p->mx[i]))
            abort();
        for (size_t k = 0; k < n; k++)
            if (isupper((unsigned char)p->mx[i][k]))
                abort();
        /* a plain pattern matches itself; "*.x" matches "a.x" */
        char name[300] = "a";
        if (p->mx[i][0] == '*')
            strncat(name, p->mx[i] + 1, sizeof(name) - 2);
        else
            strncpy(name, p->mx[i], sizeof(name) - 1);
        if (!sts_mx_match(p, name))
            abort();
    }
    sts_mx_match(p, "mx.example.net");
    sts_mx_match(p, "");
    sts_mx_match(p, ".");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sts_policy *p = malloc(sizeof(*p));
    char why[128], id[STS_ID_MAX + 1];
    if (sts_policy_parse((const char *)data, size, p, why, sizeof(why)) == 0)
        check_policy(p);
    free(p);
    if (sts_txt_parse((const char *)data, size, id, sizeof(id)) == 1) {
        size_t n = strlen(id);
        if (n == 0 || n > STS_ID_MAX)
            abort();
        for (size_t i = 0; i < n; i++)
            if (!isalnum((unsigned char)id[i]))
                abort();
    }
    return 0;
}
