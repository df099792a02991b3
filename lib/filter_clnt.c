/*
 * filter_clnt.c - blocking FILTER_REQ/FILTER_REPLY client (see filter_clnt.h).
 * Never trusts the reply: a wrong id or type kills the handle, the status
 * and mutation kinds are range-checked and strings are copied with bounds
 * and without controls.
 */
#include <string.h>
#include <stdlib.h>

#include "filter_clnt.h"
#include "log.h"
#include "spool.h"

struct filter_clnt {
    struct ipc_conn conn;
    uint64_t next_id;
    uint32_t mask, generation;
    int dead;
};

/* Read the next message that is not FILTER_STAGES (those update the mask).
 * 1 ok, 0 EOF, -1 error. */
static int recv_skip_stages(struct filter_clnt *c, enum ipc_type *t, union ipc_msg *m)
{
    for (;;) {
        int r = ipc_recv(&c->conn, t, m);
        if (r != 1)
            return r;
        if (*t != IPC_FILTER_STAGES)
            return 1;
        c->mask = m->filter_stages.mask;
        c->generation = m->filter_stages.generation;
    }
}

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
    union ipc_msg m;
    if (ipc_hello_client(&c->conn, IPC_PROTO_FILTER) < 0 ||
        ipc_expect(&c->conn, IPC_FILTER_STAGES, &m) != 1) {
        log_warn("filter at %s: handshake failed", path);
        filter_clnt_close(c);
        return NULL;
    }
    c->mask = m.filter_stages.mask;
    c->generation = m.filter_stages.generation;
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

int filter_clnt_ask(struct filter_clnt *c, struct ipc_filter_req *req, struct filter_verdict *v)
{
    memset(v, 0, sizeof(*v));
    v->status = V_TEMPFAIL;
    if (c == NULL || c->dead)
        return -1;
    req->id = ++c->next_id;
    union ipc_msg m;
    enum ipc_type t;
    if (ipc_send(&c->conn, IPC_FILTER_REQ, req) < 0 || recv_skip_stages(c, &t, &m) != 1 ||
        t != IPC_FILTER_REPLY) {
        c->dead = 1;
        return -1;
    }
    if (m.filter_reply.id != req->id) {
        log_warn("filter answered request %llu, expected %llu",
                 (unsigned long long)m.filter_reply.id, (unsigned long long)req->id);
        c->dead = 1;
        return -1;
    }
    uint32_t nmut = m.filter_reply.nmut;
    if (nmut > FILTER_CLNT_MAX_MUTS) {
        log_warn("filter sent %u mutations: protocol error", nmut);
        c->dead = 1;
        return -1;
    }
    filter_verdict_start(v, &m.filter_reply);
    enum verdict st = v->status;
    v->status = V_TEMPFAIL;
    for (uint32_t i = 0; i < nmut; i++) {
        /* the mutations follow the reply at once: nothing else in between */
        if (ipc_expect(&c->conn, IPC_FILTER_MUT, &m) != 1 ||
            filter_verdict_add(v, &m.filter_mut) < 0) {
            log_warn("filter: bad or missing FILTER_MUT %u of %u", i + 1, nmut);
            filter_verdict_free(v);
            v->code = 0;
            c->dead = 1;
            return -1;
        }
    }
    v->status = st;
    return 0;
}

int filter_clnt_stage_on(const struct filter_clnt *c, enum stage s)
{
    return c != NULL && (unsigned)s < 32 && (c->mask & (1u << s)) != 0;
}

uint32_t filter_clnt_generation(const struct filter_clnt *c)
{
    return c ? c->generation : 0;
}

void filter_clnt_close(struct filter_clnt *c)
{
    if (c == NULL)
        return;
    ipc_conn_close(&c->conn);
    free(c);
}
