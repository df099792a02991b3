/*
 * fuzz_aliases.c - libFuzzer target for the aliases(5) parser
 * (lib/local/aliases.c): the input is parsed as an aliases file and as a
 * .forward list. Every entry must have a non-empty lowercase name and
 * items without control characters that survive an encode/decode round
 * trip; nothing may read out of bounds (ASan).
 */
#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "local/aliases.h"

static void check_items(const struct alias_list *l)
{
    buf_t enc;
    struct alias_list back;
    buf_init(&enc, 64);
    alias_list_init(&back);
    for (size_t i = 0; i < l->n; i++)
        for (const unsigned char *p = (const unsigned char *)l->v[i].value; *p; p++)
            if (*p < 0x20 || *p == 0x7f)
                abort();
    aliases_encode(l, &enc);
    if (aliases_decode((const unsigned char *)enc.data, enc.len, &back) < 0 || back.n != l->n)
        abort();
    for (size_t i = 0; i < l->n; i++)
        if (back.v[i].kind != l->v[i].kind || strcmp(back.v[i].value, l->v[i].value) != 0)
            abort();
    alias_list_free(&back);
    buf_free(&enc);
}

static int on_entry(const char *name, const struct alias_list *items, unsigned line, void *arg)
{
    if (name[0] == '\0' || items->n == 0 || line == 0)
        abort();
    for (const char *p = name; *p; p++)
        if (isupper((unsigned char)*p))
            abort();
    check_items(items);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    buf_t err;
    struct alias_list l;
    buf_init(&err, 256);
    alias_list_init(&l);
    aliases_parse("fuzz", (const char *)data, size, on_entry, NULL, &err);
    aliases_parse_list("fuzz", (const char *)data, size, &l, &err);
    check_items(&l);
    alias_list_free(&l);
    buf_free(&err);
    return 0;
}
