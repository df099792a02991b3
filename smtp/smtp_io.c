/*
 * smtp_io.c - one outgoing SMTP connection (smtp.h): non-blocking socket
 * driven with poll() against a deadline, so every wait ends; plaintext or
 * TLS (after STARTTLS) behind the same read/write calls.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "smtp.h"
#include "tls/tls_client.h"
#include "util/clock.h"
#include "util/log.h"

static int seterr(struct sio *s, const char *fmt, const char *arg)
{
    snprintf(s->err, sizeof(s->err), fmt, arg);
    return -1;
}

static int64_t request_end;   /* sio_request_deadline */

void sio_request_deadline(int64_t ms)
{
    request_end = ms;
}

int sio_request_over(void)
{
    return request_end > 0 && clock_now_ms() >= request_end;
}

/* Wait for events on the socket until deadline (ms), and never past the
 * request's end: 0 ready, -1 timeout/error. */
static int wait_fd(struct sio *s, short events, int64_t deadline)
{
    int budget = request_end > 0 && request_end < deadline;
    if (budget)
        deadline = request_end;
    for (;;) {
        int64_t left = deadline - clock_now_ms();
        if (left <= 0) {
            s->timed_out = 1;
            return seterr(s, "%s", budget ? "timeout (request time budget spent)" : "timeout");
        }
        struct pollfd p = { .fd = s->fd, .events = events };
        int r = poll(&p, 1, left > 1000 ? 1000 : (int)left);
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return seterr(s, "poll: %s", strerror(errno));
    }
}

/* Bind to source (an IP literal, checked by config) when it is of fd's
 * family: a v4 source cannot originate a v6 connection, which then goes
 * from any address. */
static int bind_source(struct sio *s, int family, const char *source)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len;
    if (family == AF_INET &&
        inet_pton(AF_INET, source, &((struct sockaddr_in *)&ss)->sin_addr) == 1)
        len = sizeof(struct sockaddr_in);
    else if (family == AF_INET6 &&
             inet_pton(AF_INET6, source, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1)
        len = sizeof(struct sockaddr_in6);
    else
        return 0;
    ss.ss_family = (sa_family_t)family;
    if (bind(s->fd, (struct sockaddr *)&ss, len) < 0) {
        char what[128];
        snprintf(what, sizeof(what), "bind %s: %s", source, strerror(errno));
        return seterr(s, "%s", what);
    }
    return 0;
}

int sio_connect(struct sio *s, const struct sockaddr *sa, socklen_t len, int timeout,
                const char *source)
{
    memset(s, 0, sizeof(*s));
    s->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0)
        return seterr(s, "socket: %s", strerror(errno));
    if (source && *source && bind_source(s, sa->sa_family, source) < 0)
        return -1;
    if (connect(s->fd, sa, len) == 0)
        return 0;
    if (errno != EINPROGRESS)
        return seterr(s, "%s", strerror(errno));
    if (wait_fd(s, POLLOUT, clock_now_ms() + (int64_t)timeout * 1000) < 0)
        return seterr(s, "%s", "connection timed out");
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr != 0)
        return seterr(s, "%s", strerror(soerr ? soerr : errno));
    return 0;
}

/* Map an SSL_read/SSL_write result: 1 retry after waiting, -1 error. */
static int ssl_wait(struct sio *s, int ret, int64_t deadline)
{
    int e = SSL_get_error(s->ssl, ret);
    if (e == SSL_ERROR_WANT_READ)
        return wait_fd(s, POLLIN, deadline) < 0 ? -1 : 1;
    if (e == SSL_ERROR_WANT_WRITE)
        return wait_fd(s, POLLOUT, deadline) < 0 ? -1 : 1;
    if (e == SSL_ERROR_ZERO_RETURN)
        return seterr(s, "%s", "connection closed");
    buf_t b;
    buf_init(&b, 128);
    tls_errors(&b);
    seterr(s, "TLS: %s", b.len ? b.data : (errno ? strerror(errno) : "connection lost"));
    buf_free(&b);
    return -1;
}

/* Read some bytes into the buffer: >0, or -1 (err set; EOF included). */
static ssize_t fill(struct sio *s, int64_t deadline)
{
    size_t room = sizeof(s->in) - s->len;
    for (;;) {
        ssize_t n;
        if (s->ssl) {
            ERR_clear_error();
            int r = SSL_read(s->ssl, s->in + s->len, (int)room);
            if (r > 0)
                return r;
            if (ssl_wait(s, r, deadline) < 0)
                return -1;
            continue;
        }
        n = read(s->fd, s->in + s->len, room);
        if (n > 0)
            return n;
        if (n == 0)
            return seterr(s, "%s", "connection closed by peer");
        if (errno != EAGAIN && errno != EINTR)
            return seterr(s, "read: %s", strerror(errno));
        if (wait_fd(s, POLLIN, deadline) < 0)
            return -1;
    }
}

int sio_reply(struct sio *s, struct smtp_reply *r, int timeout)
{
    int64_t deadline = clock_now_ms() + (int64_t)timeout * 1000;
    smtp_reply_init(r);
    for (;;) {
        char *nl = memchr(s->in, '\n', s->len);
        if (nl == NULL) {
            if (s->len == sizeof(s->in))
                return seterr(s, "%s", "reply line too long");
            ssize_t n = fill(s, deadline);
            if (n < 0)
                return -1;
            s->len += (size_t)n;
            continue;
        }
        size_t ll = (size_t)(nl - s->in);
        char why[128];
        int rc = smtp_reply_line(r, s->in, ll, why, sizeof(why));
        memmove(s->in, nl + 1, s->len - ll - 1);
        s->len -= ll + 1;
        if (rc < 0)
            return seterr(s, "%s", why);
        if (rc > 0)
            return 0;
    }
}

int sio_write(struct sio *s, const void *p, size_t n, int timeout)
{
    int64_t deadline = clock_now_ms() + (int64_t)timeout * 1000;
    const char *c = p;
    while (n > 0) {
        if (s->ssl) {
            ERR_clear_error();
            int r = SSL_write(s->ssl, c, n > (1u << 30) ? 1 << 30 : (int)n);
            if (r > 0) {
                c += r;
                n -= (size_t)r;
            } else if (ssl_wait(s, r, deadline) < 0) {
                return -1;
            }
            continue;
        }
        ssize_t w = send(s->fd, c, n, MSG_NOSIGNAL);
        if (w > 0) {
            c += w;
            n -= (size_t)w;
        } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
            return seterr(s, "write: %s", strerror(errno));
        } else if (wait_fd(s, POLLOUT, deadline) < 0) {
            return -1;
        }
    }
    return 0;
}

int sio_starttls(struct sio *s, SSL_CTX *ctx, const struct tls_client_peer *peer, int timeout)
{
    int64_t deadline = clock_now_ms() + (int64_t)timeout * 1000;
    if (s->len > 0)   /* bytes after the 220 would be injected into the TLS session */
        return seterr(s, "%s", "plaintext data after the STARTTLS reply");
    buf_t err;
    buf_init(&err, 64);
    s->ssl = tls_client_ssl(ctx, s->fd, peer, &err);
    if (s->ssl == NULL)
        seterr(s, "cannot set up TLS: %s", err.data);
    buf_free(&err);
    if (s->ssl == NULL)
        return -1;
    for (;;) {
        ERR_clear_error();
        int r = SSL_connect(s->ssl);
        if (r == 1)
            return 0;
        if (ssl_wait(s, r, deadline) < 0) {
            if (s->timed_out)
                seterr(s, "%s", "TLS handshake timed out");
            return -1;
        }
    }
}

void sio_close(struct sio *s)
{
    if (s->ssl) {
        SSL_shutdown(s->ssl);   /* best effort: one close_notify, no wait */
        SSL_free(s->ssl);
        s->ssl = NULL;
    }
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}
