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
 * one) and started anew. Format in postern.conf(5) and HACKING.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dmarc/dmarc.h"
#include "util/buf.h"
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

int dmarc_report_append(const char *path, const struct dmarc_report_row *row)
{
    struct stat st;
    if (stat(path, &st) == 0 && st.st_size >= DMARC_REPORT_MAX) {
        char old[512];
        str_format(old, sizeof old, "%s.1", path);
        if (rename(path, old) < 0 && errno != ENOENT)
            return -1;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -1;
    buf_t line;
    buf_init(&line, 512);
    dmarc_report_line(row, &line);
    buf_append_char(&line, '\n');
    int rc = fdio_write_all(fd, line.data, line.len) < 0 ? -1 : 0;
    int e = errno;
    buf_free(&line);
    close(fd);
    errno = e;
    return rc;
}
