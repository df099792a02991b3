/*
 * test_spool.c - queue id generation and validation, safe directory
 * creation (lib/mail/spool.c), and the queue module: paths, moves between
 * queues, the commit's rename point (lib/mail/queue.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "util/buf.h"
#include "mail/queue.h"
#include "util/fsname.h"
#include "mail/spool.h"
#include "unit_tmpdir.h"

#define PER_THREAD 50000
#define NTHREADS   4

typedef char qid_t[QUEUE_ID_MAX];

static int qid_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void assert_all_unique(qid_t *ids, size_t n)
{
    qsort(ids, n, sizeof(qid_t), qid_cmp);
    for (size_t i = 1; i < n; i++)
        if (strcmp(ids[i - 1], ids[i]) == 0)
            fail_msg("duplicate queue id %s", ids[i]);
}

static void test_ids_unique_valid(void **state)
{
    (void)state;
    size_t n = 100000;
    qid_t *ids = xcalloc(n, sizeof(qid_t));
    for (size_t i = 0; i < n; i++) {
        queue_id_new(ids[i], sizeof(ids[i]));
        assert_true(queue_id_valid(ids[i]));
        assert_int_equal(strlen(ids[i]), 18);
    }
    assert_all_unique(ids, n);
    free(ids);
}

static void *gen_thread(void *arg)
{
    qid_t *ids = arg;
    for (int i = 0; i < PER_THREAD; i++)
        queue_id_new(ids[i], sizeof(ids[i]));
    return NULL;
}

static void test_ids_unique_threads(void **state)
{
    (void)state;
    qid_t *ids = xcalloc(PER_THREAD * NTHREADS, sizeof(qid_t));
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, gen_thread, ids + i * PER_THREAD), 0);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    for (size_t i = 0; i < PER_THREAD * NTHREADS; i++)
        assert_true(queue_id_valid(ids[i]));
    assert_all_unique(ids, PER_THREAD * NTHREADS);
    free(ids);
}

static void test_ids_sort_by_time(void **state)
{
    (void)state;
    char a[QUEUE_ID_MAX], b[QUEUE_ID_MAX];
    queue_id_new(a, sizeof(a));
    struct timespec ts = { 0, 2000000 };
    nanosleep(&ts, NULL);
    queue_id_new(b, sizeof(b));
    assert_true(strcmp(a, b) < 0);
    /* a short destination gets a truncated, still NUL-terminated id */
    char s[5];
    queue_id_new(s, sizeof(s));
    assert_int_equal(strlen(s), 4);
}

static void test_id_valid(void **state)
{
    (void)state;
    assert_true(queue_id_valid("A"));
    assert_true(queue_id_valid("0123456789ABCDEFGHIJKLMNOPQRSTU"));   /* 31 chars */
    assert_false(queue_id_valid("0123456789ABCDEFGHIJKLMNOPQRSTUV")); /* 32 chars */
    assert_false(queue_id_valid(""));
    assert_false(queue_id_valid("abc"));
    assert_false(queue_id_valid("AB/C"));
    assert_false(queue_id_valid("../X"));
    assert_false(queue_id_valid("AB C"));
    assert_false(queue_id_valid("AB\nC"));
    assert_false(queue_id_valid("AB.C"));
    assert_false(queue_id_valid("\xc3\x89"));
}

static void test_spool_dirs(void **state)
{
    (void)state;
    int n = 0, tmp = 0;
    for (const char *const *d = spool_dirs; *d; d++, n++) {
        assert_null(strchr(*d, '/'));
        if (strcmp(*d, SPOOL_TMP) == 0)
            tmp = 1;
    }
    assert_int_equal(n, 12);   /* ... tmp, sts, dmarc */
    assert_true(tmp);
}

/* spool_make_dir works on descriptors: a symlink planted where a directory
 * should be is refused (never followed, never chowned through), a file
 * too; a real directory gets its mode fixed by fchmod. */
static void test_make_dir_refuses_symlinks(void **state)
{
    (void)state;
    char base[] = "/tmp/test_spool.XXXXXX";
    assert_non_null(mkdtemp(base));
    int bfd = open(base, O_RDONLY | O_DIRECTORY);
    assert_true(bfd >= 0);
    char target[300];
    snprintf(target, sizeof(target), "%s/target", base);
    assert_int_equal(mkdir(target, 0755), 0);
    assert_int_equal(symlinkat(target, bfd, "incoming"), 0);
    buf_t err;
    buf_init(&err, 64);
    assert_int_equal(spool_make_dir(bfd, "incoming", 0700, (uid_t)-1, (gid_t)-1, &err), -1);
    assert_non_null(strstr(err.data, "symlink"));
    struct stat st;
    assert_int_equal(stat(target, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0755);     /* the target was not touched */
    /* a symlink to a directory given as an absolute path is refused too */
    char link_abs[300];
    snprintf(link_abs, sizeof(link_abs), "%s/incoming", base);
    buf_reset(&err);
    assert_int_equal(spool_make_dir(AT_FDCWD, link_abs, 0700, (uid_t)-1, (gid_t)-1, &err), -1);
    /* a plain file */
    int f = openat(bfd, "file", O_CREAT | O_WRONLY, 0600);
    assert_true(f >= 0);
    close(f);
    buf_reset(&err);
    assert_int_equal(spool_make_dir(bfd, "file", 0700, (uid_t)-1, (gid_t)-1, &err), -1);
    /* created, and an existing directory's mode corrected */
    buf_reset(&err);
    int d = spool_make_dir(bfd, "active", 0700, (uid_t)-1, (gid_t)-1, &err);
    assert_true(d >= 0);
    close(d);
    assert_int_equal(fchmodat(bfd, "active", 0777, 0), 0);
    d = spool_make_dir(bfd, "active", 0710, getuid(), getgid(), &err);
    assert_true(d >= 0);
    assert_int_equal(fstat(d, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0710);
    close(d);
    buf_free(&err);
    unlinkat(bfd, "incoming", 0);
    unlinkat(bfd, "file", 0);
    unlinkat(bfd, "active", AT_REMOVEDIR);
    close(bfd);
    rmdir(target);
    rmdir(base);
}

/* ---- the queue module (lib/mail/queue.c) ---------------------------------------- */

static void test_queue_path(void **st)
{
    (void)st;
    char p[64];
    assert_int_equal(queue_path(p, sizeof(p), SPOOL_INCOMING, "ABC123"), 0);
    assert_string_equal(p, "incoming/ABC123");
    errno = 0;
    assert_int_equal(queue_path(p, sizeof(p), SPOOL_INCOMING, "../etc"), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(queue_path(p, 10, SPOOL_DEFERRED, "ABC123"), -1);
    assert_int_equal(errno, ENAMETOOLONG);
    assert_int_equal(queue_dir_of("", p, sizeof(p)), 0);
    assert_string_equal(p, "incoming");
    assert_int_equal(queue_dir_of("junk", p, sizeof(p)), 0);
    assert_string_equal(p, "quarantine/junk");
}

/* findmnt's (util-linux) word for the file system holding dir: the
 * oracle for fs_fsync_covers_name, independent of its mountinfo parse */
static void fs_type_of(const char *dir, char *out, size_t size)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "findmnt -n -o FSTYPE --target '%s'", dir);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    out[0] = '\0';
    if (fgets(out, (int)size, f) == NULL)
        out[0] = '\0';
    out[strcspn(out, "\n")] = '\0';
    pclose(f);
}

/* Directory syncs are left out only where fsync(file) makes the name
 * durable: ext4 and XFS; tmpfs, proc (and ext2/ext3) keep them. */
static void test_fs_fsync_covers_name(void **st)
{
    (void)st;
    const char *dirs[] = { "/tmp", "/var/tmp", "/dev/shm", "/proc", "/" };
    int seen_no = 0;
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        char type[64];
        int fd = open(dirs[i], O_RDONLY | O_DIRECTORY);
        if (fd < 0)
            continue;
        fs_type_of(dirs[i], type, sizeof(type));
        int want = strcmp(type, "ext4") == 0 || strcmp(type, "xfs") == 0;
        assert_int_equal(fs_fsync_covers_name(fd), want);
        seen_no += !want;
        close(fd);
    }
    assert_true(seen_no > 0);   /* /proc at least: the "keep the sync" answer was checked */
}

/* A scratch spool with the queue directories; returns its fd. */
static int scratch_spool(char *dir, size_t size)
{
    assert_int_equal(tmpdir_make(dir, size, "test_spool"), 0);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    assert_true(fd >= 0);
    for (int i = 0; spool_dirs[i]; i++)
        assert_int_equal(mkdirat(fd, spool_dirs[i], 0700), 0);
    return fd;
}

static void put(int base, const char *rel, const char *text)
{
    int fd = openat(base, rel, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static void test_queue_move(void **st)
{
    (void)st;
    char dir[64];
    int base = scratch_spool(dir, sizeof(dir));
    struct stat sb;
    put(base, "hold/ABC1", "x");
    assert_int_equal(queue_move(base, SPOOL_HOLD, SPOOL_INCOMING, "ABC1", QUEUE_MV_SYNC), 0);
    assert_int_equal(fstatat(base, "incoming/ABC1", &sb, 0), 0);
    assert_int_equal(fstatat(base, "hold/ABC1", &sb, 0), -1);
    /* gone meanwhile */
    assert_int_equal(queue_move(base, SPOOL_HOLD, SPOOL_INCOMING, "ABC1", 0), -1);
    assert_int_equal(errno, ENOENT);
    /* never replaces with NOREPLACE; plain moves do (qmgr's own queues) */
    put(base, "hold/ABC1", "new");
    assert_int_equal(queue_move(base, SPOOL_HOLD, SPOOL_INCOMING, "ABC1", QUEUE_MV_NOREPLACE), -1);
    assert_int_equal(errno, EEXIST);
    assert_int_equal(fstatat(base, "hold/ABC1", &sb, 0), 0);
    assert_int_equal(fstatat(base, "incoming/ABC1", &sb, 0), 0);
    assert_int_equal(sb.st_size, 1);
    /* an invalid id is never a path */
    assert_int_equal(queue_move(base, SPOOL_HOLD, SPOOL_INCOMING, "../x", 0), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(queue_fsync_dir(base, SPOOL_CORRUPT), 0);
    assert_int_equal(queue_fsync_dir(base, "nonexistent"), -1);
    close(base);
    assert_int_equal(tmpdir_remove(dir), 0);
}

static void test_queue_publish(void **st)
{
    (void)st;
    char dir[64], dst[128];
    int base = scratch_spool(dir, sizeof(dir));
    char cwd[512];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(fchdir(base), 0);        /* daemons run inside the spool */
    put(AT_FDCWD, "tmp/ABC2", "m");
    assert_int_equal(queue_publish("tmp/ABC2", "", "ABC2", dst, sizeof(dst)), 0);
    assert_string_equal(dst, "incoming/ABC2");
    assert_int_equal(access("incoming/ABC2", F_OK), 0);
    assert_int_equal(mkdir("quarantine/junk", 0700), 0);
    put(AT_FDCWD, "tmp/ABC3", "m");
    assert_int_equal(queue_publish("tmp/ABC3", "junk", "ABC3", dst, sizeof(dst)), 0);
    assert_string_equal(dst, "quarantine/junk/ABC3");
    assert_int_equal(queue_publish("tmp/ABC4", "", "ABC4", dst, sizeof(dst)), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(chdir(cwd), 0);
    close(base);
    assert_int_equal(tmpdir_remove(dir), 0);
}

/* tmp/ belongs to whoever holds a file's flock: the purge a starting
 * cleanup runs leaves held files, claims notice a file purged or taken
 * and renamed away meanwhile, and a held recycled file is not taken twice. */
static void test_queue_tmp_ownership(void **st)
{
    (void)st;
    char dir[64];
    int base = scratch_spool(dir, sizeof(dir));
    char cwd[512];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(fchdir(base), 0);
    int held = queue_tmp_create("tmp/HELD1");
    assert_true(held >= 0);
    assert_int_equal(queue_tmp_create("tmp/HELD1"), -1);     /* O_EXCL */
    assert_int_equal(errno, EEXIST);
    put(AT_FDCWD, "tmp/LEFT1", "crashed");
    put(AT_FDCWD, "tmp/.free-OLD1", "recycled");
    assert_int_equal(symlink("/etc/passwd", "tmp/LINK1"), 0);
    int n = -1;
    assert_int_equal(queue_tmp_purge(AT_FDCWD, "tmp", ".free-", &n), 0);
    assert_int_equal(n, 2);                   /* LEFT1 and LINK1 (.free- not counted) */
    assert_int_equal(access("tmp/HELD1", F_OK), 0);
    assert_int_equal(access("tmp/LEFT1", F_OK), -1);
    assert_int_equal(access("tmp/.free-OLD1", F_OK), -1);
    assert_int_equal(faccessat(AT_FDCWD, "tmp/LINK1", F_OK, AT_SYMLINK_NOFOLLOW), -1);
    assert_int_equal(access("/etc/passwd", F_OK), 0);

    /* a recycled file another holder has is not claimed */
    struct stat sb;
    put(AT_FDCWD, "tmp/.free-R1", "recycled");
    int a = open("tmp/.free-R1", O_WRONLY);
    int b = open("tmp/.free-R1", O_WRONLY);
    assert_int_equal(queue_tmp_take(a, "tmp/.free-R1", &sb), 0);
    assert_int_equal(queue_tmp_take(b, "tmp/.free-R1", &sb), -1);
    assert_int_equal(errno, EWOULDBLOCK);
    /* ... nor once the holder renamed it away (still linked) and let go */
    assert_int_equal(rename("tmp/.free-R1", "incoming/R1"), 0);
    close(a);
    assert_int_equal(queue_tmp_take(b, "tmp/.free-R1", &sb), -1);
    assert_int_equal(errno, ENOENT);
    close(b);
    /* a held file is removed once its holder is gone */
    assert_int_equal(queue_tmp_remove(AT_FDCWD, "tmp/HELD1"), 0);
    close(held);
    assert_int_equal(queue_tmp_remove(AT_FDCWD, "tmp/HELD1"), 1);
    assert_int_equal(access("tmp/HELD1", F_OK), -1);
    assert_int_equal(chdir(cwd), 0);
    close(base);
    assert_int_equal(tmpdir_remove(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids_unique_valid),
        cmocka_unit_test(test_ids_unique_threads),
        cmocka_unit_test(test_ids_sort_by_time),
        cmocka_unit_test(test_id_valid),
        cmocka_unit_test(test_spool_dirs),
        cmocka_unit_test(test_make_dir_refuses_symlinks),
        cmocka_unit_test(test_queue_path),
        cmocka_unit_test(test_fs_fsync_covers_name),
        cmocka_unit_test(test_queue_move),
        cmocka_unit_test(test_queue_publish),
        cmocka_unit_test(test_queue_tmp_ownership),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
