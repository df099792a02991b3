/*
 * hdr.c - streaming header-section scanner (see hdr.h).
 *
 * A byte-at-a-time state machine over the line structure of RFC 5322
 * section 2.2: field = name ":" value, name = printable US-ASCII except ":"
 * (obsolete syntax allows white space before the colon), continuation lines
 * start with SP or HTAB. It must never read outside the bytes it is given,
 * never allocate, and never keep more than the bounded state in hdr.h: it
 * runs on untrusted content and is fuzzed (t/fuzz/fuzz_hdr.c).
 */
#include <string.h>
#include <strings.h>

#include "mail/hdr.h"

enum { S_LSTART = 0, S_NAME, S_NAMEWS, S_VALUE, S_DONE };

/* Names we report, each with its HDR_SEEN_* bit. */
static const struct { const char *name; unsigned bit; } known[] = {
    { "message-id", HDR_SEEN_MESSAGE_ID },
    { "date",       HDR_SEEN_DATE },
    { "from",       HDR_SEEN_FROM },
    { "sender",     HDR_SEEN_SENDER },
    { "to",         HDR_SEEN_TO },
    { "subject",    HDR_SEEN_SUBJECT },
};

int hdr_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > 76)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 32 || (unsigned char)s[i] >= 127 || s[i] == ':')
            return 0;
    return 1;
}

void hdr_scan_init(struct hdr_scan *s)
{
    memset(s, 0, sizeof(*s));
    s->state = S_LSTART;
}

int hdr_name_eq(const char *a, size_t alen, const char *b)
{
    return strlen(b) == alen && strncasecmp(a, b, alen) == 0;
}

static int name_char(unsigned char c)
{
    return c >= 33 && c <= 126 && c != ':';
}

/* A complete field name was read (the colon arrived). */
static void field_seen(struct hdr_scan *s)
{
    s->nfields++;
    if (s->nlen > HDR_NAME_MAX)
        return;
    if (hdr_name_eq(s->name, s->nlen, "received")) {
        s->received++;
        return;
    }
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (hdr_name_eq(s->name, s->nlen, known[i].name))
            s->seen |= known[i].bit;
}

static void end_at(struct hdr_scan *s, enum hdr_end how, uint64_t end_off, uint64_t body_off)
{
    s->end = how;
    s->end_off = end_off;
    s->body_off = body_off;
    s->state = S_DONE;
}

static void line_done(struct hdr_scan *s)
{
    if (s->cur_line > s->longest_line)
        s->longest_line = s->cur_line;
    s->cur_line = 0;
}

size_t hdr_scan_feed(struct hdr_scan *s, const void *p, size_t n)
{
    const unsigned char *b = p;
    size_t i = 0;
    while (i < n && s->state != S_DONE) {
        unsigned char c = b[i];
        switch (s->state) {
        case S_LSTART:
            if (c == '\n') {
                end_at(s, HDR_END_BLANK, s->off, s->off + 1);
            } else if (c == ' ' || c == '\t') {
                if (s->nfields == 0) {          /* continuation of nothing */
                    end_at(s, HDR_END_LINE, s->line_start, s->line_start);
                    return i;
                }
                s->state = S_VALUE;
            } else if (name_char(c)) {
                s->name[0] = (char)c;
                s->nlen = 1;
                s->state = S_NAME;
            } else {
                end_at(s, HDR_END_LINE, s->line_start, s->line_start);
                return i;
            }
            break;
        case S_NAME:
            if (name_char(c)) {
                if (s->nlen < HDR_NAME_MAX)
                    s->name[s->nlen] = (char)c;
                s->nlen++;
            } else if (c == ':') {
                field_seen(s);
                s->state = S_VALUE;
            } else if (c == ' ' || c == '\t') {
                s->state = S_NAMEWS;
            } else {
                end_at(s, HDR_END_LINE, s->line_start, s->line_start);
                return i;
            }
            break;
        case S_NAMEWS:
            if (c == ':') {
                field_seen(s);
                s->state = S_VALUE;
            } else if (c != ' ' && c != '\t') {
                end_at(s, HDR_END_LINE, s->line_start, s->line_start);
                return i;
            }
            break;
        case S_VALUE: {
            /* fast path: skip to the end of the line */
            const unsigned char *nl = memchr(b + i, '\n', n - i);
            size_t run = nl ? (size_t)(nl - (b + i)) : n - i;
            s->off += run;
            s->cur_line += run;
            i += run;
            if (nl == NULL)
                return i;
            c = '\n';
            s->state = S_LSTART;
            line_done(s);
            s->off++;
            i++;
            s->line_start = s->off;
            continue;
        }
        }
        if (c != '\n')
            s->cur_line++;
        else
            line_done(s);
        s->off++;
        i++;
    }
    return i;
}

void hdr_scan_finish(struct hdr_scan *s)
{
    switch (s->state) {
    case S_DONE:
        return;
    case S_NAME:
    case S_NAMEWS:          /* an unterminated last line that is no field */
        line_done(s);
        end_at(s, HDR_END_LINE, s->line_start, s->line_start);
        return;
    default:
        line_done(s);
        end_at(s, HDR_END_EOF, s->off, s->off);
        return;
    }
}
