/*
 * config_show.c - `postern config show [-n|-d] [KEY...]`, like postconf:
 * the main table's parameters printed back in config syntax, one per line
 * ("limits.message_size = 50M;"), from the loaded config, from the defaults
 * (-d) or only those set in the files (-n). Values are formatted from the
 * parsed fields, so what is shown is what the daemons use.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_private.h"

_Static_assert(CFG_TABLE_MAX <= sizeof(((struct config *)0)->param_set), "param_set size");

static const void *cfield(const void *base, size_t off) { return (const char *)base + off; }

static void show_string(buf_t *o, const char *s)
{
    buf_append_char(o, '"');
    for (; s && *s; s++) {
        if (*s == '"' || *s == '\\')
            buf_append_char(o, '\\');
        if (*s == '\n')
            buf_append_str(o, "\\n");
        else
            buf_append_char(o, *s);
    }
    buf_append_char(o, '"');
}

/* The largest unit that divides v exactly: 300s -> 5m, 4h, 5d. */
static void show_duration(buf_t *o, int64_t v)
{
    static const struct { int64_t secs; char unit; } u[] = {
        { 86400, 'd' }, { 3600, 'h' }, { 60, 'm' },
    };
    for (size_t i = 0; i < sizeof(u) / sizeof(u[0]); i++) {
        if (v != 0 && v % u[i].secs == 0) {
            buf_printf(o, "%lld%c", (long long)(v / u[i].secs), u[i].unit);
            return;
        }
    }
    buf_printf(o, "%llds", (long long)v);
}

static void show_cidr(buf_t *o, const struct cidr *c)
{
    static const unsigned char v4map[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    char a[INET6_ADDRSTRLEN];
    if (memcmp(c->addr, v4map, 12) == 0 && c->prefix >= 96) {
        inet_ntop(AF_INET, c->addr + 12, a, sizeof(a));
        buf_printf(o, "\"%s/%d\"", a, c->prefix - 96);
    } else {
        inet_ntop(AF_INET6, c->addr, a, sizeof(a));
        buf_printf(o, "\"[%s]/%d\"", a, c->prefix);
    }
}

static void show_enum(buf_t *o, const struct param *p, int v)
{
    for (const struct enumval *e = p->ev; e->name; e++) {
        if (e->v == v) {
            show_string(o, e->name);
            return;
        }
    }
    buf_printf(o, "%d", v);
}

static void show_list(buf_t *o, const struct param *p, const void *base)
{
    const void *f = cfield(base, p->off);
    buf_append_char(o, '[');
    if (p->type == P_STRLIST) {
        const struct strlist *l = f;
        for (int i = 0; i < l->n; i++) {
            buf_append_str(o, i ? ", " : "");
            show_string(o, l->v[i]);
        }
    } else if (p->type == P_CIDRLIST) {
        const struct cidrlist *l = f;
        for (int i = 0; i < l->n; i++) {
            buf_append_str(o, i ? ", " : "");
            show_cidr(o, &l->v[i]);
        }
    } else {
        const int *v = *(int *const *)f;
        int n = *(const int *)cfield(base, p->off2);
        for (int i = 0; i < n; i++) {
            buf_append_str(o, i ? ", " : "");
            show_duration(o, v[i]);
        }
    }
    buf_append_char(o, ']');
}

static void show_value(buf_t *o, const struct param *p, const void *base)
{
    const void *f = cfield(base, p->off);
    switch (p->type) {
    case P_STR: case P_PATH: show_string(o, *(char *const *)f); break;
    case P_INT: buf_printf(o, "%d", *(const int *)f); break;
    case P_LONG: buf_printf(o, "%ld", *(const long *)f); break;
    case P_SIZE: cfg_format_size(o, *(const int64_t *)f); break;
    case P_DUR: show_duration(o, *(const int *)f); break;
    case P_BOOL: buf_append_str(o, *(const int *)f ? "true" : "false"); break;
    case P_ENUM: show_enum(o, p, *(const int *)f); break;
    default: show_list(o, p, base); break;
    }
}

static int find_row(const char *key)
{
    for (int r = 0; r < cfg_nparams; r++)
        if (strcmp(cfg_params[r].name, key) == 0)
            return r;
    return -1;
}

static void show_row(buf_t *out, int r, const void *base)
{
    buf_printf(out, "%s = ", cfg_params[r].name);
    show_value(out, &cfg_params[r], base);
    buf_append_str(out, ";\n");
}

int config_show(const struct config *c, int mode, char *const *keys, int nkeys, buf_t *out,
                buf_t *err)
{
    struct config *defs = NULL;
    const void *base = c;
    if (mode == 'd') {
        defs = xcalloc(1, sizeof(*defs));
        cfg_apply_defaults(cfg_params, cfg_nparams, defs);
        base = defs;
    }
    int unknown = 0;
    if (nkeys > 0) {
        for (int k = 0; k < nkeys; k++) {
            int r = find_row(keys[k]);
            if (r < 0) {
                buf_printf(err, "unknown key \"%s\"\n", keys[k]);
                unknown++;
            } else if (mode != 'n' || c->param_set[r]) {
                show_row(out, r, base);
            }
        }
    } else {
        for (int r = 0; r < cfg_nparams; r++)
            if (mode != 'n' || c->param_set[r])
                show_row(out, r, base);
    }
    if (defs) {
        cfg_free_fields(cfg_params, cfg_nparams, defs);
        free(defs);
    }
    return unknown;
}
