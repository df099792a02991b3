/*
 * ipc.h - the one framing for every Unix-socket conversation between
 * Postern processes. Messages and their fields come from ipc_msgs.def.
 *
 * Wire: frame = u32 BE body length, body = u16 BE type, then per field
 * u8 field index, u8 field type, u32 BE length, value (integers BE; STR is
 * followed by one NUL not counted in the length). The decoder is strict:
 * every declared field exactly once, in order, with its declared type,
 * within limits, nothing after the last one. A peer that sends anything else
 * is a protocol error, and the reader drops the connection (never guesses).
 * Every connection opens with HELLO {proto, version}.
 *
 * Decoded STR/BYTES fields point into the frame buffer: valid until the next
 * receive on that connection.
 */
#ifndef POSTERN_IPC_H
#define POSTERN_IPC_H

#include <stddef.h>
#include <stdint.h>
#include "util/buf.h"

#define IPC_VERSION     9   /* 4: DELIVER_DONE.held, held_ms; 5: SPF in FILTER_REQ/CLEANUP_BEGIN;
                             * 6: CLEANUP_BEGIN.local_user, local_uid;
                             * 7: DKIM in FILTER_REQ;
                             * 8: QMGR_AUDIT fields;
                             * 9: DMARC in FILTER_REQ */
#define IPC_MAX_FRAME   (1u << 20)       /* body bytes */
#define IPC_MAX_STR     65536u
#define IPC_MAX_FIELDS  32

/* Protocol names sent in HELLO */
#define IPC_PROTO_FILTER   "filter"
#define IPC_PROTO_CLEANUP  "cleanup"
#define IPC_PROTO_QMGR     "qmgr"
#define IPC_PROTO_DELIVER  "deliver"

struct ipc_bytes { const unsigned char *p; size_t len; };

typedef uint32_t ipc_U32_t;
typedef uint64_t ipc_U64_t;
typedef const char *ipc_STR_t;
typedef struct ipc_bytes ipc_BYTES_t;

enum ipc_type {
#define IPC_MSG_BEGIN(E, n) IPC_##E,
#define IPC_FIELD(n, t, f)
#define IPC_MSG_END(E, n)
#include "ipc/ipc_msgs.def"
#undef IPC_MSG_BEGIN
#undef IPC_FIELD
#undef IPC_MSG_END
    IPC__COUNT
};

#define IPC_MSG_BEGIN(E, n) struct ipc_##n {
#define IPC_FIELD(n, t, f) ipc_##t##_t f;
#define IPC_MSG_END(E, n) };
#include "ipc/ipc_msgs.def"
#undef IPC_MSG_BEGIN
#undef IPC_FIELD
#undef IPC_MSG_END

union ipc_msg {
#define IPC_MSG_BEGIN(E, n) struct ipc_##n n;
#define IPC_FIELD(n, t, f)
#define IPC_MSG_END(E, n)
#include "ipc/ipc_msgs.def"
#undef IPC_MSG_BEGIN
#undef IPC_FIELD
#undef IPC_MSG_END
};

/* Typed encoders: ipc_put_hello(out, &msg) appends one frame to out.
 * Values often come from mail or rules: a STR longer than IPC_MAX_STR, a
 * BYTES or a whole body over IPC_MAX_FRAME (or a bad type) is refused,
 * never aborted on: -1 (logged, errno EMSGSIZE), out unchanged; else 0. */
int ipc_encode(buf_t *out, enum ipc_type t, const void *msg);
/* The same check without encoding: 0 = msg would encode. */
int ipc_check(enum ipc_type t, const void *msg);
#define IPC_MSG_BEGIN(E, n) \
    static inline int ipc_put_##n(buf_t *out, const struct ipc_##n *m) { return ipc_encode(out, IPC_##E, m); }
#define IPC_FIELD(n, t, f)
#define IPC_MSG_END(E, n)
#include "ipc/ipc_msgs.def"
#undef IPC_MSG_BEGIN
#undef IPC_FIELD
#undef IPC_MSG_END

const char *ipc_type_name(enum ipc_type t);

/* Length of the complete frame at p (header included): >0 when avail holds a
 * whole frame, 0 when more bytes are needed, -1 when the header is invalid. */
long ipc_frame_len(const unsigned char *p, size_t avail);

/* Decode one whole frame (as delimited by ipc_frame_len). Returns 0, or -1
 * with a reason in err. m's pointers point into frame. */
int ipc_decode(const unsigned char *frame, size_t len, enum ipc_type *t_r,
               union ipc_msg *m, char *err, size_t errlen);

/* One-line rendering of a decoded message for trace logs. */
void ipc_format(buf_t *out, enum ipc_type t, const union ipc_msg *m);

/* ---- blocking connections (cleanup workers, delivery, CLI) ------------ */
struct ipc_conn {
    int fd;
    buf_t in;       /* bytes read, not yet consumed */
    size_t used;    /* bytes of in consumed by the last returned frame */
    buf_t out;
    char peer[32];  /* for log lines */
};

void ipc_conn_init(struct ipc_conn *c, int fd, const char *peer);
void ipc_conn_close(struct ipc_conn *c);         /* closes fd, frees buffers */
/* Connect to a Unix socket path; -1 on error (errno set). */
int  ipc_connect_unix(const char *path);
/* The same without blocking (for event loops): the fd is non-blocking. */
int  ipc_connect_unix_nonblock(const char *path);
/* Queue a message in c->out (no I/O); -1 when it cannot be encoded
 * (ipc_encode: nothing queued). */
int  ipc_queue(struct ipc_conn *c, enum ipc_type t, const void *msg);
/* Write everything queued; 0 or -1 (errno). */
int  ipc_flush(struct ipc_conn *c);
/* ipc_queue + ipc_flush; -1 also when the message cannot be encoded. */
int  ipc_send(struct ipc_conn *c, enum ipc_type t, const void *msg);
/* Read one message: 1 = got one, 0 = clean EOF between frames, -1 = error or
 * protocol violation (logged). */
int  ipc_recv(struct ipc_conn *c, enum ipc_type *t_r, union ipc_msg *m);
/* ipc_recv that also requires type t: 1 ok, 0 EOF, -1 error/other type. */
int  ipc_expect(struct ipc_conn *c, enum ipc_type t, union ipc_msg *m);
/* Client side of the handshake: send HELLO(proto) and expect the peer's. */
int  ipc_hello_client(struct ipc_conn *c, const char *proto);
/* Server side: expect HELLO(proto), answer with ours. */
int  ipc_hello_server(struct ipc_conn *c, const char *proto);
/* Check a received HELLO against the expected protocol; 0 ok. */
int  ipc_hello_ok(const struct ipc_hello *h, const char *proto);

/* ---- frame extraction from a byte stream (event loops) ---------------
 * Event loops use it through struct ipc_peer (ipc_bev.h), never by hand.
 * Given bytes in buf (e.g. copied or pulled up from an evbuffer), decode
 * the first frame: 1 = decoded, *used_r = bytes to drain; 0 = need more;
 * -1 = protocol error (logged, drop the peer). */
int  ipc_next(const unsigned char *p, size_t avail, enum ipc_type *t_r,
              union ipc_msg *m, size_t *used_r, const char *peer);

#endif
