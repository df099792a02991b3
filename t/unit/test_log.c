/*
 * test_log.c - the logging ladder's escaping (lib/util/log.c): every byte outside
 * printable ASCII becomes \xNN, every JSON line is valid JSON whatever the
 * message holds, and AUTH initial responses are redacted from SMTP traces.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "util/buf.h"
#include "util/log.h"
#include "util/log_event.h"

/* ---- capturing stderr ---------------------------------------------------- */

static char *capture(void (*fn)(void))
{
    fflush(stderr);
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), STDERR_FILENO) >= 0);
    fn();
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    long n = ftell(tmp);
    assert_true(n >= 0);
    fseek(tmp, 0, SEEK_END);
    n = ftell(tmp);
    rewind(tmp);
    char *out = calloc(1, (size_t)n + 1);
    assert_non_null(out);
    assert_int_equal(fread(out, 1, (size_t)n, tmp), (size_t)n);
    fclose(tmp);
    return out;
}

/* ---- a strict JSON checker for the shape log lines have ------------------- */

static int json_string(const char **pp, buf_t *val)
{
    const char *p = *pp;
    if (*p++ != '"')
        return -1;
    for (;;) {
        unsigned char c = (unsigned char)*p++;
        if (c == '"')
            break;
        if (c < 0x20 || c >= 0x7f)      /* raw control; 8-bit never appears */
            return -1;
        if (c == '\\') {
            char e = *p++;
            if (strchr("\"\\/bfnrt", e)) {
                buf_append_char(val, e);
            } else if (e == 'u') {
                for (int i = 0; i < 4; i++)
                    if (!p[i] || !strchr("0123456789abcdefABCDEF", p[i]))
                        return -1;
                buf_append_char(val, '?');
                p += 4;
            } else {
                return -1;
            }
        } else {
            buf_append_char(val, (char)c);
        }
    }
    *pp = p;
    return 0;
}

/* One line: {"k":"v"|int,...}. Returns 0 and the "msg" value in msg. */
static int json_line(const char *p, buf_t *msg)
{
    if (*p++ != '{')
        return -1;
    for (;;) {
        buf_t k, v;
        buf_init(&k, 16);
        buf_init(&v, 64);
        int r = json_string(&p, &k);
        if (r == 0 && *p++ != ':')
            r = -1;
        if (r == 0 && *p == '"') {
            r = json_string(&p, &v);
        } else if (r == 0) {
            const char *s = p;
            while (*p >= '0' && *p <= '9')
                p++;
            if (p == s)
                r = -1;
        }
        if (r == 0 && strcmp(k.data, "msg") == 0) {
            buf_reset(msg);
            buf_append(msg, v.data, v.len);
        }
        buf_free(&k);
        buf_free(&v);
        if (r < 0)
            return -1;
        if (*p == '}')
            return p[1] == '\0' ? 0 : -1;
        if (*p++ != ',')
            return -1;
    }
}

/* every line: printable ASCII only, newline-terminated */
static void assert_clean_lines(const char *out, int nlines)
{
    int n = 0;
    for (const char *p = out; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '\n')
            n++;
        else if (c < 0x20 || c >= 0x7f)
            fail_msg("byte 0x%02x in log output at %ld", c, (long)(p - out));
    }
    assert_int_equal(n, nlines);
}

/* ---- log_escape ---------------------------------------------------------- */

static void test_escape_every_byte(void **state)
{
    (void)state;
    char in[256], out[4 * 256 + 1];
    for (int i = 0; i < 256; i++)
        in[i] = (char)i;
    size_t n = log_escape(out, sizeof(out), in, sizeof(in));
    assert_int_equal(n, strlen(out));
    for (size_t i = 0; i < n; i++)
        assert_true(out[i] >= 0x20 && out[i] < 0x7f);
    /* 0x20..0x7e stay (95 bytes), the other 161 become 4 bytes each */
    assert_int_equal(n, 95 + 161 * 4);
    assert_memory_equal(out, "\\x00\\x01", 8);
    assert_non_null(strstr(out, "\\x1f !\"#"));
    assert_non_null(strstr(out, "[\\]^_`"));             /* backslash stays */
    assert_non_null(strstr(out, "}~\\x7f\\x80\\x81"));
    assert_int_equal(strcmp(out + n - 4, "\\xff"), 0);

    n = log_escape(out, sizeof(out), "caf\xc3\xa9\r\n", 7);
    assert_string_equal(out, "caf\\xc3\\xa9\\x0d\\x0a");
    assert_int_equal(n, 19);
}

static void test_escape_bounds(void **state)
{
    (void)state;
    char out[8];
    memset(out, 'Z', sizeof(out));
    /* never a partial escape: "ab" + "\x80" needs 6 + NUL, "\x81" won't fit */
    size_t n = log_escape(out, sizeof(out), "ab\x80\x81", 4);
    assert_string_equal(out, "ab\\x80");
    assert_int_equal(n, 6);
    n = log_escape(out, 1, "abc", 3);
    assert_int_equal(n, 0);
    assert_string_equal(out, "");
    n = log_escape(out, 4, "\x01", 1);         /* needs 5 */
    assert_int_equal(n, 0);
    assert_string_equal(out, "");
    n = log_escape(out, sizeof(out), "", 0);
    assert_int_equal(n, 0);
    assert_int_equal(log_escape(out, 0, "x", 1), 0);
}

/* ---- whole lines --------------------------------------------------------- */

static const char hostile[] = "helo=<\x01\x02\x1f\x7f\x80\xc3\xa9\xff\"q\\b\\u0000\" \xe2\x80\xa8 end>";

static void log_hostile(void)
{
    log_info("%s", hostile);
    log_warn("user=<%s>", "\xff\xfe\t\"");
    log_set_qid("Q\x01\x80\"ID");
    log_info("queued %s", "\x90");
    log_set_qid(NULL);
    char big[3000];
    memset(big, '\xff', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    log_info("big %s", big);                    /* truncated, still one whole line */
    memset(big, '"', sizeof(big) - 1);
    log_info("%s", big);
}

static void test_json_lines_valid(void **state)
{
    (void)state;
    log_init("test_log", 1, 1, LOG_L_INFO);
    char *out = capture(log_hostile);
    log_init("test_log", 1, 0, LOG_L_PANIC);
    assert_clean_lines(out, 5);
    buf_t msg;
    buf_init(&msg, 256);
    int line = 0;
    for (char *p = out, *nl; (nl = strchr(p, '\n')) != NULL; p = nl + 1, line++) {
        *nl = '\0';
        if (json_line(p, &msg) < 0)
            fail_msg("line %d is not valid JSON: %s", line, p);
        switch (line) {
        case 0:
            assert_string_equal(msg.data, "helo=<\\x01\\x02\\x1f\\x7f\\x80\\xc3\\xa9\\xff\"q\\b\\u0000\" "
                                          "\\xe2\\x80\\xa8 end>");
            break;
        case 1:
            assert_string_equal(msg.data, "user=<\\xff\\xfe\\x09\">");
            break;
        case 2:
            assert_non_null(strstr(p, "\"queue_id\":\"Q\\\\x01\\\\x80\\\"ID\""));
            assert_string_equal(msg.data, "queued \\x90");
            break;
        case 3:
            assert_true(strncmp(msg.data, "big \\xff\\xff", 12) == 0);
            break;
        case 4:
            assert_true(msg.len > 1000);
            assert_true(strspn(msg.data, "\"") == msg.len);
            break;
        }
    }
    buf_free(&msg);
    free(out);
}

static void test_text_lines_escaped(void **state)
{
    (void)state;
    log_init("test_log", 1, 0, LOG_L_INFO);
    char *out = capture(log_hostile);
    log_init("test_log", 1, 0, LOG_L_PANIC);
    assert_clean_lines(out, 5);
    assert_non_null(strstr(out, "postern/test_log["));
    assert_non_null(strstr(out, "]: helo=<\\x01\\x02\\x1f\\x7f\\x80\\xc3\\xa9\\xff\"q\\b\\u0000\" "
                                "\\xe2\\x80\\xa8 end>\n"));
    assert_non_null(strstr(out, "]: warning: user=<\\xff\\xfe\\x09\">\n"));
    assert_non_null(strstr(out, "]: Q\\x01\\x80\"ID: queued \\x90\n"));
    free(out);
}

/* ---- AUTH redaction for SMTP traces --------------------------------------- */

static void check_client_line(const char *in, const char *want)
{
    buf_t b;
    buf_init(&b, 64);
    log_append_client_line(&b, in, strlen(in));
    assert_string_equal(b.data, want);
    buf_free(&b);
}

static void test_client_line_redacts_auth(void **state)
{
    (void)state;
    check_client_line("AUTH PLAIN AHVzZXIAc2VjcmV0", "AUTH PLAIN <redacted>");
    check_client_line("auth plain =", "auth plain <redacted>");
    check_client_line("AUTH LOGIN dXNlcg==", "AUTH LOGIN <redacted>");
    check_client_line("Auth  XOAUTH2 dXNlcj1zb21ldXNlcgFhdXRo", "Auth  XOAUTH2 <redacted>");
    check_client_line(" AUTH PLAIN x y z", " AUTH PLAIN <redacted>");
    check_client_line("AUTH PLAIN", "AUTH PLAIN");
    check_client_line("AUTH LOGIN", "AUTH LOGIN");
    check_client_line("AUTH", "AUTH");
    check_client_line("AUTHX PLAIN secret", "AUTHX PLAIN secret");
    check_client_line("MAIL FROM:<a@b.test> AUTH=<>", "MAIL FROM:<a@b.test> AUTH=<>");
    check_client_line("EHLO client.test", "EHLO client.test");
}

/* ---- structured events (lib/util/log_event.c) ----------------------------- */

static void render(struct log_ev *e, int json, const char *want)
{
    char out[4096];
    log_ev_render(e, json, out, sizeof(out));
    assert_string_equal(out, want);
}

static void test_event_text_layout(void **state)
{
    (void)state;
    struct log_ev e;
    log_ev_init(&e, LE_DELIVERED);
    log_ev_str(&e, LF_RECIPIENT, "a\"b@x\r\n.test");
    log_ev_str(&e, LF_RELAY, "local");
    log_ev_dbl(&e, LF_DELAY, 0.5);
    log_ev_str(&e, LF_DSN, "2.0.0");
    log_ev_str(&e, LF_STATUS, "sent");
    log_ev_str(&e, LF_REASON, "maildir");
    render(&e, 0, "to=<a\"b@x\\x0d\\x0a.test>, relay=local, delay=0.50, dsn=2.0.0, "
                  "status=sent (maildir)");
    render(&e, 1, ",\"recipient\":\"a\\\"b@x\\\\x0d\\\\x0a.test\",\"dsn\":\"2.0.0\","
                  "\"status\":\"sent\",\"reason\":\"maildir\",\"relay\":\"local\",\"delay\":0.500");
    /* optional parts and the plural */
    log_ev_init(&e, LE_ADMIN);
    log_ev_str(&e, LF_KIND, "queue");
    log_ev_str(&e, LF_ACTION, "flush");
    log_ev_str(&e, LF_BY, "root");
    log_ev_num(&e, LF_UID, 0);
    render(&e, 0, "admin: queue flush by root (uid 0)");
    log_ev_num(&e, LF_COUNT, 1);
    log_ev_str(&e, LF_IDS, "ABC");
    render(&e, 0, "admin: queue flush: 1 message (ABC) by root (uid 0)");
    log_ev_num(&e, LF_COUNT, 2);
    render(&e, 0, "admin: queue flush: 2 messages (ABC) by root (uid 0)");
}

static void test_event_value_bounds(void **state)
{
    (void)state;
    static char big[3 * LOG_VALUE_MAX];
    memset(big, '\x01', sizeof(big) - 1);
    struct log_ev e;
    log_ev_init(&e, LE_HELO);
    log_ev_client(&e, "192.0.2.1", 25);
    log_ev_str(&e, LF_HELO, big);
    char out[LOG_BODY_MAX];
    size_t n = log_ev_render(&e, 1, out, sizeof(out));
    /* cut at LOG_VALUE_MAX octets, each "\x01" then JSON-escaped ("\\x01") */
    assert_true(n < 5 * LOG_VALUE_MAX + 100);
    assert_non_null(strstr(out, "\"client\":\"[192.0.2.1]:25\""));
    n = log_ev_render(&e, 0, out, sizeof(out));
    assert_true(n <= 4 * LOG_VALUE_MAX + 100);
}

static void emit_session_event(void)
{
    log_set_session("00aa11bb22cc33dd");
    struct log_ev e;
    log_ev_init(&e, LE_CONNECT);
    log_ev_client(&e, "192.0.2.1", 2525);
    log_ev_str(&e, LF_LISTENER, "smtp");
    log_ev_emit(&e);
    log_set_qid("QID1");
    log_info("free text");
    log_set_qid(NULL);
    log_set_session(NULL);
}

static void test_event_lines(void **state)
{
    (void)state;
    log_init("test_log", 1, 1, LOG_L_INFO);
    char *out = capture(emit_session_event);
    log_init("test_log", 1, 0, LOG_L_INFO);
    char *text = capture(emit_session_event);
    log_init("test_log", 1, 0, LOG_L_PANIC);
    assert_non_null(strstr(out, "\"process\":\"test_log\",\"pid\":"));
    assert_non_null(strstr(out, ",\"event\":\"connect\",\"session\":\"00aa11bb22cc33dd\","
                                "\"client\":\"[192.0.2.1]:2525\",\"listener\":\"smtp\"}\n"));
    assert_non_null(strstr(out, "\"event\":\"log\",\"session\":\"00aa11bb22cc33dd\","
                                "\"queue_id\":\"QID1\",\"msg\":\"free text\"}\n"));
    assert_non_null(strstr(text, "]: 00aa11bb22cc33dd: connect from [192.0.2.1]:2525 to smtp\n"));
    assert_non_null(strstr(text, "]: QID1: free text\n"));
    free(out);
    free(text);
}

/* log_ev_client shapes "[ip]:port" only when rendering; a later
 * log_ev_str replaces it; log_event_on follows the level in force. */
static void test_event_client_lazy(void **state)
{
    (void)state;
    struct log_ev e;
    log_ev_init(&e, LE_CONNECT);
    log_ev_client(&e, "2001:db8::1\n", 25);
    log_ev_str(&e, LF_LISTENER, "smtp");
    render(&e, 0, "connect from [2001:db8::1\\x0a]:25 to smtp");
    render(&e, 1, ",\"client\":\"[2001:db8::1\\\\x0a]:25\",\"listener\":\"smtp\"");
    log_ev_str(&e, LF_CLIENT, "plain");
    render(&e, 0, "connect from plain to smtp");
    log_ev_client(&e, NULL, 7);
    render(&e, 0, "connect from [?]:7 to smtp");
    log_init("test_log", 1, 0, LOG_L_WARN);
    assert_false(log_event_on(LE_CONNECT));
    assert_true(log_event_on(LE_AUTH_FAILED));
    log_init("test_log", 1, 0, LOG_L_INFO);
    assert_true(log_event_on(LE_CONNECT));
    log_init("test_log", 1, 0, LOG_L_PANIC);
}

int main(void)
{
    log_init("test_log", 1, 0, LOG_L_PANIC);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_every_byte),
        cmocka_unit_test(test_escape_bounds),
        cmocka_unit_test(test_json_lines_valid),
        cmocka_unit_test(test_text_lines_escaped),
        cmocka_unit_test(test_client_line_redacts_auth),
        cmocka_unit_test(test_event_text_layout),
        cmocka_unit_test(test_event_value_bounds),
        cmocka_unit_test(test_event_lines),
        cmocka_unit_test(test_event_client_lazy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
