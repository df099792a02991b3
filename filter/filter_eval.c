/*
 * filter_eval.c - rule contexts per session, evaluation jobs and the worker
 * pool (see filter.h for who may touch what).
 *
 * A FILTER_REQ becomes a job: a copy of the request, the program it runs
 * against (referenced, so a reload never frees a program in use), and the
 * rl_txn it evaluates: the session's (smtpd stages, and cleanup's data
 * request for a session still known), or a fresh one built from the request
 * and the queue file (postq/deliver with session 0, data of an unknown
 * session). A stage without rules is answered in the loop at once; the rest
 * go to the worker threads, because services (cmd, smtp) may take seconds.
 * Results come back through an eventfd in any order: replies carry the
 * request id.
 *
 * Slow services never hold up other sessions: the pool keeps FILTER_WORKERS
 * threads and starts another (up to FILTER_WORKERS_MAX) whenever a job
 * would otherwise wait for a busy one; threads beyond FILTER_WORKERS leave
 * after FILTER_IDLE_EXIT seconds without work. Every job has a deadline,
 * limits.rules_timeout after its request arrived: the worker passes it to
 * the services (rl_set_deadline: every blocking wait ends by then), and a
 * loop timer answers 451 4.4.3 "rules evaluation timed out" at the deadline
 * whatever the worker is doing; a result that comes later is dropped, and
 * the session's context is left as if the command had not been given. After the verdict, the session's context follows what the
 * client will see: an accepted recipient joins rcpt_list (plus add_rcpt/bcc,
 * minus remove_rcpt), a rewritten sender replaces mail_from.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "mail/addr.h"
#include "util/clock.h"
#include "filter.h"
#include "filter/filter_policy.h"
#include "util/log.h"
#include "mail/qfile.h"
#include "util/workq.h"
#include "metrics/metrics.h"

#define HBITS 17
#define HSIZE (1u << HBITS)

struct fsess {
    uint64_t id;
    struct rl_txn txn;
    struct fconn *owner;             /* NULL once its connection closed */
    struct fsess *hnext;             /* hash chain */
    struct fsess *older, *newer;     /* age list */
    struct fsess *onext, *oprev;     /* owner's list */
    struct fjob *busy;               /* the job evaluating on txn */
    struct fjob *wait_head, *wait_tail;
    int dead;                        /* unlinked: free when idle */
};

/* The request's strings, owned by the job. */
#define REQ_STRS(X) X(listener) X(client_ip) X(client_ptr) X(helo) X(auth_user) \
    X(tls_version) X(tls_cipher) X(mail_from) X(rcpt) X(queue_id) X(path) X(spf_result) \
    X(spf_domain) X(dkim_result) X(dkim_domains) X(dmarc_result) X(dmarc_policy)

struct fjob {
    struct workq_item item;          /* first: the completion's handle is the job */
    struct fjob *next;               /* session wait queue */
    struct fjob *pnext;              /* the pool's queue */
    int64_t deadline;                /* CLOCK_MONOTONIC ms (clock_now_ms) */
    int64_t start_us;                /* the request's arrival (filter latency metric) */
    struct event *timer;             /* loop: fires at the deadline */
    int answered;                    /* loop: the timer replied; the result is dropped */
    int expired;                     /* worker: the deadline cut the evaluation */
    struct fconn *c;
    struct fsess *sess;              /* NULL: txn is own */
    struct rl_txn own;
    struct rl_txn *txn;
    struct fprog *prog;
    struct ipc_filter_req q;         /* strings point into the job's copies */
    int load_file;                   /* worker: envelope from q.path first */
    int load_client;                 /* ... including client info (no session) */
    char load_err[160];
    struct rl_result res;
};

static struct fctx *C;
static struct fsess *htab[HSIZE];
static struct fsess *oldest, *newest;
static int nsess;

/* ---- programs -------------------------------------------------------------------- */

void fprog_unref(struct fprog *p)
{
    if (p && --p->refs == 0) {
        rl_program_free(p->p);
        free(p);
    }
}

uint32_t fprog_mask(const struct fprog *p)
{
    uint32_t m = 0;
    if (p && p->p)
        for (int s = 0; s < STAGE__COUNT; s++)
            if (rl_program_stage_rules(p->p, (enum stage)s) > 0)
                m |= 1u << s;
    return m;
}

/* ---- sessions ---------------------------------------------------------------------- */

static unsigned hslot(uint64_t id)
{
    return (unsigned)((id * 0x9E3779B97F4A7C15ull) >> (64 - HBITS));
}

static struct fsess *sess_find(uint64_t id)
{
    for (struct fsess *s = htab[hslot(id)]; s; s = s->hnext)
        if (s->id == id)
            return s;
    return NULL;
}

/* Out of the table, the age list and the owner's list (memory stays). */
static void sess_unlink(struct fsess *s)
{
    if (s->dead)
        return;
    s->dead = 1;
    for (struct fsess **pp = &htab[hslot(s->id)]; *pp; pp = &(*pp)->hnext)
        if (*pp == s) {
            *pp = s->hnext;
            break;
        }
    if (s->older)
        s->older->newer = s->newer;
    else
        oldest = s->newer;
    if (s->newer)
        s->newer->older = s->older;
    else
        newest = s->older;
    if (s->owner) {
        if (s->oprev)
            s->oprev->onext = s->onext;
        else
            s->owner->sessions = s->onext;
        if (s->onext)
            s->onext->oprev = s->oprev;
        s->owner = NULL;
    }
    nsess--;
}

static void sess_free(struct fsess *s)
{
    rl_txn_free(&s->txn);
    free(s);
}

/* Unlink, and free now unless a job holds it. */
static void sess_drop(struct fsess *s)
{
    sess_unlink(s);
    if (s->busy == NULL && s->wait_head == NULL)
        sess_free(s);
}

static struct fsess *sess_new(struct fconn *c, uint64_t id)
{
    if (nsess >= FILTER_MAX_SESSIONS) {
        struct fsess *v = oldest;
        while (v && v->busy)
            v = v->newer;
        if (v) {
            log_debug("session table full: forgetting session %llx", (unsigned long long)v->id);
            sess_drop(v);
        }
    }
    struct fsess *s = xcalloc(1, sizeof(*s));
    s->id = id;
    rl_txn_init(&s->txn);
    unsigned h = hslot(id);
    s->hnext = htab[h];
    htab[h] = s;
    s->older = newest;
    if (newest)
        newest->newer = s;
    else
        oldest = s;
    newest = s;
    s->owner = c;
    s->onext = c->sessions;
    if (c->sessions)
        c->sessions->oprev = s;
    c->sessions = s;
    nsess++;
    return s;
}

void fe_session_end(struct fconn *c, uint64_t session)
{
    struct fsess *s = sess_find(session);
    if (s)
        sess_drop(s);
}

void fe_conn_closed(struct fconn *c)
{
    while (c->sessions)
        sess_drop(c->sessions);
}

/* ---- jobs ------------------------------------------------------------------------ */

static void job_free(struct fjob *j)
{
    if (j->timer)
        event_free(j->timer);
#define FREE_STR(f) free((char *)j->q.f);
    REQ_STRS(FREE_STR)
#undef FREE_STR
    rl_result_free(&j->res);
    rl_txn_free(&j->own);
    fprog_unref(j->prog);
    free(j);
}

static void set_tls(struct rl_txn *t, const char *tls)
{
    char v[64];
    str_copy(v, sizeof(v), tls ? tls : "");
    char *sp = strchr(v, ' ');
    if (sp)
        *sp = '\0';
    rl_txn_set(t, RL_TLS_VERSION, v);
    const char *c = tls ? strchr(tls, ' ') : NULL;
    rl_txn_set(t, RL_TLS_CIPHER, c ? c + 1 : "");
}

static void clear_rcpts(struct rl_txn *t)
{
    for (int i = 0; i < t->nrcpts; i++)
        free(t->rcpts[i]);
    t->nrcpts = 0;
}

/* Worker (or loop for a stage without rules): the envelope from the queue
 * file when asked, then the rules. */
static void job_eval(struct fjob *j)
{
    struct rl_txn *t = j->txn;
    if (j->load_file) {
        struct qf_env e;
        char err[128] = "";
        int fd = open(j->q.path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || qf_read(fd, &e, err, sizeof(err)) < 0) {
            snprintf(j->load_err, sizeof(j->load_err), "%s: %s", j->q.path,
                     fd < 0 ? strerror(errno) : err);
            if (fd >= 0)
                close(fd);
            rl_result_free(&j->res);
            j->res.status = V_TEMPFAIL;
            return;
        }
        close(fd);
        rl_txn_set(t, RL_MAIL_FROM, e.sender);
        clear_rcpts(t);
        int postq = j->q.stage >= STAGE_POSTQ;
        for (int i = 0; i < e.nrcpts; i++)
            if (!postq || e.rcpts[i].status == DS_PENDING || e.rcpts[i].status == DS_DEFERRED)
                rl_txn_add_rcpt(t, e.rcpts[i].addr);
        if (j->load_client) {
            rl_txn_set(t, RL_CLIENT_IP, e.client_ip);
            rl_txn_set(t, RL_CLIENT_PTR, e.client_ptr);
            rl_txn_set(t, RL_HELO, e.helo);
            rl_txn_set(t, RL_AUTH_USER, e.auth_user);
            set_tls(t, e.tls);
            t->client_port = e.client_port;
        }
        if (t->f[RL_QUEUE_ID][0] == '\0')
            rl_txn_set(t, RL_QUEUE_ID, e.queue_id);
        if (t->msg_size == 0)
            t->msg_size = e.content_len;
        qf_env_free(&e);
    }
    if (j->prog->p)
        rl_eval(j->prog->p, (enum stage)j->q.stage, t, &j->res);
    else
        j->res.status = V_NEXT;
}

static int accepted(enum verdict v)
{
    return v == V_NEXT || v == V_ACCEPT || v == V_FACCEPT || v == V_QUARANTINE;
}

static void log_verdict(const struct fjob *j, enum verdict st, int code, const char *enh,
                        const char *text, const char *rule, const char *qname)
{
    const struct ipc_filter_req *q = &j->q;
    if (st != V_REJECT && st != V_DENY && st != V_DEFER && st != V_QUARANTINE &&
        st != V_TEMPFAIL)
        return;
    if (st == V_TEMPFAIL && rule[0] == '\0' && j->load_err[0] == '\0')
        return;
    const struct verdict_reply *d = verdict_default(st, (enum stage)q->stage);
    code = code ? code : d->code;
    enh = enh[0] ? enh : d->enhanced;
    text = text[0] ? text : d->text;
    char rb[96] = "";
    if (rule[0])
        snprintf(rb, sizeof(rb), " rule=\"%s\"", rule);
    if (q->queue_id[0])
        log_set_qid(q->queue_id);
    const char *pre = q->queue_id, *sep = q->queue_id[0] ? ": " : "";
    if (j->load_err[0])
        log_warn("%s%scannot read queue file %s: deferring", pre, sep, j->load_err);
    else if (st == V_QUARANTINE)
        log_info("%s%squarantine: %s from %s[%s]: %s; from=<%s> helo=<%s>%s", pre, sep,
                 stage_name((enum stage)q->stage), q->client_ptr, q->client_ip, qname,
                 q->mail_from, q->helo, rb);
    else if (q->stage == STAGE_RCPT)
        log_info("%s%s%s: RCPT from %s[%s]: %d %s <%s>: %s; from=<%s> to=<%s> helo=<%s>%s", pre,
                 sep, st == V_REJECT || st == V_DENY ? "reject" : "defer", q->client_ptr,
                 q->client_ip, code, enh, q->rcpt, text, q->mail_from, q->rcpt, q->helo, rb);
    else
        log_info("%s%s%s: %s from %s[%s]: %d %s %s; from=<%s> helo=<%s>%s", pre, sep,
                 st == V_REJECT || st == V_DENY ? "reject" : "defer",
                 stage_name((enum stage)q->stage), q->client_ptr, q->client_ip, code, enh, text,
                 q->mail_from, q->helo, rb);
    log_set_qid(NULL);
}

static void job_dispatch(struct fjob *j);
static void job_release(struct fjob *j);

#define TIMEOUT_CODE 451
#define TIMEOUT_ENH  "4.4.3"
#define TIMEOUT_TEXT "rules evaluation timed out"

static void log_timeout(const struct fjob *j)
{
    const struct ipc_filter_req *q = &j->q;
    if (q->queue_id[0])
        log_set_qid(q->queue_id);
    log_warn("%s%sdefer: %s from %s[%s]: %d %s %s after %ds; from=<%s> helo=<%s>", q->queue_id,
             q->queue_id[0] ? ": " : "", stage_name((enum stage)q->stage), q->client_ptr,
             q->client_ip, TIMEOUT_CODE, TIMEOUT_ENH, TIMEOUT_TEXT, C->cfg->rules_timeout,
             q->mail_from, q->helo);
    log_set_qid(NULL);
}

/* Loop thread: the deadline passed before the verdict. Answer now; the
 * worker's result, when it comes, is dropped (job_finish). */
static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct fjob *j = arg;
    if (j->answered)
        return;
    j->answered = 1;
    log_timeout(j);
    if (!j->c->closed) {
        struct rl_result none;
        rl_result_init(&none);
        filter_send_reply(j->c, j->q.id, V_TEMPFAIL, TIMEOUT_CODE, TIMEOUT_ENH, TIMEOUT_TEXT, "",
                          &none, NULL);
    }
}

/* Loop thread: the verdict is known. Default policy, context updates, the
 * reply, then the next job of the session. */
static void job_finish(struct fjob *j)
{
    if (j->timer)
        event_del(j->timer);
    if (j->answered) {
        job_release(j);
        return;
    }
    metric_observe(MET_FILTER_DURATION, clock_now_us() - j->start_us,
                   stage_name((enum stage)j->q.stage), NULL);
    struct rl_result *r = &j->res;
    enum verdict st = r->status < V__COUNT ? r->status : V_TEMPFAIL;
    int code = r->code;
    const char *enh = r->enhanced, *text = r->text, *rule = r->rule;
    struct verdict_out pv;
    if (j->expired) {
        log_timeout(j);
        st = V_TEMPFAIL;
        code = TIMEOUT_CODE;
        enh = TIMEOUT_ENH;
        text = TIMEOUT_TEXT;
        rule = "";
        rl_result_free(r);      /* no mutation of a timed-out evaluation applies */
    } else if (j->q.stage == STAGE_RCPT && st == V_NEXT) {
        /* no rule decided: relay control (a rule's accept/faccept overrides it) */
        policy_decide(&j->q, &pv);
        st = pv.status;
        code = pv.code;
        enh = pv.enhanced;
        text = pv.text;
        rule = pv.rule;
    }
    const char *qname = r->quarantine[0] ? r->quarantine : "quarantine";
    for (int i = 0; i < r->nmuts; i++)
        if (r->muts[i].kind == FILTER_M_QUARANTINE && st != V_QUARANTINE)
            qname = r->muts[i].arg;
    log_verdict(j, st, code, enh, text, rule, qname);

    struct rl_txn *t = j->txn;
    if (j->sess && j->q.stage == STAGE_DATA)
        rl_txn_set(t, RL_MSG_PATH, NULL);      /* drop the message cache */
    if (j->sess && accepted(st)) {
        if (j->q.stage == STAGE_RCPT) {
            int keep = 1;
            for (int i = 0; i < r->nmuts; i++) {
                const struct rl_mutation *m = &r->muts[i];
                if (m->kind == FILTER_M_REMOVE_RCPT && (m->rcpt[0] == '\0' || addr_same(m->rcpt, j->q.rcpt)))
                    keep = 0;
            }
            if (keep)
                rl_txn_add_rcpt(t, j->q.rcpt);
        }
        if (j->q.stage < STAGE_DATA) {
            for (int i = 0; i < r->nmuts; i++) {
                const struct rl_mutation *m = &r->muts[i];
                if (m->kind == FILTER_M_ADD_RCPT || m->kind == FILTER_M_BCC)
                    rl_txn_add_rcpt(t, m->rcpt);
                else if (m->kind == FILTER_M_REWRITE_MAIL_FROM)
                    rl_txn_set(t, RL_MAIL_FROM, m->arg);
            }
        }
    }
    if (!j->c->closed)
        filter_send_reply(j->c, j->q.id, st, code, enh, text, rule, r,
                          st == V_QUARANTINE ? qname : NULL);
    job_release(j);
}

/* Loop thread: the job is over (answered or not). Its connection, then the
 * session's next job. */
static void job_release(struct fjob *j)
{
    fconn_release(j->c);
    struct fsess *s = j->sess;
    job_free(j);
    if (s) {
        s->busy = NULL;
        struct fjob *next = s->wait_head;
        if (next) {
            s->wait_head = next->next;
            if (s->wait_head == NULL)
                s->wait_tail = NULL;
            next->next = NULL;
            job_dispatch(next);
        } else if (s->dead) {
            sess_free(s);
        }
    }
}

/* ---- the pool ------------------------------------------------------------------------ */
/* A job queue and threads that grow with demand: a job never waits for a
 * busy worker while fewer than FILTER_WORKERS_MAX exist. nidle counts the
 * threads not running a job (some may be woken and not yet have taken
 * one): while nidle >= nqueued every queued job has a thread coming. */
struct fpool {
    pthread_mutex_t mu;
    pthread_cond_t work;             /* a job queued, or stop */
    pthread_cond_t gone;             /* a thread left */
    struct fjob *head, *tail;
    int nqueued, nthreads, nidle, stop;
    time_t full_logged;
    struct workq_done *dq;           /* finished jobs back to the loop */
};

/* Worker: the deadline goes down to the services; a job that waited past
 * it is not evaluated at all. */
static void job_run(struct fjob *j)
{
    if (clock_now_ms() >= j->deadline) {
        j->expired = 1;
        j->res.status = V_TEMPFAIL;
        return;
    }
    rl_set_deadline(j->deadline);
    job_eval(j);
    rl_set_deadline(0);
    if (j->res.status == V_TEMPFAIL && clock_now_ms() >= j->deadline)
        j->expired = 1;
}

static void *pool_main(void *arg)
{
    struct fpool *P = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    pthread_mutex_lock(&P->mu);
    for (;;) {
        while (P->head == NULL && !P->stop) {
            if (P->nthreads <= FILTER_WORKERS) {
                pthread_cond_wait(&P->work, &P->mu);
                continue;
            }
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += FILTER_IDLE_EXIT;
            if (pthread_cond_timedwait(&P->work, &P->mu, &ts) != 0 && P->head == NULL &&
                P->nthreads > FILTER_WORKERS)
                goto leave;
        }
        if (P->head == NULL)
            break;                  /* stopping, and nothing left to run */
        struct fjob *j = P->head;
        P->head = j->pnext;
        if (P->head == NULL)
            P->tail = NULL;
        j->pnext = NULL;
        P->nqueued--;
        P->nidle--;
        pthread_mutex_unlock(&P->mu);
        job_run(j);
        workq_done_post(P->dq, &j->item);
        pthread_mutex_lock(&P->mu);
        P->nidle++;
    }
leave:
    P->nidle--;
    P->nthreads--;
    pthread_cond_broadcast(&P->gone);
    pthread_mutex_unlock(&P->mu);
    return NULL;
}

/* With P->mu held. */
static int pool_spawn(struct fpool *P)
{
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_t th;
    int e = pthread_create(&th, &at, pool_main, P);
    pthread_attr_destroy(&at);
    if (e) {
        log_warn("cannot start a rules worker: %s", strerror(e));
        return -1;
    }
    P->nthreads++;
    P->nidle++;
    return 0;
}

static void pool_submit(struct fpool *P, struct fjob *j)
{
    j->item.wq_cancelled = 0;
    j->pnext = NULL;
    pthread_mutex_lock(&P->mu);
    if (P->tail)
        P->tail->pnext = j;
    else
        P->head = j;
    P->tail = j;
    P->nqueued++;
    if (P->nidle < P->nqueued && P->nthreads < FILTER_WORKERS_MAX)
        pool_spawn(P);
    if (P->nidle < P->nqueued && P->nthreads >= FILTER_WORKERS_MAX) {
        time_t now = time(NULL);
        if (now != P->full_logged) {
            P->full_logged = now;
            log_warn("all %d rules workers busy: evaluations wait (slow services?)",
                     FILTER_WORKERS_MAX);
        }
    }
    pthread_mutex_unlock(&P->mu);
    pthread_cond_signal(&P->work);      /* unlocked: the woken worker does not block on mu */
}

/* Also at shutdown (wq_cancelled): the job's memory and references go;
 * its connection is closed by then, so no reply is sent. */
static void pool_done(struct workq_item *it, void *arg)
{
    job_finish((struct fjob *)it);
}

void fe_init(struct fctx *ctx)
{
    C = ctx;
    struct fpool *P = xcalloc(1, sizeof(*P));
    pthread_mutex_init(&P->mu, NULL);
    pthread_cond_init(&P->work, NULL);
    pthread_cond_init(&P->gone, NULL);
    P->dq = workq_done_new(ctx->srv->base, pool_done, P);
    pthread_mutex_lock(&P->mu);
    for (int i = 0; i < FILTER_WORKERS; i++)
        if (pool_spawn(P) < 0)
            log_fatal("cannot start the rules workers");
    pthread_mutex_unlock(&P->mu);
    ctx->pool = P;
}

void fe_shutdown(struct fctx *ctx)
{
    struct fpool *P = ctx->pool;
    if (P == NULL)
        return;
    /* evaluate what is queued and finish it (connections are gone); each
     * evaluation ends by its deadline, so this wait is bounded */
    pthread_mutex_lock(&P->mu);
    P->stop = 1;
    pthread_cond_broadcast(&P->work);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ctx->cfg->rules_timeout + 5;
    while (P->nthreads > 0)
        if (pthread_cond_timedwait(&P->gone, &P->mu, &ts) != 0)
            break;
    int left = P->nthreads;
    pthread_mutex_unlock(&P->mu);
    ctx->pool = NULL;
    if (left > 0) {
        /* a worker stuck past its deadline (a service not honouring it):
         * leave it and its jobs to the exit */
        log_warn("%d rules workers still busy at shutdown: not waiting", left);
        return;
    }
    workq_done_free(P->dq);          /* finished jobs not delivered yet: handed back */
    pthread_cond_destroy(&P->work);
    pthread_cond_destroy(&P->gone);
    pthread_mutex_destroy(&P->mu);
    free(P);
    for (unsigned h = 0; h < HSIZE; h++)
        while (htab[h]) {
            struct fsess *s = htab[h];
            sess_unlink(s);
            sess_free(s);
        }
}

/* ---- requests ------------------------------------------------------------------------ */

/* Loop thread, txn free: fill it from the request, then evaluate (inline
 * when the stage has no rules and nothing must be read). */
static void job_dispatch(struct fjob *j)
{
    const struct ipc_filter_req *q = &j->q;
    struct rl_txn *t = j->txn;
    enum stage st = (enum stage)q->stage;
    if (j->sess)
        j->sess->busy = j;
    if (j->answered) {
        /* timed out while it waited behind the session's previous job */
        job_finish(j);
        return;
    }
    if (j->sess || st < STAGE_POSTQ) {
        rl_txn_set(t, RL_CLIENT_IP, q->client_ip);
        rl_txn_set(t, RL_CLIENT_PTR, q->client_ptr);
        t->client_port = q->client_port;
        if (q->helo[0] || st == STAGE_HELO)
            rl_txn_set(t, RL_HELO, q->helo);
        rl_txn_set(t, RL_AUTH_USER, q->auth_user);
        rl_txn_set(t, RL_TLS_VERSION, q->tls_version);
        rl_txn_set(t, RL_TLS_CIPHER, q->tls_cipher);
    }
    int mail_rules = j->prog->p && rl_program_stage_rules(j->prog->p, STAGE_MAIL) > 0;
    if (st == STAGE_MAIL || (st == STAGE_RCPT && j->sess && !mail_rules && q->nrcpt == 0)) {
        /* a new transaction (smtpd does not ask at mail without mail rules:
         * its first recipient starts it) */
        rl_txn_reset_mail(t);
        rl_txn_set(t, RL_MAIL_FROM, q->mail_from);
    } else if (st > STAGE_MAIL && j->sess == NULL && q->mail_from[0]) {
        rl_txn_set(t, RL_MAIL_FROM, q->mail_from);
    }
    if (q->spf_result[0]) {
        /* SPF (smtpd at mail and rcpt, cleanup at data): after the reset */
        rl_txn_set(t, RL_SPF, q->spf_result);
        rl_txn_set(t, RL_SPF_DOMAIN, q->spf_domain);
    }
    if (q->dkim_result[0]) {
        /* DKIM (cleanup at data) */
        rl_txn_set(t, RL_DKIM, q->dkim_result);
        rl_txn_set(t, RL_DKIM_DOMAINS, q->dkim_domains);
    }
    if (q->dmarc_result[0]) {
        /* DMARC (cleanup at data) */
        rl_txn_set(t, RL_DMARC, q->dmarc_result);
        rl_txn_set(t, RL_DMARC_POLICY, q->dmarc_policy);
    }
    rl_txn_set(t, RL_RCPT, st == STAGE_RCPT ? q->rcpt : "");
    if (st >= STAGE_DATA) {
        rl_txn_set(t, RL_QUEUE_ID, q->queue_id);
        rl_txn_set(t, RL_MSG_PATH, q->path);
        t->msg_size = q->size;
    }
    int rules = j->prog->p && rl_program_stage_rules(j->prog->p, st) > 0;
    j->load_file = rules && st >= STAGE_DATA && q->path[0];
    j->load_client = j->load_file && j->sess == NULL && st >= STAGE_POSTQ;
    if (!rules) {
        job_eval(j);
        job_finish(j);
        return;
    }
    pool_submit(C->pool, j);
}

void fe_request(struct fconn *c, const struct ipc_filter_req *q)
{
    struct fjob *j = xcalloc(1, sizeof(*j));
    j->q = *q;
#define COPY_STR(f) j->q.f = xstrdup(q->f);
    REQ_STRS(COPY_STR)
#undef COPY_STR
    rl_result_init(&j->res);
    rl_txn_init(&j->own);
    j->c = c;
    c->njobs++;
    /* the deadline counts from the request: waiting behind the session's
     * previous job is part of it */
    int tmo = C->cfg->rules_timeout > 0 ? C->cfg->rules_timeout : 30;
    j->deadline = clock_now_ms() + (int64_t)tmo * 1000;
    j->start_us = clock_now_us();
    j->timer = evtimer_new(C->srv->base, on_deadline, j);
    struct timeval tv = { .tv_sec = tmo };
    if (j->timer == NULL || evtimer_add(j->timer, &tv) < 0)
        log_fatal("filter: cannot arm a deadline timer");
    j->prog = C->prog;
    j->prog->refs++;
    j->txn = &j->own;
    if (q->session != 0 && q->stage < STAGE_POSTQ) {
        struct fsess *s = sess_find(q->session);
        if (s == NULL && q->stage < STAGE_DATA)
            s = sess_new(c, q->session);
        if (s) {
            j->sess = s;
            j->txn = &s->txn;
            if (s->busy) {
                if (s->wait_tail)
                    s->wait_tail->next = j;
                else
                    s->wait_head = j;
                s->wait_tail = j;
                return;
            }
        }
    }
    job_dispatch(j);
}
