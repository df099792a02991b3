/*
 * sendmail_bs.c - sendmail -bs: an SMTP dialogue on stdin/stdout, as
 * programs that speak SMTP to a pipe expect (RFC 5321 subset: HELO, EHLO,
 * MAIL, RCPT, DATA, RSET, NOOP, VRFY, HELP, QUIT). Each message goes the
 * same way as any other sendmail submission (sm_submit: Bcc removed, From:
 * added when missing, then postdrop into maildrop/), so the caller's uid is
 * recorded by postdrop, whatever MAIL FROM says. DSN: RET, BODY and the first recipient's NOTIFY apply to the
 * whole message (the maildrop file has one NOTIFY). The reply to the final
 * "." is 250 only once postdrop has the message on disk.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "sendmail.h"
#include "mail/qfile.h"
#include "mail/smtp_cmd.h"

#define BS_MAX_RCPTS 1000
#define BS_MAX_ERRORS 20

struct bs {
    const struct config *cfg;
    struct sm_in in;
    int helo;
    int have_mail;
    char *sender;
    struct sm_msg m;
    int errors;
};

static void reply(const char *fmt, ...) PRINTF_LIKE(1, 2);
static void reply(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    fputs("\r\n", stdout);
    va_end(ap);
    fflush(stdout);
}

static void bs_reset(struct bs *b)
{
    free(b->sender);
    b->sender = NULL;
    b->have_mail = 0;
    sm_list_free(&b->m.rcpts);
    b->m.notify = b->m.ret = 0;
    b->m.body_8bit = 0;
}

static void mail_params(struct bs *b, const struct smtp_mailrcpt *r)
{
    for (int i = 0; i < r->nparams; i++) {
        const struct esmtp_param *p = &r->params[i];
        if (esmtp_param_is(p, "BODY") && p->val)
            b->m.body_8bit = p->vallen == 8 && strncasecmp(p->val, "8BITMIME", 8) == 0;
        else if (esmtp_param_is(p, "RET") && p->val)
            b->m.ret = p->vallen == 4 && strncasecmp(p->val, "FULL", 4) == 0 ? 1 : 2;
    }
}

static void cmd_mail(struct bs *b, const struct smtp_cmd *c)
{
    if (b->have_mail) {
        reply("503 5.5.1 Error: nested MAIL command");
        return;
    }
    buf_t addr;
    buf_init(&addr, 64);
    struct smtp_mailrcpt r;
    if (smtp_cmd_mailrcpt(c->arg, c->arglen, "FROM:", ADDR_F_NULL_OK | ADDR_F_UTF8, &addr,
                          &r) != SMTP_MR_OK) {
        reply("501 5.1.7 Bad sender address syntax");
        buf_free(&addr);
        return;
    }
    mail_params(b, &r);
    b->sender = addr.len ? sm_qualify(addr.data, sm_origin(b->cfg)) : xstrdup("");
    buf_free(&addr);
    if (b->sender == NULL) {
        reply("501 5.1.7 Bad sender address syntax");
        return;
    }
    b->have_mail = 1;
    reply("250 2.1.0 Ok");
}

/* NOTIFY=SUCCESS,DELAY... of the first recipient that has one. */
static void rcpt_notify(struct bs *b, const struct smtp_mailrcpt *r)
{
    for (int i = 0; i < r->nparams && b->m.notify == 0; i++) {
        const struct esmtp_param *p = &r->params[i];
        if (!esmtp_param_is(p, "NOTIFY") || p->val == NULL)
            continue;
        char v[64];
        if (p->vallen >= sizeof(v))
            continue;
        memcpy(v, p->val, p->vallen);
        v[p->vallen] = '\0';
        struct sm_opts o = { 0 };
        char *argv[] = { "sendmail", "-N", v, NULL };
        char err[8];
        if (sm_parse_args(3, argv, &o, err, sizeof(err)) == 0)
            b->m.notify = o.notify;
    }
}

static void cmd_rcpt(struct bs *b, const struct smtp_cmd *c)
{
    if (!b->have_mail) {
        reply("503 5.5.1 Error: need MAIL command");
        return;
    }
    if (b->m.rcpts.n >= BS_MAX_RCPTS) {
        reply("452 4.5.3 Error: too many recipients");
        return;
    }
    buf_t addr;
    buf_init(&addr, 64);
    struct smtp_mailrcpt r;
    char *q = NULL;
    if (smtp_cmd_mailrcpt(c->arg, c->arglen, "TO:", ADDR_F_POSTMASTER | ADDR_F_UTF8, &addr,
                          &r) == SMTP_MR_OK)
        q = sm_qualify(addr.data, sm_origin(b->cfg));
    buf_free(&addr);
    if (q == NULL) {
        reply("501 5.1.3 Bad recipient address syntax");
        return;
    }
    rcpt_notify(b, &r);
    sm_list_add(&b->m.rcpts, q, strlen(q));
    free(q);
    reply("250 2.1.5 Ok");
}

/* DATA: the message goes the way of any other (sm_submit). */
static void cmd_data(struct bs *b)
{
    if (!b->have_mail || b->m.rcpts.n == 0) {
        reply(b->have_mail ? "554 5.5.1 Error: no valid recipients" :
              "503 5.5.1 Error: need RCPT command");
        return;
    }
    b->m.sender = b->sender;
    reply("354 End data with <CR><LF>.<CR><LF>");
    b->in.smtp = 1;
    int code = sm_submit(b->cfg, &b->in, &b->m);
    buf_t line;
    buf_init(&line, 256);
    while (sm_next_line(&b->in, &line) == 1)
        ;                           /* a refused message: read on to the dot */
    buf_free(&line);
    b->in.smtp = 0;
    if (!b->in.dot)
        return;                     /* EOF inside DATA: nothing queued, no one to tell */
    b->in.ended = b->in.dot = 0;
    if (code == 0)
        reply("250 2.0.0 Ok: queued");
    else if (code == EX_DATAERR)
        reply("554 5.6.0 Error: message refused (too big, or its header section too long)");
    else
        reply("451 4.3.0 Error: the message was not queued (sendmail status %d)", code);
    bs_reset(b);
}

/* One command; 1 = QUIT. */
static int bs_command(struct bs *b, const buf_t *line)
{
    struct smtp_cmd c;
    size_t n = line->len - 1;       /* without the LF */
    if (n > SMTP_LINE_MAX || smtp_cmd_split(line->data, n, &c) < 0) {
        reply("500 5.5.2 Error: bad syntax");
        b->errors++;
        return 0;
    }
    if (strcmp(c.verb, "QUIT") == 0) {
        reply("221 2.0.0 Bye");
        return 1;
    }
    if (strcmp(c.verb, "EHLO") == 0 || strcmp(c.verb, "HELO") == 0) {
        bs_reset(b);
        b->helo = 1;
        if (c.verb[0] == 'E')
            reply("250-%s\r\n250-8BITMIME\r\n250-DSN\r\n250 SMTPUTF8", b->cfg->hostname);
        else
            reply("250 %s", b->cfg->hostname);
    } else if (strcmp(c.verb, "MAIL") == 0) {
        cmd_mail(b, &c);
    } else if (strcmp(c.verb, "RCPT") == 0) {
        cmd_rcpt(b, &c);
    } else if (strcmp(c.verb, "DATA") == 0) {
        cmd_data(b);
    } else if (strcmp(c.verb, "RSET") == 0) {
        bs_reset(b);
        reply("250 2.0.0 Ok");
    } else if (strcmp(c.verb, "NOOP") == 0) {
        reply("250 2.0.0 Ok");
    } else if (strcmp(c.verb, "VRFY") == 0) {
        reply("252 2.0.0 Send some mail, I'll try my best");
    } else if (strcmp(c.verb, "HELP") == 0) {
        reply("214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP VRFY QUIT");
    } else {
        reply("502 5.5.2 Error: command not recognized");
        b->errors++;
    }
    return 0;
}

int sm_smtp(const struct config *cfg, const struct sm_opts *o, const char *login)
{
    struct bs b = { .cfg = cfg };
    b.in.max = cfg->message_size > 0 ? (size_t)cfg->message_size + 2 : (size_t)1 << 30;
    b.in.dots_ok = 1;
    buf_init(&b.in.buf, 65536);
    reply("220 %s ESMTP Postern (sendmail -bs, user %s)", cfg->hostname, login);
    buf_t line;
    buf_init(&line, 256);
    int rc;
    while ((rc = sm_next_line(&b.in, &line)) == 1) {
        if (bs_command(&b, &line))
            break;
        if (b.errors >= BS_MAX_ERRORS) {
            reply("421 4.7.0 Error: too many errors");
            break;
        }
    }
    if (rc < 0)
        reply("500 5.5.2 Error: line too long");
    buf_free(&line);
    bs_reset(&b);
    buf_free(&b.in.buf);
    return 0;
}
