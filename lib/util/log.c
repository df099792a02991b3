/*
 * log.c - text/JSON logging to stderr (or the log file fd) or syslog with
 * the current queue id and session id. Every value is escaped, whoever logs
 * it: bytes outside printable ASCII become \xNN (text), and JSON lines
 * escape per RFC 8259 on top, so every JSON line is valid JSON and valid
 * UTF-8. Free-text messages become the event "log" (log_event.c renders
 * every line, log_write_line adds the common head and writes it).
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
#include "util/log_event.h"

static struct {
    char prog[32];
    int to_stderr;
    int json;
    enum log_level min;
    unsigned trace;
    char qid[64];
    log_fatal_hook_fn hook;
    int syslog_open;
    int fd;                     /* "stderr" */
    char sid[32];
} L = { "postern", 1, 0, LOG_L_INFO, 0, "", NULL, 0, STDERR_FILENO, "" };

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

void log_set_fd(int fd) { L.fd = fd; }
int log_is_json(void) { return L.json; }
const char *log_qid(void) { return L.qid; }
const char *log_session(void) { return L.sid; }
int log_level_enabled(enum log_level lvl) { return lvl >= L.min || lvl >= LOG_L_FATAL; }

void log_set_session(const char *sid)
{
    if (sid == NULL)
        L.sid[0] = '\0';
    else
        str_copy(L.sid, sizeof(L.sid), sid);
}

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

size_t log_json_escape(char *out, size_t o, size_t cap, const char *s, size_t n)
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

size_t log_put(char *out, size_t o, size_t cap, const char *fmt, ...)
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

/* `,"key":"value"` with value escaped twice (log_escape, then JSON). */
static size_t put_json_str(char *out, size_t o, size_t cap, const char *key, const char *v)
{
    char esc[4 * 64 + 1];
    size_t n = log_escape(esc, sizeof(esc), v, strnlen(v, 64));
    o = log_put(out, o, cap, ",\"%s\":\"", key);
    o = log_json_escape(out, o, cap, esc, n);
    return log_put(out, o, cap, "\"");
}

enum { LOG_HEAD_MAX = 1024, LOG_LINE_MAX = LOG_BODY_MAX + LOG_HEAD_MAX };

void log_write_line(enum log_level lvl, const char *event, const char *qid, const char *sid,
                    const char *body, size_t n)
{
    static __thread char line[LOG_LINE_MAX];
    char ts[40], prog[4 * sizeof(L.prog) + 1];
    struct timeval tv;
    struct tm tm;
    size_t o = 0, cap = sizeof(line) - 3;       /* room for "}" / "\n" */
    log_escape(prog, sizeof(prog), L.prog, strnlen(L.prog, sizeof(L.prog)));
    gettimeofday(&tv, NULL);
    if (n > LOG_BODY_MAX)
        n = LOG_BODY_MAX;
    if (L.json) {
        gmtime_r(&tv.tv_sec, &tm);
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
        o = log_put(line, o, cap, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\"", ts,
                    (long)(tv.tv_usec / 1000), level_names[lvl]);
        o = put_json_str(line, o, cap, "process", prog);
        o = log_put(line, o, cap, ",\"pid\":%ld,\"event\":\"%s\"", (long)getpid(), event);
        if (sid && *sid)
            o = put_json_str(line, o, cap, "session", sid);
        if (qid && *qid)
            o = put_json_str(line, o, cap, "queue_id", qid);
        memcpy(line + o, body, n);              /* whole fields (log_event.c) */
        o += n;
        line[o++] = '}';
    } else {
        if (L.to_stderr) {
            localtime_r(&tv.tv_sec, &tm);
            strftime(ts, sizeof(ts), "%b %e %H:%M:%S", &tm);
            o = log_put(line, o, cap, "%s postern/%s[%ld]: ", ts, prog, (long)getpid());
        }
        if (lvl != LOG_L_INFO)
            o = log_put(line, o, cap, "%s: ", level_names[lvl]);
        const char *id = qid && *qid ? qid : sid && *sid ? sid : NULL;
        if (id) {
            char esc[4 * 64 + 1];
            log_escape(esc, sizeof(esc), id, strnlen(id, 64));
            o = log_put(line, o, cap, "%s: ", esc);
        }
        if (n > cap - o)
            n = cap - o;
        memcpy(line + o, body, n);
        o += n;
    }
    if (L.to_stderr) {
        line[o++] = '\n';
        if (write(L.fd, line, o) < 0) { /* nowhere left to report */ }
    } else {
        line[o] = '\0';
        syslog(level_prio[lvl], "%s", line);
    }
}

void log_vmsg(enum log_level lvl, const char *fmt, va_list ap)
{
    if (lvl < L.min && lvl < LOG_L_FATAL)
        return;
    int saved = errno;
    char raw[LOG_RAW_MAX];
    vsnprintf(raw, sizeof(raw), fmt, ap);
    struct log_ev e;
    log_ev_init(&e, LE_LOG);
    log_ev_level(&e, lvl);
    log_ev_str(&e, LF_MSG, raw);
    log_ev_emit(&e);
    if (lvl >= LOG_L_ERROR && error_hook) {
        char text[4 * LOG_RAW_MAX + 4 * sizeof(L.qid) + 3], qid[4 * sizeof(L.qid) + 1];
        size_t qi = log_escape(qid, sizeof(qid), L.qid, strnlen(L.qid, sizeof(L.qid)));
        size_t o = log_put(text, 0, sizeof(text), "%s%s", qid, qi ? ": " : "");
        log_escape(text + o, sizeof(text) - o, raw, strnlen(raw, sizeof(raw)));
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
