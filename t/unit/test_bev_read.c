/*
 * test_bev_read.c - lib/util/bev_read.c over a socketpair: data reaches the
 * read callback, EOF and the read timeout reach the event callback as
 * libevent's own reader reports them (reading disabled), the read
 * high-water mark holds, and a read callback may free the bufferevent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "util/bev_read.h"

struct seen {
    int reads;
    short what;              /* last event callback flags */
    size_t have;             /* input length at the last read callback */
    int free_in_read;
};

static void on_read(struct bufferevent *bev, void *arg)
{
    struct seen *s = arg;
    s->reads++;
    s->have = evbuffer_get_length(bufferevent_get_input(bev));
    if (s->free_in_read)
        bufferevent_free(bev);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    ((struct seen *)arg)->what = what;
}

/* A bufferevent on sv[0] reading with bev_read_direct; sv[1] is the peer. */
static struct bufferevent *setup(struct event_base *base, int sv[2], struct seen *s)
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct bufferevent *bev = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
    assert_non_null(bev);
    bev_read_direct(bev);
    bufferevent_setcb(bev, on_read, NULL, on_event, s);
    bufferevent_enable(bev, EV_READ);
    return bev;
}

static void test_data_then_eof(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct seen s = { 0 };
    int sv[2];
    struct bufferevent *bev = setup(base, sv, &s);
    assert_int_equal(write(sv[1], "EHLO x\r\n", 8), 8);
    event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(s.reads, 1);
    assert_int_equal(s.have, 8);
    assert_memory_equal(evbuffer_pullup(bufferevent_get_input(bev), 8), "EHLO x\r\n", 8);
    close(sv[1]);
    event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(s.what, BEV_EVENT_READING | BEV_EVENT_EOF);
    assert_int_equal(bufferevent_get_enabled(bev) & EV_READ, 0);
    bufferevent_free(bev);
    event_base_free(base);
}

static void test_read_timeout(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct seen s = { 0 };
    int sv[2];
    struct bufferevent *bev = setup(base, sv, &s);
    struct timeval tv = { 0, 20000 };
    bufferevent_set_timeouts(bev, &tv, NULL);
    event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(s.reads, 0);
    assert_int_equal(s.what, BEV_EVENT_READING | BEV_EVENT_TIMEOUT);
    assert_int_equal(bufferevent_get_enabled(bev) & EV_READ, 0);
    bufferevent_free(bev);
    close(sv[1]);
    event_base_free(base);
}

static void test_high_watermark(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct seen s = { 0 };
    int sv[2];
    struct bufferevent *bev = setup(base, sv, &s);
    bufferevent_setwatermark(bev, EV_READ, 0, 10);
    char big[100];
    memset(big, 'a', sizeof(big));
    assert_int_equal(write(sv[1], big, sizeof(big)), (ssize_t)sizeof(big));
    event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(s.have, 10);               /* never past the mark */
    event_base_loop(base, EVLOOP_NONBLOCK);
    assert_int_equal(evbuffer_get_length(bufferevent_get_input(bev)), 10);
    evbuffer_drain(bufferevent_get_input(bev), 10);   /* below it: reading resumes */
    event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(s.have, 10);
    assert_int_equal(s.reads, 2);
    bufferevent_free(bev);
    close(sv[1]);
    event_base_free(base);
}

static void test_free_inside_read(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct seen s = { .free_in_read = 1 };
    int sv[2];
    setup(base, sv, &s);
    assert_int_equal(write(sv[1], "QUIT\r\n", 6), 6);
    event_base_loop(base, EVLOOP_ONCE);
    event_base_loop(base, EVLOOP_NONBLOCK);     /* the deferred finalizer */
    assert_int_equal(s.reads, 1);
    close(sv[1]);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_data_then_eof),
        cmocka_unit_test(test_read_timeout),
        cmocka_unit_test(test_high_watermark),
        cmocka_unit_test(test_free_inside_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
