/*
 * cleanup_filter.c - asking filter for the data-stage verdict without
 * blocking the event loop, through the process's one filter client
 * (lib/filter/filter_clnt.h: connection, handshake, request queue keyed by id,
 * timeouts, reconnect with backoff).
 *
 * A request carries its transaction; a transaction that goes away cancels
 * it (the late reply is dropped). A FILTER_REPLY's mutations join the
 * transaction's dmuts and the verdict is delivered (cl_txn_filter_done).
 * The client is created with the first message when a rules file is
 * configured; with none, data is never asked. Without data rules in the
 * last FILTER_STAGES (kept while filter is away) the stage is not asked
 * (clf_data_wanted); when filter cannot answer (unreachable, no HELLO, the
 * link broke) only a data stage with rules, or one never heard of, gets
 * the temporary failure: otherwise the transaction goes on (V_NEXT, the
 * default policy of the data stage).
 */
#include <string.h>

#include "cleanup.h"
#include "filter/filter_clnt.h"
#include "util/log.h"

#define CL_HELLO_TIMEOUT_MS 5000    /* master holds the socket: a connect succeeds
                                     * while filter is down, its HELLO must come quickly */

static int rules_off(const struct cl_ctx *ctx)
{
    return ctx->cfg->rules == NULL || ctx->cfg->rules[0] == '\0';
}

/* filter cannot answer: does the data stage need it (as far as we know)? */
static int data_needs_filter(struct cl_ctx *ctx)
{
    return ctx->fclnt == NULL || filter_clnt_stage_rules(ctx->fclnt, STAGE_DATA);
}

/* t gets no verdict from filter: the default policy, or a temporary failure. */
static void unavailable(struct cl_ctx *ctx, struct cl_txn *t)
{
    if (data_needs_filter(ctx)) {
        cl_txn_filter_done(ctx, t, NULL);
        return;
    }
    log_set_qid(t->qid);
    log_info("filter unavailable: no data rules: default policy");
    log_set_qid(NULL);
    struct ipc_filter_reply next = { .status = V_NEXT, .enhanced = "", .text = "", .rule = "" };
    cl_txn_filter_done(ctx, t, &next);
}

/* The verdict for t (NULL: none will come): its mutations join the
 * transaction's dmuts and the verdict is delivered. */
static void f_verdict(uint64_t id, void *arg, struct filter_verdict *v, void *cbarg)
{
    struct cl_ctx *ctx = cbarg;
    struct cl_txn *t = arg;
    t->freq_id = 0;
    if (v == NULL) {
        unavailable(ctx, t);
        return;
    }
    for (int i = 0; i < v->nmuts; i++) {
        const struct filter_mut *m = &v->muts[i];
        if (filter_muts_add(&t->dmuts, CL_MAX_MUTS, m->kind, m->rcpt, m->arg, m->arg2,
                            m->rule) < 0)
            log_warn("%s: rule \"%s\": %s over the mutation cap (%d, %d octets) ignored",
                     t->qid, m->rule, filter_mut_name((enum filter_mut_kind)m->kind),
                     CL_MAX_MUTS, FILTER_MUTS_MAX_BYTES);
    }
    char rule[64];
    str_copy(rule, sizeof(rule), v->rule);
    struct ipc_filter_reply r = { id, v->status, (uint32_t)v->code, v->enhanced, v->text, rule,
                                  (uint32_t)v->nmuts };
    cl_txn_filter_done(ctx, t, &r);
}

static void f_down(const char *why, void *arg)
{
    struct cl_ctx *ctx = arg;
    if (ctx->fclnt && filter_clnt_pending(ctx->fclnt) > 0)
        log_warn("filter connection: %s: waiting messages get the data stage's default", why);
    else
        log_debug("filter connection: %s", why);
}

static const struct filter_clnt_ops f_ops = { .on_verdict = f_verdict, .on_down = f_down };

int clf_data_wanted(struct cl_ctx *ctx)
{
    if (rules_off(ctx))
        return 0;                   /* no rules file: nothing to ask */
    if (ctx->fclnt == NULL) {
        struct filter_clnt_conf conf = {
            .hello_ms = CL_HELLO_TIMEOUT_MS, .reply_ms = CL_FILTER_TIMEOUT * 1000,
        };
        ctx->fclnt = filter_clnt_new(ctx->srv->base, &conf, &f_ops, ctx);
    }
    return filter_clnt_stage_rules(ctx->fclnt, STAGE_DATA);
}

int clf_ask(struct cl_ctx *ctx, struct cl_txn *t)
{
    if (ctx->fclnt == NULL && (clf_data_wanted(ctx), ctx->fclnt == NULL))
        return -1;                  /* no rules file: never asked */
    const struct qf_env *e = &t->env;
    /* tls is "VERSION CIPHER" */
    char tlsv[64] = "";
    const char *cipher = "";
    str_copy(tlsv, sizeof(tlsv), e->tls);
    char *sp = strchr(tlsv, ' ');
    if (sp) {
        *sp = '\0';
        cipher = strchr(e->tls, ' ') + 1;
    }
    buf_t doms;                     /* dkim.domains */
    buf_init(&doms, 64);
    cla_dkim_domains(t, &doms);
    struct ipc_filter_req r = {
        .stage = STAGE_DATA,
        .session = t->session,
        .listener = e->listener,
        .client_ip = e->client_ip,
        .client_port = e->client_port,
        .client_ptr = e->client_ptr,
        .helo = e->helo,
        .auth_user = e->auth_user,
        .tls_version = tlsv,
        .tls_cipher = cipher,
        .mail_from = e->sender,
        .rcpt = e->nrcpts == 1 ? e->rcpts[0].addr : "",
        .nrcpt = (uint32_t)e->nrcpts,
        .queue_id = t->qid,
        .spf_result = t->spf_result, .spf_domain = t->spf_domain,
        .dkim_result = cla_dkim_result(t), .dkim_domains = doms.data,
        .dmarc_result = t->auth.dmarc_result, .dmarc_policy = t->auth.dmarc_policy,
        .size = t->size,
        .path = t->path,
    };
    int asked = filter_clnt_ask(ctx->fclnt, &r, t);
    buf_free(&doms);
    if (asked < 0) {
        if (data_needs_filter(ctx))
            return -1;              /* the caller answers 451 */
        unavailable(ctx, t);
        return 0;
    }
    t->freq_id = r.id;
    return 0;
}

void clf_cancel(struct cl_ctx *ctx, struct cl_txn *t)
{
    if (ctx->fclnt && t->freq_id)
        filter_clnt_cancel(ctx->fclnt, t->freq_id);
    t->freq_id = 0;
}

void clf_close(struct cl_ctx *ctx)
{
    filter_clnt_free(ctx->fclnt);
    ctx->fclnt = NULL;
}
