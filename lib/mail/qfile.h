/*
 * qfile.h - the queue file: one file per message, written by cleanup, read
 * by qmgr, delivery and the CLI, updated in place by qmgr.
 *
 * Format: a sequence of records {u8 type, u32 BE length, payload}. The first
 * record is VERSION ("POSTERN-QF", u32 format version); then the envelope
 * and metadata records; then exactly one CONTENT record holding the whole
 * message (LF line ends, dot-unstuffed) so delivery can copy it in one go;
 * then END. Which record types may appear in which segment is one table in
 * qfile.c. A file without END, with an unknown record, a record that runs
 * past the end, or bytes after END is refused (corrupt/incomplete).
 *
 * END checksum (format version 2). END holds the content length again (u64)
 * and a CRC-32C of every byte before the CRC itself, except the bytes that
 * change after the file is written: the CONTENT length field (written last,
 * by pwrite; counted as zeros, and repeated in END instead) and the fields
 * qmgr updates in place in each RCPT head (status, pad, attempts, last_try,
 * dsn, reason; counted as zeros). Every reader checks it, so a file torn by
 * a crash (cleanup renames a file into incoming/ before it is on disk:
 * lib/mail/queue.h) - truncated, a block zero-filled or left stale - is refused,
 * never delivered. Version 1 files (END without payload, no checksum) are
 * still read.
 *
 * Recipient records have a fixed-size head (status, rflags, attempts, times
 * and a fixed reason field) so qmgr can record each recipient's outcome in place
 * with pwrite + fsync without rewriting the file.
 */
#ifndef POSTERN_QFILE_H
#define POSTERN_QFILE_H

#include <stdint.h>
#include <sys/types.h>
#include "util/buf.h"

#define QF_MAGIC          "POSTERN-QF"
#define QF_FORMAT_VERSION 2      /* written; 2 = END checksum */
#define QF_FORMAT_VERSION_MIN 1  /* oldest still read */
#define QF_REASON_MAX     240    /* bytes of last reason kept per recipient */
#define QF_MAX_RCPTS      100000
#define QF_MAX_FIELD      65536  /* longest text field */
#define QF_MAX_NOTES      1000   /* NOTE records per file */

/* Per-recipient delivery status (also the IPC DELIVER_STATUS status). */
enum dstatus {
    DS_PENDING = 0,   /* not yet delivered */
    DS_DELIVERED,     /* done: delivered */
    DS_DEFERRED,      /* pending, last attempt failed temporarily (reason set) */
    DS_BOUNCED,       /* done: failed permanently (reason set, DSN to send) */
    DS_DISCARDED,     /* done: dropped by policy */
    DS__COUNT
};
/* IPC DELIVER_STATUS.status may carry these above a DS_DELIVERED, for the
 * success report (RFC 3461 5.2.2): the next hop took NOTIFY=SUCCESS over
 * (it offered DSN: it reports, we do not), or it did not offer DSN (we
 * report "relayed"). qmgr keeps them as QF_R_NOTIFY_PASSED / QF_R_RELAYED. */
enum { DS_F_NOTIFY_PASSED = 0x100, DS_F_RELAYED = 0x200, DS_F_MASK = 0xff00 };

/* DSN NOTIFY bits */
enum { NOTIFY_NONE = 0, NOTIFY_NEVER = 1, NOTIFY_SUCCESS = 2, NOTIFY_FAILURE = 4,
       NOTIFY_DELAY = 8 };

/* CLEANUP_BEGIN.flags and qf_env.flags. QF_F_FACCEPT travels in
 * CLEANUP_BEGIN only (a pre-queue stage said faccept: cleanup skips the data
 * stage); it is never stored in a queue file. */
enum { QF_F_SMTPUTF8 = 1, QF_F_8BITMIME = 2, QF_F_BINARYMIME = 4, QF_F_FACCEPT = 8,
       QF_F_DSN = 16,        /* a delivery report qmgr made (qmgr/qmgr_bounce.c) */
       QF_F_DSN2 = 32,       /* a double bounce to postmaster: never reported on */
       /* CLEANUP_BEGIN only: a copy the local agent forwards (alias, .forward):
        * not a submission whoever sent the original, so neither signed nor
        * counted against a tenant, and not checked again */
       QF_F_FORWARDED = 64 };

/* qf_rcpt.rflags: the RCPT head's second byte (was a zero pad before; files
 * without any flag set read the same in older readers). Updated in place. */
enum { QF_R_DELAY_SENT = 1,  /* the delay warning for this recipient is queued */
       QF_R_ALL = 1,         /* the bits written to the file */
       /* qmgr's memory only, for this pass's success report (never written:
        * the report is queued before the outcome is recorded) */
       QF_R_NOTIFY_PASSED = 0x40,  /* delivered to a next hop that reports success itself */
       QF_R_RELAYED = 0x80 };      /* delivered to a next hop without DSN: "relayed" */

struct qf_rcpt {
    char    *addr;
    char    *orig;                /* DSN ORCPT, "" if none */
    uint32_t notify;
    uint8_t  status;              /* enum dstatus */
    uint8_t  rflags;              /* QF_R_* */
    uint16_t attempts;
    int64_t  last_try;            /* unix time, 0 = never */
    char     reason[QF_REASON_MAX + 1];
    char     dsn[16];             /* last enhanced status: "4.2.2" */
    off_t    rec_off;             /* file offset of the record (for updates) */
};

struct qf_env {
    uint32_t version;
    char    *queue_id;
    int64_t  arrival;             /* unix time, microseconds */
    char    *sender;              /* "" = <> */
    char    *client_ip, *client_ptr, *helo, *protocol, *auth_user, *tls, *listener;
    uint32_t client_port;
    char    *envid;
    uint32_t ret;                 /* DSN RET: 0 none, 1 FULL, 2 HDRS */
    uint32_t flags;               /* QF_F_* */
    char    *quarantine;          /* quarantine name or NULL */
    char   **notes; int nnotes;   /* NOTE records: rule verdicts and applied mutations
                                   * ("rule \"spam\": add_header X-Spam: yes") */
    struct qf_rcpt *rcpts; int nrcpts;
    off_t    content_off;         /* offset of the first content byte */
    uint64_t content_len;
};

/* String fields are owned by the env: either malloc'd (xstrdup) or the
 * shared empty string set by qf_env_init (never freed); never assign a
 * literal. qf_env_init allocates nothing, so calling it twice leaks nothing. */
void qf_env_init(struct qf_env *e);     /* zero + empty strings */
void qf_env_free(struct qf_env *e);     /* frees, then leaves e as qf_env_init */
/* Append a recipient (strings copied); returns it. */
struct qf_rcpt *qf_env_add_rcpt(struct qf_env *e, const char *addr, const char *orig,
                                uint32_t notify);

/* Append a note (copied; CR/LF/NUL become spaces, bounded). Beyond
 * QF_MAX_NOTES notes are dropped. */
void qf_env_add_note(struct qf_env *e, const char *text);

/* ---- writer (cleanup) ------------------------------------------------ */
struct qf_writer;
/* Start a file on fd (already open at offset 0: a new file, or a reused one
 * being overwritten from the start): writes VERSION + envelope +
 * recipients from env, then opens the CONTENT record. NULL with errno EINVAL
 * when env would make a file the reader refuses (no recipient, bad queue id,
 * CR/LF in a text field, field too long...). */
struct qf_writer *qf_write_begin(int fd, const struct qf_env *env);
/* Append content bytes (buffered; write errors are reported by _end). */
int  qf_write_content(struct qf_writer *w, const void *p, size_t n);
/* Close CONTENT (patching its length) and write END. Returns 0, or -1 with
 * errno (ENOSPC/EIO...) - the caller then discards the file. Does not fsync.
 * Frees w in both cases. */
int  qf_write_end(struct qf_writer *w);
/* The same, and *end_r = the file offset just past END (where a longer old
 * file, reused, is to be cut). */
int  qf_write_end_at(struct qf_writer *w, off_t *end_r);
void qf_write_abort(struct qf_writer *w);      /* free without finishing */
uint64_t qf_write_size(const struct qf_writer *w);   /* content bytes so far */
/* The content so far, when all of it is still in w's buffer (nothing has
 * reached the file yet, no error): 0 with *p and *n (valid until w changes),
 * else -1. Lets cleanup write a small message once, with fields it adds in
 * front, instead of writing it and rewriting it. */
int  qf_write_buffered(const struct qf_writer *w, const void **p, size_t *n);

/* ---- reader ------------------------------------------------------------ */
/* Read and validate a whole queue file (envelope parsed, content located but
 * not loaded). 0 ok; -1 with err set (corrupt/incomplete/io). env needs no
 * qf_env_init first; on failure it is left empty (qf_env_free is harmless). */
int  qf_read(int fd, struct qf_env *env, char *err, size_t errlen);
/* A file shorter than QF_SMALL_READ (nearly every queue file) is read whole
 * with one pread and parsed from memory: no fstat, no window. */
#define QF_SMALL_READ (64 * 1024)
/* The whole file when it is shorter than max, from one pread at offset 0
 * (new buffer, caller frees; its length in *size_r); else NULL: larger, or
 * the read failed (the caller looks with fstat). */
unsigned char *qf_pread_small(int fd, size_t max, size_t *size_r);
/* Same from memory (the fuzz target and tests). */
int  qf_parse(const unsigned char *p, size_t len, struct qf_env *env, char *err, size_t errlen);

/* ---- in-place update (qmgr) --------------------------------------------- */
/* Rewrite recipient r's status/attempts/last_try/reason/dsn in the file (pwrite,
 * no fsync: the caller fsyncs once for all updates). 0 or -1 (errno). */
int  qf_update_rcpt(int fd, const struct qf_rcpt *r);
/* Read exactly n bytes at off (content copies, rewrites): 0, or -1 with
 * errno (EIO when the file ends first). */
int  qf_pread_all(int fd, void *p, size_t n, off_t off);

const char *dstatus_name(enum dstatus s);

#endif
