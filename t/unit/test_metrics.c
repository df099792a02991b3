/*
 * test_metrics.c - lib/metrics: counting and metrics_take (the child side),
 * master's merge (counters add, gauges per source, histograms), malformed
 * reports refused, label cleaning, and the Prometheus text rendering; plus
 * queue_id_time (the queue gauges' age).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "metrics/metrics.h"
#include "mail/spool.h"

static int has(const buf_t *b, const char *line)
{
    return strstr(b->data, line) != NULL;
}

static void take(buf_t *b)
{
    buf_reset(b);
    metrics_take(b);
}

static void test_take_and_merge(void **state)
{
    buf_t b, out;
    buf_init(&b, 256);
    buf_init(&out, 4096);
    take(&b);                                      /* start from nothing */
    metric_add(MET_MSG_ACCEPTED, 2, "smtp", NULL);
    metric_add(MET_MSG_ACCEPTED, 1, "smtp", NULL);
    metric_add(MET_MSG_REJECTED, 1, "rcpt", "5.7.1");
    metric_gauge(MET_SMTPD_SESSIONS_ACTIVE, 3, "smtp", NULL);
    metric_observe(MET_FILTER_DURATION, 3000, "mail", NULL);      /* 3 ms */
    metric_observe(MET_FILTER_DURATION, 400000000, "mail", NULL); /* 400 s: +Inf */
    metric_error("boom\tx");
    take(&b);
    assert_true(has(&b, "C\tpostern_messages_accepted_total\tsmtp\t\t3\n"));
    assert_true(has(&b, "G\tpostern_smtpd_sessions_active\tsmtp\t\t3\n"));
    assert_true(has(&b, "\tboom?x\n"));           /* no tab inside a field */
    struct mstore *s = mstore_new(100);
    assert_int_equal(mstore_merge(s, 1, b.data, b.len, NULL, NULL), 0);
    assert_int_equal(mstore_merge(s, 2, b.data, b.len, NULL, NULL), 0);   /* a second child */
    take(&b);
    assert_int_equal(b.len, 0);                   /* counters were reset: nothing new */
    mstore_render(s, &out);
    assert_true(has(&out, "# TYPE postern_messages_accepted_total counter\n"));
    assert_true(has(&out, "postern_messages_accepted_total{listener=\"smtp\"} 6\n"));
    assert_true(has(&out, "postern_messages_rejected_total{stage=\"rcpt\",reason=\"5.7.1\"} 2\n"));
    assert_true(has(&out, "postern_smtpd_sessions_active{listener=\"smtp\"} 6\n"));
    assert_true(has(&out, "postern_filter_seconds_bucket{stage=\"mail\",le=\"0.001\"} 0\n"));
    assert_true(has(&out, "postern_filter_seconds_bucket{stage=\"mail\",le=\"0.005\"} 2\n"));
    assert_true(has(&out, "postern_filter_seconds_bucket{stage=\"mail\",le=\"300\"} 2\n"));
    assert_true(has(&out, "postern_filter_seconds_bucket{stage=\"mail\",le=\"+Inf\"} 4\n"));
    assert_true(has(&out, "postern_filter_seconds_count{stage=\"mail\"} 4\n"));
    /* a child died: its gauge no longer counts */
    mstore_drop_src(s, 2);
    buf_reset(&out);
    mstore_render(s, &out);
    assert_true(has(&out, "postern_smtpd_sessions_active{listener=\"smtp\"} 3\n"));
    mstore_free(s);
    buf_free(&b);
    buf_free(&out);
}

static void test_bad_reports(void **state)
{
    struct mstore *s = mstore_new(10);
    static const char *const bad[] = {
        "C\tpostern_messages_accepted_total\tsmtp\t\tx\n",      /* not a number */
        "G\tpostern_messages_accepted_total\tsmtp\t\t1\n",      /* wrong kind */
        "C\tpostern_messages_accepted_total\n",                 /* too short */
        "C\tpostern_messages_accepted_total\tsmtp\t\t1",        /* no newline */
        "H\tpostern_filter_seconds\tmail\t\t1\t1\t1\n",         /* buckets missing */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(mstore_merge(s, 0, bad[i], strlen(bad[i]), NULL, NULL), -1);
    static const char nul[] = "C\tpostern_messages_accepted_total\ts\0mtp\t\t1\n";
    assert_int_equal(mstore_merge(s, 0, nul, sizeof(nul) - 1, NULL, NULL), -1);
    /* a metric this build does not know: skipped, the rest merged */
    const char *newer = "C\tpostern_future_total\ta\t\t1\nC\tpostern_log_errors_total\tqmgr\t\t2\n";
    assert_int_equal(mstore_merge(s, 0, newer, strlen(newer), NULL, NULL), 0);
    /* quotes and backslashes in a label are escaped in the output */
    const char *q = "C\tpostern_rule_rejections_total\tmail\ta \"b\" \\c\t1\n";
    assert_int_equal(mstore_merge(s, 0, q, strlen(q), NULL, NULL), 0);
    buf_t out;
    buf_init(&out, 1024);
    mstore_render(s, &out);
    assert_true(has(&out, "postern_log_errors_total{process=\"qmgr\"} 2\n"));
    assert_true(has(&out, "postern_rule_rejections_total{stage=\"mail\",rule=\"a \\\"b\\\" \\\\c\"} 1\n"));
    buf_free(&out);
    mstore_free(s);
}

static void test_table_bounded(void **state)
{
    struct mstore *s = mstore_new(8);
    char line[128];
    for (int i = 0; i < 1000; i++) {
        snprintf(line, sizeof(line), "C\tpostern_log_errors_total\tp%d\t\t1\n", i);
        assert_int_equal(mstore_merge(s, 0, line, strlen(line), NULL, NULL), 0);
    }
    buf_t out;
    buf_init(&out, 1024);
    mstore_render(s, &out);
    int n = 0;
    for (const char *p = out.data; (p = strstr(p, "postern_log_errors_total{")); p++)
        n++;
    assert_true(n > 0 && n < 64);                  /* full: the rest dropped, not grown */
    buf_free(&out);
    mstore_free(s);
}

static void test_queue_id_time(void **state)
{
    char id[QUEUE_ID_MAX];
    time_t before = time(NULL);
    queue_id_new(id, sizeof(id));
    int64_t t = queue_id_time(id);
    assert_true(t >= before && t <= time(NULL));
    assert_int_equal(queue_id_time("ABC"), 0);
    assert_int_equal(queue_id_time("0000000!"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_take_and_merge),
        cmocka_unit_test(test_bad_reports),
        cmocka_unit_test(test_table_bounded),
        cmocka_unit_test(test_queue_id_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
