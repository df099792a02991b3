/*
 * master_spawn.c - the service table, the child table, readiness, and
 * restarts with backoff: the first QUICK_RESTARTS deaths in a row restart
 * at once; a slot that keeps dying waits 1 s, 2 s, 4 s ... up to 60 s. A
 * child that said ready and then served HEALTHY_MS counts as healthy again:
 * its next death is a first one.
 * Children get their sockets at fd 3, 4, ... named in POSTERN_FDS and drop
 * privileges themselves (lib/daemon/server.c); master only forks and execs.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
#include <poll.h>

#include "master.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/log_event.h"
#include "daemon/server.h"

#define HEALTHY_MS     10000 /* ready and up this long: the backoff starts over */
#define QUICK_RESTARTS 3     /* deaths in a row restarted without delay */
#define BACKOFF_MAX_MS 60000

enum fd_kind { FDS_TCP, FDS_UNIX, FDS_NONE };

/* The service table: one row per daemon. */
static const struct service {
    const char *name;        /* daemon binary next to master */
    enum fd_kind fds;
    int unix_sock;           /* MU_* for FDS_UNIX */
    int singleton;           /* a replacement starts only after the old one exited */
    int reload_hup;          /* reload: SIGHUP (reloads in place), not a restart */
    int retire_sig;          /* reload: how the old process is told to go */
    int spool_jail;          /* chrooted into the spool (POSTERN_JAIL=spool) */
} services[] = {
    /* smtpd retires gracefully (SIGUSR1: open sessions finish, no 421); it
     * jails itself in <run_dir>/smtpd (SERVER_F_JAIL). cleanup and qmgr
     * name nothing outside the spool. filter reads rules files and runs
     * services, delivery writes mailboxes anywhere: not jailed. */
    { "smtpd",    FDS_TCP,  -1,         0, 0, SIGUSR1, 0 },
    { "cleanup",  FDS_UNIX, MU_CLEANUP, 0, 0, SIGTERM, 1 },
    { "filter",   FDS_UNIX, MU_FILTER,  0, 1, SIGTERM, 0 },
    { "qmgr",     FDS_UNIX, MU_QMGR,    1, 0, SIGTERM, 1 },
    { "delivery", FDS_UNIX, MU_LOCAL,   0, 0, SIGTERM, 0 },
    /* the SMTP client (smtp/): network only, but reads the credentials
     * file and CA files named in the config: not jailed */
    { "smtp",     FDS_UNIX, MU_SMTP,    0, 0, SIGTERM, 0 },
    /* the pipe agent (pipe/): runs commands as the users of the pipe
     * transports through runners it forks before its own drop: not jailed */
    { "pipe",     FDS_UNIX, MU_PIPE,    0, 0, SIGTERM, 0 },
    /* pickup: maildrop/ -> cleanup; one at a time (a second would submit
     * the same file twice); reads users' files and /etc/passwd: not jailed */
    { "pickup",   FDS_NONE, -1,         1, 0, SIGTERM, 0 },
};
#define NSERVICES (int)(sizeof(services) / sizeof(services[0]))
_Static_assert(NSERVICES <= 16, "svc_restarts");

struct slot {
    pid_t pid;               /* 0 = not running */
    int rfd;                 /* readiness pipe, read end; -1 = closed */
    int ready;               /* the child said it serves */
    int64_t started;         /* ms */
    int fails;               /* quick deaths in a row */
    int64_t next;            /* ms: earliest (re)start */
    int restarts;            /* deaths so far (postern status) */
    time_t since;            /* wall clock of the last start */
    buf_t in;                /* metrics reports read from rfd, not yet decoded */
};

/* Restarts per service since master started (postern_process_restarts_total). */
static long svc_restarts[16];
/* A slot's key in the metrics store (its gauges). */
#define SLOT_SRC(i, k) ((i) * 4096 + (k))

/* Something in the child table changed since spawn_status last ran. */
static int status_dirty = 1;

static struct svc_state { struct slot *slots; int n; } state[NSERVICES];

/* Children of a previous configuration, draining after SIGTERM. */
static struct retired {
    pid_t pid; int svc;
    int rfd; buf_t in;       /* its metrics reports while it drains; -1 = closed */
} *retired;
static void drain_reports(int fd, buf_t *in, int src, int svc);
/* A retired child's key in the metrics store (apart from the slots'). */
#define RETIRED_SRC(pid) ((1 << 30) + (int)(pid))
static int nretired;

/* Children that died before they said ready (spawn_take_failures). */
static int start_failures;
static buf_t start_why;

extern char **environ;

static int svc_count(const struct config *cfg, int i)
{
    if (strcmp(services[i].name, "smtpd") == 0)
        return cfg->smtpd_processes > 0 ? cfg->smtpd_processes : 1;
    if (strcmp(services[i].name, "pipe") == 0) {   /* one idle agent without pipe transports */
        for (int t = 0; t < cfg->ntransports; t++)
            if (cfg->transports[t].type == TR_PIPE)
                return cfg->delivery_processes > 0 ? cfg->delivery_processes : 1;
        return 1;
    }
    if (strcmp(services[i].name, "delivery") == 0 || strcmp(services[i].name, "smtp") == 0)
        return cfg->delivery_processes > 0 ? cfg->delivery_processes : 1;
    return 1;
}

int spawn_total(const struct config *cfg)
{
    int n = 0;
    for (int i = 0; i < NSERVICES; i++)
        n += svc_count(cfg, i);
    return n;
}

void spawn_init(void)
{
    int64_t now = clock_now_ms();
    for (int i = 0; i < NSERVICES; i++) {
        state[i].n = svc_count(M.cfg, i);
        state[i].slots = xcalloc((size_t)state[i].n, sizeof(struct slot));
        for (int k = 0; k < state[i].n; k++) {
            state[i].slots[k].next = now;
            state[i].slots[k].rfd = -1;
        }
    }
}

static int retired_of(int svc)
{
    int n = 0;
    for (int i = 0; i < nretired; i++)
        n += retired[i].svc == svc;
    return n;
}

/* Everything the child needs, prepared before fork (no allocation after). */
struct launch {
    int src[64]; int nfd;        /* the last one is the readiness pipe */
    char path[4096 + 64];
    char *argv[4];
    char **envp;
};

static void launch_prepare(struct launch *L, int svc, buf_t *fdenv, buf_t *readyenv,
                           int ready_w)
{
    const struct service *s = &services[svc];
    L->nfd = 0;
    buf_append_str(fdenv, "POSTERN_FDS=");
    if (s->fds == FDS_TCP) {
        for (int i = 0; i < M.nls && L->nfd < 63; i++) {
            if (M.ls[i].fd < 0)
                continue;
            buf_printf(fdenv, "%s%d:%s", L->nfd ? "," : "", 3 + L->nfd, M.ls[i].name);
            L->src[L->nfd++] = M.ls[i].fd;
        }
    } else if (s->fds == FDS_UNIX) {
        buf_printf(fdenv, "3:%s", munix_names[s->unix_sock]);
        L->src[L->nfd++] = M.unix_fd[s->unix_sock];
        if (M.jail_fd[s->unix_sock] >= 0) {
            /* the same service for smtpd's jail: accepted alike (server_listen) */
            buf_printf(fdenv, ",%d:%s+jail", 3 + L->nfd, munix_names[s->unix_sock]);
            L->src[L->nfd++] = M.jail_fd[s->unix_sock];
        }
    }
    buf_printf(readyenv, "POSTERN_READY_FD=%d", 3 + L->nfd);
    L->src[L->nfd++] = ready_w;
    str_format(L->path, sizeof(L->path), "%s/%s", M.exe_dir, s->name);
    L->argv[0] = L->path;
    L->argv[1] = "-c";
    L->argv[2] = M.config_path;
    L->argv[3] = NULL;
    int n = 0;
    while (environ[n])
        n++;
    L->envp = xcalloc((size_t)n + 5, sizeof(char *));
    int k = 0;
    for (int i = 0; i < n; i++)
        if (strncmp(environ[i], "POSTERN_FDS=", 12) != 0 &&
            strncmp(environ[i], "POSTERN_READY_FD=", 17) != 0 &&
            strncmp(environ[i], "POSTERN_JAIL=", 13) != 0 &&
            strncmp(environ[i], "POSTERN_LOG_STDERR=", 19) != 0)
            L->envp[k++] = environ[i];
    L->envp[k++] = fdenv->data;
    L->envp[k++] = readyenv->data;
    if (s->spool_jail)
        L->envp[k++] = "POSTERN_JAIL=spool";
    if (M.foreground || mlog_active())
        L->envp[k++] = "POSTERN_LOG_STDERR=1";   /* stderr: the terminal, or master's log sink */
    L->envp[k] = NULL;
}

/* In the child: sockets to 3.., everything else closed, exec. Never returns. */
static void __attribute__((noreturn)) launch_exec(struct launch *L, int devnull)
{
    msignal_child_reset();
    if (devnull >= 0)
        dup2(devnull, STDIN_FILENO);
    if (mlog_child_fd() >= 0 && dup2(mlog_child_fd(), STDERR_FILENO) < 0)
        _exit(126);
    int tmp[64];
    for (int i = 0; i < L->nfd; i++) {
        tmp[i] = fcntl(L->src[i], F_DUPFD, 3 + L->nfd);
        if (tmp[i] < 0)
            _exit(126);
    }
    for (int i = 0; i < L->nfd; i++) {
        if (dup2(tmp[i], 3 + i) < 0)
            _exit(126);
    }
    /* O_NONBLOCK stays as master set it: it is shared by every holder */
    close_range((unsigned)(3 + L->nfd), ~0U, 0);
    execve(L->path, L->argv, L->envp);
    log_error("cannot execute %s: %m", L->path);   /* stderr or syslog, as master */
    _exit(127);
}

static pid_t start_child(int svc, int *rfd_r)
{
    struct launch L;
    int rp[2];
    if (pipe2(rp, O_CLOEXEC) < 0) {
        log_error("cannot start %s: pipe: %m", services[svc].name);
        return -1;
    }
    buf_t fdenv, readyenv;
    buf_init(&fdenv, 64);
    buf_init(&readyenv, 32);
    launch_prepare(&L, svc, &fdenv, &readyenv, rp[1]);
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    sigset_t old;
    msignal_block(&old);
    pid_t pid = fork();
    if (pid == 0)
        launch_exec(&L, devnull);
    int saved = errno;
    msignal_restore(&old);
    if (devnull >= 0)
        close(devnull);
    close(rp[1]);
    free(L.envp);
    buf_free(&fdenv);
    buf_free(&readyenv);
    if (pid < 0) {
        close(rp[0]);
        log_error("cannot fork %s: %s", services[svc].name, strerror(saved));
        return -1;
    }
    fcntl(rp[0], F_SETFL, O_NONBLOCK);
    *rfd_r = rp[0];
    return pid;
}

int64_t spawn_due(int64_t now)
{
    int64_t wait = -1;
    if (M.stopping)
        return -1;
    for (int i = 0; i < NSERVICES; i++) {
        if (services[i].singleton && retired_of(i) > 0)
            continue;   /* started when the old instance exits (spawn_reap) */
        for (int k = 0; k < state[i].n; k++) {
            struct slot *sl = &state[i].slots[k];
            if (sl->pid != 0)
                continue;
            if (sl->next > now) {
                if (wait < 0 || sl->next - now < wait)
                    wait = sl->next - now;
                continue;
            }
            int rfd = -1;
            pid_t pid = start_child(i, &rfd);
            if (pid < 0) {
                sl->next = now + 1000;
                if (wait < 0 || wait > 1000)
                    wait = 1000;
                continue;
            }
            sl->pid = pid;
            sl->rfd = rfd;
            sl->ready = 0;
            sl->started = now;
            sl->since = time(NULL);
            status_dirty = 1;
            if (sl->fails > 0) {
                struct log_ev e;
                log_ev_init(&e, LE_DAEMON_RESTART);
                log_ev_str(&e, LF_SERVICE, services[i].name);
                log_ev_num(&e, LF_CHILD, pid);
                log_ev_num(&e, LF_RESTARTS, sl->restarts);
                log_ev_emit(&e);
            } else
                log_debug("process %s started (pid %ld)", services[i].name, (long)pid);
        }
    }
    return wait;
}

static void describe(buf_t *b, int status)
{
    if (WIFSIGNALED(status))
        buf_printf(b, "killed by signal %d%s", WTERMSIG(status),
                   WCOREDUMP(status) ? " (core dumped)" : "");
    else if (WIFEXITED(status))
        buf_printf(b, "exit status %d", WEXITSTATUS(status));
    else
        buf_printf(b, "status 0x%x", status);
}

static int reap_retired(pid_t pid, int status)
{
    for (int i = 0; i < nretired; i++) {
        if (retired[i].pid != pid)
            continue;
        buf_t b;
        buf_init(&b, 64);
        describe(&b, status);
        int clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (clean)
            log_debug("process %s pid %ld exited (replaced)", services[retired[i].svc].name,
                      (long)pid);
        else
            log_warn("process %s pid %ld %s (while draining)", services[retired[i].svc].name,
                     (long)pid, b.data);
        buf_free(&b);
        if (retired[i].rfd >= 0) {   /* its last report may still be in the pipe */
            drain_reports(retired[i].rfd, &retired[i].in, RETIRED_SRC(pid), retired[i].svc);
            close(retired[i].rfd);
        }
        buf_free(&retired[i].in);
        mmetrics_child_gone(RETIRED_SRC(pid));
        retired[i] = retired[--nretired];
        return 1;
    }
    return 0;
}

static void reap_slot(pid_t pid, int status, int64_t now)
{
    for (int i = 0; i < NSERVICES; i++)
        for (int k = 0; k < state[i].n; k++) {
            struct slot *sl = &state[i].slots[k];
            if (sl->pid != pid)
                continue;
            sl->pid = 0;
            sl->restarts += !M.stopping;
            svc_restarts[i] += !M.stopping;
            if (sl->rfd >= 0 && sl->ready)   /* its last report may still be in the pipe */
                drain_reports(sl->rfd, &sl->in, SLOT_SRC(i, k), i);
            mmetrics_child_gone(SLOT_SRC(i, k));
            buf_free(&sl->in);
            status_dirty = 1;
            if (sl->rfd >= 0) {
                close(sl->rfd);
                sl->rfd = -1;
            }
            buf_t b;
            buf_init(&b, 64);
            describe(&b, status);
            if (M.stopping) {
                if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                    log_debug("process %s pid %ld exited", services[i].name, (long)pid);
                else
                    log_warn("process %s pid %ld %s", services[i].name, (long)pid, b.data);
                buf_free(&b);
                return;
            }
            if (!sl->ready) {
                log_error("process %s pid %ld %s at start-up", services[i].name, (long)pid,
                          b.data);
                start_failures++;
                if (start_why.data == NULL)
                    buf_init(&start_why, 128);
                buf_printf(&start_why, "process %s %s at start-up (its reason is in the "
                           "mail log)\n", services[i].name, b.data);
            } else {
                struct log_ev e;
                log_ev_init(&e, LE_DAEMON_EXIT);
                log_ev_str(&e, LF_SERVICE, services[i].name);
                log_ev_num(&e, LF_CHILD, pid);
                log_ev_str(&e, LF_REASON, b.data);
                log_ev_emit(&e);
            }
            buf_free(&b);
            if (sl->ready && now - sl->started >= HEALTHY_MS)
                sl->fails = 0;
            sl->ready = 0;
            sl->fails++;
            int64_t delay = 0;
            if (sl->fails > QUICK_RESTARTS) {
                delay = 1000;
                for (int f = QUICK_RESTARTS + 1; f < sl->fails && delay < BACKOFF_MAX_MS; f++)
                    delay *= 2;
                if (delay > BACKOFF_MAX_MS)
                    delay = BACKOFF_MAX_MS;
                log_warn("process %s keeps dying: next start in %lld s", services[i].name,
                         (long long)(delay / 1000));
            }
            sl->next = now + delay;
            return;
        }
    log_debug("reaped unknown child pid %ld", (long)pid);
}

void spawn_reap(int64_t now)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        if (!reap_retired(pid, status))
            reap_slot(pid, status, now);
}

/* Slot k of service i lets its process go: told with the service's retire
 * signal, it drains among the retired (reporting until it exits); the
 * slot's pipe and report buffer are handed over or closed. The slot itself
 * is the caller's to reuse or free. */
static void retire_slot(int i, int k)
{
    struct slot *sl = &state[i].slots[k];
    mmetrics_child_gone(SLOT_SRC(i, k));
    if (sl->pid == 0 || !sl->ready || sl->rfd < 0) {
        if (sl->rfd >= 0)
            close(sl->rfd);
        buf_free(&sl->in);
    }
    if (sl->pid == 0)
        return;
    kill(sl->pid, services[i].retire_sig);
    retired = xrealloc(retired, sizeof(*retired) * (size_t)(nretired + 1));
    struct retired *r = &retired[nretired++];
    r->pid = sl->pid;
    r->svc = i;
    r->rfd = -1;
    memset(&r->in, 0, sizeof(r->in));
    if (sl->ready && sl->rfd >= 0) {   /* it keeps reporting while it drains */
        r->rfd = sl->rfd;
        r->in = sl->in;
    }
}

/* A child asked for a replacement (ipc_report_retire): a new process takes
 * its slot now (spawn_due) while the old one drains, as at reload. Not for
 * singletons, whose successor may only start after them. */
static void replace_slot(int i, int k)
{
    struct slot *sl = &state[i].slots[k];
    if (services[i].singleton || M.stopping || sl->pid == 0)
        return;
    log_info("process %s pid %ld replaced: a new one starts, the old one drains",
             services[i].name, (long)sl->pid);
    retire_slot(i, k);
    sl->pid = 0;
    sl->rfd = -1;
    sl->ready = 0;
    memset(&sl->in, 0, sizeof(sl->in));
    sl->next = clock_now_ms();
    status_dirty = 1;
}

void spawn_reload(void)
{
    int64_t now = clock_now_ms();
    for (int i = 0; i < NSERVICES; i++) {
        if (services[i].reload_hup && state[i].n == svc_count(M.cfg, i)) {
            /* filter re-reads the configuration and recompiles its rules
             * itself, keeping the running ones when that fails */
            for (int k = 0; k < state[i].n; k++)
                if (state[i].slots[k].pid > 0)
                    kill(state[i].slots[k].pid, SIGHUP);
            continue;
        }
        for (int k = 0; k < state[i].n; k++)
            retire_slot(i, k);
        free(state[i].slots);
        state[i].n = svc_count(M.cfg, i);
        state[i].slots = xcalloc((size_t)state[i].n, sizeof(struct slot));
        for (int k = 0; k < state[i].n; k++) {
            state[i].slots[k].next = now;
            state[i].slots[k].rfd = -1;
        }
    }
}

static void poll_add(struct pollfd *p, int *n, int max, int fd)
{
    if (fd < 0 || *n >= max)
        return;
    p[*n].fd = fd;
    p[*n].events = POLLIN;
    p[*n].revents = 0;
    (*n)++;
}

int spawn_poll_fds(struct pollfd *p, int max)
{
    int n = 0;
    for (int i = 0; i < NSERVICES; i++)
        for (int k = 0; k < state[i].n; k++)
            poll_add(p, &n, max, state[i].slots[k].rfd);
    for (int i = 0; i < nretired; i++)
        poll_add(p, &n, max, retired[i].rfd);
    return n;
}

/* Append n bytes read from a child's pipe and decode its reports; 0, or
 * -1 when the pipe is to be closed (a bad report). */
static int reports_in(buf_t *in, const char *b, size_t n, int src, const char *proc,
                      int *retire)
{
    if (in->data == NULL)
        buf_init(in, 1024);
    buf_append(in, b, n);
    return mmetrics_input(src, proc, in, retire);
}

/* The ready byte, then metrics reports (lib/ipc/ipc_report.h). */
static void slot_input(int i, int k, struct slot *sl)
{
    char b[16384];
    ssize_t n = read(sl->rfd, b, sizeof(b));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    int off = 0;
    if (n > 0 && !sl->ready) {
        sl->ready = 1;
        status_dirty = 1;
        off = 1;
        log_debug("process %s pid %ld ready", services[i].name, (long)sl->pid);
    }
    if (n > off) {
        int retire = 0;
        int r = reports_in(&sl->in, b + off, (size_t)(n - off), SLOT_SRC(i, k),
                           services[i].name, &retire);
        if (retire)
            replace_slot(i, k);     /* the pipe went with the old process */
        if (r == 0 || retire)
            return;
    } else if (n > 0) {
        return;
    }
    /* n == 0: closed (before ready: its exit tells why), or a bad report */
    close(sl->rfd);
    sl->rfd = -1;
    buf_free(&sl->in);
}

/* A dead child's pipe: whatever it wrote before it exited (no more can
 * come: the writer is gone, so this ends at EOF). */
static void drain_reports(int fd, buf_t *in, int src, int svc)
{
    char b[16384];
    ssize_t n;
    int retire = 0;   /* too late: it is gone */
    for (int i = 0; i < 64 && (n = read(fd, b, sizeof(b))) > 0; i++)
        if (reports_in(in, b, (size_t)n, src, services[svc].name, &retire) < 0)
            return;
}

/* A retired child's reports until it exits (or closes the pipe). */
static void retired_input(struct retired *r)
{
    char b[16384];
    ssize_t n = read(r->rfd, b, sizeof(b));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    int retire = 0;   /* already going */
    if (n > 0 && reports_in(&r->in, b, (size_t)n, RETIRED_SRC(r->pid),
                            services[r->svc].name, &retire) == 0)
        return;
    close(r->rfd);
    r->rfd = -1;
    buf_free(&r->in);
}

void spawn_ready_input(int fd)
{
    for (int i = 0; i < NSERVICES; i++)
        for (int k = 0; k < state[i].n; k++)
            if (state[i].slots[k].rfd == fd) {
                slot_input(i, k, &state[i].slots[k]);
                return;
            }
    for (int i = 0; i < nretired; i++)
        if (retired[i].rfd == fd) {
            retired_input(&retired[i]);
            return;
        }
}

void spawn_metrics(void)
{
    for (int i = 0; i < NSERVICES; i++) {
        int running = 0;
        for (int k = 0; k < state[i].n; k++)
            running += state[i].slots[k].pid > 0;
        mmetrics_set(MET_PROCESSES, running, services[i].name);
        mmetrics_set(MET_PROCESS_RESTARTS, svc_restarts[i], services[i].name);
    }
}

int spawn_all_ready(void)
{
    for (int i = 0; i < NSERVICES; i++)
        for (int k = 0; k < state[i].n; k++)
            if (state[i].slots[k].pid == 0 || !state[i].slots[k].ready)
                return 0;
    return 1;
}

int spawn_take_failures(buf_t *why)
{
    int n = start_failures;
    if (why && start_why.data)
        buf_append_str(why, start_why.data);
    start_failures = 0;
    if (start_why.data)
        buf_reset(&start_why);
    return n;
}

void spawn_signal_all(int sig)
{
    for (int i = 0; i < NSERVICES; i++)
        for (int k = 0; k < state[i].n; k++)
            if (state[i].slots[k].pid > 0)
                kill(state[i].slots[k].pid, sig);
    for (int i = 0; i < nretired; i++)
        kill(retired[i].pid, sig);
}

int spawn_count(void)
{
    int n = nretired;
    for (int i = 0; i < NSERVICES; i++)
        for (int k = 0; k < state[i].n; k++)
            n += state[i].slots[k].pid > 0;
    return n;
}

void spawn_kill_wait(void)
{
    for (int i = 0; i < NSERVICES; i++)
        for (int k = 0; k < state[i].n; k++)
            if (state[i].slots[k].pid > 0)
                log_warn("process %s pid %ld did not stop: killing it", services[i].name,
                         (long)state[i].slots[k].pid);
    for (int i = 0; i < nretired; i++)
        log_warn("process %s pid %ld did not stop: killing it", services[retired[i].svc].name,
                 (long)retired[i].pid);
    spawn_signal_all(SIGKILL);
    while (spawn_count() > 0) {
        int status;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (!reap_retired(pid, status))
            reap_slot(pid, status, clock_now_ms());
    }
}

int spawn_status(buf_t *b)
{
    if (!status_dirty)
        return 0;
    status_dirty = 0;
    for (int i = 0; i < NSERVICES; i++)
        for (int k = 0; k < state[i].n; k++) {
            const struct slot *sl = &state[i].slots[k];
            const char *st = sl->pid == 0 ? "waiting" : sl->ready ? "running" : "starting";
            buf_printf(b, "%s %ld %s %lld %d\n", services[i].name, (long)sl->pid, st,
                       (long long)(sl->pid ? sl->since : 0), sl->restarts);
        }
    return 1;
}
