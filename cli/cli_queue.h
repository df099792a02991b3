/*
 * cli_queue.h - shared by cli_queue.c (finding, reading, listing, showing
 * queue files) and cli_queue_act.c (selectors, actions, flush, audit).
 */
#ifndef POSTERN_CLI_QUEUE_H
#define POSTERN_CLI_QUEUE_H

#include "util/buf.h"
#include "mail/qfile.h"
#include "mail/queue.h"
#include "mail/spool.h"

/* A message found in the spool: queue dir (spool-relative) + id. */
struct qent {
    char id[QUEUE_ID_MAX];
    char dir[300];          /* "deferred", "quarantine/junk" */
};

struct qlist { struct qent *v; int n; };

enum { Q_INCOMING = 1, Q_ACTIVE = 2, Q_DEFERRED = 4, Q_HOLD = 8, Q_QUARANTINE = 16,
       Q_CORRUPT = 32 };
#define Q_LISTED (Q_INCOMING | Q_ACTIVE | Q_DEFERRED | Q_HOLD | Q_QUARANTINE)
#define Q_ALL    (Q_LISTED | Q_CORRUPT)


/* Selectors of `postern queue list|hold|...`: every one given must match. */
struct qsel {
    int queues;              /* Q_* bits; 0 = the command's default */
    const char *quarantine;  /* --queue quarantine/NAME */
    const char *sender;      /* address, "@domain" or "<>" */
    const char *rcpt;        /* address or "@domain": any recipient */
    int64_t older, newer;    /* seconds of age, 0 = unset */
};

/* Parse selector options at argv[*i] (advancing *i): 1 = consumed one,
 * 0 = not a selector, -1 = bad (message printed). */
int  qsel_parse(struct qsel *s, int argc, char **argv, int *i);
int  qsel_needs_env(const struct qsel *s);
int  qsel_match(const struct qsel *s, const struct qent *q, const struct qf_env *e);
int  qsel_given(const struct qsel *s);

void text_str(buf_t *b, const char *s);
void json_str(buf_t *b, const void *data, size_t n);   /* a JSON string, UTF-8 checked */
void flush_out(buf_t *b);
int  scan(const struct config *cfg, int which, struct qlist *l);
/* Open spool/dir/id and parse it. 0 ok, -1 err (err set), -2 gone. */
int  open_read(const struct config *cfg, const struct qent *q, struct qf_env *env, int *fd_r,
               char *err, size_t errlen);
int  find_id(const struct config *cfg, const char *id, int which, struct qent *q_r);
int  bad_id(const char *id);

/* cli_shape.c: queued mail by destination domain and age (queue shape, top) */
#define SHAPE_BUCKETS 10                    /* 5 10 20 40 80 160 320 640 1280 1280+ */
extern const int shape_minutes[SHAPE_BUCKETS - 1];
struct shape_row { char *domain; long total; long b[SHAPE_BUCKETS]; };
struct shape {
    struct shape_row all;                   /* "TOTAL" */
    struct shape_row *rows; int n;          /* by total, largest first */
    int *hash; int hcap;                    /* while collecting */
};
/* Read the queues sel names (default incoming, active, deferred); ages as
 * of now (unix seconds). -1 when a queue could not be read (said why). */
int  shape_collect(const struct config *cfg, const struct qsel *sel, int64_t now,
                   struct shape *s);
void shape_free(struct shape *s);
int  queue_shape(const struct config *cfg, int argc, char **argv);

enum action { A_DELETE, A_HOLD, A_RELEASE, A_REQUEUE };
int  queue_action(const struct config *cfg, enum action act, int argc, char **argv);
int  queue_flush(const struct config *cfg);

#endif
