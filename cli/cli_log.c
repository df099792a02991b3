/*
 * cli_log.c - `postern log ID`: the whole life of a message or a session
 * from the mail log, and the CLI's own log lines (admin actions when qmgr
 * is away).
 *
 * Where it looks (logdest.h decides, as for the daemons): log.file (and
 * its logrotate predecessor FILE.1 first), or <spool>/log/postern.log
 * when there is no /dev/log; otherwise the journal (journalctl, mail
 * facility), else /var/log/mail.log, /var/log/maillog, /var/log/syslog.
 *
 * ID is a queue id or a session id. A line belongs to it when it names
 * the id as a whole token; the lines that name both ids (smtpd's
 * "queued", cleanup's) link a session to its queue id and back, so the
 * output runs from connect through every delivery attempt to the end.
 * Two passes over the source: the first finds the linked ids, the second
 * prints, so memory stays bounded whatever the log's size.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include "cli.h"
#include "daemon/logdest.h"
#include "mail/spool.h"
#include "util/log.h"

#define LOG_IDS_MAX 16
#define LOG_LINE_READ 65536

struct idset { char v[LOG_IDS_MAX][40]; int n; };

static int id_char(int c) { return isalnum((unsigned char)c); }

static int has_id(const struct idset *s, const char *id, size_t n)
{
    for (int i = 0; i < s->n; i++)
        if (strlen(s->v[i]) == n && memcmp(s->v[i], id, n) == 0)
            return 1;
    return 0;
}

static void add_id(struct idset *s, const char *id, size_t n)
{
    if (n == 0 || n >= sizeof(s->v[0]) || s->n >= LOG_IDS_MAX || has_id(s, id, n))
        return;
    memcpy(s->v[s->n], id, n);
    s->v[s->n++][n] = '\0';
}

/* Does line name id as a whole token? */
static int names(const char *line, const char *id)
{
    size_t n = strlen(id);
    for (const char *p = line; (p = strstr(p, id)) != NULL; p += n)
        if ((p == line || !id_char(p[-1])) && !id_char(p[n]))
            return 1;
    return 0;
}

/* The token after key in line, if any (an id is alphanumeric). */
static void take_after(struct idset *s, const char *line, const char *key)
{
    for (const char *p = line; (p = strstr(p, key)) != NULL; ) {
        p += strlen(key);
        size_t n = 0;
        while (id_char(p[n]))
            n++;
        char tmp[40];
        if (n > 0 && n < sizeof(tmp)) {
            memcpy(tmp, p, n);
            tmp[n] = '\0';
            if (queue_id_valid(tmp) || n == 16)
                add_id(s, p, n);
        }
    }
}

/* The ids a line links: JSON fields, a text line's "ID: " prefix and session=. */
static void linked_ids(struct idset *s, const char *line)
{
    take_after(s, line, "\"queue_id\":\"");
    take_after(s, line, "\"session\":\"");
    take_after(s, line, "session=");
    const char *p = strstr(line, "]: ");
    if (p == NULL || line[0] == '{')
        return;
    p += 3;
    static const char *const levels[] = { "warning: ", "error: ", "fatal: ", "panic: ", "debug: " };
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
        if (strncmp(p, levels[i], strlen(levels[i])) == 0)
            p += strlen(levels[i]);
    size_t n = 0;
    while (id_char(p[n]))
        n++;
    if (n > 0 && n < 40 && p[n] == ':' && p[n + 1] == ' ') {
        char tmp[40];
        memcpy(tmp, p, n);
        tmp[n] = '\0';
        if (queue_id_valid(tmp) || n == 16)
            add_id(s, p, n);
    }
}

static int matches(const struct idset *s, const char *line)
{
    for (int i = 0; i < s->n; i++)
        if (names(line, s->v[i]))
            return 1;
    return 0;
}

/* One pass over f: link (pass 1) or print (pass 2). Returns lines printed. */
static int scan(FILE *f, struct idset *s, const char *id, int print)
{
    static char line[LOG_LINE_READ];
    int printed = 0;
    while (fgets(line, sizeof(line), f)) {
        if (!print) {
            if (names(line, id))
                linked_ids(s, line);
        } else if (matches(s, line)) {
            fputs(line, stdout);
            if (strchr(line, '\n') == NULL)
                fputc('\n', stdout);
            printed++;
        }
    }
    return printed;
}

/* journalctl's mail facility as a stream (no shell, fixed arguments). */
static FILE *journal_open(pid_t *pid_r)
{
    if (access("/usr/bin/journalctl", X_OK) < 0 && access("/bin/journalctl", X_OK) < 0)
        return NULL;
    int p[2];
    if (pipe(p) < 0)
        return NULL;
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return NULL;
    }
    if (pid == 0) {
        dup2(p[1], STDOUT_FILENO);
        close(p[0]);
        close(p[1]);
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0)
            dup2(null, STDERR_FILENO);
        execlp("journalctl", "journalctl", "-q", "--no-pager", "-o", "short-iso",
               "SYSLOG_FACILITY=2", (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    *pid_r = pid;
    return fdopen(p[0], "r");
}

static void journal_close(FILE *f, pid_t pid)
{
    fclose(f);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
}

/* Runs pass on each of the files that exist; returns lines printed, or -1
 * when none could be read. */
static int scan_files(const char *const *paths, int n, struct idset *s, const char *id,
                      int print)
{
    int total = -1;
    for (int i = 0; i < n; i++) {
        FILE *f = fopen(paths[i], "r");
        if (f == NULL)
            continue;
        int k = scan(f, s, id, print);
        total = (total < 0 ? 0 : total) + k;
        fclose(f);
    }
    return total;
}

static int scan_journal(struct idset *s, const char *id, int print)
{
    pid_t pid;
    FILE *f = journal_open(&pid);
    if (f == NULL)
        return -1;
    int k = scan(f, s, id, print);
    journal_close(f, pid);
    return k;
}

/* Both passes over one kind of source; -1 = source not there. */
static int run_source(int journal, const char *const *paths, int n, const char *id)
{
    struct idset s = { .n = 0 };
    add_id(&s, id, strlen(id));
    int r = journal ? scan_journal(&s, id, 0) : scan_files(paths, n, &s, id, 0);
    if (r < 0)
        return -1;
    return journal ? scan_journal(&s, id, 1) : scan_files(paths, n, &s, id, 1);
}

int cli_log(struct cli *c, int argc, char **argv)
{
    if (argc != 2 || strlen(argv[1]) == 0 || strlen(argv[1]) >= 40) {
        fprintf(stderr, "usage: postern log ID   (a queue id or a session id)\n");
        return EX_USAGE_;
    }
    const char *id = argv[1];
    for (const char *p = id; *p; p++)
        if (!id_char(*p)) {
            cli_err("log: %s is not a queue id or a session id", id);
            return EX_USAGE_;
        }
    struct config *cfg = cli_load_config(c->config_path);
    if (cfg == NULL)
        return EX_FAIL;
    buf_t path, old;
    buf_init(&path, 64);
    buf_init(&old, 64);
    int fallback, r = -1;
    const char *where = "the journal or /var/log/{mail.log,maillog,syslog}";
    if (logdest_of(cfg, &path, &fallback) == LOGDEST_FILE) {
        buf_printf(&old, "%s.1", path.data);
        const char *files[] = { old.data, path.data };
        r = run_source(0, files, 2, id);
        where = path.data;
    }
    if (r < 0)
        r = run_source(1, NULL, 0, id);
    if (r < 0) {
        static const char *const sys[] = { "/var/log/mail.log", "/var/log/maillog",
                                           "/var/log/syslog" };
        for (int i = 0; i < 3 && r < 0; i++)
            r = run_source(0, sys + i, 1, id);
    }
    int rc = 0;
    if (r <= 0) {
        cli_err("log: no line names %s (looked in %s)", id, r < 0 ? "no readable log" : where);
        rc = EX_FAIL;
    }
    buf_free(&path);
    buf_free(&old);
    config_free(cfg);
    return rc;
}

/* ---- the CLI's own lines --------------------------------------------------- */

static int attached_fd = -1;

void cli_log_attach(const struct config *cfg)
{
    buf_t path, err;
    buf_init(&path, 64);
    buf_init(&err, 64);
    int fallback;
    if (logdest_of(cfg, &path, &fallback) == LOGDEST_FILE &&
        (attached_fd = logdest_open(cfg, &err)) >= 0) {
        log_set_fd(attached_fd);
        log_set_format(1, cfg->log_json);
    } else {
        log_set_format(0, cfg->log_json);
    }
    buf_free(&path);
    buf_free(&err);
}

void cli_log_detach(void)
{
    log_set_fd(STDERR_FILENO);
    log_set_format(1, 0);
    if (attached_fd >= 0)
        close(attached_fd);
    attached_fd = -1;
}
