/*
 * server.h - the one start-up ritual every daemon child of master runs.
 *
 * master binds every listening socket (TCP listeners and the Unix sockets
 * under private/) and execs each daemon with them open; POSTERN_FDS names
 * them ("3:smtp,4:submission" or "3:cleanup"). server_init() then: parses
 * -c CONFIG, loads the config, sets up logging (stderr when
 * POSTERN_LOG_STDERR=1, else syslog), chdirs into the spool, with
 * SERVER_F_JAIL chroots into <run_dir>/<JAIL_SMTPD> (root-owned, empty but
 * for private/cleanup and private/filter; only when started as root), with
 * POSTERN_JAIL=spool (set by master for cleanup and qmgr) chroots into the
 * spool, drops
 * to the configured user (setgroups/setresgid/setresuid, verified; fatal if
 * still root), makes itself non-dumpable (no core files, and no other
 * process of the same user can ptrace it or read its memory), asks for
 * SIGTERM when master dies, and creates the event base. The daemon tells
 * master it serves with server_ready() (server_run does it; a
 * SERVER_F_NO_EVENT daemon is ready when server_init returns): one byte on
 * the pipe named by POSTERN_READY_FD, which then stays open (non-blocking)
 * for the metrics reports of lib/ipc/ipc_report.h.
 * SIGTERM/SIGINT call the daemon's on_stop (drain) callback, SIGUSR1 its
 * on_retire (graceful retirement on reload); SIGPIPE is
 * ignored. Nothing a daemon does after server_init runs as root.
 */
#ifndef POSTERN_SERVER_H
#define POSTERN_SERVER_H

#include <stdint.h>
#include <event2/listener.h>
#include "config/config.h"

struct event_base;

struct server_fd {
    int fd;
    char name[64];      /* listener name (smtp, submission) or socket name */
};

/* smtpd's jail, under run_dir; master binds cleanup and filter inside it
 * too (private/cleanup, private/filter), passed as "<name>+jail" fds. */
#define JAIL_SMTPD "smtpd"

struct server {
    const char *name;            /* daemon name: smtpd, cleanup, ... */
    const char *config_path;
    struct config *cfg;
    struct server_fd *fds; int nfds;
    struct event_base *base;     /* NULL with SERVER_F_NO_EVENT */
    /* base's epoll descriptor, -1 when not known (another backend or
     * libevent). A descriptor may be attached to it directly (epoll_ctl,
     * e.g. with EPOLLEXCLUSIVE) with data.fd naming one that base watches
     * with an event: readiness then runs that event's callback. Such an
     * attachment must be removed before its descriptor is closed if another
     * process still holds the file. See smtpd_io.c. */
    int epfd;
    int stopping;                /* set once SIGTERM arrived */
    void (*on_stop)(struct server *s);   /* drain; call server_stop_loop when idle */
    void (*on_reload)(struct server *s); /* SIGHUP, NULL = ignored (master restarts us) */
    /* SIGUSR1 from master on reload: a replacement is already serving; stop
     * taking new work, finish what is open normally, then exit. NULL = the
     * same as SIGTERM. */
    void (*on_retire)(struct server *s);
    int retiring;
    void *ctx;                   /* daemon's own state */
    int ready_fd;                /* POSTERN_READY_FD: the ready byte, then metrics
                                    reports (lib/ipc/ipc_report.h); -1 = none */
    int ready_sent;
    struct evconnlistener *lis;        /* server_listen's listener */
    struct evconnlistener *jail_lis;   /* server_listen's "<name>+jail" twin */
};

/* SERVER_F_KEEP_SETID: only the local agent (delivery/): drop to the user
 * but keep CAP_SETUID and CAP_SETGID, so a child can become one recipient
 * for one delivery (as Postfix local(8) does); nothing else is kept.
 * SERVER_F_POSTDROP: keep the postdrop group as a supplementary group
 * (pickup: it reads maildrop/ files, user:postdrop 0640). */
enum { SERVER_F_NO_EVENT = 1, SERVER_F_JAIL = 2, SERVER_F_KEEP_SETID = 4, SERVER_F_POSTDROP = 8 };

/* Set this process's capabilities: permitted = effective = mask (bits
 * 1 << CAP_*), inheritable empty; 0 or -1. server_set_caps(0) drops all. */
int server_set_caps(uint32_t mask);

/* Runs inside server_init_ex() while still root: after the config is loaded,
 * the inherited fds are parsed and the cwd is the spool, before the
 * privilege drop. For what only root may open (TLS keys, 0600 files); it
 * must not start threads or keep anything that grants root later. */
typedef void server_pre_drop_fn(struct server *s, void *arg);

struct server *server_init(const char *name, int argc, char **argv, unsigned flags);
/* server_init with a pre-drop hook (fn may be NULL). */
struct server *server_init_ex(const char *name, int argc, char **argv, unsigned flags,
                              server_pre_drop_fn *fn, void *arg);
/* Drop root to cfg->user/group; fatal if that fails or root remains.
 * A no-op check when not started as root (then we must not be root). */
void server_drop_privileges(const struct config *cfg);
/* Tell master this daemon serves (once; later calls do nothing). */
void server_ready(struct server *s);
/* The pipe to master after server_ready (-1 before): the metrics reports
 * (lib/ipc/ipc_report.c) write to it, also at exit, when the struct server
 * may be freed already. */
int  server_master_pipe(void);
/* server_ready, then dispatch the event loop until server_stop_loop(). */
void server_run(struct server *s);
void server_stop_loop(struct server *s);
/* Find an inherited fd by name; -1 if none. */
int  server_fd_named(const struct server *s, const char *name);
/* The inherited socket name (path, a constant: for log lines) as a
 * non-blocking libevent listener, closed with it; accept errors are logged.
 * Fatal when there is no such socket. For the one socket an event-loop
 * daemon (cleanup, filter, qmgr) accepts on. An inherited "<name>+jail"
 * socket (the same service inside smtpd's jail) is accepted on with the
 * same callback, and closed at the stop signal. */
struct evconnlistener *server_listen(struct server *s, const char *name, const char *path,
                                     evconnlistener_cb cb, void *arg);
/* Stop accepting: close server_listen's listeners (again: nothing). The
 * first thing an on_stop does, and the last before exit. */
void server_unlisten(struct server *s);
/* Set O_NONBLOCK (1) or clear it (0). */
int  fd_set_nonblock(int fd, int on);
/* Absolute path of a spool-relative name ("private/filter"): daemons chdir
 * to the spool, so relative names work; this is for messages and the CLI. */
void spool_path(const struct config *cfg, const char *rel, char *out, size_t size);

#endif
