/*
 * qmgr_defer.c - the retry schedule (delivery.retry by attempt count, the
 * last value beyond the list), the message lifetime, and the move of a
 * message to deferred/ with its next-try time as the file's mtime.
 * Must only be called once the outcomes are fsynced.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "util/log.h"
#include "qmgr.h"
#include "mail/queue.h"

int qmgr_rcpt_done(unsigned status)
{
    return status == DS_DELIVERED || status == DS_BOUNCED || status == DS_DISCARDED;
}

/* Seconds to wait after a recipient's attempts-th failed attempt. */
static int64_t retry_delay(const struct config *cfg, unsigned attempts)
{
    if (cfg->nretry <= 0)
        return 300;
    unsigned i = attempts == 0 ? 0 : attempts - 1;
    if (i >= (unsigned)cfg->nretry)
        i = (unsigned)cfg->nretry - 1;
    return cfg->retry[i];
}

int64_t qmgr_defer_next(const struct config *cfg, const struct qf_env *env, int64_t now)
{
    int64_t best = 0;
    for (int i = 0; i < env->nrcpts; i++) {
        const struct qf_rcpt *r = &env->rcpts[i];
        if (qmgr_rcpt_done(r->status))
            continue;
        int64_t last = r->last_try > 0 ? r->last_try : now;
        int64_t t = last + retry_delay(cfg, r->attempts);
        if (best == 0 || t < best)
            best = t;
    }
    return best > now ? best : now + 1;
}

int qmgr_defer_expired(const struct config *cfg, const struct qf_env *env, int64_t now)
{
    return now - env->arrival / 1000000 > (int64_t)cfg->lifetime;
}

int qmgr_defer_move(const char *id, int fd, int64_t when)
{
    struct timespec ts[2] = { { (time_t)when, 0 }, { (time_t)when, 0 } };
    if (futimens(fd, ts) < 0) {
        log_error("futimens %s: %m", id);
        return -1;
    }
    /* not synced: found in active/ after a crash, it is recovered (queue.h) */
    if (queue_move(AT_FDCWD, SPOOL_ACTIVE, SPOOL_DEFERRED, id, 0) < 0) {
        log_error("move %s from %s/ to %s/: %m", id, SPOOL_ACTIVE, SPOOL_DEFERRED);
        return -1;
    }
    return 0;
}
