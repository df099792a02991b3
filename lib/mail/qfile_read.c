/*
 * qfile_read.c - queue file reader/validator (qmgr, delivery, CLI, fuzz
 * target): one validator, walking qfile.c's record table, serves qf_read
 * (file, pread through a window) and qf_parse (memory).
 * The reader must never trust the file: every length is checked against the
 * bytes present before it is used, and anything unexpected is refused.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/crc32c.h"
#include "util/fdio.h"
#include "mail/qfile.h"
#include "mail/spool.h"
#include "mail/qfile_int.h"

#define RBUF_SIZE    65536

/* Where the bytes come from: memory, or a file through a pread window. */
struct qf_src {
    const unsigned char *mem;
    int fd;
    uint64_t size;
    unsigned char *win;
    uint64_t win_off;
    size_t win_len, win_cap;
};

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); return -1; } while (0)

static const struct rec_def *rec_def_find(uint8_t type)
{
    for (size_t i = 0; i < QF_NDEFS; i++)
        if (qf_rec_defs[i].type == type)
            return &qf_rec_defs[i];
    return NULL;
}

/* A fixed field is valid when it holds a NUL, zeros after it, no CR/LF. */
static int fixed_ok(const unsigned char *p, size_t size)
{
    const unsigned char *z = memchr(p, '\0', size);
    if (z == NULL || !text_ok(p, (size_t)(z - p)))
        return 0;
    for (const unsigned char *q = z; q < p + size; q++)
        if (*q != 0)
            return 0;
    return 1;
}

/* Point *p_r at len bytes at off (the caller checked off+len <= size). */
static int src_get(struct qf_src *s, uint64_t off, size_t len, const unsigned char **p_r,
                   char *err, size_t errlen)
{
    if (len == 0) {
        *p_r = (const unsigned char *)"";
        return 0;
    }
    if (s->mem != NULL) {
        *p_r = s->mem + off;
        return 0;
    }
    if (s->win != NULL && off >= s->win_off && off - s->win_off <= s->win_len &&
        len <= s->win_len - (off - s->win_off)) {
        *p_r = s->win + (off - s->win_off);
        return 0;
    }
    size_t want = len > RBUF_SIZE ? len : RBUF_SIZE;
    if (want > s->size - off)
        want = (size_t)(s->size - off);
    if (want < len)                   /* callers check bounds first: never */
        FAIL("read past end of file at offset %" PRIu64, off);
    if (want > s->win_cap) {
        s->win = xrealloc(s->win, want);
        s->win_cap = want;
    }
    if (fdio_pread_all(s->fd, s->win, want, (off_t)off) < 0) {
        /* EIO is also what a file that ends early gives: tell them apart */
        struct stat st;
        if (errno == EIO && fstat(s->fd, &st) == 0 && (uint64_t)st.st_size < off + want)
            FAIL("file shrank while reading (offset %" PRIu64 ")", (uint64_t)st.st_size);
        FAIL("read error at offset %" PRIu64 ": %s", off, strerror(errno));
    }
    s->win_off = off;
    s->win_len = want;
    *p_r = s->win;
    return 0;
}

static int dec_version(struct qf_env *e, const unsigned char *p, uint64_t off, char *err,
                       size_t errlen)
{
    if (memcmp(p, QF_MAGIC, MAGIC_LEN) != 0)
        FAIL("bad magic at offset %" PRIu64 ": not a queue file", off);
    e->version = (uint32_t)be_get(p + MAGIC_LEN, 4);
    if (e->version < QF_FORMAT_VERSION_MIN || e->version > QF_FORMAT_VERSION)
        FAIL("unsupported queue file version %u (expected %u to %u)", e->version,
             QF_FORMAT_VERSION_MIN, QF_FORMAT_VERSION);
    return 0;
}

static int dec_rcpt(struct qf_env *e, const unsigned char *p, uint32_t len, uint64_t off,
                    char *err, size_t errlen)
{
    if (e->nrcpts >= QF_MAX_RCPTS)
        FAIL("more than %d RCPT records (offset %" PRIu64 ")", QF_MAX_RCPTS, off);
    if (p[0] >= DS__COUNT || (p[1] & ~QF_R_ALL) != 0)
        FAIL("RCPT record at offset %" PRIu64 ": bad status %u/flags %u", off, p[0], p[1]);
    uint32_t notify = (uint32_t)be_get(p + 4, 4);
    if (notify & ~(uint32_t)NOTIFY_ALL)
        FAIL("RCPT record at offset %" PRIu64 ": bad notify 0x%x", off, notify);
    if (!fixed_ok(p + 16, DSN_LEN) || !fixed_ok(p + 16 + DSN_LEN, REASON_LEN))
        FAIL("RCPT record at offset %" PRIu64 ": bad dsn/reason field", off);
    uint32_t rest = len - RCPT_HEAD, pos = RCPT_HEAD;
    uint32_t an = (uint32_t)be_get(p + pos, 4);
    if (an < 1 || an > QF_MAX_FIELD || an > rest - 8)
        FAIL("RCPT record at offset %" PRIu64 ": bad address length %u", off, an);
    const unsigned char *a = p + pos + 4;
    pos += 4 + an;
    uint32_t on = (uint32_t)be_get(p + pos, 4);
    if (on > QF_MAX_FIELD || (uint64_t)pos + 4 + on != len)
        FAIL("RCPT record at offset %" PRIu64 ": bad ORCPT length %u", off, on);
    const unsigned char *o = p + pos + 4;
    if (!text_ok(a, an) || !text_ok(o, on))
        FAIL("RCPT record at offset %" PRIu64 ": NUL, CR or LF in address", off);
    char *addr = xstrndup((const char *)a, an), *orig = xstrndup((const char *)o, on);
    struct qf_rcpt *r = qf_env_add_rcpt(e, addr, orig, notify);
    free(addr);
    free(orig);
    r->status = p[0];
    r->rflags = p[1];
    r->attempts = (uint16_t)be_get(p + 2, 2);
    r->last_try = (int64_t)be_get(p + 8, 8);
    memcpy(r->dsn, p + 16, DSN_LEN);
    memcpy(r->reason, p + 16 + DSN_LEN, REASON_LEN);
    r->rec_off = (off_t)off;
    return 0;
}

/* Decode one envelope record's payload p (len bytes) into e. */
static int dec_field(const struct rec_def *d, struct qf_env *e, const unsigned char *p,
                     uint32_t len, uint64_t off, char *err, size_t errlen)
{
    char *base = (char *)e + d->off;
    switch (d->kind) {
    case K_VERSION:
        return dec_version(e, p, off, err, errlen);
    case K_TEXT: {
        if (!text_ok(p, len))
            FAIL("%s record at offset %" PRIu64 ": NUL, CR or LF in text", d->name, off);
        char *s = xstrndup((const char *)p, len);
        if (d->off == ENV(queue_id) && !queue_id_valid(s)) {
            free(s);
            FAIL("QUEUE_ID record at offset %" PRIu64 ": invalid queue id", off);
        }
        qf_str_release(*env_str(e, d->off));
        *env_str(e, d->off) = s;
        return 0;
    }
    case K_U32: {
        uint32_t v = (uint32_t)be_get(p, 4);
        if (v > d->vmax)
            FAIL("%s record at offset %" PRIu64 ": value %u out of range", d->name, off, v);
        *(uint32_t *)(void *)base = v;
        return 0;
    }
    case K_I64:
        *(int64_t *)(void *)base = (int64_t)be_get(p, 8);
        return 0;
    case K_RCPT:
        return dec_rcpt(e, p, len, off, err, errlen);
    case K_NOTE: {
        if (e->nnotes >= QF_MAX_NOTES)
            FAIL("more than %d NOTE records (offset %" PRIu64 ")", QF_MAX_NOTES, off);
        if (!text_ok(p, len))
            FAIL("NOTE record at offset %" PRIu64 ": NUL, CR or LF in text", off);
        char *s = xstrndup((const char *)p, len);
        qf_env_add_note(e, s);
        free(s);
        return 0;
    }
    case K_CONTENT: case K_END:
        break;
    }
    return 0;
}

/* Check one record's header at off: known type, allowed here, length in
 * bounds and present. Returns its definition, or NULL with err set. */
static const struct rec_def *rec_check(struct qf_src *s, uint64_t off, enum rec_seg state,
                                       const unsigned *seen, uint32_t *len_r,
                                       char *err, size_t errlen)
{
    const unsigned char *h;
    if (s->size - off < REC_HDR) {
        snprintf(err, errlen, "truncated record at offset %" PRIu64, off);
        return NULL;
    }
    if (src_get(s, off, REC_HDR, &h, err, errlen) < 0)
        return NULL;
    const struct rec_def *d = rec_def_find(h[0]);
    uint32_t len = (uint32_t)be_get(h + 1, 4);
    if (d == NULL) {
        snprintf(err, errlen, "unknown record type 0x%02x at offset %" PRIu64, h[0], off);
    } else if (off == 0 && d->seg != SEG_VERSION) {
        snprintf(err, errlen, "first record is %s, not VERSION: not a queue file", d->name);
    } else if (!(d->flags & RF_MULTI) && seen[d - qf_rec_defs]) {
        snprintf(err, errlen, "duplicate %s record at offset %" PRIu64, d->name, off);
    } else if (d->seg == SEG_ENVELOPE && state != SEG_ENVELOPE) {
        snprintf(err, errlen, "%s record after CONTENT at offset %" PRIu64, d->name, off);
    } else if (d->seg == SEG_END && state != SEG_CONTENT) {
        snprintf(err, errlen, "END record before CONTENT at offset %" PRIu64, off);
    } else if (len < d->min || len > d->max) {
        snprintf(err, errlen, "%s record at offset %" PRIu64 ": bad length %u", d->name, off, len);
    } else if (len > s->size - off - REC_HDR) {
        snprintf(err, errlen, "truncated record at offset %" PRIu64, off);
    } else {
        *len_r = len;
        return d;
    }
    return NULL;
}

/* Continue *crc over n bytes at off, read through the window in pieces. */
static int crc_range(struct qf_src *s, uint64_t off, uint64_t n, uint32_t *crc,
                     char *err, size_t errlen)
{
    while (n > 0) {
        size_t k = n < RBUF_SIZE ? (size_t)n : RBUF_SIZE;
        const unsigned char *p;
        if (src_get(s, off, k, &p, err, errlen) < 0)
            return -1;
        *crc = crc32c(*crc, p, k);
        off += k;
        n -= k;
    }
    return 0;
}

/* Add one record (header and payload p) to the checksum, skipping what
 * the checksum does not cover (qfile.h). Content is added by the caller. */
static uint32_t crc_record(uint32_t crc, const struct rec_def *d, const unsigned char *p,
                           uint32_t len)
{
    unsigned char h[REC_HDR];
    h[0] = d->type;
    be_put(h + 1, len, 4);
    crc = crc32c(crc, h, REC_HDR);
    switch (d->kind) {
    case K_RCPT:
        crc = qf_crc_rcpt_head(crc, p);
        return crc32c(crc, p + RCPT_HEAD, len - RCPT_HEAD);
    case K_CONTENT:
        return crc32c_zeros(crc, 8);
    case K_END:
        return len >= 8 ? crc32c(crc, p, 8) : crc;
    default:
        return crc32c(crc, p, len);
    }
}

/* END: version 1 has no payload; from version 2 it repeats the content
 * length and holds the checksum of every byte before it (a file torn by a
 * crash is refused here). */
static int check_end(const struct qf_env *e, const unsigned char *p, uint32_t len,
                     uint32_t crc, uint64_t off, char *err, size_t errlen)
{
    if (e->version < 2) {
        if (len != 0)
            FAIL("END record at offset %" PRIu64 ": bad length %u", off, len);
        return 0;
    }
    if (len != END_V2_LEN)
        FAIL("END record at offset %" PRIu64 ": bad length %u", off, len);
    if (be_get(p, 8) != e->content_len)
        FAIL("END record at offset %" PRIu64 ": content length %" PRIu64 " does not match "
             "CONTENT (%" PRIu64 "): torn file", off, be_get(p, 8), e->content_len);
    if ((uint32_t)be_get(p + 8, 4) != crc)
        FAIL("END record at offset %" PRIu64 ": checksum mismatch (0x%08x, computed 0x%08x): "
             "torn or damaged file", off, (unsigned)be_get(p + 8, 4), (unsigned)crc);
    return 0;
}

/* The one validator behind qf_read and qf_parse. */
static int qf_validate(struct qf_src *s, struct qf_env *e, char *err, size_t errlen)
{
    unsigned seen[QF_NDEFS] = { 0 };
    enum rec_seg state = SEG_VERSION;
    uint64_t off = 0;
    uint32_t crc = 0;
    if (s->size == 0)
        FAIL("empty file: not a queue file");
    while (off < s->size) {
        if (state == SEG_END)
            FAIL("%" PRIu64 " bytes after END record (offset %" PRIu64 ")", s->size - off, off);
        uint32_t len;
        const struct rec_def *d = rec_check(s, off, state, seen, &len, err, errlen);
        if (d == NULL)
            return -1;
        seen[d - qf_rec_defs]++;
        const unsigned char *p;
        if (src_get(s, off + REC_HDR, len, &p, err, errlen) < 0)
            return -1;
        crc = crc_record(crc, d, p, len);
        if (d->kind == K_END && check_end(e, p, len, crc, off, err, errlen) < 0)
            return -1;
        if (d->kind == K_CONTENT) {
            uint64_t clen = be_get(p, 8), have = s->size - off - REC_HDR - 8;
            if (clen > have)
                FAIL("truncated record at offset %" PRIu64 " (CONTENT: %" PRIu64
                     " bytes declared, %" PRIu64 " present)", off, clen, have);
            e->content_off = (off_t)(off + REC_HDR + 8);
            e->content_len = clen;
            if (e->version >= 2 &&
                crc_range(s, (uint64_t)e->content_off, clen, &crc, err, errlen) < 0)
                return -1;
            off += REC_HDR + 8 + clen;
            state = SEG_CONTENT;
            continue;
        }
        if (dec_field(d, e, p, len, off, err, errlen) < 0)
            return -1;
        off += REC_HDR + len;
        if (d->seg == SEG_VERSION)
            state = SEG_ENVELOPE;
        else if (d->seg == SEG_END)
            state = SEG_END;
    }
    if (state != SEG_END)
        FAIL("missing END record: incomplete file");
    for (size_t i = 0; i < QF_NDEFS; i++)
        if ((qf_rec_defs[i].flags & RF_REQUIRED) && !seen[i])
            FAIL("missing %s record", qf_rec_defs[i].name);
    return 0;
}

static int parse_src(struct qf_src *s, struct qf_env *env, char *err, size_t errlen)
{
    qf_env_init(env);
    if (errlen > 0)
        err[0] = '\0';
    int r = qf_validate(s, env, err, errlen);
    if (r < 0)
        qf_env_free(env);
    free(s->win);
    return r;
}

int qf_parse(const unsigned char *p, size_t len, struct qf_env *env, char *err, size_t errlen)
{
    struct qf_src s = { .mem = p ? p : (const unsigned char *)"", .fd = -1, .size = len };
    return parse_src(&s, env, err, errlen);
}

unsigned char *qf_pread_small(int fd, size_t max, size_t *size_r)
{
    unsigned char *p = xmalloc(max ? max : 1);
    ssize_t n;
    while ((n = pread(fd, p, max, 0)) < 0 && errno == EINTR)
        ;
    if (n >= 0 && (size_t)n < max) {   /* it ended before the buffer: all of it */
        *size_r = (size_t)n;
        return p;
    }
    free(p);
    return NULL;
}

int qf_read(int fd, struct qf_env *env, char *err, size_t errlen)
{
    size_t n;
    unsigned char *p = qf_pread_small(fd, QF_SMALL_READ, &n);
    if (p != NULL) {                   /* nearly every file: no fstat, no window */
        int r = qf_parse(p, n, env, err, errlen);
        free(p);
        return r;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        qf_env_init(env);
        snprintf(err, errlen, "fstat: %s", strerror(errno));
        return -1;
    }
    struct qf_src s = { .mem = NULL, .fd = fd, .size = (uint64_t)st.st_size };
    return parse_src(&s, env, err, errlen);
}
