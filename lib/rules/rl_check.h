/*
 * rl_check.h - what the checker's files (rl_check.c, rl_check_decl.c,
 * rl_check_expr.c) share: the checker state, module symbols and the
 * helpers one part calls in another. Private to lib/rules.
 */
#ifndef POSTERN_RL_CHECK_H
#define POSTERN_RL_CHECK_H

#include <stddef.h>
#include "rules/rl_int.h"

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

/* ---- rl_check.c ---- */
/* Report "MESSAGE; did you mean 'X'?" at node at: the suggestion is the
 * candidate closest to name (none when nothing is close). */
void ck_err_unknown(struct checker *ck, const struct rl_node *at, const char *name,
                    size_t n, const char *const *cands, int ncands, const char *fmt, ...)
    PRINTF_LIKE(7, 8);
int  ck_name_is(const struct rl_node *n, const char *s);
char *ck_tn(rl_type t, char *tmp);                      /* tmp: 48 bytes */
struct rl_sym *ck_sym_find(struct rl_module *m, const char *s, size_t n);
struct rl_sym *ck_sym_add(struct checker *ck, const struct rl_node *d, int kind);
void ck_suggest(struct checker *ck, const char *s, size_t n, buf_t *out);
struct local *ck_local_find(struct checker *ck, const char *s, size_t n);
/* Turn a string literal into a typed constant of `kind`: 0 ok / -1 reported. */
int  ck_coerce_literal(struct checker *ck, struct rl_node *n, const char *kind);
const char *ck_kind_for(enum rl_tbase b);
int  ck_assignable(struct checker *ck, rl_type want, struct rl_node *n);
static inline int ck_is_textual(enum rl_tbase b)
{
    return b == T_STRING || b == T_ADDR || b == T_FQDN;
}

/* ---- rl_check_decl.c ---- */
rl_type ck_typed_literal(struct checker *ck, struct rl_node *n);
rl_type ck_group_literal(struct checker *ck, struct rl_node *n);
rl_type ck_file_literal(struct checker *ck, struct rl_node *n);
void ck_object_decl(struct checker *ck, struct rl_node *d);
void ck_service_decl(struct checker *ck, struct rl_node *d);
void ck_import_decl(struct checker *ck, struct rl_node *d);

/* ---- rl_check_expr.c ---- */
int  ck_count_args(const struct rl_node *a);
rl_type ck_expr(struct checker *ck, struct rl_node *n);   /* types n, rewrites names */

#endif
