/*
 * ipc.c - encoder, strict decoder and blocking connection helpers for the
 * framing described in ipc.h. The field tables are generated from
 * ipc_msgs.def, so there is exactly one description of each message.
 * Must never trust a peer: every length is checked before it is used.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "util/fdio.h"
#include "ipc/ipc.h"
#include "util/log.h"

enum ipc_ftype { FT_U32 = 1, FT_U64, FT_STR, FT_BYTES };

struct ipc_field {
    const char *name;
    enum ipc_ftype type;
    size_t off;
};

struct ipc_desc {
    const char *name;
    const struct ipc_field *fields;
    unsigned nfields;
};

#define IPC_MSG_BEGIN(E, n) static const struct ipc_field fields_##n[] = {
#define IPC_FIELD(n, t, f) { #f, FT_##t, offsetof(struct ipc_##n, f) },
#define IPC_MSG_END(E, n) };
#include "ipc/ipc_msgs.def"
#undef IPC_MSG_BEGIN
#undef IPC_FIELD
#undef IPC_MSG_END

static const struct ipc_desc descs[IPC__COUNT] = {
#define IPC_MSG_BEGIN(E, n) [IPC_##E] = { #n, fields_##n, sizeof(fields_##n) / sizeof(fields_##n[0]) },
#define IPC_FIELD(n, t, f)
#define IPC_MSG_END(E, n)
#include "ipc/ipc_msgs.def"
#undef IPC_MSG_BEGIN
#undef IPC_FIELD
#undef IPC_MSG_END
};

const char *ipc_type_name(enum ipc_type t)
{
    return (unsigned)t < IPC__COUNT ? descs[t].name : "unknown";
}

static void put_u16(buf_t *b, uint16_t v)
{
    unsigned char x[2] = { (unsigned char)(v >> 8), (unsigned char)v };
    buf_append(b, x, 2);
}

static void put_u32(buf_t *b, uint32_t v)
{
    unsigned char x[4] = { (unsigned char)(v >> 24), (unsigned char)(v >> 16),
                           (unsigned char)(v >> 8), (unsigned char)v };
    buf_append(b, x, 4);
}

static void put_u64(buf_t *b, uint64_t v)
{
    put_u32(b, (uint32_t)(v >> 32));
    put_u32(b, (uint32_t)v);
}

static uint32_t get_u32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint64_t get_u64(const unsigned char *p)
{
    return ((uint64_t)get_u32(p) << 32) | get_u32(p + 4);
}

/* Would msg encode within the limits? 0, or -1 with what is wrong in why. */
static int check_msg(const struct ipc_desc *d, const void *msg, char *why, size_t whylen)
{
    size_t body = 2;
    for (unsigned i = 0; i < d->nfields; i++) {
        const struct ipc_field *f = &d->fields[i];
        const char *base = (const char *)msg + f->off;
        size_t n = 0;
        switch (f->type) {
        case FT_U32: n = 4; break;
        case FT_U64: n = 8; break;
        case FT_STR: {
            const char *s = *(const char *const *)(const void *)base;
            n = s ? strnlen(s, IPC_MAX_STR + 1) : 0;
            if (n > IPC_MAX_STR) {
                snprintf(why, whylen, "%s.%s longer than %u bytes", d->name, f->name, IPC_MAX_STR);
                return -1;
            }
            n++;
            break;
        }
        case FT_BYTES:
            n = ((const struct ipc_bytes *)(const void *)base)->len;
            if (n > IPC_MAX_FRAME) {
                snprintf(why, whylen, "%s.%s too long (%zu)", d->name, f->name, n);
                return -1;
            }
            break;
        }
        body += 6 + n;
    }
    if (body > IPC_MAX_FRAME) {
        snprintf(why, whylen, "%s frame too large (%zu)", d->name, body);
        return -1;
    }
    return 0;
}

int ipc_check(enum ipc_type t, const void *msg)
{
    char why[128];
    if ((unsigned)t >= IPC__COUNT)
        return -1;
    return check_msg(&descs[t], msg, why, sizeof(why));
}

int ipc_encode(buf_t *out, enum ipc_type t, const void *msg)
{
    char why[128];
    if ((unsigned)t >= IPC__COUNT) {
        log_warn("ipc: cannot encode message type %d", (int)t);
        errno = EINVAL;
        return -1;
    }
    const struct ipc_desc *d = &descs[t];
    if (check_msg(d, msg, why, sizeof(why)) < 0) {
        log_warn("ipc: cannot encode %s: %s", d->name, why);
        errno = EMSGSIZE;
        return -1;
    }
    size_t start = out->len;
    put_u32(out, 0);               /* length, patched below */
    put_u16(out, (uint16_t)t);
    for (unsigned i = 0; i < d->nfields; i++) {
        const struct ipc_field *f = &d->fields[i];
        const char *base = (const char *)msg + f->off;
        buf_append_char(out, (char)i);
        buf_append_char(out, (char)f->type);
        switch (f->type) {
        case FT_U32:
            put_u32(out, 4);
            put_u32(out, *(const uint32_t *)(const void *)base);
            break;
        case FT_U64:
            put_u32(out, 8);
            put_u64(out, *(const uint64_t *)(const void *)base);
            break;
        case FT_STR: {
            const char *s = *(const char *const *)(const void *)base;
            size_t n = s ? strlen(s) : 0;          /* <= IPC_MAX_STR: checked */
            put_u32(out, (uint32_t)n);
            buf_append(out, s ? s : "", n);
            buf_append_char(out, '\0');
            break;
        }
        case FT_BYTES: {
            const struct ipc_bytes *bb = (const struct ipc_bytes *)(const void *)base;
            put_u32(out, (uint32_t)bb->len);
            buf_append(out, bb->p, bb->len);
            break;
        }
        }
    }
    size_t body = out->len - start - 4;           /* <= IPC_MAX_FRAME: checked */
    unsigned char *h = (unsigned char *)out->data + start;
    h[0] = (unsigned char)(body >> 24);
    h[1] = (unsigned char)(body >> 16);
    h[2] = (unsigned char)(body >> 8);
    h[3] = (unsigned char)body;
    return 0;
}

long ipc_frame_len(const unsigned char *p, size_t avail)
{
    if (avail < 4)
        return 0;
    uint32_t body = get_u32(p);
    if (body < 2 || body > IPC_MAX_FRAME)
        return -1;
    if (avail < (size_t)body + 4)
        return 0;
    return (long)body + 4;
}

#define DECODE_FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); return -1; } while (0)

int ipc_decode(const unsigned char *frame, size_t len, enum ipc_type *t_r,
               union ipc_msg *m, char *err, size_t errlen)
{
    if (len < 6 || get_u32(frame) != len - 4)
        DECODE_FAIL("bad frame length");
    unsigned type = ((unsigned)frame[4] << 8) | frame[5];
    if (type >= IPC__COUNT)
        DECODE_FAIL("unknown message type %u", type);
    const struct ipc_desc *d = &descs[type];
    memset(m, 0, sizeof(*m));
    size_t pos = 6;
    for (unsigned i = 0; i < d->nfields; i++) {
        const struct ipc_field *f = &d->fields[i];
        char *base = (char *)m + f->off;
        if (len - pos < 6)
            DECODE_FAIL("%s: truncated before field %s", d->name, f->name);
        if (frame[pos] != i)
            DECODE_FAIL("%s: field %u where %s (%u) expected", d->name, frame[pos], f->name, i);
        if (frame[pos + 1] != f->type)
            DECODE_FAIL("%s.%s: wrong field type %u", d->name, f->name, frame[pos + 1]);
        uint32_t flen = get_u32(frame + pos + 2);
        pos += 6;
        size_t need = (size_t)flen + (f->type == FT_STR ? 1 : 0);
        if (len - pos < need)
            DECODE_FAIL("%s.%s: value truncated", d->name, f->name);
        const unsigned char *v = frame + pos;
        switch (f->type) {
        case FT_U32:
            if (flen != 4)
                DECODE_FAIL("%s.%s: bad u32 length %u", d->name, f->name, flen);
            *(uint32_t *)(void *)base = get_u32(v);
            break;
        case FT_U64:
            if (flen != 8)
                DECODE_FAIL("%s.%s: bad u64 length %u", d->name, f->name, flen);
            *(uint64_t *)(void *)base = get_u64(v);
            break;
        case FT_STR:
            if (flen > IPC_MAX_STR)
                DECODE_FAIL("%s.%s: string too long (%u)", d->name, f->name, flen);
            if (v[flen] != '\0' || memchr(v, '\0', flen) != NULL)
                DECODE_FAIL("%s.%s: NUL inside string", d->name, f->name);
            *(const char **)(void *)base = (const char *)v;
            break;
        case FT_BYTES: {
            struct ipc_bytes *bb = (struct ipc_bytes *)(void *)base;
            bb->p = v;
            bb->len = flen;
            break;
        }
        }
        pos += need;
    }
    if (pos != len)
        DECODE_FAIL("%s: %zu trailing bytes", d->name, len - pos);
    *t_r = (enum ipc_type)type;
    return 0;
}

void ipc_format(buf_t *out, enum ipc_type t, const union ipc_msg *m)
{
    const struct ipc_desc *d = &descs[t];
    buf_append_str(out, d->name);
    for (unsigned i = 0; i < d->nfields; i++) {
        const struct ipc_field *f = &d->fields[i];
        const char *base = (const char *)m + f->off;
        buf_printf(out, " %s=", f->name);
        if (strstr(f->name, "pass") || strstr(f->name, "secret")) {
            buf_append_str(out, "<redacted>");      /* credentials never reach a trace */
            continue;
        }
        switch (f->type) {
        case FT_U32: buf_printf(out, "%u", *(const uint32_t *)(const void *)base); break;
        case FT_U64: buf_printf(out, "%llu", (unsigned long long)*(const uint64_t *)(const void *)base); break;
        case FT_STR: {
            const char *s = *(const char *const *)(const void *)base;
            buf_append_char(out, '"');
            buf_append_printable(out, s ? s : "", s ? strlen(s) : 0);
            buf_append_char(out, '"');
            break;
        }
        case FT_BYTES:
            buf_printf(out, "<%zu bytes>", ((const struct ipc_bytes *)(const void *)base)->len);
            break;
        }
    }
}

int ipc_next(const unsigned char *p, size_t avail, enum ipc_type *t_r,
             union ipc_msg *m, size_t *used_r, const char *peer)
{
    long n = ipc_frame_len(p, avail);
    if (n == 0)
        return 0;
    char err[256];
    if (n < 0) {
        log_warn("ipc: bad frame header from %s: dropping connection", peer);
        return -1;
    }
    if (ipc_decode(p, (size_t)n, t_r, m, err, sizeof(err)) < 0) {
        log_warn("ipc: protocol error from %s: %s: dropping connection", peer, err);
        return -1;
    }
    if (log_trace_on(TRACE_IPC)) {
        buf_t tb;
        buf_init(&tb, 128);
        ipc_format(&tb, *t_r, m);
        log_trace(TRACE_IPC, "ipc <%s: %s", peer, tb.data);
        buf_free(&tb);
    }
    *used_r = (size_t)n;
    return 1;
}

/* ---- blocking connections -------------------------------------------- */

void ipc_conn_init(struct ipc_conn *c, int fd, const char *peer)
{
    c->fd = fd;
    buf_init(&c->in, 4096);
    buf_init(&c->out, 1024);
    c->used = 0;
    str_copy(c->peer, sizeof(c->peer), peer);
}

void ipc_conn_close(struct ipc_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    buf_free(&c->in);
    buf_free(&c->out);
}

/* socket + connect; a non-blocking connect may still be in progress. */
static int connect_unix(const char *path, int flags)
{
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if (str_copy(sun.sun_path, sizeof(sun.sun_path), path) < 0) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 &&
        !((flags & SOCK_NONBLOCK) && errno == EINPROGRESS)) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int ipc_connect_unix(const char *path)
{
    return connect_unix(path, 0);
}

int ipc_connect_unix_nonblock(const char *path)
{
    return connect_unix(path, SOCK_NONBLOCK);
}

int ipc_queue(struct ipc_conn *c, enum ipc_type t, const void *msg)
{
    return ipc_encode(&c->out, t, msg);
}

int ipc_flush(struct ipc_conn *c)
{
    int rc = fdio_write_all(c->fd, c->out.data, c->out.len);
    buf_reset(&c->out);
    return rc;
}

int ipc_send(struct ipc_conn *c, enum ipc_type t, const void *msg)
{
    if (ipc_queue(c, t, msg) < 0)
        return -1;          /* nothing queued: what was queued before stays */
    return ipc_flush(c);
}

int ipc_recv(struct ipc_conn *c, enum ipc_type *t_r, union ipc_msg *m)
{
    if (c->used) {
        buf_consume(&c->in, c->used);
        c->used = 0;
    }
    for (;;) {
        size_t used;
        int r = ipc_next((const unsigned char *)c->in.data, c->in.len, t_r, m, &used, c->peer);
        if (r < 0)
            return -1;
        if (r > 0) {
            c->used = used;
            return 1;
        }
        buf_reserve(&c->in, 65536);
        ssize_t n = read(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len - 1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_warn("ipc: read from %s: %m", c->peer);
            return -1;
        }
        if (n == 0) {
            if (c->in.len == 0)
                return 0;
            log_warn("ipc: %s closed the connection inside a frame", c->peer);
            return -1;
        }
        c->in.len += (size_t)n;
        c->in.data[c->in.len] = '\0';
    }
}

int ipc_expect(struct ipc_conn *c, enum ipc_type t, union ipc_msg *m)
{
    enum ipc_type got;
    int r = ipc_recv(c, &got, m);
    if (r <= 0)
        return r;
    if (got != t) {
        log_warn("ipc: %s sent %s where %s was expected", c->peer, ipc_type_name(got),
                 ipc_type_name(t));
        return -1;
    }
    return 1;
}

int ipc_hello_ok(const struct ipc_hello *h, const char *proto)
{
    if (strcmp(h->proto, proto) != 0 || h->version != IPC_VERSION) {
        log_warn("ipc: peer speaks %s/%u, expected %s/%u", h->proto, h->version, proto,
                 IPC_VERSION);
        return -1;
    }
    return 0;
}

int ipc_hello_client(struct ipc_conn *c, const char *proto)
{
    struct ipc_hello h = { proto, IPC_VERSION };
    union ipc_msg m;
    if (ipc_send(c, IPC_HELLO, &h) < 0)
        return -1;
    if (ipc_expect(c, IPC_HELLO, &m) != 1)
        return -1;
    return ipc_hello_ok(&m.hello, proto);
}

int ipc_hello_server(struct ipc_conn *c, const char *proto)
{
    union ipc_msg m;
    if (ipc_expect(c, IPC_HELLO, &m) != 1)
        return -1;
    if (ipc_hello_ok(&m.hello, proto) < 0)
        return -1;
    struct ipc_hello h = { proto, IPC_VERSION };
    return ipc_send(c, IPC_HELLO, &h);
}
