/*
 * cli_ctl.c - postern run | start | stop | reload | status: find and run
 * libexec master, and talk to a running one through its pid file in the
 * root-owned run_dir (held with flock while master runs, so a stale file
 * means "not running").
 *
 * start and reload tell the truth: both load the configuration and compile
 * the rules first (every error as file:line:col: message, exit 1, nothing
 * started or signalled); start returns once master says every child is
 * ready (or prints why one failed at start-up: exit 1); reload waits for
 * master's verdict in <run_dir>/reload.status (written once the new
 * children are ready, or with why the reload was refused or failed).
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "daemon/logdest.h"
#include "rules/rules.h"

#define STOP_WAIT_MS 60000
#define RELOAD_WAIT_MS 75000    /* master's own readiness wait is 60 s */

static int no_args(const char *cmd, int argc)
{
    if (argc > 1) {
        fprintf(stderr, "postern: %s takes no arguments\nusage: postern [-c FILE] %s\n", cmd, cmd);
        return -1;
    }
    return 0;
}

int cli_find_libexec(const char *name, char *out, size_t size)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0) {
        cli_err("readlink /proc/self/exe: %s", strerror(errno));
        return -1;
    }
    exe[n] = '\0';
    const char *dir = dirname(exe);
    static const char *const rel[] = { "../libexec", "../libexec/postern" };
    for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
        if (str_format(out, size, "%s/%s/%s", dir, rel[i], name) == 0 &&
            access(out, X_OK) == 0)
            return 0;
    }
    /* a copy or hard link elsewhere (a system sendmail): the installed tree */
    if (str_format(out, size, "%s/libexec/postern/%s", config_prefix(), name) == 0 &&
        access(out, X_OK) == 0)
        return 0;
    cli_err("cannot find the %s program (looked for %s/../libexec/%s, "
            "%s/../libexec/postern/%s and %s/libexec/postern/%s)", name, dir, name, dir, name,
            config_prefix(), name);
    return -1;
}

static int find_master(char *out, size_t size)
{
    return cli_find_libexec("master", out, size);
}

int cli_master_running(const struct config *cfg, long *pid_r)
{
    int fd = open(cfg->pid_file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        cli_err("cannot open pid file %s: %s", cfg->pid_file, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
        close(fd);   /* nobody holds it: stale */
        return 0;
    }
    if (errno != EWOULDBLOCK) {
        cli_err("cannot check the lock on %s: %s", cfg->pid_file, strerror(errno));
        close(fd);
        return -1;
    }
    char b[32];
    ssize_t n = pread(fd, b, sizeof(b) - 1, 0);
    close(fd);
    b[n > 0 ? n : 0] = '\0';
    char *end;
    long pid = strtol(b, &end, 10);
    if (pid <= 0 || (*end != '\n' && *end != '\0')) {
        cli_err("pid file %s is locked but holds no pid (master starting?)", cfg->pid_file);
        return -1;
    }
    *pid_r = pid;
    return 1;
}

/* Compile cfg's rules as filter will; every error printed. 0 ok (or no
 * rules file), -1 errors. */
static int compile_rules(const struct config *cfg)
{
    if (cfg->rules == NULL || cfg->rules[0] == '\0')
        return 0;
    struct rl_diag d = { 0 };
    struct rl_program *p = rl_compile_file(cfg->rules, &d);
    cli_print_rule_diags(&d);
    int bad = p == NULL || d.n > 0;
    if (p == NULL && d.n == 0)
        cli_err("rules %s do not compile", cfg->rules);
    else if (bad)
        fprintf(stderr, "%s: %d error%s\n", cfg->rules, d.n, d.n == 1 ? "" : "s");
    rl_program_free(p);
    rl_diag_free(&d);
    return bad ? -1 : 0;
}

/* <run_dir>/reload.status: "PID SEQ ok|failed\n" then reasons. 1 read
 * (*pid_r, *seq_r, *ok_r, reasons into why when not NULL), 0 none. */
static int read_reload_status(const struct config *cfg, long *pid_r, unsigned long *seq_r,
                              int *ok_r, buf_t *why)
{
    char path[4200];
    if (str_format(path, sizeof(path), "%s/reload.status", cfg->run_dir) < 0)
        return 0;
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return 0;
    char line[4096], word[16] = "";
    int r = 0;
    if (fgets(line, sizeof(line), f) &&
        sscanf(line, "%ld %lu %15s", pid_r, seq_r, word) == 3) {
        *ok_r = strcmp(word, "ok") == 0;
        r = 1;
        while (why && fgets(line, sizeof(line), f))
            buf_append_str(why, line);
    }
    fclose(f);
    return r;
}

/* The opening of start/status/stop/reload: no arguments, the config, and
 * whether master runs (cli_master_running's answer in *r_r). NULL with
 * the exit code in *rc_r: extra arguments or a config with errors (both
 * printed). */
static struct config *probe_master(struct cli *c, const char *cmd, int argc, long *pid_r,
                                   int *r_r, int *rc_r)
{
    *rc_r = EX_USAGE_;
    if (no_args(cmd, argc) < 0)
        return NULL;
    *rc_r = EX_FAIL;
    struct config *cfg = cli_load_config(c->config_path);
    if (cfg != NULL)
        *r_r = cli_master_running(cfg, pid_r);
    return cfg;
}

int cli_run(struct cli *c, int argc, char **argv)
{
    if (no_args("run", argc) < 0)
        return EX_USAGE_;
    char master[4200];
    if (find_master(master, sizeof(master)) < 0)
        return EX_FAIL;
    char *args[] = { master, "-c", (char *)c->config_path, "-f", NULL };
    execv(master, args);
    cli_err("cannot execute %s: %s", master, strerror(errno));
    return EX_FAIL;
}

/* Where the daemon's log lines go (the rule of daemon/logdest.h, which
 * master follows): never a silent loss when there is no syslog. */
static void print_log_destination(const struct config *cfg)
{
    buf_t path;
    buf_init(&path, 64);
    int fallback;
    if (logdest_of(cfg, &path, &fallback) == LOGDEST_SYSLOG)
        printf("logging to syslog (mail facility)\n");
    else if (fallback)
        printf("logging to %s (no syslog: /dev/log is missing; set log.file to choose)\n",
               path.data);
    else
        printf("logging to %s\n", path.data);
    buf_free(&path);
}

int cli_start(struct cli *c, int argc, char **argv)
{
    long pid;
    int r, rc;
    struct config *cfg = probe_master(c, "start", argc, &pid, &r, &rc);
    if (cfg == NULL)
        return rc;
    if (r != 0) {
        if (r > 0)
            cli_err("postern is already running (pid %ld)", pid);
        config_free(cfg);
        return EX_FAIL;
    }
    if (compile_rules(cfg) < 0) {
        cli_err("start: the rules do not compile: nothing started");
        config_free(cfg);
        return EX_FAIL;
    }
    char master[4200];
    if (find_master(master, sizeof(master)) < 0) {
        config_free(cfg);
        return EX_FAIL;
    }
    pid_t child = fork();
    if (child < 0) {
        cli_err("fork: %s", strerror(errno));
        config_free(cfg);
        return EX_FAIL;
    }
    if (child == 0) {
        char *args[] = { master, "-c", (char *)c->config_path, NULL };
        execv(master, args);
        cli_err("cannot execute %s: %s", master, strerror(errno));
        _exit(127);
    }
    int status;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR)
        ;
    /* master's first process returns once every child is ready, or once
     * the daemon has failed and stopped (its messages were copied to our
     * stderr) */
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || cli_master_running(cfg, &pid) != 1) {
        cli_err("start failed (configuration %s)", c->config_path);
        config_free(cfg);
        return EX_FAIL;
    }
    printf("postern started (pid %ld)\n", pid);
    print_log_destination(cfg);
    config_free(cfg);
    return 0;
}

/* Load the config and find the running master; prints why not. */
static struct config *running_master(struct cli *c, const char *cmd, int argc, long *pid_r,
                                     int *rc_r)
{
    int r;
    struct config *cfg = probe_master(c, cmd, argc, pid_r, &r, rc_r);
    if (cfg == NULL) {
        if (*rc_r == EX_FAIL)
            cli_err("%s: the configuration has errors: nothing done", cmd);
        return NULL;
    }
    if (r == 0)
        cli_err("postern is not running (pid file %s)", cfg->pid_file);
    if (r != 1) {
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

int cli_stop(struct cli *c, int argc, char **argv)
{
    long pid;
    int rc;
    struct config *cfg = running_master(c, "stop", argc, &pid, &rc);
    if (cfg == NULL)
        return rc;
    if (kill((pid_t)pid, SIGTERM) < 0) {
        cli_err("cannot signal master (pid %ld): %s", pid, strerror(errno));
        config_free(cfg);
        return EX_FAIL;
    }
    for (int waited = 0; waited < STOP_WAIT_MS; waited += 100) {
        long p2;
        if (cli_master_running(cfg, &p2) == 0) {
            printf("postern stopped\n");
            config_free(cfg);
            return 0;
        }
        struct timespec ts = { 0, 100 * 1000000L };
        nanosleep(&ts, NULL);
    }
    cli_err("master (pid %ld) did not stop within %d s", pid, STOP_WAIT_MS / 1000);
    config_free(cfg);
    return EX_FAIL;
}

int cli_reload(struct cli *c, int argc, char **argv)
{
    long pid;
    int fail;
    struct config *cfg = running_master(c, "reload", argc, &pid, &fail);
    if (cfg == NULL)
        return fail;
    /* running_master loaded the file: a broken one stops here (master
     * would refuse it too and keep the running configuration); broken
     * rules too (filter would keep the running ones) */
    if (compile_rules(cfg) < 0) {
        cli_err("reload: the rules do not compile: nothing reloaded, the running "
                "configuration and rules are kept");
        config_free(cfg);
        return EX_FAIL;
    }
    long spid = 0;
    unsigned long seq0 = 0, seq = 0;
    int ok = 0;
    if (read_reload_status(cfg, &spid, &seq0, &ok, NULL) != 1 || spid != pid)
        seq0 = 0;
    if (kill((pid_t)pid, SIGHUP) < 0) {
        cli_err("cannot signal master (pid %ld): %s", pid, strerror(errno));
        config_free(cfg);
        return EX_FAIL;
    }
    for (int waited = 0; waited < RELOAD_WAIT_MS; waited += 50) {
        struct timespec ts = { 0, 50 * 1000000L };
        nanosleep(&ts, NULL);
        buf_t why;
        buf_init(&why, 128);
        if (read_reload_status(cfg, &spid, &seq, &ok, &why) == 1 && spid == pid &&
            seq > seq0) {
            int rc = 0;
            if (ok) {
                printf("postern reloaded (pid %ld)\n", pid);
            } else {
                fputs(why.data, stderr);
                cli_err("reload failed (see above and the mail log)");
                rc = EX_FAIL;
            }
            buf_free(&why);
            config_free(cfg);
            return rc;
        }
        buf_free(&why);
        long p2;
        if (cli_master_running(cfg, &p2) != 1) {
            cli_err("master (pid %ld) stopped during the reload", pid);
            config_free(cfg);
            return EX_FAIL;
        }
    }
    cli_err("master (pid %ld) did not report the reload's outcome within %d s",
            pid, RELOAD_WAIT_MS / 1000);
    config_free(cfg);
    return EX_FAIL;
}

/* <run_dir>/daemons.status (written by master): one row per process slot. */
static void print_daemons(const struct config *cfg)
{
    char path[4200];
    if (str_format(path, sizeof(path), "%s/daemons.status", cfg->run_dir) < 0)
        return;
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return;
    printf("\n%-10s %8s  %-9s %-12s %s\n", "process", "pid", "state", "uptime", "restarts");
    char line[256], name[64], state[16];
    long pid;
    long long since;
    int restarts;
    time_t now = time(NULL);
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "%63s %ld %15s %lld %d", name, &pid, state, &since, &restarts) != 5)
            continue;
        char up[32] = "-";
        if (since > 0 && now >= since) {
            long long u = now - since;
            str_format(up, sizeof(up), "%lldd%02lldh%02lldm%02llds", u / 86400, u / 3600 % 24,
                       u / 60 % 60, u % 60);
        }
        printf("%-10s %8ld  %-9s %-12s %d\n", name, pid, state, up, restarts);
    }
    fclose(f);
}

/* <run_dir>/errors.status (master: the last error-level events of every
 * process, oldest first, "UNIXTIME PROCESS TEXT"): the newest STATUS_ERRORS. */
#define STATUS_ERRORS 10
static void print_errors(const struct config *cfg)
{
    char path[4200], line[1024], rows[STATUS_ERRORS][1024];
    int n = 0;
    if (str_format(path, sizeof(path), "%s/errors.status", cfg->run_dir) < 0)
        return;
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        if (errno == EACCES)
            printf("\nlast errors: (root only)\n");
        return;
    }
    while (fgets(line, sizeof(line), f)) {
        if (n == STATUS_ERRORS) {
            memmove(rows[0], rows[1], sizeof(rows[0]) * (STATUS_ERRORS - 1));
            n--;
        }
        str_copy(rows[n++], sizeof(rows[0]), line);
    }
    fclose(f);
    printf("\nlast errors:%s\n", n ? "" : " none");
    for (int i = 0; i < n; i++) {
        char *proc = strchr(rows[i], ' '), *text = proc ? strchr(proc + 1, ' ') : NULL;
        if (text == NULL)
            continue;
        *proc++ = '\0';
        *text++ = '\0';
        time_t t = (time_t)strtoll(rows[i], NULL, 10);
        struct tm tm;
        char when[32];
        localtime_r(&t, &tm);
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
        printf("  %s %-9s %s", when, proc, text);   /* text keeps its newline */
    }
}

int cli_status(struct cli *c, int argc, char **argv)
{
    long pid;
    int r, rc;
    struct config *cfg = probe_master(c, "status", argc, &pid, &r, &rc);
    if (cfg == NULL)
        return rc;
    if (r == 1)
        printf("postern is running (pid %ld)\n", pid);
    else if (r == 0)
        printf("postern is not running\n");
    if (r == 1)
        print_daemons(cfg);
    if (r >= 0)
        cli_queue_summary(cfg);
    if (r == 1)
        print_errors(cfg);
    config_free(cfg);
    return r == 1 ? 0 : EX_FAIL;
}
