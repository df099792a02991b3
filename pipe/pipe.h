/*
 * pipe.h - internals of the pipe delivery agent shared by its files:
 *   pipe.c         accept loop, DELIVER_REQ protocol, one command per recipient
 *   pipe_runner.c  the runners: one process per pipe transport, forked while
 *                  still root and then running as the transport's user, that
 *                  start the commands; the agent's client side of them
 *   pipe_argv.c    ${variable} expansion into argv elements, the message
 *                  file given as stdin, exit status -> outcome (sysexits)
 *
 * Privileges: master starts the agent as root like every daemon. Before
 * server_init drops to `user`, the agent forks one runner per pipe
 * transport, which drops for good to that transport's user (never root)
 * and waits on a socket pair. The agent itself then runs as `user` with no
 * capability at all: it reads the queue file, writes the message into an
 * unnamed file and passes that descriptor with the expanded arguments; the
 * runner checks them against its own copy of the command (the path and
 * every literal element must match) and runs it with execve, no shell.
 * So nothing long-lived holds root or CAP_SETUID, and a compromised agent
 * can only run the configured commands, as their users, with other
 * arguments.
 */
#ifndef POSTERN_PIPE_H
#define POSTERN_PIPE_H

#include <stdint.h>
#include <sys/types.h>
#include "config/config.h"
#include "mail/qfile.h"

#define PIPE_OUTPUT_MAX   1000     /* stdout+stderr kept for the DSN reason */
#define PIPE_ARGS_MAX     256      /* argv elements */
#define PIPE_ARGBYTES_MAX 65536    /* all of them after expansion */
/* qmgr gives one request QMGR_AGENT_TIMEOUT (900 s) before it defers what
 * is unanswered: a command runs at most PIPE_TIMEOUT_MAX, and no command
 * starts after PIPE_REQUEST_BUDGET seconds of a request (the rest defer), so
 * an answer always comes in time and nothing is delivered twice. */
#define PIPE_TIMEOUT_MAX    300
#define PIPE_REQUEST_BUDGET 500

/* How a command ended (runner -> agent). */
enum pipe_end { PE_EXITED = 0, PE_SIGNALED, PE_TIMEOUT, PE_NOSTART };
struct pipe_result {
    enum pipe_end end;
    int code;                      /* exit status, signal, or errno for PE_NOSTART */
    char output[PIPE_OUTPUT_MAX + 1];
};

/* ---- runners (pipe_runner.c) ---- */
/* Fork a runner per pipe transport of cfg (root only; as a normal user the
 * runners run as that user and only a transport of that user works). */
void pipe_runners_start(const struct config *cfg);
/* Run transport t's command with argv (argc elements, argv[0] the path)
 * and stdin_fd as its standard input. 0 with res set, or -1 with why
 * (no runner for t: its user is missing; the runner died). */
int  pipe_run(const struct transport_conf *t, char *const *argv, int argc, int stdin_fd,
              struct pipe_result *res, char *why, size_t whylen);

/* Did a runner die or misbehave (the agent should exit, master restarts it)? */
int  pipe_runners_lost(void);

/* ---- arguments, input, outcome (pipe_argv.c) ---- */
/* The values of the ${variables} for recipient r of env. */
struct pipe_vars {
    const char *v[16];             /* in the order of config_pipe_vars */
    char size[24];
    char *local_part;              /* owned */
};
void pipe_vars_init(struct pipe_vars *pv, const struct qf_env *env, const struct qf_rcpt *r,
                    const struct transport_conf *t);
void pipe_vars_free(struct pipe_vars *pv);
/* Expand t's command into argv (NULL-terminated, *argc_r elements; free
 * with pipe_argv_free). -1 with why when a value may not be passed (an
 * element that would start with '-' from mail before any "--"). */
char **pipe_argv(const struct transport_conf *t, const struct pipe_vars *pv, int *argc_r,
                 char *why, size_t whylen);
void pipe_argv_free(char **argv);
/* An unnamed file holding Return-Path, Delivered-To and the message,
 * positioned at 0: fd or -1 (errno). */
int  pipe_input(int qfd, const struct qf_env *env, const struct qf_rcpt *r);
/* The outcome of a result: status, dsn, reason. */
void pipe_outcome(const struct transport_conf *t, const struct pipe_result *res,
                  enum dstatus *st, char *dsn, size_t dsnlen, char *reason, size_t rlen);

#endif
