/*
 * pickup.h - the pickup daemon (pickup(8)): takes the messages sendmail(1)
 * submitted through postdrop out of <spool>/maildrop/ and feeds each to
 * cleanup over private/cleanup, the way smtpd does.
 *
 * pickup.c watches the directory (inotify, plus a sweep at start and every
 * PK_SWEEP_SECS); pickup_file.c handles one file. Runs as the postern user
 * with the postdrop group kept (SERVER_F_POSTDROP) to read the files,
 * which belong to the users who submitted them and which they may still
 * change: nothing in them is trusted (lib/mail/maildrop.h, md_check), the
 * uid is the file's owner, the login getpwuid()'s. A file is removed
 * after cleanup said the message is queued, or when it is refused for good
 * (logged); an invalid one goes to corrupt/ (logged), a temporary failure
 * leaves it for the next sweep.
 */
#ifndef POSTERN_PICKUP_H
#define POSTERN_PICKUP_H

#include <stdint.h>
#include "config/config.h"

#define PK_SWEEP_SECS     5       /* rescan maildrop/ (retries, missed events) */
#define PK_BATCH          50      /* files per loop turn (SIGTERM is heard between) */
#define PK_RETRY_SECS     30      /* a file cleanup deferred is not tried again before; */
#define PK_RETRY_MAX_SECS 300     /* doubling each time up to this */
#define PK_DEFERRED_MAX   10000   /* deferred files remembered (then sweeps stop short) */
#define PK_STALE_SECS     3600    /* a postdrop temporary file this old is dead */
#define PK_REPLY_TIMEOUT  300     /* seconds cleanup may take to answer END */
#define PK_SEND_TIMEOUT   60      /* seconds one write to cleanup may block */

enum pk_result {
    PK_DONE,        /* queued by cleanup: remove the file */
    PK_RETRY,       /* cleanup unavailable or a temporary failure: keep it */
    PK_REJECT,      /* invalid (not what postdrop writes): move it to corrupt/ */
    PK_DROP,        /* well-formed but refused for good (too big, too many
                     * recipients, cleanup said no): the sender was sent a
                     * failure report; remove it, as keeping what any user
                     * may submit would let them fill the disk */
};

/* One maildrop file (name inside the directory dirfd): hand it to cleanup. */
enum pk_result pickup_file(const struct config *cfg, int dirfd, const char *name);

#endif
