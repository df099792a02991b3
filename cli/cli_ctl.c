/*
 * cli_ctl.c - postern run | start | stop | reload | status: find and run
 * libexec master, and talk to a running one through its pid file (held
 * with flock while master runs, so a stale file means "not running").
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

#define STOP_WAIT_MS 60000

static int no_args(const char *cmd, int argc)
{
    if (argc > 1) {
        fprintf(stderr, "postern: %s takes no arguments\nusage: postern [-c FILE] %s\n", cmd, cmd);
        return -1;
    }
    return 0;
}

/* <bindir>/../libexec/master (build tree), else <bindir>/../libexec/postern/master. */
static int find_master(char *out, size_t size)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0) {
        cli_err("readlink /proc/self/exe: %s", strerror(errno));
        return -1;
    }
    exe[n] = '\0';
    const char *dir = dirname(exe);
    static const char *const rel[] = { "../libexec/master", "../libexec/postern/master" };
    for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
        if (str_format(out, size, "%s/%s", dir, rel[i]) == 0 && access(out, X_OK) == 0)
            return 0;
    }
    cli_err("cannot find the master program (looked for %s/../libexec/master and "
            "%s/../libexec/postern/master)", dir, dir);
    return -1;
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

int cli_start(struct cli *c, int argc, char **argv)
{
    if (no_args("start", argc) < 0)
        return EX_USAGE_;
    struct config *cfg = cli_load_config(c->config_path);
    if (cfg == NULL)
        return EX_FAIL;
    long pid;
    int r = cli_master_running(cfg, &pid);
    if (r != 0) {
        if (r > 0)
            cli_err("postern is already running (pid %ld)", pid);
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
    /* master's first process returns once the daemon is up or has failed
     * (its messages were copied to our stderr) */
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || cli_master_running(cfg, &pid) != 1) {
        cli_err("start failed (configuration %s)", c->config_path);
        config_free(cfg);
        return EX_FAIL;
    }
    printf("postern started (pid %ld)\n", pid);
    config_free(cfg);
    return 0;
}

/* Load the config and find the running master; prints why not. */
static struct config *running_master(struct cli *c, const char *cmd, long *pid_r)
{
    struct config *cfg = cli_load_config(c->config_path);
    if (cfg == NULL) {
        cli_err("%s: the configuration has errors: nothing done", cmd);
        return NULL;
    }
    int r = cli_master_running(cfg, pid_r);
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
    if (no_args("stop", argc) < 0)
        return EX_USAGE_;
    long pid;
    struct config *cfg = running_master(c, "stop", &pid);
    if (cfg == NULL)
        return EX_FAIL;
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
    if (no_args("reload", argc) < 0)
        return EX_USAGE_;
    long pid;
    struct config *cfg = running_master(c, "reload", &pid);
    if (cfg == NULL)
        return EX_FAIL;
    /* running_master loaded the file: a broken one stops here (master
     * would refuse it too and keep the running configuration) */
    config_free(cfg);
    if (kill((pid_t)pid, SIGHUP) < 0) {
        cli_err("cannot signal master (pid %ld): %s", pid, strerror(errno));
        return EX_FAIL;
    }
    printf("postern reloading (pid %ld)\n", pid);
    return 0;
}

int cli_status(struct cli *c, int argc, char **argv)
{
    if (no_args("status", argc) < 0)
        return EX_USAGE_;
    struct config *cfg = cli_load_config(c->config_path);
    if (cfg == NULL)
        return EX_FAIL;
    long pid;
    int r = cli_master_running(cfg, &pid);
    config_free(cfg);
    if (r == 1) {
        printf("postern is running (pid %ld)\n", pid);
        return 0;
    }
    if (r == 0)
        printf("postern is not running\n");
    return EX_FAIL;
}
