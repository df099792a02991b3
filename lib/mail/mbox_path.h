/*
 * mbox_path.h - pure helpers for local delivery: mailbox template expansion
 * with path-safe recipient sanitising, the deterministic Maildir file name,
 * and mboxrd "From " quoting.
 *
 * Used by the local delivery agent (delivery/) and later by the CLI. Nothing
 * here touches the file system or the password database: callers look the
 * home directory up themselves and pass it in, so these stay unit-testable.
 * Must never let envelope data become a path component unchecked.
 */
#ifndef POSTERN_MBOX_PATH_H
#define POSTERN_MBOX_PATH_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include "util/buf.h"

#define MBOX_LOCAL_MAX  64      /* RFC 5321 local-part bound */
#define MBOX_DOMAIN_MAX 255

enum mbox_path_rc {
    MBP_OK = 0,
    MBP_BAD_ADDR,       /* local part or domain not safe in a path: 5.1.3 */
    MBP_NO_USER,        /* template wants ~ and there is no such user: 5.1.1 */
    MBP_BAD_TEMPLATE,   /* unknown %x or a trailing % in the template */
};

/* Split addr at its last '@' into local part and domain, both folded to
 * lowercase. Without '@' the domain is empty. */
void mbox_addr_split(const char *addr, buf_t *local_r, buf_t *domain_r);

/* Is lp safe as one path component? Non-empty, <= MBOX_LOCAL_MAX, only
 * [A-Za-z0-9._+=-] and well-formed UTF-8 (RFC 6531 local parts), not
 * starting with '.', so never "." or "..". */
int  mbox_local_ok(const char *lp);
/* Is d safe in a path? Non-empty, <= MBOX_DOMAIN_MAX, [A-Za-z0-9.-], no
 * leading '.', no "..". */
int  mbox_domain_ok(const char *d);

/* Does the template start with "~" (needs the user's home directory)? */
int  mbox_template_wants_home(const char *tmpl);

/* Expand a mailbox template into out (replaced): %u = local part, %d =
 * domain, %% = '%', a leading "~/" (or a lone "~") = home. The local part is
 * always checked with mbox_local_ok; the domain when %d is used. home may be
 * NULL when the template does not start with "~" (else MBP_NO_USER). */
enum mbox_path_rc mbox_path_expand(const char *tmpl, const char *local, const char *domain,
                                   const char *home, buf_t *out);

/* Maildir file name: "<secs>.P<qid>R<index>.<host>" with '/' in host written
 * as "\057" and ':' as "\072" (the Maildir convention). Deterministic, so a
 * re-delivery after a crash finds the earlier file. out is replaced. */
void mbox_maildir_name(buf_t *out, int64_t secs, const char *qid, unsigned index,
                       const char *host);

/* mboxrd quoting, streaming: append p[0..n) to out with '>' added before
 * every line that matches /^>*From /. *midline carries state between calls
 * (start with 0). Returns bytes consumed: a short line start that cannot be
 * decided yet (">>Fro") is left unconsumed unless final is set; the caller
 * passes it again in front of the next data. */
size_t mbox_from_quote(buf_t *out, const char *p, size_t n, int final, int *midline);

/* The mbox separator "From <sender> <asctime date>\n"; sender "" becomes
 * MAILER-DAEMON, and spaces/controls in it become '_'. Appends to out. */
void mbox_from_line(buf_t *out, const char *sender, const struct tm *tm);

#endif
