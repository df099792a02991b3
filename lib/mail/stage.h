/*
 * stage.h - SMTP stages and verdict statuses shared by smtpd, cleanup, qmgr
 * and filter, and the one table mapping each status to its default SMTP
 * reply (stage.c). Values travel over IPC: append only, never renumber.
 */
#ifndef POSTERN_STAGE_H
#define POSTERN_STAGE_H

enum stage {
    STAGE_CONNECT = 0, STAGE_HELO, STAGE_AUTH, STAGE_MAIL, STAGE_RCPT,
    STAGE_DATA, STAGE_POSTQ, STAGE_DELIVER, STAGE__COUNT
};

enum verdict {
    V_NEXT = 0,     /* no decision: go on (default) */
    V_ACCEPT,       /* accept; skip this stage's remaining rules */
    V_FACCEPT,      /* accept; skip all later pre-queue rules */
    V_REJECT,       /* refuse the current command only (5xx) */
    V_DENY,         /* refuse and end the transaction (5xx) */
    V_DEFER,        /* temporary refusal (4xx) */
    V_QUARANTINE,   /* client gets 250, mail is held */
    V_TEMPFAIL,     /* internal temporary failure (IPC, disk): 4xx */
    V__COUNT
};

struct verdict_reply {
    int code;               /* SMTP code */
    const char *enhanced;   /* RFC 3463 enhanced status code */
    const char *text;
};

const char *stage_name(enum stage s);
int stage_parse(const char *name, enum stage *s_r);      /* 0 ok */
const char *verdict_name(enum verdict v);
/* The default reply for a status at a stage (e.g. REJECT at RCPT = 550 5.7.1). */
const struct verdict_reply *verdict_default(enum verdict v, enum stage s);

#endif
