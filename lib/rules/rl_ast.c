/*
 * rl_ast.c - what every compiler phase shares: the node arena (the whole AST
 * is freed at once after code generation), diagnostics "file:line:col:
 * message", the file table, type and status names, and the "did you mean"
 * suggestion (edit distance). No knowledge of the grammar here.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "util/log.h"
#include "rules/rl_int.h"

void *rl_arena_alloc(struct rl_arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    struct rl_arena_blk *b = a->head;
    if (b == NULL || b->cap - b->used < n) {
        size_t cap = n > 16384 ? n : 16384;
        b = xmalloc(sizeof(*b) + cap);
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    a->total += n;
    memset(p, 0, n);
    return p;
}

void rl_arena_free(struct rl_arena *a)
{
    while (a->head) {
        struct rl_arena_blk *n = a->head->next;
        free(a->head);
        a->head = n;
    }
    a->total = 0;
}

struct rl_node *rl_node_new(struct rl_cc *cc, int kind, int file, int line, int col)
{
    struct rl_node *n = rl_arena_alloc(&cc->arena, sizeof(*n));
    n->kind = (uint8_t)kind;
    n->file = (uint16_t)file;
    n->line = line;
    n->col = col;
    n->ref = -1;
    return n;
}

int rl_cc_file(struct rl_cc *cc, const char *path)
{
    if (cc->nfiles == cc->capfiles) {
        cc->capfiles = cc->capfiles ? cc->capfiles * 2 : 8;
        cc->files = xrealloc(cc->files, sizeof(char *) * (size_t)cc->capfiles);
    }
    cc->files[cc->nfiles] = xstrdup(path);
    return cc->nfiles++;
}

#define RL_MAX_ERRORS 100

void rl_error(struct rl_cc *cc, int file, int line, int col, const char *fmt, ...)
{
    cc->nerr++;
    struct rl_diag *d = cc->diags;
    if (d->n >= RL_MAX_ERRORS)
        return;
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 8;
        d->v = xrealloc(d->v, sizeof(*d->v) * (size_t)d->cap);
    }
    buf_t b;
    buf_init(&b, 96);
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    if (d->n == RL_MAX_ERRORS - 1)
        buf_set(&b, "too many errors", 15);
    struct rl_diag_item *e = &d->v[d->n++];
    e->file = xstrdup(file >= 0 && file < cc->nfiles ? cc->files[file] : "?");
    e->line = line;
    e->col = col;
    e->msg = buf_steal(&b);
    buf_free(&b);     /* buf_steal re-initialises b */
}

void rl_diag_free(struct rl_diag *d)
{
    for (int i = 0; i < d->n; i++) {
        free(d->v[i].file);
        free(d->v[i].msg);
    }
    free(d->v);
    memset(d, 0, sizeof(*d));
}

void rl_diag_format(buf_t *out, const struct rl_diag_item *e)
{
    buf_printf(out, "%s:%d:%d: %s", e->file, e->line, e->col, e->msg);
}

/* ---- names ------------------------------------------------------------------ */
static const char *const tbase_names[T__COUNT] = {
    [T_ERR] = "error", [T_VOID] = "nothing", [T_BOOL] = "bool", [T_INT] = "int",
    [T_STRING] = "string", [T_IP] = "ip", [T_CIDR] = "cidr", [T_ADDR] = "address",
    [T_FQDN] = "fqdn", [T_REGEX] = "regex", [T_LIST] = "list", [T_GROUP] = "group",
    [T_FILE] = "file", [T_SERVICE] = "service", [T_STATUS] = "status", [T_NS] = "namespace",
};

const char *rl_tbase_name(enum rl_tbase b)
{
    return (unsigned)b < T__COUNT ? tbase_names[b] : "?";
}

const char *rl_type_name(rl_type t, char *tmp, size_t n)
{
    enum rl_tbase b = TBASE(t);
    if (b == T_LIST || b == T_FILE) {
        snprintf(tmp, n, "%s%s", b == T_LIST ? "list of " : "file:",
                 rl_tbase_name((enum rl_tbase)TELEM(t)));
        return tmp;
    }
    if (b == T_SERVICE) {
        snprintf(tmp, n, "%s service", rl_svc_kind_name((enum rl_svc_kind)TELEM(t)));
        return tmp;
    }
    return rl_tbase_name(b);
}

static const char *const status_names[] = {
    [V_NEXT] = "next", [V_ACCEPT] = "accept", [V_FACCEPT] = "faccept",
    [V_REJECT] = "reject", [V_DENY] = "deny", [V_DEFER] = "defer",
    [V_QUARANTINE] = "quarantine",
};
#define NSTATUS ((int)(sizeof(status_names) / sizeof(status_names[0])))

const char *rl_status_name(int v)
{
    return v >= 0 && v < NSTATUS ? status_names[v] : verdict_name((enum verdict)v);
}

int rl_status_parse(const char *s, size_t n)
{
    for (int i = 0; i < NSTATUS; i++)
        if (strlen(status_names[i]) == n && memcmp(status_names[i], s, n) == 0)
            return i;
    return -1;
}

/* Levenshtein distance, case-insensitive, bounded inputs. */
static int edit_distance(const char *a, size_t na, const char *b, size_t nb)
{
    if (na > 63 || nb > 63)
        return 99;
    int row[64];
    for (size_t j = 0; j <= nb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= na; i++) {
        int prev = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= nb; j++) {
            int cur = row[j];
            int cost = (a[i - 1] | 0x20) == (b[j - 1] | 0x20) ? 0 : 1;
            int v = prev + cost;
            if (row[j] + 1 < v)
                v = row[j] + 1;
            if (row[j - 1] + 1 < v)
                v = row[j - 1] + 1;
            row[j] = v;
            prev = cur;
        }
    }
    return row[nb];
}

int rl_did_you_mean(const char *name, size_t n, const char *const *cands, int ncands)
{
    int best = -1, bestd = 99;
    int limit = n <= 3 ? 1 : n <= 6 ? 2 : 3;
    for (int i = 0; i < ncands; i++) {
        if (cands[i] == NULL)
            continue;
        int d = edit_distance(name, n, cands[i], strlen(cands[i]));
        if (d < bestd) {
            bestd = d;
            best = i;
        }
    }
    return bestd <= limit ? best : -1;
}

void *rl_arena_alloc_grow(struct rl_arena *a, void *old, size_t oldn, size_t newn)
{
    void *p = rl_arena_alloc(a, newn);
    if (old && oldn)
        memcpy(p, old, oldn);
    return p;
}

char *rl_arena_strndup(struct rl_arena *a, const char *s, size_t n)
{
    char *p = rl_arena_alloc(a, n + 1);
    memcpy(p, s, n);
    return p;
}

const char *rl_basename(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}
