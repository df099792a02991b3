/*
 * cleanup_rules.c - applying what the rules decided.
 *
 * Two sources: CLEANUP_MUT from smtpd (decided at connect/helo/auth/mail/
 * rcpt; they arrive before the content, so header mutations are applied
 * while the buffered header section is emitted and quarantine is known
 * before the envelope is written), and the data verdict's FILTER_MUTs
 * (header and envelope mutations, quarantine: the queue file is then
 * rewritten by the commit pool - a new file with the changed envelope and
 * the content copied with the header mutations applied replaces the old one
 * before fsync and rename). Header mutations: add_header and set_header
 * insert their field right after our Received; set_header and
 * remove_header drop every field of that name. Every other field is copied
 * byte for byte (never rewritten). Every applied mutation and the deciding
 * rule are recorded as NOTE records in the queue file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "addr.h"
#include "cleanup.h"
#include "log.h"
#include "rules.h"

int clr_qname_ok(const char *name)
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

static int is_header_mut(uint32_t k)
{
    return k == RL_M_ADD_HEADER || k == RL_M_SET_HEADER || k == RL_M_REMOVE_HEADER;
}

int clr_has_header_muts(const struct filter_muts *l)
{
    for (int i = 0; i < l->n; i++)
        if (is_header_mut(l->v[i].kind))
            return 1;
    return 0;
}

static void note(struct cl_txn *t, const struct filter_mut *m)
{
    buf_t b;
    buf_init(&b, 128);
    buf_printf(&b, "rule \"%s\": %s", m->rule, rl_mut_name((enum rl_mut_kind)m->kind));
    if (m->rcpt[0])
        buf_printf(&b, " <%s>", m->rcpt);
    if (m->arg[0])
        buf_printf(&b, " %s", m->arg);
    if (m->kind == RL_M_ADD_HEADER || m->kind == RL_M_SET_HEADER)
        buf_printf(&b, ": %s", m->arg2);
    qf_env_add_note(&t->env, b.data);
    buf_free(&b);
}

static void set_quarantine(struct cl_txn *t, const char *name, const char *rule)
{
    if (!clr_qname_ok(name)) {
        log_warn("rule \"%s\": invalid quarantine name: using \"quarantine\"", rule);
        name = "quarantine";
    }
    str_copy(t->qname, sizeof(t->qname), name);
    str_copy(t->qrule, sizeof(t->qrule), rule);
    free(t->env.quarantine);
    t->env.quarantine = xstrdup(t->qname);
}

int clr_smtpd_mut(struct cl_txn *t, const struct ipc_cleanup_mut *m)
{
    if (m->kind >= RL_M__COUNT)
        return -1;
    if (!is_header_mut(m->kind) && m->kind != RL_M_QUARANTINE)
        return 0;                       /* smtpd applied the rest itself */
    if (is_header_mut(m->kind) && !hdr_name_ok(m->arg, strlen(m->arg))) {
        log_warn("rule \"%s\": invalid header name ignored", m->rule);
        return 0;
    }
    if (filter_muts_add(&t->muts, CL_MAX_MUTS, m->kind, m->rcpt, m->arg, m->arg2, m->rule) < 0) {
        log_warn("rule \"%s\": %s over the mutation cap (%d, %d octets) ignored", m->rule,
                 rl_mut_name((enum rl_mut_kind)m->kind), CL_MAX_MUTS, FILTER_MUTS_MAX_BYTES);
        return 0;
    }
    const struct filter_mut *cm = &t->muts.v[t->muts.n - 1];
    if (cm->kind == RL_M_QUARANTINE)
        set_quarantine(t, cm->arg, cm->rule);
    note(t, cm);
    return 0;
}

/* "Name:" (optional WSP before the colon) at the start of field f? */
static int field_is(const char *f, size_t flen, const char *name)
{
    size_t n = strlen(name);
    if (flen <= n || strncasecmp(f, name, n) != 0)
        return 0;
    size_t i = n;
    while (i < flen && (f[i] == ' ' || f[i] == '\t'))
        i++;
    return i < flen && f[i] == ':';
}

/* The field a rule adds: capped and folded (lib/filter_mut.h). */
static void add_field(buf_t *out, const char *name, const char *value)
{
    filter_hdr_fold(out, name, value);
}

void clr_apply_headers(buf_t *out, const char *hdr, size_t len, const struct filter_muts *l)
{
    size_t pos = 0;
    int first = 1;
    while (pos < len) {
        /* one field: its first line and the continuation lines */
        size_t end = pos;
        do {
            const char *nl = memchr(hdr + end, '\n', len - end);
            end = nl ? (size_t)(nl - hdr) + 1 : len;
        } while (end < len && (hdr[end] == ' ' || hdr[end] == '\t'));
        const char *f = hdr + pos;
        size_t flen = end - pos;
        int drop = 0;
        for (int i = 0; !first && i < l->n && !drop; i++)
            if (l->v[i].kind == RL_M_REMOVE_HEADER || l->v[i].kind == RL_M_SET_HEADER)
                drop = field_is(f, flen, l->v[i].arg);
        if (!drop) {
            buf_append(out, f, flen);
            if (flen && f[flen - 1] != '\n')
                buf_append_char(out, '\n');
        }
        if (first) {
            /* right after our Received: the fields the rules add */
            for (int i = 0; i < l->n; i++)
                if (l->v[i].kind == RL_M_ADD_HEADER || l->v[i].kind == RL_M_SET_HEADER)
                    add_field(out, l->v[i].arg, l->v[i].arg2);
            first = 0;
        }
        pos = end;
    }
}

static int env_find_rcpt(const struct qf_env *e, const char *addr)
{
    for (int i = 0; i < e->nrcpts; i++)
        if (strcasecmp(e->rcpts[i].addr, addr) == 0)
            return i;
    return -1;
}

int clr_apply_data(struct cl_txn *t, enum verdict v, const char *rule)
{
    struct qf_env *e = &t->env;
    int changed = 0;
    for (int i = 0; i < t->dmuts.n; i++) {
        struct filter_mut *m = &t->dmuts.v[i];
        char *a = NULL;
        switch (m->kind) {
        case RL_M_ADD_RCPT: case RL_M_BCC:
            a = addr_clean(m->rcpt);
            if (a == NULL || *a == '\0' || e->nrcpts >= QF_MAX_RCPTS) {
                log_warn("rule \"%s\": bad address in %s ignored", m->rule,
                         rl_mut_name((enum rl_mut_kind)m->kind));
                break;
            }
            if (env_find_rcpt(e, a) < 0) {
                qf_env_add_rcpt(e, a, "", 0);
                note(t, m);
                changed = 1;
            }
            break;
        case RL_M_REMOVE_RCPT: {
            a = addr_clean(m->rcpt);
            int k = a ? env_find_rcpt(e, a) : -1;
            if (k < 0)
                break;
            free(e->rcpts[k].addr);
            free(e->rcpts[k].orig);
            memmove(&e->rcpts[k], &e->rcpts[k + 1], sizeof(*e->rcpts) * (size_t)(e->nrcpts - k - 1));
            e->nrcpts--;
            note(t, m);
            changed = 1;
            break;
        }
        case RL_M_REWRITE_MAIL_FROM:
            a = addr_clean(m->arg);
            if (a == NULL) {
                log_warn("rule \"%s\": bad address in rewrite_mail_from ignored", m->rule);
                break;
            }
            free(e->sender);
            e->sender = a;
            a = NULL;
            note(t, m);
            changed = 1;
            break;
        case RL_M_ADD_HEADER: case RL_M_SET_HEADER: case RL_M_REMOVE_HEADER:
            if (!hdr_name_ok(m->arg, strlen(m->arg))) {
                log_warn("rule \"%s\": invalid header name ignored", m->rule);
                m->kind = RL_M__COUNT;      /* not applied */
                break;
            }
            note(t, m);
            changed = 1;
            break;
        case RL_M_QUARANTINE:
            set_quarantine(t, m->arg, m->rule);
            note(t, m);
            changed = 1;
            break;
        default:                /* delivery choices: post-queue stages */
            break;
        }
        free(a);
    }
    if (v == V_QUARANTINE && t->qname[0] == '\0') {
        set_quarantine(t, "quarantine", rule);
        changed = 1;
    }
    if (changed) {
        char nb[160];
        snprintf(nb, sizeof(nb), "data: %s%s%s%s", verdict_name(v), rule[0] ? " by rule \"" : "",
                 rule, rule[0] ? "\"" : "");
        qf_env_add_note(e, nb);
        t->rewrite = 1;
    }
    return e->nrcpts > 0 ? 0 : -1;
}

/* ---- the rewrite (commit pool thread: no logging) -------------------------------------- */

static int fail(struct cl_txn *t, const char *where, int err)
{
    t->cerr = err ? err : EIO;
    t->cwhere = where;
    return -1;
}

int clr_rewrite(struct cl_txn *t)
{
    char npath[64];
    str_format(npath, sizeof(npath), "%s/%s.r", SPOOL_TMP, t->qid);
    int rfd = open(t->path, O_RDONLY | O_CLOEXEC);
    if (rfd < 0)
        return fail(t, "rewrite: open", errno);
    struct qf_env old;
    char err[128];
    if (qf_read(rfd, &old, err, sizeof(err)) < 0) {
        close(rfd);
        return fail(t, "rewrite: read", EIO);
    }
    off_t off = old.content_off;
    uint64_t left = old.content_len;
    qf_env_free(&old);
    int nfd = open(npath, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (nfd < 0) {
        int e = errno;
        close(rfd);
        return fail(t, "rewrite: create", e);
    }
    struct qf_writer *w = qf_write_begin(nfd, &t->env);
    if (w == NULL) {
        int e = errno;
        close(rfd);
        close(nfd);
        unlink(npath);
        return fail(t, "rewrite: envelope", e);
    }
    /* the header section (bounded by CL_HDR_MAX when it was written) */
    size_t cap = CL_HDR_MAX + 65536, n = left < cap ? (size_t)left : cap;
    char *buf = xmalloc(n + 1);
    int rc = qf_pread_all(rfd, buf, n, off);
    if (rc == 0) {
        size_t hend = n;                         /* header bytes (fields) */
        for (size_t i = 0; i + 1 < n; i++)
            if (buf[i] == '\n' && buf[i + 1] == '\n') {
                hend = i + 1;
                break;
            }
        if (clr_has_header_muts(&t->dmuts)) {
            buf_t h;
            buf_init(&h, hend + 1024);
            clr_apply_headers(&h, buf, hend, &t->dmuts);
            rc = qf_write_content(w, h.data, h.len);
            buf_free(&h);
        } else {
            rc = qf_write_content(w, buf, hend);
        }
        if (rc == 0 && n > hend)
            rc = qf_write_content(w, buf + hend, n - hend);
        off += (off_t)n;
        left -= n;
        while (rc == 0 && left > 0) {
            size_t k = left < 65536 ? (size_t)left : 65536;
            rc = qf_pread_all(rfd, buf, k, off);
            if (rc == 0)
                rc = qf_write_content(w, buf, k);
            off += (off_t)k;
            left -= k;
        }
    }
    free(buf);
    close(rfd);
    if (rc < 0) {
        int e = errno;
        qf_write_abort(w);
        close(nfd);
        unlink(npath);
        return fail(t, "rewrite: copy", e);
    }
    if (qf_write_end(w) < 0) {
        int e = errno;
        close(nfd);
        unlink(npath);
        return fail(t, "rewrite: write", e);
    }
    /* the new file replaces the old one */
    close(t->fd);
    unlink(t->path);
    t->fd = nfd;
    str_copy(t->path, sizeof(t->path), npath);
    return 0;
}
