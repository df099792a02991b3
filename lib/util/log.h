/*
 * log.h - the logging ladder shared by every process.
 *
 * One line per event, to syslog (mail facility) or stderr, as text or JSON.
 * Lines carry the program name, pid and - once known - the queue id of the
 * message being handled: event-driven daemons set it with log_set_qid()
 * around the work for one session/message and clear it after (NULL).
 * fatal = environment problem, exits 1; panic = bug, aborts. Unit tests can
 * catch fatal/panic with log_set_fatal_hook() (longjmp out).
 */
#ifndef POSTERN_LOG_H
#define POSTERN_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include "util/buf.h"

enum log_level { LOG_L_DEBUG = 0, LOG_L_INFO, LOG_L_WARN, LOG_L_ERROR, LOG_L_FATAL, LOG_L_PANIC };

/* Trace categories, switchable at run time (bit mask). */
enum log_trace { TRACE_IPC = 1, TRACE_RULES = 2, TRACE_QUEUE = 4, TRACE_SMTP = 8,
                 TRACE_DNS = 16, TRACE_TLS = 32 };

/* to_stderr: 1 = stderr, 0 = syslog. json: 1 = JSON objects, 0 = text. */
void log_init(const char *progname, int to_stderr, int json, enum log_level min);
void log_set_level(enum log_level min);
void log_set_format(int to_stderr, int json);
/* Where "stderr" lines go (default 2): master points it at log.file. */
void log_set_fd(int fd);
int  log_is_json(void);
void log_set_trace(unsigned mask);
int  log_trace_on(enum log_trace cat);
int  log_level_parse(const char *s, enum log_level *lvl_r);   /* "debug".."error" */
void log_set_qid(const char *qid);          /* NULL clears; copied */
/* The smtpd session id (16 hex digits) on every line while set; NULL clears. */
void log_set_session(const char *sid);
const char *log_qid(void);                  /* "" when none */
const char *log_session(void);
const char *log_progname(void);

void log_debug(const char *fmt, ...) PRINTF_LIKE(1, 2);
void log_info(const char *fmt, ...) PRINTF_LIKE(1, 2);
void log_warn(const char *fmt, ...) PRINTF_LIKE(1, 2);
void log_error(const char *fmt, ...) PRINTF_LIKE(1, 2);
void log_fatal(const char *fmt, ...) PRINTF_LIKE(1, 2) __attribute__((noreturn));
void log_panic(const char *fmt, ...) PRINTF_LIKE(1, 2) __attribute__((noreturn));
void log_trace(enum log_trace cat, const char *fmt, ...) PRINTF_LIKE(2, 3);
void log_vmsg(enum log_level lvl, const char *fmt, va_list ap);

/* Escaping applied to every log line (log_vmsg calls it on each message):
 * bytes outside printable ASCII (controls, DEL, >= 0x80) become "\xNN".
 * Writes at most cap - 1 bytes plus a NUL, never a partial escape; returns
 * the length written. JSON lines escape the result per RFC 8259 on top. */
size_t log_escape(char *out, size_t cap, const char *in, size_t n);

/* Appends an SMTP line a client sent, for a trace line: for AUTH only the
 * mechanism is kept ("AUTH PLAIN <redacted>"): initial responses carry
 * credentials. AUTH continuation lines must never be traced at all.
 * Escaped with buf_append_printable (NUL, controls, backslash as \xNN). */
void log_append_client_line(buf_t *b, const char *line, size_t len);

/* The one writer of a finished line (log_event.c): adds ts, level,
 * process and pid (JSON: the body holds `,"key":value` pairs; text: the
 * message after the "ID: " prefix, which names qid, else sid, when not
 * empty), and writes it to stderr/the log fd or syslog. Bodies are
 * already escaped. */
enum { LOG_RAW_MAX = 2048, LOG_BODY_MAX = 24576 };
void log_write_line(enum log_level lvl, const char *event, const char *qid, const char *sid,
                    const char *body, size_t n);
int  log_level_enabled(enum log_level lvl);
/* Appends s (printable ASCII) as a JSON string body at out[o], never past
 * cap - 1; returns the new length. */
size_t log_json_escape(char *out, size_t o, size_t cap, const char *s, size_t n);
/* snprintf at out[o] that never moves past cap - 1; returns the new length. */
size_t log_put(char *out, size_t o, size_t cap, const char *fmt, ...) PRINTF_LIKE(4, 5);

/* Called instead of exiting on fatal/panic when set (tests longjmp out). */
typedef void (*log_fatal_hook_fn)(enum log_level lvl, const char *msg);
void log_set_fatal_hook(log_fatal_hook_fn fn);

/* Called with every error-level (and worse) message, escaped and with its
 * queue id, after it was written: daemons keep the latest for master
 * (lib/metrics: `postern status` shows them). NULL = none. */
typedef void (*log_error_hook_fn)(const char *text);
void log_set_error_hook(log_error_hook_fn fn);

#endif
