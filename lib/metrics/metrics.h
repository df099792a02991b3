/*
 * metrics.h - counters, gauges and latency histograms (metrics.def), kept
 * in memory by every process and gathered by master.
 *
 * A child counts with metric_add / metric_gauge / metric_observe (a mutex
 * and a hash probe: cheap enough for every message); at most once a second
 * lib/daemon/server.c takes what changed (metrics_take: counter and
 * histogram deltas, gauge values, the error-level log lines since the last
 * take) and sends it to master as one METRICS message on the child's
 * master pipe. Never per message, never blocking.
 *
 * master merges the reports into one store (mstore_*: counters add up,
 * gauges are kept per child slot and summed) and renders the Prometheus
 * text exposition format (version 0.0.4). Both tables are bounded (512
 * series in a child, 4096 in master): a series that does not fit is
 * dropped, never grown into.
 * Label values are cut to METRIC_LABEL_MAX - 1 printable ASCII octets
 * (anything else becomes '?'); they come from the config, the code and
 * rule names, never from mail.
 */
#ifndef POSTERN_METRICS_H
#define POSTERN_METRICS_H

#include <stdint.h>
#include "util/buf.h"

enum metric_kind { MK_COUNTER, MK_GAUGE, MK_HISTO };

enum metric_id {
#define METRIC(ID, KIND, name, l1, l2, help) MET_##ID,
#include "metrics/metrics.def"
#undef METRIC
    MET__COUNT
};

#define METRIC_LABEL_MAX 48
#define METRIC_BUCKETS   16     /* plus +Inf */
extern const double metric_bucket_le[METRIC_BUCKETS];   /* upper bounds, seconds */

struct metric_def {
    const char *name, *l1, *l2, *help;
    enum metric_kind kind;
};
extern const struct metric_def metric_defs[MET__COUNT];

/* ---- counting (any process, any thread) ------------------------------ */
void metric_add(enum metric_id id, uint64_t n, const char *l1, const char *l2);
/* A gauge of this process moves by delta (sessions open now). */
void metric_gauge(enum metric_id id, int64_t delta, const char *l1, const char *l2);
/* One latency observation in microseconds. */
void metric_observe(enum metric_id id, int64_t usec, const char *l1, const char *l2);
/* An error-level event (the log calls it): kept for `postern status`. */
void metric_error(const char *text);
/* Append everything that changed since the last call as the METRICS
 * payload (lines, see metrics.c) and reset the deltas; 0 = nothing new. */
int  metrics_take(buf_t *out);

/* ---- master's store -------------------------------------------------- */
struct mstore;
struct mstore *mstore_new(int max_series);
void mstore_free(struct mstore *s);
/* Merge a child's METRICS payload; src = the child's slot (its gauges
 * replace that slot's earlier values). Each error line goes to on_error.
 * -1 when a line is malformed (the rest is ignored). */
int  mstore_merge(struct mstore *s, int src, const char *data, size_t len,
                  void (*on_error)(int64_t when, const char *text, void *arg), void *arg);
/* A child died: its gauges count no more. */
void mstore_drop_src(struct mstore *s, int src);
/* master's own values: set a gauge (src -1) or a counter to v. */
void mstore_set(struct mstore *s, enum metric_id id, int64_t v, const char *l1, const char *l2);
/* Zero every series of a gauge (before master sets the current ones). */
void mstore_clear(struct mstore *s, enum metric_id id);
/* Prometheus text format 0.0.4 of every metric. */
void mstore_render(const struct mstore *s, buf_t *out);

#endif
