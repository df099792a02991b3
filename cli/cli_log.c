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
 * the id as a whole token; the lines that carry both ids (smtpd's
 * "queued", cleanup's) link a session to its queue ids and back, so the
 * output runs from connect through every delivery attempt to the end.
 * Links are read only where Postern writes ids (line_ids), never from
 * client values. Two passes over the source: the first finds the linked
 * ids, the second prints, so memory stays bounded by the ids
 * (LOG_IDS_MAX), whatever the log's size.
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
#include "util/hash.h"
#include "util/log.h"

#define LOG_IDS_MAX 65536       /* linked ids kept (a session's messages); more: said */
#define LOG_LINE_READ 65536
#define ID_MAX 40

/* The ids followed: a hash set (open addressing, cap a power of two). */
struct idset { char (*v)[ID_MAX]; size_t n, cap; int over; };

static int id_char(int c) { return isalnum((unsigned char)c); }

static size_t id_slot(const struct idset *s, const char *id, size_t n)
{
    uint32_t h = FNV1A_INIT;
    for (size_t i = 0; i < n; i++)
        h = fnv1a_byte(h, (unsigned char)id[i]);
    size_t k = h & (s->cap - 1);
    while (s->v[k][0] && (strlen(s->v[k]) != n || memcmp(s->v[k], id, n) != 0))
        k = (k + 1) & (s->cap - 1);
    return k;
}

static int has_id(const struct idset *s, const char *id, size_t n)
{
    return n > 0 && n < ID_MAX && s->v[id_slot(s, id, n)][0] != '\0';
}

static void add_id(struct idset *s, const char *id, size_t n)
{
    if (n == 0 || n >= ID_MAX || has_id(s, id, n))
        return;
    if (s->n >= LOG_IDS_MAX) {
        s->over = 1;
        return;
    }
    if (2 * (s->n + 1) > s->cap) {          /* at most half full: short probes */
        struct idset g = { xcalloc(s->cap * 2, ID_MAX), 0, s->cap * 2, s->over };
        for (size_t i = 0; i < s->cap; i++)
            if (s->v[i][0])
                memcpy(g.v[id_slot(&g, s->v[i], strlen(s->v[i]))], s->v[i], ID_MAX);
        g.n = s->n;
        free(s->v);
        *s = g;
    }
    char *slot = s->v[id_slot(s, id, n)];
    memcpy(slot, id, n);
    slot[n] = '\0';
    s->n++;
}

/* Does line name one of the ids as a whole token (a maximal alphanumeric run)? */
static int matches(const struct idset *s, const char *line)
{
    for (const char *p = line; *p; ) {
        if (!id_char(*p)) {
            p++;
            continue;
        }
        size_t n = 0;
        while (id_char(p[n]))
            n++;
        if (has_id(s, p, n))
            return 1;
        p += n;
    }
    return 0;
}

/* An id-shaped token at p (a queue id, or a session id: 16 characters)
 * into out; its length, 0 when there is none. */
static size_t take_id(const char *p, char out[ID_MAX])
{
    size_t n = 0;
    while (id_char(p[n]))
        n++;
    if (n == 0 || n >= ID_MAX)
        return 0;
    memcpy(out, p, n);
    out[n] = '\0';
    return queue_id_valid(out) || n == 16 ? n : 0;
}

/*
 * The ids a line is about, taken only from where Postern itself writes
 * them, never from values a client chose (HELO, addresses, reply texts
 * hold any printable text, "session=..." and queue ids included):
 *  - a JSON line's "queue_id" and "session" keys: a quote inside a value
 *    is always escaped, so a value cannot contain `"session":"`;
 *  - a text line's "ID: " prefix, right after the "prog[pid]: " head;
 *  - the session= that ends smtpd's "queued" line (`ID: client=...,
 *    session=SID`): it is that layout's last field, after every value
 *    from the client, so only the last one counts, at the very end.
 * Returns how many (0..2) went into ids.
 */
static int line_ids(const char *line, char ids[2][ID_MAX])
{
    int k = 0;
    const char *head = strstr(line, "]: ");
    const char *body = line[0] == '{' ? line : head ? head + 3 : NULL;
    if (body == NULL)
        return 0;
    if (body[0] == '{') {
        static const char *const keys[] = { "\"queue_id\":\"", "\"session\":\"" };
        for (int i = 0; i < 2; i++) {
            const char *p = strstr(body, keys[i]);
            if (p && take_id(p + strlen(keys[i]), ids[k]))
                k++;
        }
        return k;
    }
    static const char *const levels[] = { "warning: ", "error: ", "fatal: ", "panic: ", "debug: " };
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
        if (strncmp(body, levels[i], strlen(levels[i])) == 0)
            body += strlen(levels[i]);
    size_t n = take_id(body, ids[k]);
    if (n == 0 || body[n] != ':' || body[n + 1] != ' ')
        return 0;
    k++;
    body += n + 2;
    size_t len = strcspn(body, "\r\n");
    static const char key[] = ", session=";
    size_t kl = sizeof(key) - 1;
    if (strncmp(body, "client=", 7) == 0 && len > kl + 16 &&
        memcmp(body + len - 16 - kl, key, kl) == 0 &&
        take_id(body + len - 16, ids[k]) == 16)
        k++;
    return k;
}

/* One pass over f: link (pass 1) or print (pass 2). Returns lines printed. */
static int scan(FILE *f, struct idset *s, const char *id, int print)
{
    static char line[LOG_LINE_READ];
    int printed = 0;
    while (fgets(line, sizeof(line), f)) {
        if (!print) {
            char ids[2][ID_MAX];
            int n = line_ids(line, ids), hit = 0;
            for (int i = 0; i < n; i++)
                hit |= strcmp(ids[i], id) == 0;
            for (int i = 0; hit && i < n; i++)
                add_id(s, ids[i], strlen(ids[i]));
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
    struct idset s = { xcalloc(64, ID_MAX), 0, 64, 0 };
    add_id(&s, id, strlen(id));
    int r = journal ? scan_journal(&s, id, 0) : scan_files(paths, n, &s, id, 0);
    if (r >= 0)
        r = journal ? scan_journal(&s, id, 1) : scan_files(paths, n, &s, id, 1);
    if (r >= 0 && s.over)
        cli_err("log: %s links more than %d ids: the lines of the others are not shown",
                id, LOG_IDS_MAX);
    free(s.v);
    return r;
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
