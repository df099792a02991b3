/*
 * qfile.c - queue file record table, envelope helpers, writer (cleanup) and
 * in-place recipient updates (qmgr). The reader/validator (qmgr, delivery,
 * CLI, fuzz target) is qfile_read.c; what both share is qfile_int.h.
 *
 * Every record type is declared once in qf_rec_defs[]: its type byte, which
 * segment may hold it, its length bounds and how it maps onto struct qf_env.
 * The writer walks the same table to emit the envelope, and so does the
 * one validator (qfile_read.c) behind qf_read and qf_parse.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/crc32c.h"
#include "util/fdio.h"
#include "mail/qfile.h"
#include "mail/spool.h"
#include "mail/qfile_int.h"

#define RCPT_MIN     (RCPT_HEAD + 4 + 1 + 4)
#define RCPT_MAX     (RCPT_HEAD + 4 + QF_MAX_FIELD + 4 + QF_MAX_FIELD)
#define WBUF_SIZE    65536
#define FLAGS_ALL    (QF_F_SMTPUTF8 | QF_F_8BITMIME | QF_F_BINARYMIME | QF_F_DSN | QF_F_DSN2)

/* Shared "" for unset strings: never freed, so qf_env_init allocates nothing. */
static char qf_empty[1];

/* The one table of record types, in the order the writer emits them. */
const struct rec_def qf_rec_defs[] = {
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
_Static_assert(sizeof(qf_rec_defs) / sizeof(qf_rec_defs[0]) == QF_NDEFS,
               "QF_NDEFS (qfile_int.h) is the length of qf_rec_defs");

static const struct rec_def *rec_def_kind(enum rec_kind k)
{
    for (size_t i = 0; i < QF_NDEFS; i++)
        if (qf_rec_defs[i].kind == k)
            return &qf_rec_defs[i];
    return NULL;
}

/* ---- envelope ----------------------------------------------------------- */

static const char *env_cstr(const struct qf_env *e, size_t off)
{
    return *(const char *const *)(const void *)((const char *)e + off);
}

void qf_str_release(char *s)
{
    if (s != NULL && s != qf_empty)
        free(s);
}

void qf_env_init(struct qf_env *e)
{
    memset(e, 0, sizeof(*e));
    e->version = QF_FORMAT_VERSION;
    for (size_t i = 0; i < QF_NDEFS; i++)
        if (qf_rec_defs[i].kind == K_TEXT && !(qf_rec_defs[i].flags & RF_OPTIONAL))
            *env_str(e, qf_rec_defs[i].off) = qf_empty;
    e->quarantine = NULL;
}

void qf_env_free(struct qf_env *e)
{
    for (size_t i = 0; i < QF_NDEFS; i++)
        if (qf_rec_defs[i].kind == K_TEXT)
            qf_str_release(*env_str(e, qf_rec_defs[i].off));
    for (int i = 0; i < e->nrcpts; i++) {
        qf_str_release(e->rcpts[i].addr);
        qf_str_release(e->rcpts[i].orig);
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

/* ---- recipient fixed head ------------------------------------------------ */

/* Copy s into a zero-padded fixed field, CR/LF flattened to spaces so an
 * update can never make the file unreadable. */
static void fixed_put(unsigned char *dst, size_t size, const char *s)
{
    memset(dst, 0, size);
    for (size_t i = 0; i + 1 < size && s[i] != '\0'; i++)
        dst[i] = (s[i] == '\r' || s[i] == '\n') ? ' ' : (unsigned char)s[i];
}

static void rcpt_head_put(unsigned char *h, const struct qf_rcpt *r)
{
    h[0] = r->status;
    h[1] = r->rflags & QF_R_ALL;
    be_put(h + 2, r->attempts, 2);
    be_put(h + 4, r->notify, 4);
    be_put(h + 8, (uint64_t)r->last_try, 8);
    fixed_put(h + 16, DSN_LEN, r->dsn);
    fixed_put(h + 16 + DSN_LEN, REASON_LEN, r->reason);
}

/* The checksum skips the fields qmgr rewrites in place (qf_update_rcpt):
 * status, rflags, attempts, last_try, dsn and reason count as zeros; notify is
 * covered. */
uint32_t qf_crc_rcpt_head(uint32_t crc, const unsigned char *h)
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
    w->crc = qf_crc_rcpt_head(w->crc, h);
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
    for (size_t i = 0; i < QF_NDEFS; i++) {
        const struct rec_def *d = &qf_rec_defs[i];
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
    for (size_t i = 0; i < QF_NDEFS; i++) {
        const struct rec_def *d = &qf_rec_defs[i];
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

int qf_write_buffered(const struct qf_writer *w, const void **p, size_t *n)
{
    size_t start = (size_t)w->content_hdr + 8;
    if (w->err || w->written != 0 || w->buf.len < start ||
        w->buf.len - start != w->content_len)
        return -1;
    *p = w->buf.data + start;
    *n = w->buf.len - start;
    return 0;
}

/* Kept for qfile.h's callers: a short file is EIO (lib/util/fdio.h). */
int qf_pread_all(int fd, void *p, size_t n, off_t off)
{
    return fdio_pread_all(fd, p, n, off);
}

int qf_write_end_at(struct qf_writer *w, off_t *end_r)
{
    unsigned char x[8];
    rec_begin(w, rec_def_kind(K_END)->type, END_V2_LEN);
    be_put(x, w->content_len, 8);
    wput(w, x, 8);
    unsigned char c[4];
    be_put(c, w->crc, 4);
    buf_append(&w->buf, c, 4);
    /* the CONTENT length is patched where it is: still in the buffer (the
     * checksum saw 0 there either way: qfile.h), else in the file */
    int in_buf = w->written == 0 && w->err == 0;
    be_put(x, w->content_len, 8);
    if (in_buf)
        memcpy(w->buf.data + w->content_hdr, x, 8);
    int r = wflush(w);
    if (r == 0 && !in_buf)
        r = fdio_pwrite_all(w->fd, x, 8, (off_t)w->content_hdr);   /* the file starts at 0 */
    if (r == 0 && end_r)
        *end_r = (off_t)w->written;
    int e = errno;
    qf_write_abort(w);
    errno = e;
    return r;
}

int qf_write_end(struct qf_writer *w)
{
    return qf_write_end_at(w, NULL);
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
