/*
 * rl_check.c - the checker: loads imports (cycles reported), builds each
 * module's symbols (objects become constants, services are instantiated),
 * resolves every name, types every expression, and enforces at compile
 * time what must never be found at run time: unknown names, wrong types,
 * wrong arity, a context value or mutation used in a stage where it does
 * not exist / is not allowed, `return` in an action, unreachable rules.
 * It rewrites resolved nodes in place (N_NAME -> N_LOCAL / N_CTX /
 * N_CONSTREF) so rl_compile.c only emits code.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "rl_int.h"

enum { SYM_OBJECT = 1, SYM_SERVICE, SYM_IMPORT };

struct rl_sym {
    const char *name; uint32_t len;
    int kind;
    rl_type type;
    int k;                        /* constant index (objects, services) */
    struct rl_module *mod;        /* SYM_IMPORT */
    const char *path;             /* SYM_IMPORT: as written */
    int line, col;
};
struct rl_syms { struct rl_sym *v; int n, cap; };

struct local { const char *name; uint32_t len; int slot; rl_type type; int depth; };

struct checker {
    struct rl_cc *cc;
    struct rl_module *mod;
    int stage;                    /* enum stage, or -1 outside stages */
    int in_action;
    struct local locals[RL_LOCALS_MAX];
    int nlocals, depth, nslots, maxslots, slots_reported;
    int import_stack[32]; int nstack;
};

#define ERR(ck, n, ...) rl_error((ck)->cc, (n)->file, (n)->line, (n)->col, __VA_ARGS__)

/* Report "MESSAGE; did you mean 'X'?" at node at: the suggestion is the
 * candidate closest to name (none when nothing is close). */
static void err_unknown(struct checker *ck, const struct rl_node *at, const char *name,
                        size_t n, const char *const *cands, int ncands, const char *fmt, ...)
    PRINTF_LIKE(7, 8);
static void err_unknown(struct checker *ck, const struct rl_node *at, const char *name,
                        size_t n, const char *const *cands, int ncands, const char *fmt, ...)
{
    buf_t m;
    buf_init(&m, 64);
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&m, fmt, ap);
    va_end(ap);
    int k = rl_did_you_mean(name, n, cands, ncands);
    if (k >= 0)
        buf_printf(&m, "; did you mean '%s'?", cands[k]);
    ERR(ck, at, "%s", m.data);
    buf_free(&m);
}

static rl_type check_expr(struct checker *ck, struct rl_node *n);

static int name_is(const struct rl_node *n, const char *s)
{
    return strlen(s) == n->slen && memcmp(n->s, s, n->slen) == 0;
}

static char *tn(rl_type t, char *tmp)
{
    return (char *)rl_type_name(t, tmp, 48);
}

/* ---- symbols ----------------------------------------------------------------------- */
static struct rl_sym *sym_find(struct rl_module *m, const char *s, size_t n)
{
    struct rl_syms *t = m->syms;
    for (int i = 0; t && i < t->n; i++)
        if (t->v[i].len == n && memcmp(t->v[i].name, s, n) == 0)
            return &t->v[i];
    return NULL;
}

static struct rl_sym *sym_add(struct checker *ck, const struct rl_node *d, int kind)
{
    struct rl_syms *t = ck->mod->syms;
    struct rl_sym *old = sym_find(ck->mod, d->s, d->slen);
    if (old) {
        ERR(ck, d, "'%.*s' is already defined at line %d", (int)d->slen, d->s, old->line);
        return NULL;
    }
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->v = rl_arena_alloc_grow(&ck->cc->arena, t->v, sizeof(*t->v) * (size_t)t->n,
                                   sizeof(*t->v) * (size_t)t->cap);
    }
    struct rl_sym *s = &t->v[t->n++];
    memset(s, 0, sizeof(*s));
    s->name = d->s;
    s->len = d->slen;
    s->kind = kind;
    s->line = d->line;
    s->col = d->col;
    return s;
}

/* Candidates for "did you mean": locals, module symbols, context, builtins. */
static void suggest(struct checker *ck, const char *s, size_t n, buf_t *out)
{
    const char *c[256];
    int nc = 0;
    for (int i = 0; i < ck->nlocals && nc < 256; i++)
        c[nc++] = rl_arena_strndup(&ck->cc->arena, ck->locals[i].name, ck->locals[i].len);
    struct rl_syms *t = ck->mod->syms;
    for (int i = 0; t && i < t->n && nc < 256; i++)
        c[nc++] = rl_arena_strndup(&ck->cc->arena, t->v[i].name, t->v[i].len);
    for (int i = 0; i < rl_ctx_count && nc < 256; i++) {
        const char *nm = rl_ctx_table[i].name;
        const char *dot = strchr(nm, '.');
        c[nc++] = dot ? rl_arena_strndup(&ck->cc->arena, nm, (size_t)(dot - nm)) : nm;
    }
    for (int i = 0; i < rl_nbuiltins && nc < 256; i++)
        c[nc++] = rl_builtins[i].name;
    int k = rl_did_you_mean(s, n, c, nc);
    if (k >= 0)
        buf_printf(out, "; did you mean '%s'?", c[k]);
}

/* ---- locals -------------------------------------------------------------------------- */
static struct local *local_find(struct checker *ck, const char *s, size_t n)
{
    for (int i = ck->nlocals - 1; i >= 0; i--)
        if (ck->locals[i].len == n && memcmp(ck->locals[i].name, s, n) == 0)
            return &ck->locals[i];
    return NULL;
}

static int slots(struct checker *ck, const struct rl_node *at, int n)
{
    if (ck->nslots + n > RL_LOCALS_MAX) {
        if (!ck->slots_reported++)
            ERR(ck, at, "too many local variables (at most %d live in a rule)", RL_LOCALS_MAX - 2);
        return 0;
    }
    int s = ck->nslots;
    ck->nslots += n;
    if (ck->nslots > ck->maxslots)
        ck->maxslots = ck->nslots;
    return s;
}

static int local_add(struct checker *ck, const struct rl_node *at, int slot, rl_type t)
{
    struct local *old = local_find(ck, at->s, at->slen);
    if (old && old->depth == ck->depth) {
        ERR(ck, at, "'%.*s' is already defined in this block", (int)at->slen, at->s);
        return -1;
    }
    if (ck->nlocals >= RL_LOCALS_MAX)
        return -1;
    struct local *l = &ck->locals[ck->nlocals++];
    l->name = at->s;
    l->len = at->slen;
    l->slot = slot;
    l->type = t;
    l->depth = ck->depth;
    return 0;
}

static void scope_end(struct checker *ck)
{
    while (ck->nlocals > 0 && ck->locals[ck->nlocals - 1].depth >= ck->depth)
        ck->nlocals--;
    ck->depth--;
}

/* ---- constants -------------------------------------------------------------------------- */
static int is_textual(enum rl_tbase b) { return b == T_STRING || b == T_ADDR || b == T_FQDN; }

/* Turn a string literal into a typed constant of `kind` (compile-time
 * validation: `client.ip == "10.0.0.1"`, `bcc("a@b")`). 0 ok / -1 reported. */
static int coerce_literal(struct checker *ck, struct rl_node *n, const char *kind)
{
    struct rl_value v;
    char err[200];
    int r = rl_object_parse(ck->cc->prog, kind, strlen(kind), n->s, n->slen, &v, err, sizeof(err));
    if (r < 0) {
        ERR(ck, n, "%s", err);
        n->type = TY(T_ERR, 0);
        return -1;
    }
    n->kind = N_CONSTREF;
    n->ref = rl_program_const(ck->cc->prog, &v);
    n->type = TY(v.t, v.et);
    return 0;
}

static const char *kind_for(enum rl_tbase b)
{
    switch (b) {
    case T_IP: return "ip";
    case T_CIDR: return "cidr";
    case T_ADDR: return "address";
    case T_FQDN: return "fqdn";
    case T_REGEX: return "regex";
    default: return NULL;
    }
}

/* Can a value of type `have` (node n) be used where `want` is expected?
 * Coerces string literals; textual types convert into each other. */
static int assignable(struct checker *ck, rl_type want, struct rl_node *n)
{
    enum rl_tbase w = TBASE(want), h = TBASE(n->type);
    if (w == T_ERR || h == T_ERR || want == n->type)
        return 1;
    if (n->kind == N_STRING && kind_for(w)) {
        coerce_literal(ck, n, kind_for(w));
        return 1;
    }
    if (is_textual(w) && is_textual(h))
        return 1;
    if (w == T_LIST && h == T_LIST)
        return TELEM(want) == T_ERR || TELEM(n->type) == T_ERR || TELEM(want) == TELEM(n->type) ||
               (is_textual((enum rl_tbase)TELEM(want)) && is_textual((enum rl_tbase)TELEM(n->type)));
    return w == h && w != T_LIST && w != T_FILE && w != T_SERVICE;
}

/* ---- objects ---------------------------------------------------------------------------- */
static rl_type typed_literal(struct checker *ck, struct rl_node *n)
{
    struct rl_value v;
    char err[200];
    int r = rl_object_parse(ck->cc->prog, n->c->s, n->c->slen, n->s, n->slen, &v, err, sizeof(err));
    if (r == -2) {
        err_unknown(ck, n->c, n->c->s, n->c->slen, rl_kind_names, rl_nkinds,
                    "unknown object kind '%.*s'", (int)n->c->slen, n->c->s);
        return n->type = TY(T_ERR, 0);
    }
    if (r < 0) {
        rl_error(ck->cc, n->file, n->ref2, (int)n->ival, "%s", err);
        return n->type = TY(T_ERR, 0);
    }
    n->kind = N_CONSTREF;
    n->ref = rl_program_const(ck->cc->prog, &v);
    return n->type = TY(v.t, v.et);
}

static rl_type group_literal(struct checker *ck, struct rl_node *n)
{
    int count = 0;
    for (struct rl_node *e = n->a; e; e = e->next)
        count++;
    struct rl_group *g = xcalloc(1, sizeof(*g));
    g->v = xcalloc((size_t)(count ? count : 1), sizeof(*g->v));
    rl_program_own(ck->cc->prog, g, rl_group_free);
    int elem = -1;
    for (struct rl_node *e = n->a; e; e = e->next) {
        rl_type t = check_expr(ck, e);
        if (TBASE(t) == T_ERR)
            continue;
        if (e->kind != N_CONSTREF) {
            ERR(ck, e, "group members must be constants (typed literals or objects)");
            continue;
        }
        const struct rl_value *v = &ck->cc->prog->k[e->ref];
        if (v->t == T_GROUP) {        /* flatten a nested group */
            const struct rl_group *sub = v->u.p;
            g->v = xrealloc(g->v, sizeof(*g->v) * (g->n + sub->n + (size_t)count));
            for (uint32_t i = 0; i < sub->n; i++)
                g->v[g->n++] = sub->v[i];
            elem = elem == -1 || elem == TELEM(t) ? TELEM(t) : T_ERR;
            continue;
        }
        if (v->t == T_FILE || v->t == T_LIST || v->t == T_SERVICE) {
            ERR(ck, e, "a group cannot hold a %s", rl_tbase_name((enum rl_tbase)v->t));
            continue;
        }
        g->v[g->n++] = *v;
        elem = elem == -1 || elem == v->t ? v->t : T_ERR;
    }
    struct rl_value gv = { .t = T_GROUP, .et = (uint8_t)(elem < 0 ? T_ERR : elem) };
    gv.u.p = g;
    n->kind = N_CONSTREF;
    n->ref = rl_program_const(ck->cc->prog, &gv);
    return n->type = TY(T_GROUP, gv.et);
}

static rl_type file_literal(struct checker *ck, struct rl_node *n)
{
    char err[300];
    enum rl_tbase et;
    int family;
    if (rl_kind_find(n->c->s, n->c->slen, &et, &family) < 0 || !rl_file_kind_ok(et)) {
        err_unknown(ck, n->c, n->c->s, n->c->slen, rl_kind_names, rl_nkinds,
                    "unknown file type '%.*s'", (int)n->c->slen, n->c->s);
        return n->type = TY(T_ERR, 0);
    }
    buf_t path;
    buf_init(&path, 128);
    if (n->slen && n->s[0] != '/')
        buf_printf(&path, "%s/", ck->mod->dir);
    buf_append(&path, n->s, n->slen);
    struct rl_fileobj *f = rl_file_new(path.data, et, family);
    buf_free(&path);
    rl_program_own(ck->cc->prog, f, rl_file_free);
    if (rl_file_load(f, err, sizeof(err)) < 0)
        ERR(ck, n, "%s", err);
    struct rl_value fv = { .t = T_FILE, .et = (uint8_t)et };
    fv.u.p = f;
    n->kind = N_CONSTREF;
    n->ref = rl_program_const(ck->cc->prog, &fv);
    return n->type = TY(T_FILE, et);
}

static void object_decl(struct checker *ck, struct rl_node *d)
{
    struct rl_node *e = d->a;
    rl_type t = check_expr(ck, e);
    struct rl_sym *s = sym_add(ck, d, SYM_OBJECT);
    if (s == NULL)
        return;
    s->type = t;
    s->k = -1;
    if (TBASE(t) == T_ERR)
        return;
    if (e->kind != N_CONSTREF) {
        ERR(ck, e, "an object must be a constant (typed literal, group or file)");
        s->type = TY(T_ERR, 0);
        return;
    }
    s->k = e->ref;
    struct rl_value *v = &ck->cc->prog->k[e->ref];
    if (v->t == T_GROUP) {
        struct rl_group *g = (struct rl_group *)v->u.p;
        if (g->name == NULL)
            g->name = rl_program_strndup(ck->cc->prog, d->s, d->slen);
    }
}

/* ---- services ---------------------------------------------------------------------------- */
static void service_decl(struct checker *ck, struct rl_node *d)
{
    int kind = rl_svc_kind_parse(d->a->s, d->a->slen);
    if (kind == 0) {
        static const char *const kinds[] = { "csv", "cmd", "smtp" };
        err_unknown(ck, d->a, d->a->s, d->a->slen, kinds, 3,
                    "unknown service kind '%.*s' (known: csv, cmd, smtp)", (int)d->a->slen, d->a->s);
        sym_add(ck, d, SYM_SERVICE);
        return;
    }
    const char *names[16];
    struct rl_value vals[16];
    int nopt = 0, bad = 0;
    for (struct rl_node *o = d->b; o; o = o->next) {
        int found = -1;
        const char *cands[16];
        int nc = 0;
        for (int i = 0; i < rl_nsvc_options; i++) {
            if ((int)rl_svc_options[i].kind != kind)
                continue;
            if (nc < 16 && rl_svc_options[i].unsupported == NULL)
                cands[nc++] = rl_svc_options[i].name;
            if (name_is(o, rl_svc_options[i].name))
                found = i;
        }
        if (found >= 0 && rl_svc_options[found].unsupported) {
            ERR(ck, o, "option '%s' is not supported for a %s service: %s",
                rl_svc_options[found].name, rl_svc_kind_name((enum rl_svc_kind)kind),
                rl_svc_options[found].unsupported);
            bad = 1;
            continue;
        }
        if (found < 0) {
            err_unknown(ck, o, o->s, o->slen, cands, nc,
                        "unknown option '%.*s' for a %s service", (int)o->slen, o->s, rl_svc_kind_name((enum rl_svc_kind)kind));
            bad = 1;
            continue;
        }
        for (int i = 0; i < nopt; i++)
            if (strcmp(names[i], rl_svc_options[found].name) == 0) {
                ERR(ck, o, "option '%s' given twice", names[i]);
                bad = 1;
            }
        rl_type t = check_expr(ck, o->a);
        enum rl_tbase want = rl_svc_options[found].type;
        char tmp[48];
        if (TBASE(t) == T_ERR) {
            bad = 1;
            continue;
        }
        if (o->a->kind != N_CONSTREF && o->a->kind != N_STRING && o->a->kind != N_INT &&
            o->a->kind != N_BOOL && o->a->kind != N_LIST) {
            ERR(ck, o->a, "option '%s' must be a constant", rl_svc_options[found].name);
            bad = 1;
            continue;
        }
        if (TBASE(t) != want && !(want == T_STRING && is_textual(TBASE(t)))) {
            ERR(ck, o->a, "option '%s' must be %s, found %s", rl_svc_options[found].name,
                want == T_LIST ? "a list of strings" : rl_tbase_name(want), tn(t, tmp));
            bad = 1;
            continue;
        }
        if (nopt >= 16)
            continue;
        names[nopt] = rl_svc_options[found].name;
        struct rl_value *v = &vals[nopt++];
        memset(v, 0, sizeof(*v));
        if (o->a->kind == N_STRING) {
            v->t = T_STRING;
            v->u.s = o->a->s;
            v->len = o->a->slen;
        } else if (o->a->kind == N_INT || o->a->kind == N_BOOL) {
            v->t = o->a->kind == N_INT ? T_INT : T_BOOL;
            v->u.i = o->a->ival;
            const struct rl_svc_option *so = &rl_svc_options[found];
            if (v->t == T_INT && so->max > so->min && (v->u.i < so->min || v->u.i > so->max)) {
                const char *u = strcmp(so->name, "timeout") == 0 ? "s" : "";
                ERR(ck, o->a, "option '%s' must be between %lld%s and %lld%s, found %lld%s%s",
                    so->name, (long long)so->min, u, (long long)so->max, u,
                    (long long)v->u.i, u,
                    *u ? " (no stage evaluation runs longer than limits.rules_timeout)" : "");
                bad = 1;
                nopt--;
                continue;
            }
        } else if (o->a->kind == N_LIST) {
            int cnt = 0;
            for (struct rl_node *e = o->a->a; e; e = e->next)
                cnt++;
            struct rl_list *l = rl_arena_alloc(&ck->cc->arena,
                                               sizeof(*l) + sizeof(l->v[0]) * (size_t)cnt);
            for (struct rl_node *e = o->a->a; e; e = e->next) {
                if (e->kind != N_STRING) {
                    ERR(ck, e, "option '%s' must be a list of strings", names[nopt - 1]);
                    bad = 1;
                    break;
                }
                struct rl_value *ev = &l->v[l->n++];
                ev->t = T_STRING;
                ev->u.s = e->s;
                ev->len = e->slen;
            }
            v->t = T_LIST;
            v->u.p = l;
        } else {
            *v = ck->cc->prog->k[o->a->ref];
        }
    }
    for (int i = 0; i < rl_nsvc_options; i++) {
        if ((int)rl_svc_options[i].kind != kind || !rl_svc_options[i].required)
            continue;
        int have = 0;
        for (int j = 0; j < nopt; j++)
            have |= strcmp(names[j], rl_svc_options[i].name) == 0;
        if (!have && !bad) {
            ERR(ck, d, "a %s service needs option '%s'", rl_svc_kind_name((enum rl_svc_kind)kind),
                rl_svc_options[i].name);
            bad = 1;
        }
    }
    struct rl_sym *s = sym_add(ck, d, SYM_SERVICE);
    if (s == NULL || bad) {
        if (s)
            s->type = TY(T_ERR, 0);
        return;
    }
    char *nm = rl_program_strndup(ck->cc->prog, d->s, d->slen);
    char err[256];
    struct rl_service *svc = rl_service_new((enum rl_svc_kind)kind, nm, ck->mod->dir, names, vals,
                                            nopt, err, sizeof(err));
    if (svc == NULL) {
        ERR(ck, d, "%s", err);
        s->type = TY(T_ERR, 0);
        return;
    }
    struct rl_program *p = ck->cc->prog;
    p->svcs = xrealloc(p->svcs, sizeof(*p->svcs) * (size_t)(p->nsvcs + 1));
    rl_service_set_index(svc, p->nsvcs);
    p->svcs[p->nsvcs++] = svc;
    struct rl_value sv = { .t = T_SERVICE, .et = (uint8_t)kind };
    sv.u.p = svc;
    s->k = rl_program_const(p, &sv);
    s->type = TY(T_SERVICE, kind);
}

/* ---- imports ------------------------------------------------------------------------------ */
static void import_decl(struct checker *ck, struct rl_node *d)
{
    struct rl_sym *s = sym_add(ck, d->a, SYM_IMPORT);
    if (s == NULL)
        return;
    s->type = TY(T_NS, 0);
    buf_t path;
    buf_init(&path, 128);
    if (d->slen && d->s[0] != '/')
        buf_printf(&path, "%s/", ck->mod->dir);
    buf_append(&path, d->s, d->slen);
    if (ck->mod->depth >= 16) {
        ERR(ck, d, "imports nested too deeply");
        buf_free(&path);
        return;
    }
    char real[PATH_MAX];
    if (memchr(d->s, '\0', d->slen) || realpath(path.data, real) == NULL) {
        ERR(ck, d, "cannot import '%.*s': %s", (int)d->slen, d->s, strerror(errno ? errno : ENOENT));
        buf_free(&path);
        return;
    }
    buf_free(&path);
    for (int i = 0; i < ck->cc->nmods; i++) {
        struct rl_module *m = ck->cc->mods[i];
        if (m->real == NULL || strcmp(m->real, real) != 0)
            continue;
        if (m->state == 1) {
            buf_t chain;
            buf_init(&chain, 128);
            buf_append_str(&chain, "cyclic import: ");
            int from = 0;
            for (int k = 0; k < ck->nstack; k++)
                if (ck->cc->mods[ck->import_stack[k]] == m)
                    from = k;
            for (int k = from; k < ck->nstack; k++)
                buf_printf(&chain, "%s -> ", rl_basename(ck->cc->files[ck->cc->mods[ck->import_stack[k]]->file]));
            buf_append_str(&chain, rl_basename(real));
            ERR(ck, d, "%s", chain.data);
            buf_free(&chain);
            return;
        }
        s->mod = m;
        return;
    }
    FILE *fp = fopen(real, "r");
    if (fp == NULL) {
        ERR(ck, d, "cannot import '%.*s': %s", (int)d->slen, d->s, strerror(errno));
        return;
    }
    buf_t src;
    buf_init(&src, 4096);
    char chunk[4096];
    size_t r;
    while ((r = fread(chunk, 1, sizeof(chunk), fp)) > 0)
        buf_append(&src, chunk, r);
    fclose(fp);
    buf_t disp;
    buf_init(&disp, 128);
    if (d->s[0] != '/' && strcmp(ck->mod->ddir, ".") != 0)
        buf_printf(&disp, "%s/", ck->mod->ddir);
    buf_append(&disp, d->s, d->slen);
    int before = ck->cc->nerr;
    struct rl_module *m = rl_module_load(ck->cc, disp.data, src.data, src.len, ck->mod->depth + 1);
    m->real = rl_arena_strndup(&ck->cc->arena, real, strlen(real));
    buf_free(&disp);
    buf_free(&src);
    s->mod = m;
    if (ck->cc->nerr == before)     /* no checking on top of syntax errors */
        rl_check_module(ck->cc, m, ck->import_stack, ck->nstack);
    else
        m->syms = rl_arena_alloc(&ck->cc->arena, sizeof(*m->syms));
}

/* ---- names and members --------------------------------------------------------------------- */
static rl_type ctx_ref(struct checker *ck, struct rl_node *n, int id)
{
    const struct rl_ctxdef *c = &rl_ctx_table[id];
    if (ck->stage >= 0 && !(c->stages & STAGE_BIT(ck->stage))) {
        buf_t m;
        buf_init(&m, 96);
        buf_printf(&m, "'%s' is not available at stage %s (available at:", c->name,
                   stage_name((enum stage)ck->stage));
        for (int s = 0; s < STAGE__COUNT; s++)
            if (c->stages & STAGE_BIT(s))
                buf_printf(&m, " %s", stage_name((enum stage)s));
        buf_append_str(&m, ")");
        ERR(ck, n, "%s", m.data);
        buf_free(&m);
        return n->type = TY(T_ERR, 0);
    }
    n->kind = N_CTX;
    n->ref = id;
    return n->type = c->type;
}

static rl_type sym_ref(struct checker *ck, struct rl_node *n, struct rl_sym *s)
{
    if (s->kind == SYM_IMPORT) {
        ERR(ck, n, "'%.*s' is an import alias; name one of its objects as %.*s::NAME",
            (int)n->slen, n->s, (int)n->slen, n->s);
        return n->type = TY(T_ERR, 0);
    }
    if (TBASE(s->type) == T_ERR || s->k < 0)
        return n->type = TY(T_ERR, 0);
    n->kind = s->kind == SYM_SERVICE ? N_SVCREF : N_CONSTREF;
    n->ref = s->k;
    return n->type = s->type;
}

static rl_type name_ref(struct checker *ck, struct rl_node *n)
{
    struct local *l = local_find(ck, n->s, n->slen);
    if (l) {
        n->kind = N_LOCAL;
        n->ref = l->slot;
        return n->type = l->type;
    }
    struct rl_sym *s = sym_find(ck->mod, n->s, n->slen);
    if (s)
        return sym_ref(ck, n, s);
    int id = rl_ctx_find(n->s, n->slen);
    if (id >= 0 && !rl_ctx_table[id].is_method)
        return ctx_ref(ck, n, id);
    if (rl_ctx_is_namespace(n->s, n->slen))
        return n->type = TY(T_NS, 0);
    if (rl_builtin_find(n->s, n->slen) >= 0) {
        ERR(ck, n, "'%.*s' is a function; call it as %.*s(...)", (int)n->slen, n->s, (int)n->slen,
            n->s);
        return n->type = TY(T_ERR, 0);
    }
    if (rl_status_parse(n->s, n->slen) >= 0) {
        ERR(ck, n, "'%.*s' is a status; use it as 'return %.*s;'", (int)n->slen, n->s,
            (int)n->slen, n->s);
        return n->type = TY(T_ERR, 0);
    }
    buf_t m;
    buf_init(&m, 64);
    buf_printf(&m, "unknown name '%.*s'", (int)n->slen, n->s);
    suggest(ck, n->s, n->slen, &m);
    ERR(ck, n, "%s", m.data);
    buf_free(&m);
    return n->type = TY(T_ERR, 0);
}

static rl_type qname_ref(struct checker *ck, struct rl_node *n)
{
    struct rl_sym *imp = sym_find(ck->mod, n->s, n->slen);
    if (imp == NULL || imp->kind != SYM_IMPORT) {
        const char *c[64];
        int nc = 0;
        struct rl_syms *t = ck->mod->syms;
        for (int i = 0; t && i < t->n && nc < 64; i++)
            if (t->v[i].kind == SYM_IMPORT)
                c[nc++] = rl_arena_strndup(&ck->cc->arena, t->v[i].name, t->v[i].len);
        err_unknown(ck, n, n->s, n->slen, c, nc,
                    "unknown import alias '%.*s'", (int)n->slen, n->s);
        return n->type = TY(T_ERR, 0);
    }
    if (imp->mod == NULL)
        return n->type = TY(T_ERR, 0);       /* the import itself failed */
    struct rl_node *nm = n->a;
    struct rl_sym *s = sym_find(imp->mod, nm->s, nm->slen);
    if (s == NULL || s->kind == SYM_IMPORT) {
        const char *c[128];
        int nc = 0;
        struct rl_syms *t = imp->mod->syms;
        for (int i = 0; t && i < t->n && nc < 128; i++)
            if (t->v[i].kind != SYM_IMPORT)
                c[nc++] = rl_arena_strndup(&ck->cc->arena, t->v[i].name, t->v[i].len);
        err_unknown(ck, nm, nm->s, nm->slen, c, nc,
                    "'%.*s' has no object or service '%.*s'", (int)n->slen, n->s, (int)nm->slen, nm->s);
        return n->type = TY(T_ERR, 0);
    }
    return sym_ref(ck, n, s);
}

static rl_type ns_member(struct checker *ck, struct rl_node *n, int want_method)
{
    struct rl_node *ns = n->a;
    char full[96];
    snprintf(full, sizeof(full), "%.*s.%.*s", (int)ns->slen, ns->s, (int)n->slen, n->s);
    int id = rl_ctx_find(full, strlen(full));
    if (id >= 0 && rl_ctx_table[id].is_method == want_method) {
        n->s = rl_ctx_table[id].name;
        n->slen = (uint32_t)strlen(n->s);
        return ctx_ref(ck, n, id);
    }
    const char *c[32];
    int nc = 0;
    size_t nl = ns->slen;
    for (int i = 0; i < rl_ctx_count && nc < 32; i++)
        if (strncmp(rl_ctx_table[i].name, ns->s, nl) == 0 && rl_ctx_table[i].name[nl] == '.')
            c[nc++] = rl_ctx_table[i].name + nl + 1;
    buf_t m;
    buf_init(&m, 64);
    if (id >= 0)
        buf_printf(&m, "'%s' %s", full, want_method ? "is not a method" : "is a method; call it as "
                   "msg.header(\"Name\")");
    else
        buf_printf(&m, "'%.*s' has no %s '%.*s'", (int)ns->slen, ns->s,
                   want_method ? "method" : "field", (int)n->slen, n->s);
    int k = id >= 0 ? -1 : rl_did_you_mean(n->s, n->slen, c, nc);
    if (k >= 0)
        buf_printf(&m, "; did you mean '%s'?", c[k]);
    ERR(ck, n, "%s", m.data);
    buf_free(&m);
    return n->type = TY(T_ERR, 0);
}

/* The object of a member access: a bare namespace name is fine here. */
static rl_type object_of(struct checker *ck, struct rl_node *a)
{
    return a->kind == N_NAME ? name_ref(ck, a) : check_expr(ck, a);
}

static rl_type member(struct checker *ck, struct rl_node *n)
{
    rl_type t = object_of(ck, n->a);
    char tmp[48];
    if (TBASE(t) == T_NS)
        return ns_member(ck, n, 0);
    if (TBASE(t) == T_ERR)
        return n->type = t;
    if (TBASE(t) == T_ADDR) {
        if (name_is(n, "local_part")) {
            n->ref = 0;
            return n->type = TY(T_STRING, 0);
        }
        if (name_is(n, "domain")) {
            n->ref = 1;
            return n->type = TY(T_FQDN, 0);
        }
        static const char *const f[] = { "local_part", "domain" };
        err_unknown(ck, n, n->s, n->slen, f, 2, "an address has no field '%.*s'", (int)n->slen,
                    n->s);
        return n->type = TY(T_ERR, 0);
    }
    ERR(ck, n, "a value of type %s has no field '%.*s'", tn(t, tmp), (int)n->slen, n->s);
    return n->type = TY(T_ERR, 0);
}

/* ---- calls ------------------------------------------------------------------------------------ */
static int count_args(const struct rl_node *a)
{
    int n = 0;
    for (; a; a = a->next)
        n++;
    return n;
}

static void stages_list(unsigned mask, buf_t *m)
{
    int first = 1;
    for (int s = 0; s < STAGE__COUNT; s++)
        if (mask & STAGE_BIT(s)) {
            buf_printf(m, "%s%s", first ? "" : ", ", stage_name((enum stage)s));
            first = 0;
        }
}

/* Arity, argument types and stage of a builtin or service method. */
static void check_args(struct checker *ck, struct rl_node *call, const char *what, int min,
                       int max, const rl_type *types, int lead_opt, unsigned stages)
{
    int n = count_args(call->b);
    if (n < min || n > max) {
        if (min == max)
            ERR(ck, call, "%s expects %d argument%s, found %d", what, min, min == 1 ? "" : "s", n);
        else
            ERR(ck, call, "%s expects %d to %d arguments, found %d", what, min, max, n);
    }
    int i = 0, shift = lead_opt && n < max ? 1 : 0;
    char t1[48], t2[48];
    for (struct rl_node *a = call->b; a; a = a->next, i++) {
        rl_type t = check_expr(ck, a);
        int k = i + shift > 3 ? 3 : i + shift;
        if (TBASE(t) == T_VOID) {
            ERR(ck, a, "argument %d of %s has no value", i + 1, what);
            continue;
        }
        if (!assignable(ck, types[k], a))
            ERR(ck, a, "argument %d of %s must be %s, found %s", i + 1, what, tn(types[k], t1),
                tn(t, t2));
    }
    if (ck->stage >= 0 && !(stages & STAGE_BIT(ck->stage))) {
        buf_t m;
        buf_init(&m, 64);
        buf_printf(&m, "%s is not allowed at stage %s (allowed at: ", what,
                   stage_name((enum stage)ck->stage));
        stages_list(stages, &m);
        buf_append_str(&m, ")");
        ERR(ck, call, "%s", m.data);
        buf_free(&m);
    }
}

static rl_type method_call(struct checker *ck, struct rl_node *n)
{
    struct rl_node *m = n->a;
    rl_type ot = object_of(ck, m->a);
    char tmp[48], what[96];
    if (TBASE(ot) == T_NS) {
        rl_type t = ns_member(ck, m, 1);
        if (TBASE(t) == T_ERR) {
            for (struct rl_node *a = n->b; a; a = a->next)
                check_expr(ck, a);
            return n->type = t;
        }
        snprintf(what, sizeof(what), "'%s'", rl_ctx_table[m->ref].name);
        static const rl_type str1[4] = { TY(T_STRING, 0), TY(T_STRING, 0), TY(T_STRING, 0),
                                         TY(T_STRING, 0) };
        check_args(ck, n, what, 1, 1, str1, 0, STAGES_ALL);
        n->ref2 = 3;
        n->ref = m->ref;
        return n->type = t;
    }
    if (TBASE(ot) == T_ERR) {
        for (struct rl_node *a = n->b; a; a = a->next)
            check_expr(ck, a);
        return n->type = ot;
    }
    if (name_is(m, "len") && (TBASE(ot) == T_LIST || is_textual(TBASE(ot)))) {
        if (n->b)
            ERR(ck, n, "'len' expects 0 arguments, found %d", count_args(n->b));
        n->ref2 = 4;
        return n->type = TY(T_INT, 0);
    }
    if (TBASE(ot) == T_SERVICE) {
        enum rl_svc_kind k = (enum rl_svc_kind)TELEM(ot);
        int id = rl_svc_method_find(k, m->s, m->slen);
        if (id < 0) {
            const char *c[16];
            int nc = 0;
            for (int i = 0; i < rl_nsvc_methods && nc < 16; i++)
                if (rl_svc_methods[i].kind == k)
                    c[nc++] = rl_svc_methods[i].name;
            err_unknown(ck, m, m->s, m->slen, c, nc,
                        "a %s service has no method '%.*s'", rl_svc_kind_name(k), (int)m->slen, m->s);
            return n->type = TY(T_ERR, 0);
        }
        const struct rl_svc_method *sm = &rl_svc_methods[id];
        snprintf(what, sizeof(what), "'%s.%s'", rl_svc_kind_name(k), sm->name);
        check_args(ck, n, what, sm->min_args, sm->max_args, sm->args, 0, sm->stages);
        n->ref2 = 2;
        n->ref = id;
        return n->type = sm->result;
    }
    ERR(ck, m, "a value of type %s has no method '%.*s'", tn(ot, tmp), (int)m->slen, m->s);
    return n->type = TY(T_ERR, 0);
}

static rl_type call_expr(struct checker *ck, struct rl_node *n)
{
    struct rl_node *f = n->a;
    if (f->kind == N_MEMBER)
        return method_call(ck, n);
    if (f->kind != N_NAME) {
        ERR(ck, f, "only functions and methods can be called");
        return n->type = TY(T_ERR, 0);
    }
    int id = rl_builtin_find(f->s, f->slen);
    if (id < 0) {
        const char *c[64];
        int nc = 0;
        for (int i = 0; i < rl_nbuiltins && nc < 64; i++)
            c[nc++] = rl_builtins[i].name;
        buf_t m;
        buf_init(&m, 64);
        if (rl_status_parse(f->s, f->slen) >= 0)
            buf_printf(&m, "'%.*s' is a status; use it as 'return %.*s(...);'", (int)f->slen, f->s,
                       (int)f->slen, f->s);
        else
            buf_printf(&m, "unknown function '%.*s'", (int)f->slen, f->s);
        int k = rl_status_parse(f->s, f->slen) >= 0 ? -1 : rl_did_you_mean(f->s, f->slen, c, nc);
        if (k >= 0)
            buf_printf(&m, "; did you mean '%s'?", c[k]);
        ERR(ck, f, "%s", m.data);
        buf_free(&m);
        for (struct rl_node *a = n->b; a; a = a->next)
            check_expr(ck, a);
        return n->type = TY(T_ERR, 0);
    }
    const struct rl_builtin *b = &rl_builtins[id];
    char what[64];
    snprintf(what, sizeof(what), "'%s'", b->name);
    check_args(ck, n, what, b->min_args, b->max_args, b->args, b->lead_opt, b->stages);
    if (b->check)
        b->check(ck->cc, n);
    n->ref2 = 1;
    n->ref = id;
    return n->type = b->result;
}

/* ---- operators --------------------------------------------------------------------------------- */
static int comparable(struct checker *ck, struct rl_node *a, struct rl_node *b)
{
    enum rl_tbase x = TBASE(a->type), y = TBASE(b->type);
    if (x == T_ERR || y == T_ERR)
        return 1;
    if (a->kind == N_STRING && kind_for(y) && y != T_FQDN && y != T_ADDR)
        return coerce_literal(ck, a, kind_for(y)), 1;
    if (b->kind == N_STRING && kind_for(x) && x != T_FQDN && x != T_ADDR)
        return coerce_literal(ck, b, kind_for(x)), 1;
    if (is_textual(x) && is_textual(y))
        return 1;
    return x == y && (x == T_INT || x == T_BOOL || x == T_IP || x == T_CIDR);
}

static rl_type in_expr(struct checker *ck, struct rl_node *n)
{
    struct rl_node *x = n->a, *set = n->b;
    enum rl_tbase s = TBASE(set->type), e = (enum rl_tbase)TELEM(set->type);
    char t1[48], t2[48];
    if (TBASE(x->type) == T_ERR || s == T_ERR)
        return n->type = TY(T_BOOL, 0);
    if (x->kind == N_STRING && (s == T_CIDR || ((s == T_FILE || s == T_LIST || s == T_GROUP) &&
                                                (e == T_IP || e == T_CIDR))))
        coerce_literal(ck, x, "ip");
    enum rl_tbase xt = TBASE(x->type);
    int ok;
    switch (s) {
    case T_CIDR: ok = xt == T_IP; break;
    case T_STRING: case T_FQDN: ok = is_textual(xt); break;
    case T_GROUP: ok = e == T_ERR || xt == e || (xt == T_IP && e == T_CIDR) ||
                       (is_textual(xt) && (is_textual(e) || e == T_REGEX)); break;
    case T_FILE: case T_LIST:
        ok = e == T_ERR || xt == e || (xt == T_IP && e == T_CIDR) ||
             (is_textual(xt) && (is_textual(e) || e == T_REGEX));
        break;
    default:
        ERR(ck, set, "'in' needs a list, group, file, cidr or string on the right, found %s",
            tn(set->type, t1));
        return n->type = TY(T_ERR, 0);
    }
    if (!ok)
        ERR(ck, n, "'in' cannot look for %s in %s", tn(x->type, t1), tn(set->type, t2));
    return n->type = TY(T_BOOL, 0);
}

static rl_type binary(struct checker *ck, struct rl_node *n)
{
    rl_type a = check_expr(ck, n->a), b = check_expr(ck, n->b);
    char t1[48], t2[48];
    int err = TBASE(a) == T_ERR || TBASE(b) == T_ERR;
    switch (n->op) {
    case TK_ANDAND: case TK_OROR:
        if (!err && TBASE(a) != T_BOOL)
            ERR(ck, n->a, "operand of '%s' must be bool, found %s", n->op == TK_ANDAND ? "&&" : "||",
                tn(a, t1));
        else if (!err && TBASE(b) != T_BOOL)
            ERR(ck, n->b, "operand of '%s' must be bool, found %s", n->op == TK_ANDAND ? "&&" : "||",
                tn(b, t1));
        return n->type = TY(T_BOOL, 0);
    case TK_EQEQ: case TK_NE:
        if (!comparable(ck, n->a, n->b))
            ERR(ck, n, "cannot compare %s with %s", tn(n->a->type, t1), tn(n->b->type, t2));
        return n->type = TY(T_BOOL, 0);
    case TK_LT: case TK_GT: case TK_LE: case TK_GE:
        if (!err && (TBASE(a) != T_INT || TBASE(b) != T_INT))
            ERR(ck, n, "%s needs integers, found %s and %s", rl_tok_name((enum rl_tok)n->op),
                tn(a, t1), tn(b, t2));
        return n->type = TY(T_BOOL, 0);
    case TK_IN:
        return in_expr(ck, n);
    case TK_MATCHES:
        if (n->b->kind == N_STRING)
            coerce_literal(ck, n->b, "regex");
        if (!err && !is_textual(TBASE(a)))
            ERR(ck, n->a, "'matches' needs a string on the left, found %s", tn(a, t1));
        else if (!err && TBASE(n->b->type) != T_REGEX && TBASE(n->b->type) != T_ERR)
            ERR(ck, n->b, "'matches' needs a regex on the right, found %s", tn(n->b->type, t1));
        return n->type = TY(T_BOOL, 0);
    }
    return n->type = TY(T_ERR, 0);
}

static rl_type check_expr(struct checker *ck, struct rl_node *n)
{
    char tmp[48];
    switch (n->kind) {
    case N_INT: return n->type = TY(T_INT, 0);
    case N_BOOL: return n->type = TY(T_BOOL, 0);
    case N_STRING: return n->type = TY(T_STRING, 0);
    case N_TEMPLATE:
        for (struct rl_node *p = n->a; p; p = p->next) {
            rl_type t = check_expr(ck, p);
            enum rl_tbase b = TBASE(t);
            if (b == T_VOID || b == T_NS || b == T_SERVICE || b == T_FILE)
                ERR(ck, p, "cannot interpolate a value of type %s", tn(t, tmp));
        }
        return n->type = TY(T_STRING, 0);
    case N_TYPED: return typed_literal(ck, n);
    case N_GROUP: return group_literal(ck, n);
    case N_FILE: return file_literal(ck, n);
    case N_LIST: {
        int elem = -1;
        for (struct rl_node *e = n->a; e; e = e->next) {
            rl_type t = check_expr(ck, e);
            if (TBASE(t) == T_ERR)
                continue;
            if (TBASE(t) == T_LIST || TBASE(t) == T_VOID || TBASE(t) == T_NS ||
                TBASE(t) == T_SERVICE || TBASE(t) == T_FILE || TBASE(t) == T_GROUP) {
                ERR(ck, e, "a list cannot hold a %s", tn(t, tmp));
                continue;
            }
            if (elem == -1)
                elem = TBASE(t);
            else if (elem != (int)TBASE(t) && !(is_textual((enum rl_tbase)elem) && is_textual(TBASE(t))))
                ERR(ck, e, "list elements must have one type: %s, found %s",
                    rl_tbase_name((enum rl_tbase)elem), tn(t, tmp));
        }
        return n->type = TY(T_LIST, elem < 0 ? T_ERR : elem);
    }
    case N_NAME: {
        rl_type t = name_ref(ck, n);
        if (TBASE(t) == T_NS) {
            ERR(ck, n, "'%.*s' needs a field, e.g. %s", (int)n->slen, n->s,
                rl_ctx_example(n->s, n->slen));
            return n->type = TY(T_ERR, 0);
        }
        return t;
    }
    case N_QNAME: return qname_ref(ck, n);
    case N_MEMBER: return member(ck, n);
    case N_CALL: return call_expr(ck, n);
    case N_UNARY: {
        rl_type t = check_expr(ck, n->a);
        enum rl_tbase want = n->op == TK_BANG ? T_BOOL : T_INT;
        if (TBASE(t) != T_ERR && TBASE(t) != want)
            ERR(ck, n, "operand of '%s' must be %s, found %s", n->op == TK_BANG ? "!" : "-",
                rl_tbase_name(want), tn(t, tmp));
        return n->type = TY(want, 0);
    }
    case N_BINARY: return binary(ck, n);
    case N_CONSTREF: case N_CTX: case N_LOCAL: case N_SVCREF:
        return n->type;
    }
    return n->type = TY(T_ERR, 0);
}

/* ---- statements ---------------------------------------------------------------------------------- */
static int check_block(struct checker *ck, struct rl_node *b);

/* Reply arguments of a status: () | (text) | (code, enhanced, text); quarantine (name). */
static void check_status(struct checker *ck, struct rl_node *st)
{
    int v = rl_status_parse(st->s, st->slen);
    if (v < 0) {
        static const char *const names[] = { "next", "accept", "faccept", "reject", "deny",
                                             "defer", "quarantine" };
        err_unknown(ck, st, st->s, st->slen, names, 7,
                    "unknown status '%.*s'", (int)st->slen, st->s);
        return;
    }
    st->ref2 = v;
    int n = count_args(st->a);
    char tmp[48];
    for (struct rl_node *a = st->a; a; a = a->next)
        check_expr(ck, a);
    if (v == V_NEXT || v == V_ACCEPT || v == V_FACCEPT) {
        if (n)
            ERR(ck, st, "status '%s' takes no arguments", rl_status_name(v));
    } else if (v == V_QUARANTINE) {
        if (n != 1)
            ERR(ck, st, "status 'quarantine' takes 1 argument (the quarantine name), found %d", n);
        else if (!assignable(ck, TY(T_STRING, 0), st->a))
            ERR(ck, st->a, "quarantine name must be a string, found %s", tn(st->a->type, tmp));
    } else if (n == 1) {
        if (!assignable(ck, TY(T_STRING, 0), st->a))
            ERR(ck, st->a, "reply text must be a string, found %s", tn(st->a->type, tmp));
    } else if (n == 3) {
        struct rl_node *c = st->a, *e = c->next, *t = e->next;
        if (TBASE(c->type) != T_INT && TBASE(c->type) != T_ERR)
            ERR(ck, c, "reply code must be an integer, found %s", tn(c->type, tmp));
        else if (c->kind == N_INT) {
            int lo = v == V_DEFER ? 400 : 500;
            if (c->ival < lo || c->ival > lo + 99)
                ERR(ck, c, "reply code for '%s' must be %dxx, found %lld", rl_status_name(v),
                    lo / 100, (long long)c->ival);
        }
        if (!assignable(ck, TY(T_STRING, 0), e))
            ERR(ck, e, "enhanced status code must be a string, found %s", tn(e->type, tmp));
        else if (e->kind == N_STRING) {
            char cls = v == V_DEFER ? '4' : '5';
            unsigned a1, a2, a3;
            char x;
            if (e->slen > 15 || e->s[0] != cls || sscanf(e->s, "%u.%u.%u%c", &a1, &a2, &a3, &x) != 3 ||
                a2 > 999 || a3 > 999)
                ERR(ck, e, "enhanced status code must look like %c.7.1, found \"%.*s\"", cls,
                    (int)e->slen, e->s);
        }
        if (!assignable(ck, TY(T_STRING, 0), t))
            ERR(ck, t, "reply text must be a string, found %s", tn(t->type, tmp));
    } else if (n != 0) {
        ERR(ck, st, "status '%s' takes 0, 1 (text) or 3 (code, enhanced code, text) arguments, "
            "found %d", rl_status_name(v), n);
    }
    if (v == V_FACCEPT && ck->stage >= STAGE_POSTQ)
        ERR(ck, st, "'faccept' is only allowed before queueing (connect to data)");
}

/* Returns 1 when the statement always ends the rule (return on every path);
 * *status_r gets the status when it is the same on every path, else -1. */
static int check_stmt(struct checker *ck, struct rl_node *s, int *status_r)
{
    char tmp[48];
    *status_r = -1;
    switch (s->kind) {
    case N_LET: {
        rl_type t = check_expr(ck, s->a);
        if (TBASE(t) == T_VOID || TBASE(t) == T_NS || TBASE(t) == T_SERVICE) {
            ERR(ck, s->a, "cannot bind a %s to a variable", tn(t, tmp));
            t = TY(T_ERR, 0);
        }
        s->ref = slots(ck, s, 1);
        local_add(ck, s, s->ref, t);
        return 0;
    }
    case N_IF: {
        rl_type t = check_expr(ck, s->a);
        if (TBASE(t) != T_BOOL && TBASE(t) != T_ERR)
            ERR(ck, s->a, "condition must be bool, found %s", tn(t, tmp));
        int st1 = -1, st2 = -1;
        int r1 = check_block(ck, s->b), r2 = 0;
        if (r1)
            st1 = s->b->ref2;
        if (s->c) {
            if (s->c->kind == N_IF)
                r2 = check_stmt(ck, s->c, &st2);
            else if ((r2 = check_block(ck, s->c)))
                st2 = s->c->ref2;
        }
        if (r1 && r2 && st1 == st2)
            *status_r = st1;
        return r1 && r2;
    }
    case N_FOR: {
        rl_type t = check_expr(ck, s->a);
        if (TBASE(t) != T_LIST && TBASE(t) != T_ERR)
            ERR(ck, s->a, "'for' loops over lists only, found %s", tn(t, tmp));
        int saved = ck->nslots;
        s->ref = slots(ck, s, 3);
        ck->depth++;
        local_add(ck, s, s->ref + 2, TBASE(t) == T_LIST ? TY(TELEM(t), 0) : TY(T_ERR, 0));
        int st;
        check_block(ck, s->b);
        (void)st;
        scope_end(ck);
        ck->nslots = saved;     /* slots are reused once out of scope */
        return 0;
    }
    case N_RETURN:
        if (ck->in_action) {
            ERR(ck, s, "'return' is not allowed in an action (actions return no status)");
            return 1;
        }
        check_status(ck, s->a);
        *status_r = s->a->ref2;
        return 1;
    case N_EXPR: {
        rl_type t = check_expr(ck, s->a);
        if (s->a->kind != N_CALL && TBASE(t) != T_ERR)
            ERR(ck, s->a, "expression result is not used");
        return 0;
    }
    case N_BLOCK: {
        int r = check_block(ck, s);
        *status_r = r ? s->ref2 : -1;
        return r;
    }
    }
    return 0;
}

/* Checks a block in a new scope; ref2 = the status it always returns. */
static int check_block(struct checker *ck, struct rl_node *b)
{
    ck->depth++;
    int saved = ck->nslots;
    int always = 0, st = -1;
    for (struct rl_node *s = b->a; s; s = s->next) {
        if (always) {
            ERR(ck, s, "unreachable code after 'return'");
            break;
        }
        always = check_stmt(ck, s, &st);
    }
    scope_end(ck);
    ck->nslots = saved;
    b->ref2 = always ? st : -1;
    return always;
}

/* ---- stages ---------------------------------------------------------------------------------------- */
static void stage_decl(struct checker *ck, struct rl_node *d, struct rl_node **seen)
{
    enum stage s;
    char nm[32];
    snprintf(nm, sizeof(nm), "%.*s", (int)(d->slen > 30 ? 30 : d->slen), d->s);
    if (d->slen > 30 || stage_parse(nm, &s) < 0) {
        static const char *const names[] = { "connect", "helo", "auth", "mail", "rcpt", "data",
                                             "postq", "deliver" };
        err_unknown(ck, d, d->s, d->slen, names, STAGE__COUNT,
                    "unknown stage '%.*s'", (int)d->slen, d->s);
        return;
    }
    if (ck->mod->depth > 0) {
        ERR(ck, d, "stage blocks are not allowed in an imported file (imports provide objects "
            "and services only)");
        return;
    }
    if (seen[s]) {
        ERR(ck, d, "stage '%s' is already defined at line %d", stage_name(s), seen[s]->line);
        return;
    }
    seen[s] = d;
    d->ref = (int)s;
    ck->stage = (int)s;
    struct rl_node *terminal = NULL;
    int terminal_status = -1;
    for (struct rl_node *r = d->a; r; r = r->next) {
        for (struct rl_node *o = d->a; o != r; o = o->next)
            if (o->slen == r->slen && memcmp(o->s, r->s, r->slen) == 0) {
                ERR(ck, r, "duplicate name \"%.*s\" in stage %s (first at line %d)", (int)r->slen,
                    r->s, stage_name(s), o->line);
                break;
            }
        if (terminal) {
            ERR(ck, r, "unreachable %s \"%.*s\": rule \"%.*s\" at line %d always returns %s",
                r->kind == N_ACTION ? "action" : "rule", (int)r->slen, r->s, (int)terminal->slen,
                terminal->s, terminal->line,
                terminal_status >= 0 ? rl_status_name(terminal_status) : "a final status");
            terminal = NULL;     /* one report per stage */
            terminal_status = -2;
        }
        ck->in_action = r->kind == N_ACTION;
        ck->nlocals = 0;
        ck->nslots = 0;
        ck->maxslots = 0;
        ck->slots_reported = 0;
        ck->depth = 0;
        int always = check_block(ck, r->a);
        r->ref = ck->maxslots;
        if (always && r->kind == N_RULE && terminal_status != -2 && r->a->ref2 != V_NEXT) {
            terminal = r;
            terminal_status = r->a->ref2;
        }
    }
    ck->stage = -1;
}

void rl_check_module(struct rl_cc *cc, struct rl_module *m, const int *stack, int nstack)
{
    struct checker ck;
    memset(&ck, 0, sizeof(ck));
    ck.cc = cc;
    ck.mod = m;
    ck.stage = -1;
    if (nstack > 30)
        nstack = 30;
    if (nstack > 0)
        memcpy(ck.import_stack, stack, sizeof(int) * (size_t)nstack);
    ck.nstack = nstack;
    for (int i = 0; i < cc->nmods; i++)
        if (cc->mods[i] == m)
            ck.import_stack[ck.nstack++] = i;
    m->state = 1;
    m->syms = rl_arena_alloc(&cc->arena, sizeof(*m->syms));
    struct rl_node *seen[STAGE__COUNT] = { 0 };
    for (struct rl_node *d = m->decls; d; d = d->next) {
        switch (d->kind) {
        case N_IMPORT: import_decl(&ck, d); break;
        case N_OBJECT: object_decl(&ck, d); break;
        case N_SERVICE: service_decl(&ck, d); break;
        case N_STAGE: stage_decl(&ck, d, seen); break;
        }
    }
    m->state = 2;
}

int rl_check(struct rl_cc *cc, struct rl_module *main_mod)
{
    rl_check_module(cc, main_mod, NULL, 0);
    return cc->nerr ? -1 : 0;
}
