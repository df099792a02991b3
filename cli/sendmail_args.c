/*
 * sendmail_args.c - sendmail's command line and header section, as pure
 * functions (no I/O; t/unit/test_sendmail.c compiles this file in).
 *
 * Options follow sendmail/Postfix: flags may be bundled (-ti), an option's
 * value may be attached (-fbob) or the next word (-f bob), and options
 * programs pass out of habit but that mean nothing here (-oX, -e, -m, -n,
 * -U, -G, -h N, -L label, -O opt=val, -V envid, -X file...) are accepted
 * and ignored. Anything else is EX_USAGE. Options end at "--" or at the
 * first word that is not one; the rest are recipients.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sendmail.h"
#include "mail/addr.h"
#include "mail/qfile.h"

static int usage_err(char *err, size_t errlen, const char *what, const char *arg)
{
    snprintf(err, errlen, "%s%s", what, arg ? arg : "");
    return EX_USAGE;
}

/* -N never | success,delay,failure */
static int parse_notify(const char *v, uint32_t *out)
{
    uint32_t bits = 0;
    char item[16];
    while (*v) {
        size_t n = strcspn(v, ",");
        if (n == 0 || n >= sizeof(item))
            return -1;
        memcpy(item, v, n);
        item[n] = '\0';
        if (strcasecmp(item, "never") == 0)
            bits |= NOTIFY_NEVER;
        else if (strcasecmp(item, "success") == 0)
            bits |= NOTIFY_SUCCESS;
        else if (strcasecmp(item, "delay") == 0)
            bits |= NOTIFY_DELAY;
        else if (strcasecmp(item, "failure") == 0)
            bits |= NOTIFY_FAILURE;
        else
            return -1;
        v += n + (v[n] == ',');
    }
    if (bits == 0 || ((bits & NOTIFY_NEVER) && bits != NOTIFY_NEVER))
        return -1;
    *out = bits;
    return 0;
}

/* An option that takes a value: apply it. 0 or EX_USAGE. */
static int opt_value(struct sm_opts *o, char c, const char *v, char *err, size_t errlen)
{
    switch (c) {
    case 'f': case 'r': o->from = v; return 0;
    case 'F': o->fullname = v; return 0;
    case 'C': o->config = v; return 0;
    case 'N':
        return parse_notify(v, &o->notify) == 0 ? 0 :
               usage_err(err, errlen, "bad -N value (never, or success,delay,failure): ", v);
    case 'R':
        if (strcasecmp(v, "full") == 0)
            o->ret = 1;
        else if (strcasecmp(v, "hdrs") == 0)
            o->ret = 2;
        else
            return usage_err(err, errlen, "bad -R value (full or hdrs): ", v);
        return 0;
    case 'B':
        if (strcasecmp(v, "8BITMIME") == 0)
            o->body_8bit = 1;
        else if (strcasecmp(v, "7BIT") == 0)
            o->body_8bit = 0;
        else
            return usage_err(err, errlen, "bad -B value (7BIT or 8BITMIME): ", v);
        return 0;
    case 'o':
        if (strcmp(v, "i") == 0)
            o->dots_ok = 1;
        return 0;       /* other -o options: sendmail.cf settings, ignored */
    default:
        return 0;       /* -e -h -L -O -p -V -X: accepted, ignored */
    }
}

/* -bX: the mode letter. */
static int opt_mode(struct sm_opts *o, char m, char *err, size_t errlen)
{
    switch (m) {
    case 'm': o->mode = SM_DELIVER; return 0;
    case 's': o->mode = SM_SMTP; return 0;
    case 'p': o->mode = SM_QUEUE_LIST; return 0;
    case 'i': o->mode = SM_ALIASES; return 0;
    case 'v': o->mode = SM_VERIFY; return 0;
    default: {
        char s[2] = { m, '\0' };
        return usage_err(err, errlen, m ? "unsupported mode -b" : "-b needs a mode letter", s);
    }
    }
}

/* One word of options (without its '-'); *consumed_next = it used argv[i+1]. */
static int opt_word(struct sm_opts *o, const char *w, const char *next, int *consumed_next,
                    char *err, size_t errlen)
{
    static const char with_value[] = "fFrCNRBoehLOpVX";
    for (const char *p = w; *p; p++) {
        char c = *p;
        if (c == 'b')
            return opt_mode(o, p[1], err, errlen);
        if (c == 'q') {
            o->mode = SM_FLUSH;     /* -q, -q1h, -qR...: run the queue once now */
            return 0;
        }
        if (c == 'd' || c == 'A')
            return 0;               /* -d0.1 (debug), -Ac/-Am: ignored with their value */
        if (c && strchr(with_value, c)) {
            const char *v = p[1] ? p + 1 : next;
            if (v == NULL) {
                char s[2] = { c, '\0' };
                return usage_err(err, errlen, "a value is missing after -", s);
            }
            if (!p[1])
                *consumed_next = 1;
            return opt_value(o, c, v, err, errlen);
        }
        switch (c) {
        case 't': o->extract = 1; break;
        case 'i': o->dots_ok = 1; break;
        case 'v': o->verbose = 1; break;
        case 'I': o->mode = SM_ALIASES; break;
        case 'm': case 'n': case 'G': case 'U': case 'c': case 'x': case 's':
            break;                  /* harmless sendmail flags */
        default: {
            char s[2] = { c, '\0' };
            return usage_err(err, errlen, "unknown option -", s);
        }
        }
    }
    return 0;
}

int sm_parse_args(int argc, char **argv, struct sm_opts *o, char *err, size_t errlen)
{
    memset(o, 0, sizeof(*o));
    const char *prog = argc > 0 ? strrchr(argv[0], '/') : NULL;
    prog = prog ? prog + 1 : argc > 0 ? argv[0] : "sendmail";
    if (strcmp(prog, "mailq") == 0)
        o->mode = SM_QUEUE_LIST;
    else if (strcmp(prog, "newaliases") == 0)
        o->mode = SM_ALIASES;
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (a[0] != '-' || a[1] == '\0')
            break;
        int used = 0;
        int rc = opt_word(o, a + 1, i + 1 < argc ? argv[i + 1] : NULL, &used, err, errlen);
        if (rc != 0)
            return rc;
        i += used;
    }
    o->rcpts = argv + i;
    o->nrcpts = argc - i;
    return 0;
}

void sm_list_add(struct sm_list *l, const char *s, size_t n)
{
    l->v = xrealloc(l->v, sizeof(char *) * (size_t)(l->n + 1));
    l->v[l->n++] = xstrndup(s, n);
}

void sm_list_free(struct sm_list *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* Copy a quoted string at s[i] == '"' into b; returns the index after it. */
static size_t copy_quoted(const char *s, size_t n, size_t i, buf_t *b)
{
    buf_append_char(b, '"');
    for (i++; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n) {
            buf_append(b, s + i, 2);
            i++;
        } else if (s[i] == '"') {
            break;
        } else if (s[i] != '\n' && s[i] != '\r') {
            buf_append_char(b, s[i]);
        }
    }
    buf_append_char(b, '"');
    return i < n ? i + 1 : n;
}

/* One list element ends: its address (the angle one if any). */
static void flush_elem(buf_t *elem, buf_t *angle, int *have_angle, struct sm_list *out)
{
    const char *a = *have_angle ? angle->data : elem->data;
    size_t n = *have_angle ? angle->len : elem->len;
    if (*have_angle && n > 0 && a[0] == '@') {     /* source route @a,@b:addr */
        const char *colon = memchr(a, ':', n);
        n = colon ? n - (size_t)(colon + 1 - a) : 0;
        a = colon ? colon + 1 : a;
    }
    if (n > 0)
        sm_list_add(out, a, n);
    buf_reset(elem);
    buf_reset(angle);
    *have_angle = 0;
}

void sm_addr_list(const char *s, size_t n, struct sm_list *out)
{
    buf_t elem, angle;
    buf_init(&elem, 64);
    buf_init(&angle, 64);
    int in_angle = 0, have_angle = 0;
    size_t i = 0;
    while (i < n) {
        char c = s[i];
        if (c == '(') {
            i = addr_skip_qc(s, n, i);
        } else if (c == '"') {
            i = copy_quoted(s, n, i, in_angle ? &angle : &elem);
        } else if (in_angle) {
            if (c == '>')
                in_angle = 0, have_angle = 1;
            else if (!isspace((unsigned char)c))
                buf_append_char(&angle, c);
            i++;
        } else if (c == '<') {
            buf_reset(&angle);
            in_angle = 1;
            i++;
        } else if (c == ':') {          /* group "name:" - the name is no address */
            buf_reset(&elem);
            i++;
        } else if (c == ',' || c == ';') {
            flush_elem(&elem, &angle, &have_angle, out);
            i++;
        } else {
            if (!isspace((unsigned char)c))
                buf_append_char(&elem, c);
            i++;
        }
    }
    flush_elem(&elem, &angle, &have_angle, out);
    buf_free(&elem);
    buf_free(&angle);
}

static int name_is(const char *f, size_t nlen, const char *name)
{
    return strlen(name) == nlen && strncasecmp(f, name, nlen) == 0;
}

void sm_headers(const char *hdr, size_t len, int extract, const char *from_line, buf_t *out,
                struct sm_list *rcpts)
{
    struct sm_list plain = { 0 }, resent = { 0 };
    int has_from = 0;
    size_t i = 0;
    while (i < len) {
        /* one field: its first line and the continuation lines after it */
        size_t end = i;
        do {
            const char *nl = memchr(hdr + end, '\n', len - end);
            end = nl ? (size_t)(nl - hdr) + 1 : len;
        } while (end < len && (hdr[end] == ' ' || hdr[end] == '\t'));
        const char *f = hdr + i;
        const char *colon = memchr(f, ':', end - i);
        size_t nlen = colon ? (size_t)(colon - f) : 0;
        while (nlen > 0 && (f[nlen - 1] == ' ' || f[nlen - 1] == '\t'))
            nlen--;
        const char *v = colon ? colon + 1 : f;
        size_t vlen = colon ? (size_t)(hdr + end - v) : 0;
        int bcc = name_is(f, nlen, "bcc") || name_is(f, nlen, "resent-bcc");
        if (name_is(f, nlen, "to") || name_is(f, nlen, "cc") || name_is(f, nlen, "bcc"))
            sm_addr_list(v, vlen, &plain);
        else if (strncasecmp(f, "resent-", nlen < 7 ? nlen : 7) == 0 && nlen > 7 &&
                 (name_is(f + 7, nlen - 7, "to") || name_is(f + 7, nlen - 7, "cc") ||
                  name_is(f + 7, nlen - 7, "bcc")))
            sm_addr_list(v, vlen, &resent);
        has_from |= name_is(f, nlen, "from");
        if (!bcc)
            buf_append(out, f, end - i);
        i = end;
    }
    if (out->len > 0 && out->data[out->len - 1] != '\n')
        buf_append_char(out, '\n');
    if (!has_from && from_line) {
        buf_append_str(out, from_line);
        buf_append_char(out, '\n');
    }
    struct sm_list *use = resent.n > 0 ? &resent : &plain;
    for (int k = 0; extract && k < use->n; k++)
        sm_list_add(rcpts, use->v[k], strlen(use->v[k]));
    sm_list_free(&plain);
    sm_list_free(&resent);
}

char *sm_qualify(const char *a, const char *domain)
{
    size_t n = strlen(a);
    while (n > 0 && isspace((unsigned char)*a))
        a++, n--;
    while (n > 0 && isspace((unsigned char)a[n - 1]))
        n--;
    if (n >= 2 && a[0] == '<' && a[n - 1] == '>')
        a++, n -= 2;
    if (n == 0 || n > 512)
        return NULL;
    buf_t b;
    buf_init(&b, n + 64);
    buf_append(&b, a, n);
    if (*addr_domain(b.data) == '\0') {
        if (memchr(b.data, '@', b.len) != NULL) {   /* "bob@": no domain after all */
            buf_free(&b);
            return NULL;
        }
        buf_printf(&b, "@%s", domain);
    }
    if (addr_check_mailbox(b.data, b.len, ADDR_F_UTF8) != ADDR_OK) {
        buf_free(&b);
        return NULL;
    }
    char *r = buf_steal(&b);
    buf_free(&b);               /* buf_steal leaves b re-initialised */
    return r;
}
