/*
 * smtpd_auth.c - SMTP AUTH (RFC 4954) with PLAIN (RFC 4616) and LOGIN
 * against the auth.users file and the domains' users files
 * (lib/mail/auth.c).
 *
 * A login local@domain where the domain block has a users file that gives
 * local a hash is that domain's user (a tenant login): checked against that
 * file, and bound to the domain: its MAIL FROM must be <> or an address at
 * the domain (553 5.7.1), and cleanup signs its mail only for that domain.
 * Any other login is checked against auth.users and bound to nothing.
 *
 * Offered on listeners with auth != "none" when a users file is loaded, and
 * only over TLS unless auth.plaintext_without_tls (never before TLS on a
 * listener that requires TLS). Both mechanisms take an initial response
 * ("=" is an empty one) or ask with 334; "*" cancels (501 5.7.0). PLAIN's
 * authorization identity must be empty or equal to the user name. The
 * password check (yescrypt/bcrypt: 10-100 ms) runs in a pool of
 * AUTH_THREADS worker threads; the session waits (W_AUTH) and is resumed
 * from the loop. A success is then put to filter's auth stage.
 *
 * Failures are counted per client address in this process: from the
 * AUTH_FAIL_SLOW-th failure within AUTH_FAIL_WINDOW the 535 reply is held
 * back one more second per failure, at AUTH_FAIL_MAX the client hears
 * "421 4.7.0 Too many authentication failures" and is disconnected, and so
 * is every AUTH from that address until the window passes.
 *
 * Decoded credentials never reach a log line unescaped (user names go
 * through buf_append_printable, passwords are never logged) and are wiped
 * after use. The authenticated user goes to cleanup (Received: "with
 * ESMTPSA", the queue file) and to filter (relaying is allowed for it).
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <event2/event.h>
#include "smtpd.h"
#include "mail/addr.h"
#include "mail/auth.h"
#include "util/idna.h"
#include "util/log.h"

#define AUTH_THREADS      2
#define AUTH_FAIL_WINDOW  600     /* seconds a failure is remembered */
#define AUTH_FAIL_SLOW    3       /* from this failure on, 535 is delayed */
#define AUTH_FAIL_MAX     5       /* this failure ends the session with 421 */
#define AUTH_PARAM_MAX    500     /* MAIL ... AUTH= (xtext) */

enum auth_step { A_PLAIN, A_LOGIN_USER, A_LOGIN_PASS, A_CHECK, A_DELAY, A_FILTER };

struct smtpd_auth {
    enum auth_step step;
    const char *mech;
    char *user;                 /* authentication identity (decoded) */
    const char *domain;         /* a tenant login's domain (config-owned), else NULL */
    struct auth_job *job;       /* password check in flight */
    struct event *timer;        /* delayed failure reply */
};

static struct auth_users *users;
static struct auth_pool *pool;
/* The domains' users files: domain is the config's name of the block. */
static struct tenant { const char *domain; struct auth_users *u; } *tenants;
static int ntenants;

/* ---- per-client failure counts -------------------------------------------- */
#define FAIL_BUCKETS 256
struct fail { struct fail *next; char ip[INET6_ADDRSTRLEN]; int n; time_t last; };
static struct fail *fails[FAIL_BUCKETS];

static unsigned fail_hash(const char *ip)
{
    return str_hash(ip) % FAIL_BUCKETS;
}

/* The entry for ip (expired ones in its bucket are dropped); NULL if none. */
static struct fail *fail_find(const char *ip, int create)
{
    time_t now = time(NULL);
    struct fail **pp = &fails[fail_hash(ip)], *hit = NULL;
    while (*pp) {
        struct fail *f = *pp;
        if (now - f->last > AUTH_FAIL_WINDOW) {
            *pp = f->next;
            free(f);
            continue;
        }
        if (strcmp(f->ip, ip) == 0)
            hit = f;
        pp = &f->next;
    }
    if (hit || !create)
        return hit;
    hit = xcalloc(1, sizeof(*hit));
    str_copy(hit->ip, sizeof(hit->ip), ip);
    hit->next = fails[fail_hash(ip)];
    fails[fail_hash(ip)] = hit;
    return hit;
}

static int fail_record(const char *ip)
{
    struct fail *f = fail_find(ip, 1);
    f->last = time(NULL);
    return ++f->n;
}

static int fail_blocked(const char *ip)
{
    struct fail *f = fail_find(ip, 0);
    return f && f->n >= AUTH_FAIL_MAX;
}

/* ---- set-up and what is offered ------------------------------------------ */

void smtpd_auth_load(const struct config *cfg)
{
    buf_t err;
    buf_init(&err, 128);
    if (cfg->auth_users != NULL) {
        users = auth_users_load(cfg->auth_users, &err);
        if (users == NULL)
            log_error("auth.users: %s: its users cannot log in", err.data);
    }
    for (int i = 0; i < cfg->ndomains; i++) {
        const struct domain_conf *d = &cfg->domains[i];
        if (d->users == NULL || d->users[0] == '\0')
            continue;
        buf_reset(&err);
        struct auth_users *u = auth_users_load_domain(d->users, d->name, &err);
        if (u == NULL) {
            log_error("domain %s users: %s: its users cannot log in", d->name, err.data);
            continue;
        }
        tenants = xrealloc(tenants, sizeof(*tenants) * (size_t)(ntenants + 1));
        tenants[ntenants++] = (struct tenant){ d->name, u };
    }
    buf_free(&err);
}

void smtpd_auth_init(struct event_base *base)
{
    if (users || ntenants)
        pool = auth_pool_new(base, AUTH_THREADS);
}

void smtpd_auth_shutdown(void)
{
    auth_pool_free(pool);
    pool = NULL;
    auth_users_free(users);
    users = NULL;
    for (int i = 0; i < ntenants; i++)
        auth_users_free(tenants[i].u);
    free(tenants);
    tenants = NULL;
    ntenants = 0;
}

static int auth_enabled(const struct smtpd_session *s)
{
    return (users != NULL || ntenants > 0) && pool != NULL && s->lis->conf->auth_offered;
}

/* AUTH may be used now (TLS condition met). */
static int auth_usable(const struct smtpd_session *s)
{
    if (!auth_enabled(s))
        return 0;
    if (s->tls_on)
        return 1;
    return smtpd_cfg->auth_plaintext_without_tls && !smtpd_tls_needed(s);
}

void smtpd_auth_ehlo(struct smtpd_session *s)
{
    if (auth_usable(s))
        smtpd_reply_raw(s, "250-AUTH PLAIN LOGIN");
}

int smtpd_auth_mail_check(struct smtpd_session *s)
{
    if (!s->lis->conf->auth_required || s->auth_user)
        return 0;
    smtpd_reply(s, 530, "5.7.0", "Authentication required");
    return -1;
}

int smtpd_auth_sender_check(struct smtpd_session *s, const char *sender)
{
    if (s->auth_domain == NULL || sender[0] == '\0')
        return 0;
    const char *at = strrchr(sender, '@');
    char ace[IDNA_ASCII_MAX];           /* U-labels (SMTPUTF8): the A-labels configured */
    const char *d = at != NULL ? idna_lookup_name(at + 1, ace) : NULL;
    if (d != NULL && strcasecmp(d, s->auth_domain) == 0)
        return 0;
    buf_t text;
    buf_init(&text, 128);
    buf_printf(&text, "<%s>: Sender address rejected: not owned by the authenticated user",
               sender);
    smtpd_reply(s, 553, "5.7.1", "%s", text.data);
    smtpd_log_reject(s, "MAIL", 553, "5.7.1", text.data, NULL);
    buf_free(&text);
    return -1;
}

int smtpd_auth_mail_param(struct smtpd_session *s, const struct esmtp_param *p)
{
    /* AUTH=<> or AUTH=xtext-mailbox: checked, then ignored (we do not relay
     * the identity of another submitter) */
    if (p->val == NULL || p->vallen == 0 || p->vallen > AUTH_PARAM_MAX) {
        smtpd_reply(s, 501, "5.5.4", "Bad AUTH parameter");
        return -1;
    }
    if (p->vallen == 2 && memcmp(p->val, "<>", 2) == 0)
        return 0;
    buf_t d;
    buf_init(&d, p->vallen + 1);
    int rc = xtext_decode(p->val, p->vallen, &d);
    buf_free(&d);
    if (rc < 0) {
        smtpd_reply(s, 501, "5.5.4", "Bad AUTH parameter");
        return -1;
    }
    return 0;
}

/* ---- the exchange --------------------------------------------------------- */

static void auth_free(struct smtpd_auth *a)
{
    if (a == NULL)
        return;
    if (a->job)
        auth_job_cancel(a->job);
    if (a->timer)
        event_free(a->timer);
    free(a->user);
    free(a);
}

static void auth_end(struct smtpd_session *s)
{
    auth_free(s->auth);
    s->auth = NULL;
}

void smtpd_auth_reset(struct smtpd_session *s)
{
    auth_end(s);
    free(s->auth_user);
    s->auth_user = NULL;
    s->auth_domain = NULL;
}

void smtpd_auth_session_free(struct smtpd_session *s)
{
    smtpd_auth_reset(s);
}

/* Strict base64 (RFC 4648, padded); -1 on anything else. */
static int b64_decode(const char *in, size_t n, buf_t *out)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (n % 4 != 0)
        return -1;
    for (size_t i = 0; i < n; i += 4) {
        unsigned v = 0;
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            char c = in[i + k];
            const char *q = c ? strchr(al, c) : NULL;
            if (c == '=' && i + 4 == n && k >= 2 && (k == 3 || in[i + 3] == '=')) {
                pad++;
                v <<= 6;
                continue;
            }
            if (q == NULL || pad)
                return -1;
            v = (v << 6) | (unsigned)(q - al);
        }
        char b[3] = { (char)(v >> 16), (char)(v >> 8), (char)v };
        buf_append(out, b, (size_t)(3 - pad));
    }
    return 0;
}

/* A client response: "*" cancels, else base64. 0 ok, -1 replied (and
 * the exchange ended). */
static int response(struct smtpd_session *s, const char *line, size_t len, buf_t *out)
{
    if (len == 1 && line[0] == '*') {
        smtpd_reply(s, 501, "5.7.0", "Authentication cancelled");
        auth_end(s);
        return -1;
    }
    if (b64_decode(line, len, out) < 0 || out->len > AUTH_FIELD_MAX * 3) {
        smtpd_reply(s, 501, "5.5.2", "Invalid base64 data");
        auth_end(s);
        return -1;
    }
    return 0;
}

static void reply_failure(struct smtpd_session *s)
{
    smtpd_reply(s, 535, "5.7.8", "Authentication credentials invalid");
}

static void on_delay(evutil_socket_t fd, short what, void *arg)
{
    struct smtpd_session *s = arg;
    reply_failure(s);
    auth_end(s);
    s->wait = W_NONE;
    smtpd_session_resume(s);
}

/* A failed attempt: 535 now, 535 later, or 421 and close. */
static void failed(struct smtpd_session *s, const char *why)
{
    int n = fail_record(s->ip);
    struct log_ev e;
    smtpd_ev(&e, LE_AUTH_FAILED, s);
    log_ev_str(&e, LF_MECHANISM, s->auth->mech);
    log_ev_printf(&e, LF_USER, "%.64s", s->auth->user ? s->auth->user : "");
    log_ev_str(&e, LF_REASON, why);
    log_ev_num(&e, LF_FAILURES, n);
    log_ev_emit(&e);
    if (n >= AUTH_FAIL_MAX) {
        log_warn("too many authentication failures from [%s]:%u: disconnecting", s->ip,
                 s->port);
        smtpd_reply(s, 421, "4.7.0", "Too many authentication failures");
        auth_end(s);
        smtpd_session_close(s);
        return;
    }
    if (n < AUTH_FAIL_SLOW) {
        reply_failure(s);
        auth_end(s);
        return;
    }
    struct timeval tv = { n - AUTH_FAIL_SLOW + 1, 0 };
    s->auth->step = A_DELAY;
    s->auth->timer = evtimer_new(smtpd_server->base, on_delay, s);
    evtimer_add(s->auth->timer, &tv);
    s->wait = W_AUTH;
}

/* The worker finished the password check (loop thread). */
static void on_checked(void *arg, int ok)
{
    struct smtpd_session *s = arg;
    s->auth->job = NULL;
    s->wait = W_NONE;
    if (!ok) {
        failed(s, "bad credentials");
        if (s->wait == W_NONE)
            smtpd_session_resume(s);
        return;
    }
    s->auth->step = A_FILTER;
    free(s->auth_user);
    s->auth_user = xstrdup(s->auth->user);      /* filter's auth stage sees it */
    s->auth_domain = s->auth->domain;
    smtpd_cmd_ask_verb(s, "AUTH");
    if (s->wait == W_NONE)
        smtpd_session_resume(s);                /* the verdict came at once */
}

/* filter's verdict on an authenticated user (the AUTH row's on_verdict). */
void smtpd_auth_verdict(struct smtpd_session *s, const struct smtpd_verdict *v)
{
    if (s->auth == NULL)
        log_panic("AUTH verdict without an exchange");
    int go = v->status == V_NEXT || v->status == V_ACCEPT || v->status == V_FACCEPT;
    if (!go) {
        free(s->auth_user);
        s->auth_user = NULL;
        s->auth_domain = NULL;
        smtpd_reply_verdict(s, "AUTH", STAGE_AUTH, v);
        auth_end(s);
        return;
    }
    struct log_ev e;
    smtpd_ev(&e, LE_AUTH, s);
    log_ev_str(&e, LF_MECHANISM, s->auth->mech);
    log_ev_printf(&e, LF_USER, "%.64s", s->auth_user);
    log_ev_emit(&e);
    smtpd_reply(s, 235, "2.7.0", "Authentication successful");
    auth_end(s);
}

/* The stored hash for login user, or NULL: from the users file of its
 * domain when that gives its local part one (*domain: that domain), else
 * from auth.users (*domain NULL). */
static const char *login_hash(const char *user, const char **domain)
{
    *domain = NULL;
    const char *at = strrchr(user, '@');
    size_t ll = at ? (size_t)(at - user) : 0;
    for (int i = 0; at && ll > 0 && ll <= AUTH_FIELD_MAX && i < ntenants; i++) {
        if (strcasecmp(at + 1, tenants[i].domain) != 0)
            continue;
        char local[AUTH_FIELD_MAX + 1];
        for (size_t k = 0; k < ll; k++)
            local[k] = (char)tolower((unsigned char)user[k]);
        local[ll] = '\0';
        auth_users_refresh(&tenants[i].u);
        const char *h = auth_users_hash(tenants[i].u, local);
        if (h != NULL) {
            *domain = tenants[i].domain;
            return h;
        }
        break;
    }
    if (users == NULL)
        return NULL;
    auth_users_refresh(&users);
    return auth_users_hash(users, user);
}

/* User and password decoded: start the check (or fail at once). */
static void check(struct smtpd_session *s, const char *user, size_t ulen, const char *pass,
                  size_t plen)
{
    struct smtpd_auth *a = s->auth;
    free(a->user);
    a->user = xstrndup(user, ulen);
    if (ulen == 0 || ulen > AUTH_FIELD_MAX || plen > AUTH_FIELD_MAX ||
        memchr(user, '\0', ulen) || memchr(pass, '\0', plen)) {
        failed(s, "malformed credentials");
        return;
    }
    const char *hash = login_hash(a->user, &a->domain);
    a->step = A_CHECK;
    a->job = auth_pool_submit(pool, hash, pass, plen, on_checked, s);
    s->wait = W_AUTH;
}

/* PLAIN: [authzid] NUL authcid NUL passwd */
static void plain(struct smtpd_session *s, const buf_t *d)
{
    const char *p = d->data, *end = d->data + d->len;
    const char *n1 = memchr(p, '\0', d->len);
    const char *n2 = n1 ? memchr(n1 + 1, '\0', (size_t)(end - n1 - 1)) : NULL;
    if (n1 == NULL || n2 == NULL) {
        failed(s, "malformed PLAIN response");
        return;
    }
    size_t zlen = (size_t)(n1 - p), ulen = (size_t)(n2 - n1 - 1);
    if (zlen != 0 && (zlen != ulen || memcmp(p, n1 + 1, ulen) != 0)) {
        free(s->auth->user);
        s->auth->user = xstrndup(n1 + 1, ulen);
        failed(s, "authorization identity differs from the user");
        return;
    }
    check(s, n1 + 1, ulen, n2 + 1, (size_t)(end - n2 - 1));
}

/* One response to the exchange; d is decoded. */
static void step(struct smtpd_session *s, buf_t *d)
{
    struct smtpd_auth *a = s->auth;
    switch (a->step) {
    case A_PLAIN:
        plain(s, d);
        break;
    case A_LOGIN_USER:
        free(a->user);
        a->user = xstrndup(d->data, d->len);
        if (d->len > AUTH_FIELD_MAX || memchr(d->data, '\0', d->len)) {
            failed(s, "malformed user name");
            break;
        }
        a->step = A_LOGIN_PASS;
        smtpd_reply_raw(s, "334 UGFzc3dvcmQ6");     /* "Password:" */
        break;
    case A_LOGIN_PASS: {
        char *user = xstrdup(a->user);
        check(s, user, strlen(user), d->data, d->len);
        free(user);
        break;
    }
    default:
        log_panic("AUTH response in step %d", (int)a->step);
    }
}

void smtpd_auth_line(struct smtpd_session *s, const char *line, size_t len)
{
    buf_t d;
    buf_init(&d, len);
    if (response(s, line, len, &d) == 0)
        step(s, &d);
    explicit_bzero(d.data, d.cap);
    buf_free(&d);
}

void smtpd_auth_cmd(struct smtpd_session *s, const char *arg, size_t len)
{
    if (!auth_enabled(s)) {
        smtpd_reply(s, 503, "5.5.1", "Error: authentication not enabled");
        return;
    }
    if (!auth_usable(s)) {
        if (smtpd_tls_offered(s))
            smtpd_reply(s, 530, "5.7.0", "Must issue a STARTTLS command first");
        else
            smtpd_reply(s, 503, "5.5.1", "Error: authentication not enabled");
        return;
    }
    if (s->auth_user) {
        smtpd_reply(s, 503, "5.5.1", "Error: already authenticated");
        return;
    }
    if (s->txn) {
        smtpd_reply(s, 503, "5.5.1", "Error: MAIL transaction in progress");
        return;
    }
    if (fail_blocked(s->ip)) {
        log_warn("too many authentication failures from [%s]:%u: disconnecting", s->ip,
                 s->port);
        smtpd_reply(s, 421, "4.7.0", "Too many authentication failures");
        smtpd_session_close(s);
        return;
    }
    size_t mlen = 0;
    while (mlen < len && arg[mlen] != ' ')
        mlen++;
    const char *ir = mlen < len ? arg + mlen + 1 : NULL;
    size_t irlen = ir ? len - mlen - 1 : 0;
    if (mlen == 0) {
        smtpd_reply(s, 501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
        return;
    }
    const char *mech = mlen == 5 && strncasecmp(arg, "PLAIN", 5) == 0 ? "PLAIN" :
                       mlen == 5 && strncasecmp(arg, "LOGIN", 5) == 0 ? "LOGIN" : NULL;
    if (mech == NULL) {
        smtpd_reply(s, 504, "5.5.4", "Unrecognized authentication type");
        return;
    }
    s->auth = xcalloc(1, sizeof(*s->auth));
    s->auth->mech = mech;
    s->auth->step = mech[0] == 'P' ? A_PLAIN : A_LOGIN_USER;
    if (ir == NULL) {
        smtpd_reply_raw(s, mech[0] == 'P' ? "334 " : "334 VXNlcm5hbWU6");   /* "Username:" */
        return;
    }
    if (irlen == 1 && ir[0] == '=')
        irlen = 0;                          /* "=": an empty initial response */
    else if (irlen == 0) {
        smtpd_reply(s, 501, "5.5.2", "Invalid base64 data");
        auth_end(s);
        return;
    }
    smtpd_auth_line(s, ir, irlen);
}
