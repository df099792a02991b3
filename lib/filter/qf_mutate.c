/*
 * qf_mutate.c - applying the rules' mutations to a queue file (see
 * qf_mutate.h for the decided behaviour). Used by cleanup (data stage) and
 * qmgr (postq). Must never rewrite a header field no mutation names, and
 * never log where the commit pool calls it (qfm_write and below).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mail/addr.h"
#include "mail/hdr.h"
#include "util/log.h"
#include "filter/qf_mutate.h"
#include "filter/filter_mut.h"

#define QFM_CHUNK   65536
#define QFM_HDR_MAX (1024 * 1024)  /* header section read for a rewrite; cleanup
                                    * refuses one over 256 KiB when queueing */

int qfm_is_header_kind(uint32_t k)
{
    return k == FILTER_M_ADD_HEADER || k == FILTER_M_SET_HEADER || k == FILTER_M_REMOVE_HEADER;
}

int qfm_has_header_muts(const struct filter_mut *muts, int n)
{
    for (int i = 0; i < n; i++)
        if (qfm_is_header_kind(muts[i].kind))
            return 1;
    return 0;
}

int qfm_qname_ok(const char *name)
{
    size_t n = strlen(name);
    if (n < 1 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int qfm_field_is(const char *f, size_t flen, const char *name)
{
    size_t n = strlen(name);
    if (flen <= n || strncasecmp(f, name, n) != 0)
        return 0;
    size_t i = n;
    while (i < flen && (f[i] == ' ' || f[i] == '\t'))
        i++;    /* RFC 5322 obs-optional: blanks before the colon */
    return i < flen && f[i] == ':';
}

size_t qfm_header_len(const char *c, size_t len)
{
    struct hdr_scan hs;
    hdr_scan_init(&hs);
    hdr_scan_feed(&hs, c, len);
    if (hs.end == HDR_END_NONE)
        hdr_scan_finish(&hs);
    return hs.end_off <= len ? (size_t)hs.end_off : len;
}

static const char *rule_or(const char *rule)
{
    return rule && *rule ? rule : "rules";
}

static const char *kind_name(uint32_t k)
{
    return k < FILTER_M__COUNT ? filter_mut_name((enum filter_mut_kind)k) : "unknown mutation";
}

/* " <addr>", without the brackets a rule may have written itself */
static void note_addr(buf_t *b, const char *a)
{
    size_t n = strlen(a);
    if (n >= 2 && a[0] == '<' && a[n - 1] == '>') {
        a++;
        n -= 2;
    }
    buf_printf(b, " <%.*s>", (int)n, a);
}

void qfm_note(struct qf_env *e, enum stage s, const struct filter_mut *m)
{
    buf_t b;
    buf_init(&b, 128);
    buf_printf(&b, "%srule \"%s\": %s", s == STAGE_POSTQ ? QFM_NOTE_POSTQ : "",
               rule_or(m->rule), kind_name(m->kind));
    if (m->rcpt[0])
        note_addr(&b, m->rcpt);
    if (m->kind == FILTER_M_REWRITE_MAIL_FROM)
        note_addr(&b, m->arg);
    else if (m->arg[0])
        buf_printf(&b, " %s", m->arg);
    if (m->kind == FILTER_M_ADD_HEADER || m->kind == FILTER_M_SET_HEADER)
        buf_printf(&b, ": %.*s", QFM_NOTE_VALUE_MAX, m->arg2);
    qf_env_add_note(e, b.data);
    buf_free(&b);
}

/* ---- envelope --------------------------------------------------------------- */

static int find_rcpt(const struct qf_env *e, const char *addr)
{
    for (int i = 0; i < e->nrcpts; i++)
        if (addr_same(e->rcpts[i].addr, addr))
            return i;
    return -1;
}

static int add_rcpt(struct qf_env *e, const struct filter_mut *m)
{
    char *a = addr_clean(m->rcpt);
    int rc = 0;
    if (a == NULL || *a == '\0' || (find_rcpt(e, a) < 0 && e->nrcpts >= QF_MAX_RCPTS)) {
        log_warn("rule \"%s\": %s: invalid address ignored", rule_or(m->rule), kind_name(m->kind));
    } else if (find_rcpt(e, a) < 0) {
        qf_env_add_rcpt(e, a, "", 0);
        log_info("%s <%s> (rule \"%s\")", m->kind == FILTER_M_BCC ? "bcc" : "added recipient", a,
                 rule_or(m->rule));
        rc = 1;
    }
    free(a);
    return rc;
}

/* data: the recipient goes; postq: a pending one is discarded (its record
 * stays, with its outcome). */
static int remove_rcpt(struct qf_env *e, enum stage s, const struct filter_mut *m,
                       qfm_discard_fn *discard, void *arg)
{
    char why[200];
    str_format(why, sizeof(why), "removed by rule \"%s\"", rule_or(m->rule));
    int hit = 0;
    for (int i = 0; i < e->nrcpts; i++) {
        struct qf_rcpt *r = &e->rcpts[i];
        if (!addr_same(m->rcpt, r->addr))
            continue;
        if (s != STAGE_POSTQ) {
            free(r->addr);
            free(r->orig);
            memmove(r, r + 1, sizeof(*r) * (size_t)(e->nrcpts - i - 1));
            e->nrcpts--;
            i--;
        } else {
            if (r->status != DS_PENDING && r->status != DS_DEFERRED)
                continue;
            r->status = DS_DISCARDED;
            str_copy(r->dsn, sizeof(r->dsn), "2.0.0");
            str_copy(r->reason, sizeof(r->reason), why);
            if (discard)
                discard(arg, i, why);
        }
        hit = 1;
    }
    return hit;
}

static int rewrite_sender(struct qf_env *e, const struct filter_mut *m)
{
    char *a = addr_clean(m->arg);   /* never store the brackets */
    if (a == NULL) {
        log_warn("rule \"%s\": rewrite_mail_from: invalid address ignored", rule_or(m->rule));
        return 0;
    }
    log_info("sender rewritten to <%s> (rule \"%s\")", a, rule_or(m->rule));
    free(e->sender);
    e->sender = a;
    return 1;
}

const char *qfm_quarantine_name(const char *name, const char *rule)
{
    if (qfm_qname_ok(name))
        return name;
    log_warn("rule \"%s\": invalid quarantine name (letters, digits, _ and -, at most 64): "
             "using \"" QFM_QUARANTINE_DEFAULT "\"", rule_or(rule));
    return QFM_QUARANTINE_DEFAULT;
}

static void set_quarantine(struct qf_env *e, struct qfm_result *r, const char *name,
                           const char *rule)
{
    r->quarantine = qfm_quarantine_name(name, rule);
    r->qrule = rule;
    free(e->quarantine);
    e->quarantine = xstrdup(r->quarantine);
}

/* One mutation; 1 when it changed the envelope or is a header change. */
static int apply_one(struct qf_env *e, enum stage s, const struct filter_mut *m,
                     qfm_discard_fn *discard, void *arg, struct qfm_result *r)
{
    switch (m->kind) {
    case FILTER_M_ADD_RCPT: case FILTER_M_BCC:
        return add_rcpt(e, m);
    case FILTER_M_REMOVE_RCPT:
        return remove_rcpt(e, s, m, discard, arg);
    case FILTER_M_REWRITE_MAIL_FROM:
        return rewrite_sender(e, m);
    case FILTER_M_ADD_HEADER: case FILTER_M_SET_HEADER: case FILTER_M_REMOVE_HEADER:
        if (hdr_name_ok(m->arg, strlen(m->arg)))
            return 1;
        log_warn("rule \"%s\": invalid header name ignored", rule_or(m->rule));
        return 0;
    case FILTER_M_QUARANTINE:
        set_quarantine(e, r, m->arg, m->rule);
        return 1;
    default:
        log_warn("rule \"%s\": %s is not applied at %s", rule_or(m->rule), kind_name(m->kind),
                 stage_name(s));
        return 0;
    }
}

void qfm_apply_env(struct qf_env *e, enum stage s, enum verdict v, const char *vrule,
                   const struct filter_mut *muts, int n, qfm_discard_fn *discard, void *arg,
                   struct qfm_result *r)
{
    memset(r, 0, sizeof(*r));
    for (int i = 0; i < n; i++) {
        if (!apply_one(e, s, &muts[i], discard, arg, r))
            continue;
        struct filter_mut m = muts[i];
        if (m.kind == FILTER_M_QUARANTINE)
            m.arg = (char *)r->quarantine;  /* the name used, not the one asked */
        qfm_note(e, s, &m);
        r->changed = 1;
    }
    if (v == V_QUARANTINE && r->quarantine == NULL) {
        set_quarantine(e, r, QFM_QUARANTINE_DEFAULT, vrule);
        r->changed = 1;
    }
}

/* ---- header section --------------------------------------------------------------- */

/* One field of the output: in the input (hdr) or in the added fields. */
struct qfm_field {
    size_t off, len;
    int added, drop;
};

struct qfm_fields {
    struct qfm_field *v;
    size_t n, cap;
};

static void fields_insert(struct qfm_fields *l, size_t at, struct qfm_field f)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = xrealloc(l->v, sizeof(*l->v) * l->cap);
    }
    memmove(&l->v[at + 1], &l->v[at], sizeof(*l->v) * (l->n - at));
    l->v[at] = f;
    l->n++;
}

/* Split hdr into fields: a first line and its continuation lines. */
static void fields_split(struct qfm_fields *l, const char *hdr, size_t len)
{
    size_t pos = 0;
    while (pos < len) {
        size_t end = pos;
        do {
            const char *nl = memchr(hdr + end, '\n', len - end);
            end = nl ? (size_t)(nl - hdr) + 1 : len;
        } while (end < len && (hdr[end] == ' ' || hdr[end] == '\t'));
        fields_insert(l, l->n, (struct qfm_field){ pos, end - pos, 0, 0 });
        pos = end;
    }
}

static const char *field_text(const struct qfm_field *f, const char *hdr, const buf_t *add)
{
    return (f->added ? add->data : hdr) + f->off;
}

void qfm_apply_headers(buf_t *out, const char *hdr, size_t len,
                       const struct filter_mut *muts, int n)
{
    struct qfm_fields l = { 0 };
    buf_t add;
    buf_init(&add, 256);
    fields_split(&l, hdr, len);
    /* the topmost Received (cleanup's own) stays, and fields go after it */
    size_t top = l.n > 0 && qfm_field_is(hdr, l.v[0].len, "Received") ? 1 : 0;
    size_t ins = top;
    for (int k = 0; k < n; k++) {
        const struct filter_mut *m = &muts[k];
        if (!qfm_is_header_kind(m->kind) || !hdr_name_ok(m->arg, strlen(m->arg)))
            continue;
        for (size_t i = top; m->kind != FILTER_M_ADD_HEADER && i < l.n; i++)
            if (!l.v[i].drop && qfm_field_is(field_text(&l.v[i], hdr, &add), l.v[i].len, m->arg))
                l.v[i].drop = 1;
        if (m->kind == FILTER_M_REMOVE_HEADER)
            continue;
        size_t at = add.len;
        filter_hdr_fold(&add, m->arg, m->arg2);
        fields_insert(&l, ins++, (struct qfm_field){ at, add.len - at, 1, 0 });
    }
    const struct qfm_field *prev = NULL;
    for (size_t i = 0; i < l.n; i++) {
        if (l.v[i].drop)
            continue;
        if (prev && field_text(prev, hdr, &add)[prev->len - 1] != '\n')
            buf_append_char(out, '\n');     /* an unterminated field is followed */
        buf_append(out, field_text(&l.v[i], hdr, &add), l.v[i].len);
        prev = &l.v[i];
    }
    free(l.v);
    buf_free(&add);
}

void qfm_apply_content(buf_t *out, const char *c, size_t len,
                       const struct filter_mut *muts, int n)
{
    size_t hlen = qfm_header_len(c, len);
    qfm_apply_headers(out, c, hlen, muts, n);
    buf_append(out, c + hlen, len - hlen);
}

/* ---- the whole file ------------------------------------------------------------ */

/* Read the header section from in_fd into h (it may hold a little more):
 * returns the number of header bytes, or -1 (errno). */
static ssize_t read_header(buf_t *h, int in_fd, off_t off, uint64_t len)
{
    struct hdr_scan hs;
    hdr_scan_init(&hs);
    while (h->len < len && hs.end == HDR_END_NONE) {
        if (h->len >= QFM_HDR_MAX) {
            errno = EFBIG;      /* not a file cleanup wrote: refuse, never grow */
            return -1;
        }
        size_t want = len - h->len < QFM_CHUNK ? (size_t)(len - h->len) : QFM_CHUNK;
        buf_reserve(h, want);
        if (qf_pread_all(in_fd, h->data + h->len, want, off + (off_t)h->len) < 0)
            return -1;
        hdr_scan_feed(&hs, h->data + h->len, want);
        h->len += want;
    }
    if (hs.end == HDR_END_NONE)
        hdr_scan_finish(&hs);
    return hs.end_off <= h->len ? (ssize_t)hs.end_off : (ssize_t)h->len;
}

/* Copy content bytes [from, len) of in_fd to w. */
static int copy_rest(struct qf_writer *w, int in_fd, off_t off, uint64_t from, uint64_t len)
{
    char *chunk = xmalloc(QFM_CHUNK);
    int rc = 0;
    while (rc == 0 && from < len) {
        size_t want = len - from < QFM_CHUNK ? (size_t)(len - from) : QFM_CHUNK;
        rc = qf_pread_all(in_fd, chunk, want, off + (off_t)from);
        if (rc == 0)
            rc = qf_write_content(w, chunk, want);
        from += want;
    }
    free(chunk);
    return rc;
}

int qfm_write(int out_fd, const struct qf_env *env, int in_fd, off_t off, uint64_t len,
              const struct filter_mut *muts, int n)
{
    struct qf_writer *w = qf_write_begin(out_fd, env);
    if (w == NULL)
        return -1;
    buf_t h, m;
    buf_init(&h, 4096);
    buf_init(&m, 4096);
    ssize_t hlen = read_header(&h, in_fd, off, len);
    int rc = hlen < 0 ? -1 : 0;
    if (rc == 0) {
        qfm_apply_headers(&m, h.data, (size_t)hlen, muts, n);
        rc = qf_write_content(w, m.data, m.len);
    }
    if (rc == 0)
        rc = qf_write_content(w, h.data + hlen, h.len - (size_t)hlen);
    if (rc == 0)
        rc = copy_rest(w, in_fd, off, h.len, len);
    int e = errno;
    buf_free(&h);
    buf_free(&m);
    if (rc < 0) {
        qf_write_abort(w);
        errno = e ? e : EIO;
        return -1;
    }
    return qf_write_end(w);
}
