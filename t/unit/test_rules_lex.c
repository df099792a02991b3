/*
 * test_rules_lex.c - the rules lexer: every token kind, keywords,
 * durations, comments, line/column tracking, strings and their errors.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "rules/rl_int.h"

static void test_tokens(void **state)
{
    const char *src = "import as object service stage rule action if else for in let return true\n"
                      "false matches foo_1 \"s\\\"x\" `a ${b} c` 42 10s 5m { } ( ) [ ] , ; . : :: = == != "
                      "< > <= >= && || ! - # comment\n// comment too\n";
    static const enum rl_tok want[] = {
        TK_IMPORT, TK_AS, TK_OBJECT, TK_SERVICE, TK_STAGE, TK_RULE, TK_ACTION, TK_IF, TK_ELSE,
        TK_FOR, TK_IN, TK_LET, TK_RETURN, TK_TRUE, TK_FALSE, TK_MATCHES, TK_IDENT, TK_STRING,
        TK_TEMPLATE, TK_INT, TK_DURATION, TK_DURATION, TK_LBRACE, TK_RBRACE, TK_LPAREN, TK_RPAREN,
        TK_LBRACKET, TK_RBRACKET, TK_COMMA, TK_SEMI, TK_DOT, TK_COLON, TK_COLCOL, TK_EQ, TK_EQEQ,
        TK_NE, TK_LT, TK_GT, TK_LE, TK_GE, TK_ANDAND, TK_OROR, TK_BANG, TK_MINUS, TK_EOF,
    };
    struct rl_lexer l;
    rl_lex_init(&l, src, strlen(src), 1, 1);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        struct rl_token t = rl_lex_next(&l);
        assert_int_equal(t.type, want[i]);
        if (t.type == TK_INT)
            assert_int_equal(t.ival, 42);
        if (t.type == TK_DURATION)
            assert_true(t.ival == 10 || t.ival == 300);
        if (t.type == TK_IDENT) {
            assert_int_equal(t.len, 5);
            assert_int_equal(t.line, 2);
            assert_int_equal(t.col, 15);
        }
        if (t.type == TK_EOF)
            assert_int_equal(t.line, 4);
    }
}

static void test_errors(void **state)
{
    static const struct { const char *src; const char *err; int col; } cases[] = {
        { "  \"abc", "unterminated string", 3 },
        { "\"a\nb\"", "unterminated string", 1 },
        { "`abc", "unterminated string", 1 },
        { "x @", "unexpected character", 3 },
        { "99999999999999999999", "integer too large", 1 },
        { "12ab", "invalid number", 1 },
        { "&", "unexpected character", 1 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct rl_lexer l;
        rl_lex_init(&l, cases[i].src, strlen(cases[i].src), 1, 1);
        struct rl_token t;
        do
            t = rl_lex_next(&l);
        while (t.type != TK_ERROR && t.type != TK_EOF);
        assert_int_equal(t.type, TK_ERROR);
        assert_string_equal(t.err, cases[i].err);
        assert_int_equal(t.col, cases[i].col);
    }
}

static void test_template_spans_lines(void **state)
{
    const char *src = "`a\n${ {x} }\nb` next";
    struct rl_lexer l;
    rl_lex_init(&l, src, strlen(src), 5, 7);
    struct rl_token t = rl_lex_next(&l);
    assert_int_equal(t.type, TK_TEMPLATE);
    assert_int_equal(t.line, 5);
    assert_int_equal(t.col, 7);
    t = rl_lex_next(&l);
    assert_int_equal(t.type, TK_IDENT);
    assert_int_equal(t.line, 7);
    assert_int_equal(t.col, 4);
    assert_string_equal(rl_tok_name(TK_SEMI), "';'");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_template_spans_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
