/*
 * aliases.c - the aliases(5) parser (see aliases.h for the syntax): lines
 * in, entries out through a callback, every error as file:line:col.
 * Pure: no I/O. Must never accept an item it cannot classify, nor a value
 * with control characters (they would reach a shell or a path).
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "local/aliases.h"

void alias_list_init(struct alias_list *l)
{
    memset(l, 0, sizeof(*l));
}

void alias_list_free(struct alias_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].value);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

void alias_list_add(struct alias_list *l, enum alias_kind kind, const char *value, size_t len)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 4;
        l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
    }
    l->v[l->n].kind = kind;
    l->v[l->n].value = xstrndup(value, len);
    l->n++;
}

/* Parser state: the file name, error sink and count. */
struct ap {
    const char *fname;
    buf_t *err;
    int nerr;
};

static void ap_error(struct ap *a, unsigned line, size_t col, const char *msg)
{
    if (a->nerr++ < ALIAS_ERRORS_MAX)
        buf_printf(a->err, "%s:%u:%zu: %s\n", a->fname, line, col, msg);
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* Bytes that may appear in an address item or a name (UTF-8 allowed). */
static int addr_byte_ok(unsigned char c)
{
    return c >= 0x80 || (c > 0x20 && c < 0x7f && strchr("\"<>()[];,:\\", c) == NULL);
}

/* Classify one item text (quotes removed) and add it; 0, or -1 with *msg. */
static int add_item(struct alias_list *out, const char *s, size_t n, const char **msg)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            *msg = "control character in item";
            return -1;
        }
    if (n > ALIAS_ITEM_MAX) {
        *msg = "item too long";
        return -1;
    }
    if (out->n >= ALIAS_ITEMS_MAX) {
        *msg = "too many items";
        return -1;
    }
    if (s[0] == '|') {
        size_t k = 1;
        while (k < n && is_blank(s[k]))
            k++;
        if (k == n) {
            *msg = "empty command after '|'";
            return -1;
        }
        alias_list_add(out, AK_PIPE, s + k, n - k);
        return 0;
    }
    if (s[0] == '/') {
        alias_list_add(out, AK_FILE, s, n);
        return 0;
    }
    if (n >= 9 && strncasecmp(s, ":include:", 9) == 0) {
        if (n == 9 || s[9] != '/') {
            *msg = ":include: needs an absolute path";
            return -1;
        }
        alias_list_add(out, AK_INCLUDE, s + 9, n - 9);
        return 0;
    }
    enum alias_kind kind = AK_ADDR;
    if (s[0] == '\\') {
        kind = AK_LOCAL;
        s++;
        n--;
    }
    if (n == 0 || s[0] == '@' || s[n - 1] == '@') {
        *msg = "bad address";
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (!addr_byte_ok((unsigned char)s[i]) || (kind == AK_LOCAL && s[i] == '@')) {
            *msg = "bad character in address (quote commands and file names with blanks)";
            return -1;
        }
    alias_list_add(out, kind, s, n);
    return 0;
}

/* A quoted string at p (p[0] == '"') up to end into out (unescaped);
 * returns the byte after the closing quote, or NULL (unterminated). */
static const char *unquote(const char *p, const char *end, buf_t *out)
{
    buf_reset(out);
    for (p++; p < end; p++) {
        if (*p == '"')
            return p + 1;
        if (*p == '\\' && p + 1 < end)
            p++;
        buf_append_char(out, *p);
    }
    return NULL;
}

/* Items of one physical line segment [p, end) into out; base is the line's
 * start (for columns). Returns the number of errors found (one at most). */
static int parse_items(struct ap *a, const char *p, const char *end, unsigned line,
                       const char *base, struct alias_list *out)
{
    buf_t q;
    buf_init(&q, 64);
    int bad = 0;
    while (p < end && !bad) {
        while (p < end && (is_blank(*p) || *p == ','))
            p++;
        if (p >= end)
            break;
        const char *start = p, *msg = NULL;
        size_t col = (size_t)(start - base) + 1;
        if (*p == '"') {
            p = unquote(p, end, &q);
            if (p == NULL) {
                ap_error(a, line, col, "unterminated quoted item");
                bad = 1;
                break;
            }
            while (p < end && is_blank(*p))
                p++;
            if (p < end && *p != ',') {
                ap_error(a, line, (size_t)(p - base) + 1, "',' expected after a quoted item");
                bad = 1;
                break;
            }
        } else {
            while (p < end && *p != ',')
                p++;
            const char *e = p;
            while (e > start && is_blank(e[-1]))
                e--;
            buf_set(&q, start, (size_t)(e - start));
        }
        if (q.len == 0 || add_item(out, q.data, q.len, &msg) < 0) {
            ap_error(a, line, col, msg ? msg : "empty item");
            bad = 1;
        }
    }
    buf_free(&q);
    return bad;
}

/* The name at the start of a line; sets *rest to the byte after ':'.
 * 0, or -1 (error reported). */
static int parse_name(struct ap *a, const char *p, const char *end, unsigned line,
                      buf_t *name, const char **rest)
{
    const char *base = p;
    buf_reset(name);
    if (*p == '"') {
        p = unquote(p, end, name);
        if (p == NULL) {
            ap_error(a, line, 1, "unterminated quoted name");
            return -1;
        }
    } else {
        while (p < end && *p != ':' && !is_blank(*p)) {
            if (!addr_byte_ok((unsigned char)*p)) {
                ap_error(a, line, (size_t)(p - base) + 1, "bad character in alias name");
                return -1;
            }
            buf_append_char(name, (char)tolower((unsigned char)*p));
            p++;
        }
    }
    while (p < end && is_blank(*p))
        p++;
    if (p >= end || *p != ':') {
        ap_error(a, line, (size_t)(p - base) + 1, "':' expected after the alias name");
        return -1;
    }
    if (name->len == 0 || name->len > ALIAS_NAME_MAX || memchr(name->data, '\0', name->len)) {
        ap_error(a, line, 1, "bad alias name");
        return -1;
    }
    for (size_t i = 0; i < name->len; i++)
        name->data[i] = (char)tolower((unsigned char)name->data[i]);
    *rest = p + 1;
    return 0;
}

/* Hand a finished entry to fn; an entry without items is an error. */
static int flush_entry(struct ap *a, buf_t *name, struct alias_list *items, unsigned line,
                       int bad, alias_entry_fn *fn, void *arg)
{
    int rc = 0;
    if (name->len > 0 && !bad) {
        if (items->n == 0)
            ap_error(a, line, 1, "alias has no value");
        else if (a->nerr == 0)
            rc = fn(name->data, items, line, arg);
    }
    alias_list_free(items);
    buf_reset(name);
    return rc;
}

/* The physical line at p: its end *le, first non-blank *s, the next line
 * *next_r; 1, -1 (it holds a NUL: reported), 0 at the end or after too
 * many errors. */
static int next_line(struct ap *a, const char *p, const char *end, unsigned *line,
                     const char **le, const char **s, const char **next_r)
{
    if (p >= end || a->nerr >= ALIAS_ERRORS_MAX)
        return 0;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    *le = nl ? nl : end;
    *next_r = nl ? nl + 1 : end;
    (*line)++;
    for (*s = p; *s < *le && is_blank(**s); (*s)++)
        ;
    if (memchr(p, '\0', (size_t)(*le - p)) != NULL) {
        ap_error(a, *line, 1, "NUL byte in line");
        return -1;
    }
    return 1;
}

int aliases_parse(const char *fname, const char *text, size_t len, alias_entry_fn *fn,
                  void *arg, buf_t *err)
{
    struct ap a = { fname, err, 0 };
    const char *p = text, *end = text + len;
    buf_t name;
    struct alias_list items;
    buf_init(&name, 64);
    alias_list_init(&items);
    unsigned line = 0, first = 0;
    int bad = 0, rc = 0;
    const char *le, *s, *next;
    int ok;
    while (rc == 0 && (ok = next_line(&a, p, end, &line, &le, &s, &next)) != 0) {
        if (ok < 0) {
            bad = 1;
        } else if (s == le || *s == '#') {
            /* blank or comment: neither starts nor ends an entry */
        } else if (s != p) {
            if (name.len == 0 && !bad) {
                ap_error(&a, line, 1, "continuation line without an alias before it");
            } else if (!bad) {
                bad = parse_items(&a, s, le, line, p, &items);
            }
        } else {
            rc = flush_entry(&a, &name, &items, first, bad, fn, arg);
            bad = 0;
            first = line;
            const char *rest;
            if (parse_name(&a, p, le, line, &name, &rest) < 0) {
                bad = 1;
                buf_set(&name, "?", 1);     /* swallow its continuation lines */
            } else {
                bad = parse_items(&a, rest, le, line, p, &items);
            }
        }
        p = next;
    }
    if (rc == 0)
        rc = flush_entry(&a, &name, &items, first, bad, fn, arg);
    alias_list_free(&items);
    buf_free(&name);
    return rc != 0 ? -abs(rc) : a.nerr;
}

int aliases_parse_list(const char *fname, const char *text, size_t len,
                       struct alias_list *out, buf_t *err)
{
    struct ap a = { fname, err, 0 };
    const char *p = text, *end = text + len;
    unsigned line = 0;
    const char *le, *s, *next;
    int ok;
    while ((ok = next_line(&a, p, end, &line, &le, &s, &next)) != 0) {
        if (ok > 0 && s < le && *s != '#')
            parse_items(&a, s, le, line, p, out);
        p = next;
    }
    return a.nerr;
}

void aliases_encode(const struct alias_list *items, buf_t *out)
{
    buf_reset(out);
    for (size_t i = 0; i < items->n; i++) {
        buf_append_char(out, (char)items->v[i].kind);
        buf_append(out, items->v[i].value, strlen(items->v[i].value) + 1);
    }
}

int aliases_decode(const unsigned char *p, size_t n, struct alias_list *out)
{
    size_t i = 0;
    while (i < n) {
        int k = p[i];
        if (k != AK_ADDR && k != AK_PIPE && k != AK_FILE && k != AK_INCLUDE && k != AK_LOCAL)
            return -1;
        const unsigned char *z = memchr(p + i + 1, '\0', n - i - 1);
        if (z == NULL || out->n >= ALIAS_ITEMS_MAX)
            return -1;
        alias_list_add(out, (enum alias_kind)k, (const char *)p + i + 1,
                       (size_t)(z - (p + i + 1)));
        i = (size_t)(z - p) + 1;
    }
    return 0;
}
