/*
 * master_http.c - the metrics endpoint (postern.conf `metrics { address }`),
 * served by master with GNU libmicrohttpd: HTTP parsing is the library's,
 * never ours. It runs inside master's poll loop (MHD_USE_EPOLL with no
 * thread of its own: one epoll descriptor to poll, MHD_run after), so the
 * store needs no lock.
 *
 * Bounded: at most MH_CONNS connections (MH_PER_IP from one address), each
 * with MH_MEMORY octets for its request, MH_TIMEOUT seconds of idleness and
 * MH_LIFE_MS in all (libmicrohttpd's timeout is idleness only: a client
 * sending a byte every few seconds would hold its connection for hours,
 * and MH_PER_IP of them would lock the scraper on that address out);
 * only GET (and HEAD) of /metrics is answered (200), other paths get 404,
 * other methods 405. The address is loopback unless metrics.allow_remote
 * (lib/config checks): there is no authentication.
 * Must never: block master, or let a client make master exit.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <microhttpd.h>

#include "master.h"
#include "util/clock.h"
#include "util/log.h"

#define MH_CONNS    16
#define MH_PER_IP   8
#define MH_TIMEOUT  10u
#define MH_MEMORY   (16 * 1024)
#define MH_LIFE_MS  20000             /* a connection's whole life, however busy */

static struct MHD_Daemon *mhd;
static char *serving;                 /* the address mhd listens on */
/* the open connections and when each must be gone (0: cut already) */
static struct { struct MHD_Connection *c; int64_t end_ms; } conns[MH_CONNS];

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    int started = code == MHD_CONNECTION_NOTIFY_STARTED;
    for (int i = 0; i < MH_CONNS; i++) {
        if (conns[i].c == (started ? NULL : c)) {
            conns[i].c = started ? c : NULL;
            conns[i].end_ms = clock_now_ms() + MH_LIFE_MS;
            return;
        }
    }
}

/* Connections past their life: shut down under libmicrohttpd, which sees
 * the end at its next read or write and closes them as any other. */
static void cut_old(void)
{
    int64_t now = clock_now_ms();
    for (int i = 0; i < MH_CONNS; i++) {
        if (conns[i].c == NULL || conns[i].end_ms == 0 || conns[i].end_ms > now)
            continue;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conns[i].c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci)
            shutdown(ci->connect_fd, SHUT_RDWR);
        conns[i].end_ms = 0;
    }
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, const char *text,
                             const char *ctype)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), (void *)text,
                                                             MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result ok = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload, size_t *upload_size, void **state)
{
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET /metrics\n", "text/plain");
    if (strcmp(url, "/metrics") != 0)
        return reply(c, MHD_HTTP_NOT_FOUND, "not found: try /metrics\n", "text/plain");
    buf_t b;
    buf_init(&b, 16384);
    mmetrics_render(&b);
    size_t len = b.len;
    struct MHD_Response *r = MHD_create_response_from_buffer(len, buf_steal(&b),
                                                             MHD_RESPMEM_MUST_FREE);
    buf_free(&b);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8");
    enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ok;
}

void mhttp_stop(void)
{
    if (mhd)
        MHD_stop_daemon(mhd);
    mhd = NULL;
    memset(conns, 0, sizeof(conns));
    free(serving);
    serving = NULL;
}

int mhttp_configure(void)
{
    const char *want = M.cfg->metrics_address;
    if (want && serving && strcmp(want, serving) == 0)
        return 0;
    mhttp_stop();
    if (want == NULL || *want == '\0')
        return 0;
    struct sockaddr_storage ss;
    socklen_t len;
    if (config_parse_address(want, &ss, &len) < 0) {
        log_error("metrics.address \"%s\": not an address", want);
        return -1;
    }
    unsigned flags = MHD_USE_EPOLL | (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, NULL,
                           MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                           MHD_OPTION_CONNECTION_LIMIT, (unsigned)MH_CONNS,
                           MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)MH_PER_IP,
                           MHD_OPTION_CONNECTION_TIMEOUT, MH_TIMEOUT,
                           MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)MH_MEMORY,
                           MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL,
                           MHD_OPTION_END);
    if (mhd == NULL) {
        log_error("metrics: cannot serve on %s: %m (metrics endpoint off)", want);
        return -1;
    }
    serving = xstrdup(want);
    log_info("metrics: serving http://%s/metrics", want);
    return 0;
}

int mhttp_fd(int64_t *wait_ms)
{
    if (mhd == NULL)
        return -1;
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(mhd, MHD_DAEMON_INFO_EPOLL_FD);
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(mhd, &ms) == MHD_YES && (*wait_ms < 0 || (int64_t)ms < *wait_ms))
        *wait_ms = (int64_t)ms;
    int64_t now = clock_now_ms();
    for (int k = 0; k < MH_CONNS; k++)
        if (conns[k].c && conns[k].end_ms > 0) {
            int64_t left = conns[k].end_ms > now ? conns[k].end_ms - now : 0;
            if (*wait_ms < 0 || left < *wait_ms)
                *wait_ms = left;
        }
    return i ? i->epoll_fd : -1;
}

void mhttp_run(void)
{
    if (mhd) {
        MHD_run(mhd);
        cut_old();
    }
}
