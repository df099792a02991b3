/*
 * addr.h - RFC 5321 envelope addresses: path parsing, address parts,
 * ESMTP parameters and xtext.
 *
 * Used by smtpd (MAIL/RCPT), cleanup and filter (addr_domain, local part),
 * and fuzzed (t/fuzz/fuzz_addr.c). Pure functions: no I/O, no globals, no
 * allocation except into the caller's buf_t. Never trusts its input: every
 * byte is checked against the grammar and every length against the RFC
 * limits before anything is copied out.
 */
#ifndef POSTERN_ADDR_H
#define POSTERN_ADDR_H

#include <stddef.h>
#include "util/buf.h"

#define ADDR_LOCAL_MAX   64     /* octets in a local part (RFC 5321 4.5.3.1.1) */
#define ADDR_DOMAIN_MAX  255    /* octets in a domain (4.5.3.1.2) */
#define ADDR_LABEL_MAX   63     /* octets in one domain label (RFC 1035) */
#define ADDR_PATH_MAX    256    /* octets in a path, "<" and ">" included (4.5.3.1.3) */

enum addr_err {
    ADDR_OK = 0,
    ADDR_ERR_SYNTAX,        /* not a path / mailbox per the grammar */
    ADDR_ERR_LOCAL_LONG,    /* local part over ADDR_LOCAL_MAX */
    ADDR_ERR_DOMAIN_LONG,   /* domain over ADDR_DOMAIN_MAX or a label over 63 */
    ADDR_ERR_PATH_LONG,     /* path over ADDR_PATH_MAX */
    ADDR_ERR_NULL,          /* "<>" where a null path is not allowed */
};

enum {
    ADDR_F_NULL_OK    = 1,  /* "<>" accepted (reverse-path) */
    ADDR_F_POSTMASTER = 2,  /* "<postmaster>" without domain accepted (RCPT) */
    ADDR_F_UTF8       = 4,  /* RFC 6531: UTF-8 in local part and domain labels */
};

/* Parse a path at s (n bytes, not necessarily NUL-terminated):
 * "<" [ A-d-l ":" ] Mailbox ">"  or "<>". The source route is accepted and
 * dropped. On ADDR_OK, addr holds the mailbox "local@domain" ("" for <>,
 * "postmaster" for <postmaster>) and *used_r the bytes consumed (through
 * ">"); the caller checks what follows. */
int addr_parse_path(const char *s, size_t n, unsigned flags, buf_t *addr, size_t *used_r);

/* Validate a whole bare mailbox "local@domain" (no brackets). ADDR_OK or
 * an error. For cleanup/filter checking addresses from rules or config. */
int addr_check_mailbox(const char *s, size_t n, unsigned flags);

/* Short English text for an addr_err ("address syntax error", ...). */
const char *addr_strerror(int err);

/* The domain of a mailbox: the part after the last "@" outside a quoted
 * local part; "" when there is none (postmaster, <>). Points into addr. */
const char *addr_domain(const char *addr);
/* Length of the local part of a mailbox (up to the separating "@"). */
size_t addr_local_part_len(const char *addr);
/* Copy the local part into out (replacing its content). */
void addr_local_part(const char *addr, buf_t *out);
/* An address from a rule ("<a@b>" or "a@b"): a malloc'd a@b, or NULL when
 * it is no usable envelope address (over 512 bytes; spaces, controls or
 * brackets inside). "" stays "" (the null sender). */
char *addr_clean(const char *a);
/* Do a and b name the same address? "<>" around either is ignored, case
 * too (what rules compare recipients with). */
int  addr_same(const char *a, const char *b);

/* ---- UTF-8 (RFC 6531) ------------------------------------------------------ */
/* Length of the well-formed UTF-8 sequence of 2..4 bytes at p (n bytes
 * available), or 0 (ASCII, broken, overlong, surrogate, C1 control). */
size_t addr_utf8_seq(const unsigned char *p, size_t n);
/* 1 when s is ASCII and well-formed multi-byte UTF-8 only. */
int addr_utf8_valid(const char *s, size_t n);
/* 1 when s holds no byte >= 0x80. */
int addr_is_ascii(const char *s, size_t n);

/* ---- ESMTP parameters: 1*( SP keyword [ "=" value ] ) ------------------ */
#define ESMTP_MAX_PARAMS 16
struct esmtp_param {
    const char *key;  size_t keylen;     /* point into the parsed line */
    const char *val;  size_t vallen;     /* val NULL when no "=" */
};
/* Parse the parameters after a path (s may start with spaces). 0 ok and
 * *n_r set; -1 syntax error; -2 more than max parameters. */
int esmtp_parse_params(const char *s, size_t n, struct esmtp_param *v, int max, int *n_r);
/* Case-insensitive keyword compare. */
int esmtp_param_is(const struct esmtp_param *p, const char *key);

/* Decode RFC 3461 xtext ("+2B" escapes) into out; -1 if malformed or the
 * result would hold a control character, "+" unescaped, or a NUL. */
int xtext_decode(const char *s, size_t n, buf_t *out);

/* Skip the quoted string or (nested) comment that starts at s[i] (a '"'
 * or a '('), quoted pairs included: the index after it, or n when it is
 * not closed within s[0, n). */
size_t addr_skip_qc(const char *s, size_t n, size_t i);

/* The author domains of a From field's body (RFC 5322 3.4 mailbox-list;
 * a group's members too): the domain of each address, lower case, each
 * once, in order, stored in out[0..max-1]. An address is an angle-addr's
 * content (each of them, should a mailbox wrongly have two), and the
 * mailbox's text outside its angle-addr, comments and quoted strings when
 * that holds an '@' (a bare addr-spec, or an unquoted display name that
 * looks like one);
 * its domain is the run of letters, digits, '-', '_' and '.' after its
 * last '@' outside quoted strings and comments (anything after the run is
 * ignored; one final '.' dropped). Quoted strings and comments (nested,
 * with quoted pairs) are never addresses, so "<a@x>" in a display name or
 * a comment is not one. An address with no such run (no '@', a literal),
 * one with an empty label, one longer than ADDR_DOMAIN_MAX, or one whose
 * UTF-8 is no valid IDN adds nothing. U-labels are returned as A-labels
 * (RFC 8616), every domain in lower case.
 * CR and LF (folding) are white space.
 * count is how many domains out[] holds already (0, or what the call for
 * an earlier From field returned): they are not added again. Returns the
 * new count of distinct domains, which may exceed max (only max are
 * stored). */
int addr_author_domains(const char *s, size_t n, char out[][ADDR_DOMAIN_MAX + 1], int max,
                        int count);

#endif
