/*
 * rl_svc.h - what the service backends (rl_svc_csv.c, rl_svc_cmd.c,
 * rl_svc_smtp.c) share with the registry in rl_services.c: the ops
 * interface, the service record and the helpers every backend uses
 * (deadline-bounded waits and locks, option lookup). Private to lib/rules.
 */
#ifndef POSTERN_RL_SVC_H
#define POSTERN_RL_SVC_H

#include <pthread.h>
#include <sys/types.h>
#include <time.h>
#include "rules/rl_int.h"

enum { SVC_NOTFOUND = 0, SVC_FOUND = 1, SVC_TEMPFAIL = -1 };
#define OUT_MAX (64 * 1024)        /* a command's output kept */
#define CSV_MAX_ENTRIES_DEFAULT 10000
#define CSV_MAX_ENTRIES_MAX     10000000
#define CSV_FIELD_MAX           1000     /* octets of an inserted key or value */

struct rl_service;
struct rl_svc_ops {
    enum rl_svc_kind kind;
    const char *name;
    int  (*open)(struct rl_service *s, const char **opt, const struct rl_value *val, int nopt,
                 char *err, size_t errlen);
    void (*close)(struct rl_service *s);
    int  (*lookup)(struct rl_service *s, const char *key, buf_t *value);
    int  (*insert)(struct rl_service *s, const char *key, const char *value);
    /* programs and delegation: *status_r = exit status / reply code */
    int  (*exec)(struct rl_service *s, struct rl_vm *vm, const char **args, int nargs, buf_t *out,
                 int *status_r);
};

/* One line of a csv file; key == NULL: superseded or evicted (the line is
 * still in the file until the next rewrite). */
struct csv_row { char *key, *val; uint32_t h; int32_t hnext; };

struct rl_service {
    const struct rl_svc_ops *ops;
    char *name;
    char *basedir;
    int index;
    pthread_mutex_t mu;
    /* csv: rows in file order, a chained hash over the live ones */
    char *path;
    struct csv_row *rows; size_t nrows, caprows, live;
    int32_t *bkt; size_t nbkt;
    long max_entries;
    int tail_nl;                 /* the file is empty or ends with a newline */
    struct timespec mtime; off_t size; ino_t ino; int loaded;
    /* cmd */
    char **argv; int argc;
    long timeout;
    /* smtp */
    char *address, *helo;
};

/* The message content of the transaction (cmd stdin, smtp DATA). */
struct content { int fd; off_t off; uint64_t len; };

/* One backend each. */
extern const struct rl_svc_ops rl_svc_csv_ops, rl_svc_cmd_ops, rl_svc_smtp_ops;

/* Milliseconds one wait of a service whose timeout is timeout_s may take
 * from now: the sooner of that and the evaluation deadline (*cut = 1 when
 * the deadline is the nearer). <= 0: no time left. */
int64_t svc_wait_ms(long timeout_s, int *cut);
/* The service's lock, waited for until the evaluation deadline at most. */
int  svc_lock(struct rl_service *s);
int  svc_deadline_passed(void);        /* the calling thread's deadline is past */
const char *svc_opt_str(const char **opt, const struct rl_value *val, int nopt, const char *name,
                        const char *def);
long svc_opt_int(const char **opt, const struct rl_value *val, int nopt, const char *name, long def);
char *svc_resolve(const struct rl_service *s, const char *p);
/* Open the transaction's message for reading its content: 0 (c->fd = -1
 * when there is no message), -1 when it cannot be read (logged). */
int  svc_content_open(struct rl_vm *vm, struct content *c);

#endif
