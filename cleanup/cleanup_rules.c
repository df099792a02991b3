/*
 * cleanup_rules.c - applying what the rules decided, through lib/filter/qf_mutate.c
 * (the one module that changes a queue file for the rules; what it does is
 * in postern.rules(5)).
 *
 * Two sources: CLEANUP_MUT from smtpd (decided at connect/helo/auth/mail/
 * rcpt; they arrive before the content, so header mutations are applied
 * while the buffered header section is emitted and quarantine is known
 * before the envelope is written), and the data verdict's FILTER_MUTs
 * (header and envelope mutations, quarantine: the queue file is then
 * rewritten by the commit pool - a new file with the changed envelope and
 * the content copied with the header mutations applied replaces the old one
 * before fsync and rename). Every applied mutation and the deciding rule
 * are recorded as NOTE records in the queue file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "util/log.h"
#include "filter/qf_mutate.h"
#include "filter/filter_mut.h"

int clr_has_header_muts(const struct filter_muts *l)
{
    return qfm_has_header_muts(l->v, l->n);
}

/* Where the rules' quarantine puts the message (t->qname, t->qrule). */
static void keep_quarantine(struct cl_txn *t, const struct qfm_result *r)
{
    if (r->quarantine == NULL)
        return;
    str_copy(t->qname, sizeof(t->qname), r->quarantine);
    str_copy(t->qrule, sizeof(t->qrule), r->qrule ? r->qrule : "");
}

int clr_smtpd_mut(struct cl_txn *t, const struct ipc_cleanup_mut *m)
{
    if (m->kind >= FILTER_M__COUNT)
        return -1;
    if (!qfm_is_header_kind(m->kind) && m->kind != FILTER_M_QUARANTINE)
        return 0;                       /* smtpd applied the rest itself */
    if (qfm_is_header_kind(m->kind) && !hdr_name_ok(m->arg, strlen(m->arg))) {
        log_warn("rule \"%s\": invalid header name ignored", m->rule);
        return 0;
    }
    if (filter_muts_add(&t->muts, CL_MAX_MUTS, m->kind, m->rcpt, m->arg, m->arg2, m->rule) < 0) {
        log_warn("rule \"%s\": %s over the mutation cap (%d, %d octets) ignored", m->rule,
                 filter_mut_name((enum filter_mut_kind)m->kind), CL_MAX_MUTS, FILTER_MUTS_MAX_BYTES);
        return 0;
    }
    /* noted (and a quarantine recorded) now; header fields when emitted */
    struct qfm_result r;
    qfm_apply_env(&t->env, STAGE_DATA, V_NEXT, "", &t->muts.v[t->muts.n - 1], 1, NULL, NULL, &r);
    keep_quarantine(t, &r);
    return 0;
}

void clr_apply_headers(buf_t *out, const char *hdr, size_t len, const struct filter_muts *l)
{
    qfm_apply_headers(out, hdr, len, l->v, l->n);
}

int clr_apply_data(struct cl_txn *t, enum verdict v, const char *rule)
{
    struct qf_env *e = &t->env;
    struct qfm_result r;
    /* a quarantine from before DATA names the quarantine already */
    enum verdict vv = v == V_QUARANTINE && t->qname[0] ? V_ACCEPT : v;
    qfm_apply_env(e, STAGE_DATA, vv, rule, t->dmuts.v, t->dmuts.n, NULL, NULL, &r);
    keep_quarantine(t, &r);
    if (r.changed) {
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
    off_t off;
    uint64_t len;
    int rfd = cl_tmp_content(t, &off, &len);
    if (rfd < 0)
        return fail(t, "rewrite: read", errno);
    int nfd = cl_tmp_side_open(t, ".r", npath, sizeof(npath));
    if (nfd < 0) {
        int e = errno;
        close(rfd);
        return fail(t, "rewrite: create", e);
    }
    int rc = qfm_write(nfd, &t->env, rfd, off, len, t->dmuts.v, t->dmuts.n);
    int e = errno;
    close(rfd);
    cl_tmp_side_done(t, nfd, npath, rc == 0);
    return rc < 0 ? fail(t, "rewrite: write", e) : 0;
}
