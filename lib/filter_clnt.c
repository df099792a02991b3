/*
 * filter_clnt.c - blocking FILTER_REQ/FILTER_REPLY client (see filter_clnt.h).
 * Never trusts the reply: a wrong id or type kills the handle, the status is
 * range-checked and strings are copied with bounds and without controls.
 */
#include <string.h>
#include <stdlib.h>

#include "filter_clnt.h"
#include "log.h"
#include "spool.h"

struct filter_clnt {
    struct ipc_conn conn;
    uint64_t next_id;
    int dead;
};

struct filter_clnt *filter_clnt_open(const char *path)
{
    if (path == NULL)
        path = SOCK_FILTER;
    int fd = ipc_connect_unix(path);
    if (fd < 0) {
        log_warn("connect %s: %m", path);
        return NULL;
    }
    struct filter_clnt *c = xcalloc(1, sizeof(*c));
    ipc_conn_init(&c->conn, fd, "filter");
    if (ipc_hello_client(&c->conn, IPC_PROTO_FILTER) < 0) {
        log_warn("filter at %s: handshake failed", path);
        filter_clnt_close(c);
        return NULL;
    }
    return c;
}

void filter_req_init(struct ipc_filter_req *req, enum stage stage)
{
    memset(req, 0, sizeof(*req));
    req->stage = stage;
    req->listener = req->client_ip = req->client_ptr = req->helo = req->auth_user = "";
    req->tls_version = req->tls_cipher = req->mail_from = req->rcpt = "";
    req->queue_id = req->path = "";
}

static void copy_text(char *dst, size_t size, const char *src)
{
    size_t i = 0;
    for (; src[i] && i + 1 < size; i++) {
        unsigned char ch = (unsigned char)src[i];
        dst[i] = (ch < 32 || ch == 127) ? '?' : (char)ch;
    }
    dst[i] = '\0';
}

int filter_clnt_ask(struct filter_clnt *c, struct ipc_filter_req *req, struct filter_verdict *v)
{
    memset(v, 0, sizeof(*v));
    v->status = V_TEMPFAIL;
    if (c == NULL || c->dead)
        return -1;
    req->id = ++c->next_id;
    union ipc_msg m;
    if (ipc_send(&c->conn, IPC_FILTER_REQ, req) < 0 ||
        ipc_expect(&c->conn, IPC_FILTER_REPLY, &m) != 1) {
        c->dead = 1;
        return -1;
    }
    if (m.filter_reply.id != req->id) {
        log_warn("filter answered request %llu, expected %llu",
                 (unsigned long long)m.filter_reply.id, (unsigned long long)req->id);
        c->dead = 1;
        return -1;
    }
    v->status = m.filter_reply.status < V__COUNT ? (enum verdict)m.filter_reply.status : V_TEMPFAIL;
    v->code = m.filter_reply.code <= 599 ? (int)m.filter_reply.code : 0;
    copy_text(v->enhanced, sizeof(v->enhanced), m.filter_reply.enhanced);
    copy_text(v->text, sizeof(v->text), m.filter_reply.text);
    copy_text(v->rule, sizeof(v->rule), m.filter_reply.rule);
    return 0;
}

void filter_clnt_close(struct filter_clnt *c)
{
    if (c == NULL)
        return;
    ipc_conn_close(&c->conn);
    free(c);
}
