/*
 * rl_svc_smtp.c - the smtp service (rl_services.c): delegate the message to
 * another SMTP server (MAIL, RCPT..., DATA) and return its final reply
 * code, every wait bounded by the timeout and the evaluation deadline.
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
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "util/log.h"
#include "mail/qfile.h"
#include "rules/rl_svc.h"

/* ---- smtp ------------------------------------------------------------------------------------------- */
static int smtp_open(struct rl_service *s, const char **opt, const struct rl_value *val, int nopt,
                     char *err, size_t errlen)
{
    s->address = xstrdup(svc_opt_str(opt, val, nopt, "address", ""));
    if (config_parse_address(s->address, NULL, NULL) < 0) {
        snprintf(err, errlen, "smtp service %s: invalid address \"%s\" (want host:port with a literal "
                 "IP)", s->name, s->address);
        return -1;
    }
    s->timeout = svc_opt_int(opt, val, nopt, "timeout", 60);
    if (s->timeout <= 0 || s->timeout > RL_SVC_TIMEOUT_MAX) {
        snprintf(err, errlen, "smtp service %s: timeout must be between 1s and %ds", s->name,
                 RL_SVC_TIMEOUT_MAX);
        return -1;
    }
    s->helo = xstrdup(svc_opt_str(opt, val, nopt, "helo", "localhost"));
    return 0;
}

static void smtp_close(struct rl_service *s)
{
    free(s->address);
    free(s->helo);
}

/* timeout: the service's, per read or write; cut: the evaluation deadline
 * was the nearer limit of some wait. */
struct sconn { int fd; buf_t in; long timeout; int cut; };

/* Before each blocking call: its limit is the sooner of the timeout and
 * the evaluation deadline. -1: no time left. */
static int s_arm(struct sconn *c)
{
    int64_t ms = svc_wait_ms(c->timeout, &c->cut);
    if (ms <= 0)
        return -1;
    struct timeval tv = { .tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return 0;
}

static int s_connect(struct sconn *c, const struct sockaddr *sa, socklen_t sl)
{
    int fl = fcntl(c->fd, F_GETFL);
    if (fl < 0 || fcntl(c->fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    if (connect(c->fd, sa, sl) < 0) {
        if (errno != EINPROGRESS)
            return -1;
        for (;;) {
            int64_t ms = svc_wait_ms(c->timeout, &c->cut);
            if (ms <= 0)
                return -1;
            struct pollfd pf = { c->fd, POLLOUT, 0 };
            int n = poll(&pf, 1, (int)ms);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return -1;
            break;
        }
        int e = 0;
        socklen_t el = sizeof(e);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0 || e != 0)
            return -1;
    }
    return fcntl(c->fd, F_SETFL, fl);
}

static int s_send(struct sconn *c, const char *p, size_t n)
{
    while (n) {
        if (s_arm(c) < 0)
            return -1;
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Read one (multi-line) reply; code or -1. Text of the last line into text. */
static int s_reply(struct sconn *c, buf_t *text)
{
    for (int lines = 0; lines < 100;) {
        char *nl = memchr(c->in.data, '\n', c->in.len);
        if (nl == NULL) {
            if (c->in.len > 4096)
                return -1;
            char b[1024];
            if (s_arm(c) < 0)
                return -1;
            ssize_t r = recv(c->fd, b, sizeof(b), 0);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                return -1;
            buf_append(&c->in, b, (size_t)r);
            continue;
        }
        size_t ll = (size_t)(nl - c->in.data);
        if (ll < 3)
            return -1;
        int code = (c->in.data[0] - '0') * 100 + (c->in.data[1] - '0') * 10 + (c->in.data[2] - '0');
        int last = ll == 3 || c->in.data[3] != '-';
        size_t tl = ll > 4 ? ll - 4 : 0;
        if (tl && c->in.data[ll - 1] == '\r')
            tl--;
        buf_reset(text);
        buf_printf(text, "%d ", code);
        buf_append_printable(text, c->in.data + 4 > nl ? nl : c->in.data + 4, tl);
        buf_consume(&c->in, ll + 1);
        lines++;
        if (code < 200 || code > 599)
            return -1;
        if (last)
            return code;
    }
    return -1;
}

static int s_cmd(struct sconn *c, buf_t *text, const char *fmt, const char *arg)
{
    buf_t b;
    buf_init(&b, 128);
    buf_printf(&b, fmt, arg);
    int rc = s_send(c, b.data, b.len);
    buf_free(&b);
    return rc < 0 ? -1 : s_reply(c, text);
}

static int smtp_exec(struct rl_service *s, struct rl_vm *vm, const char **args, int nargs, buf_t *out,
                     int *status_r)
{
    struct content ct;
    if (svc_content_open(vm, &ct) < 0)
        return SVC_TEMPFAIL;
    struct sockaddr_storage ss;
    socklen_t sl;
    config_parse_address(s->address, &ss, &sl);
    struct sconn c = { .fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0),
                       .timeout = s->timeout };
    buf_init(&c.in, 1024);
    int code = -1;
    if (c.fd < 0)
        goto done;
    if (s_connect(&c, (struct sockaddr *)&ss, sl) < 0)
        goto done;
    if ((code = s_reply(&c, out)) != 220)
        goto done;
    if ((code = s_cmd(&c, out, "EHLO %s\r\n", s->helo)) != 250 &&
        (code = s_cmd(&c, out, "HELO %s\r\n", s->helo)) != 250)
        goto done;
    if ((code = s_cmd(&c, out, "MAIL FROM:<%s>\r\n", vm->txn->f[RL_MAIL_FROM])) != 250)
        goto done;
    int accepted = 0;
    for (int i = 0; i < vm->txn->nrcpts; i++) {
        code = s_cmd(&c, out, "RCPT TO:<%s>\r\n", vm->txn->rcpts[i]);
        if (code >= 400)
            goto done;
        accepted++;
    }
    if (accepted == 0)
        goto done;
    if ((code = s_cmd(&c, out, "%s", "DATA\r\n")) != 354)
        goto done;
    /* content: LF -> CRLF, dot-stuffed */
    buf_t o;
    buf_init(&o, 16384);
    int bol = 1;
    char chunk[8192];
    for (uint64_t off = 0; off < ct.len;) {
        size_t want = ct.len - off > sizeof(chunk) ? sizeof(chunk) : (size_t)(ct.len - off);
        ssize_t r = pread(ct.fd, chunk, want, ct.off + (off_t)off);
        if (r <= 0)
            break;
        off += (uint64_t)r;
        for (ssize_t i = 0; i < r; i++) {
            if (bol && chunk[i] == '.')
                buf_append_char(&o, '.');
            if (chunk[i] == '\n')
                buf_append_char(&o, '\r');
            buf_append_char(&o, chunk[i]);
            bol = chunk[i] == '\n';
        }
        if (o.len > 8192) {
            if (s_send(&c, o.data, o.len) < 0) {
                buf_free(&o);
                code = -1;
                goto done;
            }
            buf_reset(&o);
        }
    }
    buf_append_str(&o, bol ? ".\r\n" : "\r\n.\r\n");
    code = s_send(&c, o.data, o.len) < 0 ? -1 : s_reply(&c, out);
    buf_free(&o);
    if (code > 0) {
        buf_t q;
        buf_init(&q, 64);
        s_cmd(&c, &q, "%s", "QUIT\r\n");
        buf_free(&q);
    }
done:
    if (c.fd >= 0)
        close(c.fd);
    if (ct.fd >= 0)
        close(ct.fd);
    buf_free(&c.in);
    (void)args;
    (void)nargs;
    if (code < 0) {
        log_warn("rules: service %s: delegation to %s failed: %s%s", s->name, s->address,
                 out->len ? out->data : "no reply",
                 svc_deadline_passed() ?
                 " (evaluation deadline reached)" : "");
        return SVC_TEMPFAIL;
    }
    *status_r = code;
    return SVC_FOUND;
}

const struct rl_svc_ops rl_svc_smtp_ops = {
    SVC_SMTP, "smtp", smtp_open, smtp_close, NULL, NULL, smtp_exec,
};
