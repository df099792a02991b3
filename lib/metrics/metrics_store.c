/*
 * metrics_store.c - master's side of metrics: merging the children's
 * METRICS payloads (metrics.c describes the lines) into one table and
 * rendering the Prometheus text exposition format 0.0.4.
 * A payload is checked line by line; the first malformed line stops the
 * merge (-1) and master logs it: a child cannot make master misbehave.
 */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "metrics/metrics_int.h"

struct mstore { struct mtab t; };

struct mstore *mstore_new(int max_series)
{
    struct mstore *s = xcalloc(1, sizeof(*s));
    int cap = 64;
    while (cap < max_series * 4 / 3 + 1)
        cap *= 2;
    s->t.cap = cap;
    s->t.v = xcalloc((size_t)cap, sizeof(struct mseries));
    return s;
}

void mstore_free(struct mstore *s)
{
    if (s == NULL)
        return;
    free(s->t.v);
    free(s);
}

static int id_of(const char *name)
{
    for (int i = 0; i < MET__COUNT; i++)
        if (strcmp(metric_defs[i].name, name) == 0)
            return i;
    return -1;
}

/* Split line (NUL-terminated, no newline) at tabs into at most max fields. */
static int split(char *line, char **f, int max)
{
    int n = 0;
    f[n++] = line;
    for (char *p = line; *p && n < max; p++)
        if (*p == '\t') {
            *p = '\0';
            f[n++] = p + 1;
        }
    return n;
}

static int num(const char *s, long long *v_r)
{
    char *end;
    if (*s == '\0')
        return -1;
    *v_r = strtoll(s, &end, 10);
    return *end == '\0' ? 0 : -1;
}

static int merge_line(struct mstore *s, int src, char *line,
                      void (*on_error)(int64_t, const char *, void *), void *arg)
{
    char *f[6 + METRIC_BUCKETS + 1];
    int n = split(line, f, (int)(sizeof(f) / sizeof(f[0])));
    long long v;
    if (strcmp(f[0], "E") == 0 && n >= 3 && num(f[1], &v) == 0) {
        if (on_error)
            on_error((int64_t)v, f[2], arg);
        return 0;
    }
    if (n < 5)
        return -1;
    int id = id_of(f[1]);
    char l1[METRIC_LABEL_MAX], l2[METRIC_LABEL_MAX];
    mlabel_copy(l1, f[2]);
    mlabel_copy(l2, f[3]);
    if (id < 0)
        return 0;   /* a newer child's metric: ignored */
    enum metric_kind k = metric_defs[id].kind;
    char want = k == MK_COUNTER ? 'C' : k == MK_GAUGE ? 'G' : 'H';
    if (f[0][0] != want || f[0][1] != '\0')
        return -1;
    if (k == MK_HISTO && n != 6 + METRIC_BUCKETS + 1)
        return -1;
    struct mseries *e = mtab_get(&s->t, id, k == MK_GAUGE ? src : -1, l1, l2);
    if (e == NULL)
        return 0;
    if (k != MK_HISTO) {
        if (num(f[4], &v) < 0)
            return -1;
        int64_t sum;   /* a child's delta is not trusted to stay in range: saturate */
        if (k == MK_GAUGE)
            e->v = v;
        else if (!__builtin_add_overflow(e->v, v, &sum))
            e->v = sum;
        else
            e->v = v > 0 ? INT64_MAX : INT64_MIN;
        return 0;
    }
    long long c, sum, b;
    if (num(f[4], &c) < 0 || num(f[5], &sum) < 0)
        return -1;
    for (int i = 0; i < METRIC_BUCKETS; i++) {
        if (num(f[6 + i], &b) < 0)
            return -1;
        e->b[i] += (uint64_t)b;
    }
    e->count += (uint64_t)c;
    e->sum_us += (uint64_t)sum;
    return 0;
}

int mstore_merge(struct mstore *s, int src, const char *data, size_t len,
                 void (*on_error)(int64_t when, const char *text, void *arg), void *arg)
{
    if (memchr(data, '\0', len) != NULL)
        return -1;   /* text only */
    char *copy = xmalloc(len + 1);
    memcpy(copy, data, len);
    copy[len] = '\0';
    int rc = 0;
    for (char *line = copy, *nl; rc == 0 && *line; line = nl + 1) {
        nl = strchr(line, '\n');
        if (nl == NULL) {
            rc = -1;   /* every line ends with a newline */
            break;
        }
        *nl = '\0';
        rc = merge_line(s, src, line, on_error, arg);
    }
    free(copy);
    return rc;
}

void mstore_drop_src(struct mstore *s, int src)
{
    for (int i = 0; i < s->t.cap; i++)
        if (s->t.v[i].used && s->t.v[i].src == src)
            s->t.v[i].v = 0;
}

void mstore_set(struct mstore *s, enum metric_id id, int64_t v, const char *l1, const char *l2)
{
    char a[METRIC_LABEL_MAX], b[METRIC_LABEL_MAX];
    mlabel_copy(a, l1);
    mlabel_copy(b, l2);
    struct mseries *e = mtab_get(&s->t, (int)id, -1, a, b);
    if (e)
        e->v = v;
}

void mstore_clear(struct mstore *s, enum metric_id id)
{
    for (int i = 0; i < s->t.cap; i++)
        if (s->t.v[i].used && s->t.v[i].id == id)
            s->t.v[i].v = 0;
}

/* ---- rendering ----------------------------------------------------------- */

static void label_value(buf_t *out, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            buf_append_char(out, '\\');
        buf_append_char(out, *v);
    }
}

/* {l1="..",l2="..",extra} or nothing */
static void labels(buf_t *out, const struct metric_def *d, const struct mseries *e,
                   const char *extra)
{
    int any = 0;
    const char *names[2] = { d->l1, d->l2 }, *vals[2] = { e->l1, e->l2 };
    for (int i = 0; i < 2; i++) {
        if (names[i] == NULL)
            continue;
        buf_append_str(out, any ? "," : "{");
        buf_printf(out, "%s=\"", names[i]);
        label_value(out, vals[i]);
        buf_append_char(out, '"');
        any = 1;
    }
    if (extra) {
        buf_append_str(out, any ? "," : "{");
        buf_append_str(out, extra);
        any = 1;
    }
    if (any)
        buf_append_char(out, '}');
}

static void render_histo(buf_t *out, const struct metric_def *d, const struct mseries *e)
{
    uint64_t cum = 0;
    char le[48];
    for (int i = 0; i < METRIC_BUCKETS; i++) {
        cum += e->b[i];
        str_format(le, sizeof(le), "le=\"%g\"", metric_bucket_le[i]);
        buf_printf(out, "%s_bucket", d->name);
        labels(out, d, e, le);
        buf_printf(out, " %llu\n", (unsigned long long)cum);
    }
    buf_printf(out, "%s_bucket", d->name);
    labels(out, d, e, "le=\"+Inf\"");
    buf_printf(out, " %llu\n%s_sum", (unsigned long long)e->count, d->name);
    labels(out, d, e, NULL);
    buf_printf(out, " %.6f\n%s_count", (double)e->sum_us / 1e6, d->name);
    labels(out, d, e, NULL);
    buf_printf(out, " %llu\n", (unsigned long long)e->count);
}

/* A gauge's value over every child (each keeps its own series). */
static int64_t gauge_sum(const struct mtab *t, int upto, const struct mseries *e, int *seen_r)
{
    int64_t sum = 0;
    *seen_r = 0;
    for (int i = 0; i < t->cap; i++) {
        const struct mseries *o = &t->v[i];
        if (!o->used || o->id != e->id || strcmp(o->l1, e->l1) || strcmp(o->l2, e->l2))
            continue;
        if (i < upto)
            *seen_r = 1;   /* rendered with an earlier entry */
        sum += o->v;
    }
    return sum;
}

void mstore_render(const struct mstore *s, buf_t *out)
{
    for (int id = 0; id < MET__COUNT; id++) {
        const struct metric_def *d = &metric_defs[id];
        buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", d->name, d->help, d->name,
                   d->kind == MK_COUNTER ? "counter" : d->kind == MK_GAUGE ? "gauge" : "histogram");
        for (int i = 0; i < s->t.cap; i++) {
            const struct mseries *e = &s->t.v[i];
            if (!e->used || e->id != id)
                continue;
            if (d->kind == MK_HISTO) {
                render_histo(out, d, e);
                continue;
            }
            int64_t v = e->v;
            int seen = 0;
            if (d->kind == MK_GAUGE)
                v = gauge_sum(&s->t, i, e, &seen);
            if (seen)
                continue;
            buf_append_str(out, d->name);
            labels(out, d, e, NULL);
            buf_printf(out, " %lld\n", (long long)v);
        }
    }
}
