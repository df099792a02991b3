/*
 * master.c - libexec/master, the only process that stays root: loads the
 * configuration, creates the run directory (root's: pid file, smtpd's
 * jail) and the spool (the user's: only ever touched by descriptor or with
 * the user's file-system identity), holds the pid file lock, binds every
 * listening socket, runs the children (master_spawn.c), restarts them,
 * reloads on SIGHUP and drains on SIGTERM/SIGINT.
 *
 * Usage: master -c CONFIG [-f]   (-f: foreground, log to stderr)
 * Without -f it daemonises; the invoking process waits until every child
 * has said it is ready (or one failed at start-up, which stops the daemon:
 * then it prints why and exits 1), so `postern start` can tell the user.
 * Every reload's outcome, once the new children are ready, is written to
 * <run_dir>/reload.status for `postern reload`.
 * master never parses SMTP and never reads message content.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "master.h"
#include "util/clock.h"
#include "util/fdio.h"
#include "util/log.h"
#include "util/log_event.h"
#include "daemon/server.h"
#include "mail/spool.h"

#define STOP_TIMEOUT_MS 30000
#define READY_TIMEOUT_MS 60000   /* children must say ready within this */
#define READY_LINE "postern-master-ready\n"
#define RELOAD_STATUS "reload.status"
#define DAEMONS_STATUS "daemons.status"
#define MASTER_POLL_CHILDREN 2048   /* children whose pipes are read */

struct master M = { .unix_fd = { -1, -1, -1, -1 }, .jail_fd = { -1, -1, -1, -1 },
                    .jail_priv_fd = -1 };

static int pid_fd = -1, pid_dir_fd = -1, run_fd = -1;
static char pid_path[4096], pid_base[256];
static int report_fd = -1;     /* daemon mode, until ready: `postern start` reads it */
static int start_failed;

/* Waiting for every child to say ready: after the start, after a reload. */
static enum { W_NONE, W_START, W_RELOAD } waiting;
static int64_t wait_deadline;
static unsigned reload_seq;
static int reload_pending;     /* SIGHUP during the start: reload once it is over */
static void reload(const struct msig *from);

static void __attribute__((noreturn)) usage(void)
{
    fprintf(stderr, "usage: master -c CONFIG [-f]\n");
    exit(2);
}

struct load_out { const char *prefix; int to_log; buf_t *collect; };

static void print_error(const char *line, void *arg)
{
    const struct load_out *o = arg;
    if (o->collect)
        buf_printf(o->collect, "%s\n", line);
    if (o->to_log)
        log_error("%s%s", o->prefix, line);
    else
        fprintf(stderr, "%s\n", line);
}

/* Load and validate; every problem is printed (stderr or log), and
 * appended to collect (when not NULL). */
static struct config *load_config(const char *path, const char *prefix, int to_log,
                                  buf_t *collect)
{
    struct config_errors errs = { 0 };
    struct config *cfg = config_load(path, &errs);
    if (cfg == NULL) {
        struct load_out o = { prefix, to_log, collect };
        config_errors_each(&errs, print_error, &o);
        if (errs.n == 0) {
            if (collect)
                buf_printf(collect, "cannot load %s\n", path);
            if (to_log)
                log_error("%scannot load %s", prefix, path);
            else
                fprintf(stderr, "master: cannot load %s\n", path);
        }
    }
    config_errors_free(&errs);
    return cfg;
}

/* The user children run as (they drop to it themselves; master needs the
 * ids to own the spool and the sockets). */
static void resolve_user(void)
{
    M.as_root = geteuid() == 0;
    if (!M.as_root) {
        M.uid = getuid();
        M.gid = getgid();
        return;
    }
    struct passwd *pw = getpwnam(M.cfg->user);
    if (pw == NULL)
        log_fatal("user \"%s\" does not exist (config key user; create it with: "
                  "useradd --system --no-create-home --shell /usr/sbin/nologin %s)",
                  M.cfg->user, M.cfg->user);
    if (pw->pw_uid == 0)
        log_fatal("user \"%s\" is root: refusing to run children as root", M.cfg->user);
    M.uid = pw->pw_uid;
    M.gid = pw->pw_gid;
    if (M.cfg->group && *M.cfg->group) {
        struct group *gr = getgrnam(M.cfg->group);
        if (gr == NULL)
            log_fatal("group \"%s\" does not exist (config key group)", M.cfg->group);
        M.gid = gr->gr_gid;
    }
}

/* Is dir (absolute) the spool or inside it? */
static int in_spool(const char *dir)
{
    size_t n = strlen(M.cfg->spool);
    return strncmp(dir, M.cfg->spool, n) == 0 && (dir[n] == '\0' || dir[n] == '/');
}

/* Opens a directory root works in by path; it must be root's and writable by root
 * only, or a child's user could swap what the path names. */
static int open_root_dir(const char *dir, const char *role)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        log_fatal("%s %s: %m", role, dir);
    struct stat st;
    if (fstat(fd, &st) < 0)
        log_fatal("stat %s (%s): %m", dir, role);
    if (M.as_root && (st.st_uid != 0 || (st.st_mode & 022) != 0))
        log_fatal("%s (%s) must be owned by root and writable by root only", dir, role);
    return fd;
}

/* run_dir: root's, 0755 (the pid file, reload status, smtpd's jail). When
 * not root (a dev run) it may be the spool: everything is one user's then. */
static void make_run_dir(void)
{
    buf_t err;
    buf_init(&err, 128);
    if (!M.as_root && strcmp(M.cfg->run_dir, M.cfg->spool) == 0) {
        run_fd = open(M.cfg->spool, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (run_fd < 0)
            log_fatal("run_dir %s: %m", M.cfg->run_dir);
        buf_free(&err);
        return;
    }
    if (M.as_root && in_spool(M.cfg->run_dir))
        log_fatal("run_dir %s is inside the spool %s, which user %s owns: use a directory "
                  "only root can write (default /run/postern)", M.cfg->run_dir, M.cfg->spool,
                  M.cfg->user);
    char *copy = xstrdup(M.cfg->run_dir);
    const char *parent = dirname(copy);
    close(open_root_dir(parent, "parent of run_dir"));
    free(copy);
    run_fd = spool_make_dir(AT_FDCWD, M.cfg->run_dir, 0755, M.as_root ? 0 : (uid_t)-1, 0, &err);
    if (run_fd < 0)
        log_fatal("run_dir: %s", err.data);
    buf_free(&err);
}

/* smtpd's jail: <run_dir>/smtpd (root, 0755, otherwise empty) and its
 * private/ (root:group 0750) holding the cleanup and filter sockets. */
static void make_jail(void)
{
    if (!M.as_root)
        return;   /* only root can chroot: an unprivileged run has no jail */
    buf_t err;
    buf_init(&err, 128);
    int jfd = spool_make_dir(run_fd, JAIL_SMTPD, 0755, 0, 0, &err);
    if (jfd < 0)
        log_fatal("smtpd jail %s/%s", M.cfg->run_dir, err.data);
    M.jail_priv_fd = spool_make_dir(jfd, SPOOL_PRIVATE, 0750, 0, M.gid, &err);
    if (M.jail_priv_fd < 0)
        log_fatal("smtpd jail %s/%s/%s", M.cfg->run_dir, JAIL_SMTPD, err.data);
    close(jfd);
    buf_free(&err);
}

/* The spool and its subdirectories, owned by the user: opened without
 * following symlinks, owner and mode set on the descriptors. With the
 * postdrop group (sendmail's helper), the spool is 0710 user:postdrop so
 * postdrop can reach maildrop/, 1730 user:postdrop: it may create files
 * there but not list them, nor touch another user's (sticky). */
static void make_spool(void)
{
    buf_t err;
    buf_init(&err, 128);
    uid_t uid = M.as_root ? M.uid : (uid_t)-1;
    struct group *gr = M.as_root ? getgrnam(SPOOL_POSTDROP_GROUP) : NULL;
    gid_t pgid = gr ? gr->gr_gid : M.gid;
    if (M.as_root && gr == NULL)
        log_warn("group \"%s\" does not exist: sendmail cannot submit mail until it is "
                 "created (make install does)", SPOOL_POSTDROP_GROUP);
    int sfd = spool_make_dir(AT_FDCWD, M.cfg->spool, gr ? 0710 : 0700, uid, pgid, &err);
    if (sfd < 0)
        log_fatal("spool: %s", err.data);
    for (int i = 0; spool_dirs[i]; i++) {
        int drop = strcmp(spool_dirs[i], SPOOL_MAILDROP) == 0;
        mode_t mode = drop && gr ? 01730 : strcmp(spool_dirs[i], SPOOL_PUBLIC) == 0 ? 0710 : 0700;
        int fd = spool_make_dir(sfd, spool_dirs[i], mode, uid, drop ? pgid : M.gid, &err);
        if (fd < 0)
            log_fatal("spool %s/%s", M.cfg->spool, err.data);
        close(fd);
    }
    close(sfd);
    buf_free(&err);
}

/* Lock and write the pid file; a second master stops here. Its directory
 * must be root's (run_dir): `postern stop` signals the pid it reads. */
static void pidfile_lock(void)
{
    str_copy(pid_path, sizeof(pid_path), M.cfg->pid_file);
    char *copy = xstrdup(pid_path);
    str_copy(pid_base, sizeof(pid_base), basename(copy));
    free(copy);
    copy = xstrdup(pid_path);
    const char *dir = dirname(copy);
    pid_dir_fd = open_root_dir(dir, "the pid file's directory");
    free(copy);
    pid_fd = openat(pid_dir_fd, pid_base, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (pid_fd < 0)
        log_fatal("cannot open pid file %s: %m", pid_path);
    struct stat st;
    if (fstat(pid_fd, &st) < 0 || !S_ISREG(st.st_mode))
        log_fatal("pid file %s is not a regular file", pid_path);
    int rc = -1;
    /* `postern status` takes a shared lock for an instant: retry briefly */
    for (int i = 0; i < 10 && rc < 0; i++) {
        rc = flock(pid_fd, LOCK_EX | LOCK_NB);
        if (rc < 0 && errno == EWOULDBLOCK)
            usleep(20000);
        else if (rc < 0)
            log_fatal("cannot lock pid file %s: %m", pid_path);
    }
    if (rc < 0) {
        char b[32] = "";
        ssize_t n = pread(pid_fd, b, sizeof(b) - 1, 0);
        b[n > 0 ? n : 0] = '\0';
        log_fatal("postern is already running (pid %ld, pid file %s)", strtol(b, NULL, 10),
                  pid_path);
    }
    char b[32];
    int n = snprintf(b, sizeof(b), "%ld\n", (long)getpid());
    if (ftruncate(pid_fd, 0) < 0 || fdio_pwrite_all(pid_fd, b, (size_t)n, 0) < 0)
        log_fatal("cannot write pid file %s: %m", pid_path);
    fchmod(pid_fd, 0644);
}

/* Double fork; the original process forwards the daemon's start-up
 * messages and exits 0 once it says it is ready, 1 otherwise. */
static int daemonize(void)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        log_fatal("pipe: %m");
    pid_t pid = fork();
    if (pid < 0)
        log_fatal("fork: %m");
    if (pid > 0) {
        close(p[1]);
        waitpid(pid, NULL, 0);
        FILE *f = fdopen(p[0], "r");
        char line[4096];
        int ready = 0;
        while (f && fgets(line, sizeof(line), f)) {
            if (strcmp(line, READY_LINE) == 0)
                ready = 1;
            else
                fputs(line, stderr);
        }
        exit(ready ? 0 : 1);
    }
    close(p[0]);
    if (setsid() < 0)
        log_fatal("setsid: %m");
    pid = fork();
    if (pid < 0)
        log_fatal("fork: %m");
    if (pid > 0)
        _exit(0);
    if (chdir("/") < 0)
        log_fatal("chdir /: %m");
    int null = open("/dev/null", O_RDWR);
    if (null < 0)
        log_fatal("/dev/null: %m");
    dup2(null, STDIN_FILENO);
    dup2(null, STDOUT_FILENO);
    dup2(p[1], STDERR_FILENO);   /* start-up errors reach `postern start` */
    close(p[1]);
    return null;
}

/* Before the children start: stderr (the pipe to `postern start`) moves to
 * report_fd, which children never see; from now on master logs to syslog. */
static void daemon_detach(int null)
{
    report_fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    dup2(null, STDERR_FILENO);
    close(null);
    if (!mlog_active())
        log_set_format(0, M.cfg->log_json);
}

/* An event naming who sent the signal (uid of the sender, from the
 * kernel); a signal from the terminal (Ctrl-C) or the kernel names nobody. */
static void log_by(enum log_event ev, const struct msig *r, uid_t uid)
{
    struct log_ev e;
    log_ev_init(&e, ev);
    if (ev == LE_START)
        log_ev_num(&e, LF_PROCESSES, spawn_total(M.cfg));
    if (ev == LE_RELOAD)
        log_ev_str(&e, LF_PATH, M.config_path);
    if (r == NULL || r->pid > 0) {
        struct passwd *pw = getpwuid(uid);
        log_ev_str(&e, LF_BY, pw ? pw->pw_name : "?");
        log_ev_num(&e, LF_UID, uid);
    }
    log_ev_emit(&e);
}

static void report(const char *text)
{
    if (report_fd < 0)
        return;
    size_t n = strlen(text);
    if (write(report_fd, text, n) < 0) { /* `postern start` gone */ }
}

/* A file in run_dir (root's), replaced atomically. */
void master_write_run_file(const char *name, const buf_t *b, mode_t mode)
{
    char tmp[64];
    str_format(tmp, sizeof(tmp), "%s.tmp", name);
    int fd = openat(run_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0 || fdio_write_all(fd, b->data, b->len) < 0 ||
        renameat(run_fd, tmp, run_fd, name) < 0)
        log_error("cannot write %s/%s: %m", M.cfg->run_dir, name);
    if (fd >= 0)
        close(fd);
}

/* <run_dir>/reload.status: "PID SEQ ok|failed\n" + reasons. */
static void reload_status(int ok, const char *why)
{
    buf_t b;
    buf_init(&b, 128);
    buf_printf(&b, "%ld %u %s\n%s", (long)getpid(), reload_seq, ok ? "ok" : "failed",
               why ? why : "");
    master_write_run_file(RELOAD_STATUS, &b, 0644);
    buf_free(&b);
}

/* <run_dir>/daemons.status for `postern status`, rewritten when a child
 * starts, says it is ready, or dies. */
static void daemons_status(void)
{
    buf_t b;
    buf_init(&b, 512);
    if (spawn_status(&b))
        master_write_run_file(DAEMONS_STATUS, &b, 0644);
    buf_free(&b);
}

static void begin_stop(int sig, const struct msig *from);

/* Children all ready, one failed at start-up, or out of time. */
static void check_waiting(int64_t now)
{
    buf_t why;
    buf_init(&why, 64);
    int failed = spawn_take_failures(&why);
    if (waiting == W_NONE || M.stopping) {
        buf_free(&why);
        return;
    }
    int ready = !failed && spawn_all_ready();
    if (!failed && !ready && now >= wait_deadline) {
        buf_printf(&why, "processes not ready after %d s (see the mail log)\n",
                   READY_TIMEOUT_MS / 1000);
        failed = 1;
    }
    if (waiting == W_START && ready) {
        log_info("ready: %d processes", spawn_total(M.cfg));
        report(READY_LINE);
    } else if (waiting == W_START && failed && !M.foreground) {
        report(why.data);
        log_error("start-up failed: stopping");
        start_failed = 1;
        struct msig self = { SIGTERM, 0, 0 };   /* nobody asked: start-up failed */
        begin_stop(SIGTERM, &self);
    } else if (waiting == W_START && failed) {
        log_error("start-up: %s", why.data);   /* run: keep restarting */
    } else if (waiting == W_RELOAD && ready) {
        log_info("reload: every process ready");
        reload_status(1, NULL);
    } else if (waiting == W_RELOAD && failed) {
        log_error("reload: %s", why.data);
        reload_status(0, why.data);
    }
    if (ready || failed) {
        /* after a failure `postern start` hears EOF only once master has
         * stopped, so a new start cannot find it still running */
        if (waiting == W_START && ready && report_fd >= 0) {
            close(report_fd);
            report_fd = -1;
        }
        int was_start = waiting == W_START;
        waiting = W_NONE;
        if (was_start && reload_pending && !M.stopping) {
            reload_pending = 0;
            reload(NULL);
        }
    }
    buf_free(&why);
}

/* What a reload cannot change without a restart. */
static int same_str(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static void reload(const struct msig *from)
{
    reload_seq++;
    mlog_reopen();                  /* logrotate may send HUP rather than USR1 */
    log_by(LE_RELOAD, from, from ? from->uid : getuid());
    buf_t errs;
    buf_init(&errs, 128);
    struct config *nc = load_config(M.config_path, "reload: ", 1, &errs);
    if (nc == NULL) {
        log_error("reload: configuration has errors: keeping the running configuration");
        reload_status(0, errs.data);
        buf_free(&errs);
        return;
    }
    buf_free(&errs);
    if (!same_str(nc->spool, M.cfg->spool) || !same_str(nc->user, M.cfg->user) ||
        !same_str(nc->group, M.cfg->group) || !same_str(nc->pid_file, pid_path) ||
        !same_str(nc->run_dir, M.cfg->run_dir)) {
        log_error("reload: spool, user, group, run_dir or pid_file changed: these need "
                  "`postern stop` + `postern start`; keeping the running configuration");
        reload_status(0, "spool, user, group, run_dir or pid_file changed: these need "
                      "`postern stop` + `postern start`; the running configuration is kept\n");
        config_free(nc);
        return;
    }
    struct mlisten *nls = NULL;
    int nnls = 0;
    buf_t err;
    buf_init(&err, 128);
    if (mlisten_resolve(nc, &nls, &nnls, &err) < 0 ||
        mlisten_open(M.ls, M.nls, nls, nnls, &err) < 0) {
        log_error("reload: %s: keeping the running configuration", err.data);
        buf_printf(&err, ": the running configuration is kept\n");
        reload_status(0, err.data);
        buf_free(&err);
        mlisten_free(nls, nnls);
        config_free(nc);
        return;
    }
    buf_free(&err);
    for (int i = 0; i < nnls; i++) {
        int was = 0;
        for (int j = 0; j < M.nls && !was; j++)
            was = M.ls[j].sslen == nls[i].sslen && memcmp(&M.ls[j].ss, &nls[i].ss, nls[i].sslen) == 0;
        if (!was)
            log_info("reload: listening on %s (%s)", nls[i].addr, nls[i].name);
    }
    mlisten_free(M.ls, M.nls);   /* fds moved out or already closed */
    M.ls = nls;
    M.nls = nnls;
    int new_log = !same_str(nc->log_file, M.cfg->log_file);
    config_free(M.cfg);
    M.cfg = nc;
    if (new_log && mlog_active())
        mlog_reopen();              /* another log.file: from now on there */
    else if (new_log)
        log_warn("reload: log.file changed: syslog and a file switch at the next start");
    log_set_level(M.cfg->log_level);
    log_set_format(M.foreground || mlog_active(), M.cfg->log_json);
    mhttp_configure();
    spawn_reload();
    log_info("reload: configuration reloaded, replacing processes (%d processes; "
             "filter reloads in place)", spawn_total(M.cfg));
    waiting = W_RELOAD;
    wait_deadline = clock_now_ms() + READY_TIMEOUT_MS;
}

static void begin_stop(int sig, const struct msig *from)
{
    if (M.stopping) {
        log_info("already stopping (signal %d)", sig);
        return;
    }
    M.stopping = 1;
    log_by(LE_STOP, from, from->uid);
    /* Ctrl-C reached the whole process group: pass SIGINT on (children
     * ignore a second SIGINT), so every child drains exactly once */
    spawn_signal_all(sig == SIGINT ? SIGINT : SIGTERM);
}

static void find_exe_dir(void)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        log_fatal("readlink /proc/self/exe: %m");
    exe[n] = '\0';
    str_copy(M.exe_dir, sizeof(M.exe_dir), dirname(exe));
}

static void run_loop(int sigfd)
{
    int64_t stop_deadline = 0;
    for (;;) {
        int64_t now = clock_now_ms();
        check_waiting(now);
        int64_t wait = spawn_due(now);
        if (waiting != W_NONE && (wait < 0 || wait > wait_deadline - now))
            wait = wait_deadline > now ? wait_deadline - now : 0;
        if (M.stopping) {
            if (stop_deadline == 0)
                stop_deadline = now + STOP_TIMEOUT_MS;
            if (spawn_count() == 0)
                return;
            if (now >= stop_deadline) {
                spawn_kill_wait();
                return;
            }
            wait = stop_deadline - now;
        }
        /* signals, the log sink, the metrics endpoint, every child's pipe
         * (ready, reports) */
        struct pollfd pfd[3 + MASTER_POLL_CHILDREN];
        pfd[0].fd = sigfd;
        pfd[0].events = POLLIN;
        if (wait < 0 || wait > 1000)
            wait = 1000;   /* run_dir files once a second */
        pfd[1].fd = mhttp_fd(&wait);
        pfd[1].events = POLLIN;
        pfd[2].fd = mlog_poll_fd();     /* -1: ignored by poll */
        pfd[2].events = POLLIN;
        int npfd = 3 + spawn_poll_fds(pfd + 3, MASTER_POLL_CHILDREN);
        int rc = poll(pfd, (nfds_t)npfd, (int)wait);
        if (rc < 0 && errno != EINTR)
            log_fatal("poll: %m");
        if (rc > 0 && pfd[2].revents)
            mlog_input();
        for (int i = 3; rc > 0 && i < npfd; i++)
            if (pfd[i].revents)
                spawn_ready_input(pfd[i].fd);
        mhttp_run();
        mmetrics_tick(clock_now_ms());
        int sig;
        struct msig from;
        while ((sig = msignal_next(&from)) != 0) {
            if (sig == SIGCHLD)
                spawn_reap(clock_now_ms());
            else if (sig == SIGUSR1)
                mlog_reopen();
            else if (sig == SIGHUP && !M.stopping && waiting == W_START)
                reload_pending = 1;   /* `postern start` waits for the first verdict */
            else if (sig == SIGHUP && !M.stopping)
                reload(&from);
            else if (sig == SIGTERM || sig == SIGINT)
                begin_stop(sig, &from);
        }
        daemons_status();
    }
}

int main(int argc, char **argv)
{
    const char *cpath = NULL;
    int opt;
    close_range(3, ~0U, 0);   /* nothing inherited reaches the children */
    while ((opt = getopt(argc, argv, "c:f")) != -1) {
        if (opt == 'c')
            cpath = optarg;
        else if (opt == 'f')
            M.foreground = 1;
        else
            usage();
    }
    if (optind != argc)
        usage();
    log_init("master", 1, 0, LOG_L_INFO);
    cpath = config_default_path(cpath);
    char abs[PATH_MAX];
    if (realpath(cpath, abs) == NULL) {
        fprintf(stderr, "master: cannot read configuration %s: %s\n", cpath, strerror(errno));
        return 1;
    }
    M.config_path = abs;
    M.cfg = load_config(abs, "", 0, NULL);
    if (M.cfg == NULL)
        return 1;
    log_set_level(M.cfg->log_level);
    log_set_format(1, M.cfg->log_json);
    umask(022);
    find_exe_dir();
    int null = M.foreground ? -1 : daemonize();
    resolve_user();
    /* root's supplementary groups must not count while master acts as the
     * user in the spool (master_listen.c); children set their own */
    if (M.as_root && setgroups(0, NULL) < 0)
        log_fatal("setgroups: %m");
    make_spool();
    buf_t lerr;
    buf_init(&lerr, 64);
    if (mlog_setup(&lerr) < 0)
        log_fatal("%s", lerr.data);
    buf_free(&lerr);
    make_run_dir();
    pidfile_lock();
    make_jail();
    buf_t err;
    buf_init(&err, 128);
    if (mlisten_resolve(M.cfg, &M.ls, &M.nls, &err) < 0 ||
        mlisten_open(NULL, 0, M.ls, M.nls, &err) < 0 || munix_open(&err) < 0)
        log_fatal("%s", err.data);
    buf_free(&err);
    int sigfd = msignal_init();
    if (sigfd < 0)
        log_fatal("signal set-up: %m");
    if (!M.foreground)
        daemon_detach(null);
    log_by(LE_START, NULL, getuid());
    mmetrics_init();
    mhttp_configure();
    spawn_init();
    waiting = W_START;
    wait_deadline = clock_now_ms() + READY_TIMEOUT_MS;
    run_loop(sigfd);
    mhttp_stop();
    munix_close(1);
    mlisten_free(M.ls, M.nls);
    unlinkat(pid_dir_fd, pid_base, 0);
    unlinkat(run_fd, RELOAD_STATUS, 0);
    close(pid_fd);
    mlog_input();                   /* the children's last lines */
    log_info("stopped");
    config_free(M.cfg);
    return start_failed ? 1 : 0;
}
