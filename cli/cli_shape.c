/*
 * cli_shape.c - `postern queue shape [--json] [--queue Q]... [--at UNIXTIME]
 * [SELECTOR...]`: a qshape(1)-like table of queued mail by destination
 * domain and age, and the per-domain counts `postern top` shows.
 *
 * Rows: the recipient domains still to deliver (lower case; an address
 * without one counts as "(local)"), each message counted once per domain
 * however many of its recipients are there. Columns: T (total), then
 * Postfix qshape's age buckets in minutes (5 10 20 40 80 160 320 640 1280
 * 1280+): a message younger than 5 minutes counts under 5, one between 5
 * and 10 under 10, and so on. Age is from the arrival time in the queue
 * file; --at computes it as of another time (reports, tests). Default
 * queues as qshape: incoming, active and deferred. Domain names come from
 * mail: printed escaped (text) or as JSON strings, never interpreted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ctype.h>

#include "cli.h"
#include "cli_queue.h"

const int shape_minutes[SHAPE_BUCKETS - 1] = { 5, 10, 20, 40, 80, 160, 320, 640, 1280 };

static int bucket_of(int64_t age_s)
{
    for (int i = 0; i < SHAPE_BUCKETS - 1; i++)
        if (age_s < (int64_t)shape_minutes[i] * 60)
            return i;
    return SHAPE_BUCKETS - 1;
}

static struct shape_row *row_for(struct shape *s, const char *dom)
{
    unsigned h = str_hash(dom);
    if (s->hcap == 0 || s->n * 2 >= s->hcap) {   /* grow and rehash */
        int cap = s->hcap ? s->hcap * 2 : 256;
        free(s->hash);
        s->hash = xcalloc((size_t)cap, sizeof(int));
        s->hcap = cap;
        for (int i = 0; i < s->n; i++) {
            unsigned k = str_hash(s->rows[i].domain) & (unsigned)(cap - 1);
            while (s->hash[k])
                k = (k + 1) & (unsigned)(cap - 1);
            s->hash[k] = i + 1;
        }
    }
    unsigned k = h & (unsigned)(s->hcap - 1);
    for (; s->hash[k]; k = (k + 1) & (unsigned)(s->hcap - 1))
        if (strcmp(s->rows[s->hash[k] - 1].domain, dom) == 0)
            return &s->rows[s->hash[k] - 1];
    s->rows = xrealloc(s->rows, sizeof(*s->rows) * (size_t)(s->n + 1));
    struct shape_row *r = &s->rows[s->n];
    memset(r, 0, sizeof(*r));
    r->domain = xstrdup(dom);
    s->hash[k] = ++s->n;
    return r;
}

static int pending(const struct qf_rcpt *r)
{
    return r->status != DS_DELIVERED && r->status != DS_BOUNCED && r->status != DS_DISCARDED;
}

/* Count one message: once per distinct pending domain. */
static void add_message(struct shape *s, const struct qf_env *e, int64_t now)
{
    int64_t age = now - e->arrival / 1000000;
    int b = bucket_of(age < 0 ? 0 : age);
    int *done = xcalloc((size_t)e->nrcpts + 1, sizeof(int)), ndone = 0;
    for (int i = 0; i < e->nrcpts; i++) {
        if (!pending(&e->rcpts[i]))
            continue;
        const char *at = strrchr(e->rcpts[i].addr, '@');
        char dom[256];
        str_copy(dom, sizeof(dom), at && at[1] ? at + 1 : "(local)");
        for (char *p = dom; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        int row = (int)(row_for(s, dom) - s->rows), k = 0;
        while (k < ndone && done[k] != row)
            k++;
        if (k < ndone)
            continue;   /* this message already counts for the domain */
        done[ndone++] = row;
        s->rows[row].total++;
        s->rows[row].b[b]++;
    }
    if (ndone) {
        s->all.total++;
        s->all.b[b]++;
    }
    free(done);
}

static int cmp_rows(const void *a, const void *b)
{
    const struct shape_row *x = a, *y = b;
    if (x->total != y->total)
        return x->total > y->total ? -1 : 1;
    return strcmp(x->domain, y->domain);
}

int shape_collect(const struct config *cfg, const struct qsel *sel, int64_t now,
                  struct shape *s)
{
    memset(s, 0, sizeof(*s));
    s->all.domain = "TOTAL";
    int which = sel->queues ? sel->queues : (Q_INCOMING | Q_ACTIVE | Q_DEFERRED);
    struct qlist l = { NULL, 0 };
    int rc = scan(cfg, which, &l);
    for (int i = 0; i < l.n; i++) {
        struct qf_env e;
        char err[256];
        if (open_read(cfg, &l.v[i], &e, NULL, err, sizeof(err)) != 0)
            continue;   /* moved on, or damaged: `queue list` reports those */
        if (qsel_match(sel, &l.v[i], &e))
            add_message(s, &e, now);
        qf_env_free(&e);
    }
    free(l.v);
    if (s->n > 1)
        qsort(s->rows, (size_t)s->n, sizeof(*s->rows), cmp_rows);
    free(s->hash);
    s->hash = NULL;
    s->hcap = 0;
    return rc;
}

void shape_free(struct shape *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->rows[i].domain);
    free(s->rows);
    free(s->hash);
    memset(s, 0, sizeof(*s));
}

static void text_row(buf_t *o, const struct shape_row *r)
{
    size_t before = o->len;
    text_str(o, r->domain);
    size_t w = o->len - before;
    if (w < 30) {   /* right-align the name in 30 columns, as qshape does */
        buf_t name;
        buf_init(&name, 64);
        buf_append(&name, o->data + before, w);
        buf_truncate(o, before);
        buf_printf(o, "%*s%s", (int)(30 - w), "", name.data);
        buf_free(&name);
    }
    buf_printf(o, " %6ld", r->total);
    for (int i = 0; i < SHAPE_BUCKETS; i++)
        buf_printf(o, " %5ld", r->b[i]);
    buf_append_char(o, '\n');
}

static void json_row(buf_t *o, const struct shape_row *r)
{
    buf_append_str(o, "{\"domain\":");
    json_str(o, r->domain, strlen(r->domain));
    buf_printf(o, ",\"total\":%ld,\"buckets\":[", r->total);
    for (int i = 0; i < SHAPE_BUCKETS; i++)
        buf_printf(o, "%s%ld", i ? "," : "", r->b[i]);
    buf_append_str(o, "]}");
}

static void print_shape(const struct shape *s, int json)
{
    buf_t o;
    buf_init(&o, 4096);
    if (json) {
        buf_append_str(&o, "{\"buckets\":[");
        for (int i = 0; i < SHAPE_BUCKETS - 1; i++)
            buf_printf(&o, "\"%d\",", shape_minutes[i]);
        buf_printf(&o, "\"%d+\"],\"total\":", shape_minutes[SHAPE_BUCKETS - 2]);
        json_row(&o, &s->all);
        buf_append_str(&o, ",\"domains\":[");
        for (int i = 0; i < s->n; i++) {
            if (i)
                buf_append_char(&o, ',');
            json_row(&o, &s->rows[i]);
        }
        buf_append_str(&o, "]}\n");
    } else {
        buf_printf(&o, "%30s %6s", "", "T");
        for (int i = 0; i < SHAPE_BUCKETS - 1; i++)
            buf_printf(&o, " %5d", shape_minutes[i]);
        buf_printf(&o, " %4d+\n", shape_minutes[SHAPE_BUCKETS - 2]);
        text_row(&o, &s->all);
        for (int i = 0; i < s->n; i++)
            text_row(&o, &s->rows[i]);
    }
    flush_out(&o);
    buf_free(&o);
}

int queue_shape(const struct config *cfg, int argc, char **argv)
{
    struct qsel sel = { 0 };
    int json = 0;
    int64_t now = (int64_t)time(NULL);
    for (int i = 0; i < argc; i++) {
        int r = qsel_parse(&sel, argc, argv, &i);   /* --queue, --sender, ... */
        if (r != 0) {
            if (r < 0)
                return EX_USAGE_;
            continue;
        }
        char *end;
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--at") == 0 && i + 1 < argc) {
            now = strtoll(argv[++i], &end, 10);
            if (*end || now <= 0) {
                cli_err("--at: expected a unix time in seconds, got \"%s\"", argv[i]);
                return EX_USAGE_;
            }
        } else {
            cli_err("queue shape: unknown argument \"%s\"", argv[i]);
            return EX_USAGE_;
        }
    }
    struct shape s;
    int rc = shape_collect(cfg, &sel, now, &s);
    print_shape(&s, json);
    shape_free(&s);
    if (fflush(stdout) != 0)
        rc = -1;
    return rc < 0 ? EX_FAIL : 0;
}
