/*
 * test_filter_robust.c - values from mail cannot crash a daemon (issue 7):
 * header fields made by rules are capped at 998 octets and folded
 * (lib/filter/filter_mut.c), mutation lists are capped per message, the rules VM
 * caps what one evaluation may record (a runaway rule defers), and the IPC
 * encoder refuses oversized values with -1 instead of aborting.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "util/buf.h"
#include "filter/filter_mut.h"
#include "ipc/ipc.h"
#include "rules/rules.h"

/* "a0000 a0001 ..." : n octets of words and single spaces */
static char *words(size_t n)
{
    char *s = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        s[i] = i % 6 == 5 ? ' ' : (char)('a' + (i / 6) % 26);
    s[n] = '\0';
    return s;
}

/* Unfold a field (drop each "\n" before a blank); NUL-terminated copy. */
static char *unfold(const char *f, size_t len)
{
    char *u = malloc(len + 1);
    size_t k = 0;
    for (size_t i = 0; i < len; i++)
        if (!(f[i] == '\n' && i + 1 < len && (f[i + 1] == ' ' || f[i + 1] == '\t')))
            u[k++] = f[i];
    u[k] = '\0';
    return u;
}

static void check_lines(const buf_t *b, size_t max_line)
{
    assert_true(b->len > 0 && b->data[b->len - 1] == '\n');
    size_t start = 0;
    int first = 1;
    for (size_t i = 0; i < b->len; i++) {
        if (b->data[i] != '\n')
            continue;
        assert_true(i - start <= max_line);
        assert_true(i > start);                       /* no empty line */
        if (!first)
            assert_true(b->data[start] == ' ' || b->data[start] == '\t');
        first = 0;
        start = i + 1;
    }
}

static void test_fold_short_value_one_line(void **st)
{
    buf_t b;
    buf_init(&b, 64);
    filter_hdr_fold(&b, "X-Tag", "  yes \t");
    assert_string_equal(b.data, "X-Tag: yes\n");
    buf_reset(&b);
    filter_hdr_fold(&b, "X-Ctl", "a\r\nb\x01" "c");
    assert_string_equal(b.data, "X-Ctl: a  b c\n");  /* controls as spaces: no injection */
    buf_free(&b);
}

static void test_fold_long_value_capped_and_folded(void **st)
{
    char *v = words(72000);
    buf_t b;
    buf_init(&b, 64);
    filter_hdr_fold(&b, "X-Subj", v);
    check_lines(&b, FILTER_HDR_FOLD);
    char *u = unfold(b.data, b.len - 1);
    size_t ul = strlen(u);
    assert_true(ul <= FILTER_HDR_FIELD_MAX);
    assert_true(ul > FILTER_HDR_FIELD_MAX - 8);
    assert_memory_equal(u, "X-Subj: ", 8);
    assert_memory_equal(u + 8, v, ul - 8);           /* a prefix of the value */
    assert_true(u[ul - 1] != ' ');
    assert_true(v[ul - 8] == ' ');                   /* cut at a blank */
    free(u);
    free(v);
    buf_free(&b);
}

static void test_fold_no_whitespace_hard_cut(void **st)
{
    size_t n = 5000;
    char *v = malloc(n + 1);
    memset(v, 'x', n);
    v[n] = '\0';
    buf_t b;
    buf_init(&b, 64);
    filter_hdr_fold(&b, "X-Long", v);
    /* one line, exactly the cap */
    assert_int_equal(b.len, FILTER_HDR_FIELD_MAX + 1);
    assert_non_null(memchr(b.data, '\n', b.len));
    assert_ptr_equal(memchr(b.data, '\n', b.len), b.data + b.len - 1);
    /* UTF-8: never cut inside a character */
    for (size_t i = 0; i + 1 < n; i += 2) {
        v[i] = (char)0xc3;
        v[i + 1] = (char)0xa9;                       /* é */
    }
    buf_reset(&b);
    filter_hdr_fold(&b, "X-Long", v);                /* 8 + value: an odd cap */
    size_t vl = b.len - 1 - 8;
    assert_true(vl % 2 == 0);
    assert_true(b.len - 1 <= FILTER_HDR_FIELD_MAX);
    assert_true((unsigned char)b.data[b.len - 2] == 0xa9);
    free(v);
    buf_free(&b);
}

static void test_value_cap(void **st)
{
    const char *v = "short value";
    assert_int_equal(filter_hdr_value_cap(5, v, strlen(v)), strlen(v));
    assert_int_equal(filter_hdr_value_cap(5, "ab  ", 4), 2);
    char *w = words(3000);
    size_t k = filter_hdr_value_cap(10, w, 3000);
    assert_true(k + 10 + 2 <= FILTER_HDR_FIELD_MAX && k > 900);
    assert_true(w[k] == ' ');
    free(w);
}

static void test_muts_list_byte_cap(void **st)
{
    struct filter_muts l = { 0 };
    char *v = words(900);
    int added = 0;
    for (int i = 0; i < 200; i++)
        added += filter_muts_add(&l, 256, FILTER_M_ADD_HEADER, "", "X-A", v, "r") == 0;
    assert_true(l.bytes <= FILTER_MUTS_MAX_BYTES);
    assert_int_equal(added, FILTER_MUTS_MAX_BYTES / (900 + 3));
    assert_int_equal(l.n, added);
    /* envelope mutations and quarantine are bounded by count only */
    assert_int_equal(filter_muts_add(&l, 256, FILTER_M_QUARANTINE, "", "q", "", "r"), 0);
    assert_int_equal(filter_muts_add(&l, l.n, FILTER_M_QUARANTINE, "", "q", "", "r"), -1);
    filter_muts_free(&l);
    assert_int_equal(l.bytes, 0);
    free(v);
}

/* ---- the IPC encoder ------------------------------------------------------------- */

static void test_encode_refuses_long_string(void **st)
{
    char *big = malloc(IPC_MAX_STR + 2);
    memset(big, 'a', IPC_MAX_STR + 1);
    big[IPC_MAX_STR + 1] = '\0';
    struct ipc_filter_mut m = { FILTER_M_ADD_HEADER, "", "X-Subj", big, "x" };
    buf_t b;
    buf_init(&b, 64);
    buf_append_str(&b, "keep");
    assert_int_equal(ipc_check(IPC_FILTER_MUT, &m), -1);
    errno = 0;
    assert_int_equal(ipc_put_filter_mut(&b, &m), -1);
    assert_int_equal(errno, EMSGSIZE);
    assert_int_equal(b.len, 4);                      /* out unchanged */
    assert_string_equal(b.data, "keep");
    /* exactly the limit is fine */
    big[IPC_MAX_STR] = '\0';
    assert_int_equal(ipc_check(IPC_FILTER_MUT, &m), 0);
    assert_int_equal(ipc_put_filter_mut(&b, &m), 0);
    assert_true(b.len > IPC_MAX_STR);
    /* a bad type */
    assert_int_equal(ipc_encode(&b, IPC__COUNT, &m), -1);
    buf_free(&b);
    free(big);
}

static void test_encode_refuses_big_frame(void **st)
{
    unsigned char *p = calloc(1, IPC_MAX_FRAME + 1);
    struct ipc_cleanup_data d = { { p, IPC_MAX_FRAME + 1 } };
    buf_t b;
    buf_init(&b, 64);
    assert_int_equal(ipc_put_cleanup_data(&b, &d), -1);       /* the field */
    d.data.len = IPC_MAX_FRAME;
    assert_int_equal(ipc_put_cleanup_data(&b, &d), -1);       /* the whole body */
    assert_int_equal(b.len, 0);
    d.data.len = IPC_MAX_FRAME - 8;                           /* 2 + 6 + data */
    assert_int_equal(ipc_put_cleanup_data(&b, &d), 0);
    assert_int_equal(ipc_frame_len((unsigned char *)b.data, b.len), (long)b.len);
    buf_free(&b);
    free(p);
}

static void test_send_refuses_without_writing(void **st)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct ipc_conn c;
    ipc_conn_init(&c, sv[0], "test");
    char *big = malloc(IPC_MAX_STR + 2);
    memset(big, 'a', IPC_MAX_STR + 1);
    big[IPC_MAX_STR + 1] = '\0';
    struct ipc_filter_mut m = { FILTER_M_ADD_HEADER, "", "X-Subj", big, "x" };
    assert_int_equal(ipc_send(&c, IPC_FILTER_MUT, &m), -1);
    struct ipc_filter_end e = { 42 };
    assert_int_equal(ipc_send(&c, IPC_FILTER_END, &e), 0);
    /* the peer sees only the good frame: the stream is still in step */
    struct ipc_conn r;
    ipc_conn_init(&r, sv[1], "peer");
    enum ipc_type t;
    union ipc_msg u;
    assert_int_equal(ipc_recv(&r, &t, &u), 1);
    assert_int_equal(t, IPC_FILTER_END);
    assert_int_equal(u.filter_end.session, 42);
    ipc_conn_close(&c);
    ipc_conn_close(&r);
    free(big);
}

/* ---- the rules VM ------------------------------------------------------------------ */

static struct rl_program *prog(const char *src)
{
    struct rl_diag d = { 0 };
    struct rl_program *p = rl_compile_buffer("/tmp/t.rules", src, strlen(src), &d);
    for (int i = 0; i < d.n; i++)
        fprintf(stderr, "%d:%d: %s\n", d.v[i].line, d.v[i].col, d.v[i].msg);
    rl_diag_free(&d);
    assert_non_null(p);
    return p;
}

static void test_vm_caps_header_value(void **st)
{
    struct rl_program *p = prog("stage rcpt { action \"x\" { add_header(\"X-Helo\", helo); "
                                "add_rcpt(\"a@b.test\"); } }\n");
    struct rl_txn t;
    struct rl_result r;
    rl_txn_init(&t);
    char *v = words(72000);
    rl_txn_set(&t, RL_HELO, v);
    rl_result_init(&r);
    assert_int_equal(rl_eval(p, STAGE_RCPT, &t, &r), V_NEXT);
    assert_int_equal(r.nmuts, 2);
    size_t n = strlen(r.muts[0].arg2);
    assert_true(n + strlen("X-Helo: ") <= FILTER_HDR_FIELD_MAX);
    assert_true(n > 900);
    assert_memory_equal(r.muts[0].arg2, v, n);
    /* it fits the protocol */
    struct ipc_filter_mut fm = { r.muts[0].kind, r.muts[0].rcpt, r.muts[0].arg, r.muts[0].arg2,
                                 r.muts[0].rule };
    assert_int_equal(ipc_check(IPC_FILTER_MUT, &fm), 0);
    rl_result_free(&r);
    rl_txn_free(&t);
    rl_program_free(p);
    free(v);
}

static void test_vm_refuses_long_address(void **st)
{
    struct rl_program *p = prog("stage rcpt { action \"x\" { add_rcpt(helo); } }\n");
    struct rl_txn t;
    struct rl_result r;
    rl_txn_init(&t);
    char *v = malloc(70001);
    memset(v, 'a', 70000);
    v[70000] = '\0';
    v[100] = '@';
    rl_txn_set(&t, RL_HELO, v);
    rl_result_init(&r);
    assert_int_equal(rl_eval(p, STAGE_RCPT, &t, &r), V_NEXT);
    assert_int_equal(r.nmuts, 0);
    rl_result_free(&r);
    rl_txn_free(&t);
    rl_program_free(p);
    free(v);
}

static void test_vm_mutation_cap_defers(void **st)
{
    struct rl_program *p = prog("stage rcpt { action \"many\" {\n"
                                "  for r in rcpt_list { add_header(\"X-A\", helo); } } }\n");
    struct rl_txn t;
    struct rl_result r;
    rl_txn_init(&t);
    char *v = words(3000);
    rl_txn_set(&t, RL_HELO, v);
    for (int i = 0; i < 100; i++)
        rl_txn_add_rcpt(&t, "bob@example.test");
    rl_result_init(&r);
    assert_int_equal(rl_eval(p, STAGE_RCPT, &t, &r), V_DEFER);
    assert_int_equal(r.nmuts, 0);                    /* a failed evaluation changes nothing */
    assert_string_equal(r.rule, "many");
    /* under the cap: fine */
    rl_txn_free(&t);
    rl_txn_init(&t);
    rl_txn_set(&t, RL_HELO, v);
    for (int i = 0; i < 10; i++)
        rl_txn_add_rcpt(&t, "bob@example.test");
    assert_int_equal(rl_eval(p, STAGE_RCPT, &t, &r), V_NEXT);
    assert_int_equal(r.nmuts, 10);
    /* by count: many tiny mutations */
    rl_program_free(p);
    p = prog("stage rcpt { action \"tiny\" {\n"
             "  for r in rcpt_list { add_header(\"X-A\", \"1\"); } } }\n");
    rl_txn_free(&t);
    rl_txn_init(&t);
    for (int i = 0; i < FILTER_MUTS_MAX + 1; i++)
        rl_txn_add_rcpt(&t, "b@c");
    assert_int_equal(rl_eval(p, STAGE_RCPT, &t, &r), V_DEFER);
    rl_result_free(&r);
    rl_txn_free(&t);
    rl_program_free(p);
    free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fold_short_value_one_line),
        cmocka_unit_test(test_fold_long_value_capped_and_folded),
        cmocka_unit_test(test_fold_no_whitespace_hard_cut),
        cmocka_unit_test(test_value_cap),
        cmocka_unit_test(test_muts_list_byte_cap),
        cmocka_unit_test(test_encode_refuses_long_string),
        cmocka_unit_test(test_encode_refuses_big_frame),
        cmocka_unit_test(test_send_refuses_without_writing),
        cmocka_unit_test(test_vm_caps_header_value),
        cmocka_unit_test(test_vm_refuses_long_address),
        cmocka_unit_test(test_vm_mutation_cap_defers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
