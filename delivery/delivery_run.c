/*
 * delivery_run.c - deliver a request's targets, each with its identity.
 *
 * Targets are grouped by identity. A group that needs another identity
 * than the agent's runs in a forked child that becomes it for good
 * (delivery_ident.c: groups, gid, uid, then no capability left), delivers
 * its targets one at a time, syncs its Maildirs, writes the results back on
 * a pipe and exits; the agent waits a bounded time and defers on anything
 * else. The agent itself writes only as its own user (template mailboxes
 * with local.vmail_user unset, and unprivileged runs). Must never write a
 * mailbox, run a command or open a file for a recipient with the agent's
 * privileges left in place.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include "delivery.h"
#include "util/clock.h"
#include "util/log.h"

/* Deliver one target as the current process. */
static void run_one(const struct dlv_msg *m, uint32_t qf_index, struct dlv_target *t)
{
    struct qf_env env = *m->env;        /* shallow: only the sender may differ */
    struct dlv_msg mm = *m;
    if (t->sender != NULL) {
        env.sender = t->sender;
        mm.env = &env;
    }
    switch (t->kind) {
    case T_MAILBOX:
        if (t->mkind == MBOX_DISCARD)
            dlv_result_set(&t->res, DS_DISCARDED, "2.0.0", "discarded");
        else if (t->mkind == MBOX_MBOX)
            delivery_mbox(&mm, t->rcpt, t->value, 1, t->id.mail_group, &t->res);
        else
            delivery_maildir(&mm, qf_index, t->rcpt, t->value, &t->res);
        break;
    case T_FILE:
        if (strcmp(t->value, "/dev/null") == 0)
            dlv_result_set(&t->res, DS_DELIVERED, "2.0.0", "delivered to /dev/null");
        else
            delivery_mbox(&mm, t->rcpt, t->value, 0, 0, &t->res);
        break;
    case T_PIPE:
        delivery_pipe(&mm, t, &t->res);
        break;
    case T_REMOTE:                      /* delivery_forward() */
    case T_DUP:                         /* delivery_run() copies the outcome */
    case T_ERROR:
        break;
    }
}

/* The targets of one group, in this process. */
static void run_group(const struct dlv_msg *m, const uint32_t *qf_index, struct dlv_targets *t,
                      const size_t *members, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct dlv_target *x = &t->v[members[i]];
        log_set_qid(m->qid);
        if (clock_now_ms() >= m->deadline_ms) {     /* delivery.h: DLV_REQUEST_BUDGET_MS */
            dlv_result_set(&x->res, DS_DEFERRED, "4.4.7",
                           "this delivery request's time budget is used up: tried later");
            continue;
        }
        run_one(m, qf_index[x->slot], x);
    }
    delivery_maildir_sync();
}

/* Read the child's results; 0 when all came, -1 otherwise. */
static int read_results(int fd, int64_t deadline, struct dlv_targets *t, const size_t *members,
                        size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct dlv_result r;
        size_t got = 0;
        while (got < sizeof(r)) {
            int64_t left = deadline - clock_now_ms();
            struct pollfd p = { fd, POLLIN, 0 };
            if (left <= 0 || poll(&p, 1, (int)(left > 60000 ? 60000 : left)) < 0) {
                if (left > 0 && errno == EINTR)
                    continue;
                return -1;
            }
            if (p.revents == 0)
                continue;
            ssize_t k = read(fd, (char *)&r + got, sizeof(r) - got);
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0)
                return -1;
            got += (size_t)k;
        }
        r.reason[sizeof(r.reason) - 1] = '\0';
        r.dsn[sizeof(r.dsn) - 1] = '\0';
        t->v[members[i]].res = r;
    }
    return 0;
}

/* Run a group in a child that becomes its identity. */
static void fork_group(const struct dlv_msg *m, const uint32_t *qf_index, struct dlv_targets *t,
                       const size_t *members, size_t n)
{
    int p[2] = { -1, -1 };
    pid_t pid = -1;
    if (pipe2(p, O_CLOEXEC) == 0 && (pid = fork()) == 0) {
        close(p[0]);
        delivery_maildir_forget();
        const struct dlv_ident *id = &t->v[members[0]].id;
        if (dlv_ident_become(id) < 0) {
            for (size_t i = 0; i < n; i++)
                dlv_result_set(&t->v[members[i]].res, DS_DEFERRED, "4.3.0",
                               "cannot switch to user %s", id->user);
        } else {
            run_group(m, qf_index, t, members, n);
        }
        for (size_t i = 0; i < n; i++)
            if (fdio_write_all(p[1], &t->v[members[i]].res, sizeof(struct dlv_result)) < 0)
                _exit(1);
        _exit(0);
    }
    int err = errno;
    int ok = -1;
    if (pid > 0) {
        close(p[1]);
        /* the child keeps to the budget itself: this is the backstop */
        ok = read_results(p[0], m->deadline_ms + DLV_CHILD_GRACE_MS, t, members, n);
        if (ok < 0)
            kill(pid, SIGKILL);
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        close(p[0]);
    } else if (pid < 0 && p[0] >= 0) {
        close(p[0]);
        close(p[1]);
    }
    if (ok < 0) {
        for (size_t i = 0; i < n; i++)
            dlv_result_set(&t->v[members[i]].res, DS_DEFERRED, "4.3.0", "delivery as %s: %s",
                           t->v[members[i]].id.user,
                           pid < 0 ? strerror(err) : "the child did not report");
        log_warn("delivery as user %s failed", t->v[members[0]].id.user);
    }
}

/* Written by a group of its identity (not forwarded, failed or shared). */
static int in_group(const struct dlv_target *x)
{
    return x->kind == T_MAILBOX || x->kind == T_FILE || x->kind == T_PIPE;
}

void delivery_run(const struct dlv_msg *m, const uint32_t *qf_index, struct dlv_targets *t)
{
    delivery_forward(m, t);             /* as the agent: it only talks to cleanup */
    size_t *members = xcalloc(t->n ? t->n : 1, sizeof(*members));
    char *done = xcalloc(t->n ? t->n : 1, 1);
    for (size_t i = 0; i < t->n; i++) {
        if (done[i])
            continue;
        if (!in_group(&t->v[i])) {
            done[i] = 1;
            continue;
        }
        size_t n = 0;
        for (size_t k = i; k < t->n; k++)
            if (!done[k] && in_group(&t->v[k]) && dlv_ident_same(&t->v[k].id, &t->v[i].id)) {
                members[n++] = k;
                done[k] = 1;
            }
        /* commands always get a process of their own (delivery_pipe.c);
         * mailboxes of the agent's own user are written in place */
        if (dlv_ident_is_self(&t->v[i].id))
            run_group(m, qf_index, t, members, n);
        else
            fork_group(m, qf_index, t, members, n);
    }
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i].kind == T_DUP)
            t->v[i].res = t->v[t->v[i].dup_of].res;
    free(members);
    free(done);
}
