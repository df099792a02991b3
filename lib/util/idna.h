/*
 * idna.h - a domain as DNS knows it: Unicode labels (U-labels, as in an
 * SMTPUTF8 message's addresses, RFC 6531/6532) converted to A-labels
 * ("xn--..."), as RFC 8616 requires before SPF, DKIM and DMARC look a
 * name up or compare it. Through libidn2 (IDNA2008 with the UTS #46
 * mapping, non-transitional: case folded, NFC).
 *
 * Must never: hand back a name that is not plain ASCII letters, digits,
 * '-', '_' and '.', or one longer than out can hold.
 */
#ifndef POSTERN_IDNA_H
#define POSTERN_IDNA_H
#include <stddef.h>

#define IDNA_ASCII_MAX 256      /* room for a domain (at most 255 octets) and its NUL */
#define IDNA_UTF8_MAX  1024     /* UTF-8 bytes looked at: no longer name has <= 255 octets
                                 * of A-labels (4 bytes a character at most) */

/* The n bytes at in (no NUL needed), ASCII or UTF-8, into out (NUL-ended,
 * lower case, A-labels) of size outsz. 0 = done; -1 = no such domain: not
 * UTF-8, a label IDNA2008 refuses, a byte outside letters, digits, '-',
 * '_', '.' after conversion, or too long for out. */
int idna_domain_ascii(const char *in, size_t n, char *out, size_t outsz);

/* For lookups and comparisons: d itself when it is all ASCII (as it is:
 * not checked, not lower-cased), else its A-labels in ace, or NULL when its
 * UTF-8 is no valid IDN. */
const char *idna_lookup_name(const char *d, char ace[IDNA_ASCII_MAX]);

#endif
