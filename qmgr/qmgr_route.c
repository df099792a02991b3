/*
 * qmgr_route.c - which delivery agent gets a recipient, and the next hop
 * it is told in DELIVER_RCPT.nexthop:
 *
 *   choice (deliver stage)   agent   nexthop
 *   none, local domain       local   ""               (local.mailbox)
 *   none, other domain       smtp    ""               (relayhost or MX)
 *   maildir / mbox / discard local   "maildir" "mbox" "discard"
 *   relay(r)                 smtp    ""               (MX, as without rules)
 *   forward(r, host)         smtp    "smtp:HOST"      ("[h]:port", "h:port", "h")
 *   lmtp(r, addr)            smtp    "lmtp:ADDR"      ("unix:/path", "[h]:port", "h:port")
 *   lmtp(r, "NAME")          the lmtp transport block NAME, as below
 *   transport(r, "NAME")     lmtp -> smtp "lmtp:ADDRESS"; smtp -> smtp "smtp:NEXTHOP"
 *                            (or "" without one); pipe -> pipe "NAME";
 *                            discard -> local "discard"
 *
 * A choice qmgr cannot use (a computed address that does not parse, a
 * socket in the spool or run_dir, a transport no longer configured)
 * defers the recipient with 4.3.5 and says why: a mistake in the rules or
 * the config must not bounce mail.
 *
 * Why nothing is written to the queue file: the deliver stage runs again
 * at every activation of a message (qmgr_active_advance), so after a qmgr
 * restart or a retry the same rules give the same route, and a reload that
 * changes the rules changes the routes of queued mail too, as Postfix's
 * transport maps do. A recipient that is done is never routed again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "qmgr.h"

/* Is path dir or below it? (the spool's private/ sockets and the run
 * directory are never an LMTP server, whatever a rule computes) */
static int under(const char *path, const char *dir)
{
    size_t n = dir ? strlen(dir) : 0;
    while (n > 1 && dir[n - 1] == '/')
        n--;
    return n > 0 && strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

/* Where recipient index goes: the pool, nexthop in nh; -1 with dsn/why
 * set when the choice cannot be used. */
static int resolve(const struct qmsg *m, uint32_t index, char *nh, size_t nhlen, char *why,
                   size_t whylen)
{
    const struct config *cfg = qmgr_g->cfg;
    const struct qroute *q = m->routes ? &m->routes[index] : NULL;
    const char *addr = m->env.rcpts[index].addr;
    int kind = q ? q->kind : QR_DEFAULT;
    const char *arg = q ? q->arg : "";
    const struct transport_conf *t = NULL;
    struct nexthop hop;
    buf_t msg;
    nh[0] = '\0';
    switch (kind) {
    case QR_MAILDIR: str_copy(nh, nhlen, "maildir"); return QPOOL_LOCAL;
    case QR_MBOX:    str_copy(nh, nhlen, "mbox"); return QPOOL_LOCAL;
    case QR_DISCARD: str_copy(nh, nhlen, "discard"); return QPOOL_LOCAL;
    case QR_RELAY:   return QPOOL_SMTP;
    case QR_FORWARD: case QR_LMTP:
        if (kind == QR_LMTP && config_is_transport_name(arg)) {
            t = config_transport(cfg, arg);
            if (t == NULL || t->type != TR_LMTP) {
                snprintf(why, whylen, "no lmtp transport \"%s\" in the configuration", arg);
                return -1;
            }
            break;
        }
        buf_init(&msg, 64);
        if (config_parse_nexthop(arg, kind == QR_LMTP ? 0 : cfg->smtp_port, kind == QR_LMTP,
                                 &hop, &msg) < 0) {
            snprintf(why, whylen, "%s: %s", kind == QR_LMTP ? "lmtp" : "forward", msg.data);
            buf_free(&msg);
            return -1;
        }
        buf_free(&msg);
        if (hop.is_unix && (under(hop.path, cfg->spool) || under(hop.path, cfg->run_dir))) {
            snprintf(why, whylen, "lmtp: %s is one of Postern's own sockets", hop.path);
            return -1;
        }
        snprintf(nh, nhlen, "%s:%s", kind == QR_LMTP ? "lmtp" : "smtp", arg);
        return QPOOL_SMTP;
    case QR_TRANSPORT:
        if ((t = config_transport(cfg, arg)) == NULL) {
            snprintf(why, whylen, "no transport \"%s\" in the configuration", arg);
            return -1;
        }
        break;
    default: {
        const char *at = strrchr(addr, '@');
        return at == NULL || config_is_local_domain(cfg, at + 1) ? QPOOL_LOCAL : QPOOL_SMTP;
    }
    }
    switch (t->type) {
    case TR_LMTP:
        snprintf(nh, nhlen, "lmtp:%s", t->address);
        return QPOOL_SMTP;
    case TR_SMTP:
        if (t->nexthop && t->nexthop[0])
            snprintf(nh, nhlen, "smtp:%s", t->nexthop);
        return QPOOL_SMTP;
    case TR_PIPE:
        str_copy(nh, nhlen, t->name);
        return QPOOL_PIPE;
    case TR_DISCARD:
        str_copy(nh, nhlen, "discard");
        return QPOOL_LOCAL;
    }
    snprintf(why, whylen, "transport \"%s\" has no type", arg);
    return -1;
}

int qmgr_route_resolve(struct qmsg *m, uint32_t index, struct qhop *h)
{
    char nh[QMGR_NEXTHOP_MAX], why[400];
    int pool = resolve(m, index, nh, sizeof(nh), why, sizeof(why));
    if (pool >= 0) {
        h->pool = pool;
        h->nexthop = nh[0] ? xstrdup(nh) : NULL;
        return 1;
    }
    char reason[512];
    snprintf(reason, sizeof(reason), "%s (chosen by rule \"%s\")", why,
             m->routes ? m->routes[index].rule : "");
    qmgr_active_outcome(m, index, DS_DEFERRED, "4.3.5", reason, "none", 1);
    return 0;
}

void qmgr_route_free(struct qmsg *m)
{
    for (int i = 0; m->hops && i < m->nidx; i++)
        free(m->hops[i].nexthop);
    free(m->hops);
    m->hops = NULL;
}
