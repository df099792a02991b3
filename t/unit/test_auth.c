/*
 * test_auth.c - the auth.users table, password checks and the worker pool
 * (lib/mail/auth.c), with hashes made here by libcrypt (sha512-crypt, yescrypt,
 * bcrypt).
 */
#include <crypt.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <event2/event.h>

#include "mail/auth.h"
#include "util/buf.h"

static char *hash_of(const char *prefix, unsigned long cost, const char *pw)
{
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data cd;
    memset(&cd, 0, sizeof(cd));
    assert_non_null(crypt_gensalt_rn(prefix, cost, NULL, 0, setting, sizeof(setting)));
    assert_non_null(crypt_rn(pw, setting, &cd, (int)sizeof(cd)));
    return xstrdup(cd.output);
}

static char path[64];

static void write_file(const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **st)
{
    (void)st;
    str_copy(path, sizeof(path), "/tmp/postern-test-users-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    unlink(path);
    return 0;
}

static void test_users_file(void **st)
{
    (void)st;
    char *h6 = hash_of("$6$", 0, "six"), *hy = hash_of("$y$", 0, "why"),
         *hb = hash_of("$2b$", 4, "bee");
    buf_t t;
    buf_init(&t, 512);
    buf_printf(&t, "# comment\n\n  \nsix:%s\r\nwhy:%s:1000:extra\nbee:%s\nbad line\n"
               ":nouser\nempty:\nsix:%s\n", h6, hy, hb, hb);
    write_file(t.data);
    buf_t err;
    buf_init(&err, 64);
    struct auth_users *u = auth_users_load(path, &err);
    assert_non_null(u);
    assert_int_equal(auth_users_count(u), 3);
    assert_string_equal(auth_users_hash(u, "six"), h6);     /* first line wins */
    assert_string_equal(auth_users_hash(u, "why"), hy);
    assert_string_equal(auth_users_hash(u, "bee"), hb);
    assert_null(auth_users_hash(u, "SIX"));
    assert_null(auth_users_hash(u, "empty"));
    assert_true(auth_check(auth_users_hash(u, "six"), "six", 3));
    assert_true(auth_check(auth_users_hash(u, "why"), "why", 3));
    assert_true(auth_check(auth_users_hash(u, "bee"), "bee", 3));
    assert_false(auth_check(auth_users_hash(u, "bee"), "bea", 3));
    assert_false(auth_check(auth_users_hash(u, "six"), "si", 2));
    assert_false(auth_check(auth_users_hash(u, "six"), "six\0x", 5));   /* NUL inside */
    assert_false(auth_check(NULL, "six", 3));                          /* unknown user */
    assert_false(auth_check("*", "", 0));
    /* unchanged: no re-read; changed: re-read */
    assert_int_equal(auth_users_refresh(&u), 0);
    buf_printf(&t, "new:%s\n", h6);
    usleep(10000);
    write_file(t.data);
    assert_int_equal(auth_users_refresh(&u), 1);
    assert_string_equal(auth_users_hash(u, "new"), h6);
    /* unreadable now: the old table stays */
    unlink(path);
    assert_int_equal(auth_users_refresh(&u), -1);
    assert_non_null(auth_users_hash(u, "new"));
    auth_users_free(u);
    assert_null(auth_users_load(path, &err));
    assert_non_null(strstr(err.data, path));
    buf_free(&err);
    buf_free(&t);
    free(h6);
    free(hy);
    free(hb);
}

/* A domain's users file: recipients without a hash are no logins, names
 * are kept in lower case without their domain, other domains' lines are
 * ignored; a re-read keeps the domain. */
static void test_domain_users_file(void **st)
{
    (void)st;
    char *h6 = hash_of("$6$", 0, "six"), *hy = hash_of("$y$", 0, "why");
    buf_t t;
    buf_init(&t, 512);
    buf_printf(&t, "# tenant\nrcpt\nblank:\nAlice:%s\nbob@T.Example:%s\n"
               "carol@other.example:%s\n@t.example:%s\n", h6, hy, h6, h6);
    write_file(t.data);
    buf_t err;
    buf_init(&err, 64);
    struct auth_users *u = auth_users_load_domain(path, "t.example", &err);
    assert_non_null(u);
    assert_string_equal(auth_users_domain(u), "t.example");
    assert_int_equal(auth_users_count(u), 2);
    assert_string_equal(auth_users_hash(u, "alice"), h6);
    assert_string_equal(auth_users_hash(u, "bob"), hy);
    assert_null(auth_users_hash(u, "Alice"));     /* callers look up in lower case */
    assert_null(auth_users_hash(u, "rcpt"));
    assert_null(auth_users_hash(u, "blank"));
    assert_null(auth_users_hash(u, "carol"));
    assert_null(auth_users_hash(u, "carol@other.example"));
    assert_null(auth_users_hash(u, ""));
    usleep(10000);
    buf_printf(&t, "Dan@t.example:%s\n", hy);
    write_file(t.data);
    assert_int_equal(auth_users_refresh(&u), 1);
    assert_string_equal(auth_users_domain(u), "t.example");
    assert_string_equal(auth_users_hash(u, "dan"), hy);
    auth_users_free(u);
    /* the plain auth.users reading of the same file: names as written */
    u = auth_users_load(path, &err);
    assert_non_null(u);
    assert_null(auth_users_domain(u));
    assert_string_equal(auth_users_hash(u, "Alice"), h6);
    assert_string_equal(auth_users_hash(u, "bob@T.Example"), hy);
    auth_users_free(u);
    buf_free(&err);
    buf_free(&t);
    free(h6);
    free(hy);
}

static void on_done(void *arg, int ok)
{
    int *slot = arg;
    *slot = ok ? 1 : 2;
}

static void test_pool(void **st)
{
    (void)st;
    char *h = hash_of("$y$", 0, "secret");
    struct event_base *base = event_base_new();
    struct auth_pool *p = auth_pool_new(base, 2);
    int slots[4] = { 0, 0, 0, 0 };
    auth_pool_submit(p, h, "secret", 6, on_done, &slots[0]);
    struct auth_job *j = auth_pool_submit(p, h, "secret", 6, on_done, &slots[1]);
    auth_pool_submit(p, h, "wrong", 5, on_done, &slots[2]);
    auth_pool_submit(p, NULL, "secret", 6, on_done, &slots[3]);
    auth_job_cancel(j);
    for (int i = 0; i < 400 && !(slots[0] && slots[2] && slots[3]); i++) {
        struct timeval tv = { 0, 10000 };
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    assert_int_equal(slots[0], 1);
    assert_int_equal(slots[1], 0);         /* cancelled: never called */
    assert_int_equal(slots[2], 2);
    assert_int_equal(slots[3], 2);
    auth_pool_free(p);
    event_base_free(base);
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_users_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_domain_users_file, setup, teardown),
        cmocka_unit_test(test_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
