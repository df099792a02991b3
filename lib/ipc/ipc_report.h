/*
 * ipc_report.h - a child's metrics report to master (lib/metrics): what
 * changed since the last report, as one METRICS message on the pipe master
 * gave the child (POSTERN_READY_FD: the ready byte first, then reports).
 * At most one a second, only when something changed, never blocking: the
 * pipe is non-blocking and a report master has not read yet holds the next
 * one back (its counts wait in the table, nothing is lost or duplicated).
 * A child reports once more when it exits normally (atexit), so the counts
 * of a drained, retired smtpd are not lost; master reads a retired child's
 * pipe until it exits. A pipe master closed ends reporting.
 */
#ifndef POSTERN_IPC_REPORT_H
#define POSTERN_IPC_REPORT_H

#include "daemon/server.h"

/* Event-loop daemons: report from a 1 s timer on s->base (call before
 * server_run). */
void ipc_report_start(struct server *s);
/* Blocking daemons: report when a second has passed since the last one
 * (call between requests, at least once a second). */
void ipc_report_poll(struct server *s);
/* Ask master for a replacement (once: later calls do nothing): master
 * starts another process in this one's place and sends this one its retire
 * signal, as at reload. Non-blocking; 0 sent or queued, -1 no master. */
int  ipc_report_retire(const char *reason);

#endif
