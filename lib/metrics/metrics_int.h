/*
 * metrics_int.h - the series table shared by the child side (metrics.c)
 * and master's store (metrics_store.c): open addressing on (metric, src,
 * labels), no deletion (a gauge of a dead child is zeroed, its slot reused
 * by the next child of that slot).
 */
#ifndef POSTERN_METRICS_INT_H
#define POSTERN_METRICS_INT_H

#include "metrics/metrics.h"

struct mseries {
    uint8_t used, dirty;
    uint16_t id;
    int32_t src;                      /* gauges in master: the child's slot; else -1 */
    char l1[METRIC_LABEL_MAX], l2[METRIC_LABEL_MAX];
    int64_t v;                        /* counter or gauge */
    uint64_t count, sum_us, b[METRIC_BUCKETS];   /* histogram (not cumulative) */
};

struct mtab {
    struct mseries *v;
    int cap;                          /* a power of two */
    int n;
    int full_logged;
};

/* Copy a label value: printable ASCII only, cut to METRIC_LABEL_MAX - 1. */
void mlabel_copy(char *dst, const char *src);
/* The series for (id, src, l1, l2), created when missing; NULL when full.
 * l1/l2 are already clean (mlabel_copy). */
struct mseries *mtab_get(struct mtab *t, int id, int src, const char *l1, const char *l2);
/* Index of the bucket an observation of usec falls in (METRIC_BUCKETS = +Inf). */
int  mbucket_of(int64_t usec);

#endif
