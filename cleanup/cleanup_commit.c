/*
 * cleanup_commit.c - making queue files durable: the fsync worker pool and
 * the group commit of incoming/.
 *
 * N worker threads take finished files from the submit queue and each does
 * fsync(file), close, rename(tmp/ID -> incoming/ID) - several fsyncs run in
 * parallel, so no message waits behind a single writer. Then the entry must
 * wait for an fsync(incoming/) that STARTED after its rename. Group commit,
 * leader/follower style, with no extra thread: a worker whose rename is done
 * appends the entry to the renamed list; if no directory fsync is running it
 * becomes the leader: it takes every renamed entry so far, fsyncs incoming/
 * once for all of them, completes them, and repeats while entries were
 * renamed during its fsync (those need a fresh one). If a directory fsync is
 * already running, the worker leaves its entry to that leader (who looks
 * again before it steps down: both happen under the mutex, so no entry is
 * stranded) and goes back to the submit queue at once - followers never
 * block. A lone message thus costs loop -> worker -> loop (eventfd): no
 * committer hop.
 *
 * Only after that directory fsync is an entry complete: it goes to the
 * completion list and the event loop is woken through an eventfd (threads,
 * submit queue and completions: lib/workq.h), and only
 * then may smtpd hear "queued" and qmgr get its QMGR_WAKEUP (TESTING.md
 * item 9). A queue file reaches incoming/ only complete (END record written)
 * and fsynced, so whatever qmgr finds there by scanning - even before the
 * directory fsync - is whole; a crash before the directory fsync can only
 * lose a name whose message was never acknowledged.
 *
 * Considered and rejected: rename before fsync(file), so that one journal
 * commit covers data, inode and directory entry. It would let incoming/
 * hold a name whose content is not on disk; after a crash qmgr could find a
 * truncated or (for multi-block files on a non-journalled or data=writeback
 * filesystem) partly zero-filled file with a valid END record - a corrupt
 * message that was never acknowledged, delivered besides the client's
 * retry. It would also gain nothing on the non-journalled ext4 the
 * benchmarks run on (ext4_fsync_nojournal writes inode and directory blocks
 * separately anyway).
 *
 * Worker threads never log (the log module's queue-id slot belongs to the
 * loop) and touch only the commit fields of a transaction; errors are
 * recorded in t->cerr / t->cwhere and reported by the loop. A failed entry
 * has its file removed (tmp/ or incoming/) before it completes.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "log.h"
#include "queue.h"
#include "workq.h"

struct tq { struct cl_txn *head, *tail; };

struct cl_pool {
    struct workq *q;              /* the workers, submit queue, completions */
    pthread_mutex_t mu;           /* renamed, syncing */
    struct tq renamed;
    int syncing;                  /* a worker leads a directory fsync */
    int inflight;                 /* submitted, not yet handed back (loop thread only) */
    int dirfd;                    /* incoming/ */
    void (*done_fn)(struct cl_txn *t, void *arg);
    void *arg;
};

static struct cl_txn *txn_of(struct workq_item *it)
{
    return (struct cl_txn *)(void *)((char *)it - offsetof(struct cl_txn, witem));
}

static void tq_push(struct tq *q, struct cl_txn *t)
{
    t->cnext = NULL;
    if (q->tail)
        q->tail->cnext = t;
    else
        q->head = t;
    q->tail = t;
}

static struct cl_txn *tq_take_all(struct tq *q)
{
    struct cl_txn *h = q->head;
    q->head = q->tail = NULL;
    return h;
}

static void incoming_path(const struct cl_txn *t, char *out, size_t size)
{
    char dir[128];
    queue_dir_of(t->qname, dir, sizeof(dir));
    queue_path(out, size, dir, t->qid);
}

/* fsync a directory; 0 or errno */
static int fsync_dir(const char *path)
{
    return queue_fsync_dir(AT_FDCWD, path) < 0 ? errno : 0;
}

/* quarantine/<name>/ exists (created, and quarantine/ synced, if not): 0 or errno */
static int quarantine_dir(const struct cl_txn *t)
{
    char dir[128];
    str_format(dir, sizeof(dir), "%s/%s", SPOOL_QUARANTINE, t->qname);
    if (mkdir(dir, 0700) == 0)
        return fsync_dir(SPOOL_QUARANTINE);
    return errno == EEXIST ? 0 : errno;
}

/* Hand a chain back to the loop (workq wakes it). */
static void complete_chain(struct cl_pool *p, struct cl_txn *chain)
{
    while (chain) {
        struct cl_txn *next = chain->cnext;
        workq_complete(p->q, &chain->witem);
        chain = next;
    }
}

/* [rewrite +] fsync + close + rename one file. 0 = renamed into incoming/,
 * 1 = committed into quarantine/<name>/ (directory synced), -1 = failed
 * (cleaned up). */
static int commit_file(struct cl_txn *t)
{
    char dst[160];
    incoming_path(t, dst, sizeof(dst));
    t->cerr = 0;
    if (t->rewrite && clr_rewrite(t) < 0) {     /* data-stage mutations (cleanup_rules.c) */
        close(t->fd);
        t->fd = -1;
        unlink(t->path);
        return -1;
    }
    if (t->qname[0]) {
        int e = quarantine_dir(t);
        if (e) {
            t->cerr = e;
            t->cwhere = "mkdir quarantine";
        }
    }
    if (t->cerr == 0 && fsync(t->fd) < 0) {
        t->cerr = errno;
        t->cwhere = "fsync";
    }
    if (close(t->fd) < 0 && t->cerr == 0) {
        t->cerr = errno;
        t->cwhere = "close";
    }
    t->fd = -1;
    if (t->cerr == 0 && queue_publish(t->path, t->qname, t->qid, dst, sizeof(dst)) < 0) {
        t->cerr = errno;
        t->cwhere = "rename";
    }
    if (t->cerr) {
        unlink(t->path);
        return -1;
    }
    if (t->qname[0]) {
        /* quarantine: its own directory fsync here, no group commit */
        char dir[128];
        str_format(dir, sizeof(dir), "%s/%s", SPOOL_QUARANTINE, t->qname);
        int e = fsync_dir(dir);
        if (e) {
            unlink(dst);
            t->cerr = e;
            t->cwhere = "fsync(quarantine/)";
            return -1;
        }
        t->cbatch = 1;
        return 1;
    }
    return 0;
}

/* Group commit, called locked with t just renamed: leave t to the running
 * leader, or lead - one fsync(incoming/) per batch of renamed entries until
 * none is left. Returns locked. */
static void group_commit_locked(struct cl_pool *p, struct cl_txn *t)
{
    tq_push(&p->renamed, t);
    if (p->syncing)
        return;                 /* the leader looks again before it steps down */
    p->syncing = 1;
    while (p->renamed.head) {
        struct cl_txn *batch = tq_take_all(&p->renamed);
        pthread_mutex_unlock(&p->mu);
        int err = fsync(p->dirfd) < 0 ? errno : 0;
        int n = 0;
        for (struct cl_txn *e = batch; e; e = e->cnext)
            n++;
        for (struct cl_txn *e = batch; e; e = e->cnext)
            e->cbatch = n;
        if (err) {
            /* the names may not be durable: take them back, 4xx to the client */
            for (struct cl_txn *e = batch; e; e = e->cnext) {
                char dst[160];
                incoming_path(e, dst, sizeof(dst));
                unlink(dst);
                e->cerr = err;
                e->cwhere = "fsync(incoming/)";
            }
        }
        pthread_mutex_lock(&p->mu);
        complete_chain(p, batch);
    }
    p->syncing = 0;
}

/* Worker: commit one file; a renamed one waits for its directory fsync. */
static int pool_run(struct workq_item *it, void *tstate, void *arg)
{
    struct cl_pool *p = arg;
    struct cl_txn *t = txn_of(it);
    if (commit_file(t) != 0)
        return WORKQ_DONE;  /* failed, or quarantined (complete already) */
    pthread_mutex_lock(&p->mu);
    group_commit_locked(p, t);
    pthread_mutex_unlock(&p->mu);
    return WORKQ_KEPT;      /* completed with its batch */
}

/* Event loop side: hand completed entries back, in completion order
 * (nothing is reported any more once the pool stops). */
static void pool_done(struct workq_item *it, void *arg)
{
    struct cl_pool *p = arg;
    if (it->wq_cancelled)
        return;
    p->inflight--;
    p->done_fn(txn_of(it), p->arg);
}

static const struct workq_ops pool_ops = { .run = pool_run, .done = pool_done };

struct cl_pool *clc_start(struct event_base *base, int nthreads,
                          void (*done)(struct cl_txn *t, void *arg), void *arg)
{
    struct cl_pool *p = xcalloc(1, sizeof(*p));
    if (nthreads < 1)
        nthreads = 1;
    if (nthreads > 256)
        nthreads = 256;
    p->done_fn = done;
    p->arg = arg;
    pthread_mutex_init(&p->mu, NULL);
    p->dirfd = open(SPOOL_INCOMING, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (p->dirfd < 0)
        log_fatal("open %s: %m", SPOOL_INCOMING);
    p->q = workq_new(base, nthreads, &pool_ops, p);
    return p;
}

void clc_submit(struct cl_pool *p, struct cl_txn *t)
{
    p->inflight++;
    workq_submit(p->q, &t->witem);
}

int clc_inflight(struct cl_pool *p)
{
    return p->inflight;
}

/* Stop the threads once the queues are empty (they finish what is queued). */
void clc_stop(struct cl_pool *p)
{
    workq_free(p->q, 1);
    close(p->dirfd);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
