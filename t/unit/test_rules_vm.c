/*
 * test_rules_vm.c - the rules VM: every opcode (through the smallest
 * program that emits it), every builtin and mutation, context values per
 * stage, the data stage reading a real queue file, faccept, the instruction
 * budget (defer), file objects reloaded on change, group/cidr/regex `in`.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <cmocka.h>
#include "util/log.h"
#include "mail/qfile.h"
#include "unit_rules.h"

static void txn(struct rl_txn *t)
{
    rl_txn_init(t);
    rl_txn_set(t, RL_CLIENT_IP, "10.1.2.3");
    rl_txn_set(t, RL_HELO, "mx.example.org");
    rl_txn_set(t, RL_MAIL_FROM, "Alice@Example.org");
    rl_txn_set(t, RL_RCPT, "bob@example.test");
    rl_txn_add_rcpt(t, "bob@example.test");
    rl_txn_add_rcpt(t, "carol@other.test");
}

/* Evaluate `cond` in a rule at stage s: returns 1 when it was true. */
static int truth(enum stage s, const char *cond)
{
    char src[1024];
    snprintf(src, sizeof(src), "stage %s { rule \"t\" { if %s { return deny; } } }\n", stage_name(s),
             cond);
    struct rl_program *p = prog(src);
    struct rl_txn t;
    struct rl_result r;
    txn(&t);
    rl_result_init(&r);
    int v = rl_eval(p, s, &t, &r);
    rl_result_free(&r);
    rl_txn_free(&t);
    rl_program_free(p);
    return v == V_DENY;
}

static void test_opcodes(void **state)
{
    /* CONST BOOL EQ NE LT GT LE GE NOT NEG JMPF ANDJ ORJ CTX FIELD */
    assert_true(truth(STAGE_RCPT, "true"));
    assert_false(truth(STAGE_RCPT, "false"));
    assert_true(truth(STAGE_RCPT, "1 < 2 && 2 > 1 && 2 <= 2 && 3 >= 2"));
    assert_false(truth(STAGE_RCPT, "1 > 2 || 2 < 1"));
    assert_true(truth(STAGE_RCPT, "-3 < 0 && !(1 == 2) && 1 != 2"));
    assert_true(truth(STAGE_RCPT, "mail_from == \"alice@example.org\""));      /* case-insensitive */
    assert_true(truth(STAGE_RCPT, "mail_from.domain == \"EXAMPLE.org\""));
    assert_true(truth(STAGE_RCPT, "mail_from.local_part == \"Alice\""));
    assert_false(truth(STAGE_RCPT, "mail_from.local_part == \"alice\""));       /* strings: exact */
    assert_true(truth(STAGE_RCPT, "client.ip == \"10.1.2.3\""));
    assert_true(truth(STAGE_RCPT, "client.ip in cidr \"10.0.0.0/8\""));
    assert_false(truth(STAGE_RCPT, "client.ip in cidr \"10.2.0.0/16\""));
    /* IN over lists, strings, groups; MATCH; MKLIST; LEN; CONCAT; GETL/SETL; FORPREP/FORNEXT */
    assert_true(truth(STAGE_RCPT, "rcpt in rcpt_list && rcpt_list.len() == 2"));
    assert_true(truth(STAGE_RCPT, "\"mx\" in helo && helo.len() == 14"));
    assert_true(truth(STAGE_RCPT, "helo matches \"^mx\\\\.\" && !(helo matches regex \"^MX$\")"));
    assert_true(truth(STAGE_RCPT, "2 in [1, 2, 3] && !(4 in [1, 2, 3])"));
    assert_true(truth(STAGE_RCPT, "`${helo}/${1}` == \"mx.example.org/1\""));
    assert_true(truth(STAGE_RCPT, "rcpt in group [fqdn \"example.test\"]"));       /* domain member */
    assert_true(truth(STAGE_RCPT, "client.ip in group [ip4 \"1.1.1.1\", cidr \"10.1.0.0/16\"]"));
    assert_true(truth(STAGE_RCPT, "helo in group [regex \"example\"]"));
    assert_true(truth(STAGE_RCPT, "lower(helo) == \"mx.example.org\" && upper(\"a\") == \"A\""));
    assert_true(truth(STAGE_MAIL, "spf.result == \"none\" && tls.version == \"\""));
}

static void test_builtins_and_mutations(void **state)
{
    struct rl_program *p = prog(
        "stage rcpt { action \"m\" {\n"
        "  add_rcpt(\"x@y.test\"); remove_rcpt(rcpt); rewrite_mail_from(\"new@y.test\"); bcc(rcpt);\n"
        "  add_header(\"X-A\", `v ${rcpt}`); quarantine(\"q\"); log(\"ok\"); } }\n"
        "stage data { action \"h\" { set_header(\"Subject\", \"a\\nb\"); remove_header(\"X-B\"); } }\n"
        "stage deliver { action \"d\" { for r in rcpt_list { maildir(r); } mbox(\"bob@example.test\");\n"
        "  relay(); forward(\"carol@other.test\", \"mx.other.test\"); lmtp(\"127.0.0.1:24\"); discard(); } }\n");
    struct rl_txn t;
    struct rl_result r;
    txn(&t);
    rl_result_init(&r);
    assert_int_equal(rl_eval(p, STAGE_RCPT, &t, &r), V_NEXT);
    assert_int_equal(r.nmuts, 6);
    assert_int_equal(r.muts[0].kind, FILTER_M_ADD_RCPT);
    assert_string_equal(r.muts[0].rcpt, "x@y.test");
    assert_int_equal(r.muts[1].kind, FILTER_M_REMOVE_RCPT);
    assert_string_equal(r.muts[1].rcpt, "bob@example.test");
    assert_int_equal(r.muts[2].kind, FILTER_M_REWRITE_MAIL_FROM);
    assert_string_equal(r.muts[2].arg, "new@y.test");
    assert_int_equal(r.muts[3].kind, FILTER_M_BCC);
    assert_int_equal(r.muts[4].kind, FILTER_M_ADD_HEADER);
    assert_string_equal(r.muts[4].arg, "X-A");
    assert_string_equal(r.muts[4].arg2, "v bob@example.test");
    assert_int_equal(r.muts[5].kind, FILTER_M_QUARANTINE);
    assert_string_equal(r.muts[5].rule, "m");
    assert_int_equal(rl_eval(p, STAGE_DATA, &t, &r), V_NEXT);
    assert_int_equal(r.nmuts, 2);
    assert_string_equal(r.muts[0].arg2, "a b");          /* no header injection */
    assert_int_equal(r.muts[1].kind, FILTER_M_REMOVE_HEADER);
    assert_int_equal(rl_eval(p, STAGE_DELIVER, &t, &r), V_NEXT);
    assert_int_equal(r.nmuts, 7);
    assert_int_equal(r.muts[0].kind, FILTER_M_MAILDIR);
    assert_string_equal(r.muts[1].rcpt, "carol@other.test");
    assert_int_equal(r.muts[2].kind, FILTER_M_MBOX);
    assert_int_equal(r.muts[3].kind, FILTER_M_RELAY);
    assert_string_equal(r.muts[3].rcpt, "");
    assert_int_equal(r.muts[4].kind, FILTER_M_FORWARD);
    assert_string_equal(r.muts[4].rcpt, "carol@other.test");
    assert_string_equal(r.muts[4].arg, "mx.other.test");
    assert_int_equal(r.muts[5].kind, FILTER_M_LMTP);
    assert_string_equal(r.muts[5].arg, "127.0.0.1:24");
    assert_int_equal(r.muts[6].kind, FILTER_M_DISCARD);
    assert_string_equal(filter_mut_name(FILTER_M_DISCARD), "discard");
    rl_result_free(&r);
    rl_txn_free(&t);
    rl_program_free(p);
}

static void test_statuses(void **state)
{
    struct rl_program *p = prog(
        "stage connect { rule \"f\" { if client.ip in cidr \"10.0.0.0/8\" { return faccept; } } }\n"
        "stage helo { rule \"never\" { return deny; } }\n"
        "stage mail { rule \"n\" { return next; } rule \"a\" { if helo != \"\" { return accept; } }\n"
        "             rule \"x\" { return deny; } }\n"
        "stage rcpt { rule \"r\" { return reject(550, \"5.1.1\", `no such user ${rcpt}`); } }\n"
        "stage data { rule \"q\" { return quarantine(\"junk\"); } }\n"
        "stage postq { rule \"d\" { return defer(\"later\"); } }\n");
    struct rl_txn t;
    struct rl_result r;
    txn(&t);
    rl_result_init(&r);
    assert_int_equal(rl_eval(p, STAGE_MAIL, &t, &r), V_ACCEPT);        /* next goes on, accept stops */
    assert_string_equal(r.rule, "a");
    assert_int_equal(rl_eval(p, STAGE_RCPT, &t, &r), V_REJECT);
    assert_int_equal(r.code, 550);
    assert_string_equal(r.enhanced, "5.1.1");
    assert_string_equal(r.text, "no such user bob@example.test");
    assert_int_equal(rl_eval(p, STAGE_DATA, &t, &r), V_QUARANTINE);
    assert_string_equal(r.quarantine, "junk");
    assert_int_equal(rl_eval(p, STAGE_POSTQ, &t, &r), V_DEFER);
    assert_string_equal(r.text, "later");
    assert_int_equal(r.code, 0);
    assert_int_equal(rl_eval(p, STAGE_DELIVER, &t, &r), V_NEXT);     /* no rules */
    /* faccept skips later pre-queue stages, not post-queue ones */
    assert_int_equal(rl_eval(p, STAGE_CONNECT, &t, &r), V_FACCEPT);
    assert_int_equal(rl_eval(p, STAGE_HELO, &t, &r), V_ACCEPT);
    assert_string_equal(r.rule, "f");
    assert_int_equal(rl_eval(p, STAGE_POSTQ, &t, &r), V_DEFER);
    rl_txn_reset_mail(&t);                                            /* connect-level: kept */
    assert_int_equal(rl_eval(p, STAGE_HELO, &t, &r), V_ACCEPT);
    rl_result_free(&r);
    rl_txn_free(&t);
    rl_program_free(p);
}

static void test_budget(void **state)
{
    buf_t src;
    buf_init(&src, 8192);
    buf_append_str(&src, "stage rcpt { rule \"big\" { let l = [1,2,3,4,5,6,7,8,9,10];\n");
    for (int i = 0; i < 10; i++)
        buf_append_str(&src, "for a in l { for b in l { for c in l { if a == b { } } } }\n");
    buf_append_str(&src, "} }\n");
    struct rl_program *p = prog(src.data);
    buf_free(&src);
    rl_program_set_budget(p, 1000);
    struct rl_txn t;
    struct rl_result r;
    txn(&t);
    rl_result_init(&r);
    assert_int_equal(rl_eval(p, STAGE_RCPT, &t, &r), V_DEFER);
    assert_string_equal(r.rule, "big");
    rl_program_set_budget(p, 0);          /* back to the default: it fits */
    assert_int_equal(rl_eval(p, STAGE_RCPT, &t, &r), V_NEXT);
    rl_result_free(&r);
    rl_txn_free(&t);
    rl_program_free(p);
}

static void test_file_objects(void **state)
{
    put("dom.txt", "# blocked\nbad.example\n.sub.example  # subdomains\n");
    put("ips.txt", "192.0.2.0/24\n2001:db8::1\n");
    put("addrs.txt", "x@a.test\n@whole.test\n");
    struct rl_program *p = prog(
        "object dom = file:fqdn \"dom.txt\";\nobject ips = file:cidr \"ips.txt\";\n"
        "object addrs = file:address \"addrs.txt\";\n"
        "stage mail { rule \"d\" { if mail_from.domain in dom { return deny; } }\n"
        "             rule \"i\" { if client.ip in ips { return defer; } }\n"
        "             rule \"a\" { if mail_from in addrs { return reject; } } }\n");
    struct rl_txn t;
    struct rl_result r;
    rl_txn_init(&t);
    rl_result_init(&r);
    rl_txn_set(&t, RL_CLIENT_IP, "1.2.3.4");
    const struct { const char *from, *ip; int v; } cases[] = {
        { "a@BAD.example", "1.2.3.4", V_DENY }, { "a@x.bad.example", "1.2.3.4", V_NEXT },
        { "a@x.sub.example", "1.2.3.4", V_DENY }, { "a@ok.test", "192.0.2.9", V_DEFER },
        { "a@ok.test", "2001:db8::1", V_DEFER }, { "X@A.test", "1.2.3.4", V_REJECT },
        { "y@whole.test", "1.2.3.4", V_REJECT }, { "y@a.test", "1.2.3.4", V_NEXT },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        rl_txn_set(&t, RL_MAIL_FROM, cases[i].from);
        rl_txn_set(&t, RL_CLIENT_IP, cases[i].ip);
        assert_int_equal(rl_eval(p, STAGE_MAIL, &t, &r), cases[i].v);
    }
    /* reloaded when the file changes (checked at most once a second) */
    rl_txn_set(&t, RL_MAIL_FROM, "a@new.example");
    rl_txn_set(&t, RL_CLIENT_IP, "1.2.3.4");
    assert_int_equal(rl_eval(p, STAGE_MAIL, &t, &r), V_NEXT);
    put("dom.txt", "bad.example\nnew.example\nlonger-file.example\n");
    sleep(1);
    assert_int_equal(rl_eval(p, STAGE_MAIL, &t, &r), V_DENY);
    /* a broken file keeps the previous contents */
    put("dom.txt", "not a domain!\n");
    sleep(1);
    assert_int_equal(rl_eval(p, STAGE_MAIL, &t, &r), V_DENY);
    rl_result_free(&r);
    rl_txn_free(&t);
    rl_program_free(p);
}

static void test_data_stage(void **state)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/QF1", dir);
    struct qf_env e;
    qf_env_init(&e);
    e.queue_id = xstrdup("4Q7ZK2M0001ABCD042");
    e.sender = xstrdup("alice@example.org");
    qf_env_add_rcpt(&e, "bob@example.test", NULL, 0);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    struct qf_writer *w = qf_write_begin(fd, &e);
    assert_non_null(w);
    const char *msg = "From: a@b\nSubject: You are a\n  LOTTERY winner\nX-Spam: yes\n\nbody text\n";
    qf_write_content(w, msg, strlen(msg));
    assert_int_equal(qf_write_end(w), 0);
    close(fd);
    qf_env_free(&e);
    struct rl_program *p = prog(
        "stage data { rule \"s\" { if msg.subject matches \"(?i)lottery winner\" && msg.header(\"x-spam\") == \"yes\"\n"
        "   && \"body\" in msg.body && msg.size == 69 && queue_id == \"Q1\" { return quarantine(msg.subject); } } }\n");
    struct rl_txn t;
    struct rl_result r;
    txn(&t);
    rl_result_init(&r);
    rl_txn_set(&t, RL_MSG_PATH, path);
    rl_txn_set(&t, RL_QUEUE_ID, "Q1");
    assert_int_equal(rl_eval(p, STAGE_DATA, &t, &r), V_QUARANTINE);
    assert_string_equal(r.quarantine, "You are a  LOTTERY winner");
    rl_txn_set(&t, RL_MSG_PATH, "/nonexistent/qf");       /* unreadable: temporary failure */
    assert_int_equal(rl_eval(p, STAGE_DATA, &t, &r), V_TEMPFAIL);
    rl_result_free(&r);
    rl_txn_free(&t);
    rl_program_free(p);
}

static void test_bad_program(void **state)
{
    struct rl_result r;
    struct rl_txn t;
    rl_result_init(&r);
    rl_txn_init(&t);
    assert_int_equal(rl_eval(NULL, STAGE_RCPT, &t, &r), V_TEMPFAIL);
    rl_txn_free(&t);
}

int main(void)
{
    log_init("test_rules_vm", 1, 0, LOG_L_FATAL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opcodes),
        cmocka_unit_test(test_builtins_and_mutations),
        cmocka_unit_test(test_statuses),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_file_objects),
        cmocka_unit_test(test_data_stage),
        cmocka_unit_test(test_bad_program),
    };
    return cmocka_run_group_tests(tests, rules_dir_setup, rules_dir_teardown);
}
