/*
 * postdrop.c - libexec/postdrop: the setgid-postdrop helper sendmail(1)
 * runs to put one message into <spool>/maildrop/ (postdrop(8)).
 *
 *   postdrop SPOOL   < records (lib/mail/maildrop.h, from sendmail)
 *
 * Installed root:postdrop 2755. The group is its only privilege: it lets
 * the caller write into maildrop/ (postern:postdrop 1730: no listing, and
 * the sticky bit keeps users from renaming or removing each other's files)
 * and search the spool (0710 postern:postdrop). So this program must never
 * read or open anything for the caller but its stdin, and never trust it:
 *  - the maildrop directory must be a real one (owned by another user than
 *    the caller, group = our effective group, sticky, nothing for others),
 *    so the group cannot be used to write elsewhere;
 *  - the file is created under a random name with O_EXCL|O_NOFOLLOW, owned
 *    by the caller, mode 0640, group the directory's (postdrop: pickup
 *    reads it; nobody else);
 *  - the VERSION and USER records are ours: the uid is getuid() and the
 *    login getpwuid()'s, never the environment's;
 *  - the caller's records are framed and checked (md_check) and the file
 *    is renamed to its final name only after END, EOF and fsync, so pickup
 *    never sees half a message. A temporary name starts with "t".
 * No configuration is read (its parser would run with our group). Exit
 * codes are sysexits: 0, EX_USAGE, EX_DATAERR, EX_NOPERM, EX_TEMPFAIL.
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "mail/maildrop.h"
#include "mail/spool.h"
#include "util/buf.h"
#include "util/fdio.h"

#define POSTDROP_MAX_BYTES (1ULL << 30)   /* a hard cap; pickup applies message_size */

#ifdef __SANITIZE_ADDRESS__
/* make SAN=1: LeakSanitizer cannot inspect a setgid (non-dumpable) process
 * and would turn every exit into a failure; ASan itself stays on. */
int __lsan_is_turned_off(void);
int __lsan_is_turned_off(void)
{
    return 1;
}
#endif

static char tmp_name[40];
static int md_fd = -1;

static void __attribute__((noreturn)) die(int code, const char *fmt, const char *arg)
{
    fputs("postdrop: ", stderr);
    fprintf(stderr, fmt, arg ? arg : "");
    fputc('\n', stderr);
    if (md_fd >= 0 && tmp_name[0])
        unlinkat(md_fd, tmp_name, 0);
    exit(code);
}

/* maildrop/ as an O_PATH descriptor (we may search it, not read it), and
 * only if it is a maildrop directory, not one the caller made. */
static int open_maildrop(const char *spool)
{
    int sfd = open(spool, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (sfd < 0)
        die(errno == EACCES ? EX_NOPERM : EX_TEMPFAIL, "cannot reach the spool %s "
            "(is postdrop installed setgid postdrop?)", spool);
    int fd = openat(sfd, SPOOL_MAILDROP, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    close(sfd);
    if (fd < 0)
        die(errno == EACCES ? EX_NOPERM : EX_TEMPFAIL, "cannot reach %s/maildrop", spool);
    struct stat st;
    if (fstat(fd, &st) < 0)
        die(EX_TEMPFAIL, "stat %s/maildrop failed", spool);
    int root = getuid() == 0;
    if (!root && st.st_gid != getegid())
        die(EX_NOPERM, "%s/maildrop is not of our group (is postdrop installed setgid "
            "postdrop?)", spool);
    if ((st.st_mode & 07) != 0 || !(st.st_mode & S_ISVTX) || (!root && st.st_uid == getuid()))
        die(EX_NOPERM, "%s/maildrop is not a maildrop directory (postern:postdrop 1730)",
            spool);
    return fd;
}

static void random_hex(char *out, size_t nbytes)
{
    unsigned char r[16];
    if (nbytes > sizeof(r) || getrandom(r, nbytes, 0) != (ssize_t)nbytes)
        die(EX_TEMPFAIL, "no random bytes%s", NULL);
    for (size_t i = 0; i < nbytes; i++)
        snprintf(out + 2 * i, 3, "%02x", r[i]);
}

/* VERSION and USER: what only we may say. */
static void write_head(int fd)
{
    buf_t b;
    buf_init(&b, 128);
    md_put_str(&b, MD_VERSION, MD_MAGIC);
    uid_t uid = getuid();
    struct passwd *pw = getpwuid(uid);
    const char *login = pw && pw->pw_name[0] && strlen(pw->pw_name) < 64 &&
                        strpbrk(pw->pw_name, " \t\r\n") == NULL ? pw->pw_name : "unknown";
    char u[128];
    snprintf(u, sizeof(u), "%lu %s", (unsigned long)uid, login);
    md_put_str(&b, MD_USER, u);
    if (fdio_write_all(fd, b.data, b.len) < 0)
        die(EX_TEMPFAIL, "write: %s", strerror(errno));
    buf_free(&b);
}

/* Copy the caller's records, each framed and checked, up to END and EOF. */
static void copy_records(int fd)
{
    struct md_state st;
    md_state_init(&st);
    buf_t in;
    buf_init(&in, 2 * MD_REC_MAX);
    unsigned long long total = 0;
    char err[128];
    for (;;) {
        struct md_rec r;
        long n;
        while ((n = md_rec_next((const unsigned char *)in.data, in.len, &r, err,
                                sizeof(err))) > 0) {
            if (md_check(&st, &r, 1, err, sizeof(err)) < 0)
                die(EX_DATAERR, "bad input: %s", err);
            if (fdio_write_all(fd, in.data, (size_t)n) < 0)
                die(EX_TEMPFAIL, "write: %s", strerror(errno));
            buf_consume(&in, (size_t)n);
        }
        if (n < 0)
            die(EX_DATAERR, "bad input: %s", err);
        buf_reserve(&in, MD_REC_MAX);
        ssize_t got = read(STDIN_FILENO, in.data + in.len, MD_REC_MAX);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            die(EX_TEMPFAIL, "read: %s", strerror(errno));
        if (got == 0)
            break;
        if (st.done)
            die(EX_DATAERR, "bad input: %s", "data after END");
        in.len += (size_t)got;
        total += (unsigned long long)got;
        if (total > POSTDROP_MAX_BYTES)
            die(EX_DATAERR, "message too big%s", NULL);
    }
    if (!st.done || in.len != 0)
        die(EX_DATAERR, "input ended before the message did%s", NULL);
    buf_free(&in);
}

int main(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] != '/')
        die(EX_USAGE, "usage: postdrop SPOOL (an absolute path; run by sendmail)%s", NULL);
    umask(077);
    md_fd = open_maildrop(argv[1]);
    int fd = -1;
    for (int tries = 0; fd < 0 && tries < 8; tries++) {
        tmp_name[0] = 't';
        random_hex(tmp_name + 1, 16);
        fd = openat(md_fd, tmp_name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                    0600);
        if (fd < 0 && errno != EEXIST) {
            tmp_name[0] = '\0';
            die(errno == EACCES ? EX_NOPERM : EX_TEMPFAIL, "cannot create a file in "
                "maildrop: %s", strerror(errno));
        }
    }
    if (fd < 0) {
        tmp_name[0] = '\0';
        die(EX_TEMPFAIL, "cannot create a file in maildrop%s", NULL);
    }
    /* the directory's group (postdrop) may read it: pickup. A no-op when we
     * run setgid postdrop; root running an unprivileged copy needs it. */
    struct stat dst;
    if (fstat(md_fd, &dst) < 0 || fchown(fd, (uid_t)-1, dst.st_gid) < 0)
        die(EX_TEMPFAIL, "cannot set the maildrop file's group: %s", strerror(errno));
    write_head(fd);
    copy_records(fd);
    if (fchmod(fd, 0640) < 0 || fsync(fd) < 0 || close(fd) < 0)
        die(EX_TEMPFAIL, "cannot write the maildrop file: %s", strerror(errno));
    char final[40];
    random_hex(final, 16);
    if (renameat2(md_fd, tmp_name, md_fd, final, RENAME_NOREPLACE) < 0)
        die(EX_TEMPFAIL, "cannot rename the maildrop file: %s", strerror(errno));
    tmp_name[0] = '\0';
    return 0;
}
