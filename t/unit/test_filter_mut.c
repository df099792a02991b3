/*
 * test_filter_mut.c - mutation lists and verdict assembly (lib/filter/filter_mut.c):
 * copies are owned and sanitised, FILTER_REPLY + nmut FILTER_MUT make one
 * verdict, anything else in between is a protocol error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "filter/filter_mut.h"

static void test_list_bounded_copies(void **st)
{
    struct filter_muts l = { 0 };
    char arg[8] = "X-A";
    for (int i = 0; i < 5; i++)
        filter_muts_add(&l, 3, FILTER_M_ADD_HEADER, NULL, arg, "v", "r");
    arg[0] = 'Y';
    assert_int_equal(l.n, 3);
    assert_string_equal(l.v[0].arg, "X-A");
    assert_string_equal(l.v[2].rcpt, "");
    filter_muts_free(&l);
    assert_int_equal(l.n, 0);
    assert_null(l.v);
}

static void test_rx_reply_with_mutations(void **st)
{
    struct filter_rx rx = { 0 };
    union ipc_msg m;
    m.filter_reply = (struct ipc_filter_reply){ 7, V_ACCEPT, 150, "2.0.0", "ok\r\n", "r", 2 };
    assert_int_equal(filter_rx_feed(&rx, IPC_FILTER_REPLY, &m), FILTER_RX_MORE);
    m.filter_mut = (struct ipc_filter_mut){ FILTER_M_MAILDIR, "a@b", "", "", "route" };
    assert_int_equal(filter_rx_feed(&rx, IPC_FILTER_MUT, &m), FILTER_RX_MORE);
    m.filter_mut = (struct ipc_filter_mut){ FILTER_M_ADD_HEADER, "", "X-\x01", "1", "tag" };
    assert_int_equal(filter_rx_feed(&rx, IPC_FILTER_MUT, &m), FILTER_RX_DONE);
    assert_int_equal(rx.id, 7);
    struct filter_verdict v;
    filter_rx_take(&rx, &v);
    assert_int_equal(v.status, V_ACCEPT);
    assert_int_equal(v.code, 0);                 /* not an SMTP code: the default */
    assert_string_equal(v.text, "ok??");
    assert_int_equal(v.nmuts, 2);
    assert_string_equal(v.muts[1].arg, "X-?");
    filter_verdict_free(&v);
    m.filter_stages = (struct ipc_filter_stages){ 1, 2 };
    assert_int_equal(filter_rx_feed(&rx, IPC_FILTER_STAGES, &m), FILTER_RX_STAGES);
}

static void test_rx_protocol_errors(void **st)
{
    struct filter_rx rx = { 0 };
    union ipc_msg m;
    m.filter_reply = (struct ipc_filter_reply){ 1, V_NEXT, 0, "", "", "", 1 };
    assert_int_equal(filter_rx_feed(&rx, IPC_FILTER_REPLY, &m), FILTER_RX_MORE);
    m.filter_stages = (struct ipc_filter_stages){ 1, 2 };
    assert_int_equal(filter_rx_feed(&rx, IPC_FILTER_STAGES, &m), FILTER_RX_BAD);
    filter_rx_reset(&rx);
    m.filter_reply = (struct ipc_filter_reply){ 1, V__COUNT + 5, 0, "", "", "", 1 };
    assert_int_equal(filter_rx_feed(&rx, IPC_FILTER_REPLY, &m), FILTER_RX_MORE);
    assert_int_equal(rx.v.status, V_TEMPFAIL);
    m.filter_mut = (struct ipc_filter_mut){ FILTER_M__COUNT, "", "", "", "" };
    assert_int_equal(filter_rx_feed(&rx, IPC_FILTER_MUT, &m), FILTER_RX_BAD);
    filter_rx_reset(&rx);
    m.filter_reply = (struct ipc_filter_reply){ 1, V_NEXT, 0, "", "", "",
                                                FILTER_MAX_REPLY_MUTS + 1 };
    assert_int_equal(filter_rx_feed(&rx, IPC_FILTER_REPLY, &m), FILTER_RX_BAD);
    filter_rx_reset(&rx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_bounded_copies),
        cmocka_unit_test(test_rx_reply_with_mutations),
        cmocka_unit_test(test_rx_protocol_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
