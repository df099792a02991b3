/*
 * server.c - the daemon start-up ritual (see server.h): arguments, config,
 * logging, chdir to the spool, jail, privilege drop with verification,
 * non-dumpable, parent death signal, readiness byte to master, signal
 * handling inside the event loop.
 * Must never leave a daemon running as root.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "daemon/server.h"
#include "mail/spool.h"
#include "util/log.h"
#include "metrics/metrics.h"

static struct event *ev_term, *ev_int, *ev_hup, *ev_usr1;

/* ASan builds (make SAN=1) are not chrooted: LeakSanitizer's exit check
 * reads /proc/self/task, which no jail has. Everything else is the same. */
#if defined(__SANITIZE_ADDRESS__)
#define SAN_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SAN_BUILD 1
#endif
#endif
#ifndef SAN_BUILD
#define SAN_BUILD 0
#endif

int fd_set_nonblock(int fd, int on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -1;
    fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
    return fcntl(fd, F_SETFL, fl);
}

void spool_path(const struct config *cfg, const char *rel, char *out, size_t size)
{
    if (str_format(out, size, "%s/%s", cfg->spool, rel) < 0)
        log_fatal("path too long: %s/%s", cfg->spool, rel);
}

/* The ids to drop to (looked up before a chroot hides /etc/passwd). */
static void resolve_ids(const struct config *cfg, uid_t *uid_r, gid_t *gid_r)
{
    struct passwd *pw = getpwnam(cfg->user);
    if (pw == NULL)
        log_fatal("user \"%s\" does not exist (config key user)", cfg->user);
    gid_t gid = pw->pw_gid;
    if (cfg->group && *cfg->group) {
        struct group *gr = getgrnam(cfg->group);
        if (gr == NULL)
            log_fatal("group \"%s\" does not exist", cfg->group);
        gid = gr->gr_gid;
    }
    if (pw->pw_uid == 0)
        log_fatal("user \"%s\" is root: refusing to run children as root", cfg->user);
    *uid_r = pw->pw_uid;
    *gid_r = gid;
}

/* extra: a supplementary group to keep ((gid_t)-1 = none): pickup's
 * postdrop group, which reads the files users submit (SERVER_F_POSTDROP). */
static void drop_to(uid_t uid, gid_t gid, gid_t extra)
{
    gid_t groups[2] = { gid, extra };
    if (setgroups(extra == (gid_t)-1 ? 1 : 2, groups) < 0)
        log_fatal("setgroups: %m");
    if (setresgid(gid, gid, gid) < 0)
        log_fatal("setresgid(%u): %m", (unsigned)gid);
    if (setresuid(uid, uid, uid) < 0)
        log_fatal("setresuid(%u): %m", (unsigned)uid);
    uid_t r, e, s;
    if (getresuid(&r, &e, &s) < 0 || r == 0 || e == 0 || s == 0)
        log_fatal("privilege drop did not take: still root");
    if (setuid(0) == 0)
        log_fatal("privilege drop did not take: could regain root");
}

/* Set the capability sets: permitted = effective = mask (of CAP_* bits
 * below 32), inheritable empty. */
int server_set_caps(uint32_t mask)
{
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof(d));
    d[0].permitted = d[0].effective = mask;
    return (int)syscall(SYS_capset, &h, d);
}

/* SERVER_F_KEEP_SETID: drop to uid/gid but keep CAP_SETUID and CAP_SETGID
 * (and nothing else, not even in the bounding set), so the local agent can
 * become one recipient at a time in a child (delivery/delivery_ident.c).
 * Root's other powers are gone: no file access beyond the user's. */
static void drop_keep_setid(uid_t uid, gid_t gid)
{
    uint32_t keep = (1u << CAP_SETUID) | (1u << CAP_SETGID);
    for (int c = 0; c <= CAP_LAST_CAP; c++)
        if (c != CAP_SETUID && c != CAP_SETGID && c != CAP_SETPCAP &&
            prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
            log_fatal("PR_CAPBSET_DROP(%d): %m", c);
    if (prctl(PR_CAPBSET_DROP, CAP_SETPCAP, 0, 0, 0) < 0)
        log_fatal("PR_CAPBSET_DROP(CAP_SETPCAP): %m");
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
        log_fatal("PR_SET_KEEPCAPS: %m");
    if (setgroups(1, &gid) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
        log_fatal("privilege drop to %u:%u: %m", (unsigned)uid, (unsigned)gid);
    if (server_set_caps(keep) < 0)
        log_fatal("capset: %m");
    prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
    uid_t r, e, sv;
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2];
    if (getresuid(&r, &e, &sv) < 0 || r == 0 || e == 0 || sv == 0 ||
        syscall(SYS_capget, &h, d) < 0 || d[0].permitted != keep || d[1].permitted != 0)
        log_fatal("privilege drop did not take: still root or more capabilities");
}

void server_drop_privileges(const struct config *cfg)
{
    if (geteuid() != 0 && getuid() != 0)
        return;   /* started unprivileged: nothing to drop, nothing to keep */
    uid_t uid;
    gid_t gid;
    resolve_ids(cfg, &uid, &gid);
    drop_to(uid, gid, (gid_t)-1);
}

/* chroot into <run_dir>/<name>, which must be root's and writable by root
 * only; the cwd becomes its root. Only root can, and only root needs to. */
static void enter_jail(const struct config *cfg, const char *name)
{
    char path[4096];
    if (str_format(path, sizeof(path), "%s/%s", cfg->run_dir, name) < 0)
        log_fatal("jail path too long: %s/%s", cfg->run_dir, name);
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        log_fatal("jail %s: %m", path);
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_uid != 0 || (st.st_mode & 022) != 0)
        log_fatal("jail %s must be owned by root and writable by root only", path);
    tzset();    /* /etc/localtime is not in the jail */
    if (fchdir(fd) < 0 || chroot(".") < 0 || chdir("/") < 0)
        log_fatal("chroot %s: %m", path);
    close(fd);
    log_debug("jailed in %s", path);
}

/* POSTERN_JAIL=spool (master's choice for cleanup and qmgr, which only
 * ever name spool-relative paths): chroot into the spool, the cwd. The
 * spool is the user's, but its parent is root's: the path cannot have been
 * swapped, and once chrooted a non-root process cannot leave. */
static void enter_spool_jail(const struct config *cfg)
{
    struct stat st;
    if (lstat(cfg->spool, &st) < 0 || !S_ISDIR(st.st_mode))
        log_fatal("spool %s is not a directory", cfg->spool);
    tzset();    /* /etc/localtime is not in the jail */
    if (chroot(".") < 0 || chdir("/") < 0)
        log_fatal("chroot %s: %m", cfg->spool);
    log_debug("jailed in %s", cfg->spool);
}

/* The pipe to master once the ready byte went out (metrics reports). */
static int master_pipe = -1;

int server_master_pipe(void)
{
    return master_pipe;
}

void server_ready(struct server *s)
{
    if (s->ready_fd < 0 || s->ready_sent)
        return;
    s->ready_sent = 1;
    if (write(s->ready_fd, "R", 1) < 0) { /* master gone: PDEATHSIG follows */ }
    /* the pipe stays open for metrics reports, which never block */
    fd_set_nonblock(s->ready_fd, 1);
    master_pipe = s->ready_fd;
}

/* Error-level events: counted, and kept for master's `postern status`. */
static void on_log_error(const char *text)
{
    metric_add(MET_LOG_ERRORS, 1, log_progname(), NULL);
    metric_error(text);
}

static void parse_ready_fd(struct server *s)
{
    s->ready_fd = -1;
    const char *env = getenv("POSTERN_READY_FD");
    if (env == NULL || *env == '\0')
        return;
    char *end;
    long fd = strtol(env, &end, 10);
    if (*end || fd < 3 || fd > 65535 || fcntl((int)fd, F_GETFD) < 0)
        log_fatal("bad POSTERN_READY_FD \"%s\"", env);
    fcntl((int)fd, F_SETFD, FD_CLOEXEC);
    s->ready_fd = (int)fd;
    unsetenv("POSTERN_READY_FD");
}

static void parse_fds(struct server *s)
{
    const char *env = getenv("POSTERN_FDS");
    if (env == NULL || *env == '\0')
        return;
    char *copy = xstrdup(env), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(tok, ':');
        if (colon == NULL)
            log_fatal("bad POSTERN_FDS entry \"%s\"", tok);
        *colon = '\0';
        char *end;
        long fd = strtol(tok, &end, 10);
        if (*end || fd < 3 || fd > 65535)
            log_fatal("bad POSTERN_FDS fd \"%s\"", tok);
        s->fds = xrealloc(s->fds, sizeof(*s->fds) * (size_t)(s->nfds + 1));
        s->fds[s->nfds].fd = (int)fd;
        str_copy(s->fds[s->nfds].name, sizeof(s->fds[0].name), colon + 1);
        fcntl((int)fd, F_SETFD, FD_CLOEXEC);
        s->nfds++;
    }
    free(copy);
}

int server_fd_named(const struct server *s, const char *name)
{
    for (int i = 0; i < s->nfds; i++)
        if (strcmp(s->fds[i].name, name) == 0)
            return s->fds[i].fd;
    return -1;
}

static const char *listen_path;     /* server_listen: one listener per daemon */

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    int e = EVUTIL_SOCKET_ERROR();
    log_warn("accept on %s: %s", listen_path, strerror(e));
}

struct evconnlistener *server_listen(struct server *s, const char *name, const char *path,
                                     evconnlistener_cb cb, void *arg)
{
    int lfd = server_fd_named(s, name);
    if (lfd < 0)
        log_fatal("no socket named \"%s\" in POSTERN_FDS", name);
    fd_set_nonblock(lfd, 1);
    struct evconnlistener *l = evconnlistener_new(s->base, cb, arg,
                                                  LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                                  0, lfd);
    if (l == NULL)
        log_fatal("cannot listen on %s", path);
    listen_path = path;
    s->lis = l;
    evconnlistener_set_error_cb(l, on_accept_error);
    char jname[80];
    str_format(jname, sizeof(jname), "%s+jail", name);
    int jfd = server_fd_named(s, jname);
    if (jfd >= 0 && s->jail_lis == NULL) {
        fd_set_nonblock(jfd, 1);
        s->jail_lis = evconnlistener_new(s->base, cb, arg,
                                         LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, jfd);
        if (s->jail_lis == NULL)
            log_fatal("cannot listen on %s (smtpd's jail)", path);
        evconnlistener_set_error_cb(s->jail_lis, on_accept_error);
    }
    return l;
}

void server_unlisten(struct server *s)
{
    if (s->lis) {
        evconnlistener_free(s->lis);
        s->lis = NULL;
    }
    if (s->jail_lis) {
        evconnlistener_free(s->jail_lis);
        s->jail_lis = NULL;
    }
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct server *s = arg;
    if (sig == SIGHUP) {
        /* master restarts most daemons on reload; filter reloads in place */
        if (s->on_reload && !s->stopping)
            s->on_reload(s);
        return;
    }
    if (sig == SIGUSR1 && s->on_retire) {
        if (!s->stopping && !s->retiring) {
            s->retiring = 1;
            log_debug("retire signal: finishing open work");
            s->on_retire(s);
        }
        return;
    }
    if (s->stopping) {
        if (sig == SIGINT)
            return;   /* Ctrl-C reaches the whole group: master drives the drain */
        log_info("second stop signal: exiting now");
        event_base_loopbreak(s->base);
        return;
    }
    s->stopping = 1;
    log_debug("stop signal: draining");
    if (s->jail_lis) {
        evconnlistener_free(s->jail_lis);
        s->jail_lis = NULL;
    }
    if (s->on_stop)
        s->on_stop(s);
    else
        event_base_loopbreak(s->base);
}

/* Enough descriptors for limits.sessions concurrent sessions (smtpd holds
 * one per session) plus spool files and IPC; raised while still root. */
static void raise_fd_limit(const struct config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    rlim_t want = (rlim_t)cfg->sessions * 2 + 1024;
    if (want > 1048576)
        want = 1048576;
    if (rl.rlim_max < want && geteuid() == 0) {
        struct rlimit up = { want, want };
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            return;
    }
    rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        log_warn("setrlimit(RLIMIT_NOFILE, %llu): %m", (unsigned long long)rl.rlim_cur);
}

struct server *server_init(const char *name, int argc, char **argv, unsigned flags)
{
    return server_init_ex(name, argc, argv, flags, NULL, NULL);
}

/* The descriptor the next open would get (the lowest free one). */
static int next_fd(void)
{
    int fd = eventfd(0, EFD_CLOEXEC);
    if (fd >= 0)
        close(fd);
    return fd;
}

/* fd is an epoll instance: only on one does removing a descriptor it does
 * not hold fail with ENOENT (else EBADF or EINVAL). */
static int is_epoll(int fd)
{
    if (fd < 0)
        return 0;
    int probe = eventfd(0, EFD_CLOEXEC);
    if (probe < 0)
        return 0;
    struct epoll_event e = { 0 };
    int yes = epoll_ctl(fd, EPOLL_CTL_DEL, probe, &e) < 0 && errno == ENOENT;
    close(probe);
    return yes;
}

/* The loop's epoll descriptor when foreign registrations fit it (server.h:
 * s->epfd): libevent 2.1's epoll backend ("epoll", or "epoll (with
 * changelist)") reports readiness by the descriptor in the event data. */
static int loop_epfd(struct event_base *base, int guess)
{
    if ((event_get_version_number() >> 16) != 0x0201 ||
        strncmp(event_base_get_method(base), "epoll", 5) != 0)
        return -1;
    return is_epoll(guess) ? guess : -1;
}

struct server *server_init_ex(const char *name, int argc, char **argv, unsigned flags,
                              server_pre_drop_fn *fn, void *arg)
{
    struct server *s = xcalloc(1, sizeof(*s));
    s->name = name;
    s->epfd = -1;
    int to_stderr = getenv("POSTERN_LOG_STDERR") && strcmp(getenv("POSTERN_LOG_STDERR"), "1") == 0;
    log_init(name, to_stderr, 0, LOG_L_INFO);
    int opt;
    while ((opt = getopt(argc, argv, "c:")) != -1) {
        if (opt == 'c')
            s->config_path = optarg;
        else
            log_fatal("usage: %s -c CONFIG", name);
    }
    if (s->config_path == NULL)
        s->config_path = config_default_path(NULL);
    struct config_errors errs = { 0 };
    s->cfg = config_load(s->config_path, &errs);
    if (s->cfg == NULL) {
        config_errors_log(&errs, "");
        log_fatal("cannot load configuration %s", s->config_path);
    }
    config_errors_free(&errs);
    log_set_format(to_stderr, s->cfg->log_json);
    log_set_level(s->cfg->log_level);
    const char *tr = getenv("POSTERN_TRACE");
    if (tr)
        log_set_trace((unsigned)strtoul(tr, NULL, 0));
    parse_fds(s);
    parse_ready_fd(s);
    log_set_error_hook(on_log_error);
    pid_t master = getppid();
    if (chdir(s->cfg->spool) < 0)
        log_fatal("chdir %s: %m", s->cfg->spool);
    if (fn)
        fn(s, arg);     /* still root: open keys and root-only files */
    raise_fd_limit(s->cfg);
    if (geteuid() == 0 || getuid() == 0) {
        uid_t uid;
        gid_t gid;
        resolve_ids(s->cfg, &uid, &gid);
        gid_t extra = (gid_t)-1;
        if (flags & SERVER_F_POSTDROP) {
            struct group *gr = getgrnam(SPOOL_POSTDROP_GROUP);
            if (gr)
                extra = gr->gr_gid;
            else
                log_warn("group \"%s\" does not exist: nothing can be submitted with "
                         "sendmail (make install creates it)", SPOOL_POSTDROP_GROUP);
        }
        const char *jail = getenv("POSTERN_JAIL");
        if (SAN_BUILD && ((flags & SERVER_F_JAIL) || jail))
            log_debug("sanitizer build: not chrooted (LeakSanitizer needs /proc)");
        else if (flags & SERVER_F_JAIL)
            enter_jail(s->cfg, JAIL_SMTPD);
        else if (jail && strcmp(jail, "spool") == 0)
            enter_spool_jail(s->cfg);
        if (flags & SERVER_F_KEEP_SETID)
            drop_keep_setid(uid, gid);
        else
            drop_to(uid, gid, extra);
    }
    if (geteuid() == 0 || getuid() == 0)
        log_fatal("running as root after start-up: refusing");
    /* no core files, no ptrace or /proc/PID/mem from another process of
     * the same user: one compromised daemon cannot take over the others */
    if (prctl(PR_SET_DUMPABLE, 0) < 0)
        log_fatal("prctl(PR_SET_DUMPABLE): %m");
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != master)
        log_fatal("master went away during start-up");
    signal(SIGPIPE, SIG_IGN);
    if (!(flags & SERVER_F_NO_EVENT)) {
        /* epoll changelist: event add/del pairs within one loop round (a
         * reply written at once, read toggled off and on) cost no epoll_ctl;
         * every change is applied once, at the next epoll_wait. No daemon
         * dup()s a descriptor it watches (the changelist's one caveat). */
        struct event_config *ec = event_config_new();
        if (ec)
            event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
        /* libevent keeps its epoll descriptor to itself: it is the one
         * epoll_create1() takes, the lowest free one (one thread here) */
        int guess = next_fd();
        s->base = ec ? event_base_new_with_config(ec) : event_base_new();
        if (ec)
            event_config_free(ec);
        if (s->base == NULL)
            log_fatal("event_base_new failed");
        s->epfd = loop_epfd(s->base, guess);
        ev_term = evsignal_new(s->base, SIGTERM, on_signal, s);
        ev_int = evsignal_new(s->base, SIGINT, on_signal, s);
        ev_hup = evsignal_new(s->base, SIGHUP, on_signal, s);
        ev_usr1 = evsignal_new(s->base, SIGUSR1, on_signal, s);
        evsignal_add(ev_term, NULL);
        evsignal_add(ev_int, NULL);
        evsignal_add(ev_hup, NULL);
        evsignal_add(ev_usr1, NULL);
    } else {
        server_ready(s);   /* a blocking daemon serves once set up */
    }
    return s;
}

void server_run(struct server *s)
{
    server_ready(s);
    if (event_base_dispatch(s->base) < 0)
        log_fatal("event loop failed");
}

void server_stop_loop(struct server *s)
{
    event_base_loopbreak(s->base);
}
