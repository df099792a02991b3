/*
 * pickup_file.c - one maildrop file to cleanup: opened without following
 * links, a regular file with one link and bounded size, every record framed
 * and checked (md_rec_next, md_check) as it is read; the envelope goes out
 * as CLEANUP_BEGIN/RCPT when the first content record arrives, the content
 * as CLEANUP_DATA in pieces of about MD_REC_MAX (however the caller cut its
 * records), and END only after the file's own END record was read
 * and checked. Anything wrong after BEGIN aborts the transaction (END
 * abort=1), so cleanup never queues a half-checked message.
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "pickup.h"
#include "ipc/ipc.h"
#include "mail/addr.h"
#include "mail/dsn.h"
#include "mail/local_reply.h"
#include "mail/maildrop.h"
#include "mail/qfile.h"
#include "mail/spool.h"
#include "mail/stage.h"
#include "util/log.h"
#include "util/log_event.h"
#include "metrics/metrics.h"

#define PK_OVERHEAD (16u << 20)     /* envelope and framing beyond the content */
#define PK_ORIG_MAX (64u << 10)     /* the start of the content a report quotes */

struct pk {
    const struct config *cfg;
    const char *name;
    struct stat st;
    struct md_state md;
    char *sender;
    char **rcpts; int nrcpts;
    char login[MD_TEXT_MAX + 1];
    int utf8;
    struct ipc_conn c;
    int connected;                  /* BEGIN sent */
    int ended;                      /* END sent: cleanup answered or is gone */
    buf_t data;                     /* content not yet sent: the caller cuts the
                                     * records (1 byte each is valid), we send
                                     * CLEANUP_DATA in pieces of MD_REC_MAX */
    buf_t orig;                     /* the first PK_ORIG_MAX bytes of content:
                                     * the header section a report quotes */
};

static void pk_free(struct pk *p)
{
    free(p->sender);
    for (int i = 0; i < p->nrcpts; i++)
        free(p->rcpts[i]);
    free(p->rcpts);
    buf_free(&p->data);
    buf_free(&p->orig);
    if (p->c.fd >= 0)
        ipc_conn_close(&p->c);
}

static char *dup_rec(const struct md_rec *r)
{
    return xstrndup((const char *)r->p, r->len);
}

/* The user: the file's owner (the USER record must agree) and its login. */
static int pk_user(struct pk *p)
{
    if (p->md.uid != (uint32_t)p->st.st_uid) {
        log_warn("maildrop/%s: user record says uid %u, the file belongs to uid %u",
                 p->name, (unsigned)p->md.uid, (unsigned)p->st.st_uid);
        return -1;
    }
    struct passwd *pw = getpwuid(p->st.st_uid);
    const char *login = pw && pw->pw_name[0] ? pw->pw_name : p->md.login;
    str_copy(p->login, sizeof(p->login), login);
    return 0;
}

static void set_timeouts(int fd)
{
    struct timeval rt = { PK_REPLY_TIMEOUT, 0 }, st = { PK_SEND_TIMEOUT, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rt, sizeof(rt));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &st, sizeof(st));
}

/* Connect c to cleanup, HELLO, BEGIN (sender, flags, p's user), RCPT x n.
 * 0, or -1 (cleanup unavailable). */
static int pk_open(struct pk *p, struct ipc_conn *c, const char *sender, char *const *rcpts,
                   int n, uint32_t notify, uint32_t flags)
{
    static uint64_t counter;
    int fd = ipc_connect_unix(SOCK_CLEANUP);
    if (fd < 0) {
        log_warn("maildrop/%s: cannot connect to %s: %m (will retry)", p->name, SOCK_CLEANUP);
        return -1;
    }
    set_timeouts(fd);
    ipc_conn_init(c, fd, "cleanup");
    if (ipc_hello_client(c, IPC_PROTO_CLEANUP) < 0)
        return -1;
    struct ipc_cleanup_begin b = {
        .session = (uint64_t)getpid() << 32 | ++counter, .listener = "pickup",
        .sender = sender, .client_ip = "", .client_port = 0, .client_ptr = "", .helo = "",
        .protocol = "local", .auth_user = "", .tls = "", .envid = "", .ret = p->md.ret,
        .flags = flags, .size_hint = 0, .local_user = p->login,
        .local_uid = (uint32_t)p->st.st_uid,
    };
    if (ipc_queue(c, IPC_CLEANUP_BEGIN, &b) < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        struct ipc_cleanup_rcpt r = { rcpts[i], "", notify };
        if (ipc_queue(c, IPC_CLEANUP_RCPT, &r) < 0)
            return -1;
    }
    return ipc_flush(c);
}

static int pk_begin(struct pk *p)
{
    p->connected = 1;
    uint32_t flags = (p->md.body_8bit ? QF_F_8BITMIME : 0) | (p->utf8 ? QF_F_SMTPUTF8 : 0);
    return pk_open(p, &p->c, p->sender, p->rcpts, p->nrcpts, p->md.notify, flags);
}

/* END of c's transaction and cleanup's reply into *m: 0, or -1 (no answer). */
static int pk_finish(struct ipc_conn *c, union ipc_msg *m)
{
    struct ipc_cleanup_end e = { 0 };
    return ipc_send(c, IPC_CLEANUP_END, &e) == 0 && ipc_expect(c, IPC_CLEANUP_REPLY, m) == 1 ?
           0 : -1;
}

/* A well-formed submission refused for good: sendmail has long exited 0
 * and there is no SMTP client to answer, so the sender gets a failure
 * report (from <>, like qmgr's: lib/mail/dsn.h), as Postfix's local
 * submission does. None for a <> sender or when no recipient wants one.
 * 0 queued (or none due), -1 not queued (logged; the file is kept and
 * tried again). */
static int pk_bounce(struct pk *p, const char *enh, const char *why)
{
    if (p->sender == NULL || p->sender[0] == '\0' ||
        !dsn_wanted(p->md.notify, DSN_FAILED) || p->nrcpts == 0)
        return 0;
    char id[QUEUE_ID_MAX + 1], msgid[QUEUE_ID_MAX + 300], boundary[QUEUE_ID_MAX + 300];
    queue_id_new(id, sizeof(id));
    int64_t now = (int64_t)time(NULL);
    dsn_names(msgid, sizeof(msgid), boundary, sizeof(boundary), id, now, p->cfg->hostname);
    struct dsn_rcpt *rr = xcalloc((size_t)p->nrcpts, sizeof(*rr));
    for (int i = 0; i < p->nrcpts; i++)
        rr[i] = (struct dsn_rcpt){ p->rcpts[i], "", enh, why, now, 0 };
    struct dsn_msg d = {
        .action = DSN_FAILED, .hostname = p->cfg->hostname, .to = p->sender,
        .queue_id = p->name, .message_id = msgid, .boundary = boundary, .envid = "",
        .arrival = (int64_t)p->st.st_mtime, .now = now, .full = 0,
        .rcpts = rr, .nrcpts = p->nrcpts,
    };
    buf_t text;
    buf_init(&text, 4096);
    dsn_format(&text, &d, p->orig.data ? p->orig.data : "",
               dsn_header_len(p->orig.data ? p->orig.data : "", p->orig.len));
    free(rr);
    struct ipc_conn c;
    c.fd = -1;
    char *to[1] = { p->sender };
    uint32_t flags = QF_F_DSN | (p->utf8 ? QF_F_SMTPUTF8 : 0);
    int ok = pk_open(p, &c, "", to, 1, NOTIFY_NONE, flags) == 0;
    for (size_t off = 0; ok && off < text.len; off += MD_REC_MAX) {
        size_t n = text.len - off < MD_REC_MAX ? text.len - off : MD_REC_MAX;
        struct ipc_cleanup_data dd = { { (const unsigned char *)text.data + off, n } };
        ok = ipc_send(&c, IPC_CLEANUP_DATA, &dd) == 0;
    }
    union ipc_msg m;
    ok = ok && pk_finish(&c, &m) == 0;
    /* only "not now" keeps the file: a report refused for good (a rule, a
     * bad address) is logged, never retried in a loop */
    unsigned st = ok ? m.cleanup_reply.status : V_TEMPFAIL;
    int again = st == V_DEFER || st == V_TEMPFAIL;
    if (st == V_ACCEPT || st == V_NEXT)
        log_info("maildrop/%s: failure report to <%s> queued as %s", p->name, p->sender,
                 m.cleanup_reply.queue_id);
    else
        log_warn("maildrop/%s: the failure report to <%s> was %s", p->name, p->sender,
                 again ? "not queued (will retry)" : "refused: the sender is not told");
    if (c.fd >= 0)
        ipc_conn_close(&c);
    buf_free(&text);
    return again ? -1 : 0;
}

/* END and the reply. */
static enum pk_result pk_end(struct pk *p)
{
    union ipc_msg m;
    p->ended = 1;                   /* the transaction is over: no abort after it */
    if (pk_finish(&p->c, &m) < 0) {
        log_warn("maildrop/%s: no answer from cleanup (will retry)", p->name);
        return PK_RETRY;
    }
    const struct ipc_cleanup_reply *r = &m.cleanup_reply;
    if (r->status == V_ACCEPT || r->status == V_NEXT) {
        struct log_ev ev;
        log_ev_init(&ev, LE_PICKUP);
        log_ev_printf(&ev, LF_PATH, "maildrop/%s", p->name);
        log_ev_num(&ev, LF_UID, p->st.st_uid);
        log_ev_str(&ev, LF_USER, p->login);
        log_ev_str(&ev, LF_SENDER, p->sender);
        log_ev_num(&ev, LF_NRCPT, p->nrcpts);
        log_ev_str(&ev, LF_QUEUE_ID, r->queue_id);
        log_ev_emit(&ev);
        metric_add(MET_MSG_ACCEPTED, 1, "pickup", NULL);   /* local submission */
        return PK_DONE;
    }
    int temp = r->status == V_DEFER || r->status == V_TEMPFAIL;
    /* a local failure (limits, loops, disk) is named by its row, not spelt out */
    buf_t why;
    buf_init(&why, 128);
    const char *enh = r->enhanced[0] ? r->enhanced : "5.0.0";
    if (r->local != LR_NONE) {
        local_reply_format(&why, (enum local_status)r->local);
        enh = local_reply((enum local_status)r->local)->enhanced;
    } else {
        buf_printf(&why, "%u %s %s", (unsigned)r->code, enh, r->text);
    }
    log_warn("maildrop/%s: uid=%u from=<%s>: cleanup refused it%s (status %s, %s)", p->name,
             (unsigned)p->st.st_uid, p->sender, temp ? " for now" : "",
             verdict_name((enum verdict)(r->status < V__COUNT ? r->status : V_TEMPFAIL)),
             why.data);
    enum pk_result res = temp ? PK_RETRY : pk_bounce(p, enh, why.data) == 0 ? PK_DROP : PK_RETRY;
    buf_free(&why);
    return res;
}

/* One checked record. 0 = go on, else the file's fate. */
static int pk_record(struct pk *p, const struct md_rec *r)
{
    if (r->type == MD_SENDER) {
        p->sender = dup_rec(r);
    } else if (r->type == MD_RCPT) {
        p->rcpts = xrealloc(p->rcpts, sizeof(char *) * (size_t)(p->nrcpts + 1));
        p->rcpts[p->nrcpts++] = dup_rec(r);
    } else if (r->type == MD_USER) {
        return pk_user(p) < 0 ? PK_REJECT + 1 : 0;
    }
    if (r->type == MD_SENDER || r->type == MD_RCPT)
        p->utf8 |= !addr_is_ascii((const char *)r->p, r->len);
    if ((r->type == MD_CONTENT || r->type == MD_END) && !p->connected) {
        if (p->cfg->recipients > 0 && p->nrcpts > p->cfg->recipients) {
            log_warn("maildrop/%s: %d recipients (limits.recipients is %d)", p->name,
                     p->nrcpts, p->cfg->recipients);
            /* not LR_TOO_MANY_RCPTS: that row is RCPT's "452, try the
             * rest later"; a submission over the limit fails for good */
            return pk_bounce(p, "5.5.3", "552 5.5.3 Too many recipients") == 0 ? PK_DROP + 1 :
                   PK_RETRY + 1;
        }
        if (pk_begin(p) < 0)
            return PK_RETRY + 1;
    }
    if (r->type == MD_CONTENT) {
        if (p->cfg->message_size > 0 && p->md.content > (uint64_t)p->cfg->message_size) {
            log_warn("maildrop/%s: message over limits.message_size", p->name);
            buf_t why;
            buf_init(&why, 64);
            local_reply_format(&why, LR_TOO_BIG);
            int rc = pk_bounce(p, local_reply(LR_TOO_BIG)->enhanced, why.data);
            buf_free(&why);
            return rc == 0 ? PK_DROP + 1 : PK_RETRY + 1;
        }
        buf_append(&p->data, r->p, r->len);
        if (p->orig.len < PK_ORIG_MAX)
            buf_append(&p->orig, r->p, r->len < PK_ORIG_MAX - p->orig.len ? r->len :
                                       PK_ORIG_MAX - p->orig.len);
    }
    if (p->data.len >= MD_REC_MAX || (r->type == MD_END && p->data.len > 0)) {
        struct ipc_cleanup_data d = { { (const unsigned char *)p->data.data, p->data.len } };
        if (ipc_send(&p->c, IPC_CLEANUP_DATA, &d) < 0)
            return PK_RETRY + 1;
        buf_reset(&p->data);
    }
    return 0;
}

/* Read, check and forward every record; the file's fate. */
static enum pk_result pk_stream(struct pk *p, int fd)
{
    buf_t in;
    buf_init(&in, 2 * MD_REC_MAX);
    char err[128] = "";
    uint64_t total = 0, max = (p->cfg->message_size > 0 ? (uint64_t)p->cfg->message_size :
                                (1ULL << 30)) + PK_OVERHEAD;
    int rc = 0, eof = 0, too_big = 0;
    size_t off = 0;                 /* in.data up to off is done */
    while (rc == 0 && !p->md.done) {
        struct md_rec r;
        long n = md_rec_next((const unsigned char *)in.data + off, in.len - off, &r, err,
                             sizeof(err));
        if (n > 0) {
            if (md_check(&p->md, &r, 0, err, sizeof(err)) < 0)
                break;
            rc = pk_record(p, &r);
            off += (size_t)n;
            continue;
        }
        if (n < 0 || eof)
            break;
        buf_consume(&in, off);      /* once per read, not once per record */
        off = 0;
        buf_reserve(&in, MD_REC_MAX);
        ssize_t got = read(fd, in.data + in.len, MD_REC_MAX);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            snprintf(err, sizeof(err), "read: %s", strerror(errno));
            break;
        }
        eof = got == 0;
        in.len += (size_t)got;
        total += (uint64_t)got;
        if (total > max) {
            snprintf(err, sizeof(err), "file larger than %llu bytes", (unsigned long long)max);
            too_big = 1;
            break;
        }
    }
    size_t left = in.len - off;
    buf_free(&in);
    if (rc != 0)
        return (enum pk_result)(rc - 1);
    char extra;
    if (p->md.done && left == 0 && read(fd, &extra, 1) == 0)
        return pk_end(p);
    if (err[0] == '\0')
        str_copy(err, sizeof(err), p->md.done ? "data after END" : "no END record");
    log_warn("maildrop/%s (uid %u): refused: %s", p->name, (unsigned)p->st.st_uid, err);
    return too_big ? PK_DROP : PK_REJECT;
}

enum pk_result pickup_file(const struct config *cfg, int dirfd, const char *name)
{
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return PK_DONE;         /* gone already */
        int err = errno;
        struct stat st, dst;
        log_warn("maildrop/%s: open: %s", name, strerror(err));
        /* readable by the directory's group (postdrop), yet not by us: we
         * lack that group (created after we started), not the file's
         * fault - keep it; anything else that refuses us is garbage */
        if (err == EACCES && fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            fstat(dirfd, &dst) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0040) &&
            st.st_gid == dst.st_gid)
            return PK_RETRY;
        return err == EACCES || err == ELOOP ? PK_REJECT : PK_RETRY;
    }
    struct pk p = { .cfg = cfg, .name = name, .connected = 0 };
    p.c.fd = -1;
    buf_init(&p.data, 0);
    buf_init(&p.orig, 0);
    md_state_init(&p.md);
    enum pk_result res;
    if (fstat(fd, &p.st) < 0 || !S_ISREG(p.st.st_mode) || p.st.st_nlink != 1) {
        log_warn("maildrop/%s: not a regular file with one link: refused", name);
        res = PK_REJECT;
    } else {
        res = pk_stream(&p, fd);
    }
    if (p.connected && !p.ended && res != PK_DONE && p.c.fd >= 0) {
        struct ipc_cleanup_end e = { 1 };   /* abort: nothing is queued */
        ipc_send(&p.c, IPC_CLEANUP_END, &e);
    }
    close(fd);
    pk_free(&p);
    return res;
}
