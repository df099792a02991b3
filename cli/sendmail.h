/*
 * sendmail.h - bin/sendmail (the postern binary called sendmail, mailq or
 * newaliases): the sendmail-compatible submission command, sendmail(1).
 *
 * sendmail_args.c parses the command line and the header section (pure
 * functions, unit-tested in t/unit/test_sendmail.c); sendmail.c reads the
 * message and hands it to the setgid postdrop helper (libexec/postdrop),
 * which writes it into maildrop/ for pickup(8); sendmail_bs.c is the -bs
 * SMTP dialogue on stdin/stdout; sendmail_bv.c answers -bv. sendmail runs
 * with the caller's privileges only: it never writes into the spool
 * itself, and nothing it sends is trusted by postdrop or pickup.
 */
#ifndef POSTERN_SENDMAIL_H
#define POSTERN_SENDMAIL_H

#include <stdint.h>
#include <sysexits.h>
#include "config/config.h"
#include "util/buf.h"

enum sm_mode {
    SM_DELIVER = 0,     /* -bm (default): submit the message */
    SM_SMTP,            /* -bs */
    SM_QUEUE_LIST,      /* -bp, mailq */
    SM_ALIASES,         /* -bi, -I, newaliases */
    SM_VERIFY,          /* -bv */
    SM_FLUSH,           /* -q */
};

struct sm_opts {
    enum sm_mode mode;
    int extract;                /* -t */
    int dots_ok;                /* -i / -oi: a lone "." does not end the message */
    int verbose;                /* -v */
    const char *from;           /* -f / -r, NULL = the caller's login */
    const char *fullname;       /* -F */
    const char *config;         /* -C FILE, NULL = $POSTERN_CONFIG / default */
    uint32_t notify;            /* -N: NOTIFY_* bits (mail/qfile.h), 0 = not given */
    uint32_t ret;               /* -R: 0, 1 FULL, 2 HDRS */
    int body_8bit;              /* -B 8BITMIME */
    char **rcpts; int nrcpts;   /* argv after the options (not copied) */
};

/* Parse argv (argv[0] = the name called: sendmail, mailq, newaliases).
 * 0, or EX_USAGE with the reason in err. */
int sm_parse_args(int argc, char **argv, struct sm_opts *o, char *err, size_t errlen);

/* A list of addresses (malloc'd strings). */
struct sm_list { char **v; int n; };
void sm_list_add(struct sm_list *l, const char *s, size_t n);
void sm_list_free(struct sm_list *l);

/* The addresses of an RFC 5322 address list (display names, comments,
 * quoted strings, groups, angle addresses with a source route): each
 * addr-spec appended to out, unqualified ones as they are. */
void sm_addr_list(const char *s, size_t n, struct sm_list *out);

/* The header section hdr (LF line ends, without the empty line) rewritten
 * for submission into out: Bcc and Resent-Bcc removed, a From: added when
 * missing (from_line, e.g. "From: Name <a@b>", NULL = none). With extract
 * (-t), the recipients of To/Cc/Bcc - or of the Resent- fields when there
 * are any - are appended to rcpts. */
void sm_headers(const char *hdr, size_t len, int extract, const char *from_line, buf_t *out,
                struct sm_list *rcpts);

/* An address from the command line or a header made ready for the
 * envelope: "<a@b>" -> "a@b", unqualified "bob" -> "bob@domain". Returns
 * a malloc'd string, or NULL when it is no valid mailbox then. */
char *sm_qualify(const char *a, const char *domain);

/* The domain that completes an address without one (and the caller's
 * login as default sender): hostname when it is a local domain, else the
 * first local domain other than localhost, else localhost, else hostname.
 * So "sendmail root" stays local. */
const char *sm_origin(const struct config *cfg);

/* sendmail.c: the submission path, shared by -bm, -t and -bs. */
struct sm_msg {
    const char *sender;         /* "" = <> */
    struct sm_list rcpts;
    uint32_t notify, ret;
    int body_8bit;
    const char *fullname;       /* for a From: sm_submit adds, NULL = none */
    int extract;                /* -t */
    int verbose;                /* -v */
};
struct sm_drop;
/* Start postdrop and send the envelope; NULL on failure (message printed). */
struct sm_drop *sm_drop_begin(const struct config *cfg, const struct sm_msg *m);
/* Content with LF line ends. -1 when postdrop went away or the message is
 * over limits.message_size (nothing is queued then). */
int  sm_drop_content(struct sm_drop *d, const void *p, size_t n);
/* Finish (END record) and wait for postdrop: 0 = in maildrop, else a
 * sysexits code; abort = discard instead. Frees d. */
int  sm_drop_end(struct sm_drop *d, int abort);

/* Reading stdin as lines (sendmail.c). */
struct sm_in {
    buf_t buf;                      /* bytes read; from pos on not yet returned */
    size_t pos;
    size_t max;                     /* longest line we hold */
    int eof, dots_ok, ended;
    int smtp;                       /* DATA of -bs: "." ends, leading dots unstuffed */
    int dot;                        /* ended by the "." line (not by EOF) */
};
/* The next line into line (LF added, CRLF -> LF). 1 = a line, 0 = end of
 * the message (EOF, or a lone "." unless dots_ok), -1 = a line over
 * in->max (message too big). */
int  sm_next_line(struct sm_in *in, buf_t *line);
/* Read one message from in and queue it: the header section rewritten
 * (sm_headers: Bcc gone, From: added from m->fullname and m->sender when
 * missing, -t recipients taken), the body streamed; m->rcpts are
 * qualified on the way. 0, or a sysexits code (message on stderr). */
int  sm_submit(const struct config *cfg, struct sm_in *in, const struct sm_msg *m);

/* sendmail_bs.c */
int  sm_smtp(const struct config *cfg, const struct sm_opts *o, const char *login);
/* sendmail_bv.c */
int  sm_verify(const struct config *cfg, const struct sm_list *rcpts);

#endif
