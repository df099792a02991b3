/*
 * log_event.c - renders structured events (log_event.h) as JSON fields or
 * as the event's Postfix-style text layout, both from the same typed
 * values, and hands the body to log_write_line (log.c). Never fails: a
 * value too long is cut, a field that does not fit is dropped and the
 * line says "truncated":true, so every JSON line still parses.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/buf.h"
#include "util/log_event.h"

_Static_assert(LF__COUNT <= 64, "one bit per field in log_ev.set");

enum ftype { S, N, D, B };
static const struct { const char *name; enum ftype type; } fields[] = {
#define LOG_FIELD(id, name, type) { name, type },
#include "util/log_fields.def"
#undef LOG_FIELD
};

enum { INFO = LOG_L_INFO, WARN = LOG_L_WARN };
static const struct { const char *name; enum log_level lvl; const char *text; } events[] = {
#define LOG_EVENT(id, name, lvl, text) { name, (enum log_level)(lvl), text },
#include "util/log_events.def"
#undef LOG_EVENT
};

const char *log_event_name(enum log_event ev) { return events[ev].name; }
const char *log_field_name(enum log_field f) { return fields[f].name; }

void log_ev_init(struct log_ev *e, enum log_event ev)
{
    e->ev = ev;
    e->lvl = events[ev].lvl;
    e->set = 0;
    e->used = 0;
    e->client_raw = 0;
}

int log_event_on(enum log_event ev) { return log_level_enabled(events[ev].lvl); }

void log_ev_level(struct log_ev *e, enum log_level lvl) { e->lvl = lvl; }

void log_ev_str(struct log_ev *e, enum log_field f, const char *s)
{
    if (f == LF_CLIENT)
        e->client_raw = 0;
    if (s == NULL) {
        e->set &= ~(1ULL << f);
        return;
    }
    e->v[f].s = s;
    e->set |= 1ULL << f;
}

void log_ev_num(struct log_ev *e, enum log_field f, long long n)
{
    e->v[f].n = n;
    e->set |= 1ULL << f;
}

void log_ev_dbl(struct log_ev *e, enum log_field f, double d)
{
    e->v[f].d = d;
    e->set |= 1ULL << f;
}

void log_ev_bool(struct log_ev *e, enum log_field f, int b) { log_ev_num(e, f, b != 0); }

void log_ev_printf(struct log_ev *e, enum log_field f, const char *fmt, ...)
{
    size_t room = sizeof(e->scratch) - e->used;
    if (room < 2)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(e->scratch + e->used, room, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    log_ev_str(e, f, e->scratch + e->used);
    e->used += (size_t)n < room ? (size_t)n + 1 : room;
}

void log_ev_client(struct log_ev *e, const char *ip, unsigned port)
{
    /* shaped in value_text: most events are built and not logged */
    e->v[LF_CLIENT].s = ip ? ip : "?";
    e->v[LF_CLIENT].n = port;
    e->set |= 1ULL << LF_CLIENT;
    e->client_raw = 1;
}

static int is_set(const struct log_ev *e, int f) { return f >= 0 && (e->set >> f & 1) != 0; }

/* A value as text: strings escaped (\xNN), numbers plain. */
static size_t value_text(const struct log_ev *e, int f, char *out, size_t cap)
{
    switch (fields[f].type) {
    case N: return (size_t)snprintf(out, cap, "%lld", e->v[f].n) < cap ? strlen(out) : 0;
    case D: return (size_t)snprintf(out, cap, "%.2f", e->v[f].d) < cap ? strlen(out) : 0;
    case B: return (size_t)snprintf(out, cap, "%s", e->v[f].n ? "yes" : "no");
    default: break;
    }
    const char *s = e->v[f].s;
    char client[LOG_EV_SCRATCH];        /* as log_ev_printf would have cut it */
    if (f == LF_CLIENT && e->client_raw) {
        snprintf(client, sizeof(client), "[%s]:%u", s, (unsigned)e->v[f].n);
        s = client;
    }
    return log_escape(out, cap, s, strnlen(s, LOG_VALUE_MAX));
}

static int field_by_name(const char *name, size_t n)
{
    for (int f = 0; f < LF__COUNT; f++)
        if (strlen(fields[f].name) == n && memcmp(fields[f].name, name, n) == 0)
            return f;
    return -1;
}

/*
 * The text layouts, compiled once (per process, on first use) into ops, so
 * that rendering a line looks no field up by name: OP_LIT copies text,
 * OP_FIELD / OP_PLURAL show field f, OP_OPT opens a "[...]" part shown only
 * when every field in need is set (never: it names an unknown field),
 * else rendering goes on at op skip. The result is what scanning the layout
 * text gave: an unknown field shows nothing, ']' anywhere is dropped, a '['
 * without ']' is dropped, a '{' without '}' ends the line.
 */
enum { OP_LIT, OP_FIELD, OP_PLURAL, OP_OPT };
struct op {
    unsigned char k, never;
    short f;                    /* OP_FIELD, OP_PLURAL: -1 unknown */
    unsigned len;               /* OP_LIT */
    unsigned skip;              /* OP_OPT: first op past the part */
    const char *s;              /* OP_LIT */
    uint64_t need;              /* OP_OPT */
    const char *end;            /* OP_OPT while compiling: the part's ']' */
};
static struct op *ops;
static unsigned ev_op[LE__COUNT + 1];   /* event ev: ops[ev_op[ev] .. ev_op[ev + 1]) */
static pthread_once_t ops_once = PTHREAD_ONCE_INIT;

/* The fields named inside t[0..n): their bits, never = an unknown one. */
static uint64_t segment_need(const char *t, size_t n, unsigned char *never)
{
    uint64_t need = 0;
    for (size_t i = 0; i < n; i++) {
        if (t[i] != '{')
            continue;
        size_t j = i + 1;
        while (j < n && t[j] != '}' && t[j] != '|')
            j++;
        int f = field_by_name(t + i + 1, j - i - 1);
        if (f < 0)
            *never = 1;
        else
            need |= 1ULL << f;
    }
    return need;
}

/* Ops for one layout from ops[k]; returns the next free index. */
static unsigned compile_one(const char *t, unsigned k)
{
    unsigned first = k;
    for (const char *p = t; *p; p++) {
        /* a part ends after its ']': rendering goes on at the next op */
        for (unsigned i = first; i < k; i++)
            if (ops[i].k == OP_OPT && ops[i].end && ops[i].end < p) {
                ops[i].skip = k;
                ops[i].end = NULL;
            }
        if (*p == '[') {
            const char *end = strchr(p, ']');
            if (end) {
                struct op *o = &ops[k++];
                *o = (struct op){ .k = OP_OPT, .end = end };
                o->need = segment_need(p + 1, (size_t)(end - p - 1), &o->never);
            }
            continue;
        }
        if (*p == ']')
            continue;
        if (*p == '{') {
            const char *end = strchr(p, '}');
            if (end == NULL)
                break;
            const char *bar = memchr(p, '|', (size_t)(end - p));
            int f = field_by_name(p + 1, (size_t)((bar ? bar : end) - p - 1));
            ops[k++] = (struct op){ .k = bar ? OP_PLURAL : OP_FIELD, .f = (short)f };
            p = end;
            continue;
        }
        if (k > first && ops[k - 1].k == OP_LIT && ops[k - 1].s + ops[k - 1].len == p)
            ops[k - 1].len++;
        else
            ops[k++] = (struct op){ .k = OP_LIT, .s = p, .len = 1 };
    }
    for (unsigned i = first; i < k; i++)     /* parts that end the layout */
        if (ops[i].k == OP_OPT && ops[i].end) {
            ops[i].skip = k;
            ops[i].end = NULL;
        }
    return k;
}

static void compile_all(void)
{
    size_t total = 0;
    for (int ev = 0; ev < LE__COUNT; ev++)
        total += strlen(events[ev].text);       /* at most one op per character */
    ops = xcalloc(total + 1, sizeof(*ops));
    unsigned k = 0;
    for (int ev = 0; ev < LE__COUNT; ev++) {
        ev_op[ev] = k;
        k = compile_one(events[ev].text, k);
    }
    ev_op[LE__COUNT] = k;
}

static size_t render_text(const struct log_ev *e, char *out, size_t cap)
{
    static __thread char val[4 * LOG_VALUE_MAX + 1];
    pthread_once(&ops_once, compile_all);
    size_t o = 0;
    unsigned i = ev_op[e->ev], end = ev_op[e->ev + 1];
    while (i < end && o + 1 < cap) {
        const struct op *op = &ops[i++];
        if (op->k == OP_LIT) {
            size_t n = op->len < cap - 1 - o ? op->len : cap - 1 - o;
            memcpy(out + o, op->s, n);
            o += n;
        } else if (op->k == OP_OPT) {
            if (op->never || (e->set & op->need) != op->need)
                i = op->skip;
        } else if (is_set(e, op->f)) {
            if (op->k == OP_PLURAL)         /* {count|s}: plural suffix */
                o = log_put(out, o, cap, "%s", e->v[op->f].n == 1 ? "" : "s");
            else {
                size_t n = value_text(e, op->f, val, sizeof(val));
                o = log_put(out, o, cap, "%.*s", (int)n, val);
            }
        }
    }
    out[o] = '\0';
    return o;
}


/* `,"key":value` for one field into tmp; 0 when it did not fit. */
static size_t json_field(const struct log_ev *e, int f, char *out, size_t cap)
{
    static __thread char val[4 * LOG_VALUE_MAX + 1];
    size_t o = log_put(out, 0, cap, ",\"%s\":", fields[f].name);
    switch (fields[f].type) {
    case N: return log_put(out, o, cap, "%lld", e->v[f].n);
    case D: return log_put(out, o, cap, "%.3f", e->v[f].d);
    case B: return log_put(out, o, cap, "%s", e->v[f].n ? "true" : "false");
    default: break;
    }
    size_t n = value_text(e, f, val, sizeof(val));
    o = log_put(out, o, cap, "\"");
    o = log_json_escape(out, o, cap, val, n);
    if (o + 2 >= cap)
        return 0;
    out[o++] = '"';
    out[o] = '\0';
    return o;
}

static size_t render_json(const struct log_ev *e, char *out, size_t cap)
{
    static __thread char one[6 * 4 * LOG_VALUE_MAX + 64];
    size_t o = 0;
    int truncated = 0;
    for (int f = 0; f < LF__COUNT; f++) {
        if (!is_set(e, f) || f == LF_SESSION || f == LF_QUEUE_ID)
            continue;                       /* the head carries those two */
        size_t n = json_field(e, f, one, sizeof(one));
        if (n == 0 || o + n + 24 >= cap) {
            truncated = 1;
            continue;
        }
        memcpy(out + o, one, n);
        o += n;
    }
    if (truncated)
        o = log_put(out, o, cap, ",\"truncated\":true");
    out[o] = '\0';
    return o;
}

void log_admin(const char *kind, const char *action, long long count, const char *ids,
               const char *user, long long uid)
{
    struct log_ev e;
    log_ev_init(&e, LE_ADMIN);
    log_ev_str(&e, LF_KIND, kind);
    log_ev_str(&e, LF_ACTION, action);
    if (count >= 0)
        log_ev_num(&e, LF_COUNT, count);
    log_ev_str(&e, LF_IDS, ids && ids[0] ? ids : NULL);
    log_ev_str(&e, LF_BY, user);
    log_ev_num(&e, LF_UID, uid);
    log_ev_emit(&e);
}

size_t log_ev_render(const struct log_ev *e, int json, char *out, size_t cap)
{
    return json ? render_json(e, out, cap) : render_text(e, out, cap);
}

void log_ev_emit(struct log_ev *e)
{
    if (!log_level_enabled(e->lvl))
        return;
    static __thread char body[LOG_BODY_MAX];
    if (!is_set(e, LF_QUEUE_ID) && log_qid()[0])
        log_ev_str(e, LF_QUEUE_ID, log_qid());
    if (!is_set(e, LF_SESSION) && log_session()[0])
        log_ev_str(e, LF_SESSION, log_session());
    size_t n = log_ev_render(e, log_is_json(), body, sizeof(body));
    log_write_line(e->lvl, events[e->ev].name, is_set(e, LF_QUEUE_ID) ? e->v[LF_QUEUE_ID].s : NULL,
                   is_set(e, LF_SESSION) ? e->v[LF_SESSION].s : NULL, body, n);
}
