/*
 * rl_check_expr.c - the checker's expressions (rl_check.c): names and
 * members resolved (nodes rewritten in place), calls checked against the
 * builtin and method registries (arity, types, stages), operators typed.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "rules/rl_check.h"

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
    struct local *l = ck_local_find(ck, n->s, n->slen);
    if (l) {
        n->kind = N_LOCAL;
        n->ref = l->slot;
        return n->type = l->type;
    }
    struct rl_sym *s = ck_sym_find(ck->mod, n->s, n->slen);
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
    ck_suggest(ck, n->s, n->slen, &m);
    ERR(ck, n, "%s", m.data);
    buf_free(&m);
    return n->type = TY(T_ERR, 0);
}

static rl_type qname_ref(struct checker *ck, struct rl_node *n)
{
    struct rl_sym *imp = ck_sym_find(ck->mod, n->s, n->slen);
    if (imp == NULL || imp->kind != SYM_IMPORT) {
        const char *c[64];
        int nc = 0;
        struct rl_syms *t = ck->mod->syms;
        for (int i = 0; t && i < t->n && nc < 64; i++)
            if (t->v[i].kind == SYM_IMPORT)
                c[nc++] = rl_arena_strndup(&ck->cc->arena, t->v[i].name, t->v[i].len);
        ck_err_unknown(ck, n, n->s, n->slen, c, nc,
                    "unknown import alias '%.*s'", (int)n->slen, n->s);
        return n->type = TY(T_ERR, 0);
    }
    if (imp->mod == NULL)
        return n->type = TY(T_ERR, 0);       /* the import itself failed */
    struct rl_node *nm = n->a;
    struct rl_sym *s = ck_sym_find(imp->mod, nm->s, nm->slen);
    if (s == NULL || s->kind == SYM_IMPORT) {
        const char *c[128];
        int nc = 0;
        struct rl_syms *t = imp->mod->syms;
        for (int i = 0; t && i < t->n && nc < 128; i++)
            if (t->v[i].kind != SYM_IMPORT)
                c[nc++] = rl_arena_strndup(&ck->cc->arena, t->v[i].name, t->v[i].len);
        ck_err_unknown(ck, nm, nm->s, nm->slen, c, nc,
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
    return a->kind == N_NAME ? name_ref(ck, a) : ck_expr(ck, a);
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
        if (ck_name_is(n, "local_part")) {
            n->ref = 0;
            return n->type = TY(T_STRING, 0);
        }
        if (ck_name_is(n, "domain")) {
            n->ref = 1;
            return n->type = TY(T_FQDN, 0);
        }
        static const char *const f[] = { "local_part", "domain" };
        ck_err_unknown(ck, n, n->s, n->slen, f, 2, "an address has no field '%.*s'", (int)n->slen,
                    n->s);
        return n->type = TY(T_ERR, 0);
    }
    ERR(ck, n, "a value of type %s has no field '%.*s'", ck_tn(t, tmp), (int)n->slen, n->s);
    return n->type = TY(T_ERR, 0);
}

/* ---- calls ------------------------------------------------------------------------------------ */
int ck_count_args(const struct rl_node *a)
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
    int n = ck_count_args(call->b);
    if (n < min || n > max) {
        if (min == max)
            ERR(ck, call, "%s expects %d argument%s, found %d", what, min, min == 1 ? "" : "s", n);
        else
            ERR(ck, call, "%s expects %d to %d arguments, found %d", what, min, max, n);
    }
    int i = 0, shift = lead_opt && n < max ? 1 : 0;
    char t1[48], t2[48];
    for (struct rl_node *a = call->b; a; a = a->next, i++) {
        rl_type t = ck_expr(ck, a);
        int k = i + shift > 3 ? 3 : i + shift;
        if (TBASE(t) == T_VOID) {
            ERR(ck, a, "argument %d of %s has no value", i + 1, what);
            continue;
        }
        if (!ck_assignable(ck, types[k], a))
            ERR(ck, a, "argument %d of %s must be %s, found %s", i + 1, what, ck_tn(types[k], t1),
                ck_tn(t, t2));
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
                ck_expr(ck, a);
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
            ck_expr(ck, a);
        return n->type = ot;
    }
    if (ck_name_is(m, "len") && (TBASE(ot) == T_LIST || ck_is_textual(TBASE(ot)))) {
        if (n->b)
            ERR(ck, n, "'len' expects 0 arguments, found %d", ck_count_args(n->b));
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
            ck_err_unknown(ck, m, m->s, m->slen, c, nc,
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
    ERR(ck, m, "a value of type %s has no method '%.*s'", ck_tn(ot, tmp), (int)m->slen, m->s);
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
            ck_expr(ck, a);
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
    if (a->kind == N_STRING && ck_kind_for(y) && y != T_FQDN && y != T_ADDR)
        return ck_coerce_literal(ck, a, ck_kind_for(y)), 1;
    if (b->kind == N_STRING && ck_kind_for(x) && x != T_FQDN && x != T_ADDR)
        return ck_coerce_literal(ck, b, ck_kind_for(x)), 1;
    if (ck_is_textual(x) && ck_is_textual(y))
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
        ck_coerce_literal(ck, x, "ip");
    enum rl_tbase xt = TBASE(x->type);
    int ok;
    switch (s) {
    case T_CIDR: ok = xt == T_IP; break;
    case T_STRING: case T_FQDN: ok = ck_is_textual(xt); break;
    case T_GROUP: ok = e == T_ERR || xt == e || (xt == T_IP && e == T_CIDR) ||
                       (ck_is_textual(xt) && (ck_is_textual(e) || e == T_REGEX)); break;
    case T_FILE: case T_LIST:
        ok = e == T_ERR || xt == e || (xt == T_IP && e == T_CIDR) ||
             (ck_is_textual(xt) && (ck_is_textual(e) || e == T_REGEX));
        break;
    default:
        ERR(ck, set, "'in' needs a list, group, file, cidr or string on the right, found %s",
            ck_tn(set->type, t1));
        return n->type = TY(T_ERR, 0);
    }
    if (!ok)
        ERR(ck, n, "'in' cannot look for %s in %s", ck_tn(x->type, t1), ck_tn(set->type, t2));
    return n->type = TY(T_BOOL, 0);
}

static rl_type binary(struct checker *ck, struct rl_node *n)
{
    rl_type a = ck_expr(ck, n->a), b = ck_expr(ck, n->b);
    char t1[48], t2[48];
    int err = TBASE(a) == T_ERR || TBASE(b) == T_ERR;
    switch (n->op) {
    case TK_ANDAND: case TK_OROR:
        if (!err && TBASE(a) != T_BOOL)
            ERR(ck, n->a, "operand of '%s' must be bool, found %s", n->op == TK_ANDAND ? "&&" : "||",
                ck_tn(a, t1));
        else if (!err && TBASE(b) != T_BOOL)
            ERR(ck, n->b, "operand of '%s' must be bool, found %s", n->op == TK_ANDAND ? "&&" : "||",
                ck_tn(b, t1));
        return n->type = TY(T_BOOL, 0);
    case TK_EQEQ: case TK_NE:
        if (!comparable(ck, n->a, n->b))
            ERR(ck, n, "cannot compare %s with %s", ck_tn(n->a->type, t1), ck_tn(n->b->type, t2));
        return n->type = TY(T_BOOL, 0);
    case TK_LT: case TK_GT: case TK_LE: case TK_GE:
        if (!err && (TBASE(a) != T_INT || TBASE(b) != T_INT))
            ERR(ck, n, "%s needs integers, found %s and %s", rl_tok_name((enum rl_tok)n->op),
                ck_tn(a, t1), ck_tn(b, t2));
        return n->type = TY(T_BOOL, 0);
    case TK_IN:
        return in_expr(ck, n);
    case TK_MATCHES:
        if (n->b->kind == N_STRING)
            ck_coerce_literal(ck, n->b, "regex");
        if (!err && !ck_is_textual(TBASE(a)))
            ERR(ck, n->a, "'matches' needs a string on the left, found %s", ck_tn(a, t1));
        else if (!err && TBASE(n->b->type) != T_REGEX && TBASE(n->b->type) != T_ERR)
            ERR(ck, n->b, "'matches' needs a regex on the right, found %s", ck_tn(n->b->type, t1));
        return n->type = TY(T_BOOL, 0);
    }
    return n->type = TY(T_ERR, 0);
}

rl_type ck_expr(struct checker *ck, struct rl_node *n)
{
    char tmp[48];
    switch (n->kind) {
    case N_INT: return n->type = TY(T_INT, 0);
    case N_BOOL: return n->type = TY(T_BOOL, 0);
    case N_STRING: return n->type = TY(T_STRING, 0);
    case N_TEMPLATE:
        for (struct rl_node *p = n->a; p; p = p->next) {
            rl_type t = ck_expr(ck, p);
            enum rl_tbase b = TBASE(t);
            if (b == T_VOID || b == T_NS || b == T_SERVICE || b == T_FILE)
                ERR(ck, p, "cannot interpolate a value of type %s", ck_tn(t, tmp));
        }
        return n->type = TY(T_STRING, 0);
    case N_TYPED: return ck_typed_literal(ck, n);
    case N_GROUP: return ck_group_literal(ck, n);
    case N_FILE: return ck_file_literal(ck, n);
    case N_LIST: {
        int elem = -1;
        for (struct rl_node *e = n->a; e; e = e->next) {
            rl_type t = ck_expr(ck, e);
            if (TBASE(t) == T_ERR)
                continue;
            if (TBASE(t) == T_LIST || TBASE(t) == T_VOID || TBASE(t) == T_NS ||
                TBASE(t) == T_SERVICE || TBASE(t) == T_FILE || TBASE(t) == T_GROUP) {
                ERR(ck, e, "a list cannot hold a %s", ck_tn(t, tmp));
                continue;
            }
            if (elem == -1)
                elem = TBASE(t);
            else if (elem != (int)TBASE(t) && !(ck_is_textual((enum rl_tbase)elem) && ck_is_textual(TBASE(t))))
                ERR(ck, e, "list elements must have one type: %s, found %s",
                    rl_tbase_name((enum rl_tbase)elem), ck_tn(t, tmp));
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
        rl_type t = ck_expr(ck, n->a);
        enum rl_tbase want = n->op == TK_BANG ? T_BOOL : T_INT;
        if (TBASE(t) != T_ERR && TBASE(t) != want)
            ERR(ck, n, "operand of '%s' must be %s, found %s", n->op == TK_BANG ? "!" : "-",
                rl_tbase_name(want), ck_tn(t, tmp));
        return n->type = TY(want, 0);
    }
    case N_BINARY: return binary(ck, n);
    case N_CONSTREF: case N_CTX: case N_LOCAL: case N_SVCREF:
        return n->type;
    }
    return n->type = TY(T_ERR, 0);
}

