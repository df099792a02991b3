/*
 * test_rules_services.c - the services behind the rules: csv (lookup,
 * contains, insert appending one line, reload on change, max_entries:
 * the oldest evicted, the file bounded and rewritten atomically), cmd (argv
 * without a shell, exit status as the value, output captured, message on
 * stdin, timeout = temporary failure, a per-call argument beginning with
 * '-' never passed, `user` refused by the compiler, a clean child: no
 * blocked or ignored signals, no inherited fds) and smtp (delegation to a
 * tiny SMTP server written in Python and started by the test: MAIL, RCPT,
 * DATA with dot-stuffing, the final reply code and text come back), and
 * the evaluation deadline cutting a slow command short.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <fcntl.h>
#include <pthread.h>
#include <cmocka.h>
#include "util/log.h"
#include "mail/qfile.h"
#include "util/clock.h"
#include "unit_rules.h"

static void slurp(const char *name, buf_t *out)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    buf_reset(out);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    char b[4096];
    size_t n;
    while ((n = fread(b, 1, sizeof(b), f)) > 0)
        buf_append(out, b, n);
    fclose(f);
}

static void test_csv(void **state)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/g.csv", dir);
    FILE *f = fopen(path, "w");
    fputs("# greylist\nknown@x.test,1\n\"quoted,key@x.test\",\"a \"\"b\"\"\"\n", f);
    fclose(f);
    struct rl_program *p = prog(
        "service g = csv { path = \"g.csv\"; };\n"
        "stage mail { rule \"grey\" { if !g.contains(mail_from) { g.insert(mail_from, \"new\");\n"
        "  return defer(451, \"4.7.1\", `greylisted ${g.lookup(mail_from)}`); }\n"
        "  if g.lookup(mail_from) == \"a \\\"b\\\"\" { return reject; } } }\n");
    struct rl_txn t;
    struct rl_result r;
    rl_txn_init(&t);
    rl_result_init(&r);
    rl_txn_set(&t, RL_MAIL_FROM, "KNOWN@x.test");
    assert_int_equal(rl_eval(p, STAGE_MAIL, &t, &r), V_NEXT);        /* keys: case-insensitive */
    rl_txn_set(&t, RL_MAIL_FROM, "quoted,key@x.test");
    assert_int_equal(rl_eval(p, STAGE_MAIL, &t, &r), V_REJECT);      /* RFC 4180 quoting */
    rl_txn_set(&t, RL_MAIL_FROM, "first@y.test");
    assert_int_equal(rl_eval(p, STAGE_MAIL, &t, &r), V_DEFER);
    assert_string_equal(r.text, "greylisted new");
    assert_int_equal(rl_eval(p, STAGE_MAIL, &t, &r), V_NEXT);        /* second try passes */
    buf_t b;
    buf_init(&b, 256);
    slurp("g.csv", &b);
    /* appended: the rest of the file (comment included) untouched */
    assert_string_equal(b.data, "# greylist\nknown@x.test,1\n\"quoted,key@x.test\",\"a \"\"b\"\"\"\n"
                        "first@y.test,new\n");
    slurp("g.csv.tmp.", &b);
    assert_int_equal(b.len, 0);                                       /* no temp file left */
    /* a change by someone else is seen (reload on mtime/size change) */
    f = fopen(path, "w");
    fputs("other@z.test,1\n", f);
    fclose(f);
    rl_txn_set(&t, RL_MAIL_FROM, "first@y.test");
    assert_int_equal(rl_eval(p, STAGE_MAIL, &t, &r), V_DEFER);
    /* an unreadable table is a temporary failure, never a pass */
    chmod(dir, 0);
    int root = geteuid() == 0;
    rl_txn_set(&t, RL_MAIL_FROM, "zzz@y.test");
    if (!root)
        assert_int_equal(rl_eval(p, STAGE_MAIL, &t, &r), V_TEMPFAIL);
    chmod(dir, 0700);
    buf_free(&b);
    rl_result_free(&r);
    rl_txn_free(&t);
    rl_program_free(p);
}

static void write_qf(const char *path, const char *content)
{
    struct qf_env e;
    qf_env_init(&e);
    e.queue_id = xstrdup("4Q7ZK2M0001ABCD042");
    e.sender = xstrdup("alice@example.org");
    qf_env_add_rcpt(&e, "bob@example.test", NULL, 0);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    struct qf_writer *w = qf_write_begin(fd, &e);
    qf_write_content(w, content, strlen(content));
    assert_int_equal(qf_write_end(w), 0);
    close(fd);
    qf_env_free(&e);
}

static void test_cmd(void **state)
{
    char qf[256];
    snprintf(qf, sizeof(qf), "%s/QF", dir);
    write_qf(qf, "Subject: hi\n\nline one\nline two\n");
    struct rl_program *p = prog(
        "service sh = cmd { path = \"/bin/sh\"; args = [\"-c\"]; timeout = 2s; };\n"
        "service wc = cmd { path = \"/usr/bin/wc\"; args = [\"-l\"]; };\n"
        "stage data {\n"
        "  rule \"exit\" { if sh.run(\"echo out; exit 3\") == 3 && sh.output() == \"out\" { log(\"debug\", \"ok\"); } else { return deny(\"exit\"); } }\n"
        "  rule \"argv\" { if sh.run(\"printf %s \\\"$0\\\"\", \"a b; rm -rf /\") != 0 || sh.output() != \"a b; rm -rf /\" { return deny(\"argv\"); } }\n"
        "  rule \"stdin\" { if wc.run() != 0 || wc.output() != \"4\" { return deny(`stdin ${wc.output()}`); } }\n"
        "  rule \"slow\" { if sh.run(\"sleep 5\") == 0 { return accept; } }\n"
        "}\n");
    struct rl_txn t;
    struct rl_result r;
    rl_txn_init(&t);
    rl_result_init(&r);
    rl_txn_set(&t, RL_MSG_PATH, qf);
    time_t t0 = time(NULL);
    int v = rl_eval(p, STAGE_DATA, &t, &r);
    if (v != V_TEMPFAIL)
        fprintf(stderr, "status %s rule %s text %s\n", verdict_name(r.status), r.rule, r.text);
    assert_int_equal(v, V_TEMPFAIL);            /* the timeout, not a pass */
    assert_string_equal(r.rule, "slow");
    assert_true(time(NULL) - t0 < 5);
    rl_result_free(&r);
    rl_txn_free(&t);
    rl_program_free(p);
}

static const char smtp_server[] =
    "import socket,sys\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('127.0.0.1',0)); s.listen(1); print(s.getsockname()[1], flush=True)\n"
    "c,_=s.accept(); f=c.makefile('rb'); out=open(sys.argv[1],'wb')\n"
    "def w(x): c.sendall(x.encode()+b'\\r\\n')\n"
    "w('220 test ESMTP')\n"
    "while True:\n"
    "  l=f.readline()\n"
    "  if not l: break\n"
    "  out.write(l)\n"
    "  u=l.upper()\n"
    "  if u.startswith(b'EHLO'): w('250-test'); w('250 8BITMIME')\n"
    "  elif u.startswith(b'DATA'):\n"
    "    w('354 go')\n"
    "    while True:\n"
    "      d=f.readline(); out.write(d)\n"
    "      if d==b'.\\r\\n' or not d: break\n"
    "    w('554 5.7.1 virus found: Eicar')\n"
    "  elif u.startswith(b'QUIT'): w('221 bye'); break\n"
    "  else: w('250 ok')\n"
    "out.close()\n";

static void test_smtp(void **state)
{
    char qf[256], log_path[256], script[256];
    snprintf(qf, sizeof(qf), "%s/QF2", dir);
    snprintf(log_path, sizeof(log_path), "%s/smtp.log", dir);
    snprintf(script, sizeof(script), "%s/srv.py", dir);
    FILE *f = fopen(script, "w");
    fputs(smtp_server, f);
    fclose(f);
    write_qf(qf, "Subject: x\n\n.leading dot\nbody\n");
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 1);
        execl("/usr/bin/python3", "python3", script, log_path, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    char portbuf[16] = "";
    ssize_t n = read(pfd[0], portbuf, sizeof(portbuf) - 1);
    close(pfd[0]);
    if (n <= 0) {
        waitpid(pid, NULL, 0);
        skip();
    }
    int port = atoi(portbuf);
    char src[512];
    snprintf(src, sizeof(src),
             "service av = smtp { address = \"127.0.0.1:%d\"; timeout = 5s; };\n"
             "stage data { rule \"av\" { let code = av.delegate();\n"
             "  if code >= 500 { return deny(554, \"5.7.1\", av.reply()); } } }\n", port);
    struct rl_program *p = prog(src);
    struct rl_txn t;
    struct rl_result r;
    rl_txn_init(&t);
    rl_result_init(&r);
    rl_txn_set(&t, RL_MAIL_FROM, "alice@example.org");
    rl_txn_add_rcpt(&t, "bob@example.test");
    rl_txn_set(&t, RL_MSG_PATH, qf);
    assert_int_equal(rl_eval(p, STAGE_DATA, &t, &r), V_DENY);
    assert_string_equal(r.text, "554 5.7.1 virus found: Eicar");
    int st;
    waitpid(pid, &st, 0);
    buf_t b;
    buf_init(&b, 256);
    slurp("smtp.log", &b);
    assert_non_null(strstr(b.data, "MAIL FROM:<alice@example.org>\r\n"));
    assert_non_null(strstr(b.data, "RCPT TO:<bob@example.test>\r\n"));
    assert_non_null(strstr(b.data, "Subject: x\r\n\r\n..leading dot\r\nbody\r\n.\r\n"));
    assert_non_null(strstr(b.data, "QUIT"));
    /* nobody listening: temporary failure */
    assert_int_equal(rl_eval(p, STAGE_DATA, &t, &r), V_TEMPFAIL);
    buf_free(&b);
    rl_result_free(&r);
    rl_txn_free(&t);
    rl_program_free(p);
}

static int count_lines(const buf_t *b)
{
    int n = 0;
    for (size_t i = 0; i < b->len; i++)
        n += b->data[i] == '\n';
    return n;
}

static int eval_mail(struct rl_program *p, const char *from)
{
    struct rl_txn t;
    struct rl_result r;
    rl_txn_init(&t);
    rl_result_init(&r);
    rl_txn_set(&t, RL_MAIL_FROM, from);
    int v = rl_eval(p, STAGE_MAIL, &t, &r);
    rl_result_free(&r);
    rl_txn_free(&t);
    return v;
}

/* An insert appends one line; at max_entries the oldest keys go (the file
 * rewritten once for a batch of them); updates supersede lines but the file
 * never holds more than about twice max_entries lines. */
static void test_csv_cap(void **state)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/cap.csv", dir);
    unlink(path);
    struct rl_program *p = prog(
        "service g = csv { path = \"cap.csv\"; max_entries = 20; };\n"
        "stage mail { rule \"grey\" { if !g.contains(mail_from) { g.insert(mail_from, \"v\");\n"
        "  return defer; } } }\n"
        "stage rcpt { rule \"upd\" { g.insert(\"k0@x.test\", rcpt); } }\n");
    buf_t b;
    buf_init(&b, 4096);
    char from[64];
    for (int i = 0; i < 20; i++) {
        snprintf(from, sizeof(from), "k%d@x.test", i);
        assert_int_equal(eval_mail(p, from), V_DEFER);
    }
    slurp("cap.csv", &b);
    assert_int_equal(count_lines(&b), 20);
    assert_string_equal(b.data + b.len - strlen("k19@x.test,v\n"), "k19@x.test,v\n");
    struct stat st1, st2;
    assert_int_equal(stat(path, &st1), 0);
    /* a known key: nothing written */
    assert_int_equal(eval_mail(p, "k5@x.test"), V_NEXT);
    assert_int_equal(stat(path, &st2), 0);
    assert_int_equal(st1.st_size, st2.st_size);
    /* the 21st key: the oldest two (a tenth) are evicted, one rewrite */
    assert_int_equal(eval_mail(p, "new@x.test"), V_DEFER);
    slurp("cap.csv", &b);
    assert_int_equal(count_lines(&b), 19);
    assert_null(strstr(b.data, "k0@x.test"));
    assert_null(strstr(b.data, "k1@x.test,"));
    assert_non_null(strstr(b.data, "k2@x.test,v\n"));
    assert_int_equal(eval_mail(p, "k0@x.test"), V_DEFER);     /* forgotten: greylisted again */
    assert_int_equal(eval_mail(p, "k3@x.test"), V_NEXT);      /* kept */
    /* a thousand more keys: still at most max_entries live, file bounded */
    for (int i = 0; i < 1000; i++) {
        snprintf(from, sizeof(from), "more%d@x.test", i);
        assert_int_equal(eval_mail(p, from), V_DEFER);
        slurp("cap.csv", &b);
        assert_true(count_lines(&b) <= 20);
    }
    assert_int_equal(eval_mail(p, "more999@x.test"), V_NEXT);
    assert_int_equal(eval_mail(p, "more900@x.test"), V_DEFER);
    /* updates of one key: superseded lines are compacted away */
    struct rl_txn t;
    struct rl_result r;
    rl_txn_init(&t);
    rl_result_init(&r);
    for (int i = 0; i < 200; i++) {
        char rc[64];
        snprintf(rc, sizeof(rc), "r%d@x.test", i);
        rl_txn_set(&t, RL_RCPT, rc);
        assert_int_equal(rl_eval(p, STAGE_RCPT, &t, &r), V_NEXT);
        slurp("cap.csv", &b);
        assert_true(count_lines(&b) <= 2 * 20 + 17);
    }
    rl_result_free(&r);
    rl_txn_free(&t);
    /* the last line of a key wins when the file is read again */
    rl_program_free(p);
    p = prog("service g = csv { path = \"cap.csv\"; };\n"
             "stage mail { rule \"v\" { if g.lookup(mail_from) != \"r199@x.test\" { return deny; } } }\n");
    assert_int_equal(eval_mail(p, "k0@x.test"), V_NEXT);
    rl_program_free(p);
    /* a file without a final newline: the append starts a line of its own */
    FILE *f = fopen(path, "w");
    fputs("a@x.test,1", f);
    fclose(f);
    p = prog("service g = csv { path = \"cap.csv\"; };\n"
             "stage mail { rule \"i\" { if !g.contains(mail_from) { g.insert(mail_from); return defer; } } }\n");
    assert_int_equal(eval_mail(p, "b@x.test"), V_DEFER);
    assert_int_equal(eval_mail(p, "a@x.test"), V_NEXT);
    slurp("cap.csv", &b);
    assert_true(strncmp(b.data, "a@x.test,1\nb@x.test,", 20) == 0);
    /* a key too long to store: refused, a temporary failure (never a pass) */
    char lng[1200 + 16];
    memset(lng, 'x', 1200);
    memcpy(lng + 1200, "@x.test", 8);
    assert_int_equal(eval_mail(p, lng), V_TEMPFAIL);
    rl_program_free(p);
    /* a FIFO in the table's place: a temporary failure, not a hang */
    unlink(path);
    assert_int_equal(mkfifo(path, 0600), 0);
    p = prog("service g = csv { path = \"cap.csv\"; };\n"
             "stage mail { rule \"i\" { if !g.contains(mail_from) { return defer; } } }\n");
    assert_int_equal(eval_mail(p, "a@x.test"), V_TEMPFAIL);
    rl_program_free(p);
    unlink(path);
    buf_free(&b);
}

static void expect_error(const char *src, const char *where, const char *msg)
{
    char name[128];
    snprintf(name, sizeof(name), "%s/bad.rules", dir);
    struct rl_diag d = { 0 };
    struct rl_program *p = rl_compile_buffer(name, src, strlen(src), &d);
    assert_null(p);
    assert_true(d.n >= 1);
    buf_t b;
    buf_init(&b, 256);
    rl_diag_format(&b, &d.v[0]);
    char want[256];
    snprintf(want, sizeof(want), "%s:%s: ", name, where);
    if (strncmp(b.data, want, strlen(want)) != 0 || strstr(b.data, msg) == NULL)
        fail_msg("got \"%s\", want \"%s...%s\"", b.data, want, msg);
    buf_free(&b);
    rl_diag_free(&d);
}

/* The cmd service's `user` was never applied: the compiler refuses it, at
 * the option. Service timeouts are bounded (an evaluation cannot outlive
 * limits.rules_timeout anyway), reported at the value. */
static void test_cmd_options_refused(void **state)
{
    expect_error("service c = cmd {\n  path = \"/bin/true\";\n  user = \"nobody\";\n};\n",
                 "3:3", "option 'user' is not supported for a cmd service");
    expect_error("service c = cmd { path = \"/bin/true\"; timeout = 1h; };\n",
                 "1:49", "option 'timeout' must be between 1s and 100s, found 3600s");
    expect_error("service a = smtp { address = \"127.0.0.1:25\"; timeout = 101s; };\n",
                 "1:56", "option 'timeout' must be between 1s and 100s");
    expect_error("service g = csv { path = \"x.csv\"; max_entries = 0; };\n",
                 "1:49", "option 'max_entries' must be between 1 and 10000000");
    /* 100s is fine */
    rl_program_free(prog("service c = cmd { path = \"/bin/true\"; timeout = 100s; };\n"));
}

/* A per-call argument is data: one that begins with '-' (as a value from
 * mail may) is never handed to the program, where it would be an option. */
static void test_cmd_dash_never_option(void **state)
{
    char marker[256], script[256];
    snprintf(marker, sizeof(marker), "%s/ran", dir);
    snprintf(script, sizeof(script), "%s/args.sh", dir);
    FILE *f = fopen(script, "w");
    fprintf(f, "#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done >> %s\n", marker);
    fclose(f);
    chmod(script, 0755);
    chmod(dir, 0777);               /* run as root, the command runs as nobody */
    char src[1024];
    snprintf(src, sizeof(src),
             "service c = cmd { path = \"%s\"; args = [\"-x\"]; timeout = 5s; };\n"
             "stage mail { rule \"r\" { if c.run(mail_from, helo) == 0 { return accept; } } }\n",
             script);
    struct rl_program *p = prog(src);
    struct rl_txn t;
    struct rl_result r;
    rl_txn_init(&t);
    rl_result_init(&r);
    unlink(marker);
    rl_txn_set(&t, RL_HELO, "client.test");
    rl_txn_set(&t, RL_MAIL_FROM, "-oProxyCommand=touch /tmp/pwned@x.test");
    assert_int_equal(rl_eval(p, STAGE_MAIL, &t, &r), V_TEMPFAIL);
    assert_int_equal(access(marker, F_OK), -1);             /* never ran */
    rl_txn_set(&t, RL_MAIL_FROM, "ok@x.test");
    rl_txn_set(&t, RL_HELO, "--help");
    assert_int_equal(rl_eval(p, STAGE_MAIL, &t, &r), V_TEMPFAIL);
    assert_int_equal(access(marker, F_OK), -1);
    /* the same values not at the start are data like any other */
    rl_txn_set(&t, RL_MAIL_FROM, "a-b@x.test");
    rl_txn_set(&t, RL_HELO, "x --help");
    assert_int_equal(rl_eval(p, STAGE_MAIL, &t, &r), V_ACCEPT);
    buf_t b;
    buf_init(&b, 256);
    slurp("ran", &b);
    assert_string_equal(b.data, "-x\na-b@x.test\nx --help\n");   /* fixed args keep options */
    buf_free(&b);
    rl_result_free(&r);
    rl_txn_free(&t);
    rl_program_free(p);
    chmod(dir, 0700);
}

/* The child starts clean: no signal blocked or ignored (a filter worker
 * blocks them all, the process ignores SIGPIPE), only fds 0-2, cwd /, a
 * minimal environment. */
static void test_cmd_clean_child(void **state)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    signal(SIGPIPE, SIG_IGN);
    int leak = open("/dev/null", O_RDONLY);     /* not CLOEXEC: must not reach the child */
    assert_true(leak > 2);
    struct rl_program *p = prog(
        "service sh = cmd { path = \"/bin/sh\"; args = [\"-c\"]; timeout = 5s; };\n"
        "service st = cmd { path = \"/bin/grep\"; args = [\"-E\", \"^Sig(Blk|Ign)\", \"/proc/self/status\"]; };\n"
        "stage helo { rule \"s\" { if st.run() == 0 { return reject(st.output()); } } }\n"
        "stage mail { rule \"r\" { if sh.run(\"grep -E '^Sig(Blk|Ign)' /proc/self/status; "
        "ls /proc/self/fd | tr '\\\\n' ' '; pwd; env | sort | tr '\\\\n' ' '\") == 0 { return reject(sh.output()); } } }\n");
    struct rl_txn t;
    struct rl_result r;
    rl_txn_init(&t);
    rl_result_init(&r);
    assert_int_equal(rl_eval(p, STAGE_HELO, &t, &r), V_REJECT);     /* the program itself */
    if (strstr(r.text, "SigBlk: 0000000000000000") == NULL ||
        strstr(r.text, "SigIgn: 0000000000000000") == NULL)
        fail_msg("child signals: %s", r.text);
    assert_int_equal(rl_eval(p, STAGE_MAIL, &t, &r), V_REJECT);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    signal(SIGPIPE, SIG_DFL);
    close(leak);
    /* ls's own directory fd shows up as 3 */
    /* (the reply text has its newlines and tabs made spaces) */
    if (strcmp(r.text, "SigBlk: 0000000000000000 SigIgn: 0000000000000000 0 1 2 3 / "
                       "LC_ALL=C PATH=/usr/local/bin:/usr/bin:/bin PWD=/ ") != 0)
        fail_msg("child state: %s", r.text);
    rl_result_free(&r);
    rl_txn_free(&t);
    rl_program_free(p);
}

/* rl_set_deadline: a command whose own timeout is far away is killed at
 * the evaluation deadline (a temporary failure), and an evaluation that
 * starts past it runs nothing. */
static void test_deadline(void **state)
{
    struct rl_program *p = prog(
        "service sh = cmd { path = \"/bin/sh\"; args = [\"-c\"]; timeout = 60s; };\n"
        "stage mail { rule \"slow\" { if sh.run(\"sleep 20\") == 0 { return accept; } } }\n");
    struct rl_txn t;
    struct rl_result r;
    rl_txn_init(&t);
    rl_result_init(&r);
    int64_t t0 = clock_now_ms();
    rl_set_deadline(t0 + 500);
    assert_int_equal(rl_eval(p, STAGE_MAIL, &t, &r), V_TEMPFAIL);
    int64_t took = clock_now_ms() - t0;
    assert_true(took >= 450 && took < 3000);
    t0 = clock_now_ms();
    assert_int_equal(rl_eval(p, STAGE_MAIL, &t, &r), V_TEMPFAIL);    /* already past */
    assert_true(clock_now_ms() - t0 < 200);
    rl_set_deadline(0);
    rl_result_free(&r);
    rl_txn_free(&t);
    rl_program_free(p);
}

int main(void)
{
    log_init("test_rules_services", 1, 0, LOG_L_FATAL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv),
        cmocka_unit_test(test_cmd),
        cmocka_unit_test(test_smtp),
        cmocka_unit_test(test_csv_cap),
        cmocka_unit_test(test_cmd_options_refused),
        cmocka_unit_test(test_cmd_dash_never_option),
        cmocka_unit_test(test_cmd_clean_child),
        cmocka_unit_test(test_deadline),
    };
    return cmocka_run_group_tests(tests, rules_dir_setup, rules_dir_teardown);
}
