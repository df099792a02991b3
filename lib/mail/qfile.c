/*
 * qfile.c - queue file writer (cleanup), reader/validator (qmgr, delivery,
 * CLI, fuzz target) and in-place recipient updates (qmgr).
 *
 * Every record type is declared once in rec_defs[]: its type byte, which
 * segment may hold it, its length bounds and how it maps onto struct qf_env.
 * The writer walks the same table to emit the envelope, and one validator
 * serves qf_read (file, pread through a window) and qf_parse (memory).
 * The reader must never trust the file: every length is checked against the
 * bytes present before it is used, and anything unexpected is refused.
 */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "util/crc32c.h"
#include "util/fdio.h"
#include "mail/qfile.h"
#include "mail/spool.h"

#define REC_HDR      5                 /* u8 type + u32 BE length */
#define MAGIC_LEN    (sizeof(QF_MAGIC) - 1)
#define DSN_LEN      16
#define REASON_LEN   (QF_REASON_MAX + 1)
/* RCPT fixed head: status u8, pad u8, attempts u16, notify u32, last_try i64,
 * dsn[16], reason[QF_REASON_MAX+1]; then u32 addr len, addr, u32 orig len, orig. */
#define RCPT_HEAD    (1 + 1 + 2 + 4 + 8 + DSN_LEN + REASON_LEN)
#define RCPT_MIN     (RCPT_HEAD + 4 + 1 + 4)
#define RCPT_MAX     (RCPT_HEAD + 4 + QF_MAX_FIELD + 4 + QF_MAX_FIELD)
/* END payload from version 2: u64 content length, u32 CRC-32C (see qfile.h) */
#define END_V2_LEN   12
#define WBUF_SIZE    65536
#define RBUF_SIZE    65536
#define NOTIFY_ALL   (NOTIFY_NEVER | NOTIFY_SUCCESS | NOTIFY_FAILURE | NOTIFY_DELAY)
#define FLAGS_ALL    (QF_F_SMTPUTF8 | QF_F_8BITMIME | QF_F_BINARYMIME)

/* Shared "" for unset strings: never freed, so qf_env_init allocates nothing. */
static char qf_empty[1];

enum rec_seg { SEG_VERSION, SEG_ENVELOPE, SEG_CONTENT, SEG_END };
enum rec_kind { K_VERSION, K_TEXT, K_U32, K_I64, K_RCPT, K_CONTENT, K_END, K_NOTE };
enum { RF_REQUIRED = 1, RF_MULTI = 2, RF_OPTIONAL = 4 /* text written only when non-NULL */ };

struct rec_def {
    uint8_t type;
    const char *name;
    enum rec_seg seg;
    enum rec_kind kind;
    uint32_t min, max;       /* payload length bounds */
    unsigned flags;
    size_t off;              /* field in struct qf_env (K_TEXT/K_U32/K_I64) */
    uint32_t vmax;           /* K_U32: largest value allowed */
};

#define ENV(f) offsetof(struct qf_env, f)
/* The one table of record types, in the order the writer emits them. */
static const struct rec_def rec_defs[] = {
    { 0x01, "VERSION",     SEG_VERSION,  K_VERSION, MAGIC_LEN + 4, MAGIC_LEN + 4, RF_REQUIRED, 0, 0 },
    { 0x02, "QUEUE_ID",    SEG_ENVELOPE, K_TEXT, 1, QUEUE_ID_MAX - 1, RF_REQUIRED, ENV(queue_id), 0 },
    { 0x03, "ARRIVAL",     SEG_ENVELOPE, K_I64, 8, 8, RF_REQUIRED, ENV(arrival), 0 },
    { 0x04, "SENDER",      SEG_ENVELOPE, K_TEXT, 0, QF_MAX_FIELD, RF_REQUIRED, ENV(sender), 0 },
    { 0x05, "CLIENT_IP",   SEG_ENVELOPE, K_TEXT, 0, QF_MAX_FIELD, 0, ENV(client_ip), 0 },
    { 0x06, "CLIENT_PORT", SEG_ENVELOPE, K_U32, 4, 4, 0, ENV(client_port), 65535 },
    { 0x07, "CLIENT_PTR",  SEG_ENVELOPE, K_TEXT, 0, QF_MAX_FIELD, 0, ENV(client_ptr), 0 },
    { 0x08, "HELO",        SEG_ENVELOPE, K_TEXT, 0, QF_MAX_FIELD, 0, ENV(helo), 0 },
    { 0x09, "PROTOCOL",    SEG_ENVELOPE, K_TEXT, 0, QF_MAX_FIELD, 0, ENV(protocol), 0 },
    { 0x0a, "AUTH_USER",   SEG_ENVELOPE, K_TEXT, 0, QF_MAX_FIELD, 0, ENV(auth_user), 0 },
    { 0x0b, "TLS",         SEG_ENVELOPE, K_TEXT, 0, QF_MAX_FIELD, 0, ENV(tls), 0 },
    { 0x0c, "LISTENER",    SEG_ENVELOPE, K_TEXT, 0, QF_MAX_FIELD, 0, ENV(listener), 0 },
    { 0x0d, "ENVID",       SEG_ENVELOPE, K_TEXT, 0, QF_MAX_FIELD, 0, ENV(envid), 0 },
    { 0x0e, "RET",         SEG_ENVELOPE, K_U32, 4, 4, 0, ENV(ret), 2 },
    { 0x0f, "FLAGS",       SEG_ENVELOPE, K_U32, 4, 4, 0, ENV(flags), FLAGS_ALL },
    { 0x10, "QUARANTINE",  SEG_ENVELOPE, K_TEXT, 1, QF_MAX_FIELD, RF_OPTIONAL, ENV(quarantine), 0 },
    { 0x14, "NOTE",        SEG_ENVELOPE, K_NOTE, 0, QF_MAX_FIELD, RF_MULTI, 0, 0 },
    { 0x11, "RCPT",        SEG_ENVELOPE, K_RCPT, RCPT_MIN, RCPT_MAX, RF_REQUIRED | RF_MULTI, 0, 0 },
    { 0x12, "CONTENT",     SEG_CONTENT,  K_CONTENT, 8, 8, RF_REQUIRED, 0, 0 },
    { 0x13, "END",         SEG_END,      K_END, 0, END_V2_LEN, RF_REQUIRED, 0, 0 },
};
#define NDEFS (sizeof(rec_defs) / sizeof(rec_defs[0]))

static const struct rec_def *rec_def_find(uint8_t type)
{
    for (size_t i = 0; i < NDEFS; i++)
        if (rec_defs[i].type == type)
            return &rec_defs[i];
    return NULL;
}

static const struct rec_def *rec_def_kind(enum rec_kind k)
{
    for (size_t i = 0; i < NDEFS; i++)
        if (rec_defs[i].kind == k)
            return &rec_defs[i];
    return NULL;
}

/* ---- byte order ------------------------------------------------------- */

static void be_put(unsigned char *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (unsigned char)v;
        v >>= 8;
    }
}

static uint64_t be_get(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* ---- envelope ----------------------------------------------------------- */

static char **env_str(struct qf_env *e, size_t off)
{
    return (char **)(void *)((char *)e + off);
}

static const char *env_cstr(const struct qf_env *e, size_t off)
{
    return *(const char *const *)(const void *)((const char *)e + off);
}

static void str_release(char *s)
{
    if (s != NULL && s != qf_empty)
        free(s);
}

void qf_env_init(struct qf_env *e)
{
    memset(e, 0, sizeof(*e));
    e->version = QF_FORMAT_VERSION;
    for (size_t i = 0; i < NDEFS; i++)
        if (rec_defs[i].kind == K_TEXT && !(rec_defs[i].flags & RF_OPTIONAL))
            *env_str(e, rec_defs[i].off) = qf_empty;
    e->quarantine = NULL;
}

void qf_env_free(struct qf_env *e)
{
    for (size_t i = 0; i < NDEFS; i++)
        if (rec_defs[i].kind == K_TEXT)
            str_release(*env_str(e, rec_defs[i].off));
    for (int i = 0; i < e->nrcpts; i++) {
        str_release(e->rcpts[i].addr);
        str_release(e->rcpts[i].orig);
    }
    free(e->rcpts);
    for (int i = 0; i < e->nnotes; i++)
        free(e->notes[i]);
    free(e->notes);
    qf_env_init(e);
}

void qf_env_add_note(struct qf_env *e, const char *text)
{
    if (e->nnotes >= QF_MAX_NOTES)
        return;
    int n = e->nnotes;
    if (n == 0 || (n >= 4 && (n & (n - 1)) == 0))
        e->notes = xrealloc(e->notes, sizeof(*e->notes) * (size_t)(n == 0 ? 4 : n * 2));
    size_t len = strlen(text ? text : "");
    if (len > QF_MAX_FIELD)
        len = QF_MAX_FIELD;
    char *d = xstrndup(text ? text : "", len);
    for (char *p = d; *p; p++)
        if (*p == '\r' || *p == '\n')
            *p = ' ';
    e->notes[n] = d;
    e->nnotes = n + 1;
}

struct qf_rcpt *qf_env_add_rcpt(struct qf_env *e, const char *addr, const char *orig,
                                uint32_t notify)
{
    int n = e->nrcpts;
    /* capacity is implicit: the next power of two >= nrcpts (min 4) */
    if (n == 0 || (n >= 4 && (n & (n - 1)) == 0))
        e->rcpts = xrealloc(e->rcpts, sizeof(*e->rcpts) * (size_t)(n == 0 ? 4 : n * 2));
    struct qf_rcpt *r = &e->rcpts[n];
    memset(r, 0, sizeof(*r));
    r->addr = xstrdup(addr);
    r->orig = xstrdup(orig ? orig : "");
    r->notify = notify;
    r->status = DS_PENDING;
    e->nrcpts = n + 1;
    return r;
}

const char *dstatus_name(enum dstatus s)
{
    static const char *const names[DS__COUNT] = {
        "pending", "delivered", "deferred", "bounced", "discarded"
    };
    return (unsigned)s < DS__COUNT ? names[s] : "unknown";
}

/* Text fields may hold any byte but NUL, CR and LF. */
static int text_ok(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] == '\0' || p[i] == '\r' || p[i] == '\n')
            return 0;
    return 1;
}

/* ---- recipient fixed head ------------------------------------------------ */

/* Copy s into a zero-padded fixed field, CR/LF flattened to spaces so an
 * update can never make the file unreadable. */
static void fixed_put(unsigned char *dst, size_t size, const char *s)
{
    memset(dst, 0, size);
    for (size_t i = 0; i + 1 < size && s[i] != '\0'; i++)
        dst[i] = (s[i] == '\r' || s[i] == '\n') ? ' ' : (unsigned char)s[i];
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

static void rcpt_head_put(unsigned char *h, const struct qf_rcpt *r)
{
    h[0] = r->status;
    h[1] = 0;
    be_put(h + 2, r->attempts, 2);
    be_put(h + 4, r->notify, 4);
    be_put(h + 8, (uint64_t)r->last_try, 8);
    fixed_put(h + 16, DSN_LEN, r->dsn);
    fixed_put(h + 16 + DSN_LEN, REASON_LEN, r->reason);
}

/* The checksum skips the fields qmgr rewrites in place (qf_update_rcpt):
 * status, pad, attempts, last_try, dsn and reason count as zeros; notify is
 * covered. */
static uint32_t crc_rcpt_head(uint32_t crc, const unsigned char *h)
{
    crc = crc32c_zeros(crc, 4);
    crc = crc32c(crc, h + 4, 4);
    return crc32c_zeros(crc, RCPT_HEAD - 8);
}

/* ---- writer ------------------------------------------------------------- */

struct qf_writer {
    int fd;
    int err;                 /* sticky errno of the first failure */
    buf_t buf;               /* bytes not yet written */
    uint64_t written;        /* bytes handed to write(2) so far */
    off_t base;              /* file offset where the queue file starts */
    uint64_t content_hdr;    /* offset of the CONTENT payload (u64 length) */
    uint64_t content_len;
    uint32_t crc;            /* END checksum of the bytes so far (qfile.h) */
};

/* Append to the buffer, and to the checksum. */
static void wput(struct qf_writer *w, const void *p, size_t n)
{
    buf_append(&w->buf, p, n);
    w->crc = crc32c(w->crc, p, n);
}

/* All n bytes to the file; a failure sticks (w->err): the writer is done. */
static int write_all(struct qf_writer *w, const void *p, size_t n)
{
    if (fdio_write_all(w->fd, p, n) < 0) {
        w->err = errno;
        return -1;
    }
    w->written += (uint64_t)n;
    return 0;
}

static int wflush(struct qf_writer *w)
{
    if (w->err) {
        errno = w->err;
        return -1;
    }
    int r = write_all(w, w->buf.data, w->buf.len);
    buf_reset(&w->buf);
    return r;
}

static void rec_begin(struct qf_writer *w, uint8_t type, uint32_t len)
{
    unsigned char h[REC_HDR];
    h[0] = type;
    be_put(h + 1, len, 4);
    wput(w, h, REC_HDR);
}

static void rec_u32(struct qf_writer *w, uint8_t type, uint32_t v)
{
    unsigned char x[4];
    be_put(x, v, 4);
    rec_begin(w, type, 4);
    wput(w, x, 4);
}

static void rec_u64(struct qf_writer *w, uint8_t type, uint64_t v)
{
    unsigned char x[8];
    be_put(x, v, 8);
    rec_begin(w, type, 8);
    wput(w, x, 8);
}

static void rec_text(struct qf_writer *w, uint8_t type, const char *s)
{
    size_t n = strlen(s);
    rec_begin(w, type, (uint32_t)n);
    wput(w, s, n);
}

static void rec_rcpt(struct qf_writer *w, uint8_t type, const struct qf_rcpt *r)
{
    unsigned char h[RCPT_HEAD], x[4];
    size_t an = strlen(r->addr), on = strlen(r->orig ? r->orig : "");
    rec_begin(w, type, (uint32_t)(RCPT_HEAD + 4 + an + 4 + on));
    rcpt_head_put(h, r);
    buf_append(&w->buf, h, RCPT_HEAD);
    w->crc = crc_rcpt_head(w->crc, h);
    be_put(x, an, 4);
    wput(w, x, 4);
    wput(w, r->addr, an);
    be_put(x, on, 4);
    wput(w, x, 4);
    wput(w, r->orig ? r->orig : "", on);
}

static int str_valid(const char *s, uint32_t min, uint32_t max)
{
    size_t n = strlen(s);
    return n >= min && n <= max && text_ok((const unsigned char *)s, n);
}

/* Would the reader accept this envelope? (the writer never writes a file
 * it would later refuse) */
static int env_valid(const struct qf_env *e)
{
    for (size_t i = 0; i < NDEFS; i++) {
        const struct rec_def *d = &rec_defs[i];
        if (d->kind == K_TEXT) {
            const char *s = env_cstr(e, d->off);
            if (s == NULL ? !(d->flags & RF_OPTIONAL) : !str_valid(s, d->min, d->max))
                return 0;
        } else if (d->kind == K_U32) {
            if (*(const uint32_t *)(const void *)((const char *)e + d->off) > d->vmax)
                return 0;
        }
    }
    if (!queue_id_valid(e->queue_id) || e->nrcpts < 1 || e->nrcpts > QF_MAX_RCPTS ||
        e->nnotes < 0 || e->nnotes > QF_MAX_NOTES)
        return 0;
    for (int i = 0; i < e->nnotes; i++)
        if (e->notes[i] == NULL || !str_valid(e->notes[i], 0, QF_MAX_FIELD))
            return 0;
    for (int i = 0; i < e->nrcpts; i++) {
        const struct qf_rcpt *r = &e->rcpts[i];
        if (r->addr == NULL || !str_valid(r->addr, 1, QF_MAX_FIELD) ||
            !str_valid(r->orig ? r->orig : "", 0, QF_MAX_FIELD) ||
            r->status >= DS__COUNT || (r->notify & ~(uint32_t)NOTIFY_ALL))
            return 0;
    }
    return 1;
}

/* Emit every envelope record in table order (VERSION first, RCPTs last). */
static void write_envelope(struct qf_writer *w, const struct qf_env *e)
{
    for (size_t i = 0; i < NDEFS; i++) {
        const struct rec_def *d = &rec_defs[i];
        const char *base = (const char *)e + d->off;
        switch (d->kind) {
        case K_VERSION: {
            unsigned char v[4];
            rec_begin(w, d->type, MAGIC_LEN + 4);
            wput(w, QF_MAGIC, MAGIC_LEN);
            be_put(v, QF_FORMAT_VERSION, 4);
            wput(w, v, 4);
            break;
        }
        case K_TEXT: {
            const char *s = env_cstr(e, d->off);
            if (s != NULL)
                rec_text(w, d->type, s);
            break;
        }
        case K_U32: rec_u32(w, d->type, *(const uint32_t *)(const void *)base); break;
        case K_I64: rec_u64(w, d->type, (uint64_t)*(const int64_t *)(const void *)base); break;
        case K_NOTE:
            for (int k = 0; k < e->nnotes; k++)
                rec_text(w, d->type, e->notes[k]);
            break;
        case K_RCPT:
            for (int r = 0; r < e->nrcpts; r++) {
                rec_rcpt(w, d->type, &e->rcpts[r]);
                if (w->buf.len >= WBUF_SIZE && wflush(w) < 0)
                    return;
            }
            break;
        case K_CONTENT: case K_END:
            break;
        }
    }
}

struct qf_writer *qf_write_begin(int fd, const struct qf_env *env)
{
    if (!env_valid(env)) {
        errno = EINVAL;
        return NULL;
    }
    struct qf_writer *w = xcalloc(1, sizeof(*w));
    w->fd = fd;
    w->base = lseek(fd, 0, SEEK_CUR);
    if (w->base < 0)
        w->base = 0;
    buf_init(&w->buf, WBUF_SIZE + 1024);
    write_envelope(w, env);
    /* open CONTENT: length patched by qf_write_end */
    rec_begin(w, rec_def_kind(K_CONTENT)->type, 8);
    w->content_hdr = w->written + w->buf.len;
    wput(w, "\0\0\0\0\0\0\0\0", 8);   /* the checksum sees 0 here: qfile.h */
    if (w->err) {
        int e = w->err;
        qf_write_abort(w);
        errno = e;
        return NULL;
    }
    return w;
}

int qf_write_content(struct qf_writer *w, const void *p, size_t n)
{
    if (w->err) {
        errno = w->err;
        return -1;
    }
    w->content_len += n;
    w->crc = crc32c(w->crc, p, n);
    if (w->buf.len + n < WBUF_SIZE) {
        buf_append(&w->buf, p, n);
        return 0;
    }
    if (wflush(w) < 0)
        return -1;
    if (n >= WBUF_SIZE)
        return write_all(w, p, n);     /* large chunk: no copy */
    buf_append(&w->buf, p, n);
    return 0;
}

uint64_t qf_write_size(const struct qf_writer *w)
{
    return w->content_len;
}

/* Kept for qfile.h's callers: a short file is EIO (lib/util/fdio.h). */
int qf_pread_all(int fd, void *p, size_t n, off_t off)
{
    return fdio_pread_all(fd, p, n, off);
}

int qf_write_end(struct qf_writer *w)
{
    unsigned char x[8];
    rec_begin(w, rec_def_kind(K_END)->type, END_V2_LEN);
    be_put(x, w->content_len, 8);
    wput(w, x, 8);
    unsigned char c[4];
    be_put(c, w->crc, 4);
    buf_append(&w->buf, c, 4);
    int r = wflush(w);
    if (r == 0) {
        be_put(x, w->content_len, 8);
        r = fdio_pwrite_all(w->fd, x, 8, w->base + (off_t)w->content_hdr);
    }
    int e = errno;
    qf_write_abort(w);
    errno = e;
    return r;
}

void qf_write_abort(struct qf_writer *w)
{
    if (w == NULL)
        return;
    buf_free(&w->buf);
    free(w);
}

/* ---- in-place update ------------------------------------------------------ */

int qf_update_rcpt(int fd, const struct qf_rcpt *r)
{
    if (r->status >= DS__COUNT || r->rec_off <= 0 || (r->notify & ~(uint32_t)NOTIFY_ALL)) {
        errno = EINVAL;
        return -1;
    }
    unsigned char h[RCPT_HEAD];
    rcpt_head_put(h, r);
    return fdio_pwrite_all(fd, h, RCPT_HEAD, r->rec_off + REC_HDR);
}

/* ---- reader --------------------------------------------------------------- */

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
    if (p[0] >= DS__COUNT || p[1] != 0)
        FAIL("RCPT record at offset %" PRIu64 ": bad status %u/pad %u", off, p[0], p[1]);
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
        str_release(*env_str(e, d->off));
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
    } else if (!(d->flags & RF_MULTI) && seen[d - rec_defs]) {
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
        crc = crc_rcpt_head(crc, p);
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
    unsigned seen[NDEFS] = { 0 };
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
        seen[d - rec_defs]++;
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
    for (size_t i = 0; i < NDEFS; i++)
        if ((rec_defs[i].flags & RF_REQUIRED) && !seen[i])
            FAIL("missing %s record", rec_defs[i].name);
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

int qf_read(int fd, struct qf_env *env, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(fd, &st) < 0) {
        qf_env_init(env);
        snprintf(err, errlen, "fstat: %s", strerror(errno));
        return -1;
    }
    struct qf_src s = { .mem = NULL, .fd = fd, .size = (uint64_t)st.st_size };
    return parse_src(&s, env, err, errlen);
}
