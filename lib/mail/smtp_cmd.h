/*
 * smtp_cmd.h - parsing one SMTP command line (no I/O), shared by smtpd and
 * its fuzz target (t/fuzz/fuzz_smtp_cmd.c).
 *
 * The line given excludes its CRLF. smtp_cmd_split() finds the verb;
 * smtp_cmd_mailrcpt() parses the argument of MAIL FROM: / RCPT TO: into a
 * mailbox and ESMTP parameters (pointing into the line). Nothing here
 * decides policy or writes replies: the caller maps the results to codes.
 */
#ifndef POSTERN_SMTP_CMD_H
#define POSTERN_SMTP_CMD_H

#include <stddef.h>
#include <stdint.h>
#include "mail/addr.h"
#include "util/buf.h"

#define SMTP_LINE_MAX   512     /* command line incl. CRLF (RFC 5321 4.5.3.1.4) */
#define SMTP_VERB_MAX   15

struct smtp_cmd {
    char verb[SMTP_VERB_MAX + 1];   /* upper-cased; "" for an empty line */
    const char *arg;                /* after the verb and its separating space(s) */
    size_t arglen;                  /* trailing spaces removed */
};

/* Split a line into verb and argument. 0 ok; -1 when the verb is longer than
 * SMTP_VERB_MAX or holds bytes other than letters/digits (never a verb). */
int smtp_cmd_split(const char *line, size_t len, struct smtp_cmd *c);

enum smtp_mr_err {
    SMTP_MR_OK = 0,
    SMTP_MR_SYNTAX,     /* "FROM:"/"TO:" missing: 501 5.5.4 Syntax */
    SMTP_MR_ADDR,       /* path refused: see *addr_err_r (enum addr_err) */
    SMTP_MR_PARAM,      /* malformed parameter list: 501 5.5.4 */
    SMTP_MR_TOOMANY,    /* more than ESMTP_MAX_PARAMS parameters: 501 5.5.4 */
};

struct smtp_mailrcpt {
    struct esmtp_param params[ESMTP_MAX_PARAMS];
    int nparams;
    int addr_err;       /* enum addr_err when SMTP_MR_ADDR */
};

/* Parse "FROM:<path> params" (prefix "FROM:") or "TO:<path> params"
 * (prefix "TO:"); spaces after the colon are tolerated. addr receives the
 * mailbox. Returns enum smtp_mr_err. */
int smtp_cmd_mailrcpt(const char *arg, size_t len, const char *prefix, unsigned addr_flags,
                      buf_t *addr, struct smtp_mailrcpt *r);

/* Parse the argument of BDAT (RFC 3030): chunk-size [SP "LAST"], the size
 * 1..19 decimal digits. 0 ok (*size_r, *last_r set); -1 syntax error. A
 * caller that cannot parse the size cannot tell where the chunk ends. */
int smtp_cmd_bdat(const char *arg, size_t len, uint64_t *size_r, int *last_r);

#endif
