/*
 * workq.h - worker threads whose finished jobs come back to the event loop.
 *
 * Used by filter (rule evaluations), smtpd through auth.c (password hashes)
 * and cleanup (queue-file commits). A job embeds struct workq_item; run()
 * executes in a worker thread, done() later in the loop thread, woken
 * through an eventfd (written only when the completion list was empty), so
 * the caller's bookkeeping needs no locks. A run() may keep its job for a
 * later workq_complete() from any worker (cleanup's group commit completes
 * a whole batch from its leader). The completion half (struct workq_done)
 * is usable alone.
 *
 * Must never: call done() outside the loop thread, run a job that was
 * cancelled before a worker took it, or let a worker see a signal (they
 * are all blocked in the workers; the loop thread handles them).
 */
#ifndef POSTERN_WORKQ_H
#define POSTERN_WORKQ_H

struct event_base;
struct workq;
struct workq_done;

/* Embed in a job (container_of style, or as the first member). */
struct workq_item {
    struct workq_item *wq_next;
    int wq_cancelled;           /* read it in done(): cancelled (run skipped if it had
                                 * not started) or handed back by workq_free: the
                                 * requester is not to be told */
};

/* What run() returns. WORKQ_HANDED: run() passed the job on to another
 * queue's completion (cleanup's auth job going straight to the commit):
 * this queue neither posts it nor calls done() for it. */
enum { WORKQ_DONE = 0, WORKQ_KEPT = 1, WORKQ_HANDED = 2 };

struct workq_ops {
    /* Optional per-thread state, made and freed in the worker thread. */
    void *(*thread_start)(void *arg);
    void (*thread_end)(void *tstate, void *arg);
    /* Worker thread: the job's work. Touches only the job and tstate.
     * WORKQ_DONE: hand it back now; WORKQ_KEPT: workq_complete() follows. */
    int  (*run)(struct workq_item *it, void *tstate, void *arg);
    /* Loop thread: called once per submitted job, also cancelled ones
     * (not for one run() returned WORKQ_HANDED). */
    void (*done)(struct workq_item *it, void *arg);
};

struct workq *workq_new(struct event_base *base, int nthreads, const struct workq_ops *ops,
                        void *arg);
void workq_submit(struct workq *q, struct workq_item *it);       /* loop thread */
/* The requester went away: run is skipped if it has not started; done
 * still comes (wq_cancelled = 1) so the job can be freed. */
void workq_cancel(struct workq *q, struct workq_item *it);
/* Any worker thread: a job its run() kept is finished. */
void workq_complete(struct workq *q, struct workq_item *it);
/* Stop and join the workers (drain = 1: they run every queued job first),
 * then hand back every job not delivered yet, wq_cancelled = 1. Jobs kept
 * by run() must have been completed by then. */
void workq_free(struct workq *q, int drain);

/* ---- completions only ---------------------------------------------------- */
struct workq_done *workq_done_new(struct event_base *base,
                                  void (*done)(struct workq_item *it, void *arg), void *arg);
/* Any thread: queue it for done() in the loop (FIFO) and wake the loop. */
void workq_done_post(struct workq_done *d, struct workq_item *it);
/* Loop thread: deliver what is queued now (also used at shutdown). */
void workq_done_run(struct workq_done *d);
/* Loop thread: cancel everything queued, deliver it, free. */
void workq_done_free(struct workq_done *d);

#endif
