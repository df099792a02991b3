/*
 * tls-source.c - a small smtp-source with STARTTLS, for `make bench`
 * (scenario tls). Built by bench/run.sh:  cc -O2 -o tls-source tls-source.c -lssl -lcrypto -lpthread
 *
 *   tls-source [-s SESSIONS] [-m MESSAGES] [-l LENGTH] [-f FROM] [-t TO] [-M FILE] [-P] [-q] HOST:PORT
 *
 * Like smtp-source's default: one message per connection, SESSIONS
 * connections at a time (one thread each, blocking I/O), MESSAGES in all.
 * Each connection: banner, EHLO, STARTTLS, TLS handshake (full: no session
 * resumption, certificate not verified), EHLO, MAIL, RCPT, DATA with a
 * LENGTH-byte body (-M FILE: FILE as the whole message instead, sent as it
 * is: CRLF lines, dot-stuffed; the auth scenario sends a DKIM-signed one),
 * QUIT. -P: plain SMTP (no STARTTLS), to compare the
 * generator with smtp-source. -q (diagnostic): ACK at once (TCP_QUICKACK before
 * every read), which hides a server's Nagle + delayed-ACK stall (a small
 * write held back until the client's delayed ACK, ~40 ms on Linux).
 * Prints "elapsed SECONDS cpu SECONDS ok N failed N" on stdout (cpu = user +
 * system time of this process, to see whether the generator is the
 * bottleneck); exits 1 when any message failed (first error on stderr).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in g_addr;
static SSL_CTX *g_ctx;
static int g_plain, g_quickack, g_total = 100;
static const char *g_from = "a@bench.test", *g_to = "b@bench.test";
static char *g_body;
static int g_whole;             /* -M: g_body is the whole message */
static size_t g_bodylen;
static atomic_int g_next, g_ok, g_failed;
static pthread_mutex_t g_errlock = PTHREAD_MUTEX_INITIALIZER;
static char g_firsterr[512];

struct conn {
    int fd;
    SSL *ssl;
    char buf[8192];
    size_t len;
};

static int conn_read(struct conn *c, char *p, size_t n)
{
    if (g_quickack) {   /* re-armed before every read: the kernel clears it */
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
    }
    if (c->ssl) {
        int r = SSL_read(c->ssl, p, (int)n);
        return r > 0 ? r : -1;
    }
    ssize_t r;
    do r = read(c->fd, p, n); while (r < 0 && errno == EINTR);
    return r > 0 ? (int)r : -1;
}

static int conn_write(struct conn *c, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t r;
        if (c->ssl) {
            r = SSL_write(c->ssl, p, (int)n);
            if (r <= 0)
                return -1;
        } else {
            r = write(c->fd, p, n);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Reads one whole (possibly multi-line) reply; returns its code, -1 on error.
 * Nothing may follow the reply in the buffer (no pipelining here). */
static int reply(struct conn *c, char *text, size_t textsz)
{
    c->len = 0;
    for (;;) {
        /* a complete reply: last line "DDD " ... CRLF */
        size_t start = 0;
        for (size_t i = 0; i + 1 < c->len; i++) {
            if (c->buf[i] == '\r' && c->buf[i + 1] == '\n') {
                if (i - start >= 4 && c->buf[start + 3] == ' ') {
                    if (text) {
                        size_t l = i - start < textsz - 1 ? i - start : textsz - 1;
                        memcpy(text, c->buf + start, l);
                        text[l] = 0;
                    }
                    return atoi(c->buf + start);
                }
                if (i - start < 4 || c->buf[start + 3] != '-')
                    return -1;
                start = i + 2;
            }
        }
        if (c->len == sizeof(c->buf))
            return -1;
        int r = conn_read(c, c->buf + c->len, sizeof(c->buf) - c->len);
        if (r <= 0)
            return -1;
        c->len += (size_t)r;
    }
}

static void fail(const char *fmt, ...)
{
    atomic_fetch_add(&g_failed, 1);
    pthread_mutex_lock(&g_errlock);
    if (!g_firsterr[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g_firsterr, sizeof(g_firsterr), fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&g_errlock);
}

/* cmd: send LINE (may be NULL), expect a reply of class WANT (2 or 3). */
static int cmd(struct conn *c, const char *line, int want, const char *what)
{
    char text[256];
    if (line && conn_write(c, line, strlen(line)) < 0) {
        fail("%s: write failed", what);
        return -1;
    }
    int code = reply(c, text, sizeof(text));
    if (code / 100 != want) {
        fail("%s: %s", what, code < 0 ? "connection lost / bad reply" : text);
        return -1;
    }
    return 0;
}

static void one_message(int n)
{
    struct conn c = { .fd = -1 };
    char line[512];
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c.fd < 0 || connect(c.fd, (struct sockaddr *)&g_addr, sizeof(g_addr)) < 0) {
        fail("connect: %s", strerror(errno));
        goto out;
    }
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct timeval tv = { .tv_sec = 60 };
    setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (cmd(&c, NULL, 2, "banner") < 0 || cmd(&c, "EHLO tls-source.bench.test\r\n", 2, "EHLO") < 0)
        goto out;
    if (!g_plain) {
        if (cmd(&c, "STARTTLS\r\n", 2, "STARTTLS") < 0)
            goto out;
        c.ssl = SSL_new(g_ctx);
        SSL_set_fd(c.ssl, c.fd);
        if (SSL_connect(c.ssl) != 1) {
            char e[256];
            ERR_error_string_n(ERR_get_error(), e, sizeof(e));
            fail("TLS handshake: %s", e);
            goto out;
        }
        if (cmd(&c, "EHLO tls-source.bench.test\r\n", 2, "EHLO after STARTTLS") < 0)
            goto out;
    }
    snprintf(line, sizeof(line), "MAIL FROM:<%s>\r\n", g_from);
    if (cmd(&c, line, 2, "MAIL") < 0)
        goto out;
    snprintf(line, sizeof(line), "RCPT TO:<%s>\r\n", g_to);
    if (cmd(&c, line, 2, "RCPT") < 0 || cmd(&c, "DATA\r\n", 3, "DATA") < 0)
        goto out;
    snprintf(line, sizeof(line),
             "From: <%s>\r\nTo: <%s>\r\nSubject: tls-source message %d\r\n"
             "Message-ID: <%d.%ld@tls-source.bench.test>\r\n\r\n",
             g_from, g_to, n, n, (long)getpid());
    if ((!g_whole && conn_write(&c, line, strlen(line)) < 0) ||
        conn_write(&c, g_body, g_bodylen) < 0) {
        fail("DATA: write failed");
        goto out;
    }
    if (cmd(&c, ".\r\n", 2, "end of DATA") < 0)
        goto out;
    atomic_fetch_add(&g_ok, 1);
    if (conn_write(&c, "QUIT\r\n", 6) == 0)
        reply(&c, NULL, 0);
out:
    if (c.ssl) {
        SSL_shutdown(c.ssl);
        SSL_free(c.ssl);
    }
    if (c.fd >= 0)
        close(c.fd);
}

static void *worker(void *arg)
{
    (void)arg;
    int n;
    while ((n = atomic_fetch_add(&g_next, 1)) < g_total)
        one_message(n);
    return NULL;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    int sessions = 1, length = 2048, o;
    const char *msgfile = NULL;
    while ((o = getopt(argc, argv, "s:m:l:f:t:M:Pq")) != -1) {
        switch (o) {
        case 's': sessions = atoi(optarg); break;
        case 'm': g_total = atoi(optarg); break;
        case 'l': length = atoi(optarg); break;
        case 'f': g_from = optarg; break;
        case 't': g_to = optarg; break;
        case 'M': msgfile = optarg; break;
        case 'P': g_plain = 1; break;
        case 'q': g_quickack = 1; break;
        default: goto usage;
        }
    }
    if (optind != argc - 1 || sessions < 1 || g_total < 1 || length < 0)
        goto usage;
    char *host = strdup(argv[optind]), *colon = strrchr(host, ':');
    if (colon == NULL)
        goto usage;
    *colon = 0;
    g_addr.sin_family = AF_INET;
    g_addr.sin_port = htons((unsigned short)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &g_addr.sin_addr) != 1)
        goto usage;

    if (msgfile) {
        FILE *f = fopen(msgfile, "rb");
        if (f == NULL || fseek(f, 0, SEEK_END) < 0) {
            perror(msgfile);
            return 2;
        }
        long sz = ftell(f);
        rewind(f);
        g_body = malloc((size_t)sz + 1);
        if (sz <= 0 || fread(g_body, 1, (size_t)sz, f) != (size_t)sz) {
            fprintf(stderr, "%s: cannot read\n", msgfile);
            return 2;
        }
        fclose(f);
        g_bodylen = (size_t)sz;
        g_whole = 1;
        length = 0;
    }
    /* body: LENGTH bytes in lines of at most 78 characters + CRLF, then "." */
    if (!g_whole)
        g_body = malloc((size_t)length + 2 * (size_t)(length / 78 + 2) + 8);
    size_t p = 0;
    for (int i = 0; i < length; i++) {
        g_body[p++] = (char)('a' + i % 26);
        if (i % 78 == 77 || i == length - 1) {
            g_body[p++] = '\r';
            g_body[p++] = '\n';
        }
    }
    if (!g_whole)
        g_bodylen = p;

    g_ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(g_ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(g_ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(g_ctx, SSL_OP_NO_TICKET);

    pthread_t *th = calloc((size_t)sessions, sizeof(*th));
    double t0 = now();
    for (int i = 0; i < sessions; i++)
        if (pthread_create(&th[i], NULL, worker, NULL) != 0) {
            fprintf(stderr, "tls-source: pthread_create failed\n");
            return 2;
        }
    for (int i = 0; i < sessions; i++)
        pthread_join(th[i], NULL);
    double el = now() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    printf("elapsed %.3f cpu %.3f ok %d failed %d\n", el, cpu, atomic_load(&g_ok), atomic_load(&g_failed));
    if (atomic_load(&g_failed)) {
        fprintf(stderr, "tls-source: %d of %d failed; first: %s\n", atomic_load(&g_failed), g_total, g_firsterr);
        return 1;
    }
    return 0;
usage:
    fprintf(stderr, "usage: tls-source [-s SESSIONS] [-m MESSAGES] [-l LENGTH] [-f FROM] [-t TO] [-M FILE] [-P] [-q] HOST:PORT\n");
    return 2;
}
