/*
 * mime8.c - the 8-bit to 7-bit MIME downgrade (see mime8.h).
 *
 * One walker serves both passes. Content is cut into line pieces of at
 * most MIME8_PIECE octets (a longer line arrives as several pieces: only
 * the first has bol set, only the last eol), so memory stays bounded
 * whatever the line lengths. Boundary lines are short, so only a line that
 * fits in one piece can be one. Header fields are never held: a field is
 * classified by its name on its first piece and passed on (or, for an
 * old Content-Transfer-Encoding field being replaced, dropped) piece by
 * piece; only Content-Type and Content-Transfer-Encoding values are kept,
 * truncated, to find the kind, the boundary and the encoding.
 *
 * Pass 2 repeats the walk of pass 1 over the same bytes, so parts get the
 * same numbers and the per-part facts of pass 1 decide what each becomes.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mail/hdr.h"
#include "mail/mime8.h"

#define MIME8_PIECE 4096
#define CT_MAX      2048          /* Content-Type value kept */
#define CTE_MAX     64            /* Content-Transfer-Encoding value kept */
#define BND_MAX     100           /* RFC 2046 allows 70; a little slack */
#define QP_WIDTH    75            /* encoded octets per line before the soft '=' */

enum { S_HEADER, S_BODY, S_MULTI };   /* S_MULTI: a preamble or an epilogue */
enum { F_OTHER, F_CTE, F_CT, F_MIMEVER };
enum { K_LEAF, K_MULTI, K_MESSAGE };
enum { CTE_NONE, CTE_7BIT, CTE_8BIT, CTE_BINARY, CTE_QP, CTE_B64, CTE_OTHER };
/* what pass 1 learnt of a part */
enum { PF_BODY8 = 1, PF_LABEL8 = 2, PF_CONTAINER = 4, PF_BADCTE = 8, PF_TOODEEP = 16 };
enum { A_NONE, A_QP, A_7BIT };

struct level {                    /* one multipart being walked */
    char bnd[BND_MAX + 1];
    size_t len;
    int msgnest;                  /* message/rfc822 levels open when it began */
    int digest;                   /* multipart/digest: parts default to message/rfc822 */
};

struct mime8 {
    int convert;                  /* pass 2 */
    buf_t *out;                   /* pass 2 output */
    int st;
    int part, nparts, action;     /* part -1: not tracked (or no part) */
    unsigned char pf[MIME8_MAX_PARTS];
    struct level lv[MIME8_MAX_DEPTH];
    int nlv, msgnest;
    int digest_child;             /* the current part's default type is message/rfc822 */
    /* the current part's header */
    int field, has_mimever;
    int msg_header;               /* a message's own header (top, message/rfc822) */
    char ct[CT_MAX + 1], cte[CTE_MAX + 1];
    size_t ctlen, ctelen;
    /* line assembly */
    char line[MIME8_PIECE];
    size_t len;
    int bol;
    /* quoted-printable output */
    int qp, col, soft, pend;
    char why[160];
};

static void piece(struct mime8 *m, const char *p, size_t n, int bol, int eol);

static void fail(struct mime8 *m, const char *why)
{
    if (m->why[0] == '\0')
        str_copy(m->why, sizeof(m->why), why);
}

static int has8(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] & 0x80)
            return 1;
    return 0;
}

static void emit(struct mime8 *m, const char *p, size_t n, int eol)
{
    if (!m->convert)
        return;
    buf_append(m->out, p, n);
    if (eol)
        buf_append_char(m->out, '\n');
}

static int decide(unsigned pf)
{
    if (pf & PF_CONTAINER)
        return (pf & PF_LABEL8) ? A_7BIT : A_NONE;
    if (pf & (PF_BADCTE | PF_TOODEEP))
        return A_NONE;
    return (pf & (PF_LABEL8 | PF_BODY8)) ? A_QP : A_NONE;
}

/* A new part begins with its header. */
static void part_begin(struct mime8 *m, int digest_child, int msg_header)
{
    m->msg_header = msg_header;
    m->part = m->nparts < MIME8_MAX_PARTS ? m->nparts++ : -1;
    m->action = m->part >= 0 ? decide(m->pf[m->part]) : A_NONE;
    m->st = S_HEADER;
    m->field = F_OTHER;
    m->has_mimever = 0;
    m->ctlen = m->ctelen = 0;
    m->ct[0] = m->cte[0] = '\0';
    m->digest_child = digest_child;
    m->qp = 0;
}

/* ---- quoted-printable (RFC 2045 6.7) ---------------------------------- */

static void qp_put(struct mime8 *m, unsigned char c, int enc)
{
    static const char hex[] = "0123456789ABCDEF";
    if (m->col + (enc ? 3 : 1) > QP_WIDTH) {
        buf_append(m->out, "=\n", 2);
        m->col = 0;
        m->soft = 1;
    }
    /* a soft-broken line must not start like a boundary line */
    if (!enc && c == '-' && m->col == 0 && m->soft)
        enc = 1;
    if (enc) {
        char e[3] = { '=', hex[c >> 4], hex[c & 15] };
        buf_append(m->out, e, 3);
        m->col += 3;
    } else {
        buf_append_char(m->out, (char)c);
        m->col++;
    }
}

/* A blank at the end of a line must be encoded; elsewhere it is literal. */
static void qp_flush(struct mime8 *m)
{
    if (m->pend)
        qp_put(m, (unsigned char)m->pend, 1);
    m->pend = 0;
}

static void qp_piece(struct mime8 *m, const char *p, size_t n, int eol)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (m->pend) {
            qp_put(m, (unsigned char)m->pend, 0);
            m->pend = 0;
        }
        if (c == ' ' || c == '\t')
            m->pend = c;
        else
            qp_put(m, c, c < 33 || c > 126 || c == '=');
    }
    if (eol) {
        qp_flush(m);
        buf_append_char(m->out, '\n');
        m->col = 0;
        m->soft = 0;
    }
}

/* ---- header fields ------------------------------------------------------ */

/* Length of the field name if p starts a field ("name:" or "name :"), else 0. */
static size_t field_name(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && p[i] > 32 && p[i] < 127 && p[i] != ':')
        i++;
    size_t end = i;
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
        i++;
    return end > 0 && i < n && p[i] == ':' ? end : 0;
}

static void keep(char *dst, size_t *len, size_t cap, const char *p, size_t n)
{
    for (size_t i = 0; i < n && *len < cap; i++)
        dst[(*len)++] = (p[i] == '\n' || p[i] == '\r' || p[i] == '\t') ? ' ' : p[i];
    dst[*len] = '\0';
}

/* The first token of s (blanks skipped), lower-cased into out. */
static void token(const char *s, char *out, size_t cap)
{
    size_t k = 0;
    while (*s == ' ')
        s++;
    for (; *s && *s != ';' && *s != ' ' && *s != '(' && k + 1 < cap; s++)
        out[k++] = (char)((*s >= 'A' && *s <= 'Z') ? *s + 32 : *s);
    out[k] = '\0';
}

static int cte_kind(const char *v)
{
    static const struct { const char *w; int k; } t[] = {
        { "7bit", CTE_7BIT }, { "8bit", CTE_8BIT }, { "binary", CTE_BINARY },
        { "quoted-printable", CTE_QP }, { "base64", CTE_B64 } };
    char w[CTE_MAX + 1];
    token(v, w, sizeof(w));
    if (w[0] == '\0')
        return CTE_NONE;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (strcmp(w, t[i].w) == 0)
            return t[i].k;
    return CTE_OTHER;
}

/* The boundary parameter of a Content-Type value into lv; 0 or -1. */
static int ct_boundary(const char *v, struct level *lv)
{
    for (const char *p = strchr(v, ';'); p; p = strchr(p + 1, ';')) {
        const char *q = p + 1;
        while (*q == ' ')
            q++;
        if (strncasecmp(q, "boundary", 8) != 0)
            continue;
        q += 8;
        while (*q == ' ')
            q++;
        if (*q++ != '=')
            continue;
        while (*q == ' ')
            q++;
        int quoted = *q == '"';
        q += quoted;
        size_t k = 0;
        for (; *q && k < BND_MAX; q++) {
            if (quoted ? *q == '"' : (*q == ';' || *q == ' '))
                break;
            lv->bnd[k++] = *q;
        }
        lv->bnd[k] = '\0';
        lv->len = k;
        return k > 0 ? 0 : -1;
    }
    return -1;
}

/* The header of the current part ended: decide what follows. */
static void header_end(struct mime8 *m)
{
    char type[64];
    token(m->ct, type, sizeof(type));
    int kind = K_LEAF, cte = cte_kind(m->cte);
    struct level lv;
    if (strncmp(type, "multipart/", 10) == 0 && ct_boundary(m->ct, &lv) == 0)
        kind = K_MULTI;
    else if (strcmp(type, "message/rfc822") == 0 || (type[0] == '\0' && m->digest_child))
        kind = K_MESSAGE;
    unsigned pf = 0;
    if (kind != K_LEAF && m->nlv + m->msgnest + 1 > MIME8_MAX_DEPTH) {
        kind = K_LEAF;
        pf |= PF_TOODEEP;
    }
    pf |= (cte == CTE_8BIT || cte == CTE_BINARY ? PF_LABEL8 : 0) |
          (kind != K_LEAF ? PF_CONTAINER : 0) |
          (cte == CTE_QP || cte == CTE_B64 || cte == CTE_OTHER ? PF_BADCTE : 0);
    if (!m->convert && m->part >= 0)
        m->pf[m->part] |= (unsigned char)pf;
    if (m->convert && m->action != A_NONE) {
        if (m->msg_header && m->action == A_QP && !m->has_mimever)
            buf_append_str(m->out, "MIME-Version: 1.0\n");
        buf_printf(m->out, "Content-Transfer-Encoding: %s\n",
                   m->action == A_QP ? "quoted-printable" : "7bit");
    }
    m->qp = m->convert && m->action == A_QP;
    if (kind == K_MULTI) {
        lv.msgnest = m->msgnest;
        lv.digest = strcmp(type, "multipart/digest") == 0;
        m->lv[m->nlv++] = lv;
        m->st = S_MULTI;
        m->part = -1;
    } else if (kind == K_MESSAGE) {
        m->msgnest++;
        part_begin(m, 0, 1);     /* the enclosed message's own header follows */
    } else {
        m->st = S_BODY;
    }
}

static void header_piece(struct mime8 *m, const char *p, size_t n, int bol, int eol)
{
    size_t vo = 0;                /* where the value starts in this piece */
    if (bol) {
        if (n == 0 && eol) {      /* the empty line */
            header_end(m);
            emit(m, "", 0, 1);
            return;
        }
        if (p[0] != ' ' && p[0] != '\t') {
            size_t nl = field_name(p, n);
            if (nl == 0) {        /* not a field: the header ended without the empty line */
                header_end(m);
                piece(m, p, n, bol, eol);
                return;
            }
            m->field = hdr_name_eq(p, nl, "Content-Transfer-Encoding") ? F_CTE
                     : hdr_name_eq(p, nl, "Content-Type") ? F_CT
                     : hdr_name_eq(p, nl, "MIME-Version") ? F_MIMEVER : F_OTHER;
            vo = (size_t)((const char *)memchr(p, ':', n) - p) + 1;
        }
    }
    if (!m->convert && has8(p, n))
        fail(m, "8-bit byte in a header (needs SMTPUTF8)");
    if (m->field == F_CT)
        keep(m->ct, &m->ctlen, CT_MAX, p + vo, n - vo);
    else if (m->field == F_CTE)
        keep(m->cte, &m->ctelen, CTE_MAX, p + vo, n - vo);
    else if (m->field == F_MIMEVER)
        m->has_mimever = 1;
    if (!(m->field == F_CTE && m->action != A_NONE))   /* the old CTE is replaced */
        emit(m, p, n, eol);
}

static void body_piece(struct mime8 *m, const char *p, size_t n, int eol)
{
    if (!m->convert) {
        if (has8(p, n)) {
            if (m->part >= 0)
                m->pf[m->part] |= PF_BODY8;
            else
                fail(m, "8-bit data past the MIME part limit");
        }
        return;
    }
    if (m->qp)
        qp_piece(m, p, n, eol);
    else
        emit(m, p, n, eol);
}

/* The part being walked ends (at a boundary or the end). */
static void part_end(struct mime8 *m)
{
    if (m->st == S_HEADER)
        header_end(m);
    if (m->qp)
        qp_flush(m);
    m->qp = 0;
}

/* Is the whole line p[0..n) a boundary of an open multipart? Then act on
 * it and return 1. Inner levels end with an outer boundary too. */
static int boundary(struct mime8 *m, const char *p, size_t n)
{
    for (int k = m->nlv - 1; k >= 0; k--) {
        const struct level *lv = &m->lv[k];
        if (n < 2 + lv->len || memcmp(p + 2, lv->bnd, lv->len) != 0)
            continue;
        size_t i = 2 + lv->len;
        int close = n - i >= 2 && p[i] == '-' && p[i + 1] == '-';
        for (i += close ? 2 : 0; i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r'); i++)
            ;
        if (i != n)
            continue;
        /* the part header may push a level: act on k, found before */
        while (m->st == S_HEADER)
            part_end(m);
        part_end(m);
        emit(m, p, n, 1);
        m->msgnest = m->lv[k].msgnest;
        if (close) {
            m->nlv = k;
            m->st = S_MULTI;      /* the epilogue */
            m->part = -1;
        } else {
            m->nlv = k + 1;
            part_begin(m, m->lv[k].digest, 0);
        }
        return 1;
    }
    return 0;
}

static void piece(struct mime8 *m, const char *p, size_t n, int bol, int eol)
{
    if (bol && eol && m->nlv > 0 && n >= 2 && p[0] == '-' && p[1] == '-' && boundary(m, p, n))
        return;
    switch (m->st) {
    case S_HEADER:
        header_piece(m, p, n, bol, eol);
        break;
    case S_BODY:
        body_piece(m, p, n, eol);
        break;
    default:
        if (!m->convert && has8(p, n))
            fail(m, "8-bit byte in a MIME preamble or epilogue");
        emit(m, p, n, eol);
        break;
    }
}

/* Cut p[0..n) into line pieces. */
static void feed(struct mime8 *m, const char *p, size_t n)
{
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;
        size_t room = MIME8_PIECE - m->len;
        if (take >= room) {       /* a long line: pass on what is held */
            memcpy(m->line + m->len, p, room);
            piece(m, m->line, MIME8_PIECE, m->bol, 0);
            m->len = 0;
            m->bol = 0;
            p += room;
            n -= room;
            continue;
        }
        memcpy(m->line + m->len, p, take);
        m->len += take;
        if (!nl)
            return;
        piece(m, m->line, m->len, m->bol, 1);
        m->len = 0;
        m->bol = 1;
        p += take + 1;
        n -= take + 1;
    }
}

/* The end of the content: a last line without LF, then the open part. */
static void finish(struct mime8 *m)
{
    if (m->len > 0 || !m->bol)
        piece(m, m->line, m->len, m->bol, 0);
    m->len = 0;
    m->bol = 1;
    while (m->st == S_HEADER)     /* a header that never ended (nested ones too) */
        part_end(m);
    part_end(m);
}

static void walk_reset(struct mime8 *m)
{
    m->nlv = m->msgnest = 0;
    m->nparts = 0;
    m->len = 0;
    m->bol = 1;
    m->col = m->soft = m->pend = 0;
    part_begin(m, 0, 1);
}

struct mime8 *mime8_new(void)
{
    struct mime8 *m = xcalloc(1, sizeof(*m));
    walk_reset(m);
    return m;
}

void mime8_free(struct mime8 *m)
{
    free(m);
}

void mime8_scan(struct mime8 *m, const char *p, size_t n)
{
    if (!m->convert)
        feed(m, p, n);
}

int mime8_scan_end(struct mime8 *m, char *why, size_t whylen)
{
    finish(m);
    int need = 0;
    for (int i = 0; i < m->nparts; i++) {
        unsigned pf = m->pf[i];
        if ((pf & PF_BODY8) && (pf & PF_TOODEEP))
            fail(m, "8-bit data in MIME parts nested too deeply");
        else if ((pf & PF_BODY8) && (pf & PF_BADCTE))
            fail(m, "8-bit data in a part whose encoding is not 7bit, 8bit or binary");
        need |= decide(pf) != A_NONE;
    }
    if (m->why[0]) {
        str_copy(why, whylen, m->why);
        return -1;
    }
    m->convert = 1;
    walk_reset(m);
    return need;
}

void mime8_convert(struct mime8 *m, const char *p, size_t n, buf_t *out)
{
    if (!m->convert)
        return;
    m->out = out;
    feed(m, p, n);
}

void mime8_convert_end(struct mime8 *m, buf_t *out)
{
    if (!m->convert)
        return;
    m->out = out;
    finish(m);
}
