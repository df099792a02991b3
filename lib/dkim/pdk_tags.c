/*
 * pdk_tags.c - the RFC 6376 3.2 tag-list parser Postern itself uses on
 * DKIM-Signature fields and key records (the summary of each signature in
 * results, the p= of a key record `postern check` compares), and the
 * sanitiser for text that leaves a message. Pure: bounded, no allocation,
 * fuzzed by t/fuzz/fuzz_dkim.c. libopendkim parses again for verification.
 */
#include <ctype.h>
#include <string.h>

#include "dkim/pdk.h"

static int is_fws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* tag-name = ALPHA *ALNUMPUNC (ALNUMPUNC: letters, digits, '_') */
static int name_ok(const char *p, size_t n)
{
    if (n == 0 || n >= sizeof(((struct pdk_tag *)0)->name) || !isalpha((unsigned char)p[0]))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!isalnum((unsigned char)p[i]) && p[i] != '_')
            return 0;
    return 1;
}

/* One "name = value" spec in s[0..n): appended to tags; 0, 1 (empty spec,
 * allowed only as the last one) or -1. */
static int parse_spec(const char *s, size_t n, struct pdk_tag *t)
{
    size_t i = 0;
    while (i < n && is_fws(s[i]))
        i++;
    if (i == n)
        return 1;
    size_t ns = i;
    while (i < n && !is_fws(s[i]) && s[i] != '=')
        i++;
    size_t ne = i;
    while (i < n && is_fws(s[i]))
        i++;
    if (i == n || s[i] != '=' || !name_ok(s + ns, ne - ns))
        return -1;
    i++;
    while (i < n && is_fws(s[i]))
        i++;
    size_t ve = n;
    while (ve > i && is_fws(s[ve - 1]))
        ve--;
    memcpy(t->name, s + ns, ne - ns);
    t->name[ne - ns] = '\0';
    t->v = s + i;
    t->vlen = ve - i;
    return 0;
}

int pdk_tags_parse(const char *s, size_t n, struct pdk_tag *tags, int max)
{
    int count = 0;
    size_t start = 0;
    while (start <= n) {
        const char *semi = memchr(s + start, ';', n - start);
        size_t end = semi ? (size_t)(semi - s) : n;
        struct pdk_tag t;
        int r = parse_spec(s + start, end - start, &t);
        if (r < 0)
            return -1;
        if (r == 1 && semi)             /* ";;" or a leading ';' */
            return -1;
        if (r == 0) {
            for (int k = 0; k < count && k < max; k++)
                if (strcmp(tags[k].name, t.name) == 0)
                    return -1;          /* RFC 6376 3.2: duplicates are an error */
            if (count < max)
                tags[count] = t;
            count++;
        }
        if (!semi)
            break;
        start = end + 1;
    }
    return count < max ? count : max;
}

int pdk_tags_get(const struct pdk_tag *tags, int n, const char *name, char *out, size_t cap)
{
    for (int k = 0; k < n; k++) {
        if (strcmp(tags[k].name, name) != 0)
            continue;
        size_t j = 0;
        for (size_t i = 0; i < tags[k].vlen && j + 1 < cap; i++)
            if (!is_fws(tags[k].v[i]))
                out[j++] = tags[k].v[i];
        if (cap)
            out[j] = '\0';
        return 0;
    }
    if (cap)
        out[0] = '\0';
    return -1;
}

void pdk_sanitize(char *out, size_t cap, const char *s, size_t n)
{
    size_t j = 0;
    for (size_t i = 0; i < n && j + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        out[j++] = (c > 32 && c < 127 && c != ';' && c != '(' && c != ')' && c != '\\' &&
                    c != '"') ? (char)c : '?';
    }
    if (cap)
        out[j] = '\0';
}
