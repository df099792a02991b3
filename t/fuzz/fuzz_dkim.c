/*
 * fuzz_dkim.c - libFuzzer target for the DKIM and Authentication-Results
 * parsing Postern does on mail (lib/dkim): the first byte picks the mode.
 *  0: pdk_tags_parse over the input (a DKIM-Signature value or a key
 *     record): counts bounded, every value inside the input, every get()
 *     terminated, duplicates refused;
 *  1: authres_is_ours / authres_strip over a header section: the stripped
 *     text is a subsequence of whole fields of the input, never longer;
 *  2: a whole message through a pdk_job verification (libopendkim parses
 *     the DKIM-Signature fields; keys come from a fixed table: a fuzzed
 *     signature reaches key parsing and the crypto), results printable.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dkim/authres.h"
#include "dkim/pdk.h"

static enum pdk_lookup_status table(void *arg, const char *name, char *out, size_t cap,
                                    char *why, size_t whylen)
{
    if (strncmp(name, "t", 1) == 0) {
        str_copy(why, whylen, "timeout");
        return PDK_KEY_TEMPFAIL;
    }
    if (strncmp(name, "e", 1) == 0) {      /* an ed25519 key (RFC 8463 example) */
        str_copy(out, cap, "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
        return PDK_KEY_FOUND;
    }
    if (strncmp(name, "b", 1) == 0) {      /* a broken record */
        str_copy(out, cap, "v=DKIM1; k=rsa; p=AAAA; t=y:s; h=sha1");
        return PDK_KEY_FOUND;
    }
    return PDK_KEY_NOTFOUND;
}

static void printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 32 || (unsigned char)*s >= 127)
            abort();
}

static void tags(const char *p, size_t n)
{
    struct pdk_tag t[PDK_TAGS_MAX];
    int k = pdk_tags_parse(p, n, t, PDK_TAGS_MAX);
    if (k < -1 || k > PDK_TAGS_MAX)
        abort();
    char v[128];
    for (int i = 0; i < k; i++) {
        if (t[i].v < p || t[i].v + t[i].vlen > p + n || strlen(t[i].name) == 0)
            abort();
        for (int j = 0; j < i; j++)
            if (strcmp(t[i].name, t[j].name) == 0)
                abort();
        if (pdk_tags_get(t, k, t[i].name, v, sizeof v) != 0 || strlen(v) >= sizeof v)
            abort();
    }
}

static void ar(const char *p, size_t n)
{
    buf_t out;
    buf_init(&out, n + 1);
    int d = authres_strip(&out, p, n, "mx.example.test");
    if (d < 0 || out.len > n || (d == 0 && out.len != n))
        abort();
    (void)authres_is_ours(p, n, "mx.example.test");
    buf_free(&out);
}

static void verify(const char *p, size_t n)
{
    struct pdk_job *j = pdk_job_new("fuzz", 0);
    pdk_job_verify(j, table, NULL);
    pdk_job_feed(j, p, n);
    struct pdk_verdict v;
    pdk_job_end(j, &v, NULL, NULL, 0);
    pdk_job_free(j);
    if (v.n < 0 || v.n > PDK_MAX_SIGS + 1)
        abort();
    for (int i = 0; i < v.n; i++) {
        printable(v.sig[i].domain);
        printable(v.sig[i].selector);
        printable(v.sig[i].b);
        printable(v.sig[i].reason);
    }
    buf_t d;
    buf_init(&d, 64);
    pdk_verdict_domains(&v, &d);
    struct authres a = { .dkim_on = 1, .dkim = &v };
    authres_format(&d, "mx.example.test", &a);
    buf_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] % 3) {
    case 0: tags(p, n); break;
    case 1: ar(p, n); break;
    default: verify(p, n); break;
    }
    return 0;
}
