/*
 * test_workq.c - worker threads with completions in the loop (lib/util/workq.c):
 * every job done once, cancelled jobs skipped but handed back, drain and
 * non-drain shutdown, jobs kept by run() and completed by another.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <cmocka.h>
#include <event2/event.h>

#include "util/buf.h"
#include "util/workq.h"

struct job {
    struct workq_item item;
    int ran, done, cancelled_seen;
};

static int ndone;

static void *t_start(void *arg)
{
    return xcalloc(1, sizeof(int));
}

static void t_end(void *ts, void *arg)
{
    free(ts);
}

static int j_run(struct workq_item *it, void *ts, void *arg)
{
    ((struct job *)it)->ran++;
    ++*(int *)ts;
    usleep(1000);
    return WORKQ_DONE;
}

static void j_done(struct workq_item *it, void *arg)
{
    struct job *j = (struct job *)it;
    j->done++;
    j->cancelled_seen = it->wq_cancelled;
    ndone++;
}

static const struct workq_ops ops = {
    .thread_start = t_start, .thread_end = t_end, .run = j_run, .done = j_done,
};

static void loop_until(struct event_base *base, int want)
{
    for (int i = 0; i < 500 && ndone < want; i++) {
        struct timeval tv = { 0, 5000 };
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
}

static void test_all_done_once(void **st)
{
    struct event_base *base = event_base_new();
    struct workq *q = workq_new(base, 3, &ops, NULL);
    struct job jobs[20] = { 0 };
    ndone = 0;
    for (int i = 0; i < 20; i++)
        workq_submit(q, &jobs[i].item);
    loop_until(base, 20);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(jobs[i].ran, 1);
        assert_int_equal(jobs[i].done, 1);
        assert_int_equal(jobs[i].cancelled_seen, 0);
    }
    workq_free(q, 1);
    event_base_free(base);
}

static void test_cancel_and_shutdown(void **st)
{
    struct event_base *base = event_base_new();
    struct workq *q = workq_new(base, 1, &ops, NULL);
    struct job jobs[50] = { 0 };
    ndone = 0;
    for (int i = 0; i < 50; i++)
        workq_submit(q, &jobs[i].item);
    workq_cancel(q, &jobs[49].item);
    workq_free(q, 0);         /* most never ran: handed back cancelled */
    assert_int_equal(ndone, 50);
    assert_int_equal(jobs[49].ran, 0);
    assert_int_equal(jobs[49].cancelled_seen, 1);
    int ran = 0;
    for (int i = 0; i < 50; i++) {
        assert_int_equal(jobs[i].done, 1);
        ran += jobs[i].ran;
        assert_true(jobs[i].cancelled_seen || jobs[i].ran);
    }
    assert_true(ran < 50);
    event_base_free(base);
}

static void test_drain(void **st)
{
    struct event_base *base = event_base_new();
    struct workq *q = workq_new(base, 2, &ops, NULL);
    struct job jobs[30] = { 0 };
    ndone = 0;
    for (int i = 0; i < 30; i++)
        workq_submit(q, &jobs[i].item);
    workq_free(q, 1);         /* every queued job runs, then is handed back */
    assert_int_equal(ndone, 30);
    for (int i = 0; i < 30; i++) {
        assert_int_equal(jobs[i].ran, 1);
        assert_int_equal(jobs[i].done, 1);
    }
    event_base_free(base);
}

/* run() keeps even jobs; the next (odd) job completes the kept one, as a
 * group-commit leader completes its followers. */
static struct workq *kq;
static struct workq_item *kept;

static int k_run(struct workq_item *it, void *ts, void *arg)
{
    struct job *j = (struct job *)it;
    j->ran++;
    if (kept == NULL) {
        kept = it;
        return WORKQ_KEPT;
    }
    workq_complete(kq, kept);
    kept = NULL;
    return WORKQ_DONE;
}

static const struct workq_ops kops = { .run = k_run, .done = j_done };

static void test_kept_then_completed(void **st)
{
    struct event_base *base = event_base_new();
    kq = workq_new(base, 1, &kops, NULL);
    struct job jobs[10] = { 0 };
    ndone = 0;
    for (int i = 0; i < 10; i++)
        workq_submit(kq, &jobs[i].item);
    loop_until(base, 10);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(jobs[i].ran, 1);
        assert_int_equal(jobs[i].done, 1);
        assert_int_equal(jobs[i].cancelled_seen, 0);
    }
    workq_free(kq, 1);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_done_once),
        cmocka_unit_test(test_cancel_and_shutdown),
        cmocka_unit_test(test_drain),
        cmocka_unit_test(test_kept_then_completed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
