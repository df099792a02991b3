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

void spf_received_spf(const struct spf_outcome *o, const struct spf_request *rq,
                      const char *host, struct buf *out)
{
    buf_printf(out, "Received-SPF: %s (", spf_result_name(o->result));
    comment(out, host);
    buf_append_str(out, ": ");
    comment(out, o->result == SPF_FAIL ? o->explanation : o->reason);
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
