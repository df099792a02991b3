/*
 * test_spool.c - queue id generation and validation (lib/spool.c).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "buf.h"
#include "spool.h"

#define PER_THREAD 50000
#define NTHREADS   4

typedef char qid_t[QUEUE_ID_MAX];

static int qid_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void assert_all_unique(qid_t *ids, size_t n)
{
    qsort(ids, n, sizeof(qid_t), qid_cmp);
    for (size_t i = 1; i < n; i++)
        if (strcmp(ids[i - 1], ids[i]) == 0)
            fail_msg("duplicate queue id %s", ids[i]);
}

static void test_ids_unique_valid(void **state)
{
    (void)state;
    size_t n = 100000;
    qid_t *ids = xcalloc(n, sizeof(qid_t));
    for (size_t i = 0; i < n; i++) {
        queue_id_new(ids[i], sizeof(ids[i]));
        assert_true(queue_id_valid(ids[i]));
        assert_int_equal(strlen(ids[i]), 18);
    }
    assert_all_unique(ids, n);
    free(ids);
}

static void *gen_thread(void *arg)
{
    qid_t *ids = arg;
    for (int i = 0; i < PER_THREAD; i++)
        queue_id_new(ids[i], sizeof(ids[i]));
    return NULL;
}

static void test_ids_unique_threads(void **state)
{
    (void)state;
    qid_t *ids = xcalloc(PER_THREAD * NTHREADS, sizeof(qid_t));
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, gen_thread, ids + i * PER_THREAD), 0);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    for (size_t i = 0; i < PER_THREAD * NTHREADS; i++)
        assert_true(queue_id_valid(ids[i]));
    assert_all_unique(ids, PER_THREAD * NTHREADS);
    free(ids);
}

static void test_ids_sort_by_time(void **state)
{
    (void)state;
    char a[QUEUE_ID_MAX], b[QUEUE_ID_MAX];
    queue_id_new(a, sizeof(a));
    struct timespec ts = { 0, 2000000 };
    nanosleep(&ts, NULL);
    queue_id_new(b, sizeof(b));
    assert_true(strcmp(a, b) < 0);
    /* a short destination gets a truncated, still NUL-terminated id */
    char s[5];
    queue_id_new(s, sizeof(s));
    assert_int_equal(strlen(s), 4);
}

static void test_id_valid(void **state)
{
    (void)state;
    assert_true(queue_id_valid("A"));
    assert_true(queue_id_valid("0123456789ABCDEFGHIJKLMNOPQRSTU"));   /* 31 chars */
    assert_false(queue_id_valid("0123456789ABCDEFGHIJKLMNOPQRSTUV")); /* 32 chars */
    assert_false(queue_id_valid(""));
    assert_false(queue_id_valid("abc"));
    assert_false(queue_id_valid("AB/C"));
    assert_false(queue_id_valid("../X"));
    assert_false(queue_id_valid("AB C"));
    assert_false(queue_id_valid("AB\nC"));
    assert_false(queue_id_valid("AB.C"));
    assert_false(queue_id_valid("\xc3\x89"));
}

static void test_spool_dirs(void **state)
{
    (void)state;
    int n = 0, tmp = 0;
    for (const char *const *d = spool_dirs; *d; d++, n++) {
        assert_null(strchr(*d, '/'));
        if (strcmp(*d, SPOOL_TMP) == 0)
            tmp = 1;
    }
    assert_int_equal(n, 10);
    assert_true(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids_unique_valid),
        cmocka_unit_test(test_ids_unique_threads),
        cmocka_unit_test(test_ids_sort_by_time),
        cmocka_unit_test(test_id_valid),
        cmocka_unit_test(test_spool_dirs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
