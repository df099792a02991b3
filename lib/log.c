/*
 * log.c - text/JSON logging to stderr or syslog with the current queue id.
 * Every message is escaped (no CR/LF/NUL from the wire reaches a log line).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <sys/time.h>

#include "log.h"

static struct {
    char prog[32];
    int to_stderr;
    int json;
    enum log_level min;
    unsigned trace;
    char qid[64];
    log_fatal_hook_fn hook;
    int syslog_open;
} L = { "postern", 1, 0, LOG_L_INFO, 0, "", NULL, 0 };

static const char *level_names[] = { "debug", "info", "warning", "error", "fatal", "panic" };
static const int level_prio[] = { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR, LOG_CRIT, LOG_CRIT };

void log_init(const char *progname, int to_stderr, int json, enum log_level min)
{
    str_copy(L.prog, sizeof(L.prog), progname);
    L.min = min;
    log_set_format(to_stderr, json);
}

void log_set_format(int to_stderr, int json)
{
    L.to_stderr = to_stderr;
    L.json = json;
    if (!to_stderr && !L.syslog_open) {
        openlog(L.prog, LOG_PID | LOG_NDELAY, LOG_MAIL);
        L.syslog_open = 1;
    }
}

void log_set_level(enum log_level min) { L.min = min; }
void log_set_trace(unsigned mask) { L.trace = mask; }
int log_trace_on(enum log_trace cat) { return (L.trace & (unsigned)cat) != 0; }
const char *log_progname(void) { return L.prog; }
void log_set_fatal_hook(log_fatal_hook_fn fn) { L.hook = fn; }

void log_set_qid(const char *qid)
{
    if (qid == NULL)
        L.qid[0] = '\0';
    else
        str_copy(L.qid, sizeof(L.qid), qid);
}

int log_level_parse(const char *s, enum log_level *lvl_r)
{
    for (int i = LOG_L_DEBUG; i <= LOG_L_ERROR; i++) {
        if (strcmp(s, level_names[i]) == 0 || (i == LOG_L_WARN && strcmp(s, "warn") == 0)) {
            *lvl_r = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

/* JSON string escaping: quotes, backslash and every control byte. */
static void json_escape(buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            buf_append_char(b, '\\');
            buf_append_char(b, (char)c);
        } else if (c < 0x20 || c == 0x7f) {
            char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
            buf_append(b, e, 6);
        } else {
            buf_append_char(b, (char)c);
        }
    }
}

void log_vmsg(enum log_level lvl, const char *fmt, va_list ap)
{
    if (lvl < L.min && lvl < LOG_L_FATAL)
        return;
    int saved = errno;
    char raw[2048];
    vsnprintf(raw, sizeof(raw), fmt, ap);
    /* escape controls; the message is bounded, so logging never fails */
    size_t rl = strnlen(raw, sizeof(raw) - 1);
    char msg[1024 + 16];
    size_t mi = 0;
    for (size_t i = 0; i < rl && mi + 5 < sizeof(msg) - 1; i++) {
        unsigned char c = (unsigned char)raw[i];
        if (c < 0x20 || c == 0x7f) {
            mi += (size_t)snprintf(msg + mi, sizeof(msg) - mi, "\\x%02x", c);
        } else {
            msg[mi++] = (char)c;
        }
    }
    msg[mi] = '\0';
    char out[2304];
    int n;
    if (L.json) {
        buf_t j;
        buf_init(&j, 256);
        struct timeval tv;
        gettimeofday(&tv, NULL);
        struct tm tm;
        gmtime_r(&tv.tv_sec, &tm);
        char ts[40];
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
        buf_printf(&j, "{\"ts\":\"%s.%03ldZ\",\"prog\":\"%s\",\"pid\":%ld,\"level\":\"%s\"",
                   ts, (long)(tv.tv_usec / 1000), L.prog, (long)getpid(), level_names[lvl]);
        if (L.qid[0])
            buf_printf(&j, ",\"qid\":\"%s\"", L.qid);
        buf_append_str(&j, ",\"msg\":\"");
        json_escape(&j, msg, mi);
        buf_append_str(&j, "\"}");
        n = snprintf(out, sizeof(out), "%s", j.data);
        buf_free(&j);
    } else if (L.qid[0]) {
        n = snprintf(out, sizeof(out), "%s%s%s: %s", lvl == LOG_L_INFO ? "" : level_names[lvl],
                     lvl == LOG_L_INFO ? "" : ": ", L.qid, msg);
    } else {
        n = snprintf(out, sizeof(out), "%s%s%s", lvl == LOG_L_INFO ? "" : level_names[lvl],
                     lvl == LOG_L_INFO ? "" : ": ", msg);
    }
    if (n < 0)
        n = 0;
    if (L.to_stderr) {
        char full[2600];
        int m;
        if (L.json) {
            m = snprintf(full, sizeof(full), "%s\n", out);
        } else {
            struct timeval tv;
            gettimeofday(&tv, NULL);
            struct tm tm;
            localtime_r(&tv.tv_sec, &tm);
            char ts[32];
            strftime(ts, sizeof(ts), "%b %e %H:%M:%S", &tm);
            m = snprintf(full, sizeof(full), "%s postern/%s[%ld]: %s\n", ts, L.prog,
                         (long)getpid(), out);
        }
        if (m > 0) {
            size_t len = (size_t)m < sizeof(full) ? (size_t)m : sizeof(full) - 1;
            if (write(STDERR_FILENO, full, len) < 0) { /* nowhere left to report */ }
        }
    } else {
        syslog(level_prio[lvl], "%s", out);
    }
    errno = saved;
}

#define LOG_FN(name, lvl)                        \
    void name(const char *fmt, ...)              \
    {                                            \
        va_list ap;                              \
        va_start(ap, fmt);                       \
        log_vmsg(lvl, fmt, ap);                  \
        va_end(ap);                              \
    }
LOG_FN(log_debug, LOG_L_DEBUG)
LOG_FN(log_info, LOG_L_INFO)
LOG_FN(log_warn, LOG_L_WARN)
LOG_FN(log_error, LOG_L_ERROR)

void log_trace(enum log_trace cat, const char *fmt, ...)
{
    if (!log_trace_on(cat))
        return;
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(LOG_L_INFO, fmt, ap);
    va_end(ap);
}

static void __attribute__((noreturn)) die(enum log_level lvl, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    log_vmsg(lvl, fmt, ap);
    if (L.hook) {
        char m[1024];
        vsnprintf(m, sizeof(m), fmt, ap2);
        L.hook(lvl, m);
    }
    va_end(ap2);
    if (lvl == LOG_L_PANIC)
        abort();
    exit(1);
}

void log_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    die(LOG_L_FATAL, fmt, ap);
}

void log_panic(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    die(LOG_L_PANIC, fmt, ap);
}
