/*
 * hdr.h - streaming RFC 5322 header-section scanner.
 *
 * Used by cleanup to find where the header section of a message ends and
 * which fields it already has (Message-ID, Date, ...), while the content
 * arrives in arbitrary chunks (a field may be split anywhere, even inside
 * its name). The scanner keeps a small, bounded state: it never stores the
 * content, only the current field name (truncated at HDR_NAME_MAX) and a few
 * counters, and it never rewrites anything. Content has LF line ends.
 *
 * The header section ends at the first empty line (HDR_END_BLANK: the body
 * starts after that line), at the first line that is neither a field nor a
 * continuation of one (HDR_END_LINE: a message without the empty line; the
 * body starts with that line), or at the end of the content (HDR_END_EOF).
 * Offsets count bytes from the start of the content.
 */
#ifndef POSTERN_HDR_H
#define POSTERN_HDR_H

#include <stddef.h>
#include <stdint.h>

#define HDR_NAME_MAX 64         /* longest field name we classify */

/* Fields the scanner reports as seen (bits of hdr_scan.seen). */
enum {
    HDR_SEEN_MESSAGE_ID = 1,
    HDR_SEEN_DATE       = 2,
    HDR_SEEN_FROM       = 4,
    HDR_SEEN_SENDER     = 8,
    HDR_SEEN_TO         = 16,
    HDR_SEEN_SUBJECT    = 32,
};

enum hdr_end { HDR_END_NONE = 0, HDR_END_BLANK, HDR_END_LINE, HDR_END_EOF };

struct hdr_scan {
    int      state;             /* private: position inside the current line */
    uint64_t off;               /* bytes scanned so far */
    uint64_t line_start;        /* offset of the current line */
    char     name[HDR_NAME_MAX + 1];
    size_t   nlen;              /* full length of the current name (may exceed HDR_NAME_MAX) */
    unsigned nfields;           /* complete fields seen */
    unsigned received;          /* Received: fields (hop count) */
    unsigned seen;              /* HDR_SEEN_* */
    uint64_t longest_line;      /* longest line in the header section, LF excluded */
    uint64_t cur_line;          /* private: length of the current line */
    enum hdr_end end;           /* HDR_END_NONE while still in the header section */
    uint64_t end_off;           /* where the header section ends (see below) */
    uint64_t body_off;          /* where the body starts */
};

/* A field name a rule may add, set or remove: 1..76 bytes of printable
 * ASCII without ':' (RFC 5322 ftext). */
int  hdr_name_ok(const char *s, size_t n);

void hdr_scan_init(struct hdr_scan *s);
/* Scan more content. Returns the number of bytes of p that belong to the
 * header section (all of n while it goes on; once it ends, bytes after the
 * end are not looked at). When s->end becomes non-zero the header section
 * is [0, end_off) and the body is [body_off, ...): BLANK: end_off is the
 * empty line's offset and body_off = end_off + 1; LINE: both are the offset
 * of the offending line (which may have started in an earlier chunk). */
size_t hdr_scan_feed(struct hdr_scan *s, const void *p, size_t n);
/* The content ended: if the header section was still open it ends here
 * (HDR_END_EOF; end_off = body_off = total length, or the start of an
 * unterminated last line that is not a field). */
void hdr_scan_finish(struct hdr_scan *s);
/* Case-insensitive field-name comparison helper. */
int hdr_name_eq(const char *a, size_t alen, const char *b);

#endif
