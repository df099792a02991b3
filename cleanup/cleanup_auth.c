/*
 * cleanup_auth.c - email authentication at the end of data: DKIM verify
 * (inbound), DKIM sign (submitted mail of a domain with dkim keys) and the
 * Authentication-Results field (RFC 8601), in cleanup's own worker threads.
 *
 * When: after the queue file tmp/ID is complete and before the data stage
 * is asked (so dkim.result and dkim.domains reach the rules, and
 * msg.header("Authentication-Results") sees our field). A transaction that
 * needs nothing here goes on at once (cla_wanted() == 0).
 * How: a job takes the transaction to a worker (struct cl_auth holds what
 * it works on and what it found: spf from smtpd, dkim[], the dmarc slot).
 * The worker feeds the content to libopendkim (lib/dkim) once, then writes
 * the envelope, our new fields (DKIM-Signature first, then
 * Authentication-Results) at the top of the header section and the content
 * unchanged. A message that fits the queue writer's buffer (most) has not
 * reached the file yet: it is fed from that buffer and the file is written
 * once (write_once). A larger one was written: it is read back and written
 * over tmp/ID from memory up to CL_AUTH_INPLACE_MAX, else through tmp/ID.a,
 * which replaces tmp/ID. When SPF is all there is to report (no DKIM, no
 * DMARC, nothing to sign) there is no job: the field is composed with the
 * header section (cla_headers). Each worker thread owns
 * one blocking lib/dns context made before the chroot, and the key cache is
 * shared (lib/dkim/pdk_key.c); each message's DKIM work ends by
 * CL_AUTH_DEADLINE_MS (later key lookups are temperror).
 * Spoofed Authentication-Results fields (our authserv-id) are dropped while
 * the header section is emitted (cleanup_headers.c, cla_strip), for every
 * message, before anything verifies or signs it.
 * Who is "submitted" (cl_txn_submitted, also the tenant limits'
 * question): an authenticated client, a client in mynetworks, or sendmail
 * through pickup. It is signed when its From domain
 * has keys, and gets no Authentication-Results (our own mail); everything
 * else is verified (authentication.dkim) and gets the field when
 * authentication.spf or authentication.dkim is on.
 * DMARC slots in after the DKIM pass (cleanup_dmarc.c, cld_evaluate): it
 * sees spf, dkim[] and the From domain and fills auth->dmarc_*; the field
 * then carries it.
 * Worker threads never log and touch only the transaction's auth part,
 * its path/fd (swapped) and envelope (read).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "dkim/authres.h"
#include "dkim/pdk.h"
#include "dmarc/dmarc.h"
#include "dns/dns.h"
#include "filter/filter_policy.h"
#include "filter/qf_mutate.h"
#include "ipc/ipc_report.h"
#include "util/clock.h"
#include "util/fdio.h"
#include "util/log.h"

#define CL_AUTH_THREADS     4
#define CL_AUTH_DEADLINE_MS 30000
#define COPY_CHUNK          65536
#define CL_AUTH_INPLACE_MAX (4 * 1024 * 1024)   /* content rewritten in place from memory */

/* Keys loaded before the privilege drop (root may read 0600 root files). */
struct cla_domain_keys {
    char domain[256];
    struct pdk_key keys[PDK_MAX_KEYS];
    int n;
};

static struct cla_domain_keys *dkeys;
static int ndkeys;
static struct dns_ctx *dctx[CL_AUTH_THREADS];
static int dctx_next;
static struct workq *wq;
static const struct config *acfg;         /* cla_start's */
static unsigned long ed25519_signed;      /* signatures made with Ed25519 keys (loop) */

void cla_pre_drop(struct server *s)
{
    const struct config *cfg = s->cfg;
    for (int i = 0; i < cfg->ndomains; i++) {
        const struct domain_conf *d = &cfg->domains[i];
        if (d->ndkim == 0)
            continue;
        dkeys = xrealloc(dkeys, (size_t)(ndkeys + 1) * sizeof(*dkeys));
        struct cla_domain_keys *dk = &dkeys[ndkeys++];
        memset(dk, 0, sizeof(*dk));
        str_copy(dk->domain, sizeof(dk->domain), d->name);
        for (int k = 0; k < d->ndkim && dk->n < PDK_MAX_KEYS; k++) {
            char err[256];
            if (pdk_key_load(&dk->keys[dk->n], d->dkim[k].key, d->name, d->dkim[k].selector,
                             err, sizeof(err)) < 0) {
                log_error("dkim: domain %s selector %s: %s: mail of the domain is signed "
                          "without this key", d->name, d->dkim[k].selector, err);
                continue;
            }
            dk->n++;
        }
    }
    if (!cfg->authentication_dkim && !cfg->authentication_dmarc)
        return;
    for (int i = 0; i < CL_AUTH_THREADS; i++)
        dctx[i] = dns_ctx_for_daemon(cfg, "DKIM and DMARC results are temperror");
}

static const struct cla_domain_keys *keys_for(const char *domain)
{
    for (int i = 0; i < ndkeys; i++)
        if (strcasecmp(dkeys[i].domain, domain) == 0)
            return dkeys[i].n ? &dkeys[i] : NULL;
    return NULL;
}

int cl_txn_submitted(const struct cl_ctx *ctx, const struct cl_txn *t)
{
    /* a forwarded copy comes from the local agent on 127.0.0.1, but its
     * content is whoever sent the original: never a submission (it would be
     * signed with our keys: a forged From made genuine) */
    if (t->forwarded)
        return 0;
    /* the same question as the default relay policy's (lib/filter) */
    return t->local || policy_client_trusted(ctx->cfg, t->env.client_ip, t->env.auth_user);
}

/* What the job does for t (once the From domain is known). */
static void decide(struct cl_ctx *ctx, struct cl_txn *t)
{
    const struct config *cfg = ctx->cfg;
    struct cl_auth *a = &t->auth;
    a->submission = cl_txn_submitted(ctx, t);
    /* a forwarded copy was checked when the original arrived (its
     * Authentication-Results is in it) and is not ours to sign */
    int inbound = !a->submission && !t->forwarded;
    a->verify = inbound && cfg->authentication_dkim;
    a->dmarc_on = inbound && cfg->authentication_dmarc;
    a->add_ar = inbound && (cfg->authentication_dkim || cfg->authentication_spf ||
                            cfg->authentication_dmarc);
    a->sign = a->submission && a->from_domain[0] && keys_for(a->from_domain) != NULL;
    if (a->sign && t->auth_domain && t->auth_domain[0] &&
        strcasecmp(a->from_domain, t->auth_domain) != 0) {
        /* a tenant's user (smtpd_auth.c) never signs as another domain */
        a->sign = 0;
        log_warn("dkim: not signed: From domain %s is not %s, the domain of user %s",
                 a->from_domain, t->auth_domain, t->env.auth_user);
    }
    a->decided = 1;
}

int cla_wanted(struct cl_ctx *ctx, struct cl_txn *t)
{
    struct cl_auth *a = &t->auth;
    if (!a->decided)
        decide(ctx, t);
    return wq != NULL && (a->verify || a->add_ar || a->sign || a->dmarc_on);
}

/* ---- the header section as it is emitted (loop thread) --------------------- */

static void compose(struct cl_ctx *ctx, struct cl_txn *t, buf_t *out)
{
    struct cl_auth *a = &t->auth;
    buf_append(out, a->sigs.data, a->sigs.len);
    if (!a->add_ar)
        return;
    struct authres ar = {
        .spf_result = t->spf_result, .spf_domain = t->spf_domain,
        .spf_sender = t->env.sender, .spf_helo = t->env.sender[0] == '\0',
        .dkim_on = a->verify, .dkim = &a->dkim,
        .dmarc_result = a->dmarc_result[0] ? a->dmarc_result : NULL,
        /* the author domain whose outcome speaks for the message */
        .dmarc_header_from = a->dmarc ? a->dmarc->from_domain : a->from_domain,
        .dmarc_policy = a->dmarc_policy,
        .dmarc_reason = a->dmarc_reason,
    };
    authres_format(out, ctx->cfg->authserv_id, &ar);
}


/* The author domains of every From field (RFC 7489 6.6.1: each domain of
 * a multi-valued From is checked; a second From field, which RFC 5322
 * forbids, counts the same way rather than being overlooked), through
 * addr_author_domains: quoted display names and comments are no addresses.
 * a->from_domain is the first (signing uses it), a->from_more the others
 * up to CLA_AUTHORS_MAX in all, a->nfrom how many distinct ones there are. */
static void from_domains(struct cl_auth *a, const char *hdr, size_t len)
{
    char dom[CLA_AUTHORS_MAX][ADDR_DOMAIN_MAX + 1];
    int n = 0;
    size_t i = 0;
    while (i < len) {
        const char *nl = memchr(hdr + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - hdr) + 1 : len;
        while (e < len && (hdr[e] == ' ' || hdr[e] == '\t')) {
            nl = memchr(hdr + e, '\n', len - e);
            e = nl ? (size_t)(nl - hdr) + 1 : len;
        }
        const char *colon = memchr(hdr + i, ':', e - i);
        if (colon && qfm_field_is(hdr + i, e - i, "From")) {
            size_t b = (size_t)(colon + 1 - hdr);
            n = addr_author_domains(hdr + b, e - b, dom, CLA_AUTHORS_MAX, n);
        }
        i = e;
    }
    int kept = n < CLA_AUTHORS_MAX ? n : CLA_AUTHORS_MAX;
    a->nfrom = n;
    str_copy(a->from_domain, sizeof(a->from_domain), n > 0 ? dom[0] : "");
    free(a->from_more);
    a->from_more = NULL;
    if (kept > 1) {         /* the rare message with several authors */
        a->from_more = xmalloc((size_t)(kept - 1) * sizeof(*a->from_more));
        memcpy(a->from_more, dom + 1, (size_t)(kept - 1) * sizeof(*a->from_more));
    }
}

const char *cla_author_domain(const struct cl_txn *t, int k)
{
    const struct cl_auth *a = &t->auth;
    if (k < 0 || k >= a->nfrom || k >= CLA_AUTHORS_MAX)
        return NULL;
    return k == 0 ? a->from_domain : a->from_more[k - 1];
}

void cla_headers(struct cl_ctx *ctx, struct cl_txn *t, buf_t *own, buf_t *ar,
                 const char *hdr, size_t len)
{
    struct cl_auth *a = &t->auth;
    from_domains(a, hdr, len);
    decide(ctx, t);
    if (a->add_ar && !a->verify && !a->dmarc_on && !a->sign) {
        compose(ctx, t, ar);            /* SPF alone: known since MAIL FROM */
        a->add_ar = 0;
    }
    if (t->forwarded) {                 /* our own field from the first pass stays */
        buf_append(own, hdr, len);
        return;
    }
    int n = authres_strip(own, hdr, len, ctx->cfg->authserv_id);
    if (n > 0) {
        t->auth.stripped = n;
        log_info("removed %d Authentication-Results field%s claiming \"%s\"", n,
                 n == 1 ? "" : "s", ctx->cfg->authserv_id);
    }
}

/* ---- the worker ------------------------------------------------------------ */

static int fail(struct cl_txn *t, const char *where, int err)
{
    t->auth.err = err ? err : EIO;
    t->auth.where = where;
    return -1;
}

/* Feed the content at off..off+len of fd to the job. */
static int feed_file(struct pdk_job *j, int fd, off_t off, uint64_t len)
{
    char *b = xmalloc(COPY_CHUNK);
    int r = 0;
    while (len > 0) {
        size_t n = len > COPY_CHUNK ? COPY_CHUNK : (size_t)len;
        if (fdio_pread_all(fd, b, n, off) < 0) {
            r = -1;
            break;
        }
        pdk_job_feed(j, b, n);
        off += (off_t)n;
        len -= n;
    }
    free(b);
    return r;
}

/* tmp/ID.a: the envelope again, add, then the old content. */
static int rewrite(struct cl_txn *t, const buf_t *add, int rfd, off_t off, uint64_t len)
{
    char npath[64];
    int nfd = cl_tmp_side_open(t, ".a", npath, sizeof(npath));
    if (nfd < 0)
        return fail(t, "auth: create", errno);
    struct qf_writer *w = qf_write_begin(nfd, &t->env);
    int rc = w ? 0 : -1;
    if (w)
        qf_write_content(w, add->data, add->len);
    char *b = xmalloc(COPY_CHUNK);
    while (rc == 0 && len > 0) {
        size_t n = len > COPY_CHUNK ? COPY_CHUNK : (size_t)len;
        rc = fdio_pread_all(rfd, b, n, off);
        if (rc == 0)
            qf_write_content(w, b, n);
        off += (off_t)n;
        len -= n;
    }
    free(b);
    int e = errno;
    if (w && rc == 0)
        rc = qf_write_end(w);
    else if (w)
        qf_write_abort(w);
    e = rc < 0 && errno ? errno : e;
    cl_tmp_side_done(t, nfd, npath, rc == 0);
    return rc < 0 ? fail(t, "auth: write", e) : 0;
}

/* The message is still in t->w's buffer (cleanup_conn.c kept it there):
 * write the file once, our fields first. tmp/ID has nothing yet (a
 * recycled file's old bytes are cut after the new end). */
static int write_once(struct cl_txn *t, const buf_t *add, const void *content, size_t len)
{
    struct qf_writer *w = qf_write_begin(t->fd, &t->env);
    if (w == NULL)
        return fail(t, "auth: write", errno);
    qf_write_content(w, add->data, add->len);
    qf_write_content(w, content, len);
    off_t end;
    if (qf_write_end_at(w, &end) < 0 || cl_tmp_trim(t, end) < 0)
        return fail(t, "auth: write", errno);
    return 0;
}

/* Messages already written (larger than the writer's buffer) up to
 * CL_AUTH_INPLACE_MAX: the content is read once into memory, fed from
 * there and written back over the same tmp/ID, which keeps its inode (and
 * its recycled blocks: cleanup_recycle.c): no second file, no create and
 * unlink in tmp/. Overwriting is safe: tmp/ID is nobody's but ours until
 * the commit, and one cut short by a crash is removed at start. */
static int rewrite_in_place(struct cl_txn *t, const buf_t *add, const void *content,
                            size_t len)
{
    struct stat st;
    if (fstat(t->fd, &st) < 0 || lseek(t->fd, 0, SEEK_SET) < 0)
        return fail(t, "auth: rewrite", errno);
    t->old_size = st.st_size;       /* what is left past the new end goes */
    return write_once(t, add, content, len);
}

/* Verify and sign: the job over the content (in memory, else the file). */
static int dkim_pass(struct cl_txn *t, void *tstate, const void *mem, size_t memlen, int rfd,
                     off_t off, uint64_t len)
{
    struct cl_auth *a = &t->auth;
    char err[160];
    struct pdk_job *j = pdk_job_new(t->qid, clock_now_ms() + CL_AUTH_DEADLINE_MS);
    if (a->verify)
        pdk_job_verify(j, pdk_lookup_dns, tstate);
    const struct cla_domain_keys *dk = a->sign ? keys_for(a->from_domain) : NULL;
    for (int i = 0; dk && i < dk->n; i++)
        if (pdk_job_sign(j, &dk->keys[i], err, sizeof(err)) < 0)
            str_copy(a->sign_err, sizeof(a->sign_err), err);
    if (mem)
        pdk_job_feed(j, mem, memlen);
    else if (feed_file(j, rfd, off, len) < 0) {
        pdk_job_free(j);
        return fail(t, "auth: read content", errno);
    }
    pdk_job_end(j, a->verify ? &a->dkim : NULL, &a->sigs, err, sizeof(err));
    if (err[0])
        str_copy(a->sign_err, sizeof(a->sign_err), err);
    pdk_job_free(j);
    return 0;
}

/* DKIM, then DMARC (it needs the DKIM results), then our fields. */
static int evaluate(struct cl_ctx *ctx, struct cl_txn *t, void *tstate, const void *mem,
                    size_t memlen, int rfd, off_t off, uint64_t len, buf_t *add)
{
    struct cl_auth *a = &t->auth;
    if ((a->verify || a->sign) && dkim_pass(t, tstate, mem, memlen, rfd, off, len) < 0)
        return -1;
    if (a->dmarc_on)
        cld_evaluate(ctx, t, tstate);
    compose(ctx, t, add);
    return 0;
}

/* The message in the file already: read back, then rewritten if we add. */
static void run_written(struct cl_ctx *ctx, struct cl_txn *t, void *tstate, buf_t *add)
{
    off_t off;
    uint64_t len;
    int rfd = cl_tmp_content(t, &off, &len);
    if (rfd < 0) {
        fail(t, "auth: read", errno);
        return;
    }
    buf_t body;
    buf_init(&body, 0);
    int mem = len <= CL_AUTH_INPLACE_MAX && fdio_pread_buf(rfd, off, (size_t)len, &body) == 0;
    if (evaluate(ctx, t, tstate, mem ? body.data : NULL, body.len, rfd, off, len, add) == 0 &&
        add->len > 0) {
        if (mem)
            rewrite_in_place(t, add, body.data, body.len);
        else
            rewrite(t, add, rfd, off, len);
    }
    buf_free(&body);
    close(rfd);
}

static int auth_run(struct workq_item *it, void *tstate, void *arg)
{
    struct cl_ctx *ctx = arg;
    struct cl_txn *t = (struct cl_txn *)(void *)((char *)it - offsetof(struct cl_txn, awitem));
    buf_t add;
    buf_init(&add, 1024);
    const void *p;
    size_t n;
    if (t->w && qf_write_buffered(t->w, &p, &n) == 0) {
        if (evaluate(ctx, t, tstate, p, n, -1, 0, 0, &add) == 0)
            write_once(t, &add, p, n);
        qf_write_abort(t->w);           /* p pointed into it */
        t->w = NULL;
    } else if (t->w == NULL) {
        run_written(ctx, t, tstate, &add);
    } else {
        fail(t, "auth: write", EIO);   /* not reached: cleanup_conn.c checked */
    }
    buf_free(&add);
    struct cl_auth *a = &t->auth;
    if (a->fuse && a->err == 0 && a->dmarc_disposition == DMARC_P_NONE) {
        a->fused = 1;                   /* nothing left for the loop to decide */
        clc_run_here(ctx->pool, t);
        return WORKQ_HANDED;
    }
    return WORKQ_DONE;
}

static void *auth_thread_start(void *arg)
{
    int i = __atomic_fetch_add(&dctx_next, 1, __ATOMIC_RELAXED);
    return i < CL_AUTH_THREADS ? dctx[i] : NULL;
}

/* libopendkim 2.11 does not free an Ed25519 signing key at dkim_free
 * (about 0.5 KiB per signature, lib/dkim/pdk.h): after
 * processes.cleanup_max_ed25519 of them this process asks master for a
 * replacement, which starts another and lets this one drain (as at reload). */
static void count_ed25519(const struct cla_domain_keys *dk)
{
    static int asked;
    for (int i = 0; dk && i < dk->n; i++)
        ed25519_signed += dk->keys[i].alg == PDK_ED25519_SHA256;
    long max = acfg ? acfg->cleanup_max_ed25519 : 0;
    if (asked || max <= 0 || ed25519_signed < (unsigned long)max)
        return;
    asked = 1;
    if (ipc_report_retire("libopendkim's Ed25519 signing leak: processes.cleanup_max_ed25519 "
                          "signatures made") == 0)
        log_info("%lu Ed25519 signatures made (libopendkim does not free their keys): "
                 "asked master for a new cleanup", ed25519_signed);
}

void cla_log(const struct cl_txn *t)
{
    const struct cl_auth *a = &t->auth;
    log_set_qid(t->qid);
    if (a->verify) {
        for (int i = 0; i < a->dkim.n; i++)
            log_info("dkim=%s d=%s s=%s%s%s", pdk_result_name(a->dkim.sig[i].result),
                     a->dkim.sig[i].domain, a->dkim.sig[i].selector,
                     a->dkim.sig[i].reason[0] ? " reason=" : "", a->dkim.sig[i].reason);
    }
    if (a->sign && a->sign_err[0])
        log_warn("dkim: %s", a->sign_err);
    else if (a->sign)
        log_info("dkim: signed for %s", a->from_domain);
    log_set_qid(NULL);
    if (a->sign)
        count_ed25519(keys_for(a->from_domain));
}

static void auth_done(struct workq_item *it, void *arg)
{
    struct cl_ctx *ctx = arg;
    struct cl_txn *t = (struct cl_txn *)(void *)((char *)it - offsetof(struct cl_txn, awitem));
    if (t->auth.fuse)
        clc_unexpect(ctx->pool);        /* the loop carries on (not fused) */
    cla_log(t);
    cl_txn_auth_done(ctx, t, it->wq_cancelled);
}

void cla_start(struct cl_ctx *ctx)
{
    static const struct workq_ops ops = {
        .thread_start = auth_thread_start, .run = auth_run, .done = auth_done,
    };
    const struct config *cfg = ctx->cfg;
    acfg = cfg;
    if (!cfg->authentication_dkim && !cfg->authentication_spf && !cfg->authentication_dmarc &&
        ndkeys == 0)
        return;                     /* nothing to do: no threads (cla_wanted says 0) */
    wq = workq_new(ctx->srv->base, CL_AUTH_THREADS, &ops, ctx);
}

/* When nothing can come between the job and the commit (no data-stage
 * rules to ask, no mutation or quarantine pending), the worker goes on to
 * the commit itself unless DMARC asks for more (auth_run): one hand-over
 * per message, as without authentication, instead of worker -> loop ->
 * commit worker. The loop then hears of t once, at commit done. */
void cla_submit(struct cl_ctx *ctx, struct cl_txn *t)
{
    struct cl_auth *a = &t->auth;
    a->fuse = (t->faccept || !clf_data_wanted(ctx)) && t->dmuts.n == 0 && !t->qname[0] &&
              !t->rewrite;
    a->fused = 0;
    if (a->fuse)
        clc_expect(ctx->pool);
    workq_submit(wq, &t->awitem);
}

void cla_stop(void)
{
    if (wq)
        workq_free(wq, 1);
    wq = NULL;
    for (int i = 0; i < CL_AUTH_THREADS; i++) {
        dns_ctx_free(dctx[i]);
        dctx[i] = NULL;
    }
}

void cla_txn_free(struct cl_txn *t)
{
    buf_free(&t->auth.sigs);
    free(t->auth.dmarc);
    t->auth.dmarc = NULL;
    free(t->auth.from_more);
    t->auth.from_more = NULL;
}

const char *cla_dkim_result(const struct cl_txn *t)
{
    return t->auth.verify ? pdk_result_name(pdk_verdict_best(&t->auth.dkim)) : "none";
}

void cla_dkim_domains(const struct cl_txn *t, buf_t *out)
{
    if (t->auth.verify)
        pdk_verdict_domains(&t->auth.dkim, out);
}
