/*
 * logdest.h - where the daemons' log lines go, decided in one place for
 * master (which writes them), the CLI (admin actions when qmgr is away)
 * and `postern log` (which reads them back):
 *   - log.file when set;
 *   - else syslog when /dev/log exists;
 *   - else <spool>/log/postern.log, so no line is ever lost silently
 *     (`postern start` says so).
 * `postern run` without log.file logs to stderr (master decides that).
 */
#ifndef POSTERN_LOGDEST_H
#define POSTERN_LOGDEST_H

#include "util/buf.h"
#include "config/config.h"

#define LOGDEST_FALLBACK "log/postern.log"   /* under the spool */

enum logdest { LOGDEST_SYSLOG, LOGDEST_FILE };

/* The destination for cfg; with LOGDEST_FILE the file's path in path_r,
 * and *fallback_r = 1 when it is the spool's file for want of /dev/log. */
enum logdest logdest_of(const struct config *cfg, buf_t *path_r, int *fallback_r);

/* Opens the log file for appending, as root: log.file with O_NOFOLLOW, the
 * spool's file through a root-owned <spool>/log/ opened without following
 * links (the spool is the mail user's). Anything but a regular file with
 * one link is refused. Returns the fd (O_CLOEXEC), or -1 with err. */
int logdest_open(const struct config *cfg, buf_t *err);

#endif
