/*
 * test_filter_clnt.c - the blocking filter client (lib/filter_clnt.c)
 * against a scripted fake filter on a Unix socket: HELLO + FILTER_STAGES at
 * open, FILTER_STAGES between replies, FILTER_REPLY followed by its nmut
 * FILTER_MUTs handed to the caller, and a reply whose mutations are
 * missing killing the handle.
 */
#include <pthread.h>
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

#include "filter_clnt.h"
#include "ipc.h"
#include "rules.h"

static char sock_path[108];

static void *fake_filter(void *arg)
{
    int lfd = *(int *)arg;
    int fd = accept(lfd, NULL, NULL);
    struct ipc_conn c;
    ipc_conn_init(&c, fd, "test");
    union ipc_msg m;
    if (ipc_hello_server(&c, IPC_PROTO_FILTER) < 0)
        return NULL;
    struct ipc_filter_stages st = { 1u << STAGE_DATA, 0 };
    ipc_send(&c, IPC_FILTER_STAGES, &st);
    /* request 1: a reload happened meanwhile, then a reply with 2 mutations */
    if (ipc_expect(&c, IPC_FILTER_REQ, &m) != 1)
        return NULL;
    uint64_t id = m.filter_req.id;
    struct ipc_filter_stages st2 = { (1u << STAGE_POSTQ) | (1u << STAGE_DELIVER), 1 };
    ipc_queue(&c, IPC_FILTER_STAGES, &st2);
    struct ipc_filter_reply r = { id, V_ACCEPT, 0, "", "ok\r\n", "route", 2 };
    ipc_queue(&c, IPC_FILTER_REPLY, &r);
    struct ipc_filter_mut m1 = { FILTER_M_MAILDIR, "a@b.test", "", "", "route" };
    struct ipc_filter_mut m2 = { FILTER_M_ADD_HEADER, "", "X-A", "1", "tag" };
    ipc_queue(&c, IPC_FILTER_MUT, &m1);
    ipc_queue(&c, IPC_FILTER_MUT, &m2);
    ipc_flush(&c);
    /* request 2: announces a mutation, sends something else */
    if (ipc_expect(&c, IPC_FILTER_REQ, &m) != 1)
        return NULL;
    struct ipc_filter_reply r2 = { m.filter_req.id, V_NEXT, 0, "", "", "", 1 };
    ipc_queue(&c, IPC_FILTER_REPLY, &r2);
    ipc_queue(&c, IPC_FILTER_STAGES, &st);
    ipc_flush(&c);
    enum ipc_type t;
    ipc_recv(&c, &t, &m);           /* the client hangs up */
    ipc_conn_close(&c);
    return NULL;
}

static void test_ask_with_mutations(void **state)
{
    (void)state;
    snprintf(sock_path, sizeof(sock_path), "/tmp/test_filter_clnt.%ld", (long)getpid());
    unlink(sock_path);
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock_path);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    assert_int_equal(listen(lfd, 1), 0);
    pthread_t th;
    pthread_create(&th, NULL, fake_filter, &lfd);

    struct filter_clnt *c = filter_clnt_open(sock_path);
    assert_non_null(c);
    assert_true(filter_clnt_stage_on(c, STAGE_DATA));
    assert_false(filter_clnt_stage_on(c, STAGE_DELIVER));

    struct ipc_filter_req q;
    filter_req_init(&q, STAGE_DELIVER);
    q.path = "active/X";
    struct filter_verdict v;
    assert_int_equal(filter_clnt_ask(c, &q, &v), 0);
    assert_int_equal(v.status, V_ACCEPT);
    assert_string_equal(v.text, "ok??");               /* controls flattened */
    assert_string_equal(v.rule, "route");
    assert_int_equal(v.nmuts, 2);
    assert_int_equal(v.muts[0].kind, FILTER_M_MAILDIR);
    assert_string_equal(v.muts[0].rcpt, "a@b.test");
    assert_int_equal(v.muts[1].kind, FILTER_M_ADD_HEADER);
    assert_string_equal(v.muts[1].arg, "X-A");
    assert_string_equal(v.muts[1].arg2, "1");
    assert_string_equal(v.muts[1].rule, "tag");
    assert_true(filter_clnt_stage_on(c, STAGE_DELIVER));   /* the reload's mask */
    assert_int_equal(filter_clnt_generation(c), 1);
    filter_verdict_free(&v);
    assert_int_equal(v.nmuts, 0);

    /* a mutation announced but not sent: tempfail, the handle is dead */
    assert_int_equal(filter_clnt_ask(c, &q, &v), -1);
    assert_int_equal(v.status, V_TEMPFAIL);
    assert_int_equal(v.nmuts, 0);
    filter_verdict_free(&v);
    assert_int_equal(filter_clnt_ask(c, &q, &v), -1);
    filter_verdict_free(&v);
    filter_clnt_close(c);
    pthread_join(th, NULL);
    close(lfd);
    unlink(sock_path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ask_with_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
