/*
 * test_filter_policy.c - the default policy (lib/filter/filter_policy.c, shared by
 * filter and smtpd) against a real config_load()ed configuration.
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

#include "config/config.h"
#include "filter/filter_policy.h"

static struct config *cfg;

static int setup(void **st)
{
    char path[] = "/tmp/test_filter_policy.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *conf =
        "hostname = \"mx.example.test\";\n"
        "spool = \"/tmp\";\n"
        "user = \"nobody\";\n"
        "mynetworks = [\"127.0.0.0/8\", \"[::1]/128\", \"10.1.0.0/16\", \"[2001:db8::]/32\"];\n"
        "local_domains = [\"localhost\", \"example.test\"];\n"
        "domain \"tenant.example\" { mailboxes = \"/var/vmail/%d/%u/Maildir\"; }\n";
    assert_int_equal(write(fd, conf, strlen(conf)), (ssize_t)strlen(conf));
    close(fd);
    struct config_errors errs = { 0 };
    cfg = config_load(path, &errs);
    for (int i = 0; i < errs.n; i++)
        fprintf(stderr, "%s:%d: %s\n", errs.v[i].file, errs.v[i].line, errs.v[i].msg);
    config_errors_free(&errs);
    unlink(path);
    assert_non_null(cfg);
    policy_init(cfg);
    return 0;
}

static int teardown(void **st)
{
    config_free(cfg);
    return 0;
}

static struct verdict_out ask(enum stage stage, const char *ip, const char *auth, const char *rcpt)
{
    struct ipc_filter_req q;
    memset(&q, 0, sizeof(q));
    q.stage = stage;
    q.listener = "smtp";
    q.client_ip = ip;
    q.client_ptr = "";
    q.helo = "client.test";
    q.auth_user = auth;
    q.tls_version = q.tls_cipher = "";
    q.mail_from = "someone@remote.test";
    q.rcpt = rcpt;
    q.queue_id = q.path = "";
    struct verdict_out v;
    policy_decide(&q, &v);
    return v;
}

static void assert_relay_denied(struct verdict_out v)
{
    assert_int_equal(v.status, V_REJECT);
    assert_int_equal(v.code, 554);
    assert_string_equal(v.enhanced, "5.7.1");
    assert_string_equal(v.text, "Relay access denied");
    assert_string_equal(v.rule, "");
}

static void test_local_accepted(void **st)
{
    const char *ip = "198.51.100.7";
    assert_int_equal(ask(STAGE_RCPT, ip, "", "user@example.test").status, V_ACCEPT);
    assert_int_equal(ask(STAGE_RCPT, ip, "", "User@EXAMPLE.Test").status, V_ACCEPT);
    assert_int_equal(ask(STAGE_RCPT, ip, "", "user@example.test.").status, V_ACCEPT);
    assert_int_equal(ask(STAGE_RCPT, ip, "", "<user@localhost>").status, V_ACCEPT);
    assert_int_equal(ask(STAGE_RCPT, ip, "", "x@tenant.example").status, V_ACCEPT);
    assert_int_equal(ask(STAGE_RCPT, ip, "", "\"a b@c\"@example.test").status, V_ACCEPT);
}

static void test_postmaster(void **st)
{
    const char *ip = "198.51.100.7";
    assert_int_equal(ask(STAGE_RCPT, ip, "", "postmaster").status, V_ACCEPT);
    assert_int_equal(ask(STAGE_RCPT, ip, "", "PostMaster").status, V_ACCEPT);
    assert_int_equal(ask(STAGE_RCPT, ip, "", "postmaster@example.test").status, V_ACCEPT);
    assert_relay_denied(ask(STAGE_RCPT, ip, "", "postmaster@remote.test"));
    assert_relay_denied(ask(STAGE_RCPT, ip, "", "postmasters"));
}

static void test_relay_denied(void **st)
{
    assert_relay_denied(ask(STAGE_RCPT, "198.51.100.7", "", "x@remote.test"));
    assert_relay_denied(ask(STAGE_RCPT, "10.2.0.1", "", "x@remote.test"));
    assert_relay_denied(ask(STAGE_RCPT, "2001:db9::1", "", "x@remote.test"));
    assert_relay_denied(ask(STAGE_RCPT, "", "", "x@remote.test"));
    assert_relay_denied(ask(STAGE_RCPT, "not-an-ip", "", "x@remote.test"));
    assert_relay_denied(ask(STAGE_RCPT, "198.51.100.7", "", "bare-user"));
    /* subdomains of a local domain are not local */
    assert_relay_denied(ask(STAGE_RCPT, "198.51.100.7", "", "x@sub.example.test"));
}

/* The process's local check: "ghost" is nobody, "flaky" fails to look up. */
static int fake_check(const char *addr)
{
    if (strncmp(addr, "ghost@", 6) == 0)
        return 0;
    return strncmp(addr, "flaky@", 6) == 0 ? -1 : 1;
}

static void test_unknown_local_user(void **st)
{
    const char *ip = "127.0.0.1";         /* trusted: still refused, never relayed */
    policy_set_local_check(fake_check);
    struct verdict_out v = ask(STAGE_RCPT, ip, "", "<ghost@example.test>");
    assert_int_equal(v.status, V_REJECT);
    assert_int_equal(v.code, 550);
    assert_string_equal(v.enhanced, "5.1.1");
    v = ask(STAGE_RCPT, ip, "", "flaky@example.test");
    assert_int_equal(v.status, V_TEMPFAIL);
    assert_int_equal(v.code, 451);
    assert_string_equal(v.enhanced, "4.3.0");
    assert_int_equal(ask(STAGE_RCPT, ip, "", "user@example.test").status, V_ACCEPT);
    assert_int_equal(ask(STAGE_RCPT, ip, "", "ghost@remote.test").status, V_ACCEPT);
    policy_set_local_check(NULL);
    assert_int_equal(ask(STAGE_RCPT, ip, "", "ghost@example.test").status, V_ACCEPT);
}

/* TESTING.md item 12: no relay through sender-specified routing. */
static void test_routing_tricks(void **st)
{
    const char *ip = "198.51.100.7";
    assert_relay_denied(ask(STAGE_RCPT, ip, "", "user%remote.test@example.test"));
    assert_relay_denied(ask(STAGE_RCPT, ip, "", "remote.test!user@example.test"));
    assert_relay_denied(ask(STAGE_RCPT, ip, "", "user@remote.test@example.test"));
    assert_relay_denied(ask(STAGE_RCPT, ip, "", "\"user%remote.test\"@example.test"));
    /* trusted clients may (the relay decision is theirs) */
    assert_int_equal(ask(STAGE_RCPT, "127.0.0.1", "", "user%remote.test@example.test").status,
                     V_ACCEPT);
}

static void test_trusted_relay(void **st)
{
    assert_int_equal(ask(STAGE_RCPT, "127.0.0.1", "", "x@remote.test").status, V_ACCEPT);
    assert_int_equal(ask(STAGE_RCPT, "10.1.255.3", "", "x@remote.test").status, V_ACCEPT);
    assert_int_equal(ask(STAGE_RCPT, "::1", "", "x@remote.test").status, V_ACCEPT);
    assert_int_equal(ask(STAGE_RCPT, "2001:db8:1::5", "", "x@remote.test").status, V_ACCEPT);
    assert_int_equal(ask(STAGE_RCPT, "::ffff:10.1.2.3", "", "x@remote.test").status, V_ACCEPT);
    assert_int_equal(ask(STAGE_RCPT, "[::1]", "", "x@remote.test").status, V_ACCEPT);
    assert_int_equal(ask(STAGE_RCPT, "IPv6:::1", "", "x@remote.test").status, V_ACCEPT);
    assert_int_equal(ask(STAGE_RCPT, "198.51.100.7", "alice", "x@remote.test").status, V_ACCEPT);
}

static void test_other_stages_next(void **st)
{
    for (int s = 0; s < STAGE__COUNT; s++) {
        if (s == STAGE_RCPT)
            continue;
        struct verdict_out v = ask((enum stage)s, "198.51.100.7", "", "x@remote.test");
        assert_int_equal(v.status, V_NEXT);
        assert_int_equal(v.code, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_local_accepted),
        cmocka_unit_test(test_postmaster),
        cmocka_unit_test(test_relay_denied),
        cmocka_unit_test(test_unknown_local_user),
        cmocka_unit_test(test_routing_tricks),
        cmocka_unit_test(test_trusted_relay),
        cmocka_unit_test(test_other_stages_next),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
