/*
 * cleanup_commit.c - making queue files durable: the fsync worker pool and
 * the group commit of incoming/, one disk sync deep.
 *
 * The commit protocol is lib/mail/queue.h's: the file is complete in tmp/
 * (tmp/ID, or the recycled tmp/.free-X it was written into: t->path),
 * its END record holding a CRC-32C of every byte before it (lib/mail/qfile.h).
 * A worker thread takes it from the submit queue and
 *   1. renames it to incoming/ID (queue_publish: the rename point),
 *   2. hands the entry to the directory syncer thread, and
 *   3. fsyncs the file itself, then closes it.
 * The syncer takes every entry renamed so far and fsyncs incoming/ once for
 * all of them (group commit; a batch's fsync STARTS after each of its
 * renames), then takes the next batch. The file fsync (in one of N workers,
 * several in parallel) and the directory fsync run at the same time, so a
 * message waits for about one disk sync, not two. Whoever finishes an
 * entry's second sync (t->csyncs reaches 0) completes it: it goes to the
 * completion list and the event loop is woken through an eventfd (lib/
 * workq.h); only then may smtpd hear "queued" and qmgr get its QMGR_WAKEUP
 * (TESTING.md item 9).
 *
 * Why every crash point is safe (kill -9 of any process, or power cut):
 *  - Before the rename: only the file in tmp/ exists; a cleanup starting
 *    removes it (it holds no lock any more: lib/mail/queue.h).
 *    The client had no 250 and retries.
 *  - After the rename, before both syncs are done: incoming/ID may or may
 *    not survive, and its content may be anything the disk kept: complete,
 *    truncated, zero-filled blocks, or an older message's blocks (recycled
 *    inodes, cleanup_recycle.c). Nothing was acknowledged. A complete file
 *    is delivered (and the client's retry too: a duplicate, as with any
 *    crash between queueing and 250). Anything else fails the END checksum
 *    or has no END (truncation), or names another queue id (stale inode:
 *    qmgr checks the id against the name): qmgr moves it to corrupt/ and
 *    logs it, never delivers it.
 *  - After both syncs: file data, inode and the directory entry are on
 *    disk (fsync(file) covers data and inode; fsync(incoming/) the name; on
 *    a journalled ext4 the file's fsync commits the rename's transaction
 *    too). Only now is the reply sent: after 250 the message survives.
 * A kill -9 of cleanup alone loses nothing written: the page cache keeps
 * the file; only power loss needs the syncs.
 * qmgr may take incoming/ID (scan) before its syncs end: it then reads the
 * complete file from the page cache. If a sync then fails, the client gets
 * 4xx and the name is removed if still there; a message qmgr already took
 * may then be delivered besides the client's retry (a duplicate, never a
 * loss).
 *
 * Where the spool's file system makes a renamed file's name durable with
 * the file's own fsync (ext4, XFS: lib/util/fsname.h fs_fsync_covers_name
 * says why), the directory fsync would only repeat it: there is no syncer
 * thread, and the worker completes the entry after fsync(file). The crash
 * argument is the same with "both syncs" read as "the file's sync".
 *
 * This replaces the earlier order (fsync file, rename, fsync directory:
 * two disk latencies per message). It was kept then because a name could
 * point to a torn file after a crash; the END checksum now makes any such
 * file detectable, which is what the ordering had to guarantee.
 *
 * Quarantine (rare) keeps the serial order: fsync, rename into
 * quarantine/NAME/, fsync that directory, in the worker.
 *
 * Worker threads never log (the log module's queue-id slot belongs to the
 * loop) and touch only the commit fields of a transaction; errors are
 * recorded in t->cerr / t->cwhere and reported by the loop. A failed entry
 * has its file removed (tmp/ or incoming/) before it completes.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "util/log.h"
#include "mail/queue.h"
#include "util/workq.h"

struct tq { struct cl_txn *head, *tail; };

struct cl_pool {
    struct workq *q;              /* the workers, submit queue, completions */
    pthread_mutex_t mu;           /* renamed, stop, every t->csyncs */
    pthread_cond_t cv;            /* renamed grew, or stop */
    struct tq renamed;            /* waiting for the next fsync(incoming/) */
    int stop;
    int names_with_file;          /* no directory fsync: the file's covers it */
    pthread_t syncer;
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
    char dir[256];
    return queue_quarantine_dir(AT_FDCWD, t->qname, dir, sizeof(dir)) < 0 ? errno : 0;
}

/* A failed entry's name is removed (gone already if qmgr took it). */
static void unlink_failed(const struct cl_txn *t)
{
    if (t->cerr) {
        char dst[160];
        incoming_path(t, dst, sizeof(dst));
        unlink(dst);
    }
}

/* One of t's syncs is done (called locked): the last one completes it. */
static void sync_done_locked(struct cl_pool *p, struct cl_txn *t)
{
    if (--t->csyncs > 0)
        return;
    unlink_failed(t);
    workq_complete(p->q, &t->witem);
}

/* fsync and close t's file, the first failure kept in t->cerr/cwhere. */
static void sync_close(struct cl_txn *t)
{
    if (fsync(t->fd) < 0 && t->cerr == 0) {
        t->cerr = errno;
        t->cwhere = "fsync";
    }
    if (close(t->fd) < 0 && t->cerr == 0) {
        t->cerr = errno;
        t->cwhere = "close";
    }
    t->fd = -1;
}

/* Quarantine: [mkdir,] fsync, close, rename, fsync quarantine/NAME/ -
 * serially, in the worker. 0 committed, -1 failed (cleaned up). */
static int commit_quarantine(struct cl_txn *t)
{
    char dst[160], dir[128];
    int e = quarantine_dir(t);
    if (e) {
        t->cerr = e;
        t->cwhere = "mkdir quarantine";
    } else if (fsync(t->fd) < 0) {
        t->cerr = errno;
        t->cwhere = "fsync";
    }
    /* renamed before the close: the file's lock keeps it ours in tmp/ */
    if (t->cerr == 0 && queue_publish(t->path, t->qname, t->qid, dst, sizeof(dst)) < 0) {
        t->cerr = errno;
        t->cwhere = "rename";
    }
    if (t->cerr) {
        unlink(t->path);
        close(t->fd);
        t->fd = -1;
        return -1;
    }
    if (close(t->fd) < 0) {
        t->fd = -1;
        unlink(dst);
        t->cerr = errno;
        t->cwhere = "close";
        return -1;
    }
    t->fd = -1;
    queue_dir_of(t->qname, dir, sizeof(dir));
    e = fsync_dir(dir);
    if (e) {
        unlink(dst);
        t->cerr = e;
        t->cwhere = "fsync(quarantine/)";
        return -1;
    }
    t->cbatch = 1;
    return 0;
}

/* Rename into incoming/ (the rename point). 0 renamed, -1 failed (file
 * closed and removed). */
static int publish(struct cl_txn *t)
{
    char dst[160];
    if (queue_publish(t->path, "", t->qid, dst, sizeof(dst)) < 0) {
        t->cerr = errno;
        t->cwhere = "rename";
        unlink(t->path);            /* (before the close: still ours) */
        close(t->fd);
        t->fd = -1;
        return -1;
    }
    return 0;
}

/* Worker: rename, queue the entry for the directory fsync, fsync the file
 * meanwhile; the second of the two syncs to finish completes it. */
static int pool_run(struct workq_item *it, void *tstate, void *arg)
{
    struct cl_pool *p = arg;
    struct cl_txn *t = txn_of(it);
    t->cerr = 0;
    if (t->rewrite && clr_rewrite(t) < 0) {     /* data-stage mutations (cleanup_rules.c) */
        unlink(t->path);            /* (before the close: still ours) */
        close(t->fd);
        t->fd = -1;
        return WORKQ_DONE;
    }
    if (t->qname[0]) {
        commit_quarantine(t);
        return WORKQ_DONE;
    }
    if (publish(t) < 0)
        return WORKQ_DONE;
    if (p->names_with_file) {
        sync_close(t);
        t->cbatch = 0;
        unlink_failed(t);
        return WORKQ_DONE;
    }
    pthread_mutex_lock(&p->mu);
    t->csyncs = 2;
    tq_push(&p->renamed, t);
    pthread_mutex_unlock(&p->mu);
    pthread_cond_signal(&p->cv);        /* unlocked: see workq_submit */

    int err = fsync(t->fd) < 0 ? errno : 0;
    if (close(t->fd) < 0 && err == 0)
        err = errno;
    t->fd = -1;
    pthread_mutex_lock(&p->mu);
    if (err && t->cerr == 0) {
        t->cerr = err;
        t->cwhere = "fsync";
    }
    sync_done_locked(p, t);
    pthread_mutex_unlock(&p->mu);
    return WORKQ_KEPT;
}

/* The directory syncer: one fsync(incoming/) per batch of renamed entries,
 * until stopped with nothing left. */
static void *syncer_main(void *arg)
{
    struct cl_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->renamed.head == NULL && !p->stop)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->renamed.head == NULL)
            break;
        struct cl_txn *batch = tq_take_all(&p->renamed);
        pthread_mutex_unlock(&p->mu);
        int err = fsync(p->dirfd) < 0 ? errno : 0;
        int n = 0;
        for (struct cl_txn *e = batch; e; e = e->cnext)
            n++;
        pthread_mutex_lock(&p->mu);
        while (batch) {
            struct cl_txn *next = batch->cnext;
            batch->cbatch = n;
            if (err && batch->cerr == 0) {
                batch->cerr = err;     /* the name may not be durable: 4xx */
                batch->cwhere = "fsync(incoming/)";
            }
            sync_done_locked(p, batch);
            batch = next;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
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

struct cl_pool *clc_start(struct event_base *base, int nthreads, int names_with_file,
                          void (*done)(struct cl_txn *t, void *arg), void *arg)
{
    struct cl_pool *p = xcalloc(1, sizeof(*p));
    if (nthreads < 1)
        nthreads = 1;
    if (nthreads > 256)
        nthreads = 256;
    p->done_fn = done;
    p->arg = arg;
    p->names_with_file = names_with_file;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->dirfd = open(SPOOL_INCOMING, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (p->dirfd < 0)
        log_fatal("open %s: %m", SPOOL_INCOMING);
    p->q = workq_new(base, nthreads, &pool_ops, p);
    if (names_with_file)
        return p;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);     /* signals stay with the loop thread */
    int e = pthread_create(&p->syncer, NULL, syncer_main, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0)
        log_fatal("pthread_create: %s", strerror(e));
    return p;
}

void clc_submit(struct cl_pool *p, struct cl_txn *t)
{
    p->inflight++;
    workq_submit(p->q, &t->witem);
}

void clc_expect(struct cl_pool *p)
{
    p->inflight++;
}

void clc_unexpect(struct cl_pool *p)
{
    p->inflight--;
}

/* In an auth worker thread: the same steps as a pool worker's. */
void clc_run_here(struct cl_pool *p, struct cl_txn *t)
{
    if (pool_run(&t->witem, NULL, p) == WORKQ_DONE)
        workq_complete(p->q, &t->witem);
}

int clc_inflight(struct cl_pool *p)
{
    return p->inflight;
}

/* Stop the threads once nothing is in flight (the caller checks
 * clc_inflight: every kept entry has completed). */
void clc_stop(struct cl_pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    if (!p->names_with_file)
        pthread_join(p->syncer, NULL);
    workq_free(p->q, 1);
    close(p->dirfd);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
