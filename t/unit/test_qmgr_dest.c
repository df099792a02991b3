/*
 * test_qmgr_dest.c - qmgr's destination queues (qmgr/qmgr_dest.c, compiled
 * in: it lives in the process folder): a destination just returned by
 * qmgr_dest_get survives the next get that walks its hash chain (a message
 * with a local and a remote recipient lost both when the relayhost's name
 * hashed into the local destination's bucket; with delivery.rate, one kept
 * idle for its rate gap was freed the same way), push/pop/done keep the
 * waiting list and the table in step, and a rate gap keeps an idle
 * destination until the sweep after it has passed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "../../qmgr/qmgr_dest.c"

/* A relayhost name of pool smtp in the same bucket as pool local's "". */
static void colliding_name(char *out, size_t size)
{
    unsigned want = dest_hash(QPOOL_LOCAL, "");
    for (int port = 1024; port < 65536; port++) {
        snprintf(out, size, "[127.0.0.1]:%d", port);
        if (dest_hash(QPOOL_SMTP, out) == want)
            return;
    }
    fail_msg("no colliding port");
}

static void test_get_keeps_unpushed(void **st)
{
    char name[64];
    colliding_name(name, sizeof(name));
    struct qdest *remote = qmgr_dest_get(QPOOL_SMTP, name, 20, 0);
    struct qdest *local = qmgr_dest_get(QPOOL_LOCAL, "", 1 << 30, 0);
    /* the first is still there, and is not the second */
    assert_ptr_not_equal(remote, local);
    assert_ptr_equal(qmgr_dest_find(QPOOL_SMTP, name), remote);
    assert_ptr_equal(qmgr_dest_find(QPOOL_LOCAL, ""), local);
    assert_ptr_equal(qmgr_dest_get(QPOOL_SMTP, name, 20, 0), remote);

    /* each pool sees its own job */
    struct qjob jr = { 0 }, jl = { 0 };
    qmgr_dest_push(remote, &jr);
    qmgr_dest_push(local, &jl);
    assert_int_equal(qmgr_dest_nwaiting(QPOOL_SMTP), 1);
    assert_int_equal(qmgr_dest_nwaiting(QPOOL_LOCAL), 1);
    assert_ptr_equal(qmgr_dest_waiting(QPOOL_SMTP), remote);
    assert_ptr_equal(qmgr_dest_waiting(QPOOL_LOCAL), local);

    int64_t now = clock_now_ms();
    assert_ptr_equal(qmgr_dest_pop(remote, now), &jr);
    assert_ptr_equal(qmgr_dest_pop(local, now), &jl);
    assert_int_equal(qmgr_dest_nwaiting(QPOOL_SMTP), 0);
    assert_int_equal(qmgr_dest_nwaiting(QPOOL_LOCAL), 0);
    assert_int_equal(remote->busy, 1);

    /* done and idle: freed */
    qmgr_dest_done(remote);
    qmgr_dest_done(local);
    assert_null(qmgr_dest_find(QPOOL_SMTP, name));
    assert_null(qmgr_dest_find(QPOOL_LOCAL, ""));
}

static void test_rate_gap_kept(void **st)
{
    struct qdest *d = qmgr_dest_get(QPOOL_SMTP, "slow.example", 20, 50);
    struct qjob j1 = { 0 }, j2 = { 0 };
    qmgr_dest_push(d, &j1);
    qmgr_dest_push(d, &j2);
    int64_t now = clock_now_ms();
    assert_true(qmgr_dest_open(d, now));
    assert_ptr_equal(qmgr_dest_pop(d, now), &j1);
    assert_false(qmgr_dest_open(d, now));          /* the gap runs */
    qmgr_dest_done(d);
    assert_ptr_equal(qmgr_dest_find(QPOOL_SMTP, "slow.example"), d);
    assert_ptr_equal(qmgr_dest_pop(d, now), &j2);
    qmgr_dest_done(d);
    /* idle, but the gap holds across messages: still known */
    assert_ptr_equal(qmgr_dest_find(QPOOL_SMTP, "slow.example"), d);
    struct timespec ts = { 0, 120 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    /* the gap has passed: the next message has recipients there and at a
     * destination in the same bucket; both gets come before any push */
    unsigned b = dest_hash(QPOOL_SMTP, "slow.example");
    char other[64];
    for (int i = 0;; i++) {
        snprintf(other, sizeof(other), "o%d.example", i);
        if (dest_hash(QPOOL_SMTP, other) == b)
            break;
    }
    assert_ptr_equal(qmgr_dest_get(QPOOL_SMTP, "slow.example", 20, 50), d);
    struct qdest *o = qmgr_dest_get(QPOOL_SMTP, other, 20, 50);
    assert_ptr_not_equal(o, d);
    assert_ptr_equal(qmgr_dest_find(QPOOL_SMTP, "slow.example"), d);
    struct qjob j3 = { 0 }, j4 = { 0 };
    qmgr_dest_push(d, &j3);
    qmgr_dest_push(o, &j4);
    assert_int_equal(qmgr_dest_nwaiting(QPOOL_SMTP), 2);
    int64_t now2 = clock_now_ms();
    assert_ptr_equal(qmgr_dest_pop(d, now2), &j3);
    assert_ptr_equal(qmgr_dest_pop(o, now2), &j4);
    qmgr_dest_done(d);
    qmgr_dest_done(o);
    /* kept for their gaps; a sweep before the gaps pass keeps them */
    qmgr_dest_sweep();
    assert_ptr_equal(qmgr_dest_find(QPOOL_SMTP, "slow.example"), d);
    assert_ptr_equal(qmgr_dest_find(QPOOL_SMTP, other), o);
    nanosleep(&ts, NULL);
    qmgr_dest_sweep();
    assert_null(qmgr_dest_find(QPOOL_SMTP, "slow.example"));
    assert_null(qmgr_dest_find(QPOOL_SMTP, other));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        { "get keeps a destination not yet pushed", test_get_keeps_unpushed, NULL, NULL, NULL },
        { "rate gap keeps an idle destination", test_rate_gap_kept, NULL, NULL, NULL },
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
