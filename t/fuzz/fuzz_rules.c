/*
 * fuzz_rules.c - libFuzzer target for the rule language front and middle:
 * lexer, parser (panic-mode recovery, nesting bound), checker and compiler,
 * from memory (rl_compile_buffer), then the disassembler over whatever
 * compiled, and one evaluation of every stage against a fixed transaction
 * (services are not called: the input is a fresh name in /nonexistent, so a
 * csv lookup finds nothing and a cmd/smtp service cannot be declared valid).
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Ilib \
 *        t/fuzz/fuzz_rules.c lib/[a-z]*.c $(pkg-config --libs libevent openssl libcrypt libpcre2-8) -lpthread
 * Seeds: t/fuzz/corpus/rules/
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "util/log.h"
#include "rules/rules.h"

static void no_exit(enum log_level lvl, const char *msg)
{
    (void)lvl;
    (void)msg;
    abort();    /* a fatal/panic on hostile rules is a bug */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        log_init("fuzz_rules", 1, 0, LOG_L_FATAL);
        log_set_fatal_hook(no_exit);
        init = 1;
    }
    /* exact-size heap copy so ASan sees any over-read */
    char *p = malloc(size ? size : 1);
    if (size)
        memcpy(p, data, size);
    struct rl_diag d = { 0 };
    struct rl_program *prog = rl_compile_buffer("/nonexistent/fuzz.rules", p, size, &d);
    for (int i = 0; i < d.n; i++) {
        if (d.v[i].line < 0 || d.v[i].col < 0 || d.v[i].msg == NULL)
            abort();
        buf_t b;
        buf_init(&b, 64);
        rl_diag_format(&b, &d.v[i]);
        buf_free(&b);
    }
    if (prog && d.n)
        abort();        /* a program is returned only when there is no error */
    if (prog) {
        buf_t b;
        buf_init(&b, 1024);
        rl_disasm(prog, &b);
        buf_free(&b);
        rl_program_set_budget(prog, 20000);
        struct rl_txn t;
        struct rl_result r;
        rl_txn_init(&t);
        rl_result_init(&r);
        rl_txn_set(&t, RL_CLIENT_IP, "192.0.2.1");
        rl_txn_set(&t, RL_HELO, "x.example");
        rl_txn_set(&t, RL_MAIL_FROM, "a@b.example");
        rl_txn_set(&t, RL_RCPT, "c@d.example");
        rl_txn_add_rcpt(&t, "c@d.example");
        rl_txn_add_rcpt(&t, "e@f.example");
        for (int s = 0; s < STAGE__COUNT; s++)
            if (s != STAGE_DATA && s != STAGE_POSTQ && s != STAGE_DELIVER)
                rl_eval(prog, (enum stage)s, &t, &r);
        rl_result_free(&r);
        rl_txn_free(&t);
        rl_program_free(prog);
    }
    rl_diag_free(&d);
    free(p);
    return 0;
}
