/*
 * rl_check_decl.c - the checker's declarations (rl_check.c): objects
 * (typed, group and file literals become constants), services (options
 * checked, the service instantiated) and imports (loaded, cycles reported).
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "util/fdio.h"
#include "rules/rl_check.h"

/* ---- objects ---------------------------------------------------------------------------- */
rl_type ck_typed_literal(struct checker *ck, struct rl_node *n)
{
    struct rl_value v;
    char err[200];
    int r = rl_object_parse(ck->cc->prog, n->c->s, n->c->slen, n->s, n->slen, &v, err, sizeof(err));
    if (r == -2) {
        ck_err_unknown(ck, n->c, n->c->s, n->c->slen, rl_kind_names, rl_nkinds,
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

rl_type ck_group_literal(struct checker *ck, struct rl_node *n)
{
    int count = 0;
    for (struct rl_node *e = n->a; e; e = e->next)
        count++;
    struct rl_group *g = xcalloc(1, sizeof(*g));
    g->v = xcalloc((size_t)(count ? count : 1), sizeof(*g->v));
    rl_program_own(ck->cc->prog, g, rl_group_free);
    int elem = -1;
    for (struct rl_node *e = n->a; e; e = e->next) {
        rl_type t = ck_expr(ck, e);
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

rl_type ck_file_literal(struct checker *ck, struct rl_node *n)
{
    char err[300];
    enum rl_tbase et;
    int family;
    if (rl_kind_find(n->c->s, n->c->slen, &et, &family) < 0 || !rl_file_kind_ok(et)) {
        ck_err_unknown(ck, n->c, n->c->s, n->c->slen, rl_kind_names, rl_nkinds,
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

void ck_object_decl(struct checker *ck, struct rl_node *d)
{
    struct rl_node *e = d->a;
    rl_type t = ck_expr(ck, e);
    struct rl_sym *s = ck_sym_add(ck, d, SYM_OBJECT);
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
void ck_service_decl(struct checker *ck, struct rl_node *d)
{
    int kind = rl_svc_kind_parse(d->a->s, d->a->slen);
    if (kind == 0) {
        static const char *const kinds[] = { "csv", "cmd", "smtp" };
        ck_err_unknown(ck, d->a, d->a->s, d->a->slen, kinds, 3,
                    "unknown service kind '%.*s' (known: csv, cmd, smtp)", (int)d->a->slen, d->a->s);
        ck_sym_add(ck, d, SYM_SERVICE);
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
            if (ck_name_is(o, rl_svc_options[i].name))
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
            ck_err_unknown(ck, o, o->s, o->slen, cands, nc,
                        "unknown option '%.*s' for a %s service", (int)o->slen, o->s, rl_svc_kind_name((enum rl_svc_kind)kind));
            bad = 1;
            continue;
        }
        for (int i = 0; i < nopt; i++)
            if (strcmp(names[i], rl_svc_options[found].name) == 0) {
                ERR(ck, o, "option '%s' given twice", names[i]);
                bad = 1;
            }
        rl_type t = ck_expr(ck, o->a);
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
        if (TBASE(t) != want && !(want == T_STRING && ck_is_textual(TBASE(t)))) {
            ERR(ck, o->a, "option '%s' must be %s, found %s", rl_svc_options[found].name,
                want == T_LIST ? "a list of strings" : rl_tbase_name(want), ck_tn(t, tmp));
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
    struct rl_sym *s = ck_sym_add(ck, d, SYM_SERVICE);
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
void ck_import_decl(struct checker *ck, struct rl_node *d)
{
    struct rl_sym *s = ck_sym_add(ck, d->a, SYM_IMPORT);
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
    (void)fdio_read_file(fileno(fp), &src, SIZE_MAX);   /* a read error keeps what was read */
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

