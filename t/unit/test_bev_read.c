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
struct fix {
    struct event_base *base;
    struct bufferevent *bev;     /* NULL once a callback freed it */
    int sv[2];
    struct seen s;
};

static void setup(struct fix *f, int free_in_read)
{
    memset(f, 0, sizeof(*f));
    f->s.free_in_read = free_in_read;
    f->base = event_base_new();
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, f->sv), 0);
    f->bev = bufferevent_socket_new(f->base, f->sv[0], BEV_OPT_CLOSE_ON_FREE);
    assert_non_null(f->bev);
    bev_read_direct(f->bev);
    bufferevent_setcb(f->bev, on_read, NULL, on_event, &f->s);
    bufferevent_enable(f->bev, EV_READ);
}

static void teardown(struct fix *f)
{
    if (f->bev)
        bufferevent_free(f->bev);
    if (f->sv[1] >= 0)
        close(f->sv[1]);
    event_base_loop(f->base, EVLOOP_NONBLOCK);     /* deferred finalizers */
    event_base_free(f->base);
}

static size_t input_len(const struct fix *f)
{
    return evbuffer_get_length(bufferevent_get_input(f->bev));
}

static void test_data_then_eof(void **state)
{
    (void)state;
    struct fix f;
    setup(&f, 0);
    assert_int_equal(write(f.sv[1], "EHLO x\r\n", 8), 8);
    event_base_loop(f.base, EVLOOP_ONCE);
    assert_int_equal(f.s.reads, 1);
    assert_int_equal(f.s.have, 8);
    assert_memory_equal(evbuffer_pullup(bufferevent_get_input(f.bev), 8), "EHLO x\r\n", 8);
    close(f.sv[1]);
    f.sv[1] = -1;
    event_base_loop(f.base, EVLOOP_ONCE);
    assert_int_equal(f.s.what, BEV_EVENT_READING | BEV_EVENT_EOF);
    assert_int_equal(bufferevent_get_enabled(f.bev) & EV_READ, 0);
    teardown(&f);
}

static void test_read_timeout(void **state)
{
    (void)state;
    struct fix f;
    setup(&f, 0);
    struct timeval tv = { 0, 20000 };
    bufferevent_set_timeouts(f.bev, &tv, NULL);
    event_base_loop(f.base, EVLOOP_ONCE);
    assert_int_equal(f.s.reads, 0);
    assert_int_equal(f.s.what, BEV_EVENT_READING | BEV_EVENT_TIMEOUT);
    assert_int_equal(bufferevent_get_enabled(f.bev) & EV_READ, 0);
    teardown(&f);
}

static void test_high_watermark(void **state)
{
    (void)state;
    struct fix f;
    setup(&f, 0);
    bufferevent_setwatermark(f.bev, EV_READ, 0, 10);
    char big[100];
    memset(big, 'a', sizeof(big));
    assert_int_equal(write(f.sv[1], big, sizeof(big)), (ssize_t)sizeof(big));
    event_base_loop(f.base, EVLOOP_ONCE);
    assert_int_equal(f.s.have, 10);             /* never past the mark */
    event_base_loop(f.base, EVLOOP_NONBLOCK);
    assert_int_equal(input_len(&f), 10);
    evbuffer_drain(bufferevent_get_input(f.bev), 10);   /* below it: reading resumes */
    event_base_loop(f.base, EVLOOP_ONCE);
    assert_int_equal(f.s.have, 10);
    assert_int_equal(f.s.reads, 2);
    teardown(&f);
}

static void test_free_inside_read(void **state)
{
    (void)state;
    struct fix f;
    setup(&f, 1);
    assert_int_equal(write(f.sv[1], "QUIT\r\n", 6), 6);
    event_base_loop(f.base, EVLOOP_ONCE);
    f.bev = NULL;                               /* on_read freed it */
    assert_int_equal(f.s.reads, 1);
    teardown(&f);
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
