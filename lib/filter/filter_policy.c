/*
 * filter_policy.c - the default policy (HACKING.md "Policy without rules"),
 * used by filter and by smtpd (filter_policy.h).
 *
 * rcpt stage: a recipient in local_domains or a domain block, or postmaster
 * (bare or at a local domain), is accepted when the process's local check
 * (policy_set_local_check) knows it, else 550 5.1.1; otherwise a client in
 * mynetworks or an authenticated one may relay; anything else is
 * "554 5.7.1 Relay access denied". Every other stage: next.
 * Never an open relay through sender-specified routing: a local part with
 * "%" or "!" (user%host@us, host!user@us) is not treated as local, and
 * user@host@us has domain "host@us" (TESTING.md item 12).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "mail/addr.h"
#include "filter/filter_policy.h"
#include "util/log.h"

static const struct config *pcfg;
static policy_local_fn *local_check;

void policy_init(const struct config *cfg)
{
    pcfg = cfg;
}

void policy_set_local_check(policy_local_fn *fn)
{
    local_check = fn;
}

/* The recipient as given: "<a@b>" is tolerated, the brackets dropped. */
static void bare_addr(const char *rcpt, buf_t *out)
{
    size_t n = strlen(rcpt);
    if (n >= 2 && rcpt[0] == '<' && rcpt[n - 1] == '>')
        buf_set(out, rcpt + 1, n - 2);
    else
        buf_set(out, rcpt, n);
}

void policy_local_verdict(int known, struct verdict_out *out)
{
    memset(out, 0, sizeof(*out));
    if (known > 0) {
        out->status = V_ACCEPT;
    } else if (known < 0) {
        out->status = V_TEMPFAIL;
        out->code = 451;
        str_copy(out->enhanced, sizeof(out->enhanced), "4.3.0");
        str_copy(out->text, sizeof(out->text), "Temporary local recipient lookup failure");
    } else {
        out->status = V_REJECT;
        out->code = 550;
        str_copy(out->enhanced, sizeof(out->enhanced), "5.1.1");
        str_copy(out->text, sizeof(out->text),
                 "Recipient address rejected: User unknown in local recipient table");
    }
}

int policy_local_query(enum stage st, const char *rcpt, buf_t *addr_r)
{
    if (st != STAGE_RCPT || pcfg == NULL || !policy_rcpt_is_local(pcfg, rcpt ? rcpt : ""))
        return 0;
    bare_addr(rcpt, addr_r);
    return 1;
}

/* A local recipient: the process's local check decides (known when
 * nobody checks). */
static void local_rcpt(const char *rcpt, struct verdict_out *out)
{
    if (local_check == NULL) {
        policy_local_verdict(1, out);
        return;
    }
    buf_t a;
    buf_init(&a, 64);
    bare_addr(rcpt, &a);
    int r = local_check(a.data);
    buf_free(&a);
    policy_local_verdict(r, out);
}

int policy_rcpt_is_local(const struct config *cfg, const char *rcpt)
{
    buf_t a;
    buf_init(&a, 64);
    bare_addr(rcpt, &a);
    size_t llen = addr_local_part_len(a.data);
    const char *dom = addr_domain(a.data);
    int local = 0;
    if (llen == 10 && strncasecmp(a.data, "postmaster", 10) == 0 &&
        (*dom == '\0' || config_is_local_domain(cfg, dom)))
        local = 1;
    else if (*dom != '\0' && memchr(a.data, '%', llen) == NULL &&
             memchr(a.data, '!', llen) == NULL && config_is_local_domain(cfg, dom))
        local = 1;
    buf_free(&a);
    return local;
}

int policy_client_trusted(const struct config *cfg, const char *ip, const char *auth_user)
{
    if (auth_user && *auth_user)
        return 1;
    if (ip == NULL || *ip == '\0')
        return 0;
    struct sockaddr_in s4;
    struct sockaddr_in6 s6;
    memset(&s4, 0, sizeof(s4));
    memset(&s6, 0, sizeof(s6));
    if (inet_pton(AF_INET, ip, &s4.sin_addr) == 1) {
        s4.sin_family = AF_INET;
        return cidr_match_sa(&cfg->mynetworks, (struct sockaddr *)&s4);
    }
    /* "[::1]" or "IPv6:::1" forms are tolerated */
    char tmp[64];
    const char *p = ip;
    if (strncasecmp(p, "IPv6:", 5) == 0)
        p += 5;
    if (*p == '[')
        p++;
    str_copy(tmp, sizeof(tmp), p);
    char *rb = strchr(tmp, ']');
    if (rb)
        *rb = '\0';
    if (inet_pton(AF_INET6, tmp, &s6.sin6_addr) == 1) {
        s6.sin6_family = AF_INET6;
        return cidr_match_sa(&cfg->mynetworks, (struct sockaddr *)&s6);
    }
    if (inet_pton(AF_INET, tmp, &s4.sin_addr) == 1) {
        s4.sin_family = AF_INET;
        return cidr_match_sa(&cfg->mynetworks, (struct sockaddr *)&s4);
    }
    return 0;
}

void policy_decide_stage(enum stage st, const char *rcpt, const char *client_ip,
                         const char *auth_user, struct verdict_out *out)
{
    memset(out, 0, sizeof(*out));
    out->status = V_NEXT;
    if (st != STAGE_RCPT)
        return;
    if (pcfg == NULL) {
        out->status = V_TEMPFAIL;
        return;
    }
    if (policy_rcpt_is_local(pcfg, rcpt ? rcpt : "")) {
        local_rcpt(rcpt, out);
        return;
    }
    if (policy_client_trusted(pcfg, client_ip, auth_user)) {
        out->status = V_ACCEPT;
        return;
    }
    out->status = V_REJECT;
    out->code = 554;
    str_copy(out->enhanced, sizeof(out->enhanced), "5.7.1");
    str_copy(out->text, sizeof(out->text), "Relay access denied");
}

void policy_decide(const struct ipc_filter_req *req, struct verdict_out *out)
{
    policy_decide_stage((enum stage)req->stage, req->rcpt, req->client_ip, req->auth_user, out);
}
