/*
 * qmgr_scan.c - directory scans: at start-up every active/ file goes back
 * to incoming/ (the previous qmgr died mid-delivery; recorded outcomes are
 * in the files, so nothing is delivered twice that was recorded done);
 * incoming/ is taken whole; deferred/ files are due when mtime <= now.
 * Must never take a file whose name is not a valid queue id.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/log.h"
#include "qmgr.h"
#include "mail/queue.h"

void qmgr_scan_recover(void)
{
    DIR *d = opendir(SPOOL_ACTIVE);
    if (d == NULL)
        log_fatal("opendir %s: %m", SPOOL_ACTIVE);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!queue_id_valid(e->d_name)) {
            /* ID.tmp: a queue file rewrite (qmgr_rules.c) that never finished */
            const char *dot = strrchr(e->d_name, '.');
            char id[QUEUE_ID_MAX];
            if (dot && strcmp(dot, ".tmp") == 0 && (size_t)(dot - e->d_name) < sizeof(id)) {
                memcpy(id, e->d_name, (size_t)(dot - e->d_name));
                id[dot - e->d_name] = '\0';
                if (queue_id_valid(id) && unlinkat(dirfd(d), e->d_name, 0) < 0)
                    log_error("unlink %s/%s: %m", SPOOL_ACTIVE, e->d_name);
            }
            continue;
        }
        if (queue_move(AT_FDCWD, SPOOL_ACTIVE, SPOOL_INCOMING, e->d_name, 0) < 0)
            log_error("move %s from %s/ to %s/: %m", e->d_name, SPOOL_ACTIVE, SPOOL_INCOMING);
        else
            n++;
    }
    closedir(d);
    if (n)
        log_info("recovered %d message%s from %s/", n, n == 1 ? "" : "s", SPOOL_ACTIVE);
}

void qmgr_scan_incoming(void)
{
    DIR *d = opendir(SPOOL_INCOMING);
    if (d == NULL) {
        log_error("opendir %s: %m", SPOOL_INCOMING);
        return;
    }
    qmgr_g->more = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && !qmgr_g->stopping) {
        if (queue_id_valid(e->d_name) && !qmgr_active_start(SPOOL_INCOMING, e->d_name))
            break;   /* memory full: the rest waits for the next scan */
    }
    closedir(d);
}

void qmgr_scan_deferred(int flush)
{
    DIR *d = opendir(SPOOL_DEFERRED);
    if (d == NULL) {
        log_error("opendir %s: %m", SPOOL_DEFERRED);
        return;
    }
    int64_t now = qmgr_now(), next = 0;
    int full = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && !qmgr_g->stopping) {
        if (!queue_id_valid(e->d_name))
            continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
            continue;
        if (!flush && st.st_mtime > now) {
            if (next == 0 || st.st_mtime < next)
                next = st.st_mtime;
            continue;
        }
        if (full || !qmgr_active_start(SPOOL_DEFERRED, e->d_name)) {
            full = 1;       /* still due: remember it for the next scan */
            next = now;
        }
    }
    closedir(d);
    qmgr_g->deferred_due = next;
    qmgr_g->last_fullscan = now;
}
