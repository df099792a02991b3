/*
 * cli_top.c - `postern top [--once | -n N]`: a live view of the running
 * suite, refreshed once a second (like smtpctl monitor or top): sessions,
 * messages in and out per second, queue sizes and the destinations with
 * the most deferred mail. q or Ctrl-C quits; --once prints one frame (after
 * one second of sampling, so the rates mean something) and -n N prints N
 * frames, both without terminal control codes when stdout is no terminal.
 *
 * Reads what master writes to run_dir (metrics.prom: the counters the
 * children report; daemons.status) and scans the queues itself with the
 * queue commands' code (readdir for the sizes, the deferred queue's files
 * for destinations, rescanned less often when that is slow). Plain ANSI
 * escapes, no curses. Never writes anything.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cli_queue.h"
#include "util/clock.h"

#define TOP_DESTS 10

static volatile sig_atomic_t quit;
static void on_sigint(int sig) { quit = 1; }

/* One reading of metrics.prom. */
struct sample {
    double t;                 /* master's render time (the file's mtime), seconds */
    double accepted, rejected, bytes, conns, sent, deferred, bounced, sessions;
    int ok;
};

/* Sum of every series of name whose labels contain match (NULL: all). */
static double prom_sum(const char *text, const char *name, const char *match)
{
    double sum = 0;
    size_t nl = strlen(name);
    for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
        if (strncmp(l, name, nl) != 0 || (l[nl] != '{' && l[nl] != ' '))
            continue;
        const char *end = strchr(l, '\n');
        size_t len = end ? (size_t)(end - l) : strlen(l);
        char line[1024];
        if (len >= sizeof(line))
            continue;
        memcpy(line, l, len);
        line[len] = '\0';
        char *sp = strrchr(line, ' ');
        if (sp == NULL || (match && (strstr(line, match) == NULL || strstr(line, match) > sp)))
            continue;
        sum += strtod(sp + 1, NULL);
    }
    return sum;
}

static void take_sample(const struct config *cfg, struct sample *s)
{
    char path[4200];
    memset(s, 0, sizeof(*s));
    str_format(path, sizeof(path), "%s/metrics.prom", cfg->run_dir);
    FILE *f = fopen(path, "re");
    struct stat st;
    if (f == NULL || fstat(fileno(f), &st) < 0) {
        if (f)
            fclose(f);
        return;
    }
    buf_t b;
    buf_init(&b, 16384);
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && b.len < (4u << 20))
        buf_append(&b, chunk, n);
    fclose(f);
    s->t = (double)st.st_mtim.tv_sec + st.st_mtim.tv_nsec / 1e9;
    s->accepted = prom_sum(b.data, "postern_messages_accepted_total", NULL);
    s->rejected = prom_sum(b.data, "postern_messages_rejected_total", NULL);
    s->bytes = prom_sum(b.data, "postern_received_bytes_total", NULL);
    s->conns = prom_sum(b.data, "postern_smtpd_connections_total", NULL);
    /* delivered: sent, or discarded as the configuration or a rule said */
    s->sent = prom_sum(b.data, "postern_delivery_attempts_total", "status=\"sent\"") +
              prom_sum(b.data, "postern_delivery_attempts_total", "status=\"discarded\"");
    s->deferred = prom_sum(b.data, "postern_delivery_attempts_total", "status=\"deferred\"");
    s->bounced = prom_sum(b.data, "postern_delivery_attempts_total", "status=\"bounced\"");
    s->sessions = prom_sum(b.data, "postern_smtpd_sessions_active", NULL);
    s->ok = 1;
    buf_free(&b);
}

/* Queue sizes from readdir alone. */
static void queue_sizes(const struct config *cfg, buf_t *o)
{
    static const struct { int bit; const char *name; } qs[] = {
        { Q_INCOMING, "incoming" }, { Q_ACTIVE, "active" }, { Q_DEFERRED, "deferred" },
        { Q_HOLD, "hold" }, { Q_QUARANTINE, "quarantine" }, { Q_CORRUPT, "corrupt" } };
    buf_append_str(o, "queues:");
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        struct qlist l = { NULL, 0 };
        scan(cfg, qs[i].bit, &l);
        buf_printf(o, "  %s %d", qs[i].name, l.n);
        free(l.v);
    }
    buf_append_char(o, '\n');
}

static double rate(double now, double before, double dt)
{
    return dt > 0 && now >= before ? (now - before) / dt : 0;
}

struct top {
    const struct config *cfg;
    struct sample prev, cur;
    struct shape dests;          /* the deferred queue by domain */
    int64_t dests_at, dests_cost; /* when scanned, how long it took (ms) */
    int ansi;
};

static void rescan_dests(struct top *T)
{
    int64_t now = clock_now_ms();
    /* a big deferred queue costs: never more than a fifth of the time */
    if (T->dests_at && now - T->dests_at < 1000 + 5 * T->dests_cost)
        return;
    shape_free(&T->dests);
    struct qsel sel = { 0 };
    sel.queues = Q_DEFERRED;
    shape_collect(T->cfg, &sel, (int64_t)time(NULL), &T->dests);
    T->dests_at = clock_now_ms();
    T->dests_cost = T->dests_at - now;
}

static void frame(struct top *T)
{
    buf_t o;
    buf_init(&o, 4096);
    const struct sample *a = &T->prev, *b = &T->cur;
    double dt = a->ok && b->ok ? b->t - a->t : 0;
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(when, sizeof(when), "%H:%M:%S", &tm);
    if (T->ansi)
        buf_append_str(&o, "\033[H\033[2J");
    buf_printf(&o, "postern top - %s   %s\n\n", when,
               b->ok ? "" : "(no metrics from master yet: is postern running?)");
    buf_printf(&o, "sessions: %.0f open   connections/s %.1f\n", b->sessions,
               rate(b->conns, a->conns, dt));
    buf_printf(&o, "in:  %7.1f msg/s  %9.1f KiB/s   rejected/s %.1f   (accepted %.0f)\n",
               rate(b->accepted, a->accepted, dt), rate(b->bytes, a->bytes, dt) / 1024,
               rate(b->rejected, a->rejected, dt), b->accepted);
    buf_printf(&o, "out: %7.1f msg/s delivered   deferred/s %.1f   bounced/s %.1f   (delivered %.0f)\n",
               rate(b->sent, a->sent, dt), rate(b->deferred, a->deferred, dt),
               rate(b->bounced, a->bounced, dt), b->sent);
    queue_sizes(T->cfg, &o);
    buf_printf(&o, "\ntop destinations by deferred mail (%ld messages deferred):\n",
               T->dests.all.total);
    buf_printf(&o, "  %8s  %s\n", "messages", "domain");
    for (int i = 0; i < T->dests.n && i < TOP_DESTS; i++) {
        buf_printf(&o, "  %8ld  ", T->dests.rows[i].total);
        text_str(&o, T->dests.rows[i].domain);
        buf_append_char(&o, '\n');
    }
    if (T->ansi)
        buf_append_str(&o, "\n(q quits)\n");
    flush_out(&o);
    fflush(stdout);
    buf_free(&o);
}

/* Wait up to ms for q or Ctrl-C; 1 = quit. */
static int wait_key(int ms, int tty)
{
    struct pollfd p = { .fd = STDIN_FILENO, .events = POLLIN };
    int64_t end = clock_now_ms() + ms;
    while (!quit) {
        int64_t left = end - clock_now_ms();
        if (left <= 0)
            return 0;
        int r = poll(&p, tty ? 1 : 0, (int)left);
        if (r > 0) {
            char c;
            if (read(STDIN_FILENO, &c, 1) == 1 && (c == 'q' || c == 'Q' || c == 3))
                return 1;
        } else if (r < 0 && errno != EINTR) {
            return 0;
        }
    }
    return 1;
}

static int run_top(struct top *T, int frames)
{
    int tty = isatty(STDIN_FILENO) && T->ansi;
    struct termios saved, raw;
    if (tty && tcgetattr(STDIN_FILENO, &saved) == 0) {
        raw = saved;
        raw.c_lflag &= (tcflag_t)~(ICANON | ECHO);
        raw.c_cc[VMIN] = 0;
        raw.c_cc[VTIME] = 0;
        tcsetattr(STDIN_FILENO, TCSANOW, &raw);
        fputs("\033[?25l", stdout);   /* hide the cursor */
    } else {
        tty = 0;
    }
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    take_sample(T->cfg, &T->cur);
    for (int n = 0; !quit && (frames <= 0 || n < frames); n++) {
        if (wait_key(1000, tty))
            break;
        T->prev = T->cur;
        take_sample(T->cfg, &T->cur);
        rescan_dests(T);
        frame(T);
    }
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
        fputs("\033[?25h", stdout);
        fflush(stdout);
    }
    return 0;
}

int cli_top(struct cli *c, int argc, char **argv)
{
    int frames = 0;
    for (int i = 1; i < argc; i++) {
        char *end;
        if (strcmp(argv[i], "--once") == 0) {
            frames = 1;
        } else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
            frames = (int)strtol(argv[++i], &end, 10);
            if (*end || frames <= 0) {
                cli_err("top: -n needs a positive number of frames");
                return EX_USAGE_;
            }
        } else {
            fputs("usage: postern top [--once | -n FRAMES]\n", stderr);
            return EX_USAGE_;
        }
    }
    struct config *cfg = cli_load_config(c->config_path);
    if (cfg == NULL)
        return EX_FAIL;
    struct top T;
    memset(&T, 0, sizeof(T));
    T.cfg = cfg;
    T.ansi = isatty(STDOUT_FILENO);
    int rc = run_top(&T, frames);
    shape_free(&T.dests);
    config_free(cfg);
    return rc;
}
