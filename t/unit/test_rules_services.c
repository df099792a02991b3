/*
 * test_rules_services.c - the services behind the rules: csv (lookup,
 * contains, insert with an atomic rewrite, reload on change), cmd (argv
 * without a shell, exit status as the value, output captured, message on
 * stdin, timeout = temporary failure) and smtp (delegation to a tiny
 * SMTP server written in Python and started by the test: MAIL, RCPT, DATA
 * with dot-stuffing, the final reply code and text come back).
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
#include <cmocka.h>
#include "log.h"
#include "qfile.h"
#include "rules.h"

static char dir[64];

static struct rl_program *prog(const char *src)
{
    char name[128];
    snprintf(name, sizeof(name), "%s/t.rules", dir);
    struct rl_diag d = { 0 };
    struct rl_program *p = rl_compile_buffer(name, src, strlen(src), &d);
    for (int i = 0; i < d.n; i++)
        fprintf(stderr, "%d:%d: %s\n", d.v[i].line, d.v[i].col, d.v[i].msg);
    rl_diag_free(&d);
    assert_non_null(p);
    return p;
}

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
    assert_string_equal(b.data, "known@x.test,1\n\"quoted,key@x.test\",\"a \"\"b\"\"\"\nfirst@y.test,new\n");
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

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/test_rules_svc.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    log_init("test_rules_services", 1, 0, LOG_L_FATAL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv),
        cmocka_unit_test(test_cmd),
        cmocka_unit_test(test_smtp),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
