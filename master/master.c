/*
 * master.c - libexec/master, the only process that stays root: loads the
 * configuration, creates the spool, holds the pid file lock, binds every
 * listening socket, runs the children (master_spawn.c), restarts them,
 * reloads on SIGHUP and drains on SIGTERM/SIGINT.
 *
 * Usage: master -c CONFIG [-f]   (-f: foreground, log to stderr)
 * Without -f it daemonises; the invoking process waits until the daemon is
 * up (or reports why not) so `postern start` can tell the user.
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
#include "log.h"
#include "server.h"
#include "spool.h"

#define STOP_TIMEOUT_MS 30000
#define READY_LINE "postern-master-ready\n"

struct master M = { .unix_fd = { -1, -1, -1, -1 } };

static int pid_fd = -1;
static char pid_path[4096];

static void __attribute__((noreturn)) usage(void)
{
    fprintf(stderr, "usage: master -c CONFIG [-f]\n");
    exit(2);
}

/* Load and validate; every problem is printed (stderr or log). */
static struct config *load_config(const char *path, const char *prefix, int to_log)
{
    struct config_errors errs = { 0 };
    struct config *cfg = config_load(path, &errs);
    if (cfg == NULL) {
        for (int i = 0; i < errs.n; i++) {
            buf_t b;
            buf_init(&b, 128);
            config_error_format(&b, &errs.v[i]);
            if (to_log)
                log_error("%s%s", prefix, b.data);
            else
                fprintf(stderr, "%s\n", b.data);
            buf_free(&b);
        }
        if (errs.n == 0) {
            if (to_log)
                log_error("%scannot load %s", prefix, path);
            else
                fprintf(stderr, "master: cannot load %s\n", path);
        }
    }
    config_errors_free(&errs);
    return cfg;
}

static void master_pid_path(const struct config *cfg, char *out, size_t size)
{
    if (cfg->pid_file && *cfg->pid_file)
        str_copy(out, size, cfg->pid_file);
    else
        spool_path(cfg, "postern.pid", out, size);
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

/* mkdir (if missing) + owner + mode; refuses anything but a real directory. */
static void make_dir(const char *path, mode_t mode)
{
    if (mkdir(path, mode) < 0 && errno != EEXIST)
        log_fatal("cannot create %s: %m", path);
    struct stat st;
    if (lstat(path, &st) < 0)
        log_fatal("stat %s: %m", path);
    if (!S_ISDIR(st.st_mode))
        log_fatal("%s exists and is not a directory", path);
    if (M.as_root && (st.st_uid != M.uid || st.st_gid != M.gid) &&
        chown(path, M.uid, M.gid) < 0)
        log_fatal("chown %s: %m", path);
    if ((st.st_mode & 07777) != mode && chmod(path, mode) < 0)
        log_fatal("chmod %s: %m", path);
}

static void make_spool(void)
{
    make_dir(M.cfg->spool, 0700);
    for (int i = 0; spool_dirs[i]; i++) {
        char path[4096];
        spool_path(M.cfg, spool_dirs[i], path, sizeof(path));
        make_dir(path, strcmp(spool_dirs[i], SPOOL_PUBLIC) == 0 ? 0710 : 0700);
    }
}

/* Lock and write the pid file; a second master stops here. */
static void pidfile_lock(void)
{
    master_pid_path(M.cfg, pid_path, sizeof(pid_path));
    pid_fd = open(pid_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (pid_fd < 0)
        log_fatal("cannot open pid file %s: %m", pid_path);
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
    if (ftruncate(pid_fd, 0) < 0 || pwrite(pid_fd, b, (size_t)n, 0) != n)
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

static void daemon_ready(int null)
{
    if (write(STDERR_FILENO, READY_LINE, sizeof(READY_LINE) - 1) < 0) { /* parent gone */ }
    dup2(null, STDERR_FILENO);
    close(null);
    log_set_format(0, M.cfg->log_json);
}

/* What a reload cannot change without a restart. */
static int same_str(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static void reload(void)
{
    log_info("reload: reading %s", M.config_path);
    struct config *nc = load_config(M.config_path, "reload: ", 1);
    if (nc == NULL) {
        log_error("reload: configuration has errors: keeping the running configuration");
        return;
    }
    char np[4096];
    master_pid_path(nc, np, sizeof(np));
    if (!same_str(nc->spool, M.cfg->spool) || !same_str(nc->user, M.cfg->user) ||
        !same_str(nc->group, M.cfg->group) || strcmp(np, pid_path) != 0) {
        log_error("reload: spool, user, group or pid_file changed: these need "
                  "`postern stop` + `postern start`; keeping the running configuration");
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
    config_free(M.cfg);
    M.cfg = nc;
    log_set_level(M.cfg->log_level);
    log_set_format(M.foreground, M.cfg->log_json);
    spawn_reload();
    log_info("reload: configuration reloaded, replacing processes (%d processes; "
             "filter reloads in place)", spawn_total(M.cfg));
}

static void begin_stop(int sig)
{
    if (M.stopping) {
        log_info("already stopping (signal %d)", sig);
        return;
    }
    M.stopping = 1;
    log_info("stopping");
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
        int64_t now = now_ms();
        int64_t wait = spawn_due(now);
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
        struct pollfd pfd = { .fd = sigfd, .events = POLLIN };
        int rc = poll(&pfd, 1, wait < 0 ? -1 : (int)(wait > 60000 ? 60000 : wait));
        if (rc < 0 && errno != EINTR)
            log_fatal("poll: %m");
        int sig;
        while ((sig = msignal_next()) != 0) {
            if (sig == SIGCHLD)
                spawn_reap(now_ms());
            else if (sig == SIGHUP && !M.stopping)
                reload();
            else if (sig == SIGTERM || sig == SIGINT)
                begin_stop(sig);
        }
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
    M.cfg = load_config(abs, "", 0);
    if (M.cfg == NULL)
        return 1;
    log_set_level(M.cfg->log_level);
    log_set_format(1, M.cfg->log_json);
    umask(022);
    find_exe_dir();
    int null = M.foreground ? -1 : daemonize();
    resolve_user();
    make_spool();
    pidfile_lock();
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
        daemon_ready(null);
    log_info("starting Postern (%d processes)", spawn_total(M.cfg));
    spawn_init();
    run_loop(sigfd);
    munix_close(1);
    mlisten_free(M.ls, M.nls);
    unlink(pid_path);
    close(pid_fd);
    log_info("stopped");
    config_free(M.cfg);
    return 0;
}
