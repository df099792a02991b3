/*
 * delivery.c - the local delivery agent: accept a connection from qmgr on
 * the shared listening socket "local", then serve DELIVER_REQ +
 * DELIVER_RCPT x n -> DELIVER_STATUS x n + DELIVER_DONE until EOF.
 *
 * Several agent processes accept() on the same socket; each serves one
 * connection at a time and blocks while it delivers. SIGTERM sets a flag:
 * the current request is finished, then the process exits. Must never
 * trust the request: the path must be active/<valid queue id> and the
 * recipients are taken from the queue file by index, not from the wire.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "delivery.h"
#include "util/clock.h"
#include "ipc/deliver_agent.h"
#include "ipc/ipc.h"
#include "util/log.h"
#include "daemon/server.h"
#include "mail/spool.h"
#include "local/aliases.h"

/* ---- helpers shared by the mailbox writers ------------------------------ */

void dlv_result_set(struct dlv_result *r, enum dstatus s, const char *dsn, const char *fmt, ...)
{
    va_list ap;
    r->status = s;
    str_copy(r->dsn, sizeof(r->dsn), dsn);
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
    va_end(ap);
}

void dlv_result_errno(struct dlv_result *r, int err, const char *what)
{
    int full = err == ENOSPC || err == EDQUOT;
    dlv_result_set(r, DS_DEFERRED, full ? "4.2.2" : "4.3.0", "%s: %s", what, strerror(err));
}

void dlv_headers(buf_t *out, const char *sender, const char *rcpt)
{
    buf_append_str(out, "Return-Path: <");
    buf_append_printable(out, sender, strlen(sender));
    buf_append_str(out, ">\nDelivered-To: ");
    buf_append_printable(out, rcpt, strlen(rcpt));
    buf_append_char(out, '\n');
}

/* Fallback copy with pread/write. */
static int copy_rw(int in, off_t off, uint64_t len, int out)
{
    char b[65536];
    while (len > 0) {
        size_t want = len < sizeof(b) ? (size_t)len : sizeof(b);
        if (fdio_pread_all(in, b, want, off) < 0 || fdio_write_all(out, b, want) < 0)
            return -1;
        off += (off_t)want;
        len -= want;
    }
    return 0;
}

int dlv_copy_content(const struct dlv_msg *m, int out_fd)
{
    off_t off = m->env->content_off;
    uint64_t len = m->env->content_len;
    while (len > 0) {
        size_t want = len > (1u << 30) ? (1u << 30) : (size_t)len;
        ssize_t n = copy_file_range(m->fd, &off, out_fd, NULL, want, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
                      errno == EOPNOTSUPP || errno == EBADF))
            return copy_rw(m->fd, off, len, out_fd);
        if (n <= 0) {
            if (n == 0)
                errno = EIO;   /* queue file shorter than its content record */
            return -1;
        }
        len -= (uint64_t)n;
    }
    return 0;
}

/* ---- one request --------------------------------------------------------- */

struct req_rcpt {
    uint32_t index;
    int kind;                   /* DELIVER_RCPT.nexthop: -1 = local.mailbox, else enum mailbox_kind */
    struct dlv_result res;
};

/* DELIVER_RCPT.nexthop for the local transport: "" = local.mailbox, or
 * the mailbox kind a rule chose. -2 = unknown. */
static int nexthop_kind(const char *nh)
{
    if (nh[0] == '\0')
        return -1;
    if (strcmp(nh, "maildir") == 0)
        return MBOX_MAILDIR;
    if (strcmp(nh, "mbox") == 0)
        return MBOX_MBOX;
    if (strcmp(nh, "discard") == 0)
        return MBOX_DISCARD;
    return -2;
}

/* The recipient's outcome from its targets: any deferral defers it (a
 * retry re-delivers only what is not there yet: Maildir names are
 * deterministic), else a failed target bounces it, else delivered. */
static void aggregate(struct req_rcpt *rr, uint32_t slot, const struct dlv_targets *t)
{
    const struct dlv_result *worst = NULL;
    for (size_t i = 0; i < t->n; i++) {
        const struct dlv_result *x = &t->v[i].res;
        if (t->v[i].slot != slot)
            continue;
        if (worst == NULL || (x->status == DS_DEFERRED && worst->status != DS_DEFERRED) ||
            (x->status == DS_BOUNCED && worst->status != DS_DEFERRED &&
             worst->status != DS_BOUNCED) ||
            (x->status == DS_DELIVERED && worst->status == DS_DISCARDED))
            worst = x;
    }
    if (worst != NULL)
        rr->res = *worst;
    else
        dlv_result_set(&rr->res, DS_DISCARDED, "2.0.0", "alias expanded to nothing");
}

/* Expand every recipient of an opened message into targets, deliver them
 * (grouped by identity), and set each recipient's outcome. */
static void deliver_all(const struct dlv_msg *m, struct req_rcpt *rr, uint32_t n)
{
    struct dlv_targets t = { 0 };
    uint32_t *qf_index = xcalloc(n, sizeof(*qf_index));
    char *expanded = xcalloc(n, 1);
    for (uint32_t i = 0; i < n; i++) {
        qf_index[i] = rr[i].index;
        if (rr[i].index >= (uint32_t)m->env->nrcpts)
            dlv_result_set(&rr[i].res, DS_DEFERRED, "4.3.5", "no recipient %u", rr[i].index);
        else if (rr[i].kind == -2)
            dlv_result_set(&rr[i].res, DS_DEFERRED, "4.3.5",
                           "nexthop not served by the local transport");
        else if (delivery_seen_delivered_to(m, m->env->rcpts[rr[i].index].addr))
            dlv_result_set(&rr[i].res, DS_BOUNCED, "5.4.6", "mail forwarding loop for %s",
                           m->env->rcpts[rr[i].index].addr);
        else if (delivery_expand(m->cfg, m->env->rcpts[rr[i].index].addr, rr[i].kind, i, &t,
                                 &rr[i].res) == 0)
            expanded[i] = 1;
    }
    delivery_run(m, qf_index, &t);
    for (uint32_t i = 0; i < n; i++)
        if (expanded[i])
            aggregate(&rr[i], i, &t);
    dlv_targets_free(&t);
    free(qf_index);
    free(expanded);
}

/* One DELIVER_STATUS per recipient, then DELIVER_DONE. A status whose
 * reason cannot be encoded (EMSGSIZE) goes out with a short reason and the
 * same outcome (the mail may already be delivered: never turn it into a
 * retry). 0, or -1: the connection is unusable (qmgr defers the rest). */
static int send_statuses(struct ipc_conn *c, const struct req_rcpt *rr, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (deliver_agent_status(c, rr[i].index, (uint32_t)rr[i].res.status, rr[i].res.dsn,
                                 rr[i].res.reason) < 0)
            return -1;
    return deliver_agent_done(c, n);
}

/* Queue files up to this size are read whole, so the content is written
 * from memory (one writev per recipient); larger ones are parsed through
 * qf_read's window and the content copied file to file. */
#define QF_INMEM_MAX (1u << 20)

/* Read all of a size-byte file into a new buffer; NULL with errno (EIO when
 * it is shorter). */
static unsigned char *read_whole(int fd, size_t size)
{
    unsigned char *p = xmalloc(size ? size : 1);
    if (fdio_pread_all(fd, p, size, 0) < 0) {
        free(p);
        return NULL;
    }
    return p;
}

/* Parse the opened queue file fd (deliver_parse_fn): files up to
 * QF_INMEM_MAX whole from memory (kept in *(unsigned char **)arg, which
 * the caller frees), larger ones through qf_read's window. -1 with err set
 * ("fstat: ...", "read: ...", or the validator's words). */
static int parse_file(int fd, struct qf_env *env, void *arg, char *err, size_t errlen)
{
    unsigned char **mem_r = arg;
    struct stat st;
    size_t size = 0;
    if ((*mem_r = qf_pread_small(fd, QF_SMALL_READ, &size)) != NULL)
        return qf_parse(*mem_r, size, env, err, errlen);
    if (fstat(fd, &st) < 0) {
        snprintf(err, errlen, "fstat: %s", strerror(errno));
        return -1;
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > QF_INMEM_MAX)
        return qf_read(fd, env, err, errlen);
    if ((*mem_r = read_whole(fd, (size_t)st.st_size)) == NULL) {
        snprintf(err, errlen, "read: %s", strerror(errno));
        return -1;
    }
    return qf_parse(*mem_r, (size_t)st.st_size, env, err, errlen);
}

/* Serve one DELIVER_REQ (already received in m). -1 = drop the connection. */
static int serve_request(struct server *s, struct ipc_conn *c, union ipc_msg *m)
{
    struct deliver_req req;
    if (deliver_agent_read(c, m, &req) < 0)
        return -1;
    uint32_t n = req.n;
    struct req_rcpt *rr = xcalloc(n, sizeof(*rr));
    for (uint32_t i = 0; i < n; i++) {
        rr[i].index = req.rcpt[i].index;
        rr[i].kind = nexthop_kind(req.rcpt[i].nexthop);
        dlv_result_set(&rr[i].res, DS_DEFERRED, "4.3.0", "not attempted");
    }
    log_set_qid(req.queue_id);
    struct qf_env env;
    unsigned char *mem = NULL;      /* small files, read whole (parse_file) */
    char err[QF_REASON_MAX + 1];
    const char *edsn;
    int fd = deliver_agent_open(&req, "local", parse_file, &mem, &env, &edsn, err, sizeof(err));
    if (fd >= 0) {
        struct dlv_msg msg = { s->cfg, req.queue_id, fd, &env, s->cfg->hostname,
                               mem ? mem + env.content_off : NULL,
                               clock_now_ms() + deliver_agent_budget_ms(DLV_REQUEST_BUDGET_MS) };
        deliver_all(&msg, rr, n);
    } else {
        log_warn("%s", err);
        for (uint32_t i = 0; i < n; i++)
            dlv_result_set(&rr[i].res, DS_DEFERRED, edsn, "%s", err);
    }
    delivery_maildir_sync();   /* fsync new/ once per Maildir before any status */
    free(mem);
    deliver_agent_end(fd, &env, &req);
    int rc = send_statuses(c, rr, n);
    free(rr);
    return rc;
}

int main(int argc, char **argv)
{
    /* the one daemon that keeps CAP_SETUID/CAP_SETGID: it writes each
     * mailbox as its recipient (delivery_ident.c, delivery_run.c) */
    struct server *s = server_init("delivery", argc, argv,
                                   SERVER_F_NO_EVENT | SERVER_F_KEEP_SETID);
    if (s->cfg->hostname == NULL || s->cfg->hostname[0] == '\0')
        log_fatal("hostname not set");
    struct aliases_db *db = aliases_db_new(s->cfg->local_aliases);
    delivery_expand_init(db);
    log_debug("local delivery agent ready");
    deliver_agent_run(s, "local", serve_request);
    aliases_db_free(db);
    config_free(s->cfg);
    free(s->fds);
    free(s);
    return 0;
}
