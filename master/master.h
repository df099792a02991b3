/*
 * master.h - the master process (root): state shared by master.c (main,
 * start-up, reload, stop), master_listen.c (TCP and Unix listening
 * sockets), master_spawn.c (service table, child table, restarts) and
 * master_signal.c (signals as bytes on a self-pipe).
 * master never parses SMTP and never touches message content.
 */
#ifndef POSTERN_MASTER_H
#define POSTERN_MASTER_H

#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <poll.h>
#include "config/config.h"
#include "metrics/metrics.h"

/* One bound TCP address of one listen block. */
struct mlisten {
    char *name;                 /* listen block: smtp, submission, ... */
    char *addr;                 /* as written in the config */
    struct sockaddr_storage ss;
    socklen_t sslen;
    int fd;                     /* -1 = not open */
};

/* The Unix sockets under private/, in this order. */
enum { MU_CLEANUP, MU_FILTER, MU_QMGR, MU_LOCAL, MU_SMTP, MU_PIPE, MU__COUNT };

struct master {
    struct config *cfg;
    char *config_path;          /* absolute */
    char exe_dir[4096];         /* where the daemons live */
    int foreground;
    uid_t uid; gid_t gid;       /* children's user (ownership of spool and sockets) */
    int as_root;
    struct mlisten *ls; int nls;
    int unix_fd[MU__COUNT];
    int jail_fd[MU__COUNT];     /* cleanup, filter inside smtpd's jail; -1 = none */
    int jail_priv_fd;           /* <run_dir>/smtpd/private (root only), -1 = no jail */
    int stopping;
};

extern struct master M;

/* master_listen.c */
/* Resolve every listener address of cfg into *ls_r (fds -1). 0, or -1 with err. */
int  mlisten_resolve(const struct config *cfg, struct mlisten **ls_r, int *n_r, buf_t *err);
/* Open nw: reuse an identical open socket from old (moved out of old), bind the
 * rest. All or nothing: on failure nothing changes in old and nw is closed.
 * On success the old entries not reused are closed. */
int  mlisten_open(struct mlisten *old, int nold, struct mlisten *nw, int nnew, buf_t *err);
void mlisten_free(struct mlisten *ls, int n);      /* close and free */
/* Create every Unix socket under <spool>/private/ into M.unix_fd. */
int  munix_open(buf_t *err);
void munix_close(int unlink_files);
extern const char *const munix_names[MU__COUNT];   /* "cleanup", ... */

/* master_spawn.c
 * Each child gets the write end of its own pipe (POSTERN_READY_FD) and
 * writes one byte once it serves (lib/daemon/server.c); until then its slot is
 * "starting". A child that dies before that failed at start-up. */
void spawn_init(void);                     /* slots for M.cfg, all due now */
/* Start every due child; returns ms until the next scheduled start, or -1. */
int64_t spawn_due(int64_t now);
void spawn_reap(int64_t now);              /* waitpid loop: log, schedule restarts */
void spawn_reload(void);                   /* retire every child, slots for new M.cfg */
void spawn_signal_all(int sig);
int  spawn_count(void);                    /* live children */
int  spawn_total(const struct config *cfg);/* processes the config asks for */
void spawn_kill_wait(void);                /* SIGKILL and reap every child */
/* The read ends of children still starting, for poll; returns how many. */
int  spawn_poll_fds(struct pollfd *p, int max);
void spawn_ready_input(int fd);            /* poll said fd is readable */
int  spawn_all_ready(void);                /* every slot runs and has said ready */
/* Start-up failures (children that died before ready) since the last call:
 * how many, each described on a line in why (may be NULL). */
int  spawn_take_failures(buf_t *why);
/* When the child table changed since the last call: one line per slot,
 * "NAME PID running|starting|waiting SINCE RESTARTS" (SINCE: unix time of
 * the start, 0 when not running), and 1; else 0 and nothing appended. */
int  spawn_status(buf_t *b);

/* The child's metrics reports (after its ready byte) are fed to
 * mmetrics_input; master's own gauges are set by spawn_metrics. */
void spawn_metrics(void);                  /* processes and restarts per service */

/* master.c */
/* Write <run_dir>/name atomically (temp file + rename) with mode. */
void master_write_run_file(const char *name, const buf_t *b, mode_t mode);

/* master_metrics.c: the store, queue gauges, last errors, run_dir files */
void mmetrics_init(void);
/* Decode the METRICS frames in in (consumed); src is the child's slot;
 * *retire is set when the child asked for a replacement (IPC_RETIRE).
 * -1 on a protocol error: stop reading that child. */
int  mmetrics_input(int src, const char *proc, buf_t *in, int *retire);
void mmetrics_child_gone(int src);
void mmetrics_set(enum metric_id id, int64_t v, const char *l1);
void mmetrics_render(buf_t *out);           /* the Prometheus text, gauges fresh */
void mmetrics_tick(int64_t now_ms);         /* errors.status, metrics.prom */

/* master_http.c: the metrics endpoint (libmicrohttpd, no threads) */
/* Start, restart or stop it for M.cfg->metrics_address; 0 or -1 (logged). */
int  mhttp_configure(void);
/* Its descriptor for poll (-1 = off) and the longest wait it allows (ms,
 * -1 = any); mhttp_run after poll, whatever it said. */
int  mhttp_fd(int64_t *wait_ms);
void mhttp_run(void);
void mhttp_stop(void);

/* master_signal.c */
/* master_log.c: log.file (or the spool's file without /dev/log) */
int  mlog_setup(buf_t *err);               /* 0 (also: not a file), -1 with err */
int  mlog_active(void);                    /* master writes a log file */
int  mlog_child_fd(void);                  /* children's stderr, -1 = none */
int  mlog_poll_fd(void);                   /* readable: call mlog_input */
void mlog_input(void);
void mlog_reopen(void);                    /* SIGUSR1 / SIGHUP: after logrotate */
int  msignal_init(void);                   /* returns the read end of the self-pipe */
struct msig { int sig; pid_t pid; uid_t uid; };   /* a signal and its sender */
int  msignal_next(struct msig *r);          /* next pending signal number or 0 */
void msignal_block(sigset_t *old);         /* block our signals (around fork) */
void msignal_restore(const sigset_t *old);
void msignal_child_reset(void);            /* in a forked child: defaults, unblocked */

#endif
