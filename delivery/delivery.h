/*
 * delivery.h - internals of the local delivery agent shared by its files:
 * delivery.c (accept loop, DELIVER_REQ protocol), delivery_path.c (which
 * mailbox a recipient gets), delivery_expand.c (aliases, .forward: a
 * recipient becomes targets), delivery_ident.c (whose rights a target is
 * written with), delivery_run.c (targets grouped by identity, each group in
 * a child that became that identity), delivery_pipe.c (|command),
 * delivery_maildir.c and delivery_mbox.c.
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
    int64_t deadline_ms;           /* the request's budget ends (clock_now_ms) */
};

/* qmgr gives one request QMGR_AGENT_TIMEOUT (900 s), then defers it and
 * may hand it out again: so every target starts within DLV_REQUEST_BUDGET
 * of the request's start or is deferred (4.4.7, not tried), a command's
 * time is cut to what is left of it, and a child delivering as a user is
 * waited for at most DLV_CHILD_GRACE past it. Slow .forward commands thus
 * delay mail, never deliver it twice. */
#define DLV_REQUEST_BUDGET_MS (600 * 1000)
#define DLV_CHILD_GRACE_MS    (60 * 1000)

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
/* Append to an mbox (dotlock: also take <path>.lock; mode of a new file:
 * 0600, or 0660 with group_rw, the /var/mail convention). */
void delivery_mbox(const struct dlv_msg *m, const char *rcpt, const char *path, int dotlock,
                   int group_rw, struct dlv_result *r);
/* Forget the Maildir cache without syncing (a child of another identity). */
void delivery_maildir_forget(void);

/* ---- identities (delivery_ident.c) ------------------------------------ */
struct dlv_ident {
    uid_t uid;
    gid_t gid;
    int mail_group;             /* also the "mail" group (/var/mail mboxes) */
    char user[64];
    char home[512];
};
int  dlv_can_switch(void);      /* CAP_SETUID + CAP_SETGID held */
void dlv_ident_self(struct dlv_ident *id);
int  dlv_ident_lookup(const char *name, struct dlv_ident *id);   /* 1, 0 none, -1 error */
int  dlv_ident_of_uid(uid_t uid, struct dlv_ident *id);          /* 0 or -1 */
int  dlv_ident_same(const struct dlv_ident *a, const struct dlv_ident *b);
int  dlv_ident_is_self(const struct dlv_ident *id);   /* no switch needed (or possible) */
int  dlv_ident_become(const struct dlv_ident *id);    /* in a child: 0 or -1 */
void dlv_fs_as(const struct dlv_ident *id);           /* file access as id (setfsuid) */
void dlv_fs_restore(void);

/* ---- targets (delivery_expand.c) -------------------------------------- */
/* T_DUP: the same target as dup_of for another recipient of the message
 * (delivered once, its outcome shared). */
enum dlv_tkind { T_MAILBOX, T_FILE, T_PIPE, T_REMOTE, T_ERROR, T_DUP };

struct dlv_target {
    enum dlv_tkind kind;
    enum mailbox_kind mkind;    /* T_MAILBOX */
    char *value;                /* mailbox path, file, command, remote address */
    char *rcpt;                 /* Delivered-To / $RECIPIENT */
    char *sender;               /* envelope sender of an owner- list, or NULL */
    uint32_t slot;              /* the request's recipient this came from */
    size_t dup_of;              /* T_DUP: the target that is delivered */
    struct dlv_ident id;
    struct dlv_result res;
};

struct dlv_targets {
    struct dlv_target *v;
    size_t n, cap;
};

struct aliases_db;
/* Set once by main: the alias index the expansion reads. */
void delivery_expand_init(struct aliases_db *db);
/* Expand recipient addr (kind: rule-chosen mailbox kind or -1) into
 * targets tagged with slot. 0, or -1 with r set (loop, lookup failure):
 * then the recipient gets r and nothing is delivered for it. */
int  delivery_expand(const struct config *cfg, const char *addr, int kind, uint32_t slot,
                     struct dlv_targets *out, struct dlv_result *r);
void dlv_targets_free(struct dlv_targets *t);

/* ---- running them (delivery_run.c, delivery_pipe.c) ------------------- */
/* Deliver every target (results in each target's res). */
void delivery_run(const struct dlv_msg *m, const uint32_t *qf_index, struct dlv_targets *t);
/* Queue the T_REMOTE targets again through cleanup (delivery_forward.c). */
void delivery_forward(const struct dlv_msg *m, struct dlv_targets *t);
/* Does the message's header section hold "Delivered-To: rcpt" (it came
 * back through a forward: a loop)? */
int  delivery_seen_delivered_to(const struct dlv_msg *m, const char *rcpt);
/* Run command with /bin/sh -c, the message on stdin, as the current
 * process (already the right identity), bounded in time. */
void delivery_pipe(const struct dlv_msg *m, const struct dlv_target *t, struct dlv_result *r);

#endif
