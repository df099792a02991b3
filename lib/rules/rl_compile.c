/*
 * rl_compile.c - the compiler driver and code generator: source -> module
 * (rl_parse) -> checked AST (rl_check) -> bytecode + constant pool in an
 * immutable struct rl_program. Each rule/action becomes one code range
 * ending in END; stages list their rules in file order. Stack depth is
 * tracked at compile time so the VM's fixed stack can never overflow.
 * Also owns the program's lifetime (constants, owned objects, services).
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "util/log.h"
#include "util/fdio.h"
#include "rules/rl_int.h"

/* ---- program ------------------------------------------------------------------------ */
void rl_program_own(struct rl_program *p, void *ptr, void (*fn)(void *))
{
    if (p->nowned == p->capowned) {
        p->capowned = p->capowned ? p->capowned * 2 : 16;
        p->owned = xrealloc(p->owned, sizeof(*p->owned) * (size_t)p->capowned);
    }
    p->owned[p->nowned].p = ptr;
    p->owned[p->nowned].fn = fn;
    p->nowned++;
}

char *rl_program_strndup(struct rl_program *p, const char *s, size_t n)
{
    char *d = xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    rl_program_own(p, d, free);
    return d;
}

static int is_text(int t) { return t == T_STRING || t == T_ADDR || t == T_FQDN; }

int rl_program_const(struct rl_program *p, const struct rl_value *v)
{
    for (int i = 0; i < p->nk; i++) {
        const struct rl_value *k = &p->k[i];
        if (k->t != v->t || k->et != v->et)
            continue;
        if (is_text(v->t) ? (k->len == v->len && memcmp(k->u.s, v->u.s, v->len) == 0)
                          : memcmp(&k->u, &v->u, sizeof(v->u)) == 0)
            return i;
    }
    if (p->nk >= RL_CONST_MAX)
        return 0;       /* reported by codegen */
    if (p->nk == p->capk) {
        p->capk = p->capk ? p->capk * 2 : 32;
        p->k = xrealloc(p->k, sizeof(*p->k) * (size_t)p->capk);
    }
    struct rl_value c = *v;
    if (is_text(v->t))
        c.u.s = rl_program_strndup(p, v->u.s, v->len);
    p->k[p->nk] = c;
    return p->nk++;
}

void rl_program_free(struct rl_program *p)
{
    if (p == NULL)
        return;
    for (int i = p->nowned - 1; i >= 0; i--)
        p->owned[i].fn(p->owned[i].p);
    for (int i = 0; i < p->nsvcs; i++)
        rl_service_free(p->svcs[i]);
    for (int i = 0; i < p->nrules; i++)
        free(p->rules[i].name);
    for (int i = 0; i < p->nfiles; i++)
        free(p->files[i]);
    for (int i = 0; i < p->ntrefs; i++)
        free(p->trefs[i].name);
    free(p->trefs);
    free(p->files);
    free(p->svcs);
    free(p->owned);
    free(p->rules);
    free(p->k);
    free(p->code);
    free(p->lines);
    free(p);
}

void rl_program_set_budget(struct rl_program *p, long budget)
{
    p->budget = budget > 0 ? budget : RL_BUDGET_DEFAULT;
}

int rl_program_stage_rules(const struct rl_program *p, enum stage s)
{
    return (unsigned)s < STAGE__COUNT ? p->stage_n[s] : 0;
}

/* ---- code generation --------------------------------------------------------------- */
struct gen {
    struct rl_cc *cc;
    struct rl_program *p;
    int depth, maxdepth;
    int reported;
};

static uint32_t emit(struct gen *g, int op, int a, int b, const struct rl_node *at)
{
    struct rl_program *p = g->p;
    if (p->ncode == p->capcode) {
        p->capcode = p->capcode ? p->capcode * 2 : 256;
        p->code = xrealloc(p->code, sizeof(*p->code) * p->capcode);
        p->lines = xrealloc(p->lines, sizeof(*p->lines) * p->capcode);
    }
    p->code[p->ncode] = I_MK(op, a, b);
    p->lines[p->ncode] = at ? (uint32_t)at->line : 0;
    return p->ncode++;
}

static void push(struct gen *g, int n, const struct rl_node *at)
{
    g->depth += n;
    if (g->depth > g->maxdepth)
        g->maxdepth = g->depth;
    if (g->depth > RL_STACK_MAX - 2 && !g->reported) {
        g->reported = 1;
        rl_error(g->cc, at->file, at->line, at->col, "expression too complex");
    }
}

static void patch(struct gen *g, uint32_t at, uint32_t target, const struct rl_node *n)
{
    long off = (long)target - (long)(at + 1);
    if (off < INT16_MIN || off > INT16_MAX) {
        if (!g->reported)
            rl_error(g->cc, n->file, n->line, n->col, "rule too long (jump out of range)");
        g->reported = 1;
        return;
    }
    rl_instr i = g->p->code[at];
    g->p->code[at] = I_MK(I_OP(i), I_A(i), (int)off);
}

static void constant(struct gen *g, int k, const struct rl_node *at)
{
    emit(g, OP_CONST, 0, k, at);
    push(g, 1, at);
}

static void expr(struct gen *g, const struct rl_node *n);

static int args(struct gen *g, const struct rl_node *a)
{
    int n = 0;
    for (; a; a = a->next, n++)
        expr(g, a);
    return n;
}

static void expr(struct gen *g, const struct rl_node *n)
{
    struct rl_value v;
    memset(&v, 0, sizeof(v));
    switch (n->kind) {
    case N_INT:
        v.t = T_INT;
        v.u.i = n->ival;
        constant(g, rl_program_const(g->p, &v), n);
        return;
    case N_BOOL:
        emit(g, OP_BOOL, n->ival ? 1 : 0, 0, n);
        push(g, 1, n);
        return;
    case N_STRING:
        v.t = T_STRING;
        v.u.s = n->s;
        v.len = n->slen;
        constant(g, rl_program_const(g->p, &v), n);
        return;
    case N_TEMPLATE: {
        int cnt = args(g, n->a);
        emit(g, OP_CONCAT, 0, cnt, n);
        push(g, 1 - cnt, n);
        return;
    }
    case N_CONSTREF: case N_SVCREF:
        constant(g, n->ref, n);
        return;
    case N_LIST: {
        int cnt = args(g, n->a);
        emit(g, OP_MKLIST, TELEM(n->type), cnt, n);
        push(g, 1 - cnt, n);
        return;
    }
    case N_LOCAL:
        emit(g, OP_GETL, n->ref, 0, n);
        push(g, 1, n);
        return;
    case N_CTX:
        emit(g, OP_CTX, 0, n->ref, n);
        push(g, 1, n);
        return;
    case N_MEMBER:
        expr(g, n->a);
        emit(g, OP_FIELD, n->ref, 0, n);
        return;
    case N_CALL:
        switch (n->ref2) {
        case 1: {
            int cnt = args(g, n->b);
            emit(g, OP_CALL, cnt, n->ref, n);
            push(g, 1 - cnt, n);
            return;
        }
        case 2: {
            expr(g, n->a->a);
            int cnt = args(g, n->b);
            emit(g, OP_SCALL, cnt, n->ref, n);
            push(g, -cnt, n);
            return;
        }
        case 3:
            args(g, n->b);
            emit(g, OP_CTXCALL, 0, n->ref, n);
            return;
        case 4:
            expr(g, n->a->a);
            emit(g, OP_LEN, 0, 0, n);
            return;
        }
        return;
    case N_UNARY:
        expr(g, n->a);
        emit(g, n->op == TK_BANG ? OP_NOT : OP_NEG, 0, 0, n);
        return;
    case N_BINARY: {
        if (n->op == TK_ANDAND || n->op == TK_OROR) {
            expr(g, n->a);
            uint32_t j = emit(g, n->op == TK_ANDAND ? OP_ANDJ : OP_ORJ, 0, 0, n);
            push(g, -1, n);
            expr(g, n->b);
            patch(g, j, g->p->ncode, n);
            return;
        }
        expr(g, n->a);
        expr(g, n->b);
        int op;
        switch (n->op) {
        case TK_EQEQ: op = OP_EQ; break;
        case TK_NE: op = OP_NE; break;
        case TK_LT: op = OP_LT; break;
        case TK_GT: op = OP_GT; break;
        case TK_LE: op = OP_LE; break;
        case TK_GE: op = OP_GE; break;
        case TK_IN: op = OP_IN; break;
        default: op = OP_MATCH; break;
        }
        emit(g, op, 0, 0, n);
        push(g, -1, n);
        return;
    }
    }
}

static void block(struct gen *g, const struct rl_node *b);

static void stmt(struct gen *g, const struct rl_node *s)
{
    switch (s->kind) {
    case N_LET:
        expr(g, s->a);
        emit(g, OP_SETL, s->ref, 0, s);
        push(g, -1, s);
        return;
    case N_IF: {
        expr(g, s->a);
        uint32_t jf = emit(g, OP_JMPF, 0, 0, s);
        push(g, -1, s);
        block(g, s->b);
        if (s->c) {
            uint32_t je = emit(g, OP_JMP, 0, 0, s);
            patch(g, jf, g->p->ncode, s);
            if (s->c->kind == N_IF)
                stmt(g, s->c);
            else
                block(g, s->c);
            patch(g, je, g->p->ncode, s);
        } else {
            patch(g, jf, g->p->ncode, s);
        }
        return;
    }
    case N_FOR: {
        expr(g, s->a);
        emit(g, OP_FORPREP, s->ref, 0, s);
        push(g, -1, s);
        uint32_t top = emit(g, OP_FORNEXT, s->ref, 0, s);
        block(g, s->b);
        uint32_t back = emit(g, OP_JMP, 0, 0, s);
        patch(g, back, top, s);
        patch(g, top, g->p->ncode, s);
        return;
    }
    case N_RETURN: {
        const struct rl_node *st = s->a;
        int cnt = args(g, st->a);
        if (cnt == 0)
            emit(g, OP_RET, st->ref2, 0, s);
        else
            emit(g, OP_RETR, st->ref2, cnt, s);
        push(g, -cnt, s);
        return;
    }
    case N_EXPR:
        expr(g, s->a);
        emit(g, OP_POP, 0, 0, s);
        push(g, -1, s);
        return;
    case N_BLOCK:
        block(g, s);
        return;
    }
}

static void block(struct gen *g, const struct rl_node *b)
{
    for (const struct rl_node *s = b->a; s; s = s->next)
        stmt(g, s);
}

static void gen_rule(struct gen *g, const struct rl_node *r, enum stage st)
{
    struct rl_program *p = g->p;
    if (p->nrules == p->caprules) {
        p->caprules = p->caprules ? p->caprules * 2 : 16;
        p->rules = xrealloc(p->rules, sizeof(*p->rules) * (size_t)p->caprules);
    }
    struct rl_rule *rr = &p->rules[p->nrules++];
    memset(rr, 0, sizeof(*rr));
    rr->name = xstrndup(r->s, r->slen);
    rr->is_action = r->kind == N_ACTION;
    rr->stage = st;
    rr->line = r->line;
    rr->col = r->col;
    rr->file = r->file;
    rr->nlocals = r->ref;
    rr->start = p->ncode;
    g->depth = 0;
    g->reported = 0;
    block(g, r->a);
    emit(g, OP_END, 0, 0, r);
    rr->end = p->ncode;
}

int rl_codegen(struct rl_cc *cc, struct rl_module *m)
{
    struct gen g = { .cc = cc, .p = cc->prog };
    struct rl_program *p = cc->prog;
    /* stages in pipeline order so each stage's rules are contiguous */
    for (int s = 0; s < STAGE__COUNT; s++) {
        p->stage_first[s] = p->nrules;
        for (struct rl_node *d = m->decls; d; d = d->next) {
            if (d->kind != N_STAGE || d->ref != s)
                continue;
            for (struct rl_node *r = d->a; r; r = r->next)
                gen_rule(&g, r, (enum stage)s);
        }
        p->stage_n[s] = p->nrules - p->stage_first[s];
    }
    if (p->nk >= RL_CONST_MAX)
        rl_error(cc, m->file, 1, 1, "too many constants (at most %d)", RL_CONST_MAX - 1);
    return cc->nerr ? -1 : 0;
}

/* ---- driver ------------------------------------------------------------------------------ */
struct rl_module *rl_module_load(struct rl_cc *cc, const char *path, const char *src, size_t len,
                                 int depth)
{
    struct rl_module *m = rl_arena_alloc(&cc->arena, sizeof(*m));
    m->file = rl_cc_file(cc, path);
    m->depth = depth;
    char *tmp = xstrdup(path);
    const char *dn = dirname(tmp);
    m->ddir = rl_arena_strndup(&cc->arena, dn, strlen(dn));
    char real[PATH_MAX];
    if (realpath(dn, real) != NULL)
        m->dir = rl_arena_strndup(&cc->arena, real, strlen(real));
    else
        m->dir = m->ddir;
    free(tmp);
    m->src = rl_arena_strndup(&cc->arena, src, len);
    m->len = len;
    if (cc->nmods == cc->capmods) {
        cc->capmods = cc->capmods ? cc->capmods * 2 : 8;
        cc->mods = xrealloc(cc->mods, sizeof(*cc->mods) * (size_t)cc->capmods);
    }
    cc->mods[cc->nmods++] = m;
    m->decls = rl_parse(cc, m->file, m->src, len);
    return m;
}

struct rl_program *rl_compile_buffer(const char *name, const char *src, size_t len,
                                     struct rl_diag *diags)
{
    struct rl_cc cc;
    memset(&cc, 0, sizeof(cc));
    cc.diags = diags ? diags : &cc.own;
    struct rl_program *p = xcalloc(1, sizeof(*p));
    p->magic = RL_MAGIC;
    p->version = RL_VERSION;
    p->budget = RL_BUDGET_DEFAULT;
    cc.prog = p;
    struct rl_module *m = rl_module_load(&cc, name, src, len, 0);
    char real[PATH_MAX];
    if (realpath(name, real) != NULL)
        m->real = rl_arena_strndup(&cc.arena, real, strlen(real));
    /* no checking on top of syntax errors: one mistake, one message */
    if (cc.nerr == 0 && rl_check(&cc, m) == 0)
        rl_codegen(&cc, m);
    p->files = cc.files;
    p->nfiles = cc.nfiles;
    cc.files = NULL;
    if (cc.nerr) {
        if (diags == NULL) {
            for (int i = 0; i < cc.own.n; i++)
                log_error("%s:%d:%d: %s", cc.own.v[i].file, cc.own.v[i].line, cc.own.v[i].col,
                          cc.own.v[i].msg);
        }
        rl_program_free(p);
        p = NULL;
    }
    rl_diag_free(&cc.own);
    free(cc.mods);
    rl_arena_free(&cc.arena);
    return p;
}

struct rl_program *rl_compile_file(const char *path, struct rl_diag *diags)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL) {
        struct rl_cc cc;
        memset(&cc, 0, sizeof(cc));
        cc.diags = diags ? diags : &cc.own;
        int f = rl_cc_file(&cc, path);
        rl_error(&cc, f, 1, 1, "cannot open: %s", strerror(errno));
        if (diags == NULL)
            log_error("%s: cannot open: %s", path, strerror(errno));
        rl_diag_free(&cc.own);
        for (int i = 0; i < cc.nfiles; i++)
            free(cc.files[i]);
        free(cc.files);
        return NULL;
    }
    buf_t src;
    buf_init(&src, 8192);
    (void)fdio_read_file(fileno(fp), &src, SIZE_MAX);   /* a read error keeps what was read */
    fclose(fp);
    struct rl_program *p = rl_compile_buffer(path, src.data, src.len, diags);
    buf_free(&src);
    return p;
}
