/*
 * qmgr_dest.c - destinations: every delivery job waits in the queue of its
 * destination (agent pool + next hop, lib/ipc/deliver_agent.h
 * deliver_nexthop), and the destinations with waiting jobs form one list
 * per pool that qmgr_deliver.c walks round robin, so one busy destination
 * cannot starve the others. A destination starts at most `limit` jobs at
 * once (delivery.concurrency for the smtp pool) and, with delivery.rate,
 * one job per gap_ms; the rest wait here in memory, never deferred.
 * A destination with nothing queued or running is freed when its last job
 * is done, or, when a rate gap is still running (so the gap holds across
 * messages), by the sweep from qmgr's tick once the gap has passed. Never
 * by qmgr_dest_get: qmgr_deliver_submit gets all of a message's
 * destinations before it pushes onto any, and a get that freed an idle one
 * on its hash chain freed one the caller held (its memory then became the
 * next destination: two jobs merged, queued in the wrong pool).
 * Must never lose a job: push, pop and drop are the only ways in and out.
 */
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/clock.h"
#include "qmgr.h"

#define DEST_HASH 1024

static struct qdest *table[DEST_HASH];
static struct qdest *whead[QMGR_POOLS], *wtail[QMGR_POOLS];
static int nwait[QMGR_POOLS];

static unsigned dest_hash(int pool, const char *name)
{
    return (str_hash(name) + (unsigned)pool * 7919u) % DEST_HASH;
}

static int dest_idle(const struct qdest *d, int64_t now_ms)
{
    return d->busy == 0 && d->head == NULL && d->next_ms <= now_ms;
}

static void dest_unlink(struct qdest **pp)
{
    struct qdest *d = *pp;
    *pp = d->hnext;
    free(d->name);
    free(d);
}

struct qdest *qmgr_dest_find(int pool, const char *name)
{
    for (struct qdest *d = table[dest_hash(pool, name)]; d; d = d->hnext)
        if (d->pool == pool && strcmp(d->name, name) == 0)
            return d;
    return NULL;
}

struct qdest *qmgr_dest_get(int pool, const char *name, int limit, int64_t gap_ms)
{
    struct qdest *d = qmgr_dest_find(pool, name);
    if (d != NULL) {
        d->limit = limit;        /* the config may have been reloaded */
        d->gap_ms = gap_ms;
        return d;
    }
    d = xcalloc(1, sizeof(*d));
    d->name = xstrdup(name);
    d->pool = pool;
    d->limit = limit;
    d->gap_ms = gap_ms;
    d->hnext = table[dest_hash(pool, name)];
    table[dest_hash(pool, name)] = d;
    return d;
}

static void wait_remove(struct qdest *d)
{
    if (d->wprev)
        d->wprev->wnext = d->wnext;
    else
        whead[d->pool] = d->wnext;
    if (d->wnext)
        d->wnext->wprev = d->wprev;
    else
        wtail[d->pool] = d->wprev;
    d->wnext = d->wprev = NULL;
    nwait[d->pool]--;
}

static void wait_append(struct qdest *d)
{
    d->wprev = wtail[d->pool];
    d->wnext = NULL;
    if (wtail[d->pool])
        wtail[d->pool]->wnext = d;
    else
        whead[d->pool] = d;
    wtail[d->pool] = d;
    nwait[d->pool]++;
}

void qmgr_dest_push(struct qdest *d, struct qjob *j)
{
    j->d = d;
    j->next = NULL;
    if (d->tail) {
        d->tail->next = j;
    } else {
        d->head = j;
        wait_append(d);
    }
    d->tail = j;
}

int qmgr_dest_open(const struct qdest *d, int64_t now_ms)
{
    return d->busy < d->limit && (d->gap_ms == 0 || now_ms >= d->next_ms);
}

struct qjob *qmgr_dest_drop(struct qdest *d)
{
    struct qjob *j = d->head;
    if (j == NULL)
        return NULL;
    d->head = j->next;
    if (d->head == NULL) {
        d->tail = NULL;
        wait_remove(d);
    }
    j->next = NULL;
    return j;
}

struct qjob *qmgr_dest_pop(struct qdest *d, int64_t now_ms)
{
    struct qjob *j = qmgr_dest_drop(d);
    if (j == NULL)
        return NULL;
    d->busy++;
    if (d->gap_ms)
        d->next_ms = (d->next_ms > now_ms ? d->next_ms : now_ms) + d->gap_ms;
    if (d->head)
        qmgr_dest_rotate(d);
    return j;
}

void qmgr_dest_rotate(struct qdest *d)
{
    if (d->head == NULL || wtail[d->pool] == d)
        return;
    wait_remove(d);
    wait_append(d);
}

void qmgr_dest_done(struct qdest *d)
{
    if (d->busy > 0)
        d->busy--;
    if (!dest_idle(d, clock_now_ms()))
        return;
    struct qdest **pp = &table[dest_hash(d->pool, d->name)];
    while (*pp && *pp != d)
        pp = &(*pp)->hnext;
    if (*pp)
        dest_unlink(pp);
}

void qmgr_dest_sweep(void)
{
    int64_t now = clock_now_ms();
    for (int b = 0; b < DEST_HASH; b++)
        for (struct qdest **pp = &table[b]; *pp;)
            if (dest_idle(*pp, now))
                dest_unlink(pp);
            else
                pp = &(*pp)->hnext;
}

struct qdest *qmgr_dest_waiting(int pool)
{
    return whead[pool];
}

int qmgr_dest_nwaiting(int pool)
{
    return nwait[pool];
}
