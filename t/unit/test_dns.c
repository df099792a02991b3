/*
 * test_dns.c - lib/dns through the real libunbound, answering from the
 * local-data of a test unbound.conf (nothing leaves the process: "." is a
 * static local zone; the one stub zone points at a silent UDP socket of
 * this test, for timeouts). Plus the rdata parsers on hand-made bytes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>

#include <event2/event.h>

#include "dns/dns.h"

static char conf_path[64];
static int silent_fd = -1;

static const char *conf_text =
    "server:\n"
    "    module-config: \"iterator\"\n"
    "    do-not-query-localhost: no\n"
    "    local-zone: \".\" static\n"
    "    local-zone: \"slow.test.\" transparent\n"
    "    local-zone: \"refused.test.\" refuse\n"
    "    local-data: \"example.test. 300 IN MX 10 a.example.test.\"\n"
    "    local-data: \"example.test. 300 IN MX 10 b.example.test.\"\n"
    "    local-data: \"example.test. 300 IN MX 10 c.example.test.\"\n"
    "    local-data: \"example.test. 300 IN MX 20 D.Example.Test.\"\n"
    "    local-data: 'example.test. 300 IN TXT \"v=spf1 \" \"-all\"'\n"
    "    local-data: \"nullmx.test. 300 IN MX 0 .\"\n"
    "    local-data: \"implicit.test. 300 IN A 192.0.2.5\"\n"
    "    local-data: \"mx1.example.test. 300 IN A 192.0.2.1\"\n"
    "    local-data: \"mx1.example.test. 300 IN A 192.0.2.2\"\n"
    "    local-data: \"mx1.example.test. 300 IN AAAA 2001:db8::1\"\n"
    "    local-data: \"_25._tcp.mx1.example.test. 300 IN TLSA 3 1 1 "
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\n"
    "    local-data: \"1.2.0.192.in-addr.arpa. 300 IN PTR mx1.example.test.\"\n"
    "    local-data: \"9.2.0.192.in-addr.arpa. 300 IN PTR liar.example.test.\"\n"
    "    local-data: \"liar.example.test. 300 IN A 192.0.2.10\"\n"
    "    local-data: \"zero.test. 0 IN A 192.0.2.7\"\n"
    "    local-data: \"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. "
    "300 IN PTR mx1.example.test.\"\n"
    "stub-zone:\n"
    "    name: \"slow.test.\"\n"
    "    stub-addr: 127.0.0.1@%d\n";

static struct dns_ctx *ctx_make(struct event_base *base, int timeout_ms, int maxq)
{
    struct dns_config dc = { .unbound_config = conf_path, .timeout_ms = timeout_ms,
                             .max_queries = maxq };
    buf_t err;
    buf_init(&err, 64);
    struct dns_ctx *ctx = dns_ctx_new(&dc, base, &err);
    if (!ctx)
        fail_msg("dns_ctx_new: %s", err.data);
    buf_free(&err);
    return ctx;
}

static int setup(void **state)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof sin;
    silent_fd = socket(AF_INET, SOCK_DGRAM, 0);   /* never read: a server that never answers */
    if (silent_fd < 0 || bind(silent_fd, (struct sockaddr *)&sin, sizeof sin) < 0 ||
        getsockname(silent_fd, (struct sockaddr *)&sin, &sl) < 0)
        return -1;
    str_copy(conf_path, sizeof conf_path, "/tmp/test_dns.XXXXXX");
    int fd = mkstemp(conf_path);
    if (fd < 0)
        return -1;
    FILE *f = fdopen(fd, "w");
    fprintf(f, conf_text, ntohs(sin.sin_port));
    fclose(f);
    return 0;
}

static int teardown(void **state)
{
    unlink(conf_path);
    close(silent_fd);
    return 0;
}

static void test_mx_equal_prefs(void **state)
{
    struct dns_ctx *ctx = ctx_make(NULL, 0, 0);
    int first[3] = { 0, 0, 0 };
    for (int round = 0; round < 60; round++) {
        struct dns_answer *a = dns_resolve_mx(ctx, "example.test");
        assert_int_equal(a->status, DNS_FOUND);
        assert_int_equal(a->sec, DNS_SEC_INSECURE);
        assert_false(a->implicit_mx);
        assert_int_equal(a->n, 4);
        for (int i = 0; i < 3; i++) {
            assert_int_equal(a->rr[i].u.mx.pref, 10);
            assert_int_equal(strlen(a->rr[i].u.mx.host), strlen("a.example.test"));
        }
        first[a->rr[0].u.mx.host[0] - 'a']++;
        assert_int_equal(a->rr[3].u.mx.pref, 20);
        assert_string_equal(a->rr[3].u.mx.host, "d.example.test");   /* lower-cased */
        dns_answer_free(a);
    }
    for (int i = 0; i < 3; i++)
        assert_true(first[i] > 0);      /* equal preferences shuffled */
    dns_ctx_free(ctx);
}

static void test_mx_null_implicit_nx(void **state)
{
    struct dns_ctx *ctx = ctx_make(NULL, 0, 0);
    struct dns_answer *a = dns_resolve_mx(ctx, "nullmx.test");
    assert_int_equal(a->status, DNS_NULL_MX);
    assert_int_equal(a->n, 0);
    dns_answer_free(a);

    a = dns_resolve_mx(ctx, "Implicit.test.");
    assert_int_equal(a->status, DNS_FOUND);
    assert_true(a->implicit_mx);
    assert_int_equal(a->n, 1);
    assert_string_equal(a->rr[0].u.mx.host, "implicit.test");
    dns_answer_free(a);

    a = dns_resolve_mx(ctx, "nosuch.test");
    assert_int_equal(a->status, DNS_NOTFOUND);
    assert_true(a->nxdomain);
    assert_int_equal(a->rcode, 3);
    dns_answer_free(a);

    a = dns_resolve_mx(ctx, "x.refused.test");
    assert_int_equal(a->status, DNS_TEMPFAIL);
    dns_answer_free(a);
    dns_ctx_free(ctx);
}

static void test_addresses_tlsa_txt(void **state)
{
    struct dns_ctx *ctx = ctx_make(NULL, 0, 0);
    struct dns_answer *a = dns_resolve(ctx, "mx1.example.test", DNS_T_A);
    assert_int_equal(a->status, DNS_FOUND);
    assert_int_equal(a->n, 2);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(a->rr[i].u.addr.family, AF_INET);
        assert_true(strcmp(a->rr[i].u.addr.text, "192.0.2.1") == 0 ||
                    strcmp(a->rr[i].u.addr.text, "192.0.2.2") == 0);
    }
    assert_int_equal(a->rr[0].ttl, 300);
    dns_answer_free(a);

    a = dns_resolve(ctx, "mx1.example.test", DNS_T_AAAA);
    assert_int_equal(a->status, DNS_FOUND);
    assert_int_equal(a->n, 1);
    assert_string_equal(a->rr[0].u.addr.text, "2001:db8::1");
    dns_answer_free(a);

    a = dns_resolve(ctx, "implicit.test", DNS_T_AAAA);      /* NODATA */
    assert_int_equal(a->status, DNS_NOTFOUND);
    assert_false(a->nxdomain);
    dns_answer_free(a);

    a = dns_resolve(ctx, "_25._tcp.mx1.example.test", DNS_T_TLSA);
    assert_int_equal(a->status, DNS_FOUND);
    assert_int_equal(a->n, 1);
    assert_int_equal(a->rr[0].u.tlsa.usage, 3);
    assert_int_equal(a->rr[0].u.tlsa.selector, 1);
    assert_int_equal(a->rr[0].u.tlsa.mtype, 1);
    assert_int_equal(a->rr[0].u.tlsa.len, 32);
    assert_int_equal(a->rr[0].u.tlsa.data[0], 0x01);
    assert_int_equal(a->rr[0].u.tlsa.data[31], 0xef);
    dns_answer_free(a);

    a = dns_resolve(ctx, "example.test", DNS_T_TXT);
    assert_int_equal(a->status, DNS_FOUND);
    assert_int_equal(a->n, 1);
    assert_string_equal(a->rr[0].u.txt.text, "v=spf1 -all");
    assert_int_equal(a->rr[0].u.txt.len, 11);
    dns_answer_free(a);
    dns_ctx_free(ctx);
}

static void test_ptr_fcrdns(void **state)
{
    struct dns_ctx *ctx = ctx_make(NULL, 0, 0);
    char name[256];
    struct dns_answer *a = dns_resolve(ctx, "1.2.0.192.in-addr.arpa", DNS_T_PTR);
    assert_int_equal(a->status, DNS_FOUND);
    assert_string_equal(a->rr[0].u.ptr, "mx1.example.test");
    dns_answer_free(a);

    assert_int_equal(dns_fcrdns_sync(ctx, "192.0.2.1", name, sizeof name), DNS_FOUND);
    assert_string_equal(name, "mx1.example.test");
    assert_int_equal(dns_fcrdns_sync(ctx, "::ffff:192.0.2.1", name, sizeof name), DNS_FOUND);
    assert_int_equal(dns_fcrdns_sync(ctx, "2001:db8::1", name, sizeof name), DNS_FOUND);
    assert_string_equal(name, "mx1.example.test");
    /* PTR whose name does not point back */
    assert_int_equal(dns_fcrdns_sync(ctx, "192.0.2.9", name, sizeof name), DNS_NOTFOUND);
    assert_string_equal(name, "");
    /* no PTR at all */
    assert_int_equal(dns_fcrdns_sync(ctx, "192.0.2.77", name, sizeof name), DNS_NOTFOUND);
    assert_int_equal(dns_fcrdns_sync(ctx, "not-an-ip", name, sizeof name), DNS_TEMPFAIL);
    dns_ctx_free(ctx);
}

static void test_timeout_sync(void **state)
{
    struct dns_ctx *ctx = ctx_make(NULL, 300, 0);
    struct dns_answer *a = dns_resolve(ctx, "www.slow.test", DNS_T_A);
    assert_int_equal(a->status, DNS_TEMPFAIL);
    assert_non_null(strstr(a->why, "timeout"));
    dns_answer_free(a);
    assert_int_equal(dns_ctx_pending(ctx), 0);
    dns_ctx_free(ctx);
}

struct async_seen {
    int n, nfc;
    enum dns_status st[8];
    char fc[64];
    enum dns_status fcst;
};

static void on_async(struct dns_answer *a, void *arg)
{
    struct async_seen *s = arg;
    s->st[s->n++] = a->status;
    dns_answer_free(a);
}

static void on_fc(enum dns_status st, const char *name, void *arg)
{
    struct async_seen *s = arg;
    s->fcst = st;
    str_copy(s->fc, sizeof s->fc, name);
    s->nfc++;
}

/* In a libevent loop: answers arrive as callbacks, the loop ends by
 * itself once nothing is outstanding (an idle context holds no event). */
static void test_async_loop(void **state)
{
    struct event_base *base = event_base_new();
    struct dns_ctx *ctx = ctx_make(base, 300, 4);
    struct async_seen s;
    memset(&s, 0, sizeof s);
    assert_non_null(dns_query_mx(ctx, "example.test", on_async, &s));
    assert_non_null(dns_query(ctx, "nosuch.test", DNS_T_A, on_async, &s));
    assert_non_null(dns_query(ctx, "www.slow.test", DNS_T_A, on_async, &s));
    assert_non_null(dns_fcrdns(ctx, "192.0.2.1", on_fc, &s));
    assert_null(dns_query(ctx, "mx1.example.test", DNS_T_A, on_async, &s));  /* bound: 4 */
    struct dns_query *q = dns_query(ctx, "x", DNS_T_A, on_async, &s);
    assert_null(q);
    event_base_dispatch(base);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.nfc, 1);
    assert_int_equal(s.fcst, DNS_FOUND);
    assert_string_equal(s.fc, "mx1.example.test");
    int found = 0, nf = 0, tf = 0;
    for (int i = 0; i < 3; i++) {
        found += s.st[i] == DNS_FOUND;
        nf += s.st[i] == DNS_NOTFOUND;
        tf += s.st[i] == DNS_TEMPFAIL;
    }
    assert_int_equal(found, 1);
    assert_int_equal(nf, 1);
    assert_int_equal(tf, 1);
    /* cancel: the callback never runs */
    memset(&s, 0, sizeof s);
    q = dns_query(ctx, "www.slow.test", DNS_T_A, on_async, &s);
    assert_non_null(q);
    dns_cancel(q);
    assert_int_equal(dns_ctx_pending(ctx), 0);
    event_base_dispatch(base);
    assert_int_equal(s.n, 0);
    /* freeing the context with queries outstanding */
    assert_non_null(dns_query(ctx, "www.slow.test", DNS_T_A, on_async, &s));
    dns_ctx_free(ctx);
    assert_int_equal(s.n, 0);
    event_base_free(base);
}

/* The answer cache: a repeat is answered without libunbound (any case,
 * with or without the final dot), a TTL of 0 is never kept, a temporary
 * failure neither; an asynchronous hit still arrives from the loop, and a
 * cancelled one never does. */
static void test_cache(void **state)
{
    struct event_base *base = event_base_new();
    struct dns_ctx *ctx = ctx_make(base, 300, 8);
    struct dns_answer *a = dns_resolve(ctx, "example.test", DNS_T_TXT);
    assert_int_equal(a->status, DNS_FOUND);
    assert_int_equal(dns_ctx_cache_hits(ctx), 0);
    struct dns_answer *b = dns_resolve(ctx, "EXAMPLE.test.", DNS_T_TXT);
    assert_int_equal(dns_ctx_cache_hits(ctx), 1);
    assert_int_equal(b->status, DNS_FOUND);
    assert_int_equal(b->n, 1);
    assert_string_equal(b->rr[0].u.txt.text, a->rr[0].u.txt.text);
    assert_string_equal(b->qname, "EXAMPLE.test.");
    dns_answer_free(a);
    dns_answer_free(b);
    for (int i = 0; i < 2; i++) {            /* TTL 0 and a timeout: asked again */
        dns_answer_free(dns_resolve(ctx, "zero.test", DNS_T_A));
        a = dns_resolve(ctx, "www.slow.test", DNS_T_A);
        assert_int_equal(a->status, DNS_TEMPFAIL);
        dns_answer_free(a);
    }
    assert_int_equal(dns_ctx_cache_hits(ctx), 1);
    a = dns_resolve(ctx, "nosuch.test", DNS_T_A);   /* NXDOMAIN, SOA-derived TTL */
    assert_int_equal(a->status, DNS_NOTFOUND);
    dns_answer_free(a);
    struct async_seen s;
    memset(&s, 0, sizeof s);
    assert_non_null(dns_query(ctx, "example.test", DNS_T_TXT, on_async, &s));
    assert_int_equal(s.n, 0);                 /* never from inside dns_query */
    event_base_dispatch(base);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.st[0], DNS_FOUND);
    assert_int_equal(dns_ctx_cache_hits(ctx), 2);
    struct dns_query *q = dns_query(ctx, "example.test", DNS_T_TXT, on_async, &s);
    dns_cancel(q);
    event_base_dispatch(base);
    assert_int_equal(s.n, 1);
    assert_int_equal(dns_ctx_pending(ctx), 0);
    dns_ctx_free(ctx);
    event_base_free(base);
}

static void test_config_errors(void **state)
{
    struct dns_config dc = { .unbound_config = "/nonexistent/unbound.conf" };
    buf_t err;
    buf_init(&err, 64);
    assert_null(dns_ctx_new(&dc, NULL, &err));
    assert_non_null(strstr(err.data, "/nonexistent/unbound.conf"));
    buf_reset(&err);
    struct dns_config dc2 = { .resolv_conf = conf_path, .dnssec = 1,
                              .trust_anchor = "/nonexistent/root.key" };
    assert_null(dns_ctx_new(&dc2, NULL, &err));
    assert_non_null(strstr(err.data, "trust anchor"));
    /* an anchor named in the unbound.conf is read by dns_ctx_new already
     * (before a chroot): a missing one fails there, not at the first query */
    char bad[64];
    str_copy(bad, sizeof bad, "/tmp/test_dns_ta.XXXXXX");
    int fd = mkstemp(bad);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "server:\n  trust-anchor-file: \"/nonexistent/anchor.key\"\n"
               "  local-zone: \".\" static\n");
    fclose(f);
    struct dns_config dc3 = { .unbound_config = bad };
    buf_reset(&err);
    assert_null(dns_ctx_new(&dc3, NULL, &err));
    unlink(bad);
    buf_free(&err);
}

/* ---- DNSSEC: signed zones from t/unit/data/dnssec (make.sh) ------------- */

/* The data directory, next to this file (tests run from the tree's root). */
static int data_dir(char *out, size_t cap)
{
    char rel[256];
    const char *slash = strrchr(__FILE__, '/');
    str_format(rel, sizeof rel, "%.*s/data/dnssec", slash ? (int)(slash - __FILE__) : 1,
               slash ? __FILE__ : ".");
    return realpath(rel, out) && strlen(out) < cap ? 0 : -1;
}

/* The zones are loaded as unbound auth-zones "for upstream" (the
 * iterator answers from them as from their servers: nothing is sent) and
 * validated against anchor.key. */
static void test_dnssec(void **state)
{
    char dir[PATH_MAX], path[64];
    if (data_dir(dir, sizeof dir) < 0)
        fail_msg("t/unit/data/dnssec not found from %s", __FILE__);
    str_copy(path, sizeof path, "/tmp/test_dns_sec.XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "server:\n  module-config: \"validator iterator\"\n"
               "  local-zone: \".\" static\n  local-zone: \"test.\" nodefault\n"
               "  local-zone: \"sec.test.\" transparent\n  local-zone: \"bad.test.\" transparent\n"
               "  trust-anchor-file: \"%s/anchor.key\"\n", dir);
    for (int i = 0; i < 2; i++)
        fprintf(f, "auth-zone:\n  name: \"%s\"\n  zonefile: \"%s/%s.zone.signed\"\n"
                   "  for-upstream: yes\n  for-downstream: no\n  fallback-enabled: no\n",
                i ? "bad.test" : "sec.test", dir, i ? "bad.test" : "sec.test");
    fclose(f);
    struct dns_config dc = { .unbound_config = path, .timeout_ms = 5000 };
    buf_t err;
    buf_init(&err, 64);
    struct dns_ctx *ctx = dns_ctx_new(&dc, NULL, &err);
    if (!ctx)
        fail_msg("dns_ctx_new: %s", err.data);
    buf_free(&err);

    struct dns_answer *a = dns_resolve_mx(ctx, "sec.test");
    assert_int_equal(a->status, DNS_FOUND);
    assert_int_equal(a->sec, DNS_SEC_SECURE);
    assert_string_equal(a->rr[0].u.mx.host, "mx.sec.test");
    dns_answer_free(a);
    a = dns_resolve(ctx, "_25._tcp.mx.sec.test", DNS_T_TLSA);
    assert_int_equal(a->status, DNS_FOUND);
    assert_int_equal(a->sec, DNS_SEC_SECURE);
    assert_int_equal(a->rr[0].u.tlsa.usage, 3);
    dns_answer_free(a);
    a = dns_resolve(ctx, "nosuch.sec.test", DNS_T_A);     /* NXDOMAIN proven by NSEC */
    assert_int_equal(a->status, DNS_NOTFOUND);
    assert_int_equal(a->sec, DNS_SEC_SECURE);
    dns_answer_free(a);
    /* a record that does not match its signature: bogus, a temporary
     * failure, and no data handed out */
    a = dns_resolve(ctx, "mx.bad.test", DNS_T_A);
    assert_int_equal(a->status, DNS_TEMPFAIL);
    assert_int_equal(a->sec, DNS_SEC_BOGUS);
    assert_int_equal(a->n, 0);
    assert_non_null(strstr(a->why, "bogus"));
    dns_answer_free(a);
    dns_ctx_free(ctx);
    unlink(path);
}

/* ---- rdata parsers on hand-made bytes --------------------------------- */

static void test_rdata(void **state)
{
    struct dns_rr rr;
    static const uint8_t mx[] = { 0, 5, 3, 'M', 'x', '1', 4, 't', '.', 's', 't', 0 };
    assert_int_equal(dns_rdata_parse(DNS_T_MX, mx, sizeof mx, &rr), 0);
    assert_int_equal(rr.u.mx.pref, 5);
    assert_string_equal(rr.u.mx.host, "mx1.t\\046st");     /* a dot inside a label */
    dns_rr_clear(&rr);
    static const uint8_t root_mx[] = { 0, 0, 0 };
    assert_int_equal(dns_rdata_parse(DNS_T_MX, root_mx, sizeof root_mx, &rr), 0);
    assert_string_equal(rr.u.mx.host, ".");
    dns_rr_clear(&rr);
    static const uint8_t trailing[] = { 0, 5, 1, 'a', 0, 9 };
    assert_int_equal(dns_rdata_parse(DNS_T_MX, trailing, sizeof trailing, &rr), -1);
    static const uint8_t ptrcomp[] = { 0xc0, 0x0c };
    assert_int_equal(dns_rdata_parse(DNS_T_PTR, ptrcomp, sizeof ptrcomp, &rr), -1);
    static const uint8_t overrun[] = { 5, 'a', 'b' };
    assert_int_equal(dns_rdata_parse(DNS_T_PTR, overrun, sizeof overrun, &rr), -1);
    assert_int_equal(dns_rdata_parse(DNS_T_A, mx, 3, &rr), -1);
    assert_int_equal(dns_rdata_parse(DNS_T_TLSA, mx, 3, &rr), -1);
    static const uint8_t txt[] = { 2, 'a', 'b', 0, 1, 'c' };
    assert_int_equal(dns_rdata_parse(DNS_T_TXT, txt, sizeof txt, &rr), 0);
    assert_int_equal(rr.u.txt.len, 3);
    assert_string_equal(rr.u.txt.text, "abc");
    dns_rr_clear(&rr);
    static const uint8_t badtxt[] = { 2, 'a', 'b', 3, 'c' };
    assert_int_equal(dns_rdata_parse(DNS_T_TXT, badtxt, sizeof badtxt, &rr), -1);
    assert_int_equal(dns_rdata_parse(99, txt, sizeof txt, &rr), -1);
    /* a name longer than 255 wire bytes */
    uint8_t longname[320];
    size_t o = 0;
    for (int i = 0; i < 5; i++) {
        longname[o++] = 60;
        memset(longname + o, 'x', 60);
        o += 60;
    }
    longname[o++] = 0;
    assert_int_equal(dns_rdata_parse(DNS_T_PTR, longname, o, &rr), -1);
}

static void test_reverse_name(void **state)
{
    char out[80];
    int fam;
    uint8_t addr[16];
    assert_int_equal(dns_reverse_name("192.0.2.1", out, sizeof out, &fam, addr), 0);
    assert_string_equal(out, "1.2.0.192.in-addr.arpa");
    assert_int_equal(fam, AF_INET);
    assert_int_equal(dns_reverse_name("2001:db8::1", out, sizeof out, &fam, addr), 0);
    assert_string_equal(out, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
    assert_int_equal(dns_reverse_name("1.2.3", out, sizeof out, NULL, NULL), -1);
    assert_int_equal(dns_reverse_name("192.0.2.1", out, 10, NULL, NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        { "MX: equal preferences shuffled, sorted", test_mx_equal_prefs, NULL, NULL, NULL },
        { "MX: null, implicit, NXDOMAIN, refused", test_mx_null_implicit_nx, NULL, NULL, NULL },
        { "A, AAAA, NODATA, TLSA, TXT", test_addresses_tlsa_txt, NULL, NULL, NULL },
        { "PTR and FCrDNS", test_ptr_fcrdns, NULL, NULL, NULL },
        { "timeout (blocking)", test_timeout_sync, NULL, NULL, NULL },
        { "libevent loop, bound, cancel", test_async_loop, NULL, NULL, NULL },
        { "answer cache: hits, TTL 0, failures, async", test_cache, NULL, NULL, NULL },
        { "configuration errors", test_config_errors, NULL, NULL, NULL },
        { "DNSSEC: secure and bogus", test_dnssec, NULL, NULL, NULL },
        { "rdata parsers", test_rdata, NULL, NULL, NULL },
        { "reverse names", test_reverse_name, NULL, NULL, NULL },
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
