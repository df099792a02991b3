/*
 * pipe_runner.c - the runners of the pipe agent (privileges: pipe.h).
 *
 * One runner per pipe transport, forked by the agent while it is still
 * root (server_init's pre-drop hook). The runner drops to the transport's
 * user at once (setgroups, setresgid, setresuid, checked; refused for
 * root), then serves requests on a SOCK_SEQPACKET socket pair, one at a
 * time:
 *   agent -> runner  header {magic, argc} + argc NUL-terminated elements,
 *                    with the stdin descriptor (SCM_RIGHTS)
 *   runner -> agent  {magic, end, code} + up to PIPE_OUTPUT_MAX octets of
 *                    the command's stdout/stderr
 * The runner trusts nothing it reads: argc must be its command's, argv[0]
 * and every element without ${...} must equal its own copy, strings must
 * fill the packet exactly; anything else ends the runner. The command
 * runs with execve (no shell) in a new session, cwd /, a small fixed
 * environment, until the transport's timeout; then its process group is
 * killed. The runner dies with the agent (PDEATHSIG).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "pipe.h"
#include "util/clock.h"
#include "util/log.h"

#define PIPE_MAGIC_REQ  0x50495051u   /* "PIPQ" */
#define PIPE_MAGIC_RES  0x50495052u   /* "PIPR" */
#define PIPE_PACKET_MAX (PIPE_ARGBYTES_MAX + 64)
#define PIPE_RUNNERS_MAX 64
#define PIPE_REPLY_SLACK 30           /* seconds the agent waits beyond the timeout */

struct req_hdr { uint32_t magic, argc; };
struct res_hdr { uint32_t magic; int32_t end, code; };

struct runner {
    const struct transport_conf *t;
    int fd;                    /* agent side; -1 = no runner */
    pid_t pid;
    char why[200];             /* why there is none */
};
static struct runner runners[PIPE_RUNNERS_MAX];
static int nrunners;
static const struct config *rcfg;

/* ---- the runner process ------------------------------------------------ */

static int timeout_of(const struct config *cfg, const struct transport_conf *t)
{
    int secs = t->timeout > 0 ? t->timeout : cfg->smtp_command_timeout;
    return secs > PIPE_TIMEOUT_MAX ? PIPE_TIMEOUT_MAX : secs;
}

/* Drop to the transport's user for good. -1 (why) when it cannot be done. */
static int become(const struct transport_conf *t, struct passwd *pw)
{
    gid_t gid = pw->pw_gid;
    if (geteuid() != 0)
        return 0;   /* unprivileged run (make run): everything is that user's anyway */
    if (setgroups(1, &gid) < 0 || setresgid(gid, gid, gid) < 0 ||
        setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0)
        return -1;
    uid_t r, e, s;
    if (getresuid(&r, &e, &s) < 0 || r == 0 || e == 0 || s == 0 || setuid(0) == 0)
        return -1;
    return 0;
}

/* The command's output, kept printable and bounded. */
static void keep_output(struct pipe_result *res, size_t *len, const char *p, size_t n)
{
    for (size_t i = 0; i < n && *len < PIPE_OUTPUT_MAX; i++) {
        unsigned char c = (unsigned char)p[i];
        res->output[(*len)++] = (char)(c < 0x20 || c == 0x7f ? ' ' : c);
    }
    res->output[*len] = '\0';
}

static void child_exec(char **argv, int in_fd, int out_fd, int err_fd, const struct passwd *pw,
                       pid_t runner)
{
    setsid();
    /* a runner that dies (its agent stopped) takes the command with it */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != runner)
        _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int sig = 1; sig < NSIG; sig++)
        signal(sig, SIG_DFL);   /* SIG_IGN would survive execve */
    char home[600], user[300];
    snprintf(home, sizeof(home), "HOME=%s", pw->pw_dir);
    snprintf(user, sizeof(user), "USER=%s", pw->pw_name);
    char *envp[] = { "PATH=/usr/local/bin:/usr/bin:/bin", home, user, NULL };
    if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0 || chdir("/") < 0) {
        int e = errno;
        if (write(err_fd, &e, sizeof(e)) < 0) { /* the runner sees EOF: PE_NOSTART */ }
        _exit(127);
    }
    execve(argv[0], argv, envp);
    int e = errno;
    if (write(err_fd, &e, sizeof(e)) < 0) { /* nothing more to do */ }
    _exit(127);
}

/* Wait for the command (its output until EOF, then its exit) until deadline. */
static void child_wait(pid_t pid, int out_fd, int64_t deadline, struct pipe_result *res)
{
    size_t len = 0;
    char b[4096];
    int open_out = 1, status = 0;
    for (;;) {
        int64_t left = deadline - clock_now_ms();
        if (left <= 0)
            break;
        if (!open_out) {
            pid_t w = waitpid(pid, &status, WNOHANG);
            if (w == pid) {
                res->end = WIFSIGNALED(status) ? PE_SIGNALED : PE_EXITED;
                res->code = WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status);
                return;
            }
            usleep(20000);
            continue;
        }
        struct pollfd p = { .fd = out_fd, .events = POLLIN };
        if (poll(&p, 1, left > 1000 ? 1000 : (int)left) <= 0)
            continue;
        ssize_t n = read(out_fd, b, sizeof(b));
        if (n > 0)
            keep_output(res, &len, b, (size_t)n);
        else if (n == 0 || (errno != EINTR && errno != EAGAIN))
            open_out = 0;
    }
    kill(-pid, SIGKILL);   /* the command and whatever it started */
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    res->end = PE_TIMEOUT;
    res->code = 0;
}

static void run_command(const struct config *cfg, const struct transport_conf *t,
                        const struct passwd *pw, char **argv, int in_fd, struct pipe_result *res)
{
    memset(res, 0, sizeof(*res));
    int out[2], errp[2];
    if (pipe2(out, O_CLOEXEC) < 0) {
        res->end = PE_NOSTART;
        res->code = errno;
        return;
    }
    if (pipe2(errp, O_CLOEXEC) < 0) {
        res->end = PE_NOSTART;
        res->code = errno;
        close(out[0]);
        close(out[1]);
        return;
    }
    int64_t deadline = clock_now_ms() + (int64_t)timeout_of(cfg, t) * 1000;
    pid_t runner = getpid();
    pid_t pid = fork();
    if (pid == 0)
        child_exec(argv, in_fd, out[1], errp[1], pw, runner);
    close(out[1]);
    close(errp[1]);
    int e = 0;
    if (pid < 0) {
        res->end = PE_NOSTART;
        res->code = errno;
    } else if (read(errp[0], &e, sizeof(e)) == (ssize_t)sizeof(e)) {
        waitpid(pid, NULL, 0);
        res->end = PE_NOSTART;
        res->code = e;
    } else {
        child_wait(pid, out[0], deadline, res);
    }
    close(out[0]);
    close(errp[0]);
}

/* Parse and check one request against the transport's command: argv
 * (pointing into pkt) or NULL. */
static char **check_request(const struct transport_conf *t, char *pkt, size_t n)
{
    struct req_hdr h;
    if (n < sizeof(h) || pkt[n - 1] != '\0')
        return NULL;
    memcpy(&h, pkt, sizeof(h));
    if (h.magic != PIPE_MAGIC_REQ || h.argc != (uint32_t)t->command.n)
        return NULL;
    char **argv = xcalloc((size_t)h.argc + 1, sizeof(char *));
    char *p = pkt + sizeof(h), *end = pkt + n;
    for (uint32_t i = 0; i < h.argc; i++) {
        if (p >= end) {
            free(argv);
            return NULL;
        }
        argv[i] = p;
        const char *tmpl = t->command.v[i];
        if ((i == 0 || strstr(tmpl, "${") == NULL) && strcmp(p, tmpl) != 0) {
            free(argv);
            return NULL;
        }
        p += strlen(p) + 1;
    }
    if (p != end) {
        free(argv);
        return NULL;
    }
    return argv;
}

/* Receive one packet with at most one descriptor: length, 0 = EOF, -1. */
static ssize_t recv_packet(int sock, char *pkt, size_t size, int *fd_r)
{
    union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int))]; } cm;
    struct iovec iov = { pkt, size };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b,
                         .msg_controllen = sizeof(cm.b) };
    *fd_r = -1;
    ssize_t n;
    do
        n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); n >= 0 && c; c = CMSG_NXTHDR(&mh, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            /* one descriptor is expected: any other is closed, never used */
            size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < k; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                if (*fd_r < 0)
                    *fd_r = fd;
                else
                    close(fd);
            }
        }
    if (n >= 0 && (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)))
        n = -1;
    return n;
}

static void runner_main(const struct config *cfg, const struct transport_conf *t,
                        struct passwd *pw, int sock)
{
    char *pkt = xmalloc(PIPE_PACKET_MAX);
    for (;;) {
        int in_fd;
        ssize_t n = recv_packet(sock, pkt, PIPE_PACKET_MAX, &in_fd);
        if (n <= 0)
            _exit(n == 0 ? 0 : 1);
        char **argv = check_request(t, pkt, (size_t)n);
        if (argv == NULL || in_fd < 0) {
            log_error("pipe runner for transport \"%s\": malformed request: stopping", t->name);
            _exit(1);
        }
        struct pipe_result res;
        run_command(cfg, t, pw, argv, in_fd, &res);
        close(in_fd);
        free(argv);
        struct res_hdr h = { PIPE_MAGIC_RES, (int32_t)res.end, (int32_t)res.code };
        size_t olen = strlen(res.output);
        memcpy(pkt, &h, sizeof(h));
        memcpy(pkt + sizeof(h), res.output, olen);
        if (send(sock, pkt, sizeof(h) + olen, MSG_NOSIGNAL) < 0)
            _exit(1);
    }
}

/* Fork the runner of t; fills r (fd, or why). */
static void runner_start(const struct config *cfg, const struct transport_conf *t,
                         struct runner *r)
{
    r->t = t;
    r->fd = -1;
    struct passwd *pw = getpwnam(t->user);
    if (pw == NULL || pw->pw_uid == 0) {
        snprintf(r->why, sizeof(r->why), "user \"%.60s\" of pipe transport \"%.60s\" %s",
                 t->user, t->name, pw ? "is root" : "does not exist");
        log_error("%s", r->why);
        return;
    }
    if (geteuid() != 0 && pw->pw_uid != geteuid())
        log_warn("not started as root: pipe transport \"%s\" runs as uid %u, not as %s",
                 t->name, (unsigned)geteuid(), t->user);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        snprintf(r->why, sizeof(r->why), "socketpair: %s", strerror(errno));
        return;
    }
    r->pid = fork();
    if (r->pid < 0) {
        snprintf(r->why, sizeof(r->why), "fork: %s", strerror(errno));
        close(sv[0]);
        close(sv[1]);
        return;
    }
    if (r->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        /* nothing of the agent's: its listening socket, readiness pipe, other runners */
        if (dup2(sv[1], 3) < 0 || fcntl(3, F_SETFD, FD_CLOEXEC) < 0 ||
            close_range(4, ~0U, 0) < 0 || become(t, pw) < 0) {
            log_error("pipe runner for transport \"%s\": cannot become user %s: %m", t->name,
                      t->user);
            _exit(1);
        }
        prctl(PR_SET_DUMPABLE, 0);
        runner_main(cfg, t, pw, 3);
    }
    close(sv[1]);
    r->fd = sv[0];
}

void pipe_runners_start(const struct config *cfg)
{
    rcfg = cfg;
    for (int i = 0; i < cfg->ntransports && nrunners < PIPE_RUNNERS_MAX; i++)
        if (cfg->transports[i].type == TR_PIPE)
            runner_start(cfg, &cfg->transports[i], &runners[nrunners++]);
}

/* ---- the agent's side -------------------------------------------------------------- */

static void runner_lost(struct runner *r, const char *what)
{
    snprintf(r->why, sizeof(r->why), "runner of pipe transport \"%.60s\" %s", r->t->name, what);
    log_error("%s", r->why);
    close(r->fd);
    r->fd = -1;
    if (r->pid > 0) {
        kill(r->pid, SIGKILL);
        waitpid(r->pid, NULL, 0);
    }
}

static int send_request(struct runner *r, char *const *argv, int argc, int stdin_fd)
{
    buf_t b;
    buf_init(&b, 1024);
    struct req_hdr h = { PIPE_MAGIC_REQ, (uint32_t)argc };
    buf_append(&b, &h, sizeof(h));
    for (int i = 0; i < argc; i++)
        buf_append(&b, argv[i], strlen(argv[i]) + 1);
    union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int))]; } cm;
    memset(&cm, 0, sizeof(cm));
    struct iovec iov = { b.data, b.len };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b,
                         .msg_controllen = sizeof(cm.b) };
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &stdin_fd, sizeof(int));
    ssize_t n;
    do
        n = sendmsg(r->fd, &mh, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    int rc = n == (ssize_t)b.len ? 0 : -1;
    buf_free(&b);
    return rc;
}

int pipe_run(const struct transport_conf *t, char *const *argv, int argc, int stdin_fd,
             struct pipe_result *res, char *why, size_t whylen)
{
    struct runner *r = NULL;
    for (int i = 0; i < nrunners && r == NULL; i++)
        if (strcmp(runners[i].t->name, t->name) == 0)
            r = &runners[i];
    if (r == NULL || r->fd < 0) {
        snprintf(why, whylen, "%s", r ? r->why : "no runner for this transport (restart needed)");
        return -1;
    }
    if (send_request(r, argv, argc, stdin_fd) < 0) {
        runner_lost(r, "does not take requests");
        snprintf(why, whylen, "%s", r->why);
        return -1;
    }
    /* the runner enforces the timeout; a runner that does not answer by
     * then is broken (or stopped) */
    int wait_ms = (timeout_of(rcfg, t) + PIPE_REPLY_SLACK) * 1000;
    int64_t deadline = clock_now_ms() + wait_ms;
    char *pkt = xmalloc(sizeof(struct res_hdr) + PIPE_OUTPUT_MAX + 1);
    ssize_t n = -1;
    for (;;) {
        int64_t left = deadline - clock_now_ms();
        struct pollfd p = { .fd = r->fd, .events = POLLIN };
        int pr = left > 0 ? poll(&p, 1, left > 1000 ? 1000 : (int)left) : 0;
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr > 0)
            n = recv(r->fd, pkt, sizeof(struct res_hdr) + PIPE_OUTPUT_MAX + 1, MSG_TRUNC);
        if (pr != 0 || left <= 0)
            break;
    }
    struct res_hdr h;
    int rc = -1;
    if (n < (ssize_t)sizeof(h) || n > (ssize_t)(sizeof(h) + PIPE_OUTPUT_MAX)) {
        runner_lost(r, n == 0 ? "died" : n < 0 ? "did not answer" : "sent a malformed reply");
    } else {
        memcpy(&h, pkt, sizeof(h));
        if (h.magic != PIPE_MAGIC_RES || h.end < PE_EXITED || h.end > PE_NOSTART) {
            runner_lost(r, "sent a malformed reply");
        } else {
            memset(res, 0, sizeof(*res));
            res->end = (enum pipe_end)h.end;
            res->code = h.code;
            size_t olen = (size_t)n - sizeof(h);
            memcpy(res->output, pkt + sizeof(h), olen);
            res->output[olen] = '\0';
            rc = 0;
        }
    }
    free(pkt);
    if (rc < 0)
        snprintf(why, whylen, "%s", r->why);
    return rc;
}

int pipe_runners_lost(void)
{
    for (int i = 0; i < nrunners; i++)
        if (runners[i].fd < 0 && runners[i].pid > 0)
            return 1;
    return 0;
}
