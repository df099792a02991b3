/*
 * test_config_transport.c - transport "NAME" { } blocks (lib/config/
 * config_transport.c): what each type takes, the errors with file:line:col,
 * and the next-hop syntax shared with the rules and the agents.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "config/config.h"

/* Load text; every error line (file:line:col: key: message) into errs. */
static struct config *parse(const char *text, buf_t *errs)
{
    struct config_errors e = { 0 };
    struct config *c = config_load_buffer("/t/p.conf", text, strlen(text), &e);
    for (int i = 0; i < e.n; i++) {
        config_error_format(errs, &e.v[i]);
        buf_append_char(errs, '\n');
    }
    config_errors_free(&e);
    return c;
}

/* text must fail with an error line containing want. */
static void fails_with(const char *text, const char *want)
{
    buf_t errs;
    buf_init(&errs, 128);
    struct config *c = parse(text, &errs);
    if (c != NULL || strstr(errs.data, want) == NULL)
        print_error("wanted: %s\ngot:\n%s", want, errs.data);
    assert_null(c);
    assert_non_null(strstr(errs.data, want));
    buf_free(&errs);
}

static void test_types_parse(void **st)
{
    (void)st;
    const char *text =
        "transport \"dovecot\" { type = \"lmtp\"; address = \"unix:/run/dovecot/lmtp\"; }\n"
        "transport \"tcp\" { type = \"lmtp\"; address = \"[127.0.0.1]:24\"; }\n"
        "transport \"archive\" { type = \"pipe\"; user = \"archive\"; timeout = 1m;\n"
        "  command = [\"/usr/bin/archive\", \"--\", \"${sender}\", \"to=${recipient}\"]; }\n"
        "transport \"null\" { type = \"discard\"; }\n"
        "transport \"partner\" { type = \"smtp\"; nexthop = \"[mx.partner.example]:2525\"; }\n";
    buf_t errs;
    buf_init(&errs, 64);
    struct config *c = parse(text, &errs);
    if (c == NULL)
        print_error("%s", errs.data);
    assert_non_null(c);
    assert_int_equal(c->ntransports, 5);
    const struct transport_conf *t = config_transport(c, "dovecot");
    assert_non_null(t);
    assert_int_equal(t->type, TR_LMTP);
    assert_string_equal(t->address, "unix:/run/dovecot/lmtp");
    t = config_transport(c, "archive");
    assert_int_equal(t->type, TR_PIPE);
    assert_int_equal(t->command.n, 4);
    assert_string_equal(t->command.v[3], "to=${recipient}");
    assert_string_equal(t->user, "archive");
    assert_int_equal(t->timeout, 60);
    assert_int_equal(t->line, 3);
    assert_int_equal(t->user_line, 3);
    assert_int_equal(t->cmd_line, 4);
    assert_int_equal(config_transport(c, "null")->type, TR_DISCARD);
    assert_string_equal(config_transport(c, "partner")->nexthop, "[mx.partner.example]:2525");
    assert_null(config_transport(c, "nope"));
    config_free(c);
    buf_free(&errs);
}

static void test_errors(void **st)
{
    (void)st;
    fails_with("transport \"x\" { address = \"unix:/a\"; }\n",
               "/t/p.conf:1:1: transport.x: missing type = \"lmtp\"");
    fails_with("transport \"x\" { type = \"lmtp\"; }\n",
               "/t/p.conf:1:1: transport.x.address: transport of type \"lmtp\" needs address");
    fails_with("transport \"x\" { type = \"lmtp\"; address = \"unix:run/x\"; }\n",
               "/t/p.conf:1:42: transport.x.address: expected \"unix:/absolute/path\"");
    fails_with("transport \"x\" { type = \"lmtp\"; address = \"127.0.0.1\"; }\n",
               "transport.x.address: expected a port");
    fails_with("transport \"x\" { type = \"pipe\"; user = \"u\"; command = [\"bin/x\"]; }\n",
               "/t/p.conf:1:55: transport.x.command: expected the command's absolute path first");
    fails_with("transport \"x\" { type = \"pipe\"; user = \"u\";\n"
               "  command = [\"/bin/x\", \"${recipent}\"]; }\n",
               "/t/p.conf:2:24: transport.x.command: unknown variable \"${recipent}\"");
    fails_with("transport \"x\" { type = \"pipe\"; command = [\"/bin/x\"]; }\n",
               "transport.x.user: transport of type \"pipe\" needs user");
    fails_with("transport \"x\" { type = \"discard\"; user = \"u\"; }\n",
               "/t/p.conf:1:35: transport.x.user: not a key of a transport of type \"discard\"");
    fails_with("transport \"x\" { type = \"fax\"; }\n", "transport.x.type: expected one of");
    fails_with("transport \"x\" { type = \"discard\"; }\ntransport \"x\" { type = \"discard\"; }\n",
               "/t/p.conf:2:1: transport.x: duplicate transport block");
    fails_with("transport { type = \"discard\"; }\n", "expected transport \"NAME\" {");
    fails_with("transport \"x\" { type = \"discard\"; colour = 1; }\n",
               "transport.x.colour: unknown key \"colour\"");
}

static void test_nexthop(void **st)
{
    (void)st;
    static const struct { const char *s; int unix_ok, ok, port; const char *host; } cases[] = {
        { "unix:/run/lmtp", 1, 1, 0, "" },
        { "unix:/run/lmtp", 0, 0, 0, "" },
        { "unix:/run/../etc/x", 1, 0, 0, "" },
        { "unix:/run/./x", 1, 0, 0, "" },
        { "unix:relative", 1, 0, 0, "" },
        { "[127.0.0.1]:2525", 0, 1, 2525, "127.0.0.1" },
        { "[IPv6:::1]:24", 0, 1, 24, "IPv6:::1" },
        { "[::1]:24", 0, 1, 24, "::1" },
        { "mx.example.test", 0, 1, 25, "mx.example.test" },
        { "mx.example.test:587", 0, 1, 587, "mx.example.test" },
        { "[mx.example.test]", 0, 1, 25, "mx.example.test" },
        { "::1:25", 0, 0, 0, "" },
        { "host:0", 0, 0, 0, "" },
        { "host:x", 0, 0, 0, "" },
        { "-host:25", 0, 0, 0, "" },
        { "ho st:25", 0, 0, 0, "" },
        { "[127.0.0.1]x", 0, 0, 0, "" },
        { "", 0, 0, 0, "" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct nexthop nh;
        buf_t msg;
        buf_init(&msg, 64);
        int rc = config_parse_nexthop(cases[i].s, 25, cases[i].unix_ok, &nh, &msg);
        if ((rc == 0) != cases[i].ok)
            print_error("case \"%s\": rc %d (%s)\n", cases[i].s, rc, msg.data);
        assert_int_equal(rc == 0, cases[i].ok);
        if (rc == 0 && !nh.is_unix) {
            assert_int_equal(nh.port, cases[i].port);
            assert_string_equal(nh.host, cases[i].host);
        }
        buf_free(&msg);
    }
    struct nexthop nh;
    buf_t msg;
    buf_init(&msg, 64);
    assert_int_equal(config_parse_nexthop("lmtp.example.test", 0, 1, &nh, &msg), -1);
    assert_non_null(strstr(msg.data, "expected a port"));
    buf_free(&msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_types_parse),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_nexthop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
