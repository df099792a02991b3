/*
 * qfile_int.h - internals shared by qfile.c (record table, envelope,
 * writer, in-place update) and qfile_read.c (reader/validator). Nobody
 * outside lib/mail/qfile*.c includes this.
 */
#ifndef POSTERN_QFILE_INT_H
#define POSTERN_QFILE_INT_H

#include <stddef.h>
#include <stdint.h>
#include "mail/qfile.h"

#define REC_HDR      5                 /* u8 type + u32 BE length */
#define MAGIC_LEN    (sizeof(QF_MAGIC) - 1)
#define DSN_LEN      16
#define REASON_LEN   (QF_REASON_MAX + 1)
/* RCPT fixed head: status u8, rflags u8 (QF_R_*, was a zero pad), attempts u16, notify u32, last_try i64,
 * dsn[16], reason[QF_REASON_MAX+1]; then u32 addr len, addr, u32 orig len, orig. */
#define RCPT_HEAD    (1 + 1 + 2 + 4 + 8 + DSN_LEN + REASON_LEN)
/* END payload from version 2: u64 content length, u32 CRC-32C (see qfile.h) */
#define END_V2_LEN   12
#define NOTIFY_ALL   (NOTIFY_NEVER | NOTIFY_SUCCESS | NOTIFY_FAILURE | NOTIFY_DELAY)

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
/* The one table of record types, in the order the writer emits them
 * (qfile.c); QF_NDEFS is its length (qfile.c checks it at compile time). */
#define QF_NDEFS 20
extern const struct rec_def qf_rec_defs[];

/* Free a string field unless it is the shared "" of qf_env_init. */
void qf_str_release(char *s);
/* Add a RCPT fixed head to the checksum (what it covers: qfile.c). */
uint32_t qf_crc_rcpt_head(uint32_t crc, const unsigned char *h);

/* ---- byte order ------------------------------------------------------- */

static inline void be_put(unsigned char *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (unsigned char)v;
        v >>= 8;
    }
}

static inline uint64_t be_get(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* The string field of e at offset off (a K_TEXT rec_def's off). */
static inline char **env_str(struct qf_env *e, size_t off)
{
    return (char **)(void *)((char *)e + off);
}

/* Text fields may hold any byte but NUL, CR and LF. */
static inline int text_ok(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] == '\0' || p[i] == '\r' || p[i] == '\n')
            return 0;
    return 1;
}

#endif
