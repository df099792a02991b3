/*
 * qf_mutate.h - the one place where the rules' mutations change a queue
 * file: cleanup at the data stage (tmp/ID in its commit pool) and qmgr at
 * postq (active/ID, or quarantine/<name>/ID). The decisions, written in
 * postern.rules(5):
 *  - mutations apply in the order the rules made them;
 *  - a field add_header/set_header makes goes right after the topmost
 *    Received field (the one cleanup adds) when the header section starts
 *    with one, else at the top; several go in the order they were made;
 *    it is capped and folded by filter_hdr_fold (998 / 78 octets);
 *  - set_header and remove_header drop every field of that name, the ones
 *    earlier mutations added too, but never that topmost Received field;
 *  - names match case-insensitively, blanks allowed before the colon
 *    (qfm_field_is); a name that is no valid field name is ignored;
 *  - the header section ends where lib/mail/hdr.c says (qfm_header_len); every
 *    other byte is copied unchanged;
 *  - each applied mutation is kept as a NOTE record (postq: "postq: " first);
 *  - the quarantine name is [A-Za-z0-9_-]{1,64}, else (or when a quarantine
 *    verdict names none) QFM_QUARANTINE_DEFAULT.
 * Everything here is pure (buffers and file descriptors in, bytes out); the
 * callers open, fsync and rename. Must never log from qfm_write or
 * qfm_apply_headers/_content (cleanup runs them in its commit pool).
 */
#ifndef POSTERN_QF_MUTATE_H
#define POSTERN_QF_MUTATE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "util/buf.h"
#include "filter/filter_mut.h"
#include "mail/qfile.h"
#include "mail/stage.h"

#define QFM_QUARANTINE_DEFAULT "quarantine"
#define QFM_NOTE_POSTQ         "postq: "   /* marks postq as done (qmgr) */
#define QFM_NOTE_VALUE_MAX     400         /* octets of a header value in a note */

/* What qfm_apply_env decided besides the envelope edits. */
struct qfm_result {
    int changed;                /* envelope or headers changed: rewrite the file */
    const char *quarantine;     /* valid name to hold the mail in, NULL = none
                                 * (points into the mutations or is the default) */
    const char *qrule;          /* the rule that quarantined */
};

/* postq: recipient index was marked discarded by remove_rcpt (why: reason). */
typedef void qfm_discard_fn(void *arg, int index, const char *why);

int  qfm_is_header_kind(uint32_t kind);
int  qfm_has_header_muts(const struct filter_mut *muts, int n);
int  qfm_qname_ok(const char *name);
/* name when it is a valid quarantine name, else the default (logged). */
const char *qfm_quarantine_name(const char *name, const char *rule);
/* Is the field f (flen bytes, first line onwards) named name? */
int  qfm_field_is(const char *f, size_t flen, const char *name);
/* Bytes of c that are header fields (hdr_scan: before the empty line or
 * the first line that is not a field). */
size_t qfm_header_len(const char *c, size_t len);

/* The NOTE of one applied mutation: [postq: ]rule "R": kind [<rcpt>] [arg][: value]. */
void qfm_note(struct qf_env *e, enum stage s, const struct filter_mut *m);

/* The envelope part, in order, for s = STAGE_DATA or STAGE_POSTQ: add_rcpt
 * and bcc add an address not yet there; remove_rcpt drops the recipient
 * (data) or marks a pending one discarded and calls discard (postq);
 * rewrite_mail_from replaces the sender; quarantine sets e->quarantine;
 * header mutations are only noted (qfm_write applies them). v/vrule: the
 * verdict (V_QUARANTINE without a quarantine mutation uses the default).
 * Invalid arguments are logged and ignored. */
void qfm_apply_env(struct qf_env *e, enum stage s, enum verdict v, const char *vrule,
                   const struct filter_mut *muts, int n, qfm_discard_fn *discard, void *arg,
                   struct qfm_result *r);

/* The header section hdr (len bytes of fields) with the header mutations
 * applied, appended to out. */
void qfm_apply_headers(buf_t *out, const char *hdr, size_t len,
                       const struct filter_mut *muts, int n);
/* A whole message content: its header section mutated, the rest copied. */
void qfm_apply_content(buf_t *out, const char *c, size_t len,
                       const struct filter_mut *muts, int n);
/* Write a complete queue file to out_fd (empty, open): env, then the
 * content read from in_fd at [off, off+len) with the header mutations
 * applied. No fsync. 0, or -1 with errno. */
int  qfm_write(int out_fd, const struct qf_env *env, int in_fd, off_t off, uint64_t len,
               const struct filter_mut *muts, int n);

#endif
