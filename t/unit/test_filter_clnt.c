/*
 * test_filter_clnt.c - the event-loop filter client (lib/filter/filter_clnt.c)
 * against a fake filter in the same process and loop, on a Unix socket:
 * HELLO + FILTER_STAGES (every stage counts as having rules before the
 * first), FILTER_STAGES again after a "reload", FILTER_REPLY with its
 * FILTER_MUTs handed to the caller, cancelled requests, the handshake and
 * per-request timeouts, a broken mutation, and reconnecting with backoff
 * (the last stage mask kept meanwhile).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <cmocka.h>
#include <event2/event.h>

#include "filter/filter_clnt.h"
#include "ipc/ipc.h"
#include "ipc/ipc_bev.h"

enum mode {
    M_ANSWER,       /* reply with two mutations, a FILTER_STAGES first */
    M_SILENT,       /* take requests, never answer */
    M_NO_HELLO,     /* accept, say nothing */
    M_CLOSE,        /* close at the first request */
    M_BAD_MUT,      /* announce a mutation, send FILTER_STAGES instead */
};

struct fake {
    enum mode mode;
    int lfd;
    struct event *accept_ev;
    struct ipc_peer *peer;
    int raw_fd;                 /* M_NO_HELLO: the accepted socket, held */
    int accepts, reqs;
};

struct seen {
    int verdicts, none, downs, ups, stages;
    char why[160];
    struct filter_verdict v;    /* the last verdict (copied) */
    uint64_t last_id;
};

static struct event_base *base;
static struct fake fk;
static struct seen sn;
static char sock_path[108];

/* ---- the fake filter ------------------------------------------------------ */
static void srv_hello(struct ipc_peer *p, void *arg)
{
    struct ipc_filter_stages st = { 1u << STAGE_DATA, 0 };
    ipc_peer_send(p, IPC_FILTER_STAGES, &st);
}

static int srv_frame(struct ipc_peer *p, enum ipc_type t, union ipc_msg *m, void *arg)
{
    if (t != IPC_FILTER_REQ)
        return 0;
    fk.reqs++;
    uint64_t id = m->filter_req.id;
    if (fk.mode == M_CLOSE || fk.mode == M_SILENT) {
        if (fk.mode == M_CLOSE) {
            ipc_peer_free(p);
            fk.peer = NULL;
        }
        return 0;
    }
    if (fk.mode == M_BAD_MUT) {
        struct ipc_filter_reply r = { id, V_NEXT, 0, "", "", "", 1 };
        struct ipc_filter_stages st = { 0, 0 };
        ipc_peer_send(p, IPC_FILTER_REPLY, &r);
        ipc_peer_send(p, IPC_FILTER_STAGES, &st);
        return 0;
    }
    struct ipc_filter_stages st = { (1u << STAGE_POSTQ) | (1u << STAGE_DELIVER), 1 };
    ipc_peer_send(p, IPC_FILTER_STAGES, &st);          /* a reload meanwhile */
    struct ipc_filter_reply r = { id, V_ACCEPT, 0, "", "ok\r\n", "route", 2 };
    struct ipc_filter_mut m1 = { FILTER_M_MAILDIR, "a@b.test", "", "", "route" };
    struct ipc_filter_mut m2 = { FILTER_M_ADD_HEADER, "", "X-A", "1", "tag" };
    ipc_peer_send(p, IPC_FILTER_REPLY, &r);
    ipc_peer_send(p, IPC_FILTER_MUT, &m1);
    ipc_peer_send(p, IPC_FILTER_MUT, &m2);
    return 0;
}

static void srv_error(struct ipc_peer *p, enum ipc_peer_why why, void *arg)
{
    ipc_peer_free(p);
    if (fk.peer == p)
        fk.peer = NULL;
}

static const struct ipc_peer_ops srv_ops = {
    .proto = IPC_PROTO_FILTER, .server = 1, .on_hello = srv_hello, .on_frame = srv_frame,
    .on_error = srv_error,
};

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0)
        return;
    fk.accepts++;
    if (fk.mode == M_NO_HELLO) {
        if (fk.raw_fd >= 0)
            close(fk.raw_fd);
        fk.raw_fd = fd;
        return;
    }
    ipc_peer_free(fk.peer);
    fk.peer = ipc_peer_accept(base, fd, "client", &srv_ops, NULL);
}

/* ---- the client's owner ----------------------------------------------------- */
static void c_verdict(uint64_t id, void *arg, struct filter_verdict *v, void *cbarg)
{
    sn.last_id = id;
    if (v == NULL) {
        sn.none++;
        return;
    }
    sn.verdicts++;
    filter_verdict_free(&sn.v);
    sn.v = *v;                  /* steal: the client frees what is left */
    memset(v, 0, sizeof(*v));
}

static void c_down(const char *why, void *arg)
{
    sn.downs++;
    snprintf(sn.why, sizeof(sn.why), "%s", why);
}

static void c_up(int back, void *arg) { sn.ups++; }
static void c_stages(uint32_t mask, uint32_t gen, int first, void *arg) { sn.stages++; }

static const struct filter_clnt_ops c_ops = {
    .on_verdict = c_verdict, .on_stages = c_stages, .on_down = c_down, .on_up = c_up,
};

/* Run the loop until *what reaches want (or about two seconds). */
static void run_until(const int *what, int want)
{
    for (int i = 0; i < 400 && *what < want; i++)
        event_base_loop(base, EVLOOP_ONCE);
    assert_true(*what >= want);
}

static int setup(void **state)
{
    memset(&fk, 0, sizeof(fk));
    memset(&sn, 0, sizeof(sn));
    fk.raw_fd = -1;
    base = event_base_new();
    snprintf(sock_path, sizeof(sock_path), "/tmp/test_filter_clnt.%ld", (long)getpid());
    unlink(sock_path);
    fk.lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock_path);
    assert_int_equal(bind(fk.lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    assert_int_equal(listen(fk.lfd, 4), 0);
    fk.accept_ev = event_new(base, fk.lfd, EV_READ | EV_PERSIST, on_accept, NULL);
    event_add(fk.accept_ev, NULL);
    return 0;
}

static int teardown(void **state)
{
    ipc_peer_free(fk.peer);
    if (fk.raw_fd >= 0)
        close(fk.raw_fd);
    event_free(fk.accept_ev);
    close(fk.lfd);
    unlink(sock_path);
    filter_verdict_free(&sn.v);
    event_base_free(base);
    return 0;
}

static struct filter_clnt *client(int hello_ms, int reply_ms)
{
    struct filter_clnt_conf conf = {
        .path = sock_path, .hello_ms = hello_ms, .reply_ms = reply_ms,
        .backoff_min_ms = 20, .backoff_max_ms = 50,
    };
    return filter_clnt_new(base, &conf, &c_ops, NULL);
}

static int ask(struct filter_clnt *c, enum stage st)
{
    struct ipc_filter_req q;
    filter_req_init(&q, st);
    q.path = "active/X";
    return filter_clnt_ask(c, &q, NULL);
}

/* ---- tests ---------------------------------------------------------------- */
static void test_stages_and_reply_with_mutations(void **state)
{
    fk.mode = M_ANSWER;
    struct filter_clnt *c = client(1000, 1000);
    /* before any FILTER_STAGES every stage has rules; asking waits behind
     * the handshake */
    assert_true(filter_clnt_stage_rules(c, STAGE_DELIVER));
    assert_false(filter_clnt_ready(c));
    run_until(&sn.stages, 1);
    assert_true(filter_clnt_ready(c));
    assert_true(filter_clnt_stage_rules(c, STAGE_DATA));
    assert_false(filter_clnt_stage_rules(c, STAGE_DELIVER));
    assert_int_equal(ask(c, STAGE_DELIVER), 0);
    assert_int_equal(filter_clnt_pending(c), 1);
    run_until(&sn.verdicts, 1);
    assert_int_equal(filter_clnt_pending(c), 0);
    assert_int_equal(sn.v.status, V_ACCEPT);
    assert_string_equal(sn.v.text, "ok??");            /* controls flattened */
    assert_string_equal(sn.v.rule, "route");
    assert_int_equal(sn.v.nmuts, 2);
    assert_int_equal(sn.v.muts[0].kind, FILTER_M_MAILDIR);
    assert_string_equal(sn.v.muts[0].rcpt, "a@b.test");
    assert_int_equal(sn.v.muts[1].kind, FILTER_M_ADD_HEADER);
    assert_string_equal(sn.v.muts[1].arg, "X-A");
    assert_string_equal(sn.v.muts[1].arg2, "1");
    assert_true(filter_clnt_stage_rules(c, STAGE_DELIVER));    /* the reload's mask */
    assert_false(filter_clnt_stage_rules(c, STAGE_DATA));
    assert_int_equal(filter_clnt_generation(c), 1);
    assert_int_equal(sn.downs, 0);
    /* a cancelled request: its reply comes and is dropped */
    assert_int_equal(ask(c, STAGE_DELIVER), 0);
    filter_clnt_cancel(c, sn.last_id + 1);
    run_until(&fk.reqs, 2);
    for (int i = 0; i < 20; i++)
        event_base_loop(base, EVLOOP_NONBLOCK);
    assert_int_equal(sn.verdicts, 1);
    assert_int_equal(sn.none, 0);
    assert_int_equal(filter_clnt_pending(c), 0);
    filter_clnt_free(c);
}

static void test_reply_timeout_then_reconnect(void **state)
{
    fk.mode = M_SILENT;
    struct filter_clnt *c = client(1000, 150);
    run_until(&sn.stages, 1);
    assert_int_equal(ask(c, STAGE_DATA), 0);
    run_until(&sn.none, 1);                 /* no answer within 150 ms */
    assert_int_equal(sn.downs, 1);
    assert_string_equal(sn.why, "no answer");
    assert_true(filter_clnt_failing(c));
    assert_int_equal(ask(c, STAGE_DATA), -1);   /* at once while failing */
    /* the mask is kept while filter is away */
    assert_true(filter_clnt_have_stages(c));
    assert_false(filter_clnt_stage_rules(c, STAGE_RCPT));
    /* the client comes back by itself */
    fk.mode = M_ANSWER;
    run_until(&sn.stages, 2);
    assert_int_equal(fk.accepts, 2);
    assert_false(filter_clnt_failing(c));
    assert_int_equal(ask(c, STAGE_DATA), 0);
    run_until(&sn.verdicts, 1);
    filter_clnt_free(c);
}

static void test_no_hello_times_out(void **state)
{
    fk.mode = M_NO_HELLO;
    struct filter_clnt *c = client(150, 1000);
    /* a fresh connection: requests queue behind the handshake */
    assert_int_equal(ask(c, STAGE_MAIL), 0);
    run_until(&sn.downs, 1);
    assert_string_equal(sn.why, "no HELLO from filter");
    assert_int_equal(sn.none, 1);
    assert_int_equal(ask(c, STAGE_MAIL), -1);
    assert_false(filter_clnt_have_stages(c));
    assert_true(filter_clnt_stage_rules(c, STAGE_CONNECT));
    run_until(&fk.accepts, 2);              /* and it tries again */
    filter_clnt_free(c);
}

static void test_closed_by_filter(void **state)
{
    fk.mode = M_CLOSE;
    struct filter_clnt *c = client(1000, 1000);
    run_until(&sn.stages, 1);
    assert_int_equal(ask(c, STAGE_RCPT), 0);
    assert_int_equal(ask(c, STAGE_RCPT), 0);
    filter_clnt_cancel(c, sn.last_id + 2);  /* the second: no callback */
    run_until(&sn.downs, 1);
    assert_string_equal(sn.why, "closed by filter");
    assert_int_equal(sn.none, 1);
    assert_int_equal(filter_clnt_pending(c), 0);
    filter_clnt_free(c);
}

static void test_bad_mutation_drops_connection(void **state)
{
    fk.mode = M_BAD_MUT;
    struct filter_clnt *c = client(1000, 1000);
    run_until(&sn.stages, 1);
    assert_int_equal(ask(c, STAGE_POSTQ), 0);
    run_until(&sn.downs, 1);
    assert_int_equal(sn.none, 1);
    assert_int_equal(sn.verdicts, 0);
    filter_clnt_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stages_and_reply_with_mutations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reply_timeout_then_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_hello_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_closed_by_filter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_mutation_drops_connection, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
