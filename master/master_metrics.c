/*
 * master_metrics.c - master's side of metrics and status: the store the
 * children's reports merge into (lib/metrics), the gauges master measures
 * itself (processes, restarts, queue sizes and the age of each queue's
 * oldest message), the last error-level events of every process, and the
 * files `postern status` and `postern top` read from run_dir:
 *   errors.status  the last MM_ERRORS errors, "UNIXTIME PROCESS TEXT" lines
 *                  (mode 0640: log text may name addresses)
 *   metrics.prom   the Prometheus text, rewritten at most once a second
 *                  while something changes (mode 0640: rule names)
 * Queue gauges come from readdir alone (the arrival second is in the queue
 * id): master never reads a queue file. A child's report is data: a bad
 * one is logged and dropped, never trusted further.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "master.h"
#include "ipc/ipc.h"
#include "mail/spool.h"
#include "metrics/metrics.h"
#include "util/clock.h"
#include "util/log.h"

#define MM_SERIES 4096
#define MM_ERRORS 20

static struct mstore *store;
static struct { int64_t when; char proc[16]; char text[200]; } errs[MM_ERRORS];
static int nerrs, errs_dirty, store_dirty;
static int64_t queues_ms = -100000, file_ms;

static void error_add(int64_t when, const char *proc, const char *text)
{
    if (nerrs == MM_ERRORS) {
        memmove(&errs[0], &errs[1], sizeof(errs[0]) * (MM_ERRORS - 1));
        nerrs--;
    }
    errs[nerrs].when = when;
    str_copy(errs[nerrs].proc, sizeof(errs[0].proc), proc);
    str_copy(errs[nerrs].text, sizeof(errs[0].text), text);
    nerrs++;
    errs_dirty = 1;
}

static int writing;   /* a failure to write our own files is not kept: no loop */

/* master's own error-level events */
static void on_master_error(const char *text)
{
    if (!writing)
        error_add((int64_t)time(NULL), "master", text);
}

void mmetrics_init(void)
{
    if (store == NULL)
        store = mstore_new(MM_SERIES);
    log_set_error_hook(on_master_error);
    errs_dirty = 1;   /* a fresh errors.status: the last run's errors are in its log */
}

struct err_ctx { const char *proc; };

static void on_child_error(int64_t when, const char *text, void *arg)
{
    const struct err_ctx *c = arg;
    error_add(when, c->proc, text);
}

int mmetrics_input(int src, const char *proc, buf_t *in, int *retire)
{
    size_t off = 0;
    int rc = 0;
    while (off < in->len) {
        enum ipc_type t;
        union ipc_msg m;
        size_t used = 0;
        int r = ipc_next((const unsigned char *)in->data + off, in->len - off, &t, &m, &used,
                         proc);
        if (r == 0)
            break;
        if (r > 0 && t == IPC_RETIRE) {
            log_info("process %s asks to be replaced: %.200s", proc, m.retire.reason);
            *retire = 1;
            off += used;
            continue;
        }
        if (r < 0 || t != IPC_METRICS) {
            log_error("process %s: bad metrics report: no more reports read", proc);
            rc = -1;
            break;
        }
        struct err_ctx c = { proc };
        if (mstore_merge(store, src, (const char *)m.metrics.data.p, m.metrics.data.len,
                         on_child_error, &c) < 0)
            log_warn("process %s: malformed metrics line: report ignored from there", proc);
        store_dirty = 1;
        off += used;
    }
    buf_consume(in, off);
    return rc;
}

void mmetrics_child_gone(int src)
{
    if (store) {
        mstore_drop_src(store, src);
        store_dirty = 1;
    }
}

void mmetrics_set(enum metric_id id, int64_t v, const char *l1)
{
    mstore_set(store, id, v, l1, NULL);
    store_dirty = 1;
}

/* ---- queue gauges -------------------------------------------------------- */

struct qcount { long n; int64_t oldest; };

static void count_dir(const char *path, struct qcount *q)
{
    DIR *d = opendir(path);
    if (d == NULL)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!queue_id_valid(de->d_name))
            continue;
        q->n++;
        int64_t t = queue_id_time(de->d_name);
        if (t > 0 && (q->oldest == 0 || t < q->oldest))
            q->oldest = t;
    }
    closedir(d);
}

static void count_quarantine(const char *spool, struct qcount *q)
{
    char path[4096];
    str_format(path, sizeof(path), "%s/%s", spool, SPOOL_QUARANTINE);
    DIR *d = opendir(path);
    if (d == NULL)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char sub[4400];
        if (de->d_name[0] == '.' || de->d_type != DT_DIR ||
            str_format(sub, sizeof(sub), "%s/%s", path, de->d_name) < 0)
            continue;
        count_dir(sub, q);
    }
    closedir(d);
}

/* Once a second at most: readdir of every queue. */
static void update_queues(int64_t now_ms)
{
    static const char *const qs[] = { SPOOL_MAILDROP, SPOOL_INCOMING, SPOOL_ACTIVE,
                                      SPOOL_DEFERRED, SPOOL_HOLD, SPOOL_CORRUPT,
                                      SPOOL_QUARANTINE };
    if (now_ms - queues_ms < 1000)
        return;
    queues_ms = now_ms;
    int64_t now = (int64_t)time(NULL);
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        struct qcount q = { 0, 0 };
        char path[4096];
        if (strcmp(qs[i], SPOOL_QUARANTINE) == 0) {
            count_quarantine(M.cfg->spool, &q);
        } else {
            str_format(path, sizeof(path), "%s/%s", M.cfg->spool, qs[i]);
            count_dir(path, &q);
        }
        mstore_set(store, MET_QUEUE_MESSAGES, q.n, qs[i], NULL);
        mstore_set(store, MET_QUEUE_OLDEST, q.oldest && now > q.oldest ? now - q.oldest : 0,
                   qs[i], NULL);
    }
}

void mmetrics_render(buf_t *out)
{
    update_queues(clock_now_ms());
    spawn_metrics();
    mstore_render(store, out);
}

/* ---- run_dir files --------------------------------------------------------- */

void mmetrics_tick(int64_t now_ms)
{
    if (errs_dirty) {
        buf_t b;
        buf_init(&b, 1024);
        for (int i = 0; i < nerrs; i++)
            buf_printf(&b, "%lld %s %s\n", (long long)errs[i].when, errs[i].proc, errs[i].text);
        writing = 1;
        master_write_run_file("errors.status", &b, 0640);   /* may name addresses */
        writing = 0;
        buf_free(&b);
        errs_dirty = 0;
    }
    if (now_ms - file_ms < 1000 || (!store_dirty && now_ms - file_ms < 5000))
        return;
    file_ms = now_ms;
    store_dirty = 0;
    buf_t b;
    buf_init(&b, 8192);
    mmetrics_render(&b);
    writing = 1;
    master_write_run_file("metrics.prom", &b, 0640);
    writing = 0;
    buf_free(&b);
}
