/*
 * delivery_forward.c - remote addresses from aliases and .forward files:
 * the message is queued again through private/cleanup (as Postfix local(8)
 * does), one new message per envelope sender (the original sender, or an
 * owner- list's) and local recipient, with every remote address of that sender as its
 * recipients and "Delivered-To: <the local recipient>" on top, which is how
 * a forwarding loop is recognised when the mail comes back
 * (delivery_seen_delivered_to). Every wait is bounded (FORWARD_TIMEOUT_S).
 * Must never report a target delivered before cleanup said the new
 * message is queued durably.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "delivery.h"
#include "ipc/ipc.h"
#include "mail/spool.h"
#include "mail/stage.h"
#include "util/log.h"

#define FORWARD_TIMEOUT_S 120
#define FORWARD_CHUNK     65536
#define HEADER_SCAN_MAX   (256u << 10)

/* Read up to n bytes of content at off (memory or queue file); bytes read. */
static size_t content_at(const struct dlv_msg *m, uint64_t off, unsigned char *p, size_t n)
{
    if (off >= m->env->content_len)
        return 0;
    if (m->env->content_len - off < n)
        n = (size_t)(m->env->content_len - off);
    if (m->content) {
        memcpy(p, m->content + off, n);
        return n;
    }
    return fdio_pread_all(m->fd, p, n, m->env->content_off + (off_t)off) < 0 ? 0 : n;
}

int delivery_seen_delivered_to(const struct dlv_msg *m, const char *rcpt)
{
    static unsigned char h[HEADER_SCAN_MAX];
    size_t n = content_at(m, 0, h, sizeof(h)), rl = strlen(rcpt);
    for (size_t i = 0; i < n;) {
        const unsigned char *nl = memchr(h + i, '\n', n - i);
        size_t len = nl ? (size_t)(nl - (h + i)) : n - i;
        if (len == 0)
            break;                          /* end of the header section */
        const char *l = (const char *)h + i;
        if (len > 13 && strncasecmp(l, "Delivered-To:", 13) == 0) {
            size_t k = 13;
            while (k < len && (l[k] == ' ' || l[k] == '\t'))
                k++;
            size_t e = len;
            while (e > k && (l[e - 1] == ' ' || l[e - 1] == '\t' || l[e - 1] == '\r'))
                e--;
            if (e - k == rl && strncasecmp(l + k, rcpt, rl) == 0)
                return 1;
        }
        i += len + 1;
    }
    return 0;
}

/* One new message for the targets in ts[0..n) (same sender); its outcome
 * in every target. */
static void forward_group(const struct dlv_msg *m, struct dlv_target **ts, size_t n)
{
    struct ipc_conn c;
    char err[256] = "";
    int fd = ipc_connect_unix(SOCK_CLEANUP);
    if (fd < 0) {
        snprintf(err, sizeof(err), "connect %s: %s", SOCK_CLEANUP, strerror(errno));
        goto out_nofd;
    }
    struct timeval tv = { FORWARD_TIMEOUT_S, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    ipc_conn_init(&c, fd, "cleanup");
    const char *sender = ts[0]->sender ? ts[0]->sender : m->env->sender;
    struct ipc_cleanup_begin b = {
        .session = 0, .listener = "local", .sender = sender, .client_ip = "127.0.0.1",
        .client_port = 0, .client_ptr = "localhost", .helo = "localhost", .protocol = "local",
        .auth_user = "", .tls = "", .envid = m->env->envid ? m->env->envid : "",
        .ret = m->env->ret, .flags = QF_F_FORWARDED, .size_hint = 0,
    };
    int ok = ipc_hello_client(&c, IPC_PROTO_CLEANUP) == 0 && ipc_queue(&c, IPC_CLEANUP_BEGIN, &b) == 0;
    for (size_t i = 0; ok && i < n; i++) {
        struct ipc_cleanup_rcpt r = { ts[i]->value, "", 0 };
        ok = ipc_queue(&c, IPC_CLEANUP_RCPT, &r) == 0;
    }
    buf_t head;
    buf_init(&head, 128);
    buf_append_str(&head, "Delivered-To: ");
    buf_append_printable(&head, ts[0]->rcpt, strlen(ts[0]->rcpt));
    buf_append_char(&head, '\n');
    struct ipc_cleanup_data d = { { (const unsigned char *)head.data, head.len } };
    ok = ok && ipc_queue(&c, IPC_CLEANUP_DATA, &d) == 0;
    static unsigned char chunk[FORWARD_CHUNK];
    for (uint64_t off = 0; ok && off < m->env->content_len;) {
        size_t k = content_at(m, off, chunk, sizeof(chunk));
        struct ipc_cleanup_data cd = { { chunk, k } };
        ok = k > 0 && ipc_send(&c, IPC_CLEANUP_DATA, &cd) == 0;
        off += k;
    }
    buf_free(&head);
    struct ipc_cleanup_end e = { 0 };
    union ipc_msg rep;
    if (!ok || ipc_send(&c, IPC_CLEANUP_END, &e) < 0 ||
        ipc_expect(&c, IPC_CLEANUP_REPLY, &rep) != 1) {
        snprintf(err, sizeof(err), "forwarding through cleanup failed");
    } else if (rep.cleanup_reply.status != V_ACCEPT) {
        enum dstatus st = rep.cleanup_reply.code >= 500 ? DS_BOUNCED : DS_DEFERRED;
        for (size_t i = 0; i < n; i++)
            dlv_result_set(&ts[i]->res, st, st == DS_BOUNCED ? "5.3.0" : "4.3.0",
                           "forwarding to %s refused: %u %s", ts[i]->value,
                           rep.cleanup_reply.code, rep.cleanup_reply.text);
    } else {
        log_info("forwarded to %zu address%s as %s", n, n == 1 ? "" : "es",
                 rep.cleanup_reply.queue_id);
        for (size_t i = 0; i < n; i++)
            dlv_result_set(&ts[i]->res, DS_DELIVERED, "2.0.0", "forwarded to %s as %s",
                           ts[i]->value, rep.cleanup_reply.queue_id);
    }
    ipc_conn_close(&c);
out_nofd:
    if (err[0])
        for (size_t i = 0; i < n; i++)
            dlv_result_set(&ts[i]->res, DS_DEFERRED, "4.3.0", "%s", err);
}

void delivery_forward(const struct dlv_msg *m, struct dlv_targets *t)
{
    struct dlv_target **g = xcalloc(t->n ? t->n : 1, sizeof(*g));
    char *done = xcalloc(t->n ? t->n : 1, 1);
    for (size_t i = 0; i < t->n; i++) {
        if (done[i] || t->v[i].kind != T_REMOTE)
            continue;
        size_t n = 0;
        /* one message per sender and local recipient (its Delivered-To) */
        const char *si = t->v[i].sender ? t->v[i].sender : "";
        for (size_t k = i; k < t->n; k++) {
            const char *sk = t->v[k].sender ? t->v[k].sender : "";
            if (!done[k] && t->v[k].kind == T_REMOTE && strcmp(si, sk) == 0 &&
                strcmp(t->v[k].rcpt, t->v[i].rcpt) == 0) {
                g[n++] = &t->v[k];
                done[k] = 1;
            }
        }
        forward_group(m, g, n);
    }
    free(g);
    free(done);
}
