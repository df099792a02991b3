/*
 * metrics.c - the metric table (metrics.def), the series table both sides
 * use, and the child side: counting and metrics_take.
 *
 * The METRICS payload is text, one series a line, fields separated by a
 * tab (label values never hold one: mlabel_copy):
 *   C NAME L1 L2 DELTA                      counter increase
 *   G NAME L1 L2 VALUE                      this process's gauge value
 *   H NAME L1 L2 COUNT SUM_US B0 .. B16     histogram increase (per bucket)
 *   E UNIXTIME TEXT                         an error-level log event
 * It travels inside one IPC frame (lib/ipc), so its length is bounded by
 * IPC_MAX_FRAME; a child's table holds at most CHILD_SERIES series.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "util/hash.h"
#include "metrics/metrics_int.h"

const struct metric_def metric_defs[MET__COUNT] = {
#define METRIC(ID, KIND, name, l1, l2, help) { name, l1, l2, help, MK_##KIND },
#include "metrics/metrics.def"
#undef METRIC
};

const double metric_bucket_le[METRIC_BUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300 };

void mlabel_copy(char *dst, const char *src)
{
    size_t i = 0;
    for (; src && src[i] && i < METRIC_LABEL_MAX - 1; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    dst[i] = '\0';
}

static uint32_t mhash(int id, int src, const char *l1, const char *l2)
{
    uint32_t h = fnv1a_str(FNV1A_INIT ^ (uint32_t)id ^ ((uint32_t)src << 8), l1);
    return fnv1a_str(fnv1a_byte(h, 0xff), l2);     /* 0xff: between the labels */
}

struct mseries *mtab_get(struct mtab *t, int id, int src, const char *l1, const char *l2)
{
    uint32_t mask = (uint32_t)t->cap - 1;
    for (uint32_t i = mhash(id, src, l1, l2) & mask, k = 0; k < (uint32_t)t->cap;
         i = (i + 1) & mask, k++) {
        struct mseries *e = &t->v[i];
        if (!e->used) {
            if (t->n >= t->cap * 3 / 4)
                break;   /* keep probes short: the table is full */
            e->used = 1;
            e->id = (uint16_t)id;
            e->src = src;
            str_copy(e->l1, sizeof(e->l1), l1);
            str_copy(e->l2, sizeof(e->l2), l2);
            t->n++;
            return e;
        }
        if (e->id == id && e->src == src && strcmp(e->l1, l1) == 0 && strcmp(e->l2, l2) == 0)
            return e;
    }
    t->full_logged++;
    return NULL;
}

int mbucket_of(int64_t usec)
{
    double s = (double)usec / 1e6;
    for (int i = 0; i < METRIC_BUCKETS; i++)
        if (s <= metric_bucket_le[i])
            return i;
    return METRIC_BUCKETS;
}

/* ---- the child side ---------------------------------------------------- */

#define CHILD_SERIES 512
#define CHILD_ERRORS 8

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct mseries child_v[CHILD_SERIES];
static struct mtab child = { child_v, CHILD_SERIES, 0, 0 };
static struct { int64_t when; char text[200]; } errs[CHILD_ERRORS];
static int nerrs;

static struct mseries *child_get(enum metric_id id, const char *l1, const char *l2)
{
    char a[METRIC_LABEL_MAX], b[METRIC_LABEL_MAX];
    mlabel_copy(a, l1);
    mlabel_copy(b, l2);
    return mtab_get(&child, (int)id, -1, a, b);
}

void metric_add(enum metric_id id, uint64_t n, const char *l1, const char *l2)
{
    pthread_mutex_lock(&mu);
    struct mseries *e = child_get(id, l1, l2);
    if (e) {
        e->v += (int64_t)n;
        e->dirty = 1;
    }
    pthread_mutex_unlock(&mu);
}

void metric_gauge(enum metric_id id, int64_t delta, const char *l1, const char *l2)
{
    metric_add(id, (uint64_t)delta, l1, l2);   /* kept as a value, sent whole */
}

void metric_observe(enum metric_id id, int64_t usec, const char *l1, const char *l2)
{
    if (usec < 0)
        usec = 0;
    pthread_mutex_lock(&mu);
    struct mseries *e = child_get(id, l1, l2);
    if (e) {
        e->count++;
        e->sum_us += (uint64_t)usec;
        int k = mbucket_of(usec);
        if (k < METRIC_BUCKETS)
            e->b[k]++;      /* +Inf: count minus the finite buckets */
        e->dirty = 1;
    }
    pthread_mutex_unlock(&mu);
}

void metric_error(const char *text)
{
    pthread_mutex_lock(&mu);
    if (nerrs == CHILD_ERRORS) {   /* keep the latest */
        memmove(&errs[0], &errs[1], sizeof(errs[0]) * (CHILD_ERRORS - 1));
        nerrs--;
    }
    errs[nerrs].when = (int64_t)time(NULL);
    size_t i = 0;
    for (; text[i] && i < sizeof(errs[0].text) - 1; i++) {
        unsigned char c = (unsigned char)text[i];
        errs[nerrs].text[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    errs[nerrs].text[i] = '\0';
    nerrs++;
    pthread_mutex_unlock(&mu);
}

static void take_series(buf_t *out, struct mseries *e)
{
    const struct metric_def *d = &metric_defs[e->id];
    if (d->kind == MK_HISTO) {
        buf_printf(out, "H\t%s\t%s\t%s\t%llu\t%llu", d->name, e->l1, e->l2,
                   (unsigned long long)e->count, (unsigned long long)e->sum_us);
        /* +Inf is what the finite buckets do not hold */
        uint64_t fin = 0;
        for (int i = 0; i < METRIC_BUCKETS; i++) {
            buf_printf(out, "\t%llu", (unsigned long long)e->b[i]);
            fin += e->b[i];
        }
        buf_printf(out, "\t%llu\n", (unsigned long long)(e->count - fin));
        e->count = e->sum_us = 0;
        memset(e->b, 0, sizeof(e->b));
    } else if (d->kind == MK_GAUGE) {
        buf_printf(out, "G\t%s\t%s\t%s\t%lld\n", d->name, e->l1, e->l2, (long long)e->v);
    } else {
        buf_printf(out, "C\t%s\t%s\t%s\t%lld\n", d->name, e->l1, e->l2, (long long)e->v);
        e->v = 0;
    }
    e->dirty = 0;
}

int metrics_take(buf_t *out)
{
    size_t before = out->len;
    pthread_mutex_lock(&mu);
    for (int i = 0; i < child.cap; i++)
        if (child.v[i].used && child.v[i].dirty)
            take_series(out, &child.v[i]);
    for (int i = 0; i < nerrs; i++)
        buf_printf(out, "E\t%lld\t%s\n", (long long)errs[i].when, errs[i].text);
    nerrs = 0;
    pthread_mutex_unlock(&mu);
    return out->len > before;
}
