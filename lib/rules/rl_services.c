/*
 * rl_services.c - services: named backends the rules call, behind one
 * interface (struct rl_svc_ops: open/close, lookup/insert for tables,
 * exec for programs and delegation) so SQL/Redis backends plug in by adding
 * one ops table and its options. Every call is tri-state: found / not found
 * / temporary failure, and a temporary failure ends the evaluation with
 * V_TEMPFAIL (a 4xx), never an accept or a 5xx by accident.
 *   csv  - key[,value] lines; lookup/contains/insert. An insert appends one
 *          line (the last line of a key wins when the file is read); at
 *          max_entries keys the oldest tenth is evicted and the file is
 *          rewritten atomically (temp file, fsync, rename), as it is when
 *          superseded lines outnumber live ones: the file never holds more
 *          than about 2 x max_entries lines. Reloaded on change.
 *   cmd  - runs a program (no shell, fork + execve) with fixed + per-call
 *          arguments, the message on stdin when there is one, a timeout, a
 *          clean environment, signals at their defaults, only fds 0-2 open;
 *          output captured (64 KiB kept, the rest drained), exit status
 *          returned. A per-call argument (a value the rules computed, often
 *          from mail) that begins with '-' is never passed: the call fails
 *          temporarily, so a value from mail can never be read as an option
 *          (options belong in the service's fixed args).
 *   smtp - delegates the message to another SMTP server (MAIL, RCPT..., DATA)
 *          and returns its final reply code (text via .reply()).
 * Every blocking wait (a child's output and exit, a socket, a table's lock)
 * ends at the sooner of the service's timeout and the calling thread's
 * evaluation deadline (rl_set_deadline), so a slow backend never holds an
 * evaluation past it. Each service locks itself: one program may be used
 * from several threads.
 * This file: the registry (kinds, options, creation), the deadline and the
 * methods the rules call; the backends are rl_svc_csv.c, rl_svc_cmd.c and
 * rl_svc_smtp.c (interface: rl_svc.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "util/clock.h"
#include "util/log.h"
#include "rules/rl_svc.h"

const struct rl_svc_option rl_svc_options[] = {
    { SVC_CSV, "path", T_STRING, 1, 0, 0, NULL },
    { SVC_CSV, "max_entries", T_INT, 0, 1, CSV_MAX_ENTRIES_MAX, NULL },
    { SVC_CMD, "path", T_STRING, 1, 0, 0, NULL },
    { SVC_CMD, "args", T_LIST, 0, 0, 0, NULL },
    { SVC_CMD, "timeout", T_INT, 0, 1, RL_SVC_TIMEOUT_MAX, NULL },
    { SVC_CMD, "user", T_STRING, 0, 0, 0,
      "commands run as the filter's own unprivileged user, never as another one" },
    { SVC_SMTP, "address", T_STRING, 1, 0, 0, NULL },
    { SVC_SMTP, "timeout", T_INT, 0, 1, RL_SVC_TIMEOUT_MAX, NULL },
    { SVC_SMTP, "helo", T_STRING, 0, 0, 0, NULL },
};
const int rl_nsvc_options = (int)(sizeof(rl_svc_options) / sizeof(rl_svc_options[0]));

/* ---- deadlines -------------------------------------------------------------------------------------- */
static _Thread_local int64_t eval_deadline;     /* CLOCK_MONOTONIC ms; 0 = none */

void rl_set_deadline(int64_t mono_ms) { eval_deadline = mono_ms; }

/* Still declared in rules.h for the unit tests; the code uses clock_now_ms. */

/* Milliseconds one wait of a service whose timeout is timeout_s may take
 * from now: the sooner of that and the evaluation deadline (*cut = 1 when
 * the deadline is the nearer). <= 0: no time left. */
int64_t svc_wait_ms(long timeout_s, int *cut)
{
    int64_t t = (int64_t)timeout_s * 1000;
    if (eval_deadline > 0) {
        int64_t d = eval_deadline - clock_now_ms();
        if (d <= t) {
            t = d;
            if (cut)
                *cut = 1;
        }
    }
    return t;
}

/* The service's lock, waited for until the evaluation deadline at most. */
int svc_lock(struct rl_service *s)
{
    if (eval_deadline <= 0) {
        pthread_mutex_lock(&s->mu);
        return 0;
    }
    int64_t left = eval_deadline - clock_now_ms();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (left < 0)
        left = 0;
    ts.tv_sec += (time_t)(left / 1000);
    ts.tv_nsec += (long)(left % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    if (pthread_mutex_timedlock(&s->mu, &ts) != 0) {
        log_warn("rules: service %s: busy until the evaluation deadline", s->name);
        return -1;
    }
    return 0;
}

/* Option name's string value (def when absent). */
const char *svc_opt_str(const char **opt, const struct rl_value *val, int nopt, const char *name,
                           const char *def)
{
    for (int i = 0; i < nopt; i++)
        if (strcmp(opt[i], name) == 0 && val[i].t != T_INT)
            return val[i].u.s;
    return def;
}

/* Option name's integer value (def when absent). */
long svc_opt_int(const char **opt, const struct rl_value *val, int nopt, const char *name, long def)
{
    for (int i = 0; i < nopt; i++)
        if (strcmp(opt[i], name) == 0 && val[i].t == T_INT)
            return (long)val[i].u.i;
    return def;
}

/* p against the rules file's directory unless absolute (malloc'd). */
char *svc_resolve(const struct rl_service *s, const char *p)
{
    buf_t b;
    buf_init(&b, 128);
    if (p[0] != '/')
        buf_printf(&b, "%s/", s->basedir);
    buf_append_str(&b, p);
    char *r = buf_steal(&b);
    buf_free(&b);
    return r;
}

int svc_deadline_passed(void)
{
    return eval_deadline > 0 && clock_now_ms() >= eval_deadline;
}

static const struct rl_svc_ops *const svc_ops[] = {
    &rl_svc_csv_ops, &rl_svc_cmd_ops, &rl_svc_smtp_ops,
};

const char *rl_svc_kind_name(enum rl_svc_kind k)
{
    for (size_t i = 0; i < sizeof(svc_ops) / sizeof(svc_ops[0]); i++)
        if (svc_ops[i]->kind == k)
            return svc_ops[i]->name;
    return "?";
}

int rl_svc_kind_parse(const char *s, size_t n)
{
    for (size_t i = 0; i < sizeof(svc_ops) / sizeof(svc_ops[0]); i++)
        if (strlen(svc_ops[i]->name) == n && memcmp(svc_ops[i]->name, s, n) == 0)
            return svc_ops[i]->kind;
    return 0;
}

struct rl_service *rl_service_new(enum rl_svc_kind k, const char *name, const char *basedir,
                                  const char **opt, const struct rl_value *val, int nopt,
                                  char *err, size_t errlen)
{
    const struct rl_svc_ops *ops = NULL;
    for (size_t i = 0; i < sizeof(svc_ops) / sizeof(svc_ops[0]); i++)
        if (svc_ops[i]->kind == k)
            ops = svc_ops[i];
    if (ops == NULL) {
        snprintf(err, errlen, "unknown service kind");
        return NULL;
    }
    struct rl_service *s = xcalloc(1, sizeof(*s));
    s->ops = ops;
    s->name = xstrdup(name);
    s->basedir = xstrdup(basedir);
    pthread_mutex_init(&s->mu, NULL);
    if (ops->open(s, opt, val, nopt, err, errlen) < 0) {
        rl_service_free(s);
        return NULL;
    }
    return s;
}

void rl_service_free(void *p)
{
    struct rl_service *s = p;
    if (s == NULL)
        return;
    s->ops->close(s);
    pthread_mutex_destroy(&s->mu);
    free(s->path);
    free(s->name);
    free(s->basedir);
    free(s);
}

int rl_service_index(const struct rl_service *s) { return s->index; }
const char *rl_service_name(const struct rl_service *s) { return s->name; }
void rl_service_set_index(struct rl_service *s, int i) { s->index = i; }

/* ---- methods (the registry the checker and VM use) ------------------------------------------------ */
static const char *arg_text(struct rl_vm *vm, const struct rl_value *v)
{
    buf_reset(&vm->tmp);
    rl_value_str(v, &vm->tmp);
    for (size_t i = 0; i < vm->tmp.len; i++)
        if (vm->tmp.data[i] == '\0')
            vm->tmp.data[i] = ' ';
    return rl_vm_strdup(vm, vm->tmp.data, vm->tmp.len);
}

static int tempfail(struct rl_vm *vm, const struct rl_service *s, const char *what)
{
    rl_vm_fail(vm, V_TEMPFAIL, "service %s: %s failed temporarily", s->name, what);
    return -1;
}

static int m_contains(struct rl_vm *vm, struct rl_value *a, int n, struct rl_value *out, const void *self)
{
    struct rl_service *s = (struct rl_service *)self;
    int rc = s->ops->lookup(s, arg_text(vm, &a[0]), NULL);
    if (rc == SVC_TEMPFAIL)
        return tempfail(vm, s, "lookup");
    out->t = T_BOOL;
    out->u.i = rc == SVC_FOUND;
    return 0;
}

static int m_lookup(struct rl_vm *vm, struct rl_value *a, int n, struct rl_value *out, const void *self)
{
    struct rl_service *s = (struct rl_service *)self;
    buf_t v;
    buf_init(&v, 64);
    int rc = s->ops->lookup(s, arg_text(vm, &a[0]), &v);
    if (rc == SVC_TEMPFAIL) {
        buf_free(&v);
        return tempfail(vm, s, "lookup");
    }
    out->t = T_STRING;
    out->u.s = rl_vm_strdup(vm, v.data, v.len);
    out->len = (uint32_t)v.len;
    buf_free(&v);
    return 0;
}

static int m_insert(struct rl_vm *vm, struct rl_value *a, int n, struct rl_value *out, const void *self)
{
    struct rl_service *s = (struct rl_service *)self;
    char now[32];
    snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
    const char *key = arg_text(vm, &a[0]);
    const char *val = n > 1 ? arg_text(vm, &a[1]) : now;
    if (s->ops->insert(s, key, val) == SVC_TEMPFAIL)
        return tempfail(vm, s, "insert");
    return 0;
}

static void keep_output(struct rl_vm *vm, const struct rl_service *s, const buf_t *o)
{
    if (vm->svc_out == NULL)
        vm->svc_out = xcalloc((size_t)vm->p->nsvcs, sizeof(char *));
    free(vm->svc_out[s->index]);
    vm->svc_out[s->index] = xstrndup(o->data, o->len);
}

static int m_exec(struct rl_vm *vm, struct rl_value *a, int n, struct rl_value *out, const void *self)
{
    struct rl_service *s = (struct rl_service *)self;
    const char *args[RL_MAX_ARGS];
    for (int i = 0; i < n && i < RL_MAX_ARGS; i++)
        args[i] = arg_text(vm, &a[i]);
    buf_t o;
    buf_init(&o, 256);
    int st = 0;
    int rc = s->ops->exec(s, vm, args, n, &o, &st);
    keep_output(vm, s, &o);
    buf_free(&o);
    if (rc == SVC_TEMPFAIL)
        return tempfail(vm, s, s->ops->kind == SVC_SMTP ? "delegation" : "command");
    out->t = T_INT;
    out->u.i = st;
    return 0;
}

static int m_output(struct rl_vm *vm, struct rl_value *a, int n, struct rl_value *out, const void *self)
{
    const struct rl_service *s = self;
    const char *o = vm->svc_out && vm->svc_out[s->index] ? vm->svc_out[s->index] : "";
    out->t = T_STRING;
    out->u.s = o;
    out->len = (uint32_t)strlen(o);
    return 0;
}

#define S TY(T_STRING, 0)
const struct rl_svc_method rl_svc_methods[] = {
    { SVC_CSV, "contains", 1, 1, { S }, TY(T_BOOL, 0), STAGES_ALL, 1, m_contains },
    { SVC_CSV, "lookup", 1, 1, { S }, S, STAGES_ALL, 1, m_lookup },
    { SVC_CSV, "insert", 1, 2, { S, S }, TY(T_VOID, 0), STAGES_ALL, 1, m_insert },
    { SVC_CMD, "run", 0, RL_MAX_ARGS, { S, S, S, S }, TY(T_INT, 0), STAGES_ALL, 1, m_exec },
    { SVC_CMD, "output", 0, 0, { S }, S, STAGES_ALL, 0, m_output },
    { SVC_SMTP, "delegate", 0, 0, { S }, TY(T_INT, 0),
      STAGE_BIT(STAGE_DATA) | STAGE_BIT(STAGE_POSTQ), 1, m_exec },
    { SVC_SMTP, "reply", 0, 0, { S }, S, STAGES_ALL, 0, m_output },
};
const int rl_nsvc_methods = (int)(sizeof(rl_svc_methods) / sizeof(rl_svc_methods[0]));

int rl_svc_method_find(enum rl_svc_kind k, const char *name, size_t n)
{
    for (int i = 0; i < rl_nsvc_methods; i++)
        if (rl_svc_methods[i].kind == k && strlen(rl_svc_methods[i].name) == n &&
            memcmp(rl_svc_methods[i].name, name, n) == 0)
            return i;
    return -1;
}
