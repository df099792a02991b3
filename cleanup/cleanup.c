/*
 * cleanup.c - the cleanup daemon: builds queue files from what smtpd
 * streams to it and makes them durable before anyone hears "queued".
 *
 * One process: a libevent loop serving every smtpd connection on
 * private/cleanup (cleanup_conn.c), the asynchronous filter client
 * (cleanup_filter.c), the qmgr wakeup client (cleanup_qmgr.c), and a pool of
 * cfg->cleanup_threads fsync workers with a group-committing directory
 * fsync (cleanup_commit.c). At start it removes what an earlier run left in
 * tmp/: those files were never acknowledged to anyone. SIGTERM: stop
 * accepting, let in-flight transactions finish (bounded), exit.
 * Never talks to the outside network.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "cleanup.h"
#include "util/log.h"
#include "ipc/ipc_report.h"
#include "util/fsname.h"
#include "mail/queue.h"

/* Remove files left half-written in tmp/ by a cleanup that is gone: not
 * the ones a draining cleanup or qmgr is writing now (they hold them
 * locked: lib/mail/queue.h). */
static void purge_tmp(void)
{
    int n;
    if (queue_tmp_purge(AT_FDCWD, SPOOL_TMP, SPOOL_RECYCLE_PREFIX, &n) < 0) {
        log_error("opendir %s: %m", SPOOL_TMP);
        return;
    }
    if (n)
        log_info("removed %d unfinished file%s from %s/", n, n == 1 ? "" : "s", SPOOL_TMP);
}

/* The host name as it may appear in Received and Message-ID. */
static void set_hostname(struct cl_ctx *ctx)
{
    const char *h = ctx->cfg->hostname && *ctx->cfg->hostname ? ctx->cfg->hostname : "localhost";
    size_t j = 0;
    for (size_t i = 0; h[i] && j + 1 < sizeof(ctx->hostname); i++) {
        char c = h[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '-' || c == '_';
        ctx->hostname[j++] = ok ? c : '-';
    }
    ctx->hostname[j] = '\0';
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    cl_accept(arg, fd);
}

static void drain_tick(evutil_socket_t fd, short what, void *arg)
{
    struct cl_ctx *ctx = arg;
    ctx->drain_ticks++;
    /* done when every connection is gone too: smtpd closes each after
     * CLEANUP_DRAIN or a last reply, so no transaction it sends is cut */
    if (ctx->ntxn == 0 && clc_inflight(ctx->pool) == 0 && ctx->conns == NULL) {
        log_debug("drained: exiting");
        server_stop_loop(ctx->srv);
    } else if (ctx->drain_ticks >= CL_DRAIN_SECS * 5) {
        log_warn("stopping with %d transaction%s unfinished", ctx->ntxn,
                 ctx->ntxn == 1 ? "" : "s");
        server_stop_loop(ctx->srv);
    }
}

static void on_stop(struct server *s)
{
    struct cl_ctx *ctx = s->ctx;
    server_unlisten(s);
    cl_conn_drain(ctx);
    struct timeval tv = { 0, 200 * 1000 };
    ctx->drain_timer = event_new(s->base, -1, EV_PERSIST, drain_tick, ctx);
    event_add(ctx->drain_timer, &tv);
    ctx->drain_ticks = 0;
    drain_tick(-1, 0, ctx);
}

/* server_init_ex hook: still root, outside the spool's jail */
static int names_with_file;

static void pre_drop(struct server *s, void *arg)
{
    int fd = open(SPOOL_INCOMING, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    names_with_file = fd >= 0 && fs_fsync_covers_name(fd);   /* reads /proc: before a jail */
    if (fd >= 0)
        close(fd);
    cla_pre_drop(s);
    cld_pre_drop(s->cfg);
}

int main(int argc, char **argv)
{
    struct server *s = server_init_ex("cleanup", argc, argv, 0, pre_drop, NULL);
    struct cl_ctx *ctx = xcalloc(1, sizeof(*ctx));
    ctx->srv = s;
    ctx->cfg = s->cfg;
    s->ctx = ctx;
    s->on_stop = on_stop;
    set_hostname(ctx);

    purge_tmp();
    cl_limits_init(ctx);
    ctx->pool = clc_start(s->base, s->cfg->cleanup_threads > 0 ? s->cfg->cleanup_threads : 8,
                          names_with_file, cl_txn_commit_done, ctx);
    cla_start(ctx);
    server_listen(s, "cleanup", SOCK_CLEANUP, on_accept, ctx);
    log_info("ready: %d fsync workers; %s", s->cfg->cleanup_threads > 0 ? s->cfg->cleanup_threads : 8,
             names_with_file ? "a file's fsync makes its name in incoming/ durable (ext4, XFS)"
                             : "incoming/ fsynced once per batch of renames");

    ipc_report_start(s);   /* metrics to master, once a second */
    server_run(s);

    /* the drain timer counts 200 ms ticks */
    cl_conn_close_all(ctx);
    clf_close(ctx);
    clq_close(ctx);
    cla_stop();
    if (clc_inflight(ctx->pool) == 0)
        clc_stop(ctx->pool);
    if (ctx->drain_timer)
        event_free(ctx->drain_timer);
    server_unlisten(s);
    cl_limits_free(ctx);
    log_debug("exiting");
    return 0;
}
