/*
 * fsname.h - does fsync() of a file also make durable the name a rename()
 * or link() just gave it in a directory?
 *
 * Yes on ext4 and XFS: with a journal (ext4) or log (XFS), the rename or
 * link is a logged transaction that also changes the file's inode (ctime,
 * link count), and fsync(file) forces the log up to the inode's last
 * change, so the new name is committed with it. On ext4 without a journal,
 * a rename or link that adds a name marks the inode EXT4_STATE_NEWENTRY,
 * and fsync(file) then writes the parent directory's blocks and inode
 * before its one cache flush (fs/ext4/fsync.c ext4_sync_parent(), there for
 * exactly this); the parent is the directory of the name the file was last
 * given (d_find_any_alias: one name for a renamed file). Anything else
 * (the ext2/ext3 drivers, btrfs, network file systems, unknown) needs the
 * directory's own fsync.
 *
 * Used by cleanup's commit (lib/mail/queue.h) and Maildir delivery.
 */
#ifndef POSTERN_FSNAME_H
#define POSTERN_FSNAME_H

/* 1 when the file system holding directory dirfd is ext4 or XFS, else 0.
 * ext2, ext3 and ext4 share a magic number: the type is read from
 * /proc/self/mountinfo, so call it before a chroot. */
int fs_fsync_covers_name(int dirfd);

#endif
