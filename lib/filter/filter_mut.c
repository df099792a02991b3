/*
 * filter_mut.c - owned copies of filter's mutations and verdicts (see
 * filter_mut.h). Used by smtpd, cleanup, qmgr and filter_clnt.c. Must never
 * trust a received kind, status or string length.
 */
#include <stdlib.h>
#include <string.h>

#include "filter/filter_mut.h"
#include "util/log.h"

void filter_mut_clear(struct filter_mut *m)
{
    free(m->rcpt);
    free(m->arg);
    free(m->arg2);
    free(m->rule);
    memset(m, 0, sizeof(*m));
}

const char *filter_mut_name(enum filter_mut_kind k)
{
    static const char *const names[FILTER_M__COUNT] = {
#define FILTER_MUT(id, name) name,
#include "filter/filter_muts.def"
#undef FILTER_MUT
    };
    return (unsigned)k < FILTER_M__COUNT ? names[k] : "unknown";
}

size_t filter_mut_bytes(const char *rcpt, const char *arg, const char *arg2)
{
    return (rcpt ? strlen(rcpt) : 0) + (arg ? strlen(arg) : 0) + (arg2 ? strlen(arg2) : 0);
}

int filter_muts_add(struct filter_muts *l, int max, uint32_t kind, const char *rcpt,
                    const char *arg, const char *arg2, const char *rule)
{
    if (l->n >= max)
        return -1;
    size_t nb = filter_mut_bytes(rcpt, arg, arg2);
    if ((kind == FILTER_M_ADD_HEADER || kind == FILTER_M_SET_HEADER) &&
        l->bytes + nb > FILTER_MUTS_MAX_BYTES)
        return -1;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 4;
        l->v = xrealloc(l->v, sizeof(*l->v) * (size_t)l->cap);
    }
    struct filter_mut *m = &l->v[l->n++];
    m->kind = kind;
    m->rcpt = xstrdup(rcpt ? rcpt : "");
    m->arg = xstrdup(arg ? arg : "");
    m->arg2 = xstrdup(arg2 ? arg2 : "");
    m->rule = xstrdup(rule ? rule : "");
    l->bytes += nb;
    return 0;
}

static int blank(char c)
{
    return c == ' ' || c == '\t';
}

size_t filter_hdr_value_cap(size_t namelen, const char *value, size_t vlen)
{
    size_t max = namelen + 2 < FILTER_HDR_FIELD_MAX ? FILTER_HDR_FIELD_MAX - namelen - 2 : 0;
    size_t n = vlen;
    if (n > max) {
        /* cut at the last blank that keeps at least half, else hard */
        size_t cut = max;
        while (cut > max / 2 && !blank(value[cut]))
            cut--;
        if (cut <= max / 2) {
            cut = max;
            while (cut > 0 && ((unsigned char)value[cut] & 0xC0) == 0x80)
                cut--;          /* not inside a UTF-8 sequence */
        }
        n = cut;
    }
    while (n > 0 && blank(value[n - 1]))
        n--;
    return n;
}

void filter_hdr_fold(buf_t *out, const char *name, const char *value)
{
    size_t nlen = strlen(name);
    if (nlen > FILTER_HDR_FIELD_MAX - 2)
        nlen = FILTER_HDR_FIELD_MAX - 2;
    /* the value without leading/trailing blanks, controls as spaces */
    buf_t v;
    buf_init(&v, 128);
    const char *s = value;
    while (blank(*s))
        s++;
    size_t slen = strnlen(s, 2 * FILTER_HDR_FIELD_MAX);
    for (size_t i = 0; i < slen; i++) {
        unsigned char c = (unsigned char)s[i];
        buf_append_char(&v, c < 32 || c == 127 ? ' ' : (char)c);
    }
    size_t n = filter_hdr_value_cap(nlen, v.data, v.len);
    buf_append(out, name, nlen);
    buf_append_str(out, ": ");
    size_t line = nlen + 2;         /* octets on the current line */
    size_t i = 0;
    int first = 1;
    while (i < n) {
        /* one segment: blanks, then the word after them */
        size_t j = i;
        while (j < n && blank(v.data[j]))
            j++;
        while (j < n && !blank(v.data[j]))
            j++;
        size_t seg = j - i;
        if (!first && line + seg > FILTER_HDR_FOLD) {
            buf_append_char(out, '\n');     /* before the blank: folding */
            line = 0;
        }
        buf_append(out, v.data + i, seg);
        line += seg;
        first = 0;
        i = j;
    }
    buf_append_char(out, '\n');
    buf_free(&v);
}

void filter_muts_free(struct filter_muts *l)
{
    for (int i = 0; i < l->n; i++)
        filter_mut_clear(&l->v[i]);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

void filter_text_copy(char *dst, size_t size, const char *src)
{
    size_t i = 0;
    for (; src[i] && i + 1 < size; i++) {
        unsigned char ch = (unsigned char)src[i];
        dst[i] = (ch < 32 || ch == 127) ? '?' : (char)ch;
    }
    dst[i] = '\0';
}

char *filter_text_dup(const char *src)
{
    size_t n = strnlen(src, 4096);
    char *d = xmalloc(n + 1);
    filter_text_copy(d, n + 1, src);
    return d;
}

void filter_verdict_start(struct filter_verdict *v, const struct ipc_filter_reply *r)
{
    memset(v, 0, sizeof(*v));
    v->status = r->status < V__COUNT ? (enum verdict)r->status : V_TEMPFAIL;
    v->code = r->code >= 200 && r->code <= 599 ? (int)r->code : 0;
    filter_text_copy(v->enhanced, sizeof(v->enhanced), r->enhanced);
    filter_text_copy(v->text, sizeof(v->text), r->text);
    filter_text_copy(v->rule, sizeof(v->rule), r->rule);
    if (r->nmut)
        v->muts = xcalloc(r->nmut, sizeof(*v->muts));
}

int filter_verdict_add(struct filter_verdict *v, const struct ipc_filter_mut *m)
{
    if (m->kind >= FILTER_M__COUNT)
        return -1;
    struct filter_mut *d = &v->muts[v->nmuts++];
    d->kind = m->kind;
    d->rcpt = filter_text_dup(m->rcpt);
    d->arg = filter_text_dup(m->arg);
    d->arg2 = filter_text_dup(m->arg2);
    d->rule = filter_text_dup(m->rule);
    return 0;
}

void filter_verdict_free(struct filter_verdict *v)
{
    for (int i = 0; i < v->nmuts; i++)
        filter_mut_clear(&v->muts[i]);
    free(v->muts);
    v->muts = NULL;
    v->nmuts = 0;
}

enum filter_rx_result filter_rx_feed(struct filter_rx *rx, enum ipc_type t,
                                     const union ipc_msg *m)
{
    if (rx->active) {           /* inside a reply: only its mutations may come */
        if (t != IPC_FILTER_MUT || filter_verdict_add(&rx->v, &m->filter_mut) < 0)
            return FILTER_RX_BAD;
        return (uint32_t)rx->v.nmuts == rx->want ? FILTER_RX_DONE : FILTER_RX_MORE;
    }
    if (t == IPC_FILTER_STAGES)
        return FILTER_RX_STAGES;
    if (t != IPC_FILTER_REPLY || m->filter_reply.nmut > FILTER_MAX_REPLY_MUTS)
        return FILTER_RX_BAD;
    filter_verdict_start(&rx->v, &m->filter_reply);
    rx->id = m->filter_reply.id;
    rx->want = m->filter_reply.nmut;
    rx->active = 1;
    return rx->want == 0 ? FILTER_RX_DONE : FILTER_RX_MORE;
}

void filter_rx_take(struct filter_rx *rx, struct filter_verdict *v_r)
{
    *v_r = rx->v;
    memset(&rx->v, 0, sizeof(rx->v));
    rx->active = 0;
}

void filter_rx_reset(struct filter_rx *rx)
{
    filter_verdict_free(&rx->v);
    memset(rx, 0, sizeof(*rx));
}
