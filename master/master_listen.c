/*
 * master_listen.c - the listening sockets master opens before forking:
 * every TCP address of every listen block (IPv4 and IPv6, IPv6 with
 * IPV6_V6ONLY so 0.0.0.0:25 and [::]:25 coexist) and the Unix sockets under
 * <spool>/private/ (bound as the children's user, see fs_as_user), plus
 * cleanup and filter again inside smtpd's jail (<run_dir>/smtpd/private/).
 * On reload, addresses that did not change keep their
 * open socket; changes are all-or-nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <netinet/in.h>

#include "master.h"
#include "util/log.h"
#include "daemon/server.h"
#include "mail/spool.h"

#define LISTEN_BACKLOG 1024

const char *const munix_names[MU__COUNT] = { "cleanup", "filter", "qmgr", "local", "smtp",
                                              "pipe" };

/* Split "host:port" / "[v6]:port" / ":port" / "*:port"; host NULL = wildcard. */
static int split_addr(const char *a, char *host, size_t hsize, char *port, size_t psize)
{
    const char *colon;
    if (a[0] == '[') {
        const char *close = strchr(a, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        if ((size_t)(close - a - 1) >= hsize)
            return -1;
        memcpy(host, a + 1, (size_t)(close - a - 1));
        host[close - a - 1] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(a, ':');
        if (colon == NULL || (size_t)(colon - a) >= hsize)
            return -1;
        memcpy(host, a, (size_t)(colon - a));
        host[colon - a] = '\0';
    }
    if (colon[1] == '\0' || str_copy(port, psize, colon + 1) < 0)
        return -1;
    return 0;
}

static int same_sa(const struct mlisten *a, const struct mlisten *b)
{
    return a->sslen == b->sslen && memcmp(&a->ss, &b->ss, a->sslen) == 0;
}

static void add_listen(struct mlisten **ls, int *n, const char *name, const char *addr,
                       const struct addrinfo *ai)
{
    struct mlisten m = { 0 };
    memcpy(&m.ss, ai->ai_addr, ai->ai_addrlen);
    m.sslen = ai->ai_addrlen;
    for (int i = 0; i < *n; i++)
        if (same_sa(&(*ls)[i], &m))
            return;   /* "*:25" and "[::]:25" both listed: one socket */
    m.name = xstrdup(name);
    m.addr = xstrdup(addr);
    m.fd = -1;
    *ls = xrealloc(*ls, sizeof(**ls) * (size_t)(*n + 1));
    (*ls)[(*n)++] = m;
}

int mlisten_resolve(const struct config *cfg, struct mlisten **ls_r, int *n_r, buf_t *err)
{
    struct mlisten *ls = NULL;
    int n = 0;
    for (int i = 0; i < cfg->nlisteners; i++) {
        const struct listener *l = &cfg->listeners[i];
        for (int j = 0; j < l->address.n; j++) {
            const char *a = l->address.v[j];
            char host[256], port[32];
            if (split_addr(a, host, sizeof(host), port, sizeof(port)) < 0) {
                buf_printf(err, "listen.%s.address: bad address \"%s\" (host:port or [v6]:port)",
                           l->name, a);
                mlisten_free(ls, n);
                return -1;
            }
            struct addrinfo hints = { 0 }, *res = NULL;
            hints.ai_family = AF_UNSPEC;
            hints.ai_socktype = SOCK_STREAM;
            hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
            int wild = host[0] == '\0' || strcmp(host, "*") == 0;
            int rc = getaddrinfo(wild ? NULL : host, port, &hints, &res);
            if (rc != 0) {
                buf_printf(err, "listen.%s.address: \"%s\": %s", l->name, a, gai_strerror(rc));
                mlisten_free(ls, n);
                return -1;
            }
            for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
                if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6)
                    add_listen(&ls, &n, l->name, a, ai);
            freeaddrinfo(res);
        }
    }
    *ls_r = ls;
    *n_r = n;
    return 0;
}

static int bind_one(struct mlisten *m, buf_t *err)
{
    int fd = socket(m->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        buf_printf(err, "listen.%s: socket for %s: %s", m->name, m->addr, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (m->ss.ss_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) {
        buf_printf(err, "listen.%s: IPV6_V6ONLY on %s: %s", m->name, m->addr, strerror(errno));
        close(fd);
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&m->ss, m->sslen) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        int e = errno;
        char h[NI_MAXHOST], p[NI_MAXSERV], shown[NI_MAXHOST + NI_MAXSERV + 8] = "";
        if (getnameinfo((struct sockaddr *)&m->ss, m->sslen, h, sizeof(h), p, sizeof(p),
                        NI_NUMERICHOST | NI_NUMERICSERV) == 0)
            str_format(shown, sizeof(shown), m->ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s",
                       h, p);
        int differs = shown[0] && strcmp(shown, m->addr) != 0;
        buf_printf(err, "listen.%s: cannot listen on %s%s%s%s: %s", m->name, m->addr,
                   differs ? " (" : "", differs ? shown : "", differs ? ")" : "", strerror(e));
        close(fd);
        return -1;
    }
    m->fd = fd;
    return 0;
}

int mlisten_open(struct mlisten *old, int nold, struct mlisten *nw, int nnew, buf_t *err)
{
    /* pass 1: bind what is new; undo everything on the first failure */
    for (int i = 0; i < nnew; i++) {
        int found = 0;
        for (int j = 0; j < nold && !found; j++)
            found = old[j].fd >= 0 && same_sa(&old[j], &nw[i]);
        if (!found && bind_one(&nw[i], err) < 0) {
            for (int k = 0; k < i; k++)
                if (nw[k].fd >= 0) {
                    close(nw[k].fd);
                    nw[k].fd = -1;
                }
            return -1;
        }
    }
    /* pass 2: move identical sockets over, close the ones no longer wanted */
    for (int i = 0; i < nnew; i++)
        for (int j = 0; j < nold && nw[i].fd < 0; j++)
            if (old[j].fd >= 0 && same_sa(&old[j], &nw[i])) {
                nw[i].fd = old[j].fd;
                old[j].fd = -1;
            }
    for (int j = 0; j < nold; j++)
        if (old[j].fd >= 0) {
            log_info("reload: no longer listening on %s (%s)", old[j].addr, old[j].name);
            close(old[j].fd);
            old[j].fd = -1;
        }
    return 0;
}

void mlisten_free(struct mlisten *ls, int n)
{
    for (int i = 0; i < n; i++) {
        if (ls[i].fd >= 0)
            close(ls[i].fd);
        free(ls[i].name);
        free(ls[i].addr);
    }
    free(ls);
}

/* Root's file-system identity becomes the children's user for the calls
 * in between (setfsuid/setfsgid; master is single-threaded), so a path
 * inside the spool, which that user owns, is resolved with that user's
 * rights only: a symlink swapped in by a compromised child reaches nothing
 * the child could not reach itself. New files get mode 0600. */
struct fs_as { int on; mode_t umask; };

static int fs_as_user(struct fs_as *a, buf_t *err)
{
    a->on = 0;
    a->umask = umask(0177);
    if (!M.as_root)
        return 0;
    setfsgid(M.gid);
    setfsuid(M.uid);
    if ((uid_t)setfsuid((uid_t)-1) != M.uid || (gid_t)setfsgid((gid_t)-1) != M.gid) {
        setfsuid(0);
        setfsgid(0);
        umask(a->umask);
        buf_printf(err, "cannot switch the file-system identity to uid %u",
                   (unsigned)M.uid);
        return -1;
    }
    a->on = 1;
    return 0;
}

static void fs_as_root(struct fs_as *a)
{
    if (a->on) {
        setfsuid(0);
        setfsgid(0);
    }
    umask(a->umask);
}

/* Bind and listen on path (unlinking a stale socket first), 0600. */
static int unix_bind(const char *path, buf_t *err)
{
    struct sockaddr_un sun = { 0 };
    sun.sun_family = AF_UNIX;
    if (str_copy(sun.sun_path, sizeof(sun.sun_path), path) < 0) {
        buf_printf(err, "socket path too long: %s (shorten spool or run_dir)", path);
        return -1;
    }
    if (unlink(path) < 0 && errno != ENOENT) {
        buf_printf(err, "unlink stale %s: %s", path, strerror(errno));
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        buf_printf(err, "socket: %s", strerror(errno));
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
        listen(fd, LISTEN_BACKLOG) < 0) {
        buf_printf(err, "cannot listen on %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* <spool>/private/NAME: created as the children's user (never chowned). */
static int unix_one(const char *path, buf_t *err)
{
    struct fs_as a;
    if (fs_as_user(&a, err) < 0)
        return -1;
    int fd = unix_bind(path, err);
    fs_as_root(&a);
    return fd;
}

/* <run_dir>/smtpd/private/NAME: root-owned directories nobody else can
 * write, so root binds and chowns there directly. */
static int jail_one(int dirfd, const char *path, const char *name, buf_t *err)
{
    mode_t old = umask(0177);
    int fd = unix_bind(path, err);
    umask(old);
    if (fd >= 0 && fchownat(dirfd, name, M.uid, M.gid, AT_SYMLINK_NOFOLLOW) < 0) {
        buf_printf(err, "chown %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int munix_open(buf_t *err)
{
    for (int i = 0; i < MU__COUNT; i++) {
        char rel[64], path[4096];
        str_format(rel, sizeof(rel), "%s/%s", SPOOL_PRIVATE, munix_names[i]);
        spool_path(M.cfg, rel, path, sizeof(path));
        M.unix_fd[i] = unix_one(path, err);
        if (M.unix_fd[i] < 0)
            return -1;
        if (M.jail_priv_fd < 0 || (i != MU_CLEANUP && i != MU_FILTER))
            continue;
        /* the same services, reachable from smtpd's jail */
        str_format(path, sizeof(path), "%s/%s/%s/%s", M.cfg->run_dir, JAIL_SMTPD,
                   SPOOL_PRIVATE, munix_names[i]);
        M.jail_fd[i] = jail_one(M.jail_priv_fd, path, munix_names[i], err);
        if (M.jail_fd[i] < 0)
            return -1;
    }
    return 0;
}

void munix_close(int unlink_files)
{
    for (int i = 0; i < MU__COUNT; i++) {
        if (M.unix_fd[i] >= 0)
            close(M.unix_fd[i]);
        M.unix_fd[i] = -1;
        if (M.jail_fd[i] >= 0) {
            close(M.jail_fd[i]);
            if (unlink_files && M.jail_priv_fd >= 0)
                unlinkat(M.jail_priv_fd, munix_names[i], 0);
        }
        M.jail_fd[i] = -1;
        if (unlink_files && M.cfg) {
            char rel[64], path[4096];
            str_format(rel, sizeof(rel), "%s/%s", SPOOL_PRIVATE, munix_names[i]);
            spool_path(M.cfg, rel, path, sizeof(path));
            buf_t err;
            buf_init(&err, 32);
            struct fs_as a;
            if (fs_as_user(&a, &err) == 0) {
                unlink(path);
                fs_as_root(&a);
            }
            buf_free(&err);
        }
    }
}
