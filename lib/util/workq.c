/*
 * workq.c - worker threads with completions through an eventfd (see
 * workq.h). Used by filter_eval.c, auth.c and cleanup_commit.c.
 * Must never hold its lock while a job runs or while done() runs: jobs
 * block (fsync, crypt, services) and done() may submit again. The eventfd
 * is written under the completion lock and read before the list is taken,
 * so a push onto a non-empty list always finds a wake-up still to come.
 */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>

#include <event2/event.h>

#include "util/buf.h"
#include "util/log.h"
#include "util/workq.h"

struct wlist { struct workq_item *head, *tail; };

struct workq_done {
    pthread_mutex_t mu;
    struct wlist list;
    int efd;
    struct event *ev;
    void (*done)(struct workq_item *it, void *arg);
    void *arg;
};

struct workq {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct wlist todo;
    int stop, drain;
    const struct workq_ops *ops;
    void *arg;
    pthread_t *th;
    int nth;
    struct workq_done *dq;
};

static void wl_push(struct wlist *l, struct workq_item *it)
{
    it->wq_next = NULL;
    if (l->tail)
        l->tail->wq_next = it;
    else
        l->head = it;
    l->tail = it;
}

static struct workq_item *wl_pop(struct wlist *l)
{
    struct workq_item *it = l->head;
    if (it) {
        l->head = it->wq_next;
        if (l->head == NULL)
            l->tail = NULL;
        it->wq_next = NULL;
    }
    return it;
}

/* ---- completions ------------------------------------------------------------ */

static void on_efd(evutil_socket_t fd, short what, void *arg)
{
    workq_done_run(arg);
}

struct workq_done *workq_done_new(struct event_base *base,
                                  void (*done)(struct workq_item *it, void *arg), void *arg)
{
    struct workq_done *d = xcalloc(1, sizeof(*d));
    pthread_mutex_init(&d->mu, NULL);
    d->done = done;
    d->arg = arg;
    d->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (d->efd < 0)
        log_fatal("eventfd: %m");
    d->ev = event_new(base, d->efd, EV_READ | EV_PERSIST, on_efd, d);
    if (d->ev == NULL || event_add(d->ev, NULL) < 0)
        log_fatal("workq: cannot watch its eventfd");
    return d;
}

void workq_done_post(struct workq_done *d, struct workq_item *it)
{
    pthread_mutex_lock(&d->mu);
    int wake = d->list.head == NULL;   /* else the loop has yet to take the list */
    wl_push(&d->list, it);
    if (wake) {
        uint64_t one = 1;
        ssize_t w = write(d->efd, &one, sizeof(one));
        (void)w;   /* EAGAIN: the counter is already non-zero, the loop will look */
    }
    pthread_mutex_unlock(&d->mu);
}

void workq_done_run(struct workq_done *d)
{
    uint64_t n;
    ssize_t r = read(d->efd, &n, sizeof(n));
    (void)r;
    pthread_mutex_lock(&d->mu);
    struct workq_item *it = d->list.head;
    d->list.head = d->list.tail = NULL;
    pthread_mutex_unlock(&d->mu);
    while (it) {
        struct workq_item *next = it->wq_next;
        it->wq_next = NULL;
        d->done(it, d->arg);
        it = next;
    }
}

void workq_done_free(struct workq_done *d)
{
    if (d == NULL)
        return;
    for (struct workq_item *it = d->list.head; it; it = it->wq_next)
        it->wq_cancelled = 1;
    workq_done_run(d);
    event_free(d->ev);
    close(d->efd);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

/* ---- the pool ---------------------------------------------------------------- */

static void *worker_main(void *arg)
{
    struct workq *q = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    void *ts = q->ops->thread_start ? q->ops->thread_start(q->arg) : NULL;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (q->todo.head == NULL && !q->stop)
            pthread_cond_wait(&q->cv, &q->mu);
        if (q->stop && (!q->drain || q->todo.head == NULL))
            break;
        struct workq_item *it = wl_pop(&q->todo);
        int skip = it->wq_cancelled;
        pthread_mutex_unlock(&q->mu);
        if (skip || q->ops->run(it, ts, q->arg) == WORKQ_DONE)
            workq_done_post(q->dq, it);
        pthread_mutex_lock(&q->mu);
    }
    pthread_mutex_unlock(&q->mu);
    if (q->ops->thread_end)
        q->ops->thread_end(ts, q->arg);
    return NULL;
}

static void pool_done(struct workq_item *it, void *arg)
{
    struct workq *q = arg;
    q->ops->done(it, q->arg);
}

struct workq *workq_new(struct event_base *base, int nthreads, const struct workq_ops *ops,
                        void *arg)
{
    struct workq *q = xcalloc(1, sizeof(*q));
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    q->ops = ops;
    q->arg = arg;
    q->dq = workq_done_new(base, pool_done, q);
    q->nth = nthreads < 1 ? 1 : nthreads;
    q->th = xcalloc((size_t)q->nth, sizeof(*q->th));
    for (int i = 0; i < q->nth; i++) {
        int e = pthread_create(&q->th[i], NULL, worker_main, q);
        if (e)
            log_fatal("pthread_create: %s", strerror(e));
    }
    return q;
}

void workq_submit(struct workq *q, struct workq_item *it)
{
    it->wq_cancelled = 0;
    pthread_mutex_lock(&q->mu);
    wl_push(&q->todo, it);
    pthread_mutex_unlock(&q->mu);
    /* after the unlock: the woken worker does not then block on the mutex
     * we still hold (a futex wait and wake fewer per job); it re-checks
     * the list under the lock, so a wake-up is never lost */
    pthread_cond_signal(&q->cv);
}

void workq_cancel(struct workq *q, struct workq_item *it)
{
    /* only the loop thread hands jobs back: a flag will do; a worker reads
     * it under the lock before it starts */
    pthread_mutex_lock(&q->mu);
    it->wq_cancelled = 1;
    pthread_mutex_unlock(&q->mu);
}

void workq_complete(struct workq *q, struct workq_item *it)
{
    workq_done_post(q->dq, it);
}

void workq_free(struct workq *q, int drain)
{
    if (q == NULL)
        return;
    pthread_mutex_lock(&q->mu);
    q->stop = 1;
    q->drain = drain;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    for (int i = 0; i < q->nth; i++)
        pthread_join(q->th[i], NULL);
    for (struct workq_item *it; (it = wl_pop(&q->todo)) != NULL;)
        workq_done_post(q->dq, it);
    workq_done_free(q->dq);       /* everything left: handed back cancelled */
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    free(q->th);
    free(q);
}
