/*
 * log.c - text/JSON logging to stderr or syslog with the current queue id.
 * Every message is escaped here, whoever logs it: bytes outside printable
 * ASCII become \xNN (text), and JSON lines escape per RFC 8259 on top, so
 * every JSON line is valid JSON and valid UTF-8.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <sys/time.h>

#include "util/log.h"

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

/* kept apart from L: set once by the daemon skeleton, read by log_vmsg */
static log_error_hook_fn error_hook;
void log_set_error_hook(log_error_hook_fn fn) { error_hook = fn; }

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

size_t log_escape(char *out, size_t cap, const char *in, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (cap == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c >= 0x20 && c < 0x7f) {
            if (o + 1 >= cap)
                break;
            out[o++] = (char)c;
        } else {
            if (o + 4 >= cap)
                break;
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    return o;
}

void log_append_client_line(buf_t *b, const char *line, size_t len)
{
    size_t v = 0;
    while (v < len && line[v] == ' ')
        v++;
    if (len - v >= 5 && strncasecmp(line + v, "AUTH ", 5) == 0) {
        size_t m = v + 5;
        while (m < len && line[m] == ' ')
            m++;
        while (m < len && line[m] != ' ')
            m++;                        /* the mechanism stays */
        buf_append_printable(b, line, m);
        if (m < len)
            buf_append_str(b, " <redacted>");
        return;
    }
    buf_append_printable(b, line, len);       /* NUL stays visible: \x00 */
}

/* Appends s as the body of a JSON string (RFC 8259): quotes, backslash and
 * controls escaped; s is ASCII here (log_escape ran first), so every line
 * is valid UTF-8 and valid JSON. Stops before cap - reserve. */
static size_t json_escape(char *out, size_t o, size_t cap, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[6];
        size_t k;
        if (c == '"' || c == '\\') {
            e[0] = '\\';
            e[1] = (char)c;
            k = 2;
        } else if (c < 0x20 || c >= 0x7f) {
            e[0] = '\\'; e[1] = 'u'; e[2] = '0'; e[3] = '0';
            e[4] = hex[c >> 4]; e[5] = hex[c & 15];
            k = 6;
        } else {
            e[0] = (char)c;
            k = 1;
        }
        if (o + k >= cap)
            break;
        memcpy(out + o, e, k);
        o += k;
    }
    return o;
}

/* snprintf that never moves past cap - 1 (o stays the length written). */
static size_t put(char *out, size_t o, size_t cap, const char *fmt, ...) PRINTF_LIKE(4, 5);
static size_t put(char *out, size_t o, size_t cap, const char *fmt, ...)
{
    if (o + 1 >= cap)
        return o;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + o, cap - o, fmt, ap);
    va_end(ap);
    if (n < 0)
        return o;
    return (size_t)n < cap - o ? o + (size_t)n : cap - 1;
}

enum { LOG_RAW_MAX = 2048, LOG_ESC_MAX = 4 * LOG_RAW_MAX + 1, LOG_LINE_MAX = 2 * LOG_ESC_MAX + 512 };

void log_vmsg(enum log_level lvl, const char *fmt, va_list ap)
{
    if (lvl < L.min && lvl < LOG_L_FATAL)
        return;
    int saved = errno;
    char raw[LOG_RAW_MAX];
    vsnprintf(raw, sizeof(raw), fmt, ap);
    /* every byte outside printable ASCII becomes \xNN, whoever the caller
     * is: no CR/LF/NUL, control or 8-bit byte from the wire reaches a log
     * line; the message is bounded, so logging never fails */
    static __thread char msg[LOG_ESC_MAX], line[LOG_LINE_MAX];
    char qid[4 * sizeof(L.qid) + 1], prog[4 * sizeof(L.prog) + 1];
    size_t mi = log_escape(msg, sizeof(msg), raw, strnlen(raw, sizeof(raw)));
    size_t qi = log_escape(qid, sizeof(qid), L.qid, strnlen(L.qid, sizeof(L.qid)));
    size_t pi = log_escape(prog, sizeof(prog), L.prog, strnlen(L.prog, sizeof(L.prog)));
    const char *lvl_prefix = lvl == LOG_L_INFO ? "" : level_names[lvl];
    const char *lvl_sep = lvl == LOG_L_INFO ? "" : ": ";
    size_t o = 0, cap = sizeof(line) - 3;       /* room for "\"}" / "\n" */
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    char ts[40];
    if (L.json) {
        gmtime_r(&tv.tv_sec, &tm);
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
        o = put(line, o, cap, "{\"ts\":\"%s.%03ldZ\",\"prog\":\"", ts, (long)(tv.tv_usec / 1000));
        o = json_escape(line, o, cap, prog, pi);
        o = put(line, o, cap, "\",\"pid\":%ld,\"level\":\"%s\"", (long)getpid(), level_names[lvl]);
        if (qi) {
            o = put(line, o, cap, ",\"qid\":\"");
            o = json_escape(line, o, cap, qid, qi);
            o = put(line, o, cap, "\"");
        }
        o = put(line, o, cap, ",\"msg\":\"");
        o = json_escape(line, o, cap, msg, mi);
        memcpy(line + o, "\"}", 2);         /* always closed: every line parses */
        o += 2;
    } else {
        if (L.to_stderr) {
            localtime_r(&tv.tv_sec, &tm);
            strftime(ts, sizeof(ts), "%b %e %H:%M:%S", &tm);
            o = put(line, o, cap, "%s postern/%s[%ld]: ", ts, prog, (long)getpid());
        }
        o = put(line, o, cap, "%s%s%s%s%s", lvl_prefix, lvl_sep, qid, qi ? ": " : "", msg);
    }
    if (L.to_stderr) {
        line[o++] = '\n';
        if (write(STDERR_FILENO, line, o) < 0) { /* nowhere left to report */ }
    } else {
        line[o] = '\0';
        syslog(level_prio[lvl], "%s", line);
    }
    if (lvl >= LOG_L_ERROR && error_hook) {
        char text[LOG_ESC_MAX + sizeof(qid) + 2];
        str_format(text, sizeof(text), "%s%s%s", qid, qi ? ": " : "", msg);
        error_hook(text);
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
