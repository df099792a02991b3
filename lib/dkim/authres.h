/*
 * authres.h - the Authentication-Results header field (RFC 8601): composing
 * ours and recognising the ones that claim our authserv-id.
 *
 * Used by cleanup (cleanup/cleanup_auth.c) and its tests. Pure: buffers in,
 * bytes out, no I/O, no logging (it runs in cleanup's worker threads).
 * One field per message, methods in a fixed order: spf, dkim (one result
 * per signature), dmarc. Each part is filled by whoever computed it: the
 * dmarc slot is for lib/dmarc's caller; a NULL result leaves the part out.
 * Never: copy a byte from mail into the field without bounding and
 * quoting it (values become tokens or quoted-strings, reasons printable).
 */
#ifndef POSTERN_AUTHRES_H
#define POSTERN_AUTHRES_H

#include <stddef.h>

#include "dkim/pdk.h"
#include "util/buf.h"

struct authres {
    /* spf= (from smtpd's check at MAIL FROM) */
    const char *spf_result;         /* NULL or "": no spf part */
    const char *spf_domain;         /* the identity's domain */
    const char *spf_sender;         /* MAIL FROM address, "" for <> */
    int spf_helo;                   /* the HELO identity was checked */
    /* dkim= per signature; dkim_on without signatures gives dkim=none */
    int dkim_on;
    const struct pdk_verdict *dkim;
    /* dmarc= (lib/dmarc): NULL result: no dmarc part */
    const char *dmarc_result;
    const char *dmarc_header_from;  /* header.from */
    const char *dmarc_policy;       /* policy.dmarc (the published p=/sp=) */
    const char *dmarc_reason;       /* optional comment-free reason */
};

/* "Authentication-Results: ID;\n\tmethod=result ...;\n\t...\n" (LF, folded,
 * tab-indented; "ID; none" when no part has a result). */
void authres_format(buf_t *out, const char *authserv_id, const struct authres *a);

/* Is the field f (name, ':' and value; flen bytes, continuation lines
 * included) an Authentication-Results whose authserv-id is id (ASCII
 * case-insensitive, after CFWS; a version after it is allowed)? */
int authres_is_ours(const char *f, size_t flen, const char *id);

/* The header section hdr (len bytes of fields, LF line ends) without the
 * Authentication-Results fields that claim id, appended to out; returns how
 * many were dropped. */
int authres_strip(buf_t *out, const char *hdr, size_t len, const char *id);

/* A value as RFC 8601 wants it: a token when it is one, else a
 * quoted-string; bounded at 255 input bytes, controls dropped. */
void authres_value(buf_t *out, const char *s);

#endif
