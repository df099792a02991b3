/*
 * rl_vm.c - the bytecode interpreter: one explicit struct rl_vm per
 * evaluation (no globals: the filter serves many sessions, possibly from
 * several threads), a fixed value stack sized by the compiler's depth
 * check, an instruction budget and a memory cap per evaluation. Loops only
 * walk lists (FORPREP/FORNEXT); there is no other backward jump source.
 * Also: value semantics shared with builtins (equality, `in`, string form)
 * and the result/mutation list handed back to the caller.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "filter/filter_mut.h"
#include "util/log.h"
#include "rules/rl_int.h"

/* ---- per-evaluation memory ------------------------------------------------------------- */
void *rl_vm_alloc(struct rl_vm *vm, size_t n)
{
    if (vm->arena.total + n > RL_MEM_CAP) {
        rl_vm_fail(vm, V_DEFER, "memory cap of %u bytes exceeded", RL_MEM_CAP);
        return NULL;
    }
    return rl_arena_alloc(&vm->arena, n);
}

const char *rl_vm_strdup(struct rl_vm *vm, const char *s, size_t n)
{
    char *d = rl_vm_alloc(vm, n + 1);
    if (d == NULL)
        return "";
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

void rl_vm_fail(struct rl_vm *vm, enum verdict v, const char *fmt, ...)
{
    if (vm->failed)
        return;
    vm->failed = v;
    buf_t m;
    buf_init(&m, 128);
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&m, fmt, ap);
    va_end(ap);
    log_warn("rules: %s \"%s\" at stage %s: %s: %s", vm->rule && vm->rule->is_action ? "action" : "rule",
             vm->rule ? vm->rule->name : "?", stage_name(vm->stage), m.data,
             v == V_DEFER ? "deferring" : "temporary failure");
    buf_free(&m);
}

void rl_vm_add_mut(struct rl_vm *vm, enum filter_mut_kind k, const char *rcpt, const char *arg,
                   const char *arg2)
{
    struct rl_result *r = vm->res;
    /* at most FILTER_MUTS_MAX of at most ~3 KB each (rl_builtins.c caps
     * every string), so summing them again is cheap */
    size_t nb = filter_mut_bytes(rcpt, arg, arg2);
    for (int i = 0; i < r->nmuts && r->nmuts < FILTER_MUTS_MAX; i++)
        nb += filter_mut_bytes(r->muts[i].rcpt, r->muts[i].arg, r->muts[i].arg2);
    if (r->nmuts >= FILTER_MUTS_MAX || nb > FILTER_MUTS_MAX_BYTES) {
        /* a runaway rule: like the instruction budget (rl_eval then defers) */
        rl_vm_fail(vm, V_DEFER, "more than %d mutations or %d octets of them", FILTER_MUTS_MAX,
                   FILTER_MUTS_MAX_BYTES);
        return;
    }
    if (r->nmuts == r->capmuts) {
        r->capmuts = r->capmuts ? r->capmuts * 2 : 8;
        r->muts = xrealloc(r->muts, sizeof(*r->muts) * (size_t)r->capmuts);
    }
    struct rl_mutation *m = &r->muts[r->nmuts++];
    m->kind = k;
    m->rcpt = xstrdup(rcpt ? rcpt : "");
    m->arg = xstrdup(arg ? arg : "");
    m->arg2 = xstrdup(arg2 ? arg2 : "");
    const char *rn = vm->rule ? vm->rule->name : "";
    m->rule = xstrndup(rn, strnlen(rn, FILTER_MUT_RULE_MAX));
}

void rl_result_init(struct rl_result *r)
{
    memset(r, 0, sizeof(*r));
}

void rl_result_free(struct rl_result *r)
{
    for (int i = 0; i < r->nmuts; i++) {
        free(r->muts[i].rcpt);
        free(r->muts[i].arg);
        free(r->muts[i].arg2);
        free(r->muts[i].rule);
    }
    free(r->muts);
    memset(r, 0, sizeof(*r));
}

/* ---- value semantics ---------------------------------------------------------------------- */
static int is_text(int t) { return t == T_STRING || t == T_ADDR || t == T_FQDN; }

void rl_value_str(const struct rl_value *v, buf_t *out)
{
    char tmp[INET6_ADDRSTRLEN + 8];
    switch (v->t) {
    case T_BOOL: buf_append_str(out, v->u.i ? "true" : "false"); break;
    case T_INT: buf_printf(out, "%lld", (long long)v->u.i); break;
    case T_STRING: case T_ADDR: case T_FQDN: buf_append(out, v->u.s, v->len); break;
    case T_IP: {
        static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
        if (memcmp(v->u.ip, mapped, 12) == 0)
            inet_ntop(AF_INET, v->u.ip + 12, tmp, sizeof(tmp));
        else
            inet_ntop(AF_INET6, v->u.ip, tmp, sizeof(tmp));
        buf_append_str(out, tmp);
        break;
    }
    case T_CIDR: {
        const struct cidr *c = v->u.p;
        struct rl_value ip = { .t = T_IP };
        memcpy(ip.u.ip, c->addr, 16);
        rl_value_str(&ip, out);
        static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
        int v4 = memcmp(c->addr, mapped, 12) == 0 && c->prefix >= 96;
        buf_printf(out, "/%d", v4 ? c->prefix - 96 : c->prefix);
        break;
    }
    case T_REGEX: buf_append_str(out, rl_regex_source(v->u.p)); break;
    case T_LIST: {
        const struct rl_list *l = v->u.p;
        for (uint32_t i = 0; i < l->n; i++) {
            if (i)
                buf_append_str(out, ", ");
            rl_value_str(&l->v[i], out);
        }
        break;
    }
    case T_GROUP: buf_printf(out, "group %s", ((const struct rl_group *)v->u.p)->name ?
                             ((const struct rl_group *)v->u.p)->name : ""); break;
    case T_FILE: buf_printf(out, "file %s", rl_file_path(v->u.p)); break;
    case T_SERVICE: buf_printf(out, "service %s", rl_service_name(v->u.p)); break;
    default: break;
    }
}

static size_t fqdn_len(const char *s, size_t n)
{
    return n && s[n - 1] == '.' ? n - 1 : n;
}

int rl_value_eq(const struct rl_value *a, const struct rl_value *b)
{
    if (is_text(a->t) && is_text(b->t)) {
        size_t la = a->len, lb = b->len;
        if (a->t == T_STRING && b->t == T_STRING)
            return la == lb && memcmp(a->u.s, b->u.s, la) == 0;
        if (a->t == T_FQDN || b->t == T_FQDN) {
            la = fqdn_len(a->u.s, la);
            lb = fqdn_len(b->u.s, lb);
        }
        return la == lb && strncasecmp(a->u.s, b->u.s, la) == 0;
    }
    if (a->t != b->t)
        return 0;
    switch (a->t) {
    case T_BOOL: case T_INT: return a->u.i == b->u.i;
    case T_IP: return memcmp(a->u.ip, b->u.ip, 16) == 0;
    case T_CIDR: {
        const struct cidr *x = a->u.p, *y = b->u.p;
        return x->prefix == y->prefix && memcmp(x->addr, y->addr, 16) == 0;
    }
    default: return a->u.p == b->u.p;
    }
}

/* The domain of an address value (after the last '@'), as a value. */
static struct rl_value addr_part(const struct rl_value *a, int domain)
{
    struct rl_value r = { .t = domain ? T_FQDN : T_STRING };
    const char *at = a->len ? memrchr(a->u.s, '@', a->len) : NULL;
    if (domain) {
        r.u.s = at ? at + 1 : a->u.s + a->len;
        r.len = at ? (uint32_t)(a->len - (size_t)(at + 1 - a->u.s)) : 0;
    } else {
        r.u.s = a->u.s;
        r.len = at ? (uint32_t)(at - a->u.s) : a->len;
    }
    return r;
}

/* Does x match one member of a group/list (cidr, regex, domain or equality)? */
static int member_match(struct rl_vm *vm, const struct rl_value *x, const struct rl_value *m)
{
    if (m->t == T_CIDR)
        return x->t == T_IP && rl_ip_in_cidr(x->u.ip, m->u.p);
    if (m->t == T_REGEX)
        return is_text(x->t) && rl_regex_match(vm, m->u.p, x->u.s, x->len) == 1;
    if (m->t == T_FQDN && x->t == T_ADDR) {
        struct rl_value d = addr_part(x, 1);
        return rl_value_eq(&d, m);
    }
    return rl_value_eq(x, m);
}

int rl_value_in(struct rl_vm *vm, const struct rl_value *x, const struct rl_value *set)
{
    switch (set->t) {
    case T_CIDR:
        return x->t == T_IP && rl_ip_in_cidr(x->u.ip, set->u.p);
    case T_STRING: case T_ADDR: case T_FQDN:
        if (!is_text(x->t))
            return 0;
        if (x->len == 0)
            return 1;
        return memmem(set->u.s, set->len, x->u.s, x->len) != NULL;
    case T_LIST: {
        const struct rl_list *l = set->u.p;
        for (uint32_t i = 0; i < l->n; i++)
            if (member_match(vm, x, &l->v[i]))
                return 1;
        return 0;
    }
    case T_GROUP: {
        const struct rl_group *g = set->u.p;
        for (uint32_t i = 0; i < g->n; i++)
            if (member_match(vm, x, &g->v[i]))
                return 1;
        return 0;
    }
    case T_FILE:
        return rl_file_contains(vm, (struct rl_fileobj *)set->u.p, x);
    default:
        return 0;
    }
}

int rl_value_matches(struct rl_vm *vm, const struct rl_value *x, const struct rl_value *re)
{
    if (!is_text(x->t) || re->t != T_REGEX)
        return 0;
    return rl_regex_match(vm, re->u.p, x->u.s, x->len) == 1;
}

/* ---- the interpreter ---------------------------------------------------------------------- */
static void set_reply(struct rl_vm *vm, int status, const struct rl_value *a, int n)
{
    struct rl_result *r = vm->res;
    buf_t s;
    buf_init(&s, 64);
    if (status == V_QUARANTINE && n >= 1) {
        rl_value_str(&a[0], &s);
        str_copy(r->quarantine, sizeof(r->quarantine), s.data);
    } else if (n == 1) {
        rl_value_str(&a[0], &s);
        str_copy(r->text, sizeof(r->text), s.data);
    } else if (n == 3) {
        r->code = (int)a[0].u.i;
        rl_value_str(&a[1], &s);
        str_copy(r->enhanced, sizeof(r->enhanced), s.data);
        buf_reset(&s);
        rl_value_str(&a[2], &s);
        str_copy(r->text, sizeof(r->text), s.data);
    }
    /* reply text comes from rules and data: no CR/LF may reach the SMTP reply */
    for (char *p = r->text; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    for (char *p = r->enhanced; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    if (n == 3 && (r->code < 200 || r->code > 599))
        r->code = 0;
    buf_free(&s);
}

#define BOOLV(v, b) do { int b_ = (b) ? 1 : 0; (v)->t = T_BOOL; (v)->u.i = b_; } while (0)

/* Runs one rule; returns its status, or -1 when the evaluation failed. */
static int run_rule(struct rl_vm *vm, const struct rl_rule *r)
{
    const struct rl_program *p = vm->p;
    const rl_instr *code = p->code;
    uint32_t pc = r->start;
    struct rl_value *sp = vm->stack;
    struct rl_value *loc = vm->locals;
    for (;;) {
        if (--vm->budget < 0) {
            rl_vm_fail(vm, V_DEFER, "instruction budget of %ld exceeded", p->budget);
            return -1;
        }
        vm->res->steps++;
        rl_instr i = code[pc++];
        switch (I_OP(i)) {
        case OP_CONST: *sp++ = p->k[I_B(i)]; break;
        case OP_BOOL: BOOLV(sp, I_A(i)); sp++; break;
        case OP_POP: sp--; break;
        case OP_GETL: *sp++ = loc[I_A(i)]; break;
        case OP_SETL: loc[I_A(i)] = *--sp; break;
        case OP_CTX: rl_ctx_get(vm, I_B(i), NULL, sp); sp++; break;
        case OP_CTXCALL: {
            struct rl_value arg = sp[-1];
            rl_ctx_get(vm, I_B(i), &arg, &sp[-1]);
            break;
        }
        case OP_FIELD: sp[-1] = addr_part(&sp[-1], I_A(i)); break;
        case OP_NOT: sp[-1].u.i = !sp[-1].u.i; break;
        case OP_NEG: sp[-1].u.i = -sp[-1].u.i; break;
        case OP_EQ: sp--; BOOLV(&sp[-1], rl_value_eq(&sp[-1], sp)); break;
        case OP_NE: sp--; BOOLV(&sp[-1], !rl_value_eq(&sp[-1], sp)); break;
        case OP_LT: sp--; BOOLV(&sp[-1], sp[-1].u.i < sp->u.i); break;
        case OP_GT: sp--; BOOLV(&sp[-1], sp[-1].u.i > sp->u.i); break;
        case OP_LE: sp--; BOOLV(&sp[-1], sp[-1].u.i <= sp->u.i); break;
        case OP_GE: sp--; BOOLV(&sp[-1], sp[-1].u.i >= sp->u.i); break;
        case OP_IN: sp--; BOOLV(&sp[-1], rl_value_in(vm, &sp[-1], sp)); break;
        case OP_MATCH: sp--; BOOLV(&sp[-1], rl_value_matches(vm, &sp[-1], sp)); break;
        case OP_LEN: {
            struct rl_value *v = &sp[-1];
            int64_t n = v->t == T_LIST ? (int64_t)((const struct rl_list *)v->u.p)->n : (int64_t)v->len;
            v->t = T_INT;
            v->u.i = n;
            break;
        }
        case OP_CONCAT: {
            int n = I_B(i);
            buf_reset(&vm->tmp);
            for (int k = n; k > 0; k--)
                rl_value_str(&sp[-k], &vm->tmp);
            sp -= n;
            sp->t = T_STRING;
            sp->len = (uint32_t)vm->tmp.len;
            sp->u.s = rl_vm_strdup(vm, vm->tmp.data, vm->tmp.len);
            if (vm->failed)
                return -1;
            sp++;
            break;
        }
        case OP_MKLIST: {
            int n = I_B(i);
            struct rl_list *l = rl_vm_alloc(vm, sizeof(*l) + sizeof(l->v[0]) * (size_t)n);
            if (l == NULL)
                return -1;
            l->n = (uint32_t)n;
            memcpy(l->v, sp - n, sizeof(l->v[0]) * (size_t)n);
            sp -= n;
            sp->t = T_LIST;
            sp->et = (uint8_t)I_A(i);
            sp->u.p = l;
            sp++;
            break;
        }
        case OP_JMP: pc = (uint32_t)((int)pc + I_SB(i)); break;
        case OP_JMPF: if (!(--sp)->u.i) pc = (uint32_t)((int)pc + I_SB(i)); break;
        case OP_ANDJ: if (!sp[-1].u.i) pc = (uint32_t)((int)pc + I_SB(i)); else sp--; break;
        case OP_ORJ: if (sp[-1].u.i) pc = (uint32_t)((int)pc + I_SB(i)); else sp--; break;
        case OP_FORPREP:
            loc[I_A(i)] = *--sp;
            loc[I_A(i) + 1].t = T_INT;
            loc[I_A(i) + 1].u.i = 0;
            break;
        case OP_FORNEXT: {
            const struct rl_list *l = loc[I_A(i)].u.p;
            int64_t k = loc[I_A(i) + 1].u.i;
            if (k >= (int64_t)l->n) {
                pc = (uint32_t)((int)pc + I_SB(i));
            } else {
                loc[I_A(i) + 2] = l->v[k];
                loc[I_A(i) + 1].u.i = k + 1;
            }
            break;
        }
        case OP_CALL: {
            int n = I_A(i);
            const struct rl_builtin *b = &rl_builtins[I_B(i)];
            struct rl_value out = { .t = T_BOOL };
            if (b->fn(vm, sp - n, n, &out, NULL) < 0 || vm->failed)
                return -1;
            sp -= n;
            *sp++ = out;
            break;
        }
        case OP_SCALL: {
            int n = I_A(i);
            const struct rl_svc_method *m = &rl_svc_methods[I_B(i)];
            struct rl_value out = { .t = T_BOOL };
            if (m->fn(vm, sp - n, n, &out, sp[-n - 1].u.p) < 0 || vm->failed)
                return -1;
            sp -= n + 1;
            *sp++ = out;
            break;
        }
        case OP_RET:
            return I_A(i);
        case OP_RETR:
            sp -= I_B(i);
            set_reply(vm, I_A(i), sp, I_B(i));
            return I_A(i);
        case OP_END:
            return V_NEXT;
        default:
            rl_vm_fail(vm, V_TEMPFAIL, "bad opcode %d", I_OP(i));
            return -1;
        }
    }
}

static void vm_cleanup(struct rl_vm *vm)
{
    rl_arena_free(&vm->arena);
    rl_vm_match_data_free(vm);
    if (vm->svc_out) {
        for (int i = 0; i < vm->p->nsvcs; i++)
            free(vm->svc_out[i]);
        free(vm->svc_out);
    }
    buf_free(&vm->tmp);
}

int rl_eval(const struct rl_program *p, enum stage s, struct rl_txn *t, struct rl_result *out)
{
    rl_result_free(out);
    if (p == NULL || p->magic != RL_MAGIC || p->version != RL_VERSION || (unsigned)s >= STAGE__COUNT) {
        log_error("rules: no valid program loaded (or bad stage %d)", (int)s);
        out->status = V_TEMPFAIL;
        return V_TEMPFAIL;
    }
    out->status = V_NEXT;
    if (t->faccept && s < STAGE_POSTQ && (int)s > t->faccept_stage) {
        out->status = V_ACCEPT;
        str_copy(out->rule, sizeof(out->rule), t->faccept_rule);
        return V_ACCEPT;
    }
    struct rl_vm vm;
    memset(&vm, 0, sizeof(vm));
    vm.p = p;
    vm.txn = t;
    vm.res = out;
    vm.stage = s;
    vm.budget = p->budget;
    buf_init(&vm.tmp, 128);
    for (int k = p->stage_first[s]; k < p->stage_first[s] + p->stage_n[s]; k++) {
        const struct rl_rule *r = &p->rules[k];
        vm.rule = r;
        int st = run_rule(&vm, r);
        if (st < 0 || vm.failed) {
            /* a failed evaluation changes nothing: its mutations go */
            for (int m = 0; m < out->nmuts; m++) {
                free(out->muts[m].rcpt);
                free(out->muts[m].arg);
                free(out->muts[m].arg2);
                free(out->muts[m].rule);
            }
            out->nmuts = 0;
            out->status = vm.failed ? (enum verdict)vm.failed : V_TEMPFAIL;
            out->code = 0;
            out->enhanced[0] = out->text[0] = '\0';
            str_copy(out->rule, sizeof(out->rule), r->name);
            break;
        }
        if (st == V_NEXT)
            continue;
        out->status = (enum verdict)st;
        str_copy(out->rule, sizeof(out->rule), r->name);
        if (st == V_FACCEPT && s < STAGE_POSTQ) {
            t->faccept = 1;
            t->faccept_stage = (int)s;
            str_copy(t->faccept_rule, sizeof(t->faccept_rule), r->name);
        }
        break;
    }
    if (log_trace_on(TRACE_RULES))
        log_trace(TRACE_RULES, "rules: stage %s: %s%s%s%s (%ld steps, %d mutations)", stage_name(s),
                  verdict_name(out->status), out->rule[0] ? " by \"" : "", out->rule,
                  out->rule[0] ? "\"" : "", out->steps, out->nmuts);
    vm_cleanup(&vm);
    return out->status;
}
