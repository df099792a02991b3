/*
 * smtpd_local.c - is a recipient at a local domain someone we deliver to?
 * (lib/local/local_rcpt.h; the default policy answers 550 5.1.1 when not,
 * smtpd_filter.c asks here through policy_local_query.)
 *
 * smtpd lives in an empty jail: no /etc/passwd, no aliases index. So before
 * the jail a helper process is forked (smtpd_local_pre_drop): it drops to
 * the user like every child (not jailed, not dumpable, dies with smtpd) and
 * answers one question per packet on a SOCK_SEQPACKET pair:
 * {u32 id, address} -> {u32 id, '1' | '0' | 'T'}. Its HELPER_THREADS
 * threads each take the next question, so one slow lookup (getpwnam goes
 * through NSS, which may wait on a network directory; a users file may sit
 * on a slow disk) holds up only itself; answers come back in any order,
 * matched by id.
 *
 * smtpd never waits for the helper: a question is sent without blocking
 * and its answer read by an event of the loop; each question has a timer
 * (LOCAL_CHECK_MS) after which it is a temporary failure (451), and at
 * most LOCAL_PENDING_MAX are open at once (more: 451 at once), so a stuck
 * helper costs bounded memory. A late answer is recognised by its id and
 * dropped. Must never let the helper keep a listener or the readiness
 * pipe, never block the loop.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <event2/event.h>

#include "util/hash.h"
#include "smtpd.h"
#include "local/local_rcpt.h"
#include "util/clock.h"
#include "util/log.h"

#define LOCAL_CHECK_MS     5000
#define LOCAL_ADDR_MAX     1024
#define LOCAL_PENDING_MAX  256
#define HELPER_THREADS     4
#define LOCAL_CACHE_SLOTS  256        /* answers kept (direct-mapped by hash) */
#define LOCAL_CACHE_ADDR   128        /* longer addresses are always asked */
#define LOCAL_CACHE_MS     10000      /* how long a yes or no is believed */

/* ---- the helper (its own process) ----------------------------------------- */

struct helper_arg {
    const struct config *cfg;
    int fd;
};

/* One helper thread: answer until smtpd goes away. Each thread has its own
 * alias reader; concurrent recv/send on a SEQPACKET socket take and give
 * whole packets. */
static void *helper_thread(void *arg)
{
    const struct helper_arg *h = arg;
    struct aliases_db *db = aliases_db_new(h->cfg->local_aliases);
    unsigned char q[4 + LOCAL_ADDR_MAX + 1];
    for (;;) {
        ssize_t n = recv(h->fd, q, sizeof(q) - 1, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 4)
            _exit(0);
        q[n] = '\0';
        int r = memchr(q + 4, '\0', (size_t)n - 4)
                    ? 0 : local_rcpt_known(h->cfg, db, (char *)q + 4);
        unsigned char a[5];
        memcpy(a, q, 4);
        a[4] = r > 0 ? '1' : r == 0 ? '0' : 'T';
        if (send(h->fd, a, sizeof(a), MSG_NOSIGNAL) < 0)
            _exit(0);
    }
    return NULL;
}

static void __attribute__((noreturn)) helper(const struct config *cfg, int fd)
{
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    server_drop_privileges(cfg);
    prctl(PR_SET_DUMPABLE, 0);
    static struct helper_arg h;
    h.cfg = cfg;
    h.fd = fd;
    for (int i = 1; i < HELPER_THREADS; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, helper_thread, &h) != 0)
            log_warn("local recipient helper: cannot start thread %d", i);
    }
    helper_thread(&h);
    _exit(0);
}

/* ---- smtpd's side ---------------------------------------------------------- */

struct local_q {
    struct local_q *next, *prev;
    uint32_t id;
    smtpd_local_fn *cb;
    void *arg;
    struct event *timer;
    char addr[LOCAL_CACHE_ADDR];    /* for the cache; "" when too long */
};

/* ---- answers kept a little while --------------------------------------------
 * The same recipients come again and again; each question costs a round
 * trip to the helper (two wake-ups, a getpwnam reading /etc/passwd, an
 * aliases lookup). A yes or a no is kept LOCAL_CACHE_MS, never a temporary
 * failure: a user added or removed is seen within that time (as behind
 * nscd, which keeps passwd answers longer). Bounded: LOCAL_CACHE_SLOTS
 * entries, a newer answer takes the slot. */
struct local_ans {
    int64_t expires_ms;
    int known;
    char addr[LOCAL_CACHE_ADDR];
};
static struct local_ans cache[LOCAL_CACHE_SLOTS];

static struct local_ans *cache_slot(const char *addr)
{
    return &cache[fnv1a_str(FNV1A_INIT, addr) % LOCAL_CACHE_SLOTS];
}

/* 1 or 0 when a fresh answer is kept, else -1. */
static int cache_get(const char *addr)
{
    struct local_ans *e = cache_slot(addr);
    if (e->addr[0] == '\0' || strcmp(e->addr, addr) != 0 || e->expires_ms <= clock_now_ms())
        return -1;
    return e->known;
}

static void cache_put(const char *addr, int known)
{
    if (addr[0] == '\0' || known < 0)
        return;
    struct local_ans *e = cache_slot(addr);
    str_copy(e->addr, sizeof(e->addr), addr);
    e->known = known;
    e->expires_ms = clock_now_ms() + LOCAL_CACHE_MS;
}

static int qfd = -1;
static uint32_t next_id;
static struct event_base *lbase;
static struct event *answer_ev;
static struct local_q *open_qs;
static int nopen;

/* Close q: off the list, its callback told known (1, 0, -1). */
static void finish(struct local_q *q, int known)
{
    if (q->prev)
        q->prev->next = q->next;
    else
        open_qs = q->next;
    if (q->next)
        q->next->prev = q->prev;
    nopen--;
    cache_put(q->addr, known);
    event_free(q->timer);
    smtpd_local_fn *cb = q->cb;
    void *arg = q->arg;
    free(q);
    cb(known, arg);
}

/* The helper is gone: every open question fails, and so does every later one. */
static void helper_gone(void)
{
    log_error("local recipient check: helper gone: local recipients get 451");
    if (answer_ev)
        event_free(answer_ev);
    answer_ev = NULL;
    close(qfd);
    qfd = -1;
    while (open_qs)
        finish(open_qs, -1);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    log_warn("local recipient check: no answer within %d ms", LOCAL_CHECK_MS);
    finish(arg, -1);
}

static void on_answer(evutil_socket_t fd, short what, void *arg)
{
    for (;;) {
        unsigned char a[5];
        ssize_t n = recv(qfd, a, sizeof(a), MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n != 5) {
            helper_gone();
            return;
        }
        uint32_t id;
        memcpy(&id, a, 4);
        struct local_q *q = open_qs;
        while (q && q->id != id)
            q = q->next;
        if (q)                      /* else: an answer after its timeout */
            finish(q, a[4] == '1' ? 1 : a[4] == '0' ? 0 : -1);
        /* no question left open: no answer is due, so no recv() that can
         * only say EAGAIN (a late one keeps the socket readable) */
        if (open_qs == NULL || qfd < 0)
            return;
    }
}

int smtpd_local_ask(const char *addr, smtpd_local_fn *cb, void *arg)
{
    size_t len = strlen(addr);
    if (qfd < 0 || answer_ev == NULL)
        return -1;
    if (len > LOCAL_ADDR_MAX)
        return 0;                   /* longer than any address we deliver to */
    int kept = len < LOCAL_CACHE_ADDR ? cache_get(addr) : -1;
    if (kept >= 0)
        return kept;
    if (nopen >= LOCAL_PENDING_MAX) {
        log_warn("local recipient check: %d questions open: 451", nopen);
        return -1;
    }
    unsigned char pkt[4 + LOCAL_ADDR_MAX];
    uint32_t id = ++next_id;
    memcpy(pkt, &id, 4);
    memcpy(pkt + 4, addr, len);
    if (send(qfd, pkt, 4 + len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
        log_error("local recipient check: %m");
        return -1;
    }
    struct local_q *q = xcalloc(1, sizeof(*q));
    q->id = id;
    q->cb = cb;
    q->arg = arg;
    if (len < LOCAL_CACHE_ADDR)
        memcpy(q->addr, addr, len + 1);
    q->timer = evtimer_new(lbase, on_timeout, q);
    struct timeval tv = { LOCAL_CHECK_MS / 1000, (LOCAL_CHECK_MS % 1000) * 1000 };
    evtimer_add(q->timer, &tv);
    q->next = open_qs;
    if (open_qs)
        open_qs->prev = q;
    open_qs = q;
    nopen++;
    return SMTPD_LOCAL_ASKED;
}

void smtpd_local_init(struct event_base *base)
{
    lbase = base;
    if (qfd < 0)
        return;
    fd_set_nonblock(qfd, 1);
    answer_ev = event_new(base, qfd, EV_READ | EV_PERSIST, on_answer, NULL);
    event_add(answer_ev, NULL);
}

void smtpd_local_shutdown(void)
{
    while (open_qs)
        finish(open_qs, -1);
    if (answer_ev)
        event_free(answer_ev);
    answer_ev = NULL;
}

void smtpd_local_pre_drop(struct server *srv)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        log_fatal("socketpair: %m");
    pid_t pid = fork();
    if (pid < 0)
        log_fatal("fork: %m");
    if (pid == 0) {
        /* nothing of smtpd's: no listener, no readiness pipe */
        for (int i = 0; i < srv->nfds; i++)
            close(srv->fds[i].fd);
        if (srv->ready_fd >= 0)
            close(srv->ready_fd);
        close(sv[0]);
        helper(srv->cfg, sv[1]);
    }
    close(sv[1]);
    qfd = sv[0];
}
