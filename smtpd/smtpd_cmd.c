/*
 * smtpd_cmd.c - the SMTP verbs: one table {verb, flags, stage, handler,
 * on_verdict} and the handlers.
 *
 * A handler checks syntax and sequence and either answers at once or asks
 * filter for the verb's stage; the answer comes back through the row's
 * on_verdict (immediately when filter is skipped by faccept or down).
 * Replies carry enhanced status codes (RFC 2034) except the greeting and
 * the EHLO/HELO 250 lines. The parsing of lines and addresses lives in
 * lib/mail/smtp_cmd.c and lib/mail/addr.c (pure, fuzzed).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include "smtpd.h"
#include "mail/smtp_cmd.h"
#include "mail/addr.h"
#include "mail/qfile.h"
#include "util/log.h"
#include "metrics/metrics.h"

enum {
    F_PRE_HELO = 1,     /* allowed before HELO/EHLO */
    F_LAST     = 2,     /* must be last in a pipelined group (RFC 2920) */
    F_NO_ARG   = 4,     /* takes no argument */
    F_ABUSE    = 8,     /* not SMTP (HTTP through a proxy): hang up */
    F_JUNK     = 16,    /* moves no mail: counted against limits.junk_commands */
};

typedef void cmd_fn(struct smtpd_session *s, const char *arg, size_t len);
typedef void verdict_fn(struct smtpd_session *s, const struct smtpd_verdict *v);

struct smtpd_cmd {
    const char *verb;
    unsigned flags;
    enum stage stage;           /* filter stage asked, if any */
    cmd_fn *fn;
    verdict_fn *on_verdict;
};

static cmd_fn cmd_ehlo, cmd_helo, cmd_mail, cmd_rcpt, cmd_data, cmd_rset, cmd_noop,
              cmd_quit, cmd_help, cmd_vrfy, cmd_abuse;
static verdict_fn v_helo, v_mail, v_rcpt, v_connect;

static const struct smtpd_cmd cmds[] = {
    { "EHLO", F_PRE_HELO | F_LAST,   STAGE_HELO, cmd_ehlo, v_helo },
    { "HELO", F_PRE_HELO | F_LAST,   STAGE_HELO, cmd_helo, v_helo },
    { "MAIL", 0,                     STAGE_MAIL, cmd_mail, v_mail },
    { "RCPT", 0,                     STAGE_RCPT, cmd_rcpt, v_rcpt },
    { "DATA", F_LAST | F_NO_ARG,     STAGE_DATA, cmd_data, NULL },
    { "RSET", F_PRE_HELO | F_NO_ARG | F_JUNK, STAGE__COUNT, cmd_rset, NULL },
    { "NOOP", F_PRE_HELO | F_JUNK,   STAGE__COUNT, cmd_noop, NULL },
    { "QUIT", F_PRE_HELO | F_NO_ARG, STAGE__COUNT, cmd_quit, NULL },
    { "HELP", F_PRE_HELO | F_JUNK,   STAGE__COUNT, cmd_help, NULL },
    { "VRFY", F_PRE_HELO | F_JUNK,   STAGE__COUNT, cmd_vrfy, NULL },
    { "GET",  F_PRE_HELO | F_ABUSE,  STAGE__COUNT, cmd_abuse, NULL },
    { "POST", F_PRE_HELO | F_ABUSE,  STAGE__COUNT, cmd_abuse, NULL },
    { "CONNECT", F_PRE_HELO | F_ABUSE, STAGE__COUNT, cmd_abuse, NULL },
    { "BDAT", F_PRE_HELO,            STAGE__COUNT, smtpd_bdat_cmd, NULL },  /* smtpd_bdat.c */
    { "STARTTLS", F_LAST | F_NO_ARG, STAGE__COUNT, smtpd_tls_cmd_starttls, NULL }, /* smtpd_tls.c */
    { "AUTH", 0,                     STAGE_AUTH, smtpd_auth_cmd, smtpd_auth_verdict }, /* smtpd_auth.c */
};
#define NCMDS ((int)(sizeof(cmds) / sizeof(cmds[0])))
#define CMD_UNKNOWN NCMDS

_Static_assert(NCMDS + 1 <= SMTPD_NCMD_COUNT, "counts[] too small");

/* the connect stage is not a verb, but its verdict arrives the same way */
static const struct smtpd_cmd connect_row = { "CONNECT", 0, STAGE_CONNECT, NULL, v_connect };

int smtpd_cmd_count(void) { return NCMDS + 1; }
int smtpd_cmd_index_unknown(void) { return CMD_UNKNOWN; }

const char *smtpd_cmd_name(int i)
{
    static char names[NCMDS][16];
    if (i >= NCMDS)
        return "unknown";
    if (names[i][0] == '\0')
        for (int k = 0; cmds[i].verb[k] && k < 15; k++)
            names[i][k] = (char)tolower((unsigned char)cmds[i].verb[k]);
    return names[i];
}

static int verdict_goes_on(enum verdict v)
{
    return v == V_NEXT || v == V_ACCEPT || v == V_FACCEPT || v == V_QUARANTINE;
}

static int filter_skipped(const struct smtpd_session *s)
{
    return s->faccept || (s->txn && s->txn->faccept);
}

/* Ask filter for the row's stage, or apply the verdict now when filter is
 * skipped (faccept) or unavailable (tempfail: 451 4.3.0). */
static void ask(struct smtpd_session *s, const struct smtpd_cmd *c, const char *rcpt)
{
    struct smtpd_verdict v = { V_ACCEPT, 0, "", "", "" };
    s->wait_cmd = c;
    if (!filter_skipped(s) && smtpd_filter_wanted(c->stage, rcpt)) {
        if (smtpd_filter_ask(s, c->stage, rcpt) == 0) {
            s->wait = W_FILTER;
            return;
        }
        v.status = V_TEMPFAIL;
        v.rule = "(filter unavailable)";
    }
    c->on_verdict(s, &v);
    s->wait_cmd = NULL;
    free(s->wait_arg);
    s->wait_arg = NULL;
    smtpd_txn_free(s->wait_txn);
    s->wait_txn = NULL;
}

void smtpd_cmd_ask_verb(struct smtpd_session *s, const char *verb)
{
    for (int i = 0; i < NCMDS; i++) {
        if (strcmp(cmds[i].verb, verb) == 0 && cmds[i].on_verdict) {
            ask(s, &cmds[i], "");
            return;
        }
    }
    log_panic("no filter stage for verb %s", verb);
}

/* filter answered (called by smtpd_filter.c); may free s */
void smtpd_cmd_verdict(struct smtpd_session *s, const struct smtpd_verdict *v)
{
    const struct smtpd_cmd *c = s->wait_cmd;
    s->wait = W_NONE;
    if (c == NULL)
        log_panic("verdict for a session not waiting for one");
    char was[32];                       /* nested in another session's callback? */
    str_copy(was, sizeof(was), log_session());
    log_set_session(s->sid);
    if (v->status == V_FACCEPT) {
        if (c->stage <= STAGE_HELO)
            s->faccept = 1;
        else if (s->txn)
            s->txn->faccept = 1;
        else if (s->wait_txn)
            s->wait_txn->faccept = 1;
    }
    char *rcpt = c->stage == STAGE_RCPT && s->wait_arg ? xstrdup(s->wait_arg) : NULL;
    smtpd_rules_before(s, c->stage, v);     /* smtpd_rules.c: the reply's mutations */
    c->on_verdict(s, v);
    if (c->stage == STAGE_MAIL || c->stage == STAGE_RCPT)
        smtpd_rules_after(s, c->stage, rcpt, v);
    free(rcpt);
    s->wait_cmd = NULL;
    free(s->wait_arg);
    s->wait_arg = NULL;
    smtpd_txn_free(s->wait_txn);
    s->wait_txn = NULL;
    smtpd_session_resume(s);
    log_set_session(was);
}

/* A new connection: ask filter at connect; the greeting follows its verdict. */
void smtpd_cmd_connect(struct smtpd_session *s)
{
    ask(s, &connect_row, "");
}

/* ---- the line dispatcher ------------------------------------------------ */

void smtpd_cmd_line(struct smtpd_session *s, const char *line, size_t len)
{
    struct smtp_cmd c;
    s->ncommands++;
    if (log_trace_on(TRACE_SMTP)) {
        buf_t b;
        buf_init(&b, len + 16);
        log_append_client_line(&b, line, len);     /* AUTH's response: redacted */
        log_trace(TRACE_SMTP, "[%s]:%u > %s", s->ip, s->port, b.data);
        buf_free(&b);
    }
    if (memchr(line, '\0', len)) {
        s->counts[CMD_UNKNOWN]++;
        smtpd_reply_local(s, LR_NUL_COMMAND);
        return;
    }
    if (smtpd_server->stopping && s->txn == NULL) {
        smtpd_reply_local(s, LR_SHUTDOWN);
        smtpd_session_close(s);
        return;
    }
    int i = NCMDS;
    if (smtp_cmd_split(line, len, &c) == 0)
        for (i = 0; i < NCMDS; i++)
            if (strcmp(c.verb, cmds[i].verb) == 0)
                break;
    s->counts[i]++;
    if (i == NCMDS) {
        smtpd_reply(s, 502, "5.5.1", "Command not recognized");
        return;
    }
    const struct smtpd_cmd *row = &cmds[i];
    /* like Postfix's smtpd_junk_command_limit: a session that only says
     * NOOP/HELP/VRFY/RSET (the count restarts at each message queued) */
    if ((row->flags & F_JUNK) && smtpd_cfg->junk_commands > 0 &&
        ++s->junk > (unsigned)smtpd_cfg->junk_commands) {
        log_warn("too many junk commands from [%s]:%u", s->ip, s->port);
        smtpd_reply_local(s, LR_JUNK);
        smtpd_session_close(s);
        return;
    }
    if (row->flags & F_ABUSE) {
        row->fn(s, c.arg, c.arglen);
        return;
    }
    if (!(row->flags & F_PRE_HELO) && s->helo == NULL) {
        smtpd_reply(s, 503, "5.5.1", "Error: send HELO/EHLO first");
        return;
    }
    if ((row->flags & F_NO_ARG) && c.arglen > 0) {
        smtpd_reply(s, 501, "5.5.4", "Syntax: %s", row->verb);
        return;
    }
    if ((row->flags & F_LAST) &&
        evbuffer_get_length(bufferevent_get_input(s->bev)) > 0) {
        log_warn("improper pipelining after %s from [%s]:%u", row->verb, s->ip, s->port);
        smtpd_reply(s, 554, "5.5.0", "Improper pipelining after %s", row->verb);
        smtpd_session_close(s);
        return;
    }
    row->fn(s, c.arg, c.arglen);
}

/* ---- connect / HELO / EHLO ---------------------------------------------- */

static void v_connect(struct smtpd_session *s, const struct smtpd_verdict *v)
{
    if (!verdict_goes_on(v->status)) {
        unsigned code;
        const char *enh;
        buf_t text;
        buf_init(&text, 128);
        smtpd_verdict_reply(v, STAGE_CONNECT, &code, &enh, &text);
        code = code >= 500 ? 554 : 421;     /* the only greeting refusals (RFC 5321 3.1) */
        if (enh[0] != (char)('0' + code / 100))
            enh = code == 554 ? "5.7.1" : "4.3.0";
        smtpd_reply(s, code, enh, "%s", text.data);
        smtpd_log_reject(s, "CONNECT", code, enh, text.data, v->rule);
        buf_free(&text);
        smtpd_session_close(s);
        return;
    }
    if (smtpd_server->stopping) {
        smtpd_reply_local(s, LR_SHUTDOWN);
        smtpd_session_close(s);
        return;
    }
    if (smtpd_session_early_talker(s)) {
        log_warn("improper pipelining before greeting from [%s]:%u", s->ip, s->port);
        smtpd_reply(s, 554, "5.5.0", "Improper pipelining before greeting");
        smtpd_session_close(s);
        return;
    }
    char line[600];
    snprintf(line, sizeof(line), "220 %s ESMTP Postern", smtpd_cfg->hostname);
    smtpd_reply_raw(s, line);
    s->state = SS_CMD;
    metric_add(MET_SMTPD_SESSIONS, 1, s->lis->name, NULL);
}

static int helo_name_ok(const char *arg, size_t len)
{
    if (len == 0 || len > 255)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)arg[i];
        if (c < 0x20 || c == 0x7f)
            return 0;
    }
    return addr_utf8_valid(arg, len);   /* 8-bit only as UTF-8: logs stay valid text */
}

static void helo_common(struct smtpd_session *s, const char *arg, size_t len, const char *verb)
{
    if (len == 0) {
        smtpd_reply(s, 501, "5.5.4", "Syntax: %s hostname", verb);
        return;
    }
    if (!helo_name_ok(arg, len)) {
        smtpd_reply(s, 501, "5.5.2", "Invalid %s hostname", verb);
        return;
    }
    smtpd_session_reset(s);        /* EHLO/HELO end a transaction (RFC 5321 4.1.4) */
    free(s->wait_arg);
    s->wait_arg = xstrndup(arg, len);
    ask(s, verb[0] == 'E' ? &cmds[0] : &cmds[1], "");
}

static void cmd_ehlo(struct smtpd_session *s, const char *arg, size_t len)
{
    helo_common(s, arg, len, "EHLO");
}

static void cmd_helo(struct smtpd_session *s, const char *arg, size_t len)
{
    helo_common(s, arg, len, "HELO");
}

static void v_helo(struct smtpd_session *s, const struct smtpd_verdict *v)
{
    int esmtp = s->wait_cmd == &cmds[0];
    if (!verdict_goes_on(v->status)) {
        smtpd_reply_verdict(s, esmtp ? "EHLO" : "HELO", STAGE_HELO, v);
        return;
    }
    s->esmtp = esmtp;
    free(s->helo);
    s->helo = s->wait_arg;
    s->wait_arg = NULL;
    struct log_ev e;
    smtpd_ev(&e, LE_HELO, s);
    log_ev_str(&e, LF_HELO, s->helo);
    log_ev_str(&e, LF_COMMAND, esmtp ? "EHLO" : "HELO");
    log_ev_str(&e, LF_RULE, v->rule && *v->rule ? v->rule : NULL);
    log_ev_emit(&e);
    char line[600];
    if (!s->esmtp) {
        snprintf(line, sizeof(line), "250 %s", smtpd_cfg->hostname);
        smtpd_reply_raw(s, line);
        return;
    }
    snprintf(line, sizeof(line), "250-%s", smtpd_cfg->hostname);
    smtpd_reply_raw(s, line);
    smtpd_reply_raw(s, "250-PIPELINING");
    if (smtpd_cfg->message_size > 0) {
        snprintf(line, sizeof(line), "250-SIZE %lld", (long long)smtpd_cfg->message_size);
        smtpd_reply_raw(s, line);
    } else {
        smtpd_reply_raw(s, "250-SIZE");
    }
    smtpd_reply_raw(s, "250-8BITMIME");
    smtpd_tls_ehlo(s);              /* STARTTLS (smtpd_tls.c) */
    smtpd_auth_ehlo(s);             /* AUTH PLAIN LOGIN (smtpd_auth.c) */
    smtpd_esmtp_keywords(s);        /* SMTPUTF8, DSN, CHUNKING (smtpd_esmtp.c) */
    smtpd_reply_raw(s, "250 ENHANCEDSTATUSCODES");
}

/* ---- MAIL ------------------------------------------------------------------ */

static void reply_addr_error(struct smtpd_session *s, int rc, const struct smtp_mailrcpt *r,
                             int sender)
{
    const char *verb = sender ? "MAIL FROM" : "RCPT TO";
    const char *enh = sender ? "5.1.7" : "5.1.3";
    const char *what = sender ? "sender" : "recipient";
    switch (rc) {
    case SMTP_MR_SYNTAX:
        smtpd_reply(s, 501, "5.5.4", "Syntax: %s:<address>", verb);
        break;
    case SMTP_MR_ADDR:
        if (r->addr_err == ADDR_ERR_SYNTAX || r->addr_err == ADDR_ERR_NULL)
            smtpd_reply(s, 501, enh, "Bad %s address syntax", what);
        else
            smtpd_reply(s, 553, enh, "Bad %s address: %s", what, addr_strerror(r->addr_err));
        break;
    default:
        smtpd_reply(s, 501, "5.5.4", "Bad parameter syntax");
        break;
    }
}

/* SIZE= and BODY=; 0 ok, -1 replied */
static int mail_params(struct smtpd_session *s, const struct smtp_mailrcpt *r,
                       struct smtpd_txn *t)
{
    int seen_size = 0, seen_body = 0;
    for (int i = 0; i < r->nparams; i++) {
        const struct esmtp_param *p = &r->params[i];
        if (!s->esmtp) {
            smtpd_esmtp_unsupported(s, p);
            return -1;
        }
        if (esmtp_param_is(p, "SIZE")) {
            uint64_t v = 0;
            if (seen_size++ || p->val == NULL || p->vallen > 19) {
                smtpd_reply(s, 501, "5.5.4", "Bad SIZE parameter");
                return -1;
            }
            for (size_t k = 0; k < p->vallen; k++) {
                if (!isdigit((unsigned char)p->val[k])) {
                    smtpd_reply(s, 501, "5.5.4", "Bad SIZE parameter");
                    return -1;
                }
                v = v * 10 + (uint64_t)(p->val[k] - '0');
            }
            if (smtpd_cfg->message_size > 0 && v > (uint64_t)smtpd_cfg->message_size) {
                smtpd_reply_local(s, LR_SIZE_DECLARED);
                return -1;
            }
            t->size_hint = v;
        } else if (esmtp_param_is(p, "BODY")) {
            if (seen_body++ || p->val == NULL) {
                smtpd_reply(s, 501, "5.5.4", "Bad BODY parameter");
                return -1;
            }
            if (p->vallen == 8 && strncasecmp(p->val, "8BITMIME", 8) == 0) {
                t->flags |= QF_F_8BITMIME;
            } else if (!(p->vallen == 4 && strncasecmp(p->val, "7BIT", 4) == 0)) {
                smtpd_reply(s, 501, "5.5.4", "Bad BODY parameter");
                return -1;
            }
        } else if (esmtp_param_is(p, "AUTH")) {         /* smtpd_auth.c */
            if (smtpd_auth_mail_param(s, p) < 0)
                return -1;
        } else if (smtpd_esmtp_mail_param(s, p, t) < 0) {   /* SMTPUTF8, RET, ENVID */
            return -1;
        }
    }
    return 0;
}

static void cmd_mail(struct smtpd_session *s, const char *arg, size_t len)
{
    if (s->txn) {
        smtpd_reply(s, 503, "5.5.1", "Error: nested MAIL command");
        return;
    }
    if (smtpd_tls_mail_check(s) < 0 || smtpd_auth_mail_check(s) < 0)   /* 530 5.7.0 */
        return;
    buf_t addr;
    struct smtp_mailrcpt r;
    buf_init(&addr, 64);
    int rc = smtp_cmd_mailrcpt(arg, len, "FROM:", ADDR_F_NULL_OK | ADDR_F_UTF8, &addr, &r);
    if (rc != SMTP_MR_OK) {
        reply_addr_error(s, rc, &r, 1);
        buf_free(&addr);
        return;
    }
    struct smtpd_txn *t = xcalloc(1, sizeof(*t));
    if (mail_params(s, &r, t) < 0 || smtpd_esmtp_mail_check(s, addr.data, t) < 0 ||
        smtpd_auth_sender_check(s, addr.data) < 0) {
        smtpd_txn_free(t);
        buf_free(&addr);
        return;
    }
    t->sender = buf_steal(&addr);
    buf_free(&addr);
    smtpd_txn_free(s->wait_txn);
    s->wait_txn = t;
    if (smtpd_spf_mail(s))
        return;                         /* smtpd_spf.c asks at MAIL when done */
    ask(s, &cmds[2], "");
}

static void v_mail(struct smtpd_session *s, const struct smtpd_verdict *v)
{
    if (!verdict_goes_on(v->status)) {
        smtpd_reply_verdict(s, "MAIL", STAGE_MAIL, v);
        return;
    }
    s->txn = s->wait_txn;
    s->wait_txn = NULL;
    struct log_ev e;
    smtpd_ev(&e, LE_MAIL, s);
    log_ev_str(&e, LF_SENDER, s->txn->sender);
    log_ev_str(&e, LF_RULE, v->rule && *v->rule ? v->rule : NULL);
    log_ev_emit(&e);
    smtpd_reply(s, 250, "2.1.0", "Ok");
}

/* ---- RCPT ------------------------------------------------------------------ */

static void cmd_rcpt(struct smtpd_session *s, const char *arg, size_t len)
{
    if (s->txn == NULL) {
        smtpd_reply(s, 503, "5.5.1", "Error: need MAIL command");
        return;
    }
    if (s->txn->bdat) {
        smtpd_reply(s, 503, "5.5.1", "Error: RCPT after BDAT");
        return;
    }
    buf_t addr;
    struct smtp_mailrcpt r;
    buf_init(&addr, 64);
    int rc = smtp_cmd_mailrcpt(arg, len, "TO:", ADDR_F_POSTMASTER | ADDR_F_UTF8, &addr, &r);
    if (rc != SMTP_MR_OK) {
        reply_addr_error(s, rc, &r, 0);
        buf_free(&addr);
        return;
    }
    if (smtpd_esmtp_rcpt(s, addr.data, &r) < 0) {     /* NOTIFY, ORCPT, SMTPUTF8 */
        buf_free(&addr);
        return;
    }
    if (smtpd_cfg->recipients > 0 &&      /* rule-added recipients do not count */
        s->txn->nrcpts - s->txn->nextra + s->txn->nremoved >= smtpd_cfg->recipients) {
        smtpd_reply_local(s, LR_TOO_MANY_RCPTS);
        buf_free(&addr);
        return;
    }
    free(s->wait_arg);
    s->wait_arg = buf_steal(&addr);
    buf_free(&addr);
    ask(s, &cmds[3], s->wait_arg);
}

static void v_rcpt(struct smtpd_session *s, const struct smtpd_verdict *v)
{
    if (s->txn == NULL)
        log_panic("RCPT verdict without a transaction");
    if (!verdict_goes_on(v->status)) {
        smtpd_reply_verdict(s, "RCPT", STAGE_RCPT, v);
        free(s->wait_orcpt);
        s->wait_orcpt = NULL;
        if (v->status == V_DENY)
            smtpd_session_reset(s);
        return;
    }
    struct smtpd_txn *t = s->txn;
    if (t->nrcpts == t->rcap) {
        t->rcap = t->rcap ? t->rcap * 2 : 4;
        t->rcpts = xrealloc(t->rcpts, sizeof(*t->rcpts) * (size_t)t->rcap);
        t->orcpts = xrealloc(t->orcpts, sizeof(*t->orcpts) * (size_t)t->rcap);
        t->notify = xrealloc(t->notify, sizeof(*t->notify) * (size_t)t->rcap);
    }
    t->orcpts[t->nrcpts] = s->wait_orcpt;
    t->notify[t->nrcpts] = s->wait_notify;
    s->wait_orcpt = NULL;
    t->rcpts[t->nrcpts++] = s->wait_arg;
    s->wait_arg = NULL;
    struct log_ev e;
    smtpd_ev(&e, LE_RCPT, s);
    log_ev_str(&e, LF_SENDER, t->sender);
    log_ev_str(&e, LF_RECIPIENT, t->rcpts[t->nrcpts - 1]);
    log_ev_str(&e, LF_RULE, v->rule && *v->rule ? v->rule : NULL);
    log_ev_emit(&e);
    smtpd_reply(s, 250, "2.1.5", "Ok");
}

/* ---- DATA and the simple verbs -------------------------------------------- */

static void cmd_data(struct smtpd_session *s, const char *arg, size_t len)
{
    if (s->txn == NULL) {
        smtpd_reply(s, 503, "5.5.1", "Error: need MAIL command");
        return;
    }
    if (s->txn->bdat) {
        smtpd_reply(s, 503, "5.5.1", "Error: DATA after BDAT");
        return;
    }
    if (s->txn->nrcpts == 0 || s->txn->nrcpts - s->txn->nextra + s->txn->nremoved == 0) {
        smtpd_reply_local(s, LR_NO_RCPTS);
        return;
    }
    smtpd_data_start(s);
}

static void cmd_rset(struct smtpd_session *s, const char *arg, size_t len)
{
    smtpd_session_reset(s);
    smtpd_reply(s, 250, "2.0.0", "Ok");
}

static void cmd_noop(struct smtpd_session *s, const char *arg, size_t len)
{
    smtpd_reply(s, 250, "2.0.0", "Ok");
}

static void cmd_quit(struct smtpd_session *s, const char *arg, size_t len)
{
    smtpd_reply(s, 221, "2.0.0", "Bye");
    smtpd_session_close(s);
}

static void cmd_help(struct smtpd_session *s, const char *arg, size_t len)
{
    smtpd_reply(s, 214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY");
}

static void cmd_vrfy(struct smtpd_session *s, const char *arg, size_t len)
{
    if (len == 0) {
        smtpd_reply(s, 501, "5.5.4", "Syntax: VRFY address");
        return;
    }
    smtpd_reply(s, 252, "2.5.2", "Cannot VRFY user; try RCPT to attempt delivery");
}

static void cmd_abuse(struct smtpd_session *s, const char *arg, size_t len)
{
    log_warn("non-SMTP command from [%s]:%u: hanging up", s->ip, s->port);
    smtpd_session_close(s);
}
