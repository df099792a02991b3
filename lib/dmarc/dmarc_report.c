/*
 * dmarc_report.c - what DMARC leaves behind for each message: one line of
 * aggregate-report data (RFC 7489 7.2: the fields of a <record>: source
 * IP, header_from, policy_evaluated with the disposition, the DKIM and SPF
 * results and domains, the published policy). (The dmarc= method of
 * Authentication-Results is composed with the others by lib/dkim/authres.c.)
 *
 * Lines are "key=value" pairs separated by one blank; values come from
 * mail and DNS, so every byte outside printable ASCII, blanks and '=' is
 * written as '?', and each value is bounded. The file is bounded too: at
 * DMARC_REPORT_MAX bytes it is renamed to FILE.1 (replacing the previous
 * one) and started anew. The file is kept open between lines (rf_ready). Format in postern.conf(5) and HACKING.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dmarc/dmarc.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/fdio.h"

#define VALUE_MAX 255

static void value(buf_t *out, const char *key, const char *v)
{
    buf_printf(out, "%s%s=", out->len ? " " : "", key);
    if (v == NULL || *v == '\0') {
        buf_append_char(out, '-');
        return;
    }
    for (size_t i = 0; v[i] && i < VALUE_MAX; i++) {
        unsigned char c = (unsigned char)v[i];
        buf_append_char(out, c > 32 && c < 127 && c != '=' ? (char)c : '?');
    }
}

void dmarc_report_line(const struct dmarc_report_row *row, buf_t *out)
{
    const struct dmarc_outcome *o = row->o;
    char n[32];
    str_format(n, sizeof n, "%lld", (long long)row->when);
    value(out, "time", n);
    value(out, "queue_id", row->queue_id);
    value(out, "source_ip", row->client_ip);
    value(out, "header_from", o->from_domain);
    value(out, "policy_domain", o->record_domain);
    value(out, "org_domain", o->org_domain);
    value(out, "dmarc", dmarc_result_name(o->result));
    value(out, "disposition", row->disposition);
    value(out, "dkim_aligned", o->dkim_aligned ? "pass" : "fail");
    value(out, "spf_aligned", o->spf_aligned ? "pass" : "fail");
    value(out, "dkim_domain", o->dkim_domain);
    value(out, "dkim_result", o->dkim_result);
    value(out, "spf_domain", row->spf_domain);
    value(out, "spf_result", row->spf_result && *row->spf_result ? row->spf_result : "none");
    value(out, "p", o->has_record ? dmarc_policy_name(o->published) : NULL);
    value(out, "sp_used", o->sp_used ? "yes" : "no");
    str_format(n, sizeof n, "%d", o->pct);
    value(out, "pct", o->has_record ? n : NULL);
    value(out, "sampled_out", o->sampled_out ? "yes" : "no");
    char a[2] = { o->adkim, 0 }, s[2] = { o->aspf, 0 };
    value(out, "adkim", o->has_record ? a : NULL);
    value(out, "aspf", o->has_record ? s : NULL);
}

/* The records file stays open between messages (one write per message,
 * not stat+open+write+close). Once a second the path is looked at again:
 * a file moved or removed by someone else (a report sender) is left to
 * them and a new one is opened; the size seen then, plus what was written
 * since, decides the rotation. One file per process (cleanup's). */
static struct {
    int fd;
    dev_t dev;
    ino_t ino;
    off_t size;
    int64_t checked_ms;
    char path[256];
} rf = { .fd = -1 };

static void rf_close(void)
{
    if (rf.fd >= 0)
        close(rf.fd);
    rf.fd = -1;
}

/* rf.fd is open on path, rotated when due. 0 or -1 (errno). */
static int rf_ready(const char *path)
{
    int64_t now = clock_now_ms();
    if (rf.fd >= 0 && strcmp(rf.path, path) == 0 && now - rf.checked_ms < 1000 &&
        rf.size < DMARC_REPORT_MAX)
        return 0;
    struct stat st;
    int exists = stat(path, &st) == 0;
    if (exists && st.st_size >= DMARC_REPORT_MAX) {
        char old[512];
        str_format(old, sizeof old, "%s.1", path);
        if (rename(path, old) < 0 && errno != ENOENT)
            return -1;
        exists = 0;
    }
    if (rf.fd >= 0 && (!exists || st.st_dev != rf.dev || st.st_ino != rf.ino ||
                       strcmp(rf.path, path) != 0))
        rf_close();
    if (rf.fd < 0) {
        rf.fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (rf.fd < 0 || fstat(rf.fd, &st) < 0) {
            int e = errno;
            rf_close();
            errno = e;
            return -1;
        }
        str_copy(rf.path, sizeof rf.path, path);
        rf.dev = st.st_dev;
        rf.ino = st.st_ino;
    }
    rf.size = st.st_size;
    rf.checked_ms = now;
    return 0;
}

int dmarc_report_append(const char *path, const struct dmarc_report_row *row)
{
    if (rf_ready(path) < 0)
        return -1;
    buf_t line;
    buf_init(&line, 512);
    dmarc_report_line(row, &line);
    buf_append_char(&line, '\n');
    int rc = fdio_write_all(rf.fd, line.data, line.len) < 0 ? -1 : 0;
    int e = errno;
    if (rc == 0)
        rf.size += (off_t)line.len;
    else
        rf_close();                    /* opened again (and looked at) next time */
    buf_free(&line);
    errno = e;
    return rc;
}
