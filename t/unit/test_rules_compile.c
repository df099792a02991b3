/*
 * test_rules_compile.c - the rules front end and compiler: every error
 * message of the lexer, parser and checker (a table of {source snippet,
 * expected "file:line:col: message"}), one error per mistake, "did you
 * mean", imports (aliases, cycles), the disassembler, and programs that
 * must compile (the shipped conf/rules examples).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include "util/log.h"
#include "unit_rules.h"

static int setup(void **state)
{
    assert_int_equal(rules_dir_setup(state), 0);
    put("f.txt", "a.b\n");
    put("bad.txt", "x\n");
    put("cyc1.rules", "import \"cyc2.rules\" as b;\n");
    put("cyc2.rules", "import \"cyc1.rules\" as a;\n");
    put("imp_stage.rules", "object jane = address \"jane@doe.test\";\nstage mail { }\n");
    put("objs.rules", "object jane = address \"jane@doe.test\";\n");
    return 0;
}

/* Compile src as DIR/s.rules; the diagnostics, DIR shown as "@". */
static struct rl_program *compile(const char *src, buf_t *errs)
{
    char name[128];
    snprintf(name, sizeof(name), "%s/s.rules", dir);
    struct rl_diag d = { 0 };
    struct rl_program *p = rl_compile_buffer(name, src, strlen(src), &d);
    for (int i = 0; i < d.n; i++) {
        buf_t b;
        buf_init(&b, 128);
        const char *base = strrchr(d.v[i].file, '/');
        buf_printf(&b, "%s:%d:%d: ", base ? base + 1 : d.v[i].file, d.v[i].line, d.v[i].col);
        const char *m = d.v[i].msg, *at;
        while ((at = strstr(m, dir)) != NULL) {
            buf_append(&b, m, (size_t)(at - m));
            buf_append_char(&b, '@');
            m = at + strlen(dir);
        }
        buf_append_str(&b, m);
        buf_printf(errs, "%s\n", b.data);
        buf_free(&b);
    }
    rl_diag_free(&d);
    return p;
}

struct err_case { const char *name, *src, *first; };
static const struct err_case err_cases[] = {
    { "lex_char", "stage mail { rule \"a\" { if 1 @ 2 { } } }\n", "s.rules:1:30: unexpected character '@'" },
    { "lex_unterminated", "stage mail { rule \"a { } }\n", "s.rules:1:19: unterminated string" },
    { "lex_escape", "object x = string \"a\\qb\";\n", "s.rules:1:21: invalid escape sequence '\\q'" },
    { "lex_bignum", "stage mail { rule \"a\" { if msg.size > 99999999999999999999 { } } }\n", "s.rules:1:39: integer too large" },
    { "lex_badnum", "stage mail { rule \"a\" { let x = 12ab; } }\n", "s.rules:1:33: invalid number" },
    { "parse_decl", "rule \"a\" { }\n", "s.rules:1:1: expected declaration (import, object, service or stage), found 'rule'" },
    { "parse_semi_import", "import \"objs.rules\" as d\n", "s.rules:2:1: expected ';' after import, found end of file" },
    { "parse_expr", "stage mail { rule \"a\" { if { } } }\n", "s.rules:1:28: expected expression, found '{'" },
    { "parse_rparen", "stage mail { rule \"a\" { log((\"x\"); } }\n", "s.rules:1:34: expected ')' after arguments, found ';'" },
    { "parse_rule_name", "stage mail { rule a { } }\n", "s.rules:1:19: expected rule name string, found 'a'" },
    { "parse_rule_or_action", "stage mail { let x = 1; }\n", "s.rules:1:14: expected 'rule' or 'action', found 'let'" },
    { "parse_return_status", "stage mail { rule \"a\" { return 5; } }\n", "s.rules:1:32: expected status after 'return', found '5'" },
    { "parse_let_eq", "stage mail { rule \"a\" { let x 1; } }\n", "s.rules:1:31: expected '=' after variable name, found '1'" },
    { "parse_for_in", "stage rcpt { rule \"a\" { for x rcpt_list { } } }\n", "s.rules:1:31: expected 'in' after loop variable, found 'rcpt_list'" },
    { "parse_interp_empty", "stage mail { rule \"a\" { log(`x ${} y`); } }\n", "s.rules:1:34: empty interpolation '${}'" },
    { "parse_interp_bad", "stage mail { rule \"a\" { log(`x ${helo helo} y`); } }\n", "s.rules:1:39: expected '}' after interpolated expression, found 'helo'" },
    { "parse_nesting", "stage mail { rule \"a\" { let x = ((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((1)))))))))))))))))))))))))))))))))))))))))))))))))))))))))))); } }\n", "s.rules:1:80: nesting too deep" },
    { "parse_one_error", "stage mail { rule \"a\" { let x = ; let y = ; } }\n", "s.rules:1:33: expected expression, found ';'" },
    { "chk_unknown_name", "stage mail { rule \"a\" { if mail_frm == \"x\" { } } }\n", "s.rules:1:28: unknown name 'mail_frm'; did you mean 'mail_from'?" },
    { "chk_unknown_field", "stage mail { rule \"a\" { if mail_from.domian == \"x\" { } } }\n", "s.rules:1:38: an address has no field 'domian'; did you mean 'domain'?" },
    { "chk_ns_field", "stage mail { rule \"a\" { if client.addr == \"x\" { } } }\n", "s.rules:1:35: 'client' has no field 'addr'" },
    { "chk_ns_bare", "stage mail { rule \"a\" { log(`${client}`); } }\n", "s.rules:1:32: 'client' needs a field, e.g. client.ip" },
    { "chk_stage_ctx", "stage rcpt { rule \"a\" { if msg.subject == \"x\" { return deny; } } }\n", "s.rules:1:32: 'msg.subject' is not available at stage rcpt (available at: data postq deliver)" },
    { "chk_stage_rcpt", "stage data { rule \"a\" { if rcpt == \"a@b.c\" { return deny; } } }\n", "s.rules:1:28: 'rcpt' is not available at stage data (available at: rcpt)" },
    { "chk_stage_mut", "stage rcpt { action \"a\" { maildir(rcpt); } }\n", "s.rules:1:27: 'maildir' is not allowed at stage rcpt (allowed at: deliver)" },
    { "chk_unknown_stage", "stage rcp { }\n", "s.rules:1:7: unknown stage 'rcp'; did you mean 'rcpt'?" },
    { "chk_dup_stage", "stage mail { }\nstage mail { }\n", "s.rules:2:7: stage 'mail' is already defined at line 1" },
    { "chk_dup_rule", "stage mail { rule \"a\" { } rule \"a\" { } }\n", "s.rules:1:27: duplicate name \"a\" in stage mail (first at line 1)" },
    { "chk_unreachable", "stage mail { rule \"a\" { return deny; } rule \"b\" { } }\n", "s.rules:1:40: unreachable rule \"b\": rule \"a\" at line 1 always returns deny" },
    { "chk_unreachable_stmt", "stage mail { rule \"a\" { return deny; log(\"x\"); } }\n", "s.rules:1:38: unreachable code after 'return'" },
    { "chk_return_action", "stage mail { action \"a\" { return accept; } }\n", "s.rules:1:27: 'return' is not allowed in an action (actions return no status)" },
    { "chk_unknown_status", "stage mail { rule \"a\" { return dny; } }\n", "s.rules:1:32: unknown status 'dny'; did you mean 'deny'?" },
    { "chk_status_args", "stage mail { rule \"a\" { return deny(554, \"5.7.1\"); } }\n", "s.rules:1:32: status 'deny' takes 0, 1 (text) or 3 (code, enhanced code, text) arguments, found 2" },
    { "chk_status_noargs", "stage mail { rule \"a\" { return accept(\"x\"); } }\n", "s.rules:1:32: status 'accept' takes no arguments" },
    { "chk_status_code", "stage mail { rule \"a\" { return deny(450, \"5.7.1\", \"x\"); } }\n", "s.rules:1:37: reply code for 'deny' must be 5xx, found 450" },
    { "chk_status_enh", "stage mail { rule \"a\" { return defer(451, \"5.7.1\", \"x\"); } }\n", "s.rules:1:43: enhanced status code must look like 4.7.1, found \"5.7.1\"" },
    { "chk_quarantine_args", "stage data { rule \"a\" { return quarantine; } }\n", "s.rules:1:32: status 'quarantine' takes 1 argument (the quarantine name), found 0" },
    { "chk_faccept_postq", "stage postq { rule \"a\" { return faccept; } }\n", "s.rules:1:33: 'faccept' is only allowed before queueing (connect to data)" },
    { "chk_cmp", "stage connect { rule \"a\" { if client.ip == 5 { } } }\n", "s.rules:1:41: cannot compare ip with int" },
    { "chk_lt", "stage mail { rule \"a\" { if helo < 5 { } } }\n", "s.rules:1:33: '<' needs integers, found string and int" },
    { "chk_cond", "stage mail { rule \"a\" { if helo { } } }\n", "s.rules:1:28: condition must be bool, found string" },
    { "chk_and", "stage mail { rule \"a\" { if helo == \"x\" && 1 { } } }\n", "s.rules:1:43: operand of '&&' must be bool, found int" },
    { "chk_not", "stage mail { rule \"a\" { if !helo { } } }\n", "s.rules:1:28: operand of '!' must be bool, found string" },
    { "chk_in", "object n = cidr \"10.0.0.0/8\";\nstage mail { rule \"a\" { if mail_from in n { } } }\n", "s.rules:2:38: 'in' cannot look for address in cidr" },
    { "chk_in_right", "stage mail { rule \"a\" { if helo in 5 { } } }\n", "s.rules:1:36: 'in' needs a list, group, file, cidr or string on the right, found int" },
    { "chk_matches", "stage mail { rule \"a\" { if helo matches helo { } } }\n", "s.rules:1:41: 'matches' needs a regex on the right, found string" },
    { "chk_for_list", "stage mail { rule \"a\" { for x in helo { } } }\n", "s.rules:1:34: 'for' loops over lists only, found string" },
    { "chk_arity", "stage rcpt { action \"a\" { bcc(); } }\n", "s.rules:1:27: 'bcc' expects 1 argument, found 0" },
    { "chk_argtype", "stage rcpt { action \"a\" { bcc(5); } }\n", "s.rules:1:31: argument 1 of 'bcc' must be address, found int" },
    { "chk_unknown_fn", "stage rcpt { action \"a\" { bc(rcpt); } }\n", "s.rules:1:27: unknown function 'bc'; did you mean 'bcc'?" },
    { "chk_status_call", "stage rcpt { action \"a\" { deny(); } }\n", "s.rules:1:27: 'deny' is a status; use it as 'return deny(...);'" },
    { "chk_fn_bare", "stage rcpt { action \"a\" { let x = log; } }\n", "s.rules:1:35: 'log' is a function; call it as log(...)" },
    { "chk_status_bare", "stage rcpt { action \"a\" { let x = deny; } }\n", "s.rules:1:35: 'deny' is a status; use it as 'return deny;'" },
    { "chk_unused", "stage rcpt { action \"a\" { helo == \"x\"; } }\n", "s.rules:1:32: expression result is not used" },
    { "chk_dup_let", "stage rcpt { action \"a\" { let x = 1; let x = 2; } }\n", "s.rules:1:38: 'x' is already defined in this block" },
    { "chk_bad_addr_lit", "stage rcpt { action \"a\" { bcc(\"not an address\"); } }\n", "s.rules:1:31: invalid address \"not an address\": address syntax error" },
    { "chk_bad_ip", "object x = ip4 \"1.2.3\";\n", "s.rules:1:16: invalid ip4 address \"1.2.3\"" },
    { "chk_bad_ip6", "object x = ip6 \"1.2.3.4\";\n", "s.rules:1:16: invalid ip6 address \"1.2.3.4\"" },
    { "chk_bad_cidr", "object x = cidr \"10.0.0.0/33\";\n", "s.rules:1:17: invalid cidr \"10.0.0.0/33\"" },
    { "chk_bad_fqdn", "object x = fqdn \"a..b\";\n", "s.rules:1:17: invalid fqdn \"a..b\"" },
    { "chk_bad_regex", "object x = regex \"(a\";\n", "s.rules:1:18: invalid regex \"(a\": missing closing parenthesis at offset 2" },
    { "chk_unknown_kind", "object x = cdir \"10.0.0.0/8\";\n", "s.rules:1:12: unknown object kind 'cdir'; did you mean 'cidr'?" },
    { "chk_file_type", "object x = file:fqnd \"f.txt\";\n", "s.rules:1:17: unknown file type 'fqnd'; did you mean 'fqdn'?" },
    { "chk_file_missing", "object x = file:fqdn \"missing.txt\";\n", "s.rules:1:12: cannot read file object @/missing.txt: No such file or directory" },
    { "chk_file_badline", "object x = file:ip \"bad.txt\";\n", "s.rules:1:12: @/bad.txt:1: invalid ip address \"x\"" },
    { "chk_object_const", "object x = helo;\n", "s.rules:1:12: an object must be a constant (typed literal, group or file)" },
    { "chk_dup_object", "object x = string \"a\";\nobject x = string \"b\";\n", "s.rules:2:1: 'x' is already defined at line 1" },
    { "chk_group_member", "object f = file:fqdn \"f.txt\";\nobject g = group [f];\n", "s.rules:2:19: a group cannot hold a file" },
    { "chk_svc_kind", "service u = pgsql { dsn = \"x\"; };\n", "s.rules:1:13: unknown service kind 'pgsql' (known: csv, cmd, smtp)" },
    { "chk_svc_option", "service g = csv { pth = \"x\"; };\n", "s.rules:1:19: unknown option 'pth' for a csv service; did you mean 'path'?" },
    { "chk_svc_required", "service g = csv { };\n", "s.rules:1:1: a csv service needs option 'path'" },
    { "chk_svc_type", "service g = csv { path = 5; };\n", "s.rules:1:26: option 'path' must be string, found int" },
    { "chk_svc_method", "service g = csv { path = \"g.csv\"; };\nstage mail { rule \"a\" { if g.contain(mail_from) { } } }\n", "s.rules:2:30: a csv service has no method 'contain'; did you mean 'contains'?" },
    { "chk_svc_stage", "service s = smtp { address = \"127.0.0.1:10026\"; };\nstage mail { rule \"a\" { if s.delegate() > 400 { } } }\n", "s.rules:2:30: 'smtp.delegate' is not allowed at stage mail (allowed at: data, postq)" },
    { "chk_svc_cmd_path", "service c = cmd { path = \"spamc\"; };\n", "s.rules:1:1: cmd service c: path must be absolute" },
    { "chk_import_missing", "import \"nope.rules\" as n;\n", "s.rules:1:1: cannot import 'nope.rules': No such file or directory" },
    { "chk_import_cycle", "import \"cyc1.rules\" as c;\n", "cyc2.rules:1:1: cyclic import: cyc1.rules -> cyc2.rules -> cyc1.rules" },
    { "chk_import_stage", "import \"imp_stage.rules\" as i;\n", "imp_stage.rules:2:7: stage blocks are not allowed in an imported file (imports provide objects and services only)" },
    { "chk_alias", "import \"objs.rules\" as doe;\nstage rcpt { action \"a\" { bcc(dee::jane); } }\n", "s.rules:2:31: unknown import alias 'dee'; did you mean 'doe'?" },
    { "chk_alias_member", "import \"objs.rules\" as doe;\nstage rcpt { action \"a\" { bcc(doe::jnae); } }\n", "s.rules:2:36: 'doe' has no object or service 'jnae'; did you mean 'jane'?" },
    { "chk_alias_bare", "import \"objs.rules\" as doe;\nstage rcpt { action \"a\" { bcc(doe); } }\n", "s.rules:2:31: 'doe' is an import alias; name one of its objects as doe::NAME" },
    { "chk_log_level", "stage rcpt { action \"a\" { log(\"loud\", \"x\"); } }\n", "s.rules:1:31: unknown log level \"loud\" (debug, info, warn, error)" },
    { "chk_header_name", "stage data { action \"a\" { add_header(\"X A\", \"x\"); } }\n", "s.rules:1:38: invalid header name \"X A\"" },
    { "chk_addr_field", "stage mail { rule \"a\" { if mail_from.domian == \"x\" { } } }\n", "s.rules:1:38: an address has no field 'domian'; did you mean 'domain'?" },
    { "chk_method", "stage mail { rule \"a\" { if helo.size() == 1 { } } }\n", "s.rules:1:33: a value of type string has no method 'size'" },
    { "chk_list_mixed", "stage mail { rule \"a\" { for x in [1, \"a\"] { } } }\n", "s.rules:1:38: list elements must have one type: int, found string" },
    { "chk_interp_void", "stage mail { rule \"a\" { log(`${log(\"x\")}`); } }\n", "s.rules:1:32: cannot interpolate a value of type nothing" },
    { "chk_msg_header_field", "stage data { rule \"a\" { if msg.header == \"x\" { } } }\n", "s.rules:1:32: 'msg.header' is a method; call it as msg.header(\"Name\")" },
    { "chk_len_args", "stage rcpt { rule \"a\" { if rcpt_list.len(1) > 1 { } } }\n", "s.rules:1:38: 'len' expects 0 arguments, found 1" },
};

static void test_every_error(void **state)
{
    for (size_t i = 0; i < sizeof(err_cases) / sizeof(err_cases[0]); i++) {
        buf_t e;
        buf_init(&e, 256);
        struct rl_program *p = compile(err_cases[i].src, &e);
        if (p != NULL || strncmp(e.data, err_cases[i].first, strlen(err_cases[i].first)) != 0 ||
            e.data[strlen(err_cases[i].first)] != '\n') {
            fprintf(stderr, "case %s:\n  want %s\n  got  %s", err_cases[i].name, err_cases[i].first,
                    e.data);
            fail();
        }
        buf_free(&e);
    }
}

/* One mistake, one message: cascades are suppressed. */
static void test_one_error_per_mistake(void **state)
{
    static const char *const one[] = {
        "stage mail { rule \"a\" { if 1 @ 2 { return deny; } } }\n",
        "stage mail { rule \"a\" { if { } } }\n",
        "stage mail { rule a { } }\n",
        "stage mail { rule \"a\" { return 5; } }\n",
        "stage mail { rule \"a { } }\n",
        "stage mail { rule \"a\" { let x = 99999999999999999999; } }\n",
    };
    for (size_t i = 0; i < sizeof(one) / sizeof(one[0]); i++) {
        buf_t e;
        buf_init(&e, 256);
        assert_null(compile(one[i], &e));
        int lines = 0;
        for (size_t k = 0; k < e.len; k++)
            lines += e.data[k] == '\n';
        if (lines != 1)
            fprintf(stderr, "%s=> %s", one[i], e.data);
        assert_int_equal(lines, 1);
        buf_free(&e);
    }
}

static void test_all_errors_reported(void **state)
{
    buf_t e;
    buf_init(&e, 256);
    assert_null(compile("stage mail { rule \"a\" { if mail_frm == \"x\" { } } }\n"
                        "stage rcpt { action \"b\" { maildir(rcpt); } }\n"
                        "stage data { rule \"c\" { return dny; } }\n", &e));
    assert_string_equal(e.data,
        "s.rules:1:28: unknown name 'mail_frm'; did you mean 'mail_from'?\n"
        "s.rules:2:27: 'maildir' is not allowed at stage rcpt (allowed at: deliver)\n"
        "s.rules:3:32: unknown status 'dny'; did you mean 'deny'?\n");
    buf_free(&e);
}

/* A literal next hop of forward()/lmtp() is checked at compile time;
 * lmtp("NAME") and transport(r, "NAME") name transport blocks. */
static void test_next_hops(void **state)
{
    buf_t e;
    buf_init(&e, 256);
    assert_null(compile("stage deliver { action \"d\" {\n"
                        "  lmtp(\"unix:run/lmtp\");\n"
                        "  forward(\"mx bad:25\");\n"
                        "  lmtp(\"[127.0.0.1]\");\n"
                        "  transport(\"a b\"); } }\n", &e));
    assert_non_null(strstr(e.data, "s.rules:2:8: lmtp: expected \"unix:/absolute/path\""));
    assert_non_null(strstr(e.data, "s.rules:3:11: forward: expected a host name"));
    assert_non_null(strstr(e.data, "s.rules:4:8: lmtp: expected a port"));
    assert_non_null(strstr(e.data, "s.rules:5:13: transport: \"a b\" is not a transport name"));
    buf_free(&e);
    buf_init(&e, 256);
    struct rl_program *p = compile("stage deliver { action \"d\" { for r in rcpt_list {\n"
                                   "  lmtp(r, \"dovecot\"); lmtp(r, \"unix:/run/dovecot/lmtp\");\n"
                                   "  transport(r, \"archive\"); transport(\"null\");\n"
                                   "  forward(r, `[${r.domain}]:2525`); } } }\n", &e);
    if (p == NULL)
        fprintf(stderr, "%s", e.data);
    assert_non_null(p);
    rl_program_free(p);
    buf_free(&e);
}

static void test_valid_programs(void **state)
{
    static const char *const ok[] = {
        "",
        "# only a comment\n",
        "object n = cidr \"10.0.0.0/8\";\nstage connect { rule \"a\" { if client.ip in n { return faccept; } } }\n",
        "stage connect { rule \"a\" { if client.ip == \"10.1.1.1\" { return deny(\"go away\"); } } }\n",
        "stage rcpt { rule \"a\" { if rcpt.domain == \"x.test\" && rcpt.local_part != \"root\" { return reject(550, \"5.1.1\", `no ${rcpt}`); } } }\n",
        "stage rcpt { action \"b\" { bcc(\"archive@x.test\"); add_header(\"X-Seen\", helo); } }\n",
        "stage data { rule \"j\" { if msg.header(\"X-Spam\") matches \"(?i)yes\" || msg.size > 1000000 { return quarantine(\"spam\"); } } }\n",
        "stage deliver { action \"d\" { for r in rcpt_list { if r.domain in [\"a.test\", \"b.test\"] { lmtp(r, \"127.0.0.1:24\"); } else { forward(r, \"mx.example\"); } } discard(); } }\n",
        "import \"objs.rules\" as doe;\nstage rcpt { action \"a\" { if rcpt == doe::jane { bcc(doe::jane); } } }\n",
        "object f = file:fqdn \"f.txt\";\nstage mail { rule \"a\" { if mail_from.domain in f { return defer; } else if spf.result == \"fail\" { return reject; } } rule \"b\" { return accept; } }\n",
        "stage mail { rule \"a\" { if helo == \"x\" { return deny; } else { return accept; } } }\n",
        "stage mail { rule \"a\" { let x = -5; if x < 0 && !(x > 3) { log(\"debug\", lower(`${x}`)); } } }\n",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        buf_t e;
        buf_init(&e, 256);
        struct rl_program *p = compile(ok[i], &e);
        if (p == NULL)
            fprintf(stderr, "%s=> %s", ok[i], e.data);
        assert_non_null(p);
        rl_program_free(p);
        buf_free(&e);
    }
}

static void test_disasm(void **state)
{
    buf_t e, d;
    buf_init(&e, 64);
    buf_init(&d, 1024);
    struct rl_program *p = compile("stage rcpt { rule \"r\" { if rcpt.domain == \"a.test\" { return "
                                   "reject(550, \"5.1.1\", \"no\"); } } }\n", &e);
    assert_non_null(p);
    rl_disasm(p, &d);
    assert_non_null(strstr(d.data, "stage rcpt:"));
    assert_non_null(strstr(d.data, "rule \"r\""));
    assert_non_null(strstr(d.data, "CTX      8     ; rcpt"));
    assert_non_null(strstr(d.data, "FIELD    1     ; domain"));
    assert_non_null(strstr(d.data, "JMPF"));
    assert_non_null(strstr(d.data, "RETR     3 3   ; reject"));
    assert_non_null(strstr(d.data, "END"));
    assert_int_equal(rl_program_stage_rules(p, STAGE_RCPT), 1);
    assert_int_equal(rl_program_stage_rules(p, STAGE_MAIL), 0);
    rl_program_free(p);
    buf_free(&e);
    buf_free(&d);
}

static void test_shipped_examples(void **state)
{
    static const char *const files[] = { "conf/rules/main.rules", "conf/rules/family.rules" };
    for (size_t i = 0; i < 2; i++) {
        struct rl_diag d = { 0 };
        struct rl_program *p = rl_compile_file(files[i], &d);
        for (int k = 0; k < d.n; k++)
            fprintf(stderr, "%s:%d:%d: %s\n", d.v[k].file, d.v[k].line, d.v[k].col, d.v[k].msg);
        assert_non_null(p);
        rl_program_free(p);
        rl_diag_free(&d);
    }
}

static void test_missing_file(void **state)
{
    struct rl_diag d = { 0 };
    assert_null(rl_compile_file("/nonexistent/x.rules", &d));
    assert_int_equal(d.n, 1);
    buf_t b;
    buf_init(&b, 64);
    rl_diag_format(&b, &d.v[0]);
    assert_string_equal(b.data, "/nonexistent/x.rules:1:1: cannot open: No such file or directory");
    buf_free(&b);
    rl_diag_free(&d);
}

int main(void)
{
    log_init("test_rules_compile", 1, 0, LOG_L_FATAL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_error),
        cmocka_unit_test(test_one_error_per_mistake),
        cmocka_unit_test(test_all_errors_reported),
        cmocka_unit_test(test_valid_programs),
        cmocka_unit_test(test_next_hops),
        cmocka_unit_test(test_disasm),
        cmocka_unit_test(test_shipped_examples),
        cmocka_unit_test(test_missing_file),
    };
    return cmocka_run_group_tests(tests, setup, rules_dir_teardown);
}
