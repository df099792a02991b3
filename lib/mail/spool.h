/*
 * spool.h - the spool directory layout and queue ids, shared by every
 * process and the CLI. The spool is owned by the unprivileged user, 0700.
 */
#ifndef POSTERN_SPOOL_H
#define POSTERN_SPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "util/buf.h"

/* Queue subdirectories, in the order a message moves through them. */
#define SPOOL_MAILDROP   "maildrop"
#define SPOOL_INCOMING   "incoming"
#define SPOOL_ACTIVE     "active"
#define SPOOL_DEFERRED   "deferred"
#define SPOOL_HOLD       "hold"
#define SPOOL_CORRUPT    "corrupt"
#define SPOOL_QUARANTINE "quarantine"
#define SPOOL_PRIVATE    "private"   /* Unix sockets between processes */
#define SPOOL_PUBLIC     "public"
#define SPOOL_TMP        "tmp"       /* cleanup's files being written */
/* tmp/.free-ID: a finished queue file, renamed there by qmgr for cleanup to
 * write the next message into (cleanup/cleanup_recycle.c) */
#define SPOOL_RECYCLE_PREFIX ".free-"
#define SPOOL_STS        "sts"       /* the smtp agent's MTA-STS policy cache (lib/sts) */
#define SPOOL_DMARC      "dmarc"     /* cleanup's DMARC aggregate-report data (lib/dmarc) */
#define SPOOL_DMARC_RECORDS SPOOL_DMARC "/records"   /* one line per message */

/* The group of sendmail's setgid helper (libexec/postdrop): it may search
 * the spool (0710 user:postdrop) and write into maildrop/ (1730
 * user:postdrop); pickup keeps it to read what was submitted. */
#define SPOOL_POSTDROP_GROUP "postdrop"

/* Sockets under private/ */
#define SOCK_CLEANUP  "private/cleanup"
#define SOCK_FILTER   "private/filter"
#define SOCK_QMGR     "private/qmgr"
#define SOCK_LOCAL    "private/local"
#define SOCK_SMTP     "private/smtp"
#define SOCK_PIPE     "private/pipe"

#define QUEUE_ID_MAX 32

extern const char *const spool_dirs[];   /* NULL-terminated, created by master */

/* Create directory `name` (relative to dirfd; AT_FDCWD for an absolute
 * path) when missing and open it without following a symlink in its last
 * component (O_DIRECTORY|O_NOFOLLOW), then set owner (unless uid is
 * (uid_t)-1) and mode on the descriptor (fstat, fchown, fchmod): nothing is
 * ever done to a path that could have been swapped in between. Returns the
 * directory's fd (O_CLOEXEC), or -1 with the reason in err: a symlink, or
 * anything but a directory, is refused. For root working in a directory an
 * unprivileged user owns (master and the spool). */
int spool_make_dir(int dirfd, const char *name, mode_t mode, uid_t uid, gid_t gid, buf_t *err);

/* New unique queue id: [0-9A-Z]+, sortable by time, unique across processes
 * and threads (time, pid, thread-safe counter). */
void queue_id_new(char *id, size_t size);
/* The arrival second (unix time) a queue id was made at; 0 when the id is
 * not one of queue_id_new's (too short, other letters). */
int64_t queue_id_time(const char *id);
/* Is s a syntactically valid queue id (safe to use as a file name)? */
int  queue_id_valid(const char *s);

#endif
