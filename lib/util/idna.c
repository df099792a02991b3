/*
 * idna.c - U-labels to A-labels through libidn2 (idna.h).
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <idn2.h>

#include "util/idna.h"

static int ascii_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(isascii(c) && isalnum(c)) && c != '-' && c != '_' && c != '.')
            return 0;
    }
    return 1;
}

int idna_domain_ascii(const char *in, size_t n, char *out, size_t outsz)
{
    if (outsz == 0)
        return -1;
    out[0] = '\0';
    int utf8 = 0;
    for (size_t i = 0; i < n; i++)
        utf8 |= (unsigned char)in[i] >= 0x80;
    if (!utf8) {
        if (n >= outsz || !ascii_ok(in, n))
            return -1;
        for (size_t i = 0; i < n; i++)
            out[i] = (char)tolower((unsigned char)in[i]);
        out[n] = '\0';
        return 0;
    }
    if (n > IDNA_UTF8_MAX || memchr(in, '\0', n) != NULL)
        return -1;
    char z[IDNA_UTF8_MAX + 1];
    memcpy(z, in, n);
    z[n] = '\0';
    char *a = NULL;
    /* idn2 checks the UTF-8 itself (IDN2_ENCODING_ERROR) */
    int rc = idn2_to_ascii_8z(z, &a, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
    if (rc != IDN2_OK || a == NULL) {
        idn2_free(a);
        return -1;
    }
    size_t len = strlen(a);
    int ok = len < outsz && ascii_ok(a, len);
    if (ok) {
        for (size_t i = 0; i < len; i++)
            out[i] = (char)tolower((unsigned char)a[i]);
        out[len] = '\0';
    }
    idn2_free(a);
    return ok ? 0 : -1;
}

const char *idna_lookup_name(const char *d, char ace[IDNA_ASCII_MAX])
{
    for (const char *p = d; *p; p++)
        if ((unsigned char)*p >= 0x80)
            return idna_domain_ascii(d, strlen(d), ace, IDNA_ASCII_MAX) == 0 ? ace : NULL;
    return d;
}
