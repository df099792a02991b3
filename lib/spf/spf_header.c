/*
 * spf_header.c - the Received-SPF header field (RFC 7208 9.1) for one
 * outcome: result, a comment, and the key-value pairs client-ip,
 * envelope-from, helo, receiver, identity and problem (permerror,
 * temperror). Values from the client are quoted when they are not a
 * dot-atom and never carry CR, LF or other controls.
 */
#include <ctype.h>
#include <string.h>

#include "spf/spf.h"
#include "util/buf.h"

static int atext(unsigned char c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+/=?^_`{|}~-", c));
}

static int dot_atom(const char *s)
{
    if (!*s || *s == '.')
        return 0;
    for (const char *p = s; *p; p++)
        if (!(atext((unsigned char)*p) || (*p == '.' && p[1] && p[1] != '.')))
            return 0;
    return 1;
}

/* key=value; with the value quoted unless a dot-atom (9.1 key-value-pair) */
static void pair(struct buf *out, const char *key, const char *v)
{
    buf_printf(out, " %s=", key);
    if (dot_atom(v)) {
        buf_append_str(out, v);
    } else {
        buf_append_char(out, '"');
        for (const char *p = v; *p; p++) {
            unsigned char c = (unsigned char)*p;
            if (c < 0x20 || c > 0x7e)
                continue;
            if (c == '"' || c == '\\')
                buf_append_char(out, '\\');
            buf_append_char(out, (char)c);
        }
        buf_append_char(out, '"');
    }
    buf_append_char(out, ';');
}

/* the comment: no parentheses or controls from outside */
static void comment(struct buf *out, const char *s)
{
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c >= 0x20 && c <= 0x7e && c != '(' && c != ')' && c != '\\')
            buf_append_char(out, (char)c);
    }
}

/* The comment's words, as in RFC 7208 9.1's examples. */
static void comment_text(struct buf *b, const struct spf_outcome *o, const char *ip)
{
    switch (o->result) {
    case SPF_PASS:
        buf_printf(b, "domain of %s designates %s as permitted sender", o->sender, ip);
        break;
    case SPF_FAIL: case SPF_SOFTFAIL:
        buf_printf(b, "domain of %s does not designate %s as permitted sender", o->sender, ip);
        break;
    case SPF_NEUTRAL:
        buf_printf(b, "%s is neither permitted nor denied by domain of %s", ip, o->sender);
        break;
    case SPF_NONE:
        buf_printf(b, "domain of %s does not provide an SPF record", o->sender);
        break;
    default:
        buf_printf(b, "error in processing during lookup of %s: %s", o->sender, o->reason);
        break;
    }
}

void spf_received_spf(const struct spf_outcome *o, const struct spf_request *rq,
                      const char *host, struct buf *out)
{
    buf_t c;
    buf_printf(out, "Received-SPF: %s (", spf_result_name(o->result));
    comment(out, host);
    buf_append_str(out, ": ");
    buf_init(&c, 128);
    comment_text(&c, o, rq->ip ? rq->ip : "");
    comment(out, c.data);
    buf_free(&c);
    buf_append_char(out, ')');
    pair(out, "client-ip", rq->ip ? rq->ip : "");
    pair(out, "envelope-from", rq->sender && rq->sender[0] ? rq->sender : o->sender);
    pair(out, "helo", rq->helo ? rq->helo : "");
    pair(out, "receiver", host);
    pair(out, "identity", o->helo_identity ? "helo" : "mailfrom");
    if (o->result == SPF_PERMERROR || o->result == SPF_TEMPERROR)
        pair(out, "problem", o->reason);
    buf_truncate(out, out->len - 1);     /* no ';' after the last pair */
}
