/*
 * test_ipc.c - round trip of every IPC message type, strict decoder
 * refusals, incremental frame extraction and blocking connections
 * (lib/ipc/ipc.c). Fill and compare functions are generated from ipc_msgs.def,
 * and the hand-written sample table must hold exactly one entry per type, so
 * a message added to the .def without a sample fails here.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "util/buf.h"
#include "ipc/ipc.h"
#include "ipc/deliver_agent.h"
#include "util/log.h"
#include "mail/qfile.h"
#include "mail/spool.h"
#include "filter/filter_mut.h"
#include "mail/stage.h"

/* ---- generated fill / compare per message --------------------------------- */

#define NSEEDS 64                    /* seeds are taken modulo this */
static char strpool[NSEEDS * IPC_MAX_FIELDS][80];
static unsigned char bytepool[NSEEDS * IPC_MAX_FIELDS][40];

static void fill_U32(uint32_t *v, unsigned seed, unsigned fi)
{
    *v = 0x80000000u | (seed << 16) | (fi << 8) | 0x5a;
}

static void fill_U64(uint64_t *v, unsigned seed, unsigned fi)
{
    *v = 0xf000000000000000ull | ((uint64_t)seed << 32) | ((uint64_t)fi << 8) | 0xa5;
}

static void fill_STR(const char **v, unsigned seed, unsigned fi)
{
    char *s = strpool[(seed % NSEEDS) * IPC_MAX_FIELDS + fi];
    if (fi == 2)
        s[0] = '\0';                 /* empty strings travel too */
    else
        snprintf(s, sizeof(strpool[0]), "m%u f%u \"q\" \\ \t \x7f caf\xc3\xa9", seed, fi);
    *v = s;
}

static void fill_BYTES(struct ipc_bytes *v, unsigned seed, unsigned fi)
{
    unsigned char *b = bytepool[(seed % NSEEDS) * IPC_MAX_FIELDS + fi];
    for (size_t i = 0; i < sizeof(bytepool[0]); i++)
        b[i] = (unsigned char)(i * 37 + seed + fi);
    b[3] = 0;
    b[4] = 0xff;
    v->p = b;
    v->len = sizeof(bytepool[0]) - seed % 3;
}

static void cmp_U32(const uint32_t *a, const uint32_t *b) { assert_int_equal(*a, *b); }
static void cmp_U64(const uint64_t *a, const uint64_t *b) { assert_true(*a == *b); }
static void cmp_STR(const char *const *a, const char *const *b) { assert_string_equal(*a, *b); }
static void cmp_BYTES(const struct ipc_bytes *a, const struct ipc_bytes *b)
{
    assert_int_equal(a->len, b->len);
    assert_memory_equal(a->p, b->p, a->len);
}

#define IPC_MSG_BEGIN(E, n)                                          \
    static void fill_##n(void *vm, unsigned seed)                    \
    {                                                                \
        struct ipc_##n *m = vm;                                      \
        unsigned fi = 0;
#define IPC_FIELD(n, t, f) fill_##t(&m->f, seed, fi++);
#define IPC_MSG_END(E, n) (void)fi; (void)m; }
#include "ipc/ipc_msgs.def"
#undef IPC_MSG_BEGIN
#undef IPC_FIELD
#undef IPC_MSG_END

#define IPC_MSG_BEGIN(E, n)                                          \
    static void cmp_##n(const void *va, const void *vb)              \
    {                                                                \
        const struct ipc_##n *a = va, *b = vb;
#define IPC_FIELD(n, t, f) cmp_##t(&a->f, &b->f);
#define IPC_MSG_END(E, n) (void)a; (void)b; }
#include "ipc/ipc_msgs.def"
#undef IPC_MSG_BEGIN
#undef IPC_FIELD
#undef IPC_MSG_END

struct gen {
    const char *name;
    void (*fill)(void *m, unsigned seed);
    void (*cmp)(const void *a, const void *b);
    unsigned nfields;
};

#define IPC_MSG_BEGIN(E, n) [IPC_##E] = { #n, fill_##n, cmp_##n, 0
#define IPC_FIELD(n, t, f) + 1
#define IPC_MSG_END(E, n) },
static const struct gen gens[IPC__COUNT] = {
#include "ipc/ipc_msgs.def"
};
#undef IPC_MSG_BEGIN
#undef IPC_FIELD
#undef IPC_MSG_END

/* ---- hand-written samples: one realistic message per type ---------------- */

static void s_hello(union ipc_msg *m) { m->hello = (struct ipc_hello){ IPC_PROTO_CLEANUP, IPC_VERSION }; }
static void s_filter_req(union ipc_msg *m)
{
    m->filter_req = (struct ipc_filter_req){
        .id = 0x123456789abcull, .stage = STAGE_RCPT, .session = 77, .listener = "smtp",
        .client_ip = "192.0.2.1", .client_port = 65535, .client_ptr = "c.example", .helo = "h",
        .auth_user = "", .tls_version = "TLSv1.3", .tls_cipher = "TLS_AES_128_GCM_SHA256",
        .mail_from = "a@b", .rcpt = "x@y", .nrcpt = 3, .queue_id = "", .size = UINT64_MAX,
        .path = "", .spf_result = "softfail", .spf_domain = "b", .dkim_result = "pass",
        .dkim_domains = "a.test b.test",
        .dmarc_result = "fail", .dmarc_policy = "quarantine" };
}
static void s_filter_reply(union ipc_msg *m)
{
    m->filter_reply = (struct ipc_filter_reply){ 9, V_REJECT, 550, "5.7.1", "Relay access denied",
                                                 "relay", 2 };
}
static void s_filter_mut(union ipc_msg *m)
{
    m->filter_mut = (struct ipc_filter_mut){ FILTER_M_ADD_HEADER, "", "X-Spam", "yes", "spam" };
}
static void s_filter_stages(union ipc_msg *m)
{
    m->filter_stages = (struct ipc_filter_stages){ (1u << STAGE_MAIL) | (1u << STAGE_DATA), 3 };
}
static void s_filter_end(union ipc_msg *m) { m->filter_end = (struct ipc_filter_end){ 0x1234500000007ull }; }
static void s_cleanup_mut(union ipc_msg *m)
{
    m->cleanup_mut = (struct ipc_cleanup_mut){ FILTER_M_QUARANTINE, "", "junk", "", "junk rule" };
}
static void s_cleanup_begin(union ipc_msg *m)
{
    m->cleanup_begin = (struct ipc_cleanup_begin){
        .session = 1, .listener = "submission", .sender = "", .client_ip = "::1",
        .client_port = 587, .client_ptr = "localhost", .helo = "me", .protocol = "ESMTPSA",
        .auth_user = "bob@t.example", .auth_domain = "t.example", .tls = "TLSv1.3 X",
        .envid = "e1", .ret = 1,
        .flags = QF_F_SMTPUTF8, .size_hint = 1048576, .spf_result = "pass",
        .spf_domain = "x.example", .received_spf = "Received-SPF: pass (h: ok) identity=helo",
        .local_user = "bob", .local_uid = 1001 };
}
static void s_cleanup_rcpt(union ipc_msg *m)
{
    m->cleanup_rcpt = (struct ipc_cleanup_rcpt){ "r@x", "rfc822;R@X", NOTIFY_FAILURE | NOTIFY_DELAY };
}
static void s_cleanup_data(union ipc_msg *m)
{
    static const unsigned char d[] = "Subject: x\n\n\0body\n";
    m->cleanup_data = (struct ipc_cleanup_data){ { d, sizeof(d) } };
}
static void s_cleanup_end(union ipc_msg *m) { m->cleanup_end = (struct ipc_cleanup_end){ 1 }; }
static void s_cleanup_reply(union ipc_msg *m)
{
    m->cleanup_reply = (struct ipc_cleanup_reply){ V_ACCEPT, "4Q7ZK2M0001ABCD042", 250, "2.0.0",
                                                   "Ok: queued", 2, 1 };
}
static void s_qmgr_wakeup(union ipc_msg *m) { m->qmgr_wakeup = (struct ipc_qmgr_wakeup){ "", 1 }; }
static void s_qmgr_audit(union ipc_msg *m)
{
    m->qmgr_audit = (struct ipc_qmgr_audit){ "queue", "hold", 1, "A1", "root", 0 };
}
static void s_deliver_req(union ipc_msg *m)
{
    m->deliver_req = (struct ipc_deliver_req){ "ABC", "active/ABC", "local", "s@x", 2 };
}
static void s_deliver_rcpt(union ipc_msg *m)
{
    m->deliver_rcpt = (struct ipc_deliver_rcpt){ 1, "u@x", "", "/var/mail/u" };
}
static void s_deliver_status(union ipc_msg *m)
{
    m->deliver_status = (struct ipc_deliver_status){ 1, DS_DEFERRED, "4.2.2", "mailbox full" };
}
static void s_deliver_done(union ipc_msg *m) { m->deliver_done = (struct ipc_deliver_done){ 2, "example.org", 3000 }; }
static void s_metrics(union ipc_msg *m)
{
    static const char text[] = "C\tpostern_messages_accepted_total\tsmtp\t\t3\n";
    m->metrics = (struct ipc_metrics){ { (const unsigned char *)text, sizeof(text) - 1 } };
}

static void s_cleanup_drain(union ipc_msg *m)
{
    m->cleanup_drain = (struct ipc_cleanup_drain){ 0 };
}

static void s_retire(union ipc_msg *m)
{
    m->retire = (struct ipc_retire){ "a library's leak bound" };
}

static const struct sample {
    enum ipc_type t;
    void (*build)(union ipc_msg *m);
} samples[] = {
    { IPC_HELLO, s_hello },
    { IPC_FILTER_REQ, s_filter_req },
    { IPC_FILTER_REPLY, s_filter_reply },
    { IPC_CLEANUP_BEGIN, s_cleanup_begin },
    { IPC_CLEANUP_RCPT, s_cleanup_rcpt },
    { IPC_CLEANUP_DATA, s_cleanup_data },
    { IPC_CLEANUP_END, s_cleanup_end },
    { IPC_CLEANUP_REPLY, s_cleanup_reply },
    { IPC_QMGR_WAKEUP, s_qmgr_wakeup },
    { IPC_DELIVER_REQ, s_deliver_req },
    { IPC_DELIVER_RCPT, s_deliver_rcpt },
    { IPC_DELIVER_STATUS, s_deliver_status },
    { IPC_DELIVER_DONE, s_deliver_done },
    { IPC_FILTER_MUT, s_filter_mut },
    { IPC_FILTER_STAGES, s_filter_stages },
    { IPC_FILTER_END, s_filter_end },
    { IPC_CLEANUP_MUT, s_cleanup_mut },
    { IPC_QMGR_AUDIT, s_qmgr_audit },
    { IPC_METRICS, s_metrics },
    { IPC_RETIRE, s_retire },
    { IPC_CLEANUP_DRAIN, s_cleanup_drain },
};
#define NSAMPLES (sizeof(samples) / sizeof(samples[0]))

/* ---- helpers ---------------------------------------------------------------- */

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Decode b, expect failure with msg in the error. */
static void expect_decode_error(const unsigned char *p, size_t len, const char *msg)
{
    enum ipc_type t;
    union ipc_msg m;
    char err[256] = "";
    assert_int_equal(ipc_decode(p, len, &t, &m, err, sizeof(err)), -1);
    if (strstr(err, msg) == NULL)
        fail_msg("error \"%s\" does not contain \"%s\"", err, msg);
    size_t used = 0;
    long fl = ipc_frame_len(p, len);
    if (fl == (long)len)
        assert_int_equal(ipc_next(p, len, &t, &m, &used, "test"), -1);
}

static void roundtrip(enum ipc_type t, const union ipc_msg *in)
{
    buf_t b;
    buf_init(&b, 64);
    assert_int_equal(ipc_encode(&b, t, in), 0);
    assert_int_equal(ipc_frame_len((unsigned char *)b.data, b.len), (long)b.len);
    enum ipc_type got;
    union ipc_msg out;
    char err[256] = "";
    assert_int_equal(ipc_decode((unsigned char *)b.data, b.len, &got, &out, err, sizeof(err)), 0);
    assert_string_equal(err, "");
    assert_int_equal(got, t);
    gens[t].cmp(in, &out);
    /* re-encoding the decoded message gives the same bytes */
    buf_t b2;
    buf_init(&b2, 64);
    ipc_encode(&b2, got, &out);
    assert_int_equal(b.len, b2.len);
    assert_memory_equal(b.data, b2.data, b.len);
    buf_free(&b2);
    buf_free(&b);
}

/* ---- round trips -------------------------------------------------------------- */

static void test_sample_table_complete(void **state)
{
    (void)state;
    assert_int_equal(NSAMPLES, IPC__COUNT);
    int seen[IPC__COUNT] = { 0 };
    for (size_t i = 0; i < NSAMPLES; i++) {
        assert_true((unsigned)samples[i].t < IPC__COUNT);
        seen[samples[i].t]++;
    }
    for (int t = 0; t < IPC__COUNT; t++) {
        if (seen[t] != 1)
            fail_msg("message %s has %d samples", ipc_type_name((enum ipc_type)t), seen[t]);
        assert_non_null(gens[t].name);
        assert_string_equal(ipc_type_name((enum ipc_type)t), gens[t].name);
        assert_true(gens[t].nfields >= 1 && gens[t].nfields <= IPC_MAX_FIELDS);
    }
    assert_string_equal(ipc_type_name(IPC__COUNT), "unknown");
}

static void test_roundtrip_samples(void **state)
{
    (void)state;
    for (size_t i = 0; i < NSAMPLES; i++) {
        union ipc_msg m;
        memset(&m, 0, sizeof(m));
        samples[i].build(&m);
        roundtrip(samples[i].t, &m);
    }
}

static void test_roundtrip_generated(void **state)
{
    (void)state;
    for (unsigned seed = 0; seed < 3; seed++)
        for (int t = 0; t < IPC__COUNT; t++) {
            union ipc_msg m;
            memset(&m, 0, sizeof(m));
            gens[t].fill(&m, (unsigned)t + seed * 16);
            roundtrip((enum ipc_type)t, &m);
        }
}

static void test_roundtrip_limits(void **state)
{
    (void)state;
    /* longest string, NULL string (sent as ""), biggest BYTES */
    char *big = xmalloc(IPC_MAX_STR + 1);
    memset(big, 'x', IPC_MAX_STR);
    big[IPC_MAX_STR] = '\0';
    union ipc_msg m;
    m.hello = (struct ipc_hello){ big, 0xffffffffu };
    roundtrip(IPC_HELLO, &m);
    free(big);

    buf_t b;
    buf_init(&b, 64);
    struct ipc_hello h = { NULL, 1 };
    ipc_put_hello(&b, &h);
    enum ipc_type t;
    char err[128];
    assert_int_equal(ipc_decode((unsigned char *)b.data, b.len, &t, &m, err, sizeof(err)), 0);
    assert_string_equal(m.hello.proto, "");
    buf_free(&b);

    /* the largest BYTES field: body = type 2 + field head 6 + n = IPC_MAX_FRAME */
    size_t n = IPC_MAX_FRAME - 8;
    unsigned char *d = xcalloc(1, n + 1);
    d[n - 1] = 7;
    m.cleanup_data = (struct ipc_cleanup_data){ { d, n } };
    roundtrip(IPC_CLEANUP_DATA, &m);
    /* one more byte: refused (-1, nothing appended), never a bad frame and
     * never an abort (sizes often come from mail) */
    m.cleanup_data.data.len = n + 1;
    buf_init(&b, 64);
    assert_int_equal(ipc_encode(&b, IPC_CLEANUP_DATA, &m), -1);
    assert_int_equal(b.len, 0);
    buf_free(&b);
    free(d);
}

static void test_format(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b, 64);
    union ipc_msg m;
    m.hello = (struct ipc_hello){ "cle\r\nanup", 1 };
    ipc_format(&b, IPC_HELLO, &m);
    assert_string_equal(b.data, "hello proto=\"cle\\x0d\\x0aanup\" version=1");
    buf_reset(&b);
    s_cleanup_data(&m);
    ipc_format(&b, IPC_CLEANUP_DATA, &m);
    assert_string_equal(b.data, "cleanup_data data=<19 bytes>");
    buf_reset(&b);
    s_filter_reply(&m);
    ipc_format(&b, IPC_FILTER_REPLY, &m);
    assert_string_equal(b.data, "filter_reply id=9 status=3 code=550 enhanced=\"5.7.1\" "
                                "text=\"Relay access denied\" rule=\"relay\" nmut=2");
    for (int t = 0; t < IPC__COUNT; t++) {
        buf_reset(&b);
        gens[t].fill(&m, 1);
        ipc_format(&b, (enum ipc_type)t, &m);
        assert_int_equal(strncmp(b.data, gens[t].name, strlen(gens[t].name)), 0);
        assert_null(memchr(b.data, '\n', b.len));
        assert_null(memchr(b.data, '\t', b.len));
    }
    buf_free(&b);
}

/* ---- strict decoder --------------------------------------------------------------- */

/* Every prefix of a frame: needs more; and with the header patched to the
 * prefix length the body is refused. */
static void test_truncated_every_length(void **state)
{
    (void)state;
    for (int t = 0; t < IPC__COUNT; t++) {
        union ipc_msg m;
        gens[t].fill(&m, (unsigned)t);
        buf_t b;
        buf_init(&b, 64);
        ipc_encode(&b, (enum ipc_type)t, &m);
        unsigned char *copy = xmalloc(b.len);
        for (size_t n = 0; n < b.len; n++) {
            assert_int_equal(ipc_frame_len((unsigned char *)b.data, n), 0);
            enum ipc_type got;
            union ipc_msg out;
            size_t used = 99;
            assert_int_equal(ipc_next((unsigned char *)b.data, n, &got, &out, &used, "t"), 0);
            char err[256];
            assert_int_equal(ipc_decode((unsigned char *)b.data, n, &got, &out, err, sizeof(err)), -1);
            if (n < 6)
                continue;
            memcpy(copy, b.data, n);
            put32(copy, (uint32_t)(n - 4));
            assert_int_equal(ipc_frame_len(copy, n), (long)n);
            assert_int_equal(ipc_decode(copy, n, &got, &out, err, sizeof(err)), -1);
            assert_int_equal(ipc_next(copy, n, &got, &out, &used, "t"), -1);
        }
        free(copy);
        buf_free(&b);
    }
}

static void hello_frame(buf_t *b)
{
    struct ipc_hello h = { "filter", 1 };
    buf_reset(b);
    ipc_put_hello(b, &h);
}

/* offsets in a HELLO frame: 6 = field 0 index, 7 = its type, 8..11 = length,
 * 12.. "filter" NUL, 19 = field 1 index, 20 = type, 21..24 length, 25.. value */
static void test_refusals(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b, 64);
    unsigned char *p;

    hello_frame(&b);
    p = (unsigned char *)b.data;
    assert_int_equal(b.len, 29);
    p[6] = 1;
    p[19] = 0;                       /* fields swapped */
    expect_decode_error(p, b.len, "hello: field 1 where proto (0) expected");

    hello_frame(&b);
    p = (unsigned char *)b.data;
    p[19] = 2;
    expect_decode_error(p, b.len, "hello: field 2 where version (1) expected");

    hello_frame(&b);
    p = (unsigned char *)b.data;
    p[7] = 1;                        /* STR sent as U32 */
    expect_decode_error(p, b.len, "hello.proto: wrong field type 1");
    hello_frame(&b);
    p = (unsigned char *)b.data;
    p[20] = 4;
    expect_decode_error(p, b.len, "hello.version: wrong field type 4");

    hello_frame(&b);
    buf_append_char(&b, 'x');        /* trailing byte */
    put32((unsigned char *)b.data, (uint32_t)(b.len - 4));
    expect_decode_error((unsigned char *)b.data, b.len, "hello: 1 trailing bytes");

    hello_frame(&b);
    p = (unsigned char *)b.data;
    p[14] = '\0';                    /* NUL inside */
    expect_decode_error(p, b.len, "hello.proto: NUL inside string");
    hello_frame(&b);
    p = (unsigned char *)b.data;
    p[18] = 'x';                     /* terminator missing */
    expect_decode_error(p, b.len, "hello.proto: NUL inside string");

    hello_frame(&b);
    p = (unsigned char *)b.data;
    p[24] = 5;                       /* u32 of length 5 */
    expect_decode_error(p, b.len, "hello.version: value truncated");
    p[24] = 3;
    expect_decode_error(p, b.len, "hello.version: bad u32 length 3");

    hello_frame(&b);
    p = (unsigned char *)b.data;
    p[5] = IPC__COUNT;               /* unknown type */
    char msg[64];
    snprintf(msg, sizeof(msg), "unknown message type %d", IPC__COUNT);
    expect_decode_error(p, b.len, msg);
    p[4] = 0xff;
    p[5] = 0xff;
    expect_decode_error(p, b.len, "unknown message type 65535");

    hello_frame(&b);
    expect_decode_error((unsigned char *)b.data, b.len - 1, "bad frame length");

    /* overlong STR, built by hand (the encoder refuses to) */
    buf_reset(&b);
    unsigned char h[12] = { 0 };
    buf_append(&b, h, 6);
    unsigned char f[6] = { 0, 3, 0, 0, 0, 0 };
    put32(f + 2, IPC_MAX_STR + 1);
    buf_append(&b, f, 6);
    for (unsigned i = 0; i < IPC_MAX_STR + 1; i++)
        buf_append_char(&b, 'a');
    buf_append_char(&b, '\0');
    unsigned char v[10] = { 1, 1, 0, 0, 0, 4, 0, 0, 0, 1 };
    buf_append(&b, v, 10);
    put32((unsigned char *)b.data, (uint32_t)(b.len - 4));
    expect_decode_error((unsigned char *)b.data, b.len, "hello.proto: string too long (65537)");

    /* U64 with the wrong length */
    union ipc_msg m;
    s_deliver_done(&m);
    buf_reset(&b);
    ipc_encode(&b, IPC_DELIVER_DONE, &m);
    ((unsigned char *)b.data)[7] = 2;   /* claims U64 */
    expect_decode_error((unsigned char *)b.data, b.len, "deliver_done.count: wrong field type 2");

    /* frame header limits */
    unsigned char big[8] = { 0 };
    put32(big, IPC_MAX_FRAME + 1);
    assert_int_equal(ipc_frame_len(big, 8), -1);
    put32(big, IPC_MAX_FRAME);
    assert_int_equal(ipc_frame_len(big, 8), 0);
    put32(big, 1);
    assert_int_equal(ipc_frame_len(big, 8), -1);
    put32(big, 0xffffffffu);
    enum ipc_type t;
    size_t used;
    assert_int_equal(ipc_next(big, 8, &t, &m, &used, "t"), -1);
    buf_free(&b);
}

/* Frames of every type, fed one byte at a time. */
static void test_next_bytewise(void **state)
{
    (void)state;
    buf_t all, in;
    buf_init(&all, 1024);
    buf_init(&in, 1024);
    for (int t = 0; t < IPC__COUNT; t++) {
        union ipc_msg m;
        gens[t].fill(&m, (unsigned)t);
        ipc_encode(&all, (enum ipc_type)t, &m);
    }
    int next = 0;
    for (size_t i = 0; i < all.len; i++) {
        buf_append_char(&in, all.data[i]);
        enum ipc_type got;
        union ipc_msg out;
        size_t used = 0;
        int r = ipc_next((unsigned char *)in.data, in.len, &got, &out, &used, "bytewise");
        assert_true(r >= 0);
        if (r == 1) {
            assert_int_equal(got, next);
            assert_int_equal(used, in.len);
            union ipc_msg want;
            gens[next].fill(&want, (unsigned)next);
            gens[next].cmp(&want, &out);
            buf_consume(&in, used);
            next++;
        }
    }
    assert_int_equal(next, IPC__COUNT);
    assert_int_equal(in.len, 0);
    /* with trace on, decoding also formats the message */
    log_set_trace(TRACE_IPC);
    enum ipc_type got;
    union ipc_msg out;
    size_t used;
    assert_int_equal(ipc_next((unsigned char *)all.data, all.len, &got, &out, &used, "x"), 1);
    log_set_trace(0);
    buf_free(&in);
    buf_free(&all);
}

/* ---- blocking connections ---------------------------------------------------- */

struct server_arg {
    int fd;
    const char *proto;
    int hello_r;
    int got_data;
    size_t data_len;
    int eof_r;
};

static void *server_main(void *va)
{
    struct server_arg *a = va;
    struct ipc_conn c;
    ipc_conn_init(&c, a->fd, "client");
    a->hello_r = ipc_hello_server(&c, a->proto);
    if (a->hello_r == 0) {
        union ipc_msg m;
        if (ipc_expect(&c, IPC_CLEANUP_DATA, &m) == 1) {
            a->got_data = 1;
            a->data_len = m.cleanup_data.data.len;
            struct ipc_cleanup_reply r = { V_ACCEPT, "ABC", 250, "2.0.0", "Ok", 0, 0 };
            ipc_send(&c, IPC_CLEANUP_REPLY, &r);
        }
        enum ipc_type t;
        a->eof_r = ipc_recv(&c, &t, &m);
    }
    ipc_conn_close(&c);
    return NULL;
}

static void test_conn_hello_and_exchange(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct server_arg a = { sv[1], IPC_PROTO_CLEANUP, -2, 0, 0, -2 };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, server_main, &a), 0);
    struct ipc_conn c;
    ipc_conn_init(&c, sv[0], "server");
    assert_int_equal(ipc_hello_client(&c, IPC_PROTO_CLEANUP), 0);
    /* big enough to need many reads on the other side */
    size_t n = IPC_MAX_FRAME - 8;
    unsigned char *d = xmalloc(n);
    memset(d, 'd', n);
    struct ipc_cleanup_data cd = { { d, n } };
    assert_int_equal(ipc_send(&c, IPC_CLEANUP_DATA, &cd), 0);
    union ipc_msg m;
    assert_int_equal(ipc_expect(&c, IPC_CLEANUP_REPLY, &m), 1);
    assert_string_equal(m.cleanup_reply.queue_id, "ABC");
    shutdown(c.fd, SHUT_WR);
    enum ipc_type t;
    assert_int_equal(ipc_recv(&c, &t, &m), 0);      /* server closed: clean EOF */
    ipc_conn_close(&c);
    pthread_join(th, NULL);
    assert_int_equal(a.hello_r, 0);
    assert_int_equal(a.got_data, 1);
    assert_int_equal(a.data_len, n);
    assert_int_equal(a.eof_r, 0);
    free(d);
}

static void test_conn_proto_mismatch(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct server_arg a = { sv[1], IPC_PROTO_CLEANUP, -2, 0, 0, -2 };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, server_main, &a), 0);
    struct ipc_conn c;
    ipc_conn_init(&c, sv[0], "server");
    assert_int_equal(ipc_hello_client(&c, IPC_PROTO_FILTER), -1);
    ipc_conn_close(&c);
    pthread_join(th, NULL);
    assert_int_equal(a.hello_r, -1);

    /* right protocol, wrong version */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    a = (struct server_arg){ sv[1], IPC_PROTO_QMGR, -2, 0, 0, -2 };
    assert_int_equal(pthread_create(&th, NULL, server_main, &a), 0);
    ipc_conn_init(&c, sv[0], "server");
    struct ipc_hello h = { IPC_PROTO_QMGR, IPC_VERSION + 1 };
    assert_int_equal(ipc_send(&c, IPC_HELLO, &h), 0);
    union ipc_msg m;
    assert_int_equal(ipc_expect(&c, IPC_HELLO, &m), 0);   /* server hung up */
    ipc_conn_close(&c);
    pthread_join(th, NULL);
    assert_int_equal(a.hello_r, -1);

    struct ipc_hello ok = { "qmgr", IPC_VERSION };
    assert_int_equal(ipc_hello_ok(&ok, IPC_PROTO_QMGR), 0);
    assert_int_equal(ipc_hello_ok(&ok, IPC_PROTO_DELIVER), -1);
}

static void test_conn_errors(void **state)
{
    (void)state;
    int sv[2];
    union ipc_msg m;
    enum ipc_type t;
    struct ipc_conn c;

    /* peer closes inside a frame */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ipc_conn_init(&c, sv[0], "half");
    buf_t b;
    buf_init(&b, 64);
    hello_frame(&b);
    assert_int_equal(write(sv[1], b.data, b.len - 3), (ssize_t)b.len - 3);
    close(sv[1]);
    assert_int_equal(ipc_recv(&c, &t, &m), -1);
    ipc_conn_close(&c);

    /* garbage, then the wrong type for ipc_expect */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ipc_conn_init(&c, sv[0], "garbage");
    assert_int_equal(write(sv[1], b.data, b.len), (ssize_t)b.len);
    assert_int_equal(ipc_expect(&c, IPC_DELIVER_DONE, &m), -1);
    assert_int_equal(write(sv[1], "\xff\xff\xff\xff\0\0", 6), 6);
    assert_int_equal(ipc_recv(&c, &t, &m), -1);
    close(sv[1]);
    ipc_conn_close(&c);
    assert_int_equal(c.fd, -1);

    /* writing to a closed peer */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    close(sv[1]);
    ipc_conn_init(&c, sv[0], "gone");
    struct ipc_deliver_done d = { 1, "", 0 };
    assert_int_equal(ipc_send(&c, IPC_DELIVER_DONE, &d), -1);
    assert_int_equal(errno, EPIPE);
    assert_int_equal(c.out.len, 0);
    ipc_conn_close(&c);

    errno = 0;
    assert_int_equal(ipc_connect_unix("/nonexistent/dir/sock"), -1);
    assert_int_equal(errno, ENOENT);
    char longpath[200];
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[sizeof(longpath) - 1] = '\0';
    assert_int_equal(ipc_connect_unix(longpath), -1);
    assert_int_equal(errno, ENAMETOOLONG);
    buf_free(&b);
}

/* The destination key qmgr schedules by and the smtp agent caches by. */
static void test_deliver_nexthop(void **state)
{
    struct config cfg;
    char out[64];
    memset(&cfg, 0, sizeof(cfg));
    deliver_nexthop(&cfg, "Bob@Example.ORG", out, sizeof(out));
    assert_string_equal(out, "example.org");
    deliver_nexthop(&cfg, "a@b@[192.0.2.1]", out, sizeof(out));
    assert_string_equal(out, "[192.0.2.1]");
    deliver_nexthop(&cfg, "postmaster", out, sizeof(out));
    assert_string_equal(out, "");
    cfg.relayhost = "[Relay.example]:2525";
    deliver_nexthop(&cfg, "bob@example.org", out, sizeof(out));
    assert_string_equal(out, "[Relay.example]:2525");
}

/* active/NAME holding a one-recipient message whose id is qid. */
static void write_active(const char *name, const char *qid)
{
    struct qf_env e;
    qf_env_init(&e);
    e.queue_id = xstrdup(qid);       /* (qf_env_init's strings are not the heap's) */
    e.sender = xstrdup("a@example.org");
    qf_env_add_rcpt(&e, "b@example.org", "", 0);
    char path[64];
    snprintf(path, sizeof(path), SPOOL_ACTIVE "/%s", name);
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    assert_true(fd >= 0);
    struct qf_writer *w = qf_write_begin(fd, &e);
    assert_non_null(w);
    assert_int_equal(qf_write_content(w, "x\n", 2), 0);
    assert_int_equal(qf_write_end(w), 0);
    close(fd);
    qf_env_free(&e);
}

static int parse_calls;
static int parse_ok(int fd, struct qf_env *env, void *arg, char *err, size_t errlen)
{
    parse_calls++;
    *(int *)arg = 7;
    return qf_read(fd, env, err, errlen);
}
static int parse_fails(int fd, struct qf_env *env, void *arg, char *err, size_t errlen)
{
    snprintf(err, errlen, "boom");
    return -1;
}

/* The one check every agent makes of a request's queue file
 * (deliver_agent_open): the path must be active/<the id>, the transport the
 * agent's own, the file must hold that id; the refusals say so with 4.3.5
 * (a request the agent cannot serve) or 4.3.0 (a file it cannot read), and
 * an agent's own parser (the local agent's read-whole) is used when given. */
static void test_deliver_agent_open(void **state)
{
    char dir[] = "/tmp/test_ipc.XXXXXX", cwd[4096];
    assert_non_null(mkdtemp(dir));
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(dir), 0);
    assert_int_equal(mkdir(SPOOL_ACTIVE, 0700), 0);
    char id[QUEUE_ID_MAX], other[QUEUE_ID_MAX], apath[64], opath[64];
    queue_id_new(id, sizeof(id));
    do
        queue_id_new(other, sizeof(other));
    while (strcmp(id, other) == 0);
    snprintf(apath, sizeof(apath), SPOOL_ACTIVE "/%s", id);
    snprintf(opath, sizeof(opath), SPOOL_ACTIVE "/%s", other);
    write_active(id, id);
    write_active(other, id);            /* the name of one message, the id of another */

    struct qf_env env;
    char err[256];
    const char *dsn = NULL;
    struct deliver_req r = { id, apath, "local", 0, NULL };
    int fd = deliver_agent_open(&r, "local", NULL, NULL, &env, &dsn, err, sizeof(err));
    assert_true(fd >= 0);
    assert_string_equal(env.queue_id, id);
    assert_int_equal(env.nrcpts, 1);
    close(fd);
    qf_env_free(&env);

    int seen = 0;
    parse_calls = 0;
    fd = deliver_agent_open(&r, "local", parse_ok, &seen, &env, &dsn, err, sizeof(err));
    assert_true(fd >= 0);
    assert_int_equal(parse_calls, 1);
    assert_int_equal(seen, 7);
    close(fd);
    qf_env_free(&env);

    assert_int_equal(deliver_agent_open(&r, "smtp", NULL, NULL, &env, &dsn, err, sizeof(err)), -1);
    assert_string_equal(dsn, "4.3.5");
    assert_non_null(strstr(err, "not served by this agent"));

    struct deliver_req bad = { id, "incoming/x", "local", 0, NULL };
    assert_int_equal(deliver_agent_open(&bad, "local", NULL, NULL, &env, &dsn, err, sizeof(err)), -1);
    assert_string_equal(dsn, "4.3.5");
    assert_non_null(strstr(err, "bad queue file path"));
    struct deliver_req dots = { "../../etc/passwd", "active/../../etc/passwd", "local", 0, NULL };
    assert_int_equal(deliver_agent_open(&dots, "local", NULL, NULL, &env, &dsn, err, sizeof(err)), -1);
    assert_string_equal(dsn, "4.3.5");

    struct deliver_req mism = { other, opath, "local", 0, NULL };
    assert_int_equal(deliver_agent_open(&mism, "local", NULL, NULL, &env, &dsn, err, sizeof(err)), -1);
    assert_string_equal(dsn, "4.3.0");
    assert_non_null(strstr(err, "holds id"));
    assert_int_equal(env.nrcpts, 0);    /* left empty */

    assert_int_equal(deliver_agent_open(&r, "local", parse_fails, NULL, &env, &dsn, err, sizeof(err)), -1);
    assert_string_equal(dsn, "4.3.0");
    assert_non_null(strstr(err, "boom"));

    assert_int_equal(unlink(apath), 0);
    assert_int_equal(deliver_agent_open(&r, "local", NULL, NULL, &env, &dsn, err, sizeof(err)), -1);
    assert_string_equal(dsn, "4.3.0");
    assert_non_null(strstr(err, "open "));

    /* deliver_agent_end takes what deliver_agent_read allocated */
    struct deliver_req owned = { strdup(id), strdup(apath), strdup("local"), 1,
                                 calloc(1, sizeof(*owned.rcpt)) };
    owned.rcpt[0].nexthop = strdup("");
    qf_env_init(&env);
    deliver_agent_end(-1, &env, &owned);
    assert_null(owned.queue_id);
    assert_null(owned.rcpt);

    unlink(opath);
    rmdir(SPOOL_ACTIVE);
    assert_int_equal(chdir(cwd), 0);
    rmdir(dir);
}

int main(void)
{
    log_init("test_ipc", 1, 0, LOG_L_ERROR);
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sample_table_complete),
        cmocka_unit_test(test_roundtrip_samples),
        cmocka_unit_test(test_roundtrip_generated),
        cmocka_unit_test(test_roundtrip_limits),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_truncated_every_length),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_next_bytewise),
        cmocka_unit_test(test_conn_hello_and_exchange),
        cmocka_unit_test(test_conn_proto_mismatch),
        cmocka_unit_test(test_conn_errors),
        cmocka_unit_test(test_deliver_nexthop),
        cmocka_unit_test(test_deliver_agent_open),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
