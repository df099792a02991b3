/*
 * rl_disasm.c - human-readable listing of a compiled program: the constant
 * pool, then every stage's rules with their bytecode (clox debug.c).
 * Names and operand formats come from rl_opcodes.def, so a new opcode
 * appears here without edits. Used by `postern rules check --disasm` and
 * the compiler tests.
 */
#include <string.h>
#include "rules/rl_int.h"

static const struct { const char *name, *operands; } ops[OP__COUNT] = {
#define OP(name, operands, effect, doc) { #name, operands },
#include "rules/rl_opcodes.def"
#undef OP
};

static void value_short(const struct rl_program *p, const struct rl_value *v, buf_t *out)
{
    buf_t s;
    buf_init(&s, 64);
    rl_value_str(v, &s);
    if (s.len > 48) {
        buf_truncate(&s, 45);
        buf_append_str(&s, "...");
    }
    if (v->t != T_GROUP && v->t != T_FILE && v->t != T_SERVICE)
        buf_printf(out, "%s ", rl_tbase_name((enum rl_tbase)v->t));
    if (v->t == T_STRING || v->t == T_ADDR || v->t == T_FQDN) {
        buf_append_char(out, '"');
        buf_append_printable(out, s.data, s.len);
        buf_append_char(out, '"');
    } else {
        buf_append_printable(out, s.data, s.len);
    }
    buf_free(&s);
    (void)p;
}

static void instr(const struct rl_program *p, uint32_t pc, buf_t *out)
{
    rl_instr i = p->code[pc];
    int op = I_OP(i);
    buf_printf(out, "  %04u %4u  %-8s", pc, p->lines[pc], op < OP__COUNT ? ops[op].name : "???");
    if (op >= OP__COUNT) {
        buf_append_str(out, "\n");
        return;
    }
    switch (op) {
    case OP_CONST:
        buf_printf(out, " %-5d ; ", I_B(i));
        if (I_B(i) < p->nk)
            value_short(p, &p->k[I_B(i)], out);
        break;
    case OP_BOOL: case OP_GETL: case OP_SETL: case OP_FORPREP:
        buf_printf(out, " %d", I_A(i));
        break;
    case OP_FIELD:
        buf_printf(out, " %d     ; %s", I_A(i), I_A(i) ? "domain" : "local_part");
        break;
    case OP_CTX: case OP_CTXCALL:
        buf_printf(out, " %-5d ; %s", I_B(i), I_B(i) < rl_ctx_count ? rl_ctx_table[I_B(i)].name : "?");
        break;
    case OP_CONCAT:
        buf_printf(out, " %d", I_B(i));
        break;
    case OP_MKLIST:
        buf_printf(out, " %d %d ; list of %s", I_A(i), I_B(i), rl_tbase_name((enum rl_tbase)I_A(i)));
        break;
    case OP_JMP: case OP_JMPF: case OP_ANDJ: case OP_ORJ:
        buf_printf(out, " %+d   ; -> %04d", I_SB(i), (int)pc + 1 + I_SB(i));
        break;
    case OP_FORNEXT:
        buf_printf(out, " %d %+d ; -> %04d", I_A(i), I_SB(i), (int)pc + 1 + I_SB(i));
        break;
    case OP_CALL:
        buf_printf(out, " %d %d   ; %s", I_A(i), I_B(i), I_B(i) < rl_nbuiltins ? rl_builtins[I_B(i)].name : "?");
        break;
    case OP_SCALL:
        buf_printf(out, " %d %d   ; %s", I_A(i), I_B(i),
                   I_B(i) < rl_nsvc_methods ? rl_svc_methods[I_B(i)].name : "?");
        break;
    case OP_RET:
        buf_printf(out, " %d     ; %s", I_A(i), rl_status_name(I_A(i)));
        break;
    case OP_RETR:
        buf_printf(out, " %d %d   ; %s", I_A(i), I_B(i), rl_status_name(I_A(i)));
        break;
    default:
        break;
    }
    buf_append_char(out, '\n');
}

void rl_disasm(const struct rl_program *p, buf_t *out)
{
    buf_printf(out, "program: %d rules, %u instructions, %d constants, %d services\n", p->nrules,
               p->ncode, p->nk, p->nsvcs);
    buf_append_str(out, "constants:\n");
    for (int i = 0; i < p->nk; i++) {
        buf_printf(out, "  k%-4d ", i);
        value_short(p, &p->k[i], out);
        buf_append_char(out, '\n');
    }
    for (int s = 0; s < STAGE__COUNT; s++) {
        if (p->stage_n[s] == 0)
            continue;
        buf_printf(out, "stage %s:\n", stage_name((enum stage)s));
        for (int r = p->stage_first[s]; r < p->stage_first[s] + p->stage_n[s]; r++) {
            const struct rl_rule *rr = &p->rules[r];
            buf_printf(out, " %s \"%s\" (%s:%d, %d locals)\n", rr->is_action ? "action" : "rule",
                       rr->name, rr->file < p->nfiles ? p->files[rr->file] : "?", rr->line,
                       rr->nlocals);
            for (uint32_t pc = rr->start; pc < rr->end; pc++)
                instr(p, pc, out);
        }
    }
}
