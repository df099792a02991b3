/*
 * queue.h - the queues of the spool: where a message's file is in each
 * queue, moving it between queues, the one directory sync, and the commit
 * protocol that brings a new message into incoming/.
 *
 * Every path is relative to `base`, a descriptor of the spool directory
 * (AT_FDCWD for the daemons, which run inside the spool; the CLI opens the
 * spool). Queue names are the SPOOL_* directories of spool.h, or a
 * subdirectory such as "quarantine/junk".
 *
 * Directory sync policy. A rename is durable only once the directory it
 * went into is fsynced. Moves that carry a promise (a message acknowledged
 * to a client must not disappear: cleanup's commit, the CLI's release and
 * requeue) sync; qmgr's moves between its own queues (incoming -> active ->
 * deferred) do not: after a crash a message is found in one of them (qmgr
 * recovers active/ at start) and recorded outcomes live in the file.
 *
 * Commit protocol (cleanup, see cleanup/cleanup_commit.c for the crash
 * argument): write the whole file in tmp/ (tmp/ID, or a recycled
 * tmp/.free-X), ending with the END record whose checksum covers every
 * byte before it (lib/mail/qfile.h); queue_publish()
 * renames it into incoming/ID (the "rename point"); then fsync(file) and
 * fsync(incoming/) - in any order, concurrently - and only when both are
 * done may the client hear 250. Every reader refuses a file whose END
 * checksum does not match, so a file torn by a crash after the rename point
 * is never delivered: qmgr moves it to corrupt/ (never acknowledged: the
 * client retries).
 *
 * Where fsync(file) makes the file's newest name durable too (ext4 and
 * XFS: lib/util/fsname.h says why), the directory sync is redundant and
 * cleanup leaves it out.
 */
#ifndef POSTERN_QUEUE_H
#define POSTERN_QUEUE_H

#include <stddef.h>
#include <sys/stat.h>
#include "mail/spool.h"

/* queue_move flags */
enum {
    QUEUE_MV_SYNC      = 1,   /* fsync the destination directory after the rename */
    QUEUE_MV_NOREPLACE = 2,   /* fail with EEXIST rather than replace a file */
};

/* "queue/id" into out. 0, or -1 (EINVAL: id invalid; ENAMETOOLONG). */
int queue_path(char *out, size_t size, const char *queue, const char *id);

/* fsync directory dir (relative to base). 0, or -1 with errno. */
int queue_fsync_dir(int base, const char *dir);

/* Move message id from queue `from` to queue `to` (rename, then the sync
 * asked for). 0, or -1 with errno: ENOENT when the file is gone (another
 * process took it), EEXIST with QUEUE_MV_NOREPLACE. When the rename is done
 * but the sync fails, the file stays moved and -1 is returned. */
int queue_move(int base, const char *from, const char *to, const char *id, unsigned flags);

/* The rename point of the commit protocol: tmp_path (a finished queue
 * file, END written, not necessarily synced) becomes incoming/ID, or
 * quarantine/NAME/ID when qname is non-empty. The caller must then fsync
 * the file and the directory (queue_dir_of) before acknowledging. dst gets
 * the new path. 0, or -1 with errno. */
int queue_publish(const char *tmp_path, const char *qname, const char *id,
                  char *dst, size_t dstsize);

/* quarantine/NAME exists: created (0700) and quarantine/ synced when it
 * was missing. dir gets "quarantine/NAME". 0, or -1 with errno. */
int queue_quarantine_dir(int base, const char *name, char *dir, size_t size);

/* The directory queue_publish puts a message in: "incoming" or
 * "quarantine/NAME". 0 or -1 (ENAMETOOLONG). */
int queue_dir_of(const char *qname, char *out, size_t size);

/* Files in tmp/ (SPOOL_TMP) belong to the live process writing them while
 * it holds an flock(LOCK_EX) on them: several processes write there at
 * once (a draining cleanup beside its replacement, qmgr's reports), so a
 * cleanup starting removes only files nobody holds (queue_tmp_purge), and
 * two cleanups never take the same recycled file.
 */

/* Create tmp file path (O_EXCL, 0600, write-only) and hold it; a name a
 * purge removed meanwhile is made again. The fd, or -1 with errno. */
int queue_tmp_create(const char *path);

/* Take an existing file in tmp/ (a recycled one), opened as fd by its name
 * path: lock it without waiting and check path still names it (*st: its
 * fstat). 0, or -1 with errno: EWOULDBLOCK (another process holds it) or
 * ENOENT (gone, or taken and renamed away meanwhile): close fd. */
int queue_tmp_take(int fd, const char *path, struct stat *st);

/* Remove dfd/name unless a live process holds it: 1 removed, 0 held (or
 * already gone). */
int queue_tmp_remove(int dfd, const char *name);

/* Remove every file in directory dir (relative to base) that no live
 * process holds. *removed counts them, names starting with skip_prefix
 * (when non-NULL) not counted. 0, or -1 with errno (opendir). */
int queue_tmp_purge(int base, const char *dir, const char *skip_prefix, int *removed);

#endif
