/*
 * delivery.h - internals of the local delivery agent shared by its files:
 * delivery.c (accept loop, DELIVER_REQ protocol), delivery_path.c (which
 * mailbox a recipient gets), delivery_maildir.c and delivery_mbox.c.
 *
 * The agent is blocking: one connection, one request, one recipient at a
 * time. It decides nothing about policy; it reports per recipient
 * delivered / deferred / bounced / discarded and qmgr records the outcome.
 */
#ifndef POSTERN_DELIVERY_H
#define POSTERN_DELIVERY_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include "util/buf.h"
#include "config/config.h"
#include "util/fdio.h"
#include "mail/qfile.h"

/* The outcome for one recipient, as sent in DELIVER_STATUS. */
struct dlv_result {
    enum dstatus status;
    char dsn[16];
    char reason[QF_REASON_MAX + 1];
};

/* The message being delivered: its open queue file and parsed envelope. */
struct dlv_msg {
    const struct config *cfg;
    const char *qid;
    int fd;                        /* queue file, read-only */
    const struct qf_env *env;
    const char *hostname;          /* for Maildir names */
    const unsigned char *content;  /* the content in memory (content_len bytes), or NULL:
                                    * then read from fd at env->content_off */
};

void dlv_result_set(struct dlv_result *r, enum dstatus s, const char *dsn,
                    const char *fmt, ...) PRINTF_LIKE(4, 5);
/* A temporary local failure from errno: 4.2.2 for a full disk or quota,
 * 4.3.0 otherwise; reason "<what>: <strerror>". */
void dlv_result_errno(struct dlv_result *r, int err, const char *what);

/* Append "Return-Path: <sender>\nDelivered-To: <rcpt>\n" (values escaped
 * so envelope bytes can never start a new header line). */
void dlv_headers(buf_t *out, const char *sender, const char *rcpt);
/* Copy the message content from the queue file to out_fd (copy_file_range,
 * read/write fallback). 0, or -1 with errno. */
int  dlv_copy_content(const struct dlv_msg *m, int out_fd);

/* delivery_path.c: the mailbox path for a recipient, or a bounce/defer in r
 * (returns -1). kind: the mailbox kind a rule chose (DELIVER_RCPT.nexthop),
 * -1 = local.mailbox. *kind_r tells maildir/mbox/discard. */
int  delivery_path_resolve(const struct config *cfg, const char *addr, int kind,
                           enum mailbox_kind *kind_r, buf_t *path_r, struct dlv_result *r);

/* Deliver into a Maildir. On success r says delivered, but only once
 * delivery_maildir_sync() has run (it fsyncs new/ once per Maildir and turns
 * r into a deferral if that fails): call it before reporting any result and
 * before r goes away. */
void delivery_maildir(const struct dlv_msg *m, unsigned index, const char *rcpt,
                      const char *dir, struct dlv_result *r);
void delivery_maildir_sync(void);
void delivery_mbox(const struct dlv_msg *m, const char *rcpt, const char *path,
                   struct dlv_result *r);

#endif
