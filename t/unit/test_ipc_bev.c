/*
 * test_ipc_bev.c - the event-loop IPC peer (lib/ipc/ipc_bev.c) over a
 * socketpair: HELLO answered, frames delivered in order, the strict
 * failures (no HELLO first, bad frame, EOF) and freeing from a callback.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <cmocka.h>
#include <event2/event.h>

#include "ipc/ipc.h"
#include "ipc/ipc_bev.h"

struct seen {
    int hello, frames, errors;
    enum ipc_peer_why why;
    uint64_t last;
    int free_after;          /* free the peer from on_frame after this many frames */
    struct ipc_peer *p;
};

static void on_hello(struct ipc_peer *p, void *arg)
{
    ((struct seen *)arg)->hello++;
}

static int on_frame(struct ipc_peer *p, enum ipc_type t, union ipc_msg *m, void *arg)
{
    struct seen *s = arg;
    if (t != IPC_FILTER_END)
        return -1;
    s->frames++;
    s->last = m->filter_end.session;
    if (s->free_after && s->frames == s->free_after) {
        ipc_peer_free(p);
        s->p = NULL;
    }
    return 0;
}

static void on_error(struct ipc_peer *p, enum ipc_peer_why why, void *arg)
{
    struct seen *s = arg;
    s->errors++;
    s->why = why;
    ipc_peer_free(p);
    s->p = NULL;
}

static const struct ipc_peer_ops ops = {
    .proto = IPC_PROTO_FILTER, .server = 1, .on_hello = on_hello, .on_frame = on_frame,
    .on_error = on_error,
};

/* Serve one client conversation: the client's bytes are written first. */
static void run(struct seen *s, const buf_t *client, int close_client, int *cfd_r)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct event_base *base = event_base_new();
    s->p = ipc_peer_accept(base, sv[0], "test", &ops, s);
    assert_int_equal(write(sv[1], client->data, client->len), (ssize_t)client->len);
    if (close_client)
        shutdown(sv[1], SHUT_WR);
    for (int i = 0; i < 20; i++) {
        struct timeval tv = { 0, 5000 };
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    ipc_peer_free(s->p);
    event_base_free(base);
    if (cfd_r)
        *cfd_r = sv[1];
    else
        close(sv[1]);
}

static void put_ends(buf_t *b, int n)
{
    for (int i = 1; i <= n; i++) {
        struct ipc_filter_end e = { (uint64_t)i };
        ipc_put_filter_end(b, &e);
    }
}

static void test_hello_and_frames(void **st)
{
    buf_t b;
    buf_init(&b, 256);
    struct ipc_hello h = { IPC_PROTO_FILTER, IPC_VERSION };
    ipc_put_hello(&b, &h);
    put_ends(&b, 3);
    struct seen s = { 0 };
    int cfd;
    run(&s, &b, 0, &cfd);
    assert_int_equal(s.hello, 1);
    assert_int_equal(s.frames, 3);
    assert_int_equal(s.last, 3);
    assert_int_equal(s.errors, 0);
    struct ipc_conn c;                   /* our HELLO came back */
    ipc_conn_init(&c, cfd, "server");
    union ipc_msg m;
    assert_int_equal(ipc_expect(&c, IPC_HELLO, &m), 1);
    assert_int_equal(ipc_hello_ok(&m.hello, IPC_PROTO_FILTER), 0);
    ipc_conn_close(&c);
    buf_free(&b);
}

static void test_no_hello_first(void **st)
{
    buf_t b;
    buf_init(&b, 256);
    put_ends(&b, 1);
    struct seen s = { 0 };
    run(&s, &b, 0, NULL);
    assert_int_equal(s.errors, 1);
    assert_int_equal(s.why, IPC_PEER_HELLO);
    assert_int_equal(s.frames, 0);
    buf_free(&b);
}

static void test_bad_frame_and_eof(void **st)
{
    buf_t b;
    buf_init(&b, 256);
    struct ipc_hello h = { IPC_PROTO_FILTER, IPC_VERSION };
    ipc_put_hello(&b, &h);
    buf_append(&b, "\xff\xff\xff\xff\0\0", 6);
    struct seen s = { 0 };
    run(&s, &b, 0, NULL);
    assert_int_equal(s.why, IPC_PEER_PROTO);
    buf_reset(&b);
    ipc_put_hello(&b, &h);
    struct seen e = { 0 };
    run(&e, &b, 1, NULL);
    assert_int_equal(e.errors, 1);
    assert_int_equal(e.why, IPC_PEER_EOF);
    buf_free(&b);
}

static void test_free_inside_callback(void **st)
{
    buf_t b;
    buf_init(&b, 256);
    struct ipc_hello h = { IPC_PROTO_FILTER, IPC_VERSION };
    ipc_put_hello(&b, &h);
    put_ends(&b, 5);
    struct seen s = { .free_after = 2 };
    run(&s, &b, 0, NULL);
    assert_int_equal(s.frames, 2);       /* nothing delivered after the free */
    assert_int_equal(s.errors, 0);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello_and_frames),
        cmocka_unit_test(test_no_hello_first),
        cmocka_unit_test(test_bad_frame_and_eof),
        cmocka_unit_test(test_free_inside_callback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
