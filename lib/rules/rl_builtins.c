/*
 * rl_builtins.c - the builtin functions, declared once as a registry
 * {name, arity, argument types, result type, stages allowed, may-tempfail,
 * function, compile-time check}. The checker enforces arity, types and
 * stages from this table; the VM calls `fn`. Mutations only record what the
 * rule asked for (struct rl_mutation): the process that owns the message
 * (smtpd, cleanup, qmgr) applies them. Text that reaches headers or logs is
 * stripped of CR/LF here, so a rule can never inject a header line.
 */
#include <ctype.h>
#include <string.h>
#include "config/config.h"
#include "filter/filter_mut.h"
#include "util/log.h"
#include "mail/hdr.h"
#include "rules/rl_int.h"

#define S   TY(T_STRING, 0)
#define A   TY(T_ADDR, 0)
#define V   TY(T_VOID, 0)
#define PRE_DELIVER (STAGES_ALL & ~STAGE_BIT(STAGE_DELIVER))
#define FROM_MAIL   (STAGE_BIT(STAGE_MAIL) | STAGE_BIT(STAGE_RCPT) | STAGE_BIT(STAGE_DATA) | \
                     STAGE_BIT(STAGE_POSTQ))
#define FROM_RCPT   (STAGE_BIT(STAGE_RCPT) | STAGE_BIT(STAGE_DATA) | STAGE_BIT(STAGE_POSTQ))
#define MSG_STAGES  (STAGE_BIT(STAGE_DATA) | STAGE_BIT(STAGE_POSTQ))
#define DELIVER     STAGE_BIT(STAGE_DELIVER)

/* A value as a NUL-terminated string without control characters. */
static const char *text(struct rl_vm *vm, const struct rl_value *v)
{
    buf_reset(&vm->tmp);
    rl_value_str(v, &vm->tmp);
    for (size_t i = 0; i < vm->tmp.len; i++)
        if ((unsigned char)vm->tmp.data[i] < 0x20 || vm->tmp.data[i] == 0x7f)
            vm->tmp.data[i] = ' ';
    return rl_vm_strdup(vm, vm->tmp.data, vm->tmp.len);
}

static int b_log(struct rl_vm *vm, struct rl_value *a, int n, struct rl_value *out, const void *self)
{
    enum log_level lvl = LOG_L_INFO;
    if (n == 2 && log_level_parse(text(vm, &a[0]), &lvl) < 0)
        lvl = LOG_L_INFO;
    buf_t m;
    buf_init(&m, 128);
    buf_reset(&vm->tmp);
    rl_value_str(&a[n - 1], &vm->tmp);
    buf_append_printable(&m, vm->tmp.data, vm->tmp.len);
    const char *q = vm->txn->f[RL_QUEUE_ID];
    if (*q)
        log_set_qid(q);
    const char *fmt = "rules: %s \"%s\": %s";
    const char *kind = vm->rule->is_action ? "action" : "rule";
    switch (lvl) {
    case LOG_L_DEBUG: log_debug(fmt, kind, vm->rule->name, m.data); break;
    case LOG_L_WARN: log_warn(fmt, kind, vm->rule->name, m.data); break;
    case LOG_L_ERROR: log_error(fmt, kind, vm->rule->name, m.data); break;
    default: log_info(fmt, kind, vm->rule->name, m.data); break;
    }
    if (*q)
        log_set_qid(NULL);
    buf_free(&m);
    return 0;
}

/* Mutations: which kind each builtin records, and how its arguments map. */
static int mut(struct rl_vm *vm, enum filter_mut_kind k, struct rl_value *a, int n, int max)
{
    const char *rcpt = NULL, *arg = NULL, *arg2 = NULL;
    switch (k) {
    case FILTER_M_ADD_RCPT: case FILTER_M_REMOVE_RCPT: case FILTER_M_BCC:
        rcpt = text(vm, &a[0]);
        break;
    case FILTER_M_REWRITE_MAIL_FROM: case FILTER_M_QUARANTINE: case FILTER_M_REMOVE_HEADER:
        arg = text(vm, &a[0]);
        break;
    case FILTER_M_ADD_HEADER: case FILTER_M_SET_HEADER:
        arg = text(vm, &a[0]);
        arg2 = text(vm, &a[1]);
        break;
    case FILTER_M_FORWARD: case FILTER_M_LMTP: case FILTER_M_TRANSPORT:
        rcpt = n == max ? text(vm, &a[0]) : "";
        arg = text(vm, &a[n - 1]);
        break;
    default:                        /* maildir mbox relay discard ([rcpt]) */
        rcpt = n ? text(vm, &a[0]) : "";
        break;
    }
    if ((k == FILTER_M_ADD_HEADER || k == FILTER_M_SET_HEADER || k == FILTER_M_REMOVE_HEADER) &&
        !hdr_name_ok(arg, strlen(arg))) {
        log_warn("rules: rule \"%s\": invalid header name ignored", vm->rule->name);
        return 0;
    }
    if ((rcpt && strlen(rcpt) > FILTER_MUT_ARG_MAX) || (arg && strlen(arg) > FILTER_MUT_ARG_MAX)) {
        log_warn("rules: rule \"%s\": %s with an argument over %d octets ignored",
                 vm->rule->name, filter_mut_name(k), FILTER_MUT_ARG_MAX);
        return 0;
    }
    if (arg2) {
        /* the field the value makes is capped (folded when written): values
         * from mail, e.g. a 70 KB folded Subject, are cut here */
        size_t vlen = strlen(arg2);
        size_t keep = filter_hdr_value_cap(strlen(arg), arg2, vlen);
        if (keep < vlen)
            arg2 = rl_vm_strdup(vm, arg2, keep);
    }
    rl_vm_add_mut(vm, k, rcpt, arg, arg2);
    return 0;
}

#define MUTFN(fname, kind, max) \
    static int fname(struct rl_vm *vm, struct rl_value *a, int n, struct rl_value *out, \
                     const void *self) { return mut(vm, kind, a, n, max); }
MUTFN(b_add_rcpt, FILTER_M_ADD_RCPT, 1)
MUTFN(b_remove_rcpt, FILTER_M_REMOVE_RCPT, 1)
MUTFN(b_rewrite_mail_from, FILTER_M_REWRITE_MAIL_FROM, 1)
MUTFN(b_bcc, FILTER_M_BCC, 1)
MUTFN(b_add_header, FILTER_M_ADD_HEADER, 2)
MUTFN(b_set_header, FILTER_M_SET_HEADER, 2)
MUTFN(b_remove_header, FILTER_M_REMOVE_HEADER, 1)
MUTFN(b_quarantine, FILTER_M_QUARANTINE, 1)
MUTFN(b_maildir, FILTER_M_MAILDIR, 1)
MUTFN(b_mbox, FILTER_M_MBOX, 1)
MUTFN(b_relay, FILTER_M_RELAY, 1)
MUTFN(b_forward, FILTER_M_FORWARD, 2)
MUTFN(b_lmtp, FILTER_M_LMTP, 2)
MUTFN(b_discard, FILTER_M_DISCARD, 1)
MUTFN(b_transport, FILTER_M_TRANSPORT, 2)

static int b_case(struct rl_vm *vm, struct rl_value *a, int up, struct rl_value *out)
{
    char *d = rl_vm_alloc(vm, a[0].len + 1);
    if (d == NULL)
        return -1;
    for (uint32_t i = 0; i < a[0].len; i++)
        d[i] = (char)(up ? toupper((unsigned char)a[0].u.s[i]) : tolower((unsigned char)a[0].u.s[i]));
    d[a[0].len] = '\0';
    out->t = T_STRING;
    out->u.s = d;
    out->len = a[0].len;
    return 0;
}

static int b_lower(struct rl_vm *vm, struct rl_value *a, int n, struct rl_value *out, const void *self)
{
    return b_case(vm, a, 0, out);
}

static int b_upper(struct rl_vm *vm, struct rl_value *a, int n, struct rl_value *out, const void *self)
{
    return b_case(vm, a, 1, out);
}

/* ---- compile-time checks ------------------------------------------------------------------------ */
static void check_log(struct rl_cc *cc, struct rl_node *call)
{
    struct rl_node *lv = call->b;
    enum log_level l;
    if (lv && lv->next && lv->kind == N_STRING && (log_level_parse(lv->s, &l) < 0 || l > LOG_L_ERROR))
        rl_error(cc, lv->file, lv->line, lv->col,
                 "unknown log level \"%.*s\" (debug, info, warn, error)", (int)lv->slen, lv->s);
}

static void check_header(struct rl_cc *cc, struct rl_node *call)
{
    struct rl_node *h = call->b;
    if (h && h->kind == N_STRING && !hdr_name_ok(h->s, h->slen))
        rl_error(cc, h->file, h->line, h->col, "invalid header name \"%.*s\"",
                 (int)(h->slen > 60 ? 60 : h->slen), h->s);
}

/* forward(host) / lmtp(addr): a literal next hop is checked now (qmgr checks
 * a computed one again before it is used). lmtp("NAME") names a transport
 * block instead. */
/* The last argument when it is a literal string (at most 300 octets). */
static struct rl_node *literal_last(struct rl_node *call, char *s, size_t size)
{
    struct rl_node *h = call->b;
    while (h && h->next)
        h = h->next;
    if (h == NULL || h->kind != N_STRING || h->slen >= size)
        return NULL;
    memcpy(s, h->s, h->slen);
    s[h->slen] = '\0';
    return h;
}

/* Remember a literal transport name with its place (rl_program_transports). */
static void add_tref(struct rl_cc *cc, const struct rl_node *h, const char *name, int lmtp)
{
    struct rl_program *p = cc->prog;
    if (p == NULL || p->ntrefs >= 1000)
        return;
    p->trefs = xrealloc(p->trefs, (size_t)(p->ntrefs + 1) * sizeof(*p->trefs));
    p->trefs[p->ntrefs++] = (struct rl_tref){ xstrdup(name), h->file, h->line, h->col, lmtp };
}

static void check_hop(struct rl_cc *cc, struct rl_node *call, int lmtp)
{
    char s[301];
    struct rl_node *h = literal_last(call, s, sizeof(s));
    if (h == NULL)
        return;
    if (lmtp && config_is_transport_name(s)) {
        add_tref(cc, h, s, 1);   /* lmtp("NAME"): a transport block of the config */
        return;
    }
    struct nexthop nh;
    buf_t msg;
    buf_init(&msg, 64);
    if (config_parse_nexthop(s, lmtp ? 0 : 25, lmtp, &nh, &msg) < 0)
        rl_error(cc, h->file, h->line, h->col, "%s: %s", lmtp ? "lmtp" : "forward", msg.data);
    buf_free(&msg);
}

static void check_forward(struct rl_cc *cc, struct rl_node *call)
{
    check_hop(cc, call, 0);
}

static void check_lmtp(struct rl_cc *cc, struct rl_node *call)
{
    check_hop(cc, call, 1);
}

static void check_transport(struct rl_cc *cc, struct rl_node *call)
{
    char s[301];
    struct rl_node *h = literal_last(call, s, sizeof(s));
    if (h && !config_is_transport_name(s))
        rl_error(cc, h->file, h->line, h->col, "transport: \"%.60s\" is not a transport name "
                 "(letters, digits, '_', '-', '.')", s);
    else if (h)
        add_tref(cc, h, s, 0);
}

void rl_program_transports(const struct rl_program *p, rl_tref_fn *fn, void *arg)
{
    for (int i = 0; p && i < p->ntrefs; i++) {
        const struct rl_tref *t = &p->trefs[i];
        fn(t->name, t->lmtp, t->file >= 0 && t->file < p->nfiles ? p->files[t->file] : "?",
           t->line, t->col, arg);
    }
}

const struct rl_builtin rl_builtins[] = {
    /* name, min, max, args, result, stages, may_tempfail, fn, lead_opt, check */
    { "log", 1, 2, { S, S }, V, STAGES_ALL, 0, b_log, 1, check_log },
    { "add_rcpt", 1, 1, { A }, V, FROM_RCPT, 0, b_add_rcpt, 0, NULL },
    { "remove_rcpt", 1, 1, { A }, V, FROM_RCPT, 0, b_remove_rcpt, 0, NULL },
    { "rewrite_mail_from", 1, 1, { A }, V, FROM_MAIL, 0, b_rewrite_mail_from, 0, NULL },
    { "bcc", 1, 1, { A }, V, FROM_MAIL, 0, b_bcc, 0, NULL },
    { "add_header", 2, 2, { S, S }, V, PRE_DELIVER, 0, b_add_header, 0, check_header },
    { "set_header", 2, 2, { S, S }, V, MSG_STAGES, 0, b_set_header, 0, check_header },
    { "remove_header", 1, 1, { S }, V, MSG_STAGES, 0, b_remove_header, 0, check_header },
    { "quarantine", 1, 1, { S }, V, FROM_MAIL, 0, b_quarantine, 0, NULL },
    { "maildir", 0, 1, { A }, V, DELIVER, 0, b_maildir, 0, NULL },
    { "mbox", 0, 1, { A }, V, DELIVER, 0, b_mbox, 0, NULL },
    { "relay", 0, 1, { A }, V, DELIVER, 0, b_relay, 0, NULL },
    { "forward", 1, 2, { A, S }, V, DELIVER, 0, b_forward, 1, check_forward },
    { "lmtp", 1, 2, { A, S }, V, DELIVER, 0, b_lmtp, 1, check_lmtp },
    { "discard", 0, 1, { A }, V, DELIVER, 0, b_discard, 0, NULL },
    { "transport", 1, 2, { A, S }, V, DELIVER, 0, b_transport, 1, check_transport },
    { "lower", 1, 1, { S }, S, STAGES_ALL, 0, b_lower, 0, NULL },
    { "upper", 1, 1, { S }, S, STAGES_ALL, 0, b_upper, 0, NULL },
};
const int rl_nbuiltins = (int)(sizeof(rl_builtins) / sizeof(rl_builtins[0]));

int rl_builtin_find(const char *name, size_t n)
{
    for (int i = 0; i < rl_nbuiltins; i++)
        if (strlen(rl_builtins[i].name) == n && memcmp(rl_builtins[i].name, name, n) == 0)
            return i;
    return -1;
}
