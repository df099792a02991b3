/*
 * rl_check.c - the checker: loads imports (cycles reported), builds each
 * module's symbols (objects become constants, services are instantiated),
 * resolves every name, types every expression, and enforces at compile
 * time what must never be found at run time: unknown names, wrong types,
 * wrong arity, a context value or mutation used in a stage where it does
 * not exist / is not allowed, `return` in an action, unreachable rules.
 * It rewrites resolved nodes in place (N_NAME -> N_LOCAL / N_CTX /
 * N_CONSTREF) so rl_compile.c only emits code.
 * This file: symbols, locals, constants, statements, stages and the entry
 * points; declarations (objects, services, imports) are checked in
 * rl_check_decl.c, expressions in rl_check_expr.c (shared: rl_check.h).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "rules/rl_check.h"

/* Report "MESSAGE; did you mean 'X'?" at node at: the suggestion is the
 * candidate closest to name (none when nothing is close). */
void ck_err_unknown(struct checker *ck, const struct rl_node *at, const char *name,
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

int ck_name_is(const struct rl_node *n, const char *s)
{
    return strlen(s) == n->slen && memcmp(n->s, s, n->slen) == 0;
}

char *ck_tn(rl_type t, char *tmp)
{
    return (char *)rl_type_name(t, tmp, 48);
}

/* ---- symbols ----------------------------------------------------------------------- */
struct rl_sym *ck_sym_find(struct rl_module *m, const char *s, size_t n)
{
    struct rl_syms *t = m->syms;
    for (int i = 0; t && i < t->n; i++)
        if (t->v[i].len == n && memcmp(t->v[i].name, s, n) == 0)
            return &t->v[i];
    return NULL;
}

struct rl_sym *ck_sym_add(struct checker *ck, const struct rl_node *d, int kind)
{
    struct rl_syms *t = ck->mod->syms;
    struct rl_sym *old = ck_sym_find(ck->mod, d->s, d->slen);
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
void ck_suggest(struct checker *ck, const char *s, size_t n, buf_t *out)
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
struct local *ck_local_find(struct checker *ck, const char *s, size_t n)
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
    struct local *old = ck_local_find(ck, at->s, at->slen);
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
/* Turn a string literal into a typed constant of `kind` (compile-time
 * validation: `client.ip == "10.0.0.1"`, `bcc("a@b")`). 0 ok / -1 reported. */
int ck_coerce_literal(struct checker *ck, struct rl_node *n, const char *kind)
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

const char *ck_kind_for(enum rl_tbase b)
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
int ck_assignable(struct checker *ck, rl_type want, struct rl_node *n)
{
    enum rl_tbase w = TBASE(want), h = TBASE(n->type);
    if (w == T_ERR || h == T_ERR || want == n->type)
        return 1;
    if (n->kind == N_STRING && ck_kind_for(w)) {
        ck_coerce_literal(ck, n, ck_kind_for(w));
        return 1;
    }
    if (ck_is_textual(w) && ck_is_textual(h))
        return 1;
    if (w == T_LIST && h == T_LIST)
        return TELEM(want) == T_ERR || TELEM(n->type) == T_ERR || TELEM(want) == TELEM(n->type) ||
               (ck_is_textual((enum rl_tbase)TELEM(want)) && ck_is_textual((enum rl_tbase)TELEM(n->type)));
    return w == h && w != T_LIST && w != T_FILE && w != T_SERVICE;
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
        ck_err_unknown(ck, st, st->s, st->slen, names, 7,
                    "unknown status '%.*s'", (int)st->slen, st->s);
        return;
    }
    st->ref2 = v;
    int n = ck_count_args(st->a);
    char tmp[48];
    for (struct rl_node *a = st->a; a; a = a->next)
        ck_expr(ck, a);
    if (v == V_NEXT || v == V_ACCEPT || v == V_FACCEPT) {
        if (n)
            ERR(ck, st, "status '%s' takes no arguments", rl_status_name(v));
    } else if (v == V_QUARANTINE) {
        if (n != 1)
            ERR(ck, st, "status 'quarantine' takes 1 argument (the quarantine name), found %d", n);
        else if (!ck_assignable(ck, TY(T_STRING, 0), st->a))
            ERR(ck, st->a, "quarantine name must be a string, found %s", ck_tn(st->a->type, tmp));
    } else if (n == 1) {
        if (!ck_assignable(ck, TY(T_STRING, 0), st->a))
            ERR(ck, st->a, "reply text must be a string, found %s", ck_tn(st->a->type, tmp));
    } else if (n == 3) {
        struct rl_node *c = st->a, *e = c->next, *t = e->next;
        if (TBASE(c->type) != T_INT && TBASE(c->type) != T_ERR)
            ERR(ck, c, "reply code must be an integer, found %s", ck_tn(c->type, tmp));
        else if (c->kind == N_INT) {
            int lo = v == V_DEFER ? 400 : 500;
            if (c->ival < lo || c->ival > lo + 99)
                ERR(ck, c, "reply code for '%s' must be %dxx, found %lld", rl_status_name(v),
                    lo / 100, (long long)c->ival);
        }
        if (!ck_assignable(ck, TY(T_STRING, 0), e))
            ERR(ck, e, "enhanced status code must be a string, found %s", ck_tn(e->type, tmp));
        else if (e->kind == N_STRING) {
            char cls = v == V_DEFER ? '4' : '5';
            unsigned a1, a2, a3;
            char x;
            if (e->slen > 15 || e->s[0] != cls || sscanf(e->s, "%u.%u.%u%c", &a1, &a2, &a3, &x) != 3 ||
                a2 > 999 || a3 > 999)
                ERR(ck, e, "enhanced status code must look like %c.7.1, found \"%.*s\"", cls,
                    (int)e->slen, e->s);
        }
        if (!ck_assignable(ck, TY(T_STRING, 0), t))
            ERR(ck, t, "reply text must be a string, found %s", ck_tn(t->type, tmp));
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
        rl_type t = ck_expr(ck, s->a);
        if (TBASE(t) == T_VOID || TBASE(t) == T_NS || TBASE(t) == T_SERVICE) {
            ERR(ck, s->a, "cannot bind a %s to a variable", ck_tn(t, tmp));
            t = TY(T_ERR, 0);
        }
        s->ref = slots(ck, s, 1);
        local_add(ck, s, s->ref, t);
        return 0;
    }
    case N_IF: {
        rl_type t = ck_expr(ck, s->a);
        if (TBASE(t) != T_BOOL && TBASE(t) != T_ERR)
            ERR(ck, s->a, "condition must be bool, found %s", ck_tn(t, tmp));
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
        rl_type t = ck_expr(ck, s->a);
        if (TBASE(t) != T_LIST && TBASE(t) != T_ERR)
            ERR(ck, s->a, "'for' loops over lists only, found %s", ck_tn(t, tmp));
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
        rl_type t = ck_expr(ck, s->a);
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
        ck_err_unknown(ck, d, d->s, d->slen, names, STAGE__COUNT,
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
        case N_IMPORT: ck_import_decl(&ck, d); break;
        case N_OBJECT: ck_object_decl(&ck, d); break;
        case N_SERVICE: ck_service_decl(&ck, d); break;
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
