/*
 * local_reply.h - the one table of replies for local failures (disk full,
 * size limits, timeouts, internal errors), like Postfix's cleanup_strerror.
 *
 * Used by cleanup (which names the failure in CLEANUP_REPLY.local) and
 * smtpd (which renders it, and refuses with it itself). Policy outcomes
 * (rules, filter verdicts) are not here: their defaults are in stage.c.
 */
#ifndef POSTERN_LOCAL_REPLY_H
#define POSTERN_LOCAL_REPLY_H

#include "util/buf.h"
#include "mail/stage.h"

enum local_status {
    LR_NONE = 0,                /* not a local failure */
#define LOCAL_REPLY(name, code, enh, text) LR_##name,
#include "mail/local_reply.def"
#undef LOCAL_REPLY
    LR__COUNT
};

struct local_reply {
    int code;                   /* SMTP code */
    const char *enhanced;       /* RFC 3463 */
    const char *text;
};

/* The row for s; an unknown s (a bad peer) gets LR_TEMP's. */
const struct local_reply *local_reply(enum local_status s);
const char *local_reply_name(enum local_status s);   /* "NOSPACE"; "unknown" */
/* V_REJECT for a 5xx row, V_TEMPFAIL for a 4xx one. */
enum verdict local_reply_verdict(enum local_status s);
/* LR_NOSPACE for a full disk or quota (ENOSPC, EDQUOT), else other. */
enum local_status local_reply_errno(int err, enum local_status other);
/* "code enhanced text" appended to out (no CRLF), for raw writes. */
void local_reply_format(buf_t *out, enum local_status s);

#endif
