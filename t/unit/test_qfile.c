/*
 * test_qfile.c - queue file round trips, in-place updates and refusals of
 * every kind of damaged file (lib/mail/qfile.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "util/buf.h"
#include "mail/qfile.h"

/* record type bytes (the table in qfile.c) */
enum { T_VERSION = 0x01, T_QUEUE_ID, T_ARRIVAL, T_SENDER, T_CLIENT_IP, T_CLIENT_PORT,
       T_CLIENT_PTR, T_HELO, T_PROTOCOL, T_AUTH_USER, T_TLS, T_LISTENER, T_ENVID, T_RET,
       T_FLAGS, T_QUARANTINE, T_RCPT, T_CONTENT, T_END, T_NOTE, T__LAST = T_NOTE };

#define HDR 5
#define END_SZ (HDR + 12)   /* END record (version 2): content length + CRC-32C */

/* ---- helpers ------------------------------------------------------------ */

static void set_str(char **f, const char *s)
{
    *f = xstrdup(s);
}

/* An envelope with a distinctive value in every field. */
static void make_env(struct qf_env *e, int nrcpt, int quarantine)
{
    qf_env_init(e);
    set_str(&e->queue_id, "4Q7ZK2M0001ABCD042");
    e->arrival = 1700000000123456LL;
    set_str(&e->sender, "alice@example.org");
    set_str(&e->client_ip, "2001:db8::25");
    e->client_port = 54321;
    set_str(&e->client_ptr, "mx.example.org");
    set_str(&e->helo, "helo.example.org");
    set_str(&e->protocol, "ESMTPSA");
    set_str(&e->auth_user, "alice");
    set_str(&e->tls, "TLSv1.3 TLS_AES_256_GCM_SHA384");
    set_str(&e->listener, "submission");
    set_str(&e->envid, "envid-\xc3\xa9-1");
    e->ret = 2;
    e->flags = QF_F_SMTPUTF8 | QF_F_8BITMIME;
    if (quarantine) {
        set_str(&e->quarantine, "spam-hold");
        qf_env_add_note(e, "rule \"junk\": quarantine spam-hold");
        qf_env_add_note(e, "rule \"tag\": add_header X-Spam: yes");
    }
    for (int i = 0; i < nrcpt; i++) {
        char a[64], o[64];
        snprintf(a, sizeof(a), "rcpt%d@example.net", i);
        o[0] = '\0';
        if (i % 2)
            snprintf(o, sizeof(o), "rfc822;orig%d@example.net", i);
        struct qf_rcpt *r = qf_env_add_rcpt(e, a, o, (uint32_t)(i % 16));
        r->status = (uint8_t)(i % DS__COUNT);
        r->attempts = (uint16_t)(i * 3 + 1);
        r->last_try = 1700000100 + i;
        snprintf(r->dsn, sizeof(r->dsn), "4.%d.%d", i % 8, i % 5);
        snprintf(r->reason, sizeof(r->reason), "reason number %d", i);
    }
}

static int tmpfd(void)
{
    char path[] = "/tmp/test_qfile.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    return fd;
}

static void write_chunks(struct qf_writer *w, const unsigned char *p, size_t n, const size_t *sizes,
                         size_t nsizes)
{
    size_t off = 0, i = 0;
    while (off < n) {
        size_t c = sizes[i++ % nsizes];
        if (c > n - off)
            c = n - off;
        assert_int_equal(qf_write_content(w, p + off, c), 0);
        off += c;
        assert_int_equal(qf_write_size(w), off);
    }
}

/* Write env + content to a new temp file; returns the fd. */
static int write_file(const struct qf_env *e, const unsigned char *content, size_t n,
                      const size_t *sizes, size_t nsizes)
{
    int fd = tmpfd();
    struct qf_writer *w = qf_write_begin(fd, e);
    assert_non_null(w);
    if (n > 0)
        write_chunks(w, content, n, sizes, nsizes);
    assert_int_equal(qf_write_end(w), 0);
    return fd;
}

static unsigned char *slurp(int fd, size_t *len_r)
{
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    unsigned char *p = xmalloc((size_t)st.st_size + 1);
    assert_int_equal(pread(fd, p, (size_t)st.st_size, 0), st.st_size);
    *len_r = (size_t)st.st_size;
    return p;
}

/* A valid small file in memory, as written (version 2, END checksum). */
static unsigned char *valid_file_v2(size_t *len_r, int nrcpt)
{
    struct qf_env e;
    make_env(&e, nrcpt, 1);
    static const size_t one[] = { 5 };
    int fd = write_file(&e, (const unsigned char *)"Subject: x\n\nbody\n", 17, one, 1);
    qf_env_free(&e);
    unsigned char *p = slurp(fd, len_r);
    close(fd);
    return p;
}

/* The same file as version 1 (END without payload, no checksum). The
 * structural refusals below edit files and expect the validator's precise
 * reason; on a version 2 file most edits would be refused by the checksum
 * first. The checksum has its own tests (test_torn_*). */
static unsigned char *valid_file(size_t *len_r, int nrcpt)
{
    unsigned char *p = valid_file_v2(len_r, nrcpt);
    p[HDR + 10 + 3] = 1;
    *len_r -= 12;
    memset(p + *len_r - 4, 0, 4);     /* END length 0 */
    return p;
}

static uint32_t get32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Offset of the n-th (0-based) record of type t, or -1. */
static long rec_find(const unsigned char *p, size_t len, int t, int n)
{
    size_t off = 0;
    while (off + HDR <= len) {
        uint32_t l = get32(p + off + 1);
        if (p[off] == t && n-- == 0)
            return (long)off;
        size_t sz = HDR + l;
        if (p[off] == T_CONTENT) {
            uint64_t cl = ((uint64_t)get32(p + off + 5) << 32) | get32(p + off + 9);
            sz += cl;
        }
        off += sz;
    }
    return -1;
}

static size_t rec_size(const unsigned char *p, long off)
{
    size_t sz = HDR + get32(p + off + 1);
    if (p[off] == T_CONTENT)
        sz += ((uint64_t)get32(p + off + 5) << 32) | get32(p + off + 9);
    return sz;
}

/* Expect qf_parse (and qf_read of the same bytes) to refuse with msg in err. */
static void expect_refused(const unsigned char *p, size_t len, const char *msg)
{
    struct qf_env e;
    char err[256];
    assert_int_equal(qf_parse(p, len, &e, err, sizeof(err)), -1);
    if (strstr(err, msg) == NULL)
        fail_msg("error \"%s\" does not contain \"%s\"", err, msg);
    assert_int_equal(e.nrcpts, 0);
    qf_env_free(&e);
    int fd = tmpfd();
    assert_int_equal(write(fd, p, len), (ssize_t)len);
    char err2[256];
    assert_int_equal(qf_read(fd, &e, err2, sizeof(err2)), -1);
    assert_string_equal(err, err2);
    qf_env_free(&e);
    close(fd);
}

/* New buffer: p with [off, off+cut) replaced by ins. */
static unsigned char *edit_bytes(const unsigned char *p, size_t len, size_t off, size_t cut,
                             const void *ins, size_t nins, size_t *len_r)
{
    unsigned char *q = xmalloc(len - cut + nins + 1);
    memcpy(q, p, off);
    memcpy(q + off, ins, nins);
    memcpy(q + off + nins, p + off + cut, len - off - cut);
    *len_r = len - cut + nins;
    return q;
}

static void assert_env_equal(const struct qf_env *a, const struct qf_env *b)
{
    assert_int_equal(b->version, QF_FORMAT_VERSION);
    assert_string_equal(a->queue_id, b->queue_id);
    assert_int_equal(a->arrival, b->arrival);
    assert_string_equal(a->sender, b->sender);
    assert_string_equal(a->client_ip, b->client_ip);
    assert_int_equal(a->client_port, b->client_port);
    assert_string_equal(a->client_ptr, b->client_ptr);
    assert_string_equal(a->helo, b->helo);
    assert_string_equal(a->protocol, b->protocol);
    assert_string_equal(a->auth_user, b->auth_user);
    assert_string_equal(a->tls, b->tls);
    assert_string_equal(a->listener, b->listener);
    assert_string_equal(a->envid, b->envid);
    assert_int_equal(a->ret, b->ret);
    assert_int_equal(a->flags, b->flags);
    if (a->quarantine == NULL)
        assert_null(b->quarantine);
    else
        assert_string_equal(a->quarantine, b->quarantine);
    assert_int_equal(a->nnotes, b->nnotes);
    for (int i = 0; i < a->nnotes; i++)
        assert_string_equal(a->notes[i], b->notes[i]);
    assert_int_equal(a->nrcpts, b->nrcpts);
    for (int i = 0; i < a->nrcpts; i++) {
        const struct qf_rcpt *x = &a->rcpts[i], *y = &b->rcpts[i];
        assert_string_equal(x->addr, y->addr);
        assert_string_equal(x->orig, y->orig);
        assert_int_equal(x->notify, y->notify);
        assert_int_equal(x->status, y->status);
        assert_int_equal(x->attempts, y->attempts);
        assert_int_equal(x->last_try, y->last_try);
        assert_string_equal(x->reason, y->reason);
        assert_string_equal(x->dsn, y->dsn);
        assert_true(y->rec_off > 0);
    }
}

static void assert_content(int fd, const struct qf_env *e, const unsigned char *c, size_t n)
{
    assert_int_equal(e->content_len, n);
    unsigned char *got = xmalloc(n + 1);
    assert_int_equal(pread(fd, got, n, e->content_off), (ssize_t)n);
    assert_memory_equal(got, c, n);
    free(got);
}

static unsigned char *pattern(size_t n)
{
    unsigned char *p = xmalloc(n + 1);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)((i * 131 + i / 251) & 0xff);
    return p;
}

/* ---- round trips --------------------------------------------------------- */

/* e written (content fed in chunks of sizes) and read back into r, which
 * must equal it; the file's descriptor. */
static int roundtrip(const struct qf_env *e, const unsigned char *content, size_t n,
                     const size_t *sizes, size_t nsizes, struct qf_env *r)
{
    int fd = write_file(e, content, n, sizes, nsizes);
    char err[256] = "";
    assert_int_equal(qf_read(fd, r, err, sizeof(err)), 0);
    assert_string_equal(err, "");
    assert_env_equal(e, r);
    return fd;
}

static void test_roundtrip_all_records(void **state)
{
    (void)state;
    struct qf_env e, r;
    make_env(&e, 5, 1);
    static const char content[] = "Received: from x\nSubject: hi\n\nbody line\n.\nend\n";
    static const size_t sizes[] = { 1, 3, 10 };
    int fd = roundtrip(&e, (const unsigned char *)content, sizeof(content) - 1, sizes, 3, &r);
    assert_content(fd, &r, (const unsigned char *)content, sizeof(content) - 1);

    /* every record type of the table occurs in the file */
    size_t len;
    unsigned char *p = slurp(fd, &len);
    for (int t = T_VERSION; t <= T__LAST; t++)
        if (rec_find(p, len, t, 0) < 0)
            fail_msg("record type 0x%02x not written", t);
    assert_int_equal(rec_find(p, len, T_END, 0), (long)len - END_SZ);

    /* qf_parse on the same bytes agrees with qf_read */
    struct qf_env m;
    char err[256] = "";
    assert_int_equal(qf_parse(p, len, &m, err, sizeof(err)), 0);
    assert_env_equal(&r, &m);
    assert_int_equal(m.content_off, r.content_off);
    assert_int_equal(m.content_len, r.content_len);
    for (int i = 0; i < r.nrcpts; i++)
        assert_int_equal(m.rcpts[i].rec_off, r.rcpts[i].rec_off);
    qf_env_free(&m);
    free(p);
    qf_env_free(&r);
    qf_env_free(&e);
    close(fd);
}

/* NOTE records: repeated, in order, CR/LF flattened by qf_env_add_note,
 * empty ones allowed, and bounded in number. */
static void test_roundtrip_notes(void **state)
{
    (void)state;
    struct qf_env e, r;
    qf_env_init(&e);
    set_str(&e.queue_id, "ABC124");
    qf_env_add_rcpt(&e, "x@y", NULL, 0);
    qf_env_add_note(&e, "rule \"a\": bcc <b@c>");
    qf_env_add_note(&e, "");
    qf_env_add_note(&e, "two\r\nlines");
    for (int i = 0; i < QF_MAX_NOTES + 5; i++)
        qf_env_add_note(&e, "n");
    assert_int_equal(e.nnotes, QF_MAX_NOTES);
    assert_string_equal(e.notes[2], "two  lines");
    static const size_t one[] = { 3 };
    int fd = roundtrip(&e, (const unsigned char *)"S: x\n\nb\n", 8, one, 1, &r);
    assert_string_equal(r.notes[0], "rule \"a\": bcc <b@c>");
    assert_string_equal(r.notes[1], "");
    qf_env_free(&r);
    qf_env_free(&e);
    close(fd);
}

static void test_roundtrip_defaults(void **state)
{
    (void)state;
    struct qf_env e, r;
    qf_env_init(&e);
    set_str(&e.queue_id, "ABC123");
    qf_env_add_rcpt(&e, "x@y", NULL, 0);
    int fd = roundtrip(&e, NULL, 0, NULL, 0, &r);
    assert_string_equal(r.sender, "");
    assert_null(r.quarantine);
    assert_int_equal(r.content_len, 0);
    qf_env_free(&r);
    qf_env_free(&e);
    close(fd);
}

static void test_content_chunks_large(void **state)
{
    (void)state;
    static const size_t sizes[] = { 1, 65535, 7, 65536, 70000, 4096, 200000, 0, 13 };
    size_t n = 700001;
    unsigned char *c = pattern(n);
    struct qf_env e, r;
    make_env(&e, 2, 0);
    int fd = roundtrip(&e, c, n, sizes, sizeof(sizes) / sizeof(sizes[0]), &r);
    assert_content(fd, &r, c, n);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal((uint64_t)st.st_size, (uint64_t)r.content_off + n + END_SZ);
    qf_env_free(&r);
    qf_env_free(&e);
    free(c);
    close(fd);
}

static void test_content_empty_chunks(void **state)
{
    (void)state;
    struct qf_env e, r;
    make_env(&e, 1, 0);
    int fd = tmpfd();
    struct qf_writer *w = qf_write_begin(fd, &e);
    assert_non_null(w);
    for (int i = 0; i < 10; i++)
        assert_int_equal(qf_write_content(w, "", 0), 0);
    assert_int_equal(qf_write_size(w), 0);
    assert_int_equal(qf_write_end(w), 0);
    char err[256];
    assert_int_equal(qf_read(fd, &r, err, sizeof(err)), 0);
    assert_int_equal(r.content_len, 0);
    qf_env_free(&r);
    qf_env_free(&e);
    close(fd);
}

static void test_many_rcpts(void **state)
{
    (void)state;
    struct qf_env e, r;
    make_env(&e, 3000, 0);           /* envelope > 64 KiB: flushed mid-way */
    static const size_t one[] = { 100 };
    unsigned char *c = pattern(1000);
    int fd = roundtrip(&e, c, 1000, one, 1, &r);
    assert_content(fd, &r, c, 1000);
    qf_env_free(&r);
    qf_env_free(&e);
    free(c);
    close(fd);
}

static void test_update_rcpt(void **state)
{
    (void)state;
    struct qf_env e, r, r2;
    make_env(&e, 4, 1);
    static const size_t one[] = { 3 };
    int fd = write_file(&e, (const unsigned char *)"hello\n", 6, one, 1);
    struct stat st1, st2;
    assert_int_equal(fstat(fd, &st1), 0);
    char err[256];
    assert_int_equal(qf_read(fd, &r, err, sizeof(err)), 0);

    struct qf_rcpt *x = &r.rcpts[2];
    x->status = DS_BOUNCED;
    x->attempts = 65535;
    x->last_try = -5;
    str_copy(x->dsn, sizeof(x->dsn), "5.1.1");
    memset(x->reason, 'r', QF_REASON_MAX);
    x->reason[QF_REASON_MAX] = '\0';
    x->reason[10] = '\n';            /* flattened to a space, never corrupts */
    x->reason[11] = '\r';
    assert_int_equal(qf_update_rcpt(fd, x), 0);
    x->reason[10] = x->reason[11] = ' ';
    struct qf_rcpt *y = &r.rcpts[0];
    y->status = DS_DELIVERED;
    str_copy(y->reason, sizeof(y->reason), "");
    str_copy(y->dsn, sizeof(y->dsn), "2.0.0");
    y->rflags = QF_R_DELAY_SENT;     /* kept in place, outside the checksum */
    assert_int_equal(qf_update_rcpt(fd, y), 0);

    assert_int_equal(fstat(fd, &st2), 0);
    assert_int_equal(st1.st_size, st2.st_size);
    assert_int_equal(qf_read(fd, &r2, err, sizeof(err)), 0);
    assert_env_equal(&r, &r2);
    assert_int_equal(r2.rcpts[0].rflags, QF_R_DELAY_SENT);
    assert_int_equal(r2.rcpts[2].rflags, 0);
    assert_content(fd, &r2, (const unsigned char *)"hello\n", 6);

    /* invalid updates are refused before touching the file */
    x->status = DS__COUNT;
    assert_int_equal(qf_update_rcpt(fd, x), -1);
    assert_int_equal(errno, EINVAL);
    qf_env_free(&r2);
    qf_env_free(&r);
    qf_env_free(&e);
    close(fd);
}

/* ---- refusals ----------------------------------------------------------- */

static void test_truncated_everywhere(void **state)
{
    (void)state;
    size_t len;
    unsigned char *p = valid_file(&len, 3);
    struct qf_env e;
    char err[256];
    assert_int_equal(qf_parse(p, len, &e, err, sizeof(err)), 0);
    qf_env_free(&e);
    int fd = tmpfd();
    for (size_t n = 0; n < len; n++) {
        assert_int_equal(qf_parse(p, n, &e, err, sizeof(err)), -1);
        if (n == 0)
            assert_non_null(strstr(err, "empty file"));
        else if (rec_find(p, len, T_END, 0) == (long)n)
            assert_string_equal(err, "missing END record: incomplete file");
        else if (strncmp(err, "truncated record at offset ", 27) != 0 &&
                 strcmp(err, "missing END record: incomplete file") != 0)
            fail_msg("length %zu: unexpected error \"%s\"", n, err);
        qf_env_free(&e);
        /* the same through qf_read on a real file */
        char err2[256];
        assert_int_equal(ftruncate(fd, 0), 0);
        assert_int_equal(pwrite(fd, p, n, 0), (ssize_t)n);
        assert_int_equal(qf_read(fd, &e, err2, sizeof(err2)), -1);
        assert_string_equal(err, err2);
        qf_env_free(&e);
    }
    close(fd);
    free(p);
}

static void test_truncated_offsets_exact(void **state)
{
    (void)state;
    size_t len;
    unsigned char *p = valid_file(&len, 1);
    long q = rec_find(p, len, T_QUEUE_ID, 0);
    char msg[64];
    snprintf(msg, sizeof(msg), "truncated record at offset %ld", q);
    expect_refused(p, (size_t)q + 2, msg);     /* inside the header */
    expect_refused(p, (size_t)q + HDR + 1, msg);  /* inside the payload */
    long c = rec_find(p, len, T_CONTENT, 0);
    snprintf(msg, sizeof(msg), "truncated record at offset %ld (CONTENT", c);
    expect_refused(p, len - HDR - 1, msg);
    free(p);
}

static void test_unknown_type(void **state)
{
    (void)state;
    size_t len;
    unsigned char *p = valid_file(&len, 1);
    long off = rec_find(p, len, T_HELO, 0);
    p[off] = 0x41;
    char msg[64];
    snprintf(msg, sizeof(msg), "unknown record type 0x41 at offset %ld", off);
    expect_refused(p, len, msg);
    p[off] = 0x00;
    snprintf(msg, sizeof(msg), "unknown record type 0x00 at offset %ld", off);
    expect_refused(p, len, msg);
    free(p);
}

static void test_bad_magic_version(void **state)
{
    (void)state;
    size_t len;
    unsigned char *p = valid_file(&len, 1);
    p[HDR + 3] ^= 0x20;
    expect_refused(p, len, "bad magic at offset 0: not a queue file");
    p[HDR + 3] ^= 0x20;
    p[HDR + 10 + 3] = 3;
    expect_refused(p, len, "unsupported queue file version 3 (expected 1 to 2)");
    p[HDR + 10 + 3] = 0;
    expect_refused(p, len, "unsupported queue file version 0 (expected 1 to 2)");
    free(p);
    /* not a queue file at all */
    expect_refused((const unsigned char *)"From alice Mon Jan  1\n", 22,
                   "unknown record type 0x46 at offset 0");
    /* the first record must be VERSION */
    p = valid_file(&len, 1);
    size_t n;
    unsigned char *q = edit_bytes(p, len, 0, HDR + 14, "", 0, &n);
    expect_refused(q, n, "first record is QUEUE_ID, not VERSION");
    free(q);
    free(p);
}

static void test_bytes_after_end(void **state)
{
    (void)state;
    size_t len, n;
    unsigned char *p = valid_file(&len, 1);
    unsigned char *q = edit_bytes(p, len, len, 0, "\x13\0\0\0\0", 5, &n);
    char msg[64];
    snprintf(msg, sizeof(msg), "5 bytes after END record (offset %zu)", len);
    expect_refused(q, n, msg);
    free(q);
    q = edit_bytes(p, len, len, 0, "x", 1, &n);
    snprintf(msg, sizeof(msg), "1 bytes after END record (offset %zu)", len);
    expect_refused(q, n, msg);
    free(q);
    free(p);
}

static void test_length_overflow(void **state)
{
    (void)state;
    size_t len;
    unsigned char *p = valid_file(&len, 1);
    long off = rec_find(p, len, T_QUEUE_ID, 0);
    memset(p + off + 1, 0xff, 4);
    char msg[80];
    snprintf(msg, sizeof(msg), "QUEUE_ID record at offset %ld: bad length 4294967295", off);
    expect_refused(p, len, msg);
    free(p);

    p = valid_file(&len, 1);
    off = rec_find(p, len, T_SENDER, 0);
    p[off + 1] = 0x7f;               /* within max? no: > QF_MAX_FIELD */
    snprintf(msg, sizeof(msg), "SENDER record at offset %ld: bad length", off);
    expect_refused(p, len, msg);
    free(p);

    p = valid_file(&len, 1);
    off = rec_find(p, len, T_SENDER, 0);
    p[off + 3] = 0x10;               /* 4 KiB: allowed, but past EOF */
    snprintf(msg, sizeof(msg), "truncated record at offset %ld", off);
    expect_refused(p, len, msg);
    free(p);

    p = valid_file(&len, 1);
    off = rec_find(p, len, T_CONTENT, 0);
    memset(p + off + HDR, 0xff, 8);  /* u64 content length overflow */
    snprintf(msg, sizeof(msg), "truncated record at offset %ld (CONTENT: 18446744073709551615", off);
    expect_refused(p, len, msg);
    p[off + 4] = 9;                  /* CONTENT record length must be 8 */
    snprintf(msg, sizeof(msg), "CONTENT record at offset %ld: bad length 9", off);
    expect_refused(p, len, msg);
    free(p);
}

static void test_text_controls(void **state)
{
    (void)state;
    static const char bad[] = { '\n', '\r', '\0' };
    for (size_t i = 0; i < sizeof(bad); i++) {
        size_t len;
        unsigned char *p = valid_file(&len, 1);
        long off = rec_find(p, len, T_HELO, 0);
        p[off + HDR + 2] = (unsigned char)bad[i];
        char msg[80];
        snprintf(msg, sizeof(msg), "HELO record at offset %ld: NUL, CR or LF in text", off);
        expect_refused(p, len, msg);
        free(p);
        p = valid_file(&len, 1);
        off = rec_find(p, len, T_RCPT, 0);
        p[off + HDR + 273 + 4 + 1] = (unsigned char)bad[i];
        snprintf(msg, sizeof(msg), "RCPT record at offset %ld: NUL, CR or LF in address", off);
        expect_refused(p, len, msg);
        free(p);
    }
}

static void test_duplicate_and_missing(void **state)
{
    (void)state;
    size_t len, n;
    unsigned char *p = valid_file(&len, 2);
    static const int singles[] = { T_QUEUE_ID, T_ARRIVAL, T_SENDER, T_CLIENT_PORT, T_HELO,
                                   T_RET, T_FLAGS, T_QUARANTINE };
    static const char *const names[] = { "QUEUE_ID", "ARRIVAL", "SENDER", "CLIENT_PORT", "HELO",
                                         "RET", "FLAGS", "QUARANTINE" };
    char msg[80];
    for (size_t i = 0; i < sizeof(singles) / sizeof(singles[0]); i++) {
        long off = rec_find(p, len, singles[i], 0);
        size_t sz = rec_size(p, off);
        unsigned char *q = edit_bytes(p, len, (size_t)off + sz, 0, p + off, sz, &n);
        snprintf(msg, sizeof(msg), "duplicate %s record at offset %zu", names[i], off + sz);
        expect_refused(q, n, msg);
        free(q);
    }
    /* duplicate VERSION, CONTENT, END */
    long v = rec_find(p, len, T_VERSION, 0);
    unsigned char *q = edit_bytes(p, len, HDR + 14, 0, p + v, HDR + 14, &n);
    expect_refused(q, n, "duplicate VERSION record at offset 19");
    free(q);
    long c = rec_find(p, len, T_CONTENT, 0);
    size_t csz = rec_size(p, c);
    q = edit_bytes(p, len, (size_t)c + csz, 0, p + c, csz, &n);
    snprintf(msg, sizeof(msg), "duplicate CONTENT record at offset %zu", c + csz);
    expect_refused(q, n, msg);
    free(q);

    /* required records removed one by one */
    static const int req[] = { T_QUEUE_ID, T_ARRIVAL, T_SENDER };
    static const char *const rnames[] = { "QUEUE_ID", "ARRIVAL", "SENDER" };
    for (size_t i = 0; i < 3; i++) {
        long off = rec_find(p, len, req[i], 0);
        q = edit_bytes(p, len, (size_t)off, rec_size(p, off), "", 0, &n);
        snprintf(msg, sizeof(msg), "missing %s record", rnames[i]);
        expect_refused(q, n, msg);
        free(q);
    }
    long r0 = rec_find(p, len, T_RCPT, 0), r1 = rec_find(p, len, T_RCPT, 1);
    q = edit_bytes(p, len, (size_t)r0, (size_t)r1 + rec_size(p, r1) - (size_t)r0, "", 0, &n);
    expect_refused(q, n, "missing RCPT record");
    free(q);
    /* CONTENT removed: END comes too early */
    q = edit_bytes(p, len, (size_t)c, csz, "", 0, &n);
    snprintf(msg, sizeof(msg), "END record before CONTENT at offset %ld", c);
    expect_refused(q, n, msg);
    free(q);
    /* END removed */
    expect_refused(p, len - HDR, "missing END record: incomplete file");
    free(p);
}

static void test_segment_order(void **state)
{
    (void)state;
    size_t len, n;
    unsigned char *p = valid_file(&len, 1);
    long h = rec_find(p, len, T_HELO, 0);
    size_t hsz = rec_size(p, h);
    /* an envelope record moved after CONTENT */
    unsigned char *q = edit_bytes(p, len, len - HDR, 0, p + h, hsz, &n);
    unsigned char *q2;
    size_t n2;
    q2 = edit_bytes(q, n, (size_t)h, hsz, "", 0, &n2);
    char msg[80];
    snprintf(msg, sizeof(msg), "HELO record after CONTENT at offset %zu", len - HDR - hsz);
    expect_refused(q2, n2, msg);
    free(q2);
    free(q);
    free(p);
}

static void test_rcpt_fields(void **state)
{
    (void)state;
    size_t len;
    unsigned char *p = valid_file(&len, 1);
    long r = rec_find(p, len, T_RCPT, 0);
    char msg[80];
    p[r + HDR] = DS__COUNT;
    snprintf(msg, sizeof(msg), "RCPT record at offset %ld: bad status %d", r, DS__COUNT);
    expect_refused(p, len, msg);
    p[r + HDR] = 0;
    p[r + HDR + 1] = 2;              /* an unknown rflags bit (QF_R_ALL = 1) */
    expect_refused(p, len, "bad status 0");
    p[r + HDR + 1] = 0;
    p[r + HDR + 7] = 0x10;           /* unknown NOTIFY bit */
    expect_refused(p, len, "bad notify 0x10");
    p[r + HDR + 7] = 0;
    memset(p + r + HDR + 16, 'x', 16);   /* dsn without NUL */
    expect_refused(p, len, "bad dsn/reason field");
    memset(p + r + HDR + 16, 0, 16);
    p[r + HDR + 16 + 16 + 200] = 'x';    /* garbage after the reason's NUL */
    expect_refused(p, len, "bad dsn/reason field");
    p[r + HDR + 16 + 16 + 200] = 0;
    p[r + HDR + 273 + 3] += 1;           /* address length past the record */
    expect_refused(p, len, "bad address length 18");
    p[r + HDR + 273 + 3] -= 1;
    p[r + HDR + 273 + 4 + 17 + 3] = 1;   /* ORCPT length past the record */
    expect_refused(p, len, "bad ORCPT length 1");
    p[r + HDR + 273 + 4 + 17 + 3] = 0;
    p[r + HDR + 273 + 3] = 0;            /* empty address */
    expect_refused(p, len, "bad address length 0");
    free(p);

    /* bad values in fixed-size fields */
    p = valid_file(&len, 1);
    long port = rec_find(p, len, T_CLIENT_PORT, 0);
    p[port + HDR + 1] = 1;
    snprintf(msg, sizeof(msg), "CLIENT_PORT record at offset %ld: value %u out of range", port,
             0x10000u + 54321u);
    expect_refused(p, len, msg);
    free(p);
    p = valid_file(&len, 1);
    long q = rec_find(p, len, T_QUEUE_ID, 0);
    p[q + HDR] = '/';
    expect_refused(p, len, "invalid queue id");
    free(p);
}

static void test_too_many_rcpts(void **state)
{
    (void)state;
    size_t len;
    unsigned char *p = valid_file(&len, 1);
    long r = rec_find(p, len, T_RCPT, 0);
    size_t rsz = rec_size(p, r);
    buf_t b;
    buf_init(&b, (size_t)(QF_MAX_RCPTS + 1) * rsz + len);
    buf_append(&b, p, (size_t)r);
    for (int i = 0; i < QF_MAX_RCPTS + 1; i++)
        buf_append(&b, p + r, rsz);
    buf_append(&b, p + r + rsz, len - (size_t)r - rsz);
    struct qf_env e;
    char err[256];
    assert_int_equal(qf_parse((unsigned char *)b.data, b.len, &e, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "more than 100000 RCPT records"));
    /* exactly the maximum is fine */
    size_t cut = b.len - rsz;
    memmove(b.data + r, b.data + r + rsz, b.len - (size_t)r - rsz);
    assert_int_equal(qf_parse((unsigned char *)b.data, cut, &e, err, sizeof(err)), 0);
    assert_int_equal(e.nrcpts, QF_MAX_RCPTS);
    qf_env_free(&e);
    buf_free(&b);
    free(p);
}

/* ---- torn files (END checksum, format 2) ------------------------------------
 * cleanup renames a file into incoming/ before it is on disk (lib/mail/queue.h):
 * after a power cut the name may point at any prefix of the file, at blocks
 * the disk never got (zeros), or at an older message's blocks. Each must be
 * refused. */

#define RCPT_HEAD_SZ (1 + 1 + 2 + 4 + 8 + 16 + QF_REASON_MAX + 1)
#define TORN_CONTENT 9000      /* three 4 KB pages, many 512-byte sectors */

/* A version 2 file with three recipients and TORN_CONTENT bytes of
 * pseudo-random content (seeded), queue id id. */
static unsigned char *torn_file(size_t *len_r, const char *id, unsigned seed)
{
    struct qf_env e;
    make_env(&e, 3, 1);
    free(e.queue_id);
    set_str(&e.queue_id, id);
    unsigned char *c = xmalloc(TORN_CONTENT);
    for (size_t i = 0; i < TORN_CONTENT; i++) {
        seed = seed * 1103515245u + 12345u;
        c[i] = (unsigned char)(seed >> 16);
    }
    static const size_t sizes[] = { 1000, 77, 4096 };
    int fd = write_file(&e, c, TORN_CONTENT, sizes, 3);
    qf_env_free(&e);
    free(c);
    unsigned char *p = slurp(fd, len_r);
    close(fd);
    return p;
}

static void expect_ok(const unsigned char *p, size_t len)
{
    struct qf_env e;
    char err[256];
    if (qf_parse(p, len, &e, err, sizeof(err)) != 0)
        fail_msg("valid file refused: %s", err);
    qf_env_free(&e);
}

/* Refused by qf_parse, and (every `every`-th call) by qf_read on a file. */
static void expect_torn(const unsigned char *p, size_t len, const char *what, size_t at)
{
    static unsigned calls;
    struct qf_env e;
    char err[256];
    if (qf_parse(p, len, &e, err, sizeof(err)) != -1)
        fail_msg("%s at %zu: accepted", what, at);
    assert_int_equal(e.nrcpts, 0);
    qf_env_free(&e);
    if (calls++ % 37 == 0)
        expect_refused(p, len, "");
}

/* Is byte i inside a field qmgr rewrites in place (not checksummed)? */
static int in_place_field(const unsigned char *p, size_t len, size_t i)
{
    for (int k = 0; ; k++) {
        long r = rec_find(p, len, T_RCPT, k);
        if (r < 0)
            return 0;
        size_t h = (size_t)r + HDR;
        if ((i >= h && i < h + 4) || (i >= h + 8 && i < h + RCPT_HEAD_SZ))
            return 1;
    }
}

static void test_torn_truncated_everywhere(void **state)
{
    (void)state;
    size_t len;
    unsigned char *p = torn_file(&len, "4Q7ZK2M0001ABCD042", 1);
    expect_ok(p, len);
    for (size_t n = 0; n < len; n++)
        expect_torn(p, n, "truncated", n);
    free(p);
}

static void test_torn_single_bytes(void **state)
{
    (void)state;
    size_t len;
    unsigned char *p = torn_file(&len, "4Q7ZK2M0001ABCD042", 2);
    int skipped = 0;
    for (size_t i = 0; i < len; i++) {
        if (in_place_field(p, len, i)) {
            skipped++;
            continue;
        }
        unsigned char keep = p[i];
        static const unsigned char flips[] = { 0x01, 0x80, 0xff };
        for (size_t f = 0; f < sizeof(flips); f++) {
            p[i] = keep ^ flips[f];
            expect_torn(p, len, "byte flipped", i);
        }
        if (keep != 0) {
            p[i] = 0;
            expect_torn(p, len, "byte zeroed", i);
        }
        p[i] = keep;
    }
    assert_int_equal(skipped, 3 * (RCPT_HEAD_SZ - 4));
    expect_ok(p, len);
    free(p);
}

/* Blocks the disk never wrote read back as zeros. */
static void test_torn_zero_blocks(void **state)
{
    (void)state;
    size_t len;
    unsigned char *p = torn_file(&len, "4Q7ZK2M0001ABCD042", 3);
    unsigned char *q = xmalloc(len);
    static const size_t bs[] = { 512, 4096 };
    for (size_t b = 0; b < 2; b++) {
        size_t nblk = (len + bs[b] - 1) / bs[b];
        for (size_t k = 1; k <= nblk; k++) {
            /* the last k blocks zero-filled (size already extended) */
            memcpy(q, p, len);
            memset(q + (nblk - k) * bs[b], 0, len - (nblk - k) * bs[b]);
            expect_torn(q, len, "tail blocks zeroed", k);
            /* one block zero-filled */
            memcpy(q, p, len);
            size_t off = (k - 1) * bs[b], n = off + bs[b] > len ? len - off : bs[b];
            memset(q + off, 0, n);
            if (memcmp(q, p, len) != 0)
                expect_torn(q, len, "block zeroed", off);
        }
    }
    free(q);
    free(p);
}

/* A recycled inode (cleanup_recycle.c): the first blocks are the new
 * message's, the rest still the old one's - or the other way round. */
static void test_torn_stale_blocks(void **state)
{
    (void)state;
    size_t la, lb;
    unsigned char *a = torn_file(&la, "4Q7ZK2M0001ABCD042", 4);
    unsigned char *b = torn_file(&lb, "4Q7ZK2M0001ABCD043", 5);
    assert_int_equal(la, lb);
    expect_ok(b, lb);
    unsigned char *q = xmalloc(la);
    for (size_t off = 512; off < la; off += 512) {
        memcpy(q, a, off);
        memcpy(q + off, b + off, la - off);
        expect_torn(q, la, "old tail", off);
        memcpy(q, b, off);
        memcpy(q + off, a + off, la - off);
        expect_torn(q, la, "old head", off);
    }
    free(q);
    free(a);
    free(b);
}

/* qmgr's in-place updates keep the checksum valid. */
static void test_torn_update_keeps_checksum(void **state)
{
    (void)state;
    size_t len;
    unsigned char *p = torn_file(&len, "4Q7ZK2M0001ABCD042", 6);
    int fd = tmpfd();
    assert_int_equal(write(fd, p, len), (ssize_t)len);
    struct qf_env e;
    char err[256];
    assert_int_equal(qf_read(fd, &e, err, sizeof(err)), 0);
    for (int i = 0; i < e.nrcpts; i++) {
        e.rcpts[i].status = DS_DEFERRED;
        e.rcpts[i].attempts = 7;
        e.rcpts[i].last_try = 1800000000;
        str_copy(e.rcpts[i].dsn, sizeof(e.rcpts[i].dsn), "4.4.1");
        str_copy(e.rcpts[i].reason, sizeof(e.rcpts[i].reason), "connection refused");
        assert_int_equal(qf_update_rcpt(fd, &e.rcpts[i]), 0);
    }
    qf_env_free(&e);
    if (qf_read(fd, &e, err, sizeof(err)) != 0)
        fail_msg("updated file refused: %s", err);
    assert_int_equal(e.version, 2);
    assert_int_equal(e.rcpts[2].attempts, 7);
    qf_env_free(&e);
    close(fd);
    free(p);
}

/* ---- writer errors --------------------------------------------------------- */

static void test_enospc(void **state)
{
    (void)state;
    struct qf_env e;
    make_env(&e, 2, 0);
    int fd = open("/dev/full", O_WRONLY);
    assert_true(fd >= 0);
    struct qf_writer *w = qf_write_begin(fd, &e);
    assert_non_null(w);
    assert_int_equal(qf_write_content(w, "small\n", 6), 0);
    errno = 0;
    assert_int_equal(qf_write_end(w), -1);
    assert_int_equal(errno, ENOSPC);

    /* a large write fails early, and _end still reports it */
    w = qf_write_begin(fd, &e);
    assert_non_null(w);
    unsigned char *c = pattern(100000);
    assert_int_equal(qf_write_content(w, c, 100000), -1);
    assert_int_equal(errno, ENOSPC);
    assert_int_equal(qf_write_content(w, c, 10), -1);
    errno = 0;
    assert_int_equal(qf_write_end(w), -1);
    assert_int_equal(errno, ENOSPC);
    free(c);
    close(fd);

    /* a closed descriptor: EBADF */
    fd = tmpfd();
    w = qf_write_begin(fd, &e);
    close(fd);
    assert_int_equal(qf_write_end(w), -1);
    assert_int_equal(errno, EBADF);
    qf_env_free(&e);
}

static void test_writer_refuses_invalid_env(void **state)
{
    (void)state;
    int fd = tmpfd();
    struct qf_env e;
    make_env(&e, 0, 0);
    errno = 0;
    assert_null(qf_write_begin(fd, &e));             /* no recipient */
    assert_int_equal(errno, EINVAL);
    qf_env_add_rcpt(&e, "a@b", "", 0);
    assert_non_null(e.rcpts);
    struct qf_writer *w = qf_write_begin(fd, &e);
    assert_non_null(w);
    qf_write_abort(w);
    free(e.helo);
    e.helo = xstrdup("bad\r\nhelo");
    assert_null(qf_write_begin(fd, &e));
    assert_int_equal(errno, EINVAL);
    free(e.helo);
    e.helo = xstrdup("ok");
    free(e.queue_id);
    e.queue_id = xstrdup("../etc");
    assert_null(qf_write_begin(fd, &e));
    free(e.queue_id);
    e.queue_id = xstrdup("ABC");
    e.ret = 3;
    assert_null(qf_write_begin(fd, &e));
    e.ret = 1;
    e.rcpts[0].status = DS__COUNT;
    assert_null(qf_write_begin(fd, &e));
    e.rcpts[0].status = DS_PENDING;
    char *big = xmalloc(QF_MAX_FIELD + 2);
    memset(big, 'a', QF_MAX_FIELD + 1);
    big[QF_MAX_FIELD + 1] = '\0';
    free(e.sender);
    e.sender = big;
    assert_null(qf_write_begin(fd, &e));
    big[QF_MAX_FIELD] = '\0';                         /* exactly the limit: fine */
    w = qf_write_begin(fd, &e);
    assert_non_null(w);
    assert_int_equal(qf_write_end(w), 0);
    struct qf_env r;
    char err[256];
    assert_int_equal(qf_read(fd, &r, err, sizeof(err)), 0);
    assert_int_equal(strlen(r.sender), QF_MAX_FIELD);
    qf_env_free(&r);
    qf_env_free(&e);
    close(fd);
}

/* ---- env helpers -------------------------------------------------------- */

static void test_env_helpers(void **state)
{
    (void)state;
    struct qf_env e;
    qf_env_init(&e);
    qf_env_init(&e);                 /* allocates nothing: harmless twice */
    assert_string_equal(e.sender, "");
    assert_string_equal(e.helo, "");
    assert_null(e.quarantine);
    assert_int_equal(e.nrcpts, 0);
    for (int i = 0; i < 1000; i++) {
        char a[32];
        snprintf(a, sizeof(a), "u%d@x", i);
        struct qf_rcpt *r = qf_env_add_rcpt(&e, a, i % 2 ? "o" : NULL, NOTIFY_FAILURE);
        assert_string_equal(r->addr, a);
        assert_int_equal(r->status, DS_PENDING);
    }
    assert_int_equal(e.nrcpts, 1000);
    assert_string_equal(e.rcpts[999].addr, "u999@x");
    assert_string_equal(e.rcpts[998].orig, "");
    assert_string_equal(e.rcpts[997].orig, "o");
    qf_env_free(&e);
    assert_int_equal(e.nrcpts, 0);
    qf_env_free(&e);

    assert_string_equal(dstatus_name(DS_PENDING), "pending");
    assert_string_equal(dstatus_name(DS_DELIVERED), "delivered");
    assert_string_equal(dstatus_name(DS_DEFERRED), "deferred");
    assert_string_equal(dstatus_name(DS_BOUNCED), "bounced");
    assert_string_equal(dstatus_name(DS_DISCARDED), "discarded");
    assert_string_equal(dstatus_name(DS__COUNT), "unknown");
    assert_string_equal(dstatus_name((enum dstatus)-1), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_all_records),
        cmocka_unit_test(test_roundtrip_notes),
        cmocka_unit_test(test_roundtrip_defaults),
        cmocka_unit_test(test_content_chunks_large),
        cmocka_unit_test(test_content_empty_chunks),
        cmocka_unit_test(test_many_rcpts),
        cmocka_unit_test(test_update_rcpt),
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_truncated_offsets_exact),
        cmocka_unit_test(test_unknown_type),
        cmocka_unit_test(test_bad_magic_version),
        cmocka_unit_test(test_bytes_after_end),
        cmocka_unit_test(test_length_overflow),
        cmocka_unit_test(test_text_controls),
        cmocka_unit_test(test_duplicate_and_missing),
        cmocka_unit_test(test_segment_order),
        cmocka_unit_test(test_rcpt_fields),
        cmocka_unit_test(test_too_many_rcpts),
        cmocka_unit_test(test_enospc),
        cmocka_unit_test(test_writer_refuses_invalid_env),
        cmocka_unit_test(test_env_helpers),
        cmocka_unit_test(test_torn_truncated_everywhere),
        cmocka_unit_test(test_torn_single_bytes),
        cmocka_unit_test(test_torn_zero_blocks),
        cmocka_unit_test(test_torn_stale_blocks),
        cmocka_unit_test(test_torn_update_keeps_checksum),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
