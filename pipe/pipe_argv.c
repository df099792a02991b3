/*
 * pipe_argv.c - what the pipe agent gives a command and what it makes of
 * the end (pipe.h):
 *
 * argv: each element of the transport's `command` is one argument; every
 * ${name} in it (config_pipe_vars) is replaced by the value, and a value
 * never splits an element, never adds one and is never seen by a shell,
 * so "a b" '$(id)' or `x;rm` arrive as the literal text of one argument.
 * One thing is refused (5.1.3, as Postfix's allow_min_user does): an
 * element that would start with '-' because of a value from the mail,
 * unless an element "--" came before it (the command would read it as an
 * option).
 *
 * stdin: "Return-Path: <sender>", "Delivered-To: recipient" and the message
 * with LF line ends, in an unnamed file (O_TMPFILE in the spool's tmp/,
 * else a sealed memfd) so the command may read it at its own pace.
 *
 * Exit status (sysexits.h, as Postfix's pipe(8)): 0 delivered; EX_TEMPFAIL,
 * EX_OSERR, EX_IOERR defer; the other EX_* bounce with their enhanced
 * code; any other status bounces 5.3.0; a signal, a timeout or a command
 * that cannot start defers.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>
#include <sys/mman.h>

#include "pipe.h"
#include "mail/spool.h"
#include "util/fdio.h"
#include "util/log.h"
#include "metrics/metrics.h"

void pipe_vars_init(struct pipe_vars *pv, const struct qf_env *env, const struct qf_rcpt *r,
                    const struct transport_conf *t)
{
    memset(pv, 0, sizeof(*pv));
    const char *at = strrchr(r->addr, '@');
    size_t ll = at ? (size_t)(at - r->addr) : strlen(r->addr);
    pv->local_part = xmalloc(ll + 1);
    memcpy(pv->local_part, r->addr, ll);
    pv->local_part[ll] = '\0';
    const char *orig = r->orig && r->orig[0] ? r->orig : r->addr;
    const char *semi = strchr(orig, ';');   /* ORCPT "rfc822;addr" */
    if (semi && r->orig && r->orig[0])
        orig = semi + 1;
    snprintf(pv->size, sizeof(pv->size), "%llu", (unsigned long long)env->content_len);
    const char *vals[] = { env->sender ? env->sender : "", r->addr, orig, at ? at + 1 : "",
                           pv->local_part, env->queue_id, pv->size, at ? at + 1 : "",
                           t->user ? t->user : "" };
    for (int i = 0; config_pipe_vars[i] && i < 16; i++)
        pv->v[i] = i < (int)(sizeof(vals) / sizeof(vals[0])) ? vals[i] : "";
}

void pipe_vars_free(struct pipe_vars *pv)
{
    free(pv->local_part);
    pv->local_part = NULL;
}

static const char *var_value(const struct pipe_vars *pv, const char *name, size_t n)
{
    for (int i = 0; config_pipe_vars[i]; i++)
        if (strlen(config_pipe_vars[i]) == n && memcmp(config_pipe_vars[i], name, n) == 0)
            return pv->v[i];
    return NULL;   /* config_transport.c refused it already */
}

/* One element; *from_value set when its first byte came from a value. */
static void expand(buf_t *b, const char *tmpl, const struct pipe_vars *pv, int *from_value)
{
    *from_value = 0;
    for (const char *p = tmpl; *p;) {
        const char *open = strstr(p, "${");
        const char *close = open ? strchr(open, '}') : NULL;
        if (close == NULL) {
            buf_append_str(b, p);
            break;
        }
        buf_append(b, p, (size_t)(open - p));
        const char *v = var_value(pv, open + 2, (size_t)(close - open - 2));
        if (b->len == 0 && v && *v)
            *from_value = 1;
        buf_append_str(b, v ? v : "");
        p = close + 1;
    }
}

char **pipe_argv(const struct transport_conf *t, const struct pipe_vars *pv, int *argc_r,
                 char *why, size_t whylen)
{
    int n = t->command.n;
    if (n < 1 || n > PIPE_ARGS_MAX) {
        snprintf(why, whylen, "command of transport \"%s\" has %d elements", t->name, n);
        return NULL;
    }
    char **argv = xcalloc((size_t)n + 1, sizeof(char *));
    int dashdash = 0;
    size_t total = 0;
    buf_t b;
    buf_init(&b, 128);
    for (int i = 0; i < n; i++) {
        int from_value;
        buf_reset(&b);
        expand(&b, t->command.v[i], pv, &from_value);
        total += b.len + 1;
        if (i > 0 && from_value && b.data[0] == '-' && !dashdash) {
            snprintf(why, whylen, "argument %d would begin with '-' from the address: not "
                     "passed to the command (put \"--\" before it in transport \"%s\")", i,
                     t->name);
            goto fail;
        }
        if (total > PIPE_ARGBYTES_MAX) {
            snprintf(why, whylen, "arguments longer than %d octets", PIPE_ARGBYTES_MAX);
            goto fail;
        }
        dashdash |= i > 0 && strcmp(b.data, "--") == 0;
        argv[i] = xstrdup(b.data);
    }
    buf_free(&b);
    *argc_r = n;
    return argv;
fail:
    buf_free(&b);
    pipe_argv_free(argv);
    return NULL;
}

void pipe_argv_free(char **argv)
{
    for (int i = 0; argv && argv[i]; i++)
        free(argv[i]);
    free(argv);
}

/* ---- stdin ------------------------------------------------------------------ */

static int input_file(void)
{
    int fd = open(SPOOL_TMP, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
    fd = memfd_create("postern-pipe", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    return fd;
}

int pipe_input(int qfd, const struct qf_env *env, const struct qf_rcpt *r)
{
    int fd = input_file();
    if (fd < 0)
        return -1;
    buf_t b;
    buf_init(&b, 65536 + 1024);
    buf_printf(&b, "Return-Path: <%s>\nDelivered-To: %s\n", env->sender ? env->sender : "",
               r->addr);
    int rc = 0;
    for (uint64_t off = 0; rc == 0 && off < env->content_len;) {
        size_t want = env->content_len - off < 65536 ? (size_t)(env->content_len - off) : 65536;
        size_t at = b.len;
        buf_reserve(&b, want);
        if (qf_pread_all(qfd, b.data + at, want, env->content_off + (off_t)off) < 0) {
            rc = -1;
            break;
        }
        b.len = at + want;
        off += want;
        if (fdio_write_all(fd, b.data, b.len) < 0)
            rc = -1;
        buf_reset(&b);
    }
    if (rc == 0 && b.len > 0 && fdio_write_all(fd, b.data, b.len) < 0)
        rc = -1;
    buf_free(&b);
    /* a memfd is sealed: the command gets a copy it cannot change for later ones */
    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
    if (rc < 0 || lseek(fd, 0, SEEK_SET) != 0) {
        int e = errno;
        close(fd);
        errno = e ? e : EIO;
        return -1;
    }
    return fd;
}

/* ---- outcome ------------------------------------------------------------------- */

static const struct {
    int code;
    const char *dsn;               /* 4.x.x defers, 5.x.x bounces */
    const char *text;
} sysexits[] = {
    { EX_USAGE, "5.3.0", "command line usage error" },
    { EX_DATAERR, "5.6.0", "data format error" },
    { EX_NOINPUT, "5.3.0", "cannot open input" },
    { EX_NOUSER, "5.1.1", "user unknown" },
    { EX_NOHOST, "5.1.2", "host name unknown" },
    { EX_UNAVAILABLE, "5.3.0", "service unavailable" },
    { EX_SOFTWARE, "5.3.0", "internal software error" },
    { EX_OSERR, "4.3.0", "system resource problem" },
    { EX_OSFILE, "5.3.0", "critical OS file missing" },
    { EX_CANTCREAT, "5.2.0", "cannot create output file" },
    { EX_IOERR, "4.3.0", "input/output error" },
    { EX_TEMPFAIL, "4.3.0", "temporary failure" },
    { EX_PROTOCOL, "5.5.0", "remote error in protocol" },
    { EX_NOPERM, "5.7.0", "permission denied" },
    { EX_CONFIG, "5.3.5", "local configuration error" },
};

void pipe_outcome(const struct transport_conf *t, const struct pipe_result *res,
                  enum dstatus *st, char *dsn, size_t dsnlen, char *reason, size_t rlen)
{
    const char *cmd = t->command.n ? t->command.v[0] : "?";
    const char *out = res->output;
    const char *sep = out[0] ? ": " : "";
    static const char *const ends[] = { "exited", "signaled", "timeout", "nostart" };
    metric_add(MET_PIPE_COMMANDS, 1, t->name,
               res->end == PE_EXITED && res->code == 0 ? "ok" :
               (unsigned)res->end < 4 ? ends[res->end] : "?");
    *st = DS_DEFERRED;
    str_copy(dsn, dsnlen, "4.3.0");
    switch (res->end) {
    case PE_TIMEOUT:
        snprintf(reason, rlen, "command %s timed out%s%s", cmd, sep, out);
        return;
    case PE_SIGNALED:
        snprintf(reason, rlen, "command %s killed by signal %d (%s)%s%s", cmd, res->code,
                 strsignal(res->code), sep, out);
        return;
    case PE_NOSTART:
        snprintf(reason, rlen, "command %s cannot be started: %s", cmd, strerror(res->code));
        return;
    case PE_EXITED:
        break;
    }
    if (res->code == 0) {
        *st = DS_DELIVERED;
        str_copy(dsn, dsnlen, "2.0.0");
        snprintf(reason, rlen, "delivered via %s%s%s", t->name, sep, out);
        return;
    }
    const char *d = "5.3.0", *what = "unknown exit status";
    for (size_t i = 0; i < sizeof(sysexits) / sizeof(sysexits[0]); i++)
        if (sysexits[i].code == res->code) {
            d = sysexits[i].dsn;
            what = sysexits[i].text;
        }
    *st = d[0] == '4' ? DS_DEFERRED : DS_BOUNCED;
    str_copy(dsn, dsnlen, d);
    snprintf(reason, rlen, "command %s exited with status %d (%s)%s%s", cmd, res->code, what,
             sep, out);
}
