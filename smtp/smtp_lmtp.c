/*
 * smtp_lmtp.c - the next hops qmgr chooses (qmgr/qmgr_route.c), and LMTP.
 *
 * DELIVER_RCPT.nexthop "smtp:HOST" (forward(host), an smtp transport's
 * nexthop) sends the recipient by SMTP to HOST as if it were the
 * relayhost: "[host]:port", "host:port" or "host" (A/AAAA, no MX).
 * "lmtp:ADDR" (lmtp(addr), an lmtp transport) speaks LMTP (RFC 2033) to
 * "unix:/path" or "[host]:port" / "host:port": the SMTP dialogue of
 * smtp_session.c with LHLO instead of EHLO, no HELO fallback, no STARTTLS,
 * and after the final "." one reply per recipient the peer accepted at
 * RCPT, in RCPT order (smtp_lmtp_replies): 2xx delivered, 4xx deferred,
 * 5xx bounced, each recipient on its own.
 *
 * The next hop was checked by qmgr; it is parsed again here (never
 * trusted): a bad one defers with 4.3.5.
 */
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include "smtp.h"
#include "util/log.h"

/* A host's addresses (a literal in brackets, or a name through the libc
 * resolver, as for delivery.relayhost). */
static int hop_inet(struct smtp_hop *hop, const struct nexthop *nh, char *why, size_t whylen)
{
    const char *host = nh->host;
    if (nh->bracketed && strncasecmp(host, "IPv6:", 5) == 0)
        host += 5;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    char port[8];
    snprintf(port, sizeof(port), "%d", nh->port);
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(why, whylen, "%.200s: %s", host, gai_strerror(rc));
        return -1;
    }
    for (struct addrinfo *a = res; a && hop->naddr < SMTP_MAX_ADDRS; a = a->ai_next) {
        if (a->ai_addrlen > sizeof(hop->addr[0]))
            continue;
        memcpy(&hop->addr[hop->naddr], a->ai_addr, a->ai_addrlen);
        hop->addrlen[hop->naddr++] = a->ai_addrlen;
    }
    freeaddrinfo(res);
    str_copy(hop->host, sizeof(hop->host), host);
    hop->port = nh->port;
    if (hop->naddr == 0) {
        snprintf(why, whylen, "%.200s: no address", host);
        return -1;
    }
    return 0;
}

/* nexthop "smtp:HOST" / "lmtp:ADDR" into hop. 0, or -1 with dsn/why. */
static int hop_from(const struct config *cfg, const char *nexthop, struct smtp_hop *hop,
                    char *dsn, size_t dsnlen, char *why, size_t whylen)
{
    memset(hop, 0, sizeof(*hop));
    str_copy(dsn, dsnlen, "4.3.5");
    hop->lmtp = strncmp(nexthop, "lmtp:", 5) == 0;
    if (!hop->lmtp && strncmp(nexthop, "smtp:", 5) != 0) {
        snprintf(why, whylen, "next hop \"%.100s\" not served by the smtp agent", nexthop);
        return -1;
    }
    const char *spec = nexthop + 5;
    str_copy(hop->key, sizeof(hop->key), spec);
    struct nexthop nh;
    buf_t msg;
    buf_init(&msg, 64);
    int rc = config_parse_nexthop(spec, hop->lmtp ? 0 : cfg->smtp_port, hop->lmtp, &nh, &msg);
    if (rc < 0)
        snprintf(why, whylen, "bad next hop: %s", msg.data);
    buf_free(&msg);
    if (rc < 0)
        return -1;
    if (!nh.is_unix) {
        str_copy(dsn, dsnlen, "4.4.3");
        return hop_inet(hop, &nh, why, whylen);
    }
    struct sockaddr_un *su = (struct sockaddr_un *)&hop->addr[0];
    su->sun_family = AF_UNIX;
    str_copy(su->sun_path, sizeof(su->sun_path), nh.path);
    hop->addrlen[0] = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(nh.path) + 1);
    hop->naddr = 1;
    snprintf(hop->host, sizeof(hop->host), "unix:%s", nh.path);
    return 0;
}

void smtp_lmtp_deliver(const struct smtp_msg *m, struct smtp_rcpt *rr, uint32_t n,
                       uint32_t first)
{
    struct smtp_rcpt **group = xcalloc(n, sizeof(*group));
    int k = 0;
    for (uint32_t j = first; j < n; j++)
        if (!rr[j].done && strcmp(rr[j].nexthop, rr[first].nexthop) == 0)
            group[k++] = &rr[j];
    struct smtp_hop hop;
    char dsn[16], why[QF_REASON_MAX + 1];
    if (hop_from(m->cfg, rr[first].nexthop, &hop, dsn, sizeof(dsn), why, sizeof(why)) < 0) {
        for (int g = 0; g < k; g++)
            smtp_rcpt_set(m, group[g], "none", DS_DEFERRED, dsn, "%s", why);
    } else {
        smtp_times_start();
        smtp_session_deliver(m, &hop, group, k, NULL, NULL);   /* never kept */
    }
    free(group);
}

/* The outcome one LMTP reply gives its recipient. */
static void lmtp_outcome(const struct smtp_msg *m, struct smtp_rcpt *r, const char *relay,
                         const struct smtp_reply *rp)
{
    char text[QF_REASON_MAX + 1], dsn[16];
    int cls = rp->code / 100;
    smtp_reply_format(rp, text, sizeof(text));
    if (rp->enh[0] == (char)('0' + cls))   /* the parser keeps only a well-formed code */
        str_copy(dsn, sizeof(dsn), rp->enh);
    else
        snprintf(dsn, sizeof(dsn), "%d.0.0", cls == 2 ? 2 : cls == 5 ? 5 : 4);
    if (cls == 2)
        smtp_rcpt_set(m, r, relay, DS_DELIVERED, dsn, "%s", text);
    else
        smtp_rcpt_set(m, r, relay, cls == 5 ? DS_BOUNCED : DS_DEFERRED, dsn,
                      "host %s said: %s (in reply to end of DATA)", relay, text);
}

int smtp_lmtp_replies(const struct smtp_msg *m, struct sio *io, const char *relay,
                      struct smtp_rcpt **rr, int n, int timeout)
{
    struct smtp_reply *rp = xmalloc(sizeof(*rp));
    int rc = 0;
    for (int i = 0; i < n; i++) {
        struct smtp_rcpt *r = rr[i];
        if (!r->accepted || r->done)
            continue;
        if (rc == 0 && sio_reply(io, rp, timeout) < 0)
            rc = -1;
        if (rc < 0) {
            smtp_rcpt_set(m, r, relay, DS_DEFERRED, "4.4.2", "%s %s (waiting for the LMTP "
                          "reply for this recipient after end of DATA)%s%s",
                          io->timed_out ? "conversation timed out with" :
                          "lost connection with", relay, io->timed_out ? "" : ": ",
                          io->timed_out ? "" : io->err);
            continue;
        }
        log_trace(TRACE_SMTP, "%s < %d %s", relay, rp->code, rp->text);
        lmtp_outcome(m, r, relay, rp);
    }
    free(rp);
    return rc;
}
