/*
 * rules.h - the rule language (PRODUCT.md "The rule language"): compile a
 * *.rules file into an immutable program, evaluate one stage of one
 * transaction against it.
 *
 * Used by filter (every stage's verdict), the CLI (`postern rules check`,
 * `postern rules test`) and the tests, and linked into nothing else: it
 * lives in lib/rules/ and builds into librules.a (the processes that only
 * hear verdicts use lib/filter/filter_mut.h). Pipeline: rl_lex.c -> rl_parse.c
 * (AST, rl_ast.c) -> rl_check.c (+ _decl.c, _expr.c) -> rl_compile.c
 * (bytecode, rl_opcodes.def, rl_disasm.c) -> rl_vm.c (with rl_builtins.c,
 * rl_ctx.c, rl_objects.c, rl_services.c + rl_svc_*.c). There is no
 * tree-walking at run time.
 *
 * A program never changes after compilation except for the contents of
 * file:TYPE objects (reloaded under a lock when the file changes) and the
 * services' own state (each locks itself), so several threads may call
 * rl_eval() on one program at once, each with its own rl_txn and result.
 * Never does: run a shell, loop over untrusted input other than a list,
 * evaluate without an instruction budget, pass a computed value to a
 * command where it could be read as an option.
 */
#ifndef POSTERN_RULES_H
#define POSTERN_RULES_H

#include <stdint.h>
#include "util/buf.h"
#include "filter/filter_mut.h"
#include "mail/stage.h"

/* ---- diagnostics ------------------------------------------------------ */
struct rl_diag_item {
    char *file;
    int line, col;
    char *msg;
};
struct rl_diag {
    struct rl_diag_item *v;
    int n, cap;
};
void rl_diag_free(struct rl_diag *d);             /* leaves d empty, reusable */
/* "file:line:col: message" */
void rl_diag_format(buf_t *out, const struct rl_diag_item *e);

/* ---- compilation ------------------------------------------------------ */
struct rl_program;
/* Compile a file and its imports. NULL when anything is wrong; every error
 * is appended to diags (which may be NULL: errors are then logged). */
struct rl_program *rl_compile_file(const char *path, struct rl_diag *diags);
/* Same from memory; name appears in messages, relative imports and file
 * objects resolve against its directory. */
struct rl_program *rl_compile_buffer(const char *name, const char *src, size_t len,
                                     struct rl_diag *diags);
void rl_program_free(struct rl_program *p);
/* Each transport name the program names literally (transport(r, "X"),
 * lmtp(r, "X")) with its place, so `postern check` can hold it against
 * the configuration's transport blocks (lmtp: it must be of type lmtp). */
typedef void rl_tref_fn(const char *name, int lmtp, const char *file, int line, int col,
                        void *arg);
void rl_program_transports(const struct rl_program *p, rl_tref_fn *fn, void *arg);
/* Human-readable bytecode, constants and rule table. */
void rl_disasm(const struct rl_program *p, buf_t *out);
/* Instructions one evaluation may execute (default RL_BUDGET_DEFAULT). */
#define RL_BUDGET_DEFAULT 100000
void rl_program_set_budget(struct rl_program *p, long budget);
/* Number of rules + actions attached to a stage. */
int rl_program_stage_rules(const struct rl_program *p, enum stage s);

/* ---- the transaction context ------------------------------------------ */
enum rl_field {
    RL_CLIENT_IP = 0, RL_CLIENT_PTR, RL_HELO, RL_AUTH_USER, RL_TLS_VERSION,
    RL_TLS_CIPHER, RL_MAIL_FROM, RL_RCPT, RL_QUEUE_ID, RL_MSG_PATH,
    RL_SPF, RL_DKIM, RL_DMARC, RL_SPF_DOMAIN,
    RL_DKIM_DOMAINS,            /* d= of the passing signatures, space-separated */
    RL_DMARC_POLICY,            /* none | quarantine | reject (cleanup_dmarc.c) */
    RL_F__COUNT
};

struct rl_msgcache;   /* headers/body read from the queue file (rl_ctx.c) */

/* One SMTP session/transaction as the rules see it. The filter keeps one per
 * session across stages. Strings are owned (set with rl_txn_set). */
struct rl_txn {
    char    *f[RL_F__COUNT];  /* never NULL after rl_txn_init ("" = unknown) */
    uint32_t client_port;
    uint64_t msg_size;        /* 0 = take it from the queue file */
    char   **rcpts;           /* accepted recipients (rcpt_list) */
    int      nrcpts, caprcpts;
    int      faccept;         /* a pre-queue stage returned faccept */
    int      faccept_stage;   /* enum stage that returned it */
    char     faccept_rule[64];
    struct rl_msgcache *msg;  /* lazily loaded from f[RL_MSG_PATH] */
};
void rl_txn_init(struct rl_txn *t);
void rl_txn_free(struct rl_txn *t);      /* leaves t as rl_txn_init */
void rl_txn_set(struct rl_txn *t, enum rl_field f, const char *v);  /* NULL = "" */
void rl_txn_add_rcpt(struct rl_txn *t, const char *addr);
/* New transaction in the same session (RSET, next MAIL): clears mail_from,
 * rcpt, rcpt_list, queue id, message and a faccept given at mail or later. */
void rl_txn_reset_mail(struct rl_txn *t);

/* ---- evaluation -------------------------------------------------------- */
/* Mutation kinds and their names: filter_mut.h (filter_muts.def), shared
 * with every process that hears verdicts. */
struct rl_mutation {
    enum filter_mut_kind kind;
    char *rcpt;           /* delivery choices / add / remove / bcc: the address ("" = all) */
    char *arg;            /* header name, host, lmtp address, quarantine name, new sender */
    char *arg2;           /* header value */
    char *rule;           /* rule or action that made it */
};

struct rl_result {
    enum verdict status;
    int  code;            /* 0 = the status's default (verdict_default) */
    char enhanced[16];    /* "" = default */
    char text[256];       /* "" = default */
    char rule[64];        /* rule that decided; "" = none */
    char quarantine[64];  /* quarantine name for V_QUARANTINE */
    struct rl_mutation *muts;
    int nmuts, capmuts;
    long steps;           /* instructions executed */
};
void rl_result_init(struct rl_result *r);
void rl_result_free(struct rl_result *r);   /* leaves r as rl_result_init */

/* Run the rules of stage s. Returns the status (also in out->status).
 * Instruction budget or memory cap exceeded: logged, V_DEFER. A service
 * that failed temporarily: logged, V_TEMPFAIL. A stage without rules, or
 * whose rules all said next: V_NEXT. After faccept at a pre-queue stage,
 * later pre-queue stages return V_ACCEPT without running rules. */
int rl_eval(const struct rl_program *p, enum stage s, struct rl_txn *t, struct rl_result *out);

/* ---- deadlines --------------------------------------------------------- */
/* The calling thread's evaluations end every blocking wait of a service
 * (a command's output and exit, a socket, a table's lock) by this
 * CLOCK_MONOTONIC time in milliseconds (0 = each service's own timeout
 * only): a wait cut short is a temporary failure. filter sets it per job
 * from limits.rules_timeout. */
void    rl_set_deadline(int64_t mono_ms);
/* The longest timeout a service may declare (seconds), also the most
 * limits.rules_timeout may be: below smtpd's 120 s wait for filter. */
#define RL_SVC_TIMEOUT_MAX 100

#endif
