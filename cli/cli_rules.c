/*
 * cli_rules.c - `postern rules check [FILE] [--disasm]`, `postern rules test
 * FILE ...` and the hidden `postern rules bench [FILE]`.
 *
 * check compiles a rules file (default: the configuration's `rules`) and
 * prints every error as file:line:col: message (exit 1). test replays one
 * transaction offline through every stage - connect, helo, auth, mail, each
 * rcpt, data (the .eml written to a temporary queue file with lib/mail/qfile.h so
 * the data stage reads it exactly as in production), postq, deliver - and
 * prints per stage which rule decided, the status with its reply, every
 * mutation and delivery choice. Services run for real (a csv insert writes
 * its file). bench prints the median cost of one stage evaluation.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "mail/qfile.h"
#include "rules/rules.h"
#include "mail/spool.h"

static void print_diags(const struct rl_diag *d)
{
    for (int i = 0; i < d->n; i++) {
        buf_t b;
        buf_init(&b, 128);
        rl_diag_format(&b, &d->v[i]);
        fprintf(stderr, "%s\n", b.data);
        buf_free(&b);
    }
}

static struct rl_program *compile(const char *path)
{
    struct rl_diag d = { 0 };
    struct rl_program *p = rl_compile_file(path, &d);
    print_diags(&d);
    if (p == NULL && d.n)
        fprintf(stderr, "%s: %d error%s\n", path, d.n, d.n == 1 ? "" : "s");
    rl_diag_free(&d);
    return p;
}

static const char *rules_path(struct cli *c, int argc, char **argv, int i, char **own)
{
    if (i < argc)
        return argv[i];
    struct config *cfg = cli_load_config(c->config_path);
    if (cfg == NULL)
        return NULL;
    if (cfg->rules == NULL) {
        cli_err("%s: no rules file configured (rules = ...)", c->config_path);
        config_free(cfg);
        return NULL;
    }
    *own = xstrdup(cfg->rules);
    config_free(cfg);
    return *own;
}

static int rules_check(struct cli *c, int argc, char **argv)
{
    int disasm = 0, i = 1;
    const char *file = NULL;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--disasm") == 0)
            disasm = 1;
        else if (file == NULL && argv[i][0] != '-')
            file = argv[i];
        else {
            cli_err("rules check: unknown argument %s", argv[i]);
            return EX_USAGE_;
        }
    }
    char *own = NULL;
    char *fv[1] = { (char *)file };
    const char *path = rules_path(c, file ? 1 : 0, fv, 0, &own);
    if (path == NULL)
        return EX_FAIL;
    struct rl_program *p = compile(path);
    if (p == NULL) {
        free(own);
        return EX_FAIL;
    }
    int n = 0;
    for (int s = 0; s < STAGE__COUNT; s++)
        n += rl_program_stage_rules(p, (enum stage)s);
    printf("%s: ok (%d rules and actions)\n", path, n);
    if (disasm) {
        buf_t b;
        buf_init(&b, 4096);
        rl_disasm(p, &b);
        fputs(b.data, stdout);
        buf_free(&b);
    }
    rl_program_free(p);
    free(own);
    return EX_OK_;
}

/* ---- rules test ---------------------------------------------------------------------------------- */
struct topts {
    const char *file, *client_ip, *helo, *mail_from, *message, *auth, *ptr;
    const char **rcpts; int nrcpts;
    int last_stage;
};

static void print_result(enum stage s, const char *label, const struct rl_result *r)
{
    printf("%s", stage_name(s));
    if (label)
        printf(" <%s>", label);
    printf(": %s", verdict_name(r->status));
    if (r->rule[0])
        printf(" (rule \"%s\")", r->rule);
    if (r->status != V_NEXT) {
        const struct verdict_reply *d = verdict_default(r->status, s);
        printf(": %d %s %s", r->code ? r->code : d->code, r->enhanced[0] ? r->enhanced : d->enhanced,
               r->text[0] ? r->text : d->text);
    }
    if (r->status == V_QUARANTINE)
        printf(" [quarantine %s]", r->quarantine[0] ? r->quarantine : "default");
    printf("\n");
    for (int i = 0; i < r->nmuts; i++) {
        const struct rl_mutation *m = &r->muts[i];
        int deliver = m->kind >= FILTER_M_MAILDIR;
        printf("  %s: %s", deliver ? "deliver" : "mutation", filter_mut_name(m->kind));
        if (m->rcpt[0] || deliver)
            printf(" <%s>", m->rcpt[0] ? m->rcpt : "all recipients");
        if (m->arg[0])
            printf(" %s", m->arg);
        if (m->arg2[0])
            printf(": %s", m->arg2);
        printf(" (by \"%s\")\n", m->rule);
    }
}

/* Envelope mutations change what later stages see (as smtpd/cleanup would). */
static void apply(struct rl_txn *t, const struct rl_result *r)
{
    for (int i = 0; i < r->nmuts; i++) {
        const struct rl_mutation *m = &r->muts[i];
        if (m->kind == FILTER_M_ADD_RCPT || m->kind == FILTER_M_BCC) {
            rl_txn_add_rcpt(t, m->rcpt);
        } else if (m->kind == FILTER_M_REMOVE_RCPT) {
            for (int k = 0; k < t->nrcpts; k++)
                if (strcasecmp(t->rcpts[k], m->rcpt) == 0) {
                    free(t->rcpts[k]);
                    memmove(&t->rcpts[k], &t->rcpts[k + 1], sizeof(char *) * (size_t)(t->nrcpts - k - 1));
                    t->nrcpts--;
                    k--;
                }
        } else if (m->kind == FILTER_M_REWRITE_MAIL_FROM) {
            rl_txn_set(t, RL_MAIL_FROM, m->arg);
        }
    }
}

/* The .eml (or a minimal message) into DIR/QUEUEID as a real queue file. */
static int write_queue_file(const struct topts *o, struct rl_txn *t, const char *dir, buf_t *path)
{
    buf_t content;
    buf_init(&content, 4096);
    if (o->message) {
        FILE *fp = fopen(o->message, "r");
        if (fp == NULL) {
            cli_err("%s: %s", o->message, strerror(errno));
            buf_free(&content);
            return -1;
        }
        int c, prev = 0;
        while ((c = fgetc(fp)) != EOF) {
            if (prev == '\r' && c != '\n')
                buf_append_char(&content, '\r');
            if (c != '\r')
                buf_append_char(&content, (char)c);
            prev = c;
        }
        fclose(fp);
    } else {
        buf_printf(&content, "From: <%s>\nSubject: postern rules test\n\ntest message\n",
                   t->f[RL_MAIL_FROM]);
    }
    char qid[QUEUE_ID_MAX];
    queue_id_new(qid, sizeof(qid));
    struct qf_env e;
    qf_env_init(&e);
    e.queue_id = xstrdup(qid);
    e.sender = xstrdup(t->f[RL_MAIL_FROM]);
    e.client_ip = xstrdup(t->f[RL_CLIENT_IP]);
    e.helo = xstrdup(t->f[RL_HELO]);
    e.arrival = (int64_t)time(NULL) * 1000000;
    for (int i = 0; i < t->nrcpts; i++)
        qf_env_add_rcpt(&e, t->rcpts[i], NULL, 0);
    buf_printf(path, "%s/%s", dir, qid);
    int fd = open(path->data, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int rc = -1;
    struct qf_writer *w = fd >= 0 ? qf_write_begin(fd, &e) : NULL;
    if (w) {
        qf_write_content(w, content.data, content.len);
        rc = qf_write_end(w);
    }
    if (rc < 0)
        cli_err("cannot write a queue file %s: %s", path->data, strerror(errno));
    if (fd >= 0)
        close(fd);
    rl_txn_set(t, RL_QUEUE_ID, qid);
    rl_txn_set(t, RL_MSG_PATH, path->data);
    t->msg_size = content.len;
    qf_env_free(&e);
    buf_free(&content);
    return rc;
}

/* Runs one stage; returns 1 when the transaction ends here. */
static int step(const struct rl_program *p, struct rl_txn *t, enum stage s, const char *label,
                struct rl_result *r)
{
    rl_eval(p, s, t, r);
    print_result(s, label, r);
    apply(t, r);
    switch (r->status) {
    case V_DENY: case V_DEFER: case V_TEMPFAIL:
        printf("transaction ends at %s\n", stage_name(s));
        return 1;
    case V_QUARANTINE:
        printf("message held in quarantine \"%s\"\n", r->quarantine[0] ? r->quarantine : "default");
        return s >= STAGE_DATA;
    case V_REJECT:
        if (s == STAGE_RCPT)
            return 0;
        printf("command refused at %s\n", stage_name(s));
        return 1;
    default:
        return 0;
    }
}

static int replay(const struct rl_program *p, const struct topts *o)
{
    struct rl_txn t;
    struct rl_result r;
    rl_txn_init(&t);
    rl_result_init(&r);
    rl_txn_set(&t, RL_CLIENT_IP, o->client_ip);
    rl_txn_set(&t, RL_CLIENT_PTR, o->ptr);
    t.client_port = 25025;
    char tmpl[] = "/tmp/postern-rules-test.XXXXXX";
    char *dir = NULL;
    buf_t qpath;
    buf_init(&qpath, 128);
    int end = 0, rc = EX_OK_;
    end = step(p, &t, STAGE_CONNECT, NULL, &r);
    if (!end && o->last_stage >= STAGE_HELO) {
        rl_txn_set(&t, RL_HELO, o->helo);
        end = step(p, &t, STAGE_HELO, NULL, &r);
    }
    if (!end && o->auth && o->last_stage >= STAGE_AUTH) {
        rl_txn_set(&t, RL_AUTH_USER, o->auth);
        end = step(p, &t, STAGE_AUTH, NULL, &r);
    }
    if (!end && o->last_stage >= STAGE_MAIL) {
        rl_txn_set(&t, RL_MAIL_FROM, o->mail_from);
        end = step(p, &t, STAGE_MAIL, NULL, &r);
    }
    for (int i = 0; !end && o->last_stage >= STAGE_RCPT && i < o->nrcpts; i++) {
        rl_txn_set(&t, RL_RCPT, o->rcpts[i]);
        end = step(p, &t, STAGE_RCPT, o->rcpts[i], &r);
        if (!end && r.status != V_REJECT)
            rl_txn_add_rcpt(&t, o->rcpts[i]);
    }
    rl_txn_set(&t, RL_RCPT, NULL);
    if (!end && o->last_stage >= STAGE_DATA && t.nrcpts == 0) {
        printf("no accepted recipient: no DATA\n");
        end = 1;
    }
    if (!end && o->last_stage >= STAGE_DATA) {
        dir = mkdtemp(tmpl);
        if (dir == NULL || write_queue_file(o, &t, dir, &qpath) < 0) {
            rc = EX_FAIL;
            end = 1;
        } else {
            end = step(p, &t, STAGE_DATA, NULL, &r);
        }
    }
    if (!end && o->last_stage >= STAGE_POSTQ)
        end = step(p, &t, STAGE_POSTQ, NULL, &r);
    if (!end && o->last_stage >= STAGE_DELIVER)
        step(p, &t, STAGE_DELIVER, NULL, &r);
    if (qpath.len)
        unlink(qpath.data);
    if (dir)
        rmdir(dir);
    buf_free(&qpath);
    rl_result_free(&r);
    rl_txn_free(&t);
    return rc;
}

static const char test_usage[] =
    "usage: postern rules test FILE [--stage S] [--client-ip IP] [--client-ptr NAME] [--helo H]\n"
    "                          [--mail-from A] [--rcpt A]... [--message FILE.eml] [--auth USER]\n"
    "  --stage S  stop after stage S (connect helo auth mail rcpt data postq deliver)\n";

static int rules_test(struct cli *c, int argc, char **argv)
{
    struct topts o = { .client_ip = "127.0.0.1", .helo = "client.example", .mail_from = "",
                       .ptr = "", .last_stage = STAGE_DELIVER };
    const char *rcpts[1024];
    o.rcpts = rcpts;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        if (a[0] != '-' && o.file == NULL) {
            o.file = a;
            takes = 0;
        } else if (v == NULL) {
            fputs(test_usage, stderr);
            return EX_USAGE_;
        } else if (strcmp(a, "--client-ip") == 0) {
            o.client_ip = v;
        } else if (strcmp(a, "--client-ptr") == 0) {
            o.ptr = v;
        } else if (strcmp(a, "--helo") == 0) {
            o.helo = v;
        } else if (strcmp(a, "--mail-from") == 0) {
            o.mail_from = v;
        } else if (strcmp(a, "--rcpt") == 0) {
            if (o.nrcpts < 1024)
                rcpts[o.nrcpts++] = v;
        } else if (strcmp(a, "--message") == 0) {
            o.message = v;
        } else if (strcmp(a, "--auth") == 0) {
            o.auth = v;
        } else if (strcmp(a, "--stage") == 0) {
            enum stage s;
            if (stage_parse(v, &s) < 0) {
                cli_err("rules test: unknown stage \"%s\"", v);
                return EX_USAGE_;
            }
            o.last_stage = (int)s;
        } else {
            fputs(test_usage, stderr);
            return EX_USAGE_;
        }
        i += takes;
    }
    if (o.file == NULL) {
        fputs(test_usage, stderr);
        return EX_USAGE_;
    }
    (void)c;
    struct rl_program *p = compile(o.file);
    if (p == NULL)
        return EX_FAIL;
    int rc = replay(p, &o);
    rl_program_free(p);
    return rc;
}

/* ---- rules bench --------------------------------------------------------------------------------- */
/* Conditions typical of each stage, none of which match the bench context,
 * so every rule runs to its end. */
static const struct { enum stage st; const char *cond; } bench_conds[] = {
    { STAGE_CONNECT, "client.ip in nets || client.ptr == \"h%d.example\"" },
    { STAGE_HELO,    "helo == \"h%d.test\" || helo matches bad" },
    { STAGE_MAIL,    "mail_from.domain == \"d%d.test\" || mail_from.local_part matches bad" },
    { STAGE_RCPT,    "client.ip in nets && mail_from.domain == \"d%d.test\" || rcpt.local_part matches bad" },
    { STAGE_DATA,    "msg.subject matches bad || msg.header(\"X-Tag%d\") == \"yes\"" },
};

/* A policy of nrules rules, all at one stage. */
static void gen_policy(buf_t *b, int nrules, int k)
{
    buf_append_str(b, "object nets = group [cidr \"10.0.0.0/8\", cidr \"172.16.0.0/12\"];\n"
                      "object bad = regex \"(?i)^(spam|junk)[0-9]+$\";\n");
    buf_printf(b, "stage %s {\n", stage_name(bench_conds[k].st));
    for (int i = 0; i < nrules; i++) {
        buf_printf(b, "  rule \"r%d\" {\n    if ", i);
        buf_printf(b, bench_conds[k].cond, i);
        buf_append_str(b, " { return reject; }\n  }\n");
    }
    buf_append_str(b, "}\n");
}

static int cmp_long(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return x < y ? -1 : x > y;
}

/* Median ns of one evaluation of stage st; prints one line. */
static void bench_stage(const struct rl_program *p, enum stage st, struct rl_txn *t,
                        const char *what)
{
    struct rl_result r;
    rl_result_init(&r);
    enum { ROUNDS = 31, PER = 1000 };
    long ns[ROUNDS];
    for (int k = 0; k < ROUNDS; k++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (int i = 0; i < PER; i++)
            rl_eval(p, st, t, &r);
        clock_gettime(CLOCK_MONOTONIC, &b);
        ns[k] = ((b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec)) / PER;
    }
    qsort(ns, ROUNDS, sizeof(ns[0]), cmp_long);
    printf("stage %-7s %4d rules  %6ld instructions  median %7ld ns  (min %ld, max %ld)  %s  [%s]\n",
           stage_name(st), rl_program_stage_rules(p, st), r.steps, ns[ROUNDS / 2], ns[0],
           ns[ROUNDS - 1], verdict_name(r.status), what);
    rl_result_free(&r);
}

/* postern rules bench [FILE]: median cost of one stage evaluation, in
 * process, for every pre-queue stage - of FILE's rules, or of a generated
 * 100-rule policy per stage. The data stage reads a real queue file. */
static int rules_bench(struct cli *c, int argc, char **argv)
{
    char tmpl[] = "/tmp/postern-bench-XXXXXX";
    if (mkdtemp(tmpl) == NULL) {
        cli_err("mkdtemp: %s", strerror(errno));
        return EX_FAIL;
    }
    struct rl_txn t;
    rl_txn_init(&t);
    rl_txn_set(&t, RL_CLIENT_IP, "192.0.2.7");
    rl_txn_set(&t, RL_CLIENT_PTR, "mx.example.org");
    rl_txn_set(&t, RL_HELO, "mx.example.org");
    rl_txn_set(&t, RL_MAIL_FROM, "alice@example.org");
    rl_txn_set(&t, RL_RCPT, "bob@example.test");
    rl_txn_add_rcpt(&t, "bob@example.test");
    struct topts o = { 0 };
    buf_t qpath;
    buf_init(&qpath, 128);
    int rc = write_queue_file(&o, &t, tmpl, &qpath) < 0 ? EX_FAIL : EX_OK_;
    size_t n = sizeof(bench_conds) / sizeof(bench_conds[0]);
    for (size_t k = 0; rc == EX_OK_ && k < n; k++) {
        struct rl_program *p;
        if (argc > 1) {
            p = k == 0 ? compile(argv[1]) : NULL;
            if (p == NULL && k == 0)
                rc = EX_FAIL;
            for (size_t j = 0; p && j < n; j++)
                if (rl_program_stage_rules(p, bench_conds[j].st) > 0)
                    bench_stage(p, bench_conds[j].st, &t, argv[1]);
            rl_program_free(p);
            break;
        }
        buf_t src;
        buf_init(&src, 16384);
        gen_policy(&src, 100, (int)k);
        struct rl_diag d = { 0 };
        p = rl_compile_buffer("bench.rules", src.data, src.len, &d);
        print_diags(&d);
        rl_diag_free(&d);
        buf_free(&src);
        if (p == NULL) {
            rc = EX_FAIL;
            break;
        }
        bench_stage(p, bench_conds[k].st, &t, "generated 100-rule policy");
        rl_program_free(p);
    }
    unlink(qpath.data);
    rmdir(tmpl);
    buf_free(&qpath);
    rl_txn_free(&t);
    (void)c;
    return rc;
}

int cli_rules(struct cli *c, int argc, char **argv)
{
    if (argc < 2) {
        cli_err("usage: postern rules check [FILE] [--disasm] | rules test FILE ...");
        return EX_USAGE_;
    }
    if (strcmp(argv[1], "check") == 0)
        return rules_check(c, argc - 1, argv + 1);
    if (strcmp(argv[1], "test") == 0)
        return rules_test(c, argc - 1, argv + 1);
    if (strcmp(argv[1], "bench") == 0)
        return rules_bench(c, argc - 1, argv + 1);
    cli_err("rules: unknown subcommand \"%s\" (check, test)", argv[1]);
    return EX_USAGE_;
}
