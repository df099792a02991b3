/*
 * rl_int.h - private to the rule language (lib/rules/rl_*.c): tokens, AST, types,
 * run-time values, the program layout, the VM state and the registries of
 * context values, builtins and service methods. Nothing outside lib/rules/
 * and the rules unit tests includes it; the public API is rules.h.
 */
#ifndef POSTERN_RL_INT_H
#define POSTERN_RL_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "util/buf.h"
#include "config/config.h"
#include "rules/rules.h"
#include "mail/stage.h"

#define RL_STACK_MAX     64      /* value stack slots per evaluation */
#define RL_LOCALS_MAX    64      /* locals per rule (let, for) */
#define RL_DEPTH_MAX     48      /* parser nesting (expressions, blocks) */
#define RL_CONST_MAX     65535
#define RL_MEM_CAP       (4u << 20)   /* bytes one evaluation may allocate */
#define RL_BODY_MAX      (1u << 20)   /* msg.body: first bytes of the body */
#define RL_HEADERS_MAX   (1u << 20)   /* header section read from the queue file */
#define RL_MAX_ARGS      8

/* ---- tokens (rl_lex.c) -------------------------------------------------- */
enum rl_tok {
    TK_EOF = 0, TK_ERROR, TK_IDENT, TK_STRING, TK_TEMPLATE, TK_INT, TK_DURATION,
    TK_LBRACE, TK_RBRACE, TK_LPAREN, TK_RPAREN, TK_LBRACKET, TK_RBRACKET,
    TK_COMMA, TK_SEMI, TK_DOT, TK_COLON, TK_COLCOL, TK_EQ, TK_EQEQ, TK_NE,
    TK_LT, TK_GT, TK_LE, TK_GE, TK_ANDAND, TK_OROR, TK_BANG, TK_MINUS,
    /* keywords */
    TK_IMPORT, TK_AS, TK_OBJECT, TK_SERVICE, TK_STAGE, TK_RULE, TK_ACTION,
    TK_IF, TK_ELSE, TK_FOR, TK_IN, TK_LET, TK_RETURN, TK_TRUE, TK_FALSE, TK_MATCHES,
    TK__COUNT
};

struct rl_token {
    enum rl_tok type;
    const char *start;    /* points into the source (no copy) */
    size_t len;
    int line, col;
    int64_t ival;         /* TK_INT, TK_DURATION (seconds) */
    const char *err;      /* TK_ERROR: message (static) */
};

struct rl_lexer {
    const char *src, *cur, *end;
    int line, col;
};

void rl_lex_init(struct rl_lexer *l, const char *src, size_t len, int line, int col);
struct rl_token rl_lex_next(struct rl_lexer *l);
const char *rl_tok_name(enum rl_tok t);     /* "';'", "identifier", ... */

/* ---- types --------------------------------------------------------------- */
enum rl_tbase {
    T_ERR = 0,      /* an error was already reported: accept anything */
    T_VOID, T_BOOL, T_INT, T_STRING, T_IP, T_CIDR, T_ADDR, T_FQDN, T_REGEX,
    T_LIST, T_GROUP, T_FILE, T_SERVICE, T_STATUS, T_NS, T__COUNT
};
typedef uint16_t rl_type;                 /* base | element << 8 */
#define TY(b, e)   ((rl_type)((b) | ((e) << 8)))
#define TBASE(t)   ((enum rl_tbase)((t) & 0xff))
#define TELEM(t)   ((int)((t) >> 8))
const char *rl_type_name(rl_type t, char *tmp, size_t n);   /* "list of address" */
const char *rl_tbase_name(enum rl_tbase b);

enum rl_svc_kind { SVC_CSV = 1, SVC_CMD, SVC_SMTP, SVC__COUNT };

/* ---- AST (rl_ast.c, rl_parse.c) ------------------------------------------ */
enum rl_nkind {
    N_INT, N_BOOL, N_STRING, N_TEMPLATE, N_TYPED, N_GROUP, N_FILE, N_LIST,
    N_NAME, N_QNAME, N_MEMBER, N_CALL, N_UNARY, N_BINARY,
    /* statements */
    N_LET, N_IF, N_FOR, N_RETURN, N_EXPR, N_BLOCK,
    /* declarations */
    N_IMPORT, N_OBJECT, N_SERVICE, N_OPTION, N_STAGE, N_RULE, N_ACTION,
    N_STATUS,
    /* produced by the checker */
    N_CTX, N_LOCAL, N_CONSTREF, N_SVCREF, N__COUNT
};

struct rl_node {
    uint8_t kind;
    uint8_t op;              /* N_UNARY/N_BINARY: token; N_TYPED: rl_tbase; N_RULE: 1=action */
    rl_type type;            /* set by the checker */
    int line, col;
    uint16_t file;           /* index into the compile's file table */
    const char *s;           /* name / literal text (unescaped for strings) */
    uint32_t slen;
    int64_t ival;
    int ref;                 /* resolved: local slot, ctx id, const index, builtin id... */
    int ref2;                /* method id, status, ... */
    struct rl_node *a, *b, *c;
    struct rl_node *next;    /* sibling (statements, arguments, elements) */
};

/* ---- run-time values ------------------------------------------------------ */
struct rl_value {
    uint8_t t;               /* enum rl_tbase */
    uint8_t et;              /* element base type (lists, files) */
    uint32_t len;            /* strings: bytes */
    union {
        int64_t i;
        const char *s;
        const void *p;
        unsigned char ip[16];
    } u;
};

struct rl_list { uint32_t n; struct rl_value v[]; };
struct rl_regex;
struct rl_fileobj;
struct rl_group { const char *name; uint32_t n; struct rl_value *v; };
struct rl_service;

/* ---- program ------------------------------------------------------------- */
typedef uint32_t rl_instr;            /* op:8 | a:8 | b:16 */
#define I_OP(i)  ((int)((i) & 0xff))
#define I_A(i)   ((int)(((i) >> 8) & 0xff))
#define I_B(i)   ((int)(((i) >> 16) & 0xffff))
#define I_SB(i)  ((int)(int16_t)((i) >> 16))
#define I_MK(op, a, b) ((rl_instr)(op) | ((rl_instr)(a) << 8) | ((rl_instr)((b) & 0xffff) << 16))

enum rl_opcode {
#define OP(name, operands, effect, doc) OP_##name,
#include "rules/rl_opcodes.def"
#undef OP
    OP__COUNT
};

struct rl_rule {
    char *name;
    int is_action;
    enum stage stage;
    uint32_t start, end;       /* code range */
    int line, col;
    int file;
    int nlocals;
};

#define RL_MAGIC   0x52554c45u   /* "RULE" */
#define RL_VERSION 1

struct rl_owned { void *p; void (*fn)(void *); };

struct rl_program {
    uint32_t magic, version;   /* checked by rl_eval: a loaded-program header */
    rl_instr *code; uint32_t ncode, capcode;
    uint32_t *lines;           /* source line per instruction */
    struct rl_value *k; int nk, capk;
    struct rl_rule *rules; int nrules, caprules;
    int stage_first[STAGE__COUNT], stage_n[STAGE__COUNT];
    char **files; int nfiles;
    struct rl_service **svcs; int nsvcs;
    struct rl_owned *owned; int nowned, capowned;
    long budget;
    struct rl_tref *trefs; int ntrefs;   /* transport("X") / lmtp("X") names (rl_builtins.c) */
};
/* A transport block named literally by the rules, for `postern check`. */
struct rl_tref { char *name; int file, line, col, lmtp; };
void rl_program_own(struct rl_program *p, void *ptr, void (*fn)(void *));
char *rl_program_strndup(struct rl_program *p, const char *s, size_t n);   /* owned */
int  rl_program_const(struct rl_program *p, const struct rl_value *v);

/* ---- arenas: the AST (rl_ast.c) and each evaluation's values (rl_vm.c) --------- */
struct rl_arena_blk { struct rl_arena_blk *next; size_t used, cap; char data[]; };
struct rl_arena { struct rl_arena_blk *head; size_t total; };
void *rl_arena_alloc(struct rl_arena *a, size_t n);     /* zeroed; fatal on OOM */
void *rl_arena_alloc_grow(struct rl_arena *a, void *old, size_t oldn, size_t newn);
char *rl_arena_strndup(struct rl_arena *a, const char *s, size_t n);
const char *rl_basename(const char *path);
void  rl_arena_free(struct rl_arena *a);

/* ---- the VM state (one per evaluation; never shared) ------------------------ */
struct rl_vm {
    const struct rl_program *p;
    struct rl_txn *txn;
    struct rl_result *res;
    enum stage stage;
    const struct rl_rule *rule;
    long budget;
    struct rl_value stack[RL_STACK_MAX];
    struct rl_value locals[RL_LOCALS_MAX];
    struct rl_arena arena;     /* values made during the evaluation; .total vs RL_MEM_CAP */
    int failed;                /* 0, or a verdict to end with (V_DEFER/V_TEMPFAIL) */
    void *match_data;          /* pcre2_match_data, made on first use */
    buf_t tmp;
    char **svc_out;            /* last captured output per service (cmd/smtp), by index */
};
void *rl_vm_alloc(struct rl_vm *vm, size_t n);   /* NULL over the memory cap */
const char *rl_vm_strdup(struct rl_vm *vm, const char *s, size_t n);
void rl_vm_fail(struct rl_vm *vm, enum verdict v, const char *fmt, ...) PRINTF_LIKE(3, 4);
void rl_vm_add_mut(struct rl_vm *vm, enum filter_mut_kind k, const char *rcpt, const char *arg,
                   const char *arg2);
/* String form of any value (interpolation, log, mutations). */
void rl_value_str(const struct rl_value *v, buf_t *out);
int  rl_value_eq(const struct rl_value *a, const struct rl_value *b);
int  rl_value_in(struct rl_vm *vm, const struct rl_value *x, const struct rl_value *set);
int  rl_value_matches(struct rl_vm *vm, const struct rl_value *x, const struct rl_value *re);

/* ---- context values (rl_ctx.c) ---------------------------------------------- */
struct rl_ctxdef {
    const char *name;          /* "client.ip", "msg.header" */
    rl_type type;
    unsigned stages;           /* bit per enum stage where it exists */
    int is_method;             /* msg.header(name) */
};
extern const struct rl_ctxdef rl_ctx_table[];
extern const int rl_ctx_count;
int  rl_ctx_find(const char *name, size_t n);        /* -1 if none */
int  rl_ctx_is_namespace(const char *name, size_t n);
const char *rl_ctx_example(const char *ns, size_t n);    /* "client.ip" for "client" */
void rl_ctx_get(struct rl_vm *vm, int id, const struct rl_value *arg, struct rl_value *out);
void rl_msgcache_free(struct rl_msgcache *m);
#define STAGES_ALL      0xffu
#define STAGES_FROM(s)  ((0xffu << (s)) & 0xffu)
#define STAGE_BIT(s)    (1u << (s))

struct rl_cc;
/* ---- builtins (rl_builtins.c) and service methods (rl_services.c) ----------- */
typedef int (*rl_fn)(struct rl_vm *vm, struct rl_value *args, int n, struct rl_value *out,
                     const void *self);
struct rl_builtin {
    const char *name;
    int min_args, max_args;
    rl_type args[4];           /* last one repeats for extra arguments */
    rl_type result;
    unsigned stages;
    int may_tempfail;
    rl_fn fn;
    int lead_opt;              /* first parameter optional (forward(host) / forward(r, host)) */
    void (*check)(struct rl_cc *cc, struct rl_node *call);   /* extra compile-time checks */
};
extern const struct rl_builtin rl_builtins[];
extern const int rl_nbuiltins;
int rl_builtin_find(const char *name, size_t n);

struct rl_svc_method {
    enum rl_svc_kind kind;
    const char *name;
    int min_args, max_args;
    rl_type args[4];
    rl_type result;
    unsigned stages;
    int may_tempfail;
    rl_fn fn;
};
extern const struct rl_svc_method rl_svc_methods[];
extern const int rl_nsvc_methods;
int rl_svc_method_find(enum rl_svc_kind k, const char *name, size_t n);

/* Service options: {kind, name, type, required, bounds of an integer,
 * why the option is refused}. unsupported != NULL: the checker rejects the
 * option with that reason (an option that once existed). */
struct rl_svc_option {
    enum rl_svc_kind kind; const char *name; enum rl_tbase type; int required;
    int64_t min, max;
    const char *unsupported;
};
extern const struct rl_svc_option rl_svc_options[];
extern const int rl_nsvc_options;
const char *rl_svc_kind_name(enum rl_svc_kind k);
int rl_svc_kind_parse(const char *s, size_t n);   /* 0 = unknown */

/* Build a service from checked options (names/values parallel arrays). */
struct rl_service *rl_service_new(enum rl_svc_kind k, const char *name, const char *basedir,
                                  const char **opt, const struct rl_value *val, int nopt,
                                  char *err, size_t errlen);
void rl_service_free(void *s);
int  rl_service_index(const struct rl_service *s);
const char *rl_service_name(const struct rl_service *s);
void rl_service_set_index(struct rl_service *s, int i);

/* ---- objects (rl_objects.c) ---------------------------------------------------- */
/* Parse a typed literal into a constant (k may reference program-owned memory).
 * 0 ok; -1 with a message in err. */
int rl_object_parse(struct rl_program *p, const char *kind, size_t kn, const char *s, size_t n,
                    struct rl_value *k, char *err, size_t errlen);   /* -2: unknown kind */
/* Object kind names (ip4 ip6 ip cidr fqdn address string regex). */
extern const char *const rl_kind_names[];
extern const int rl_nkinds;
int rl_kind_find(const char *kind, size_t n, enum rl_tbase *base_r, int *family_r);
int rl_file_kind_ok(enum rl_tbase kind);
/* A file:TYPE object (path already resolved); family 4/6 for ip4/ip6, else 0. */
struct rl_fileobj *rl_file_new(const char *path, enum rl_tbase elem, int family);
/* (Re)load now: -1 with "path:line: message" when unreadable or a line is bad. */
int rl_file_load(struct rl_fileobj *f, char *err, size_t errlen);
void rl_group_free(void *g);
void rl_file_free(void *f);
const char *rl_file_path(const struct rl_fileobj *f);
/* Does x match any entry of the file (reloaded first if changed)? */
int rl_file_contains(struct rl_vm *vm, struct rl_fileobj *f, const struct rl_value *x);
void rl_vm_match_data_free(struct rl_vm *vm);
int rl_regex_match(struct rl_vm *vm, const struct rl_regex *re, const char *s, size_t n);
const char *rl_regex_source(const struct rl_regex *re);
int rl_ip_parse(const char *s, size_t n, unsigned char ip[16]);  /* 0 ok, v4 mapped */
int rl_ip_in_cidr(const unsigned char ip[16], const struct cidr *c);
int rl_fqdn_valid(const char *s, size_t n);

/* ---- compile-time helpers ------------------------------------------------------- */
int rl_did_you_mean(const char *name, size_t n, const char *const *cands, int ncands);
const char *rl_status_name(int v);
int rl_status_parse(const char *s, size_t n);      /* enum verdict or -1 (no tempfail) */

/* ---- the compiler's working state (rl_ast.c, rl_parse.c, rl_check.c, rl_compile.c) */

struct rl_module {
    int file;                  /* index into cc->files */
    char *real;                /* canonical path: identity for import cycles */
    char *dir;                 /* absolute directory for relative imports and files */
    char *ddir;                /* the same as written (for messages) */
    char *src; size_t len;
    struct rl_node *decls;
    int state;                 /* 0 new, 1 being loaded (cycle check), 2 done */
    int depth;                 /* 0 = the main file */
    struct rl_syms *syms;      /* rl_check.c */
};

struct rl_cc {
    struct rl_arena arena;
    struct rl_diag *diags;
    struct rl_diag own;        /* when the caller passed NULL */
    int nerr;
    char **files; int nfiles, capfiles;
    struct rl_module **mods; int nmods, capmods;
    struct rl_program *prog;
};
void rl_error(struct rl_cc *cc, int file, int line, int col, const char *fmt, ...)
    PRINTF_LIKE(5, 6);
struct rl_node *rl_node_new(struct rl_cc *cc, int kind, int file, int line, int col);
int  rl_cc_file(struct rl_cc *cc, const char *path);
/* Parse one file's source into its declaration list (errors into cc). */
struct rl_node *rl_parse(struct rl_cc *cc, int file, const char *src, size_t len);
/* Load imports, resolve names, type-check (rl_check.c). 0 ok. */
int  rl_check(struct rl_cc *cc, struct rl_module *main_mod);
void rl_check_module(struct rl_cc *cc, struct rl_module *m, const int *stack, int nstack);
/* Emit bytecode for the checked modules (rl_compile.c). 0 ok. */
int  rl_codegen(struct rl_cc *cc, struct rl_module *main_mod);
struct rl_module *rl_module_load(struct rl_cc *cc, const char *path, const char *src, size_t len,
                                 int depth);

#endif
