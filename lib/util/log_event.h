/*
 * log_event.h - structured log events: one emit API every process uses, so
 * the JSON and the text format come from one place. An event names a row
 * of log_events.def (its JSON name, level and Postfix-style text layout)
 * and carries typed fields from log_fields.def:
 *
 *     struct log_ev e;
 *     log_ev_init(&e, LE_DELIVERED);
 *     log_ev_str(&e, LF_RECIPIENT, addr);
 *     log_ev_dbl(&e, LF_DELAY, delay);
 *     log_ev_emit(&e);
 *
 * Strings are borrowed until log_ev_emit (log_ev_printf copies into the
 * event). Every value is cut at LOG_VALUE_MAX octets and escaped (control
 * and 8-bit bytes as \xNN, then JSON escaping), so nothing from mail can
 * break a line. The current queue id / session id (log_set_qid,
 * log_set_session) fill LF_QUEUE_ID / LF_SESSION unless set explicitly.
 */
#ifndef POSTERN_LOG_EVENT_H
#define POSTERN_LOG_EVENT_H

#include <stdint.h>
#include "util/log.h"

#define LOG_FIELD(id, name, type) id,
enum log_field {
#include "util/log_fields.def"
    LF__COUNT
};
#undef LOG_FIELD

#define LOG_EVENT(id, name, lvl, text) id,
enum log_event {
#include "util/log_events.def"
    LE__COUNT
};
#undef LOG_EVENT

enum { LOG_VALUE_MAX = 1024, LOG_EV_SCRATCH = 1024 };

struct log_ev {
    enum log_event ev;
    enum log_level lvl;
    uint64_t set;                       /* bit per enum log_field */
    struct { const char *s; long long n; double d; } v[LF__COUNT];
    char scratch[LOG_EV_SCRATCH];       /* log_ev_printf copies */
    size_t used;
    int client_raw;                     /* LF_CLIENT is ip (.s) and port (.n), shaped when rendered */
};

void log_ev_init(struct log_ev *e, enum log_event ev);
void log_ev_level(struct log_ev *e, enum log_level lvl);
void log_ev_str(struct log_ev *e, enum log_field f, const char *s);   /* NULL: unset */
void log_ev_num(struct log_ev *e, enum log_field f, long long n);
void log_ev_dbl(struct log_ev *e, enum log_field f, double d);
void log_ev_bool(struct log_ev *e, enum log_field f, int b);
void log_ev_printf(struct log_ev *e, enum log_field f, const char *fmt, ...) PRINTF_LIKE(3, 4);
/* "[ip]:port", the client's form everywhere; ip is borrowed like a string
 * and the text is made only if the event is logged. */
void log_ev_client(struct log_ev *e, const char *ip, unsigned port);
void log_ev_emit(struct log_ev *e);
/* Would the event be logged at the level in force? For callers whose
 * field values cost work to make (log_ev_emit checks anyway). */
int  log_event_on(enum log_event ev);

/* The event "admin": an administrative action (count < 0: none) by user
 * name / uid; qmgr logs the CLI's, the CLI itself when qmgr is away. */
void log_admin(const char *kind, const char *action, long long count, const char *ids,
               const char *user, long long uid);

const char *log_event_name(enum log_event ev);
const char *log_field_name(enum log_field f);
/* Renders e's body into out (JSON fields or the text layout); for tests. */
size_t log_ev_render(const struct log_ev *e, int json, char *out, size_t cap);

#endif
