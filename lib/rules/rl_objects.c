/*
 * rl_objects.c - the object kinds of the rule language: ip4/ip6/ip, cidr,
 * fqdn, address, string, regex (PCRE2, compiled once at rule compile time,
 * JIT when available, matched with a per-evaluation match context that
 * bounds backtracking), groups, and file:TYPE objects (one value per line,
 * `#` comments, reloaded when the file's mtime/size/inode change, checked at
 * most once a second; a reload that fails keeps the previous contents).
 * File objects are the only mutable part of a program: each has a mutex.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <arpa/inet.h>
#include <errno.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include "mail/addr.h"
#include "util/log.h"
#include "rules/rl_int.h"

#define RL_MATCH_LIMIT 100000       /* PCRE2 backtracking bound per match */
#define RL_FILE_MAX_LINES 1000000

static const struct { const char *name; enum rl_tbase base; int family; } kinds[] = {
    { "ip4", T_IP, 4 }, { "ip6", T_IP, 6 }, { "ip", T_IP, 0 }, { "cidr", T_CIDR, 0 },
    { "fqdn", T_FQDN, 0 }, { "address", T_ADDR, 0 }, { "string", T_STRING, 0 },
    { "regex", T_REGEX, 0 },
};
const char *const rl_kind_names[] = { "ip4", "ip6", "ip", "cidr", "fqdn", "address", "string",
                                      "regex" };
const int rl_nkinds = 8;

int rl_kind_find(const char *kind, size_t n, enum rl_tbase *base_r, int *family_r)
{
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strlen(kinds[i].name) == n && memcmp(kinds[i].name, kind, n) == 0) {
            *base_r = kinds[i].base;
            *family_r = kinds[i].family;
            return (int)i;
        }
    return -1;
}

int rl_file_kind_ok(enum rl_tbase kind)
{
    return kind == T_IP || kind == T_CIDR || kind == T_FQDN || kind == T_ADDR ||
           kind == T_STRING || kind == T_REGEX;
}

/* ---- scalars --------------------------------------------------------------------------------- */
static const unsigned char v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

int rl_ip_parse(const char *s, size_t n, unsigned char ip[16])
{
    char tmp[64];
    if (n == 0 || n >= sizeof(tmp))
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    char *p = tmp;
    if (strncasecmp(p, "IPv6:", 5) == 0)
        p += 5;
    if (*p == '[') {
        p++;
        char *rb = strchr(p, ']');
        if (rb == NULL || rb[1] != '\0')
            return -1;
        *rb = '\0';
    }
    if (inet_pton(AF_INET, p, ip + 12) == 1) {
        memcpy(ip, v4mapped, 12);
        return 0;
    }
    return inet_pton(AF_INET6, p, ip) == 1 ? 0 : -1;
}

int rl_ip_in_cidr(const unsigned char ip[16], const struct cidr *c)
{
    int bits = c->prefix;
    int bytes = bits / 8;
    if (memcmp(ip, c->addr, (size_t)bytes) != 0)
        return 0;
    if (bits % 8 == 0)
        return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - bits % 8));
    return (ip[bytes] & mask) == (c->addr[bytes] & mask);
}

int rl_fqdn_valid(const char *s, size_t n)
{
    if (n && s[n - 1] == '.')
        n--;
    return str_hostname_ok(s, n, 1);
}

struct rl_regex {
    pcre2_code *code;
    char *src;
};

static void regex_free(void *p)
{
    struct rl_regex *re = p;
    pcre2_code_free(re->code);
    free(re->src);
    free(re);
}

static struct rl_regex *regex_new(const char *s, size_t n, char *err, size_t errlen)
{
    int ec;
    PCRE2_SIZE off;
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)s, n, PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &ec,
                                     &off, NULL);
    if (code == NULL) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof(msg));
        snprintf(err, errlen, "invalid regex \"%.*s\": %s at offset %zu", (int)(n > 60 ? 60 : n), s,
                 (const char *)msg, (size_t)off);
        return NULL;
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);   /* best effort */
    struct rl_regex *re = xcalloc(1, sizeof(*re));
    re->code = code;
    re->src = xstrndup(s, n);
    return re;
}

const char *rl_regex_source(const struct rl_regex *re)
{
    return re->src;
}

struct rl_match { pcre2_match_data *md; pcre2_match_context *mc; };

static struct rl_match *match_new(void)
{
    struct rl_match *m = xcalloc(1, sizeof(*m));
    m->md = pcre2_match_data_create(1, NULL);
    m->mc = pcre2_match_context_create(NULL);
    if (m->md == NULL || m->mc == NULL)
        log_fatal("out of memory (pcre2)");
    pcre2_set_match_limit(m->mc, RL_MATCH_LIMIT);
    pcre2_set_depth_limit(m->mc, 10000);
    return m;
}

static void match_free(struct rl_match *m)
{
    pcre2_match_data_free(m->md);
    pcre2_match_context_free(m->mc);
    free(m);
}

void rl_vm_match_data_free(struct rl_vm *vm)
{
    if (vm->match_data)
        match_free(vm->match_data);
    vm->match_data = NULL;
}

int rl_regex_match(struct rl_vm *vm, const struct rl_regex *re, const char *s, size_t n)
{
    struct rl_match *m = vm ? vm->match_data : NULL;
    if (m == NULL) {
        m = match_new();
        if (vm)
            vm->match_data = m;
    }
    int rc = pcre2_match(re->code, (PCRE2_SPTR)s, n, 0, 0, m->md, m->mc);
    if (vm == NULL)
        match_free(m);
    if (rc >= 0)
        return 1;
    if (rc == PCRE2_ERROR_NOMATCH)
        return 0;
    if (vm)
        log_warn("rules: regex \"%s\": match error %d (treated as no match)", re->src, rc);
    return -1;
}

static void cidr_free(void *p) { free(p); }

int rl_object_parse(struct rl_program *p, const char *kind, size_t kn, const char *s, size_t n,
                    struct rl_value *k, char *err, size_t errlen)
{
    enum rl_tbase base;
    int family;
    memset(k, 0, sizeof(*k));
    int i = rl_kind_find(kind, kn, &base, &family);
    if (i < 0)
        return -2;
    k->t = (uint8_t)base;
    const char *kname = kinds[i].name;
    int pn = (int)(n > 80 ? 80 : n);
    if (memchr(s, '\0', n)) {
        snprintf(err, errlen, "invalid %s: contains a NUL byte", kname);
        return -1;
    }
    switch (base) {
    case T_IP:
        if (rl_ip_parse(s, n, k->u.ip) < 0 ||
            (family == 4 && memcmp(k->u.ip, v4mapped, 12) != 0) ||
            (family == 6 && memcmp(k->u.ip, v4mapped, 12) == 0)) {
            snprintf(err, errlen, "invalid %s address \"%.*s\"", kname, pn, s);
            return -1;
        }
        return 0;
    case T_CIDR: {
        char tmp[80];
        struct cidr c;
        if (n >= sizeof(tmp)) {
            snprintf(err, errlen, "invalid cidr \"%.*s\"", pn, s);
            return -1;
        }
        memcpy(tmp, s, n);
        tmp[n] = '\0';
        if (cidr_parse(tmp, &c) < 0) {
            snprintf(err, errlen, "invalid cidr \"%.*s\"", pn, s);
            return -1;
        }
        struct cidr *cp = xmalloc(sizeof(*cp));
        *cp = c;
        if (p)
            rl_program_own(p, cp, cidr_free);
        k->u.p = cp;
        return 0;
    }
    case T_FQDN:
        if (!rl_fqdn_valid(s, n)) {
            snprintf(err, errlen, "invalid fqdn \"%.*s\"", pn, s);
            return -1;
        }
        break;
    case T_ADDR: {
        int e = addr_check_mailbox(s, n, ADDR_F_UTF8);
        if (e != ADDR_OK) {
            snprintf(err, errlen, "invalid address \"%.*s\": %s", pn, s, addr_strerror(e));
            return -1;
        }
        break;
    }
    case T_REGEX: {
        struct rl_regex *re = regex_new(s, n, err, errlen);
        if (re == NULL)
            return -1;
        if (p)
            rl_program_own(p, re, regex_free);
        k->u.p = re;
        return 0;
    }
    default:
        break;
    }
    k->u.s = s;
    k->len = (uint32_t)n;
    return 0;
}

void rl_group_free(void *g)
{
    struct rl_group *gr = g;
    free(gr->v);
    free(gr);
}

/* ---- file:TYPE ---------------------------------------------------------------------------------- */
struct fentries {
    char **str; size_t nstr;            /* fqdn / address / string: sorted, lowercased (not string) */
    struct cidr *cidr; size_t ncidr;    /* ip / cidr */
    struct rl_regex **re; size_t nre;   /* regex */
};

struct rl_fileobj {
    char *path;
    enum rl_tbase elem;
    int family;
    pthread_mutex_t mu;
    struct fentries *cur;
    struct timespec mtime;
    off_t size;
    ino_t ino;
    time_t checked;                     /* monotonic seconds of the last stat */
};

static void fentries_free(struct fentries *e)
{
    if (e == NULL)
        return;
    for (size_t i = 0; i < e->nstr; i++)
        free(e->str[i]);
    for (size_t i = 0; i < e->nre; i++)
        regex_free(e->re[i]);
    free(e->str);
    free(e->cidr);
    free(e->re);
    free(e);
}

struct rl_fileobj *rl_file_new(const char *path, enum rl_tbase elem, int family)
{
    struct rl_fileobj *f = xcalloc(1, sizeof(*f));
    f->path = xstrdup(path);
    f->elem = elem;
    f->family = family;
    pthread_mutex_init(&f->mu, NULL);
    return f;
}

void rl_file_free(void *p)
{
    struct rl_fileobj *f = p;
    fentries_free(f->cur);
    pthread_mutex_destroy(&f->mu);
    free(f->path);
    free(f);
}

const char *rl_file_path(const struct rl_fileobj *f)
{
    return f->path;
}

static int cmpstr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s + 32);
}

static void add_cidr(struct fentries *e, const struct cidr *c)
{
    e->cidr = xrealloc(e->cidr, sizeof(*e->cidr) * (e->ncidr + 1));
    e->cidr[e->ncidr++] = *c;
}

/* A parsed ip value as a /128 entry. */
static void add_host(struct fentries *e, const struct rl_value *v)
{
    struct cidr c;
    memcpy(c.addr, v->u.ip, 16);
    c.prefix = 128;
    add_cidr(e, &c);
}

/* One line (already trimmed) into the entries; -1 with err. */
static int add_line(struct rl_fileobj *f, struct fentries *e, char *line, size_t n, char *err,
                    size_t errlen)
{
    struct rl_value v;
    const char *kind = f->elem == T_IP ? (f->family == 4 ? "ip4" : f->family == 6 ? "ip6" : "ip")
                                       : f->elem == T_CIDR ? "cidr" : f->elem == T_FQDN ? "fqdn"
                                       : f->elem == T_ADDR ? "address" : f->elem == T_REGEX ? "regex"
                                       : "string";
    const char *s = line;
    size_t sn = n;
    /* ".example.com" (fqdn: subdomains) and "@example.com" (address: whole domain) */
    if ((f->elem == T_FQDN && n > 1 && line[0] == '.') ||
        (f->elem == T_ADDR && n > 1 && line[0] == '@')) {
        if (!rl_fqdn_valid(line + 1, n - 1)) {
            snprintf(err, errlen, "invalid fqdn \"%.*s\"", (int)(n > 80 ? 80 : n), line);
            return -1;
        }
    } else if (f->elem == T_CIDR && !memchr(line, '/', n)) {
        if (rl_object_parse(NULL, "ip", 2, s, sn, &v, err, errlen) < 0)
            return -1;
        add_host(e, &v);
        return 0;
    } else if (rl_object_parse(NULL, kind, strlen(kind), s, sn, &v, err, errlen) < 0) {
        return -1;
    }
    switch (f->elem) {
    case T_IP:
        add_host(e, &v);
        return 0;
    case T_CIDR:
        add_cidr(e, (const struct cidr *)v.u.p);
        free((void *)v.u.p);
        return 0;
    case T_REGEX:
        e->re = xrealloc(e->re, sizeof(*e->re) * (e->nre + 1));
        e->re[e->nre++] = (struct rl_regex *)v.u.p;
        return 0;
    default: {
        char *d = xstrndup(line, n);
        if (f->elem != T_STRING)
            lower(d);
        if (f->elem == T_FQDN && n > 1 && d[n - 1] == '.')
            d[n - 1] = '\0';
        e->str = xrealloc(e->str, sizeof(*e->str) * (e->nstr + 1));
        e->str[e->nstr++] = d;
        return 0;
    }
    }
}

static int file_read(struct rl_fileobj *f, struct fentries **out, struct stat *st, char *err,
                     size_t errlen)
{
    FILE *fp = fopen(f->path, "r");
    if (fp == NULL) {
        snprintf(err, errlen, "cannot read file object %s: %s", f->path, strerror(errno));
        return -1;
    }
    if (fstat(fileno(fp), st) < 0) {
        snprintf(err, errlen, "cannot read file object %s: %s", f->path, strerror(errno));
        fclose(fp);
        return -1;
    }
    struct fentries *e = xcalloc(1, sizeof(*e));
    char *line = NULL;
    size_t cap = 0;
    ssize_t r;
    int lineno = 0, rc = 0;
    while ((r = getline(&line, &cap, fp)) >= 0) {
        if (++lineno > RL_FILE_MAX_LINES) {
            snprintf(err, errlen, "%s: more than %d lines", f->path, RL_FILE_MAX_LINES);
            rc = -1;
            break;
        }
        char *h = memchr(line, '#', (size_t)r);
        size_t n = h ? (size_t)(h - line) : (size_t)r;
        size_t s = 0;
        while (s < n && (line[s] == ' ' || line[s] == '\t'))
            s++;
        while (n > s && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' ||
                         line[n - 1] == '\t'))
            n--;
        if (n == s)
            continue;
        char m[200];
        if (add_line(f, e, line + s, n - s, m, sizeof(m)) < 0) {
            snprintf(err, errlen, "%s:%d: %s", f->path, lineno, m);
            rc = -1;
            break;
        }
    }
    free(line);
    fclose(fp);
    if (rc < 0) {
        fentries_free(e);
        return -1;
    }
    if (e->nstr)
        qsort(e->str, e->nstr, sizeof(*e->str), cmpstr);
    *out = e;
    return 0;
}

int rl_file_load(struct rl_fileobj *f, char *err, size_t errlen)
{
    struct fentries *e;
    struct stat st;
    if (file_read(f, &e, &st, err, errlen) < 0)
        return -1;
    pthread_mutex_lock(&f->mu);
    fentries_free(f->cur);
    f->cur = e;
    f->mtime = st.st_mtim;
    f->size = st.st_size;
    f->ino = st.st_ino;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    f->checked = now.tv_sec;
    pthread_mutex_unlock(&f->mu);
    return 0;
}

/* Called with f->mu held: reload when the file changed (checked once a second). */
static void maybe_reload(struct rl_fileobj *f)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (f->cur && now.tv_sec == f->checked)
        return;
    f->checked = now.tv_sec;
    struct stat st;
    if (stat(f->path, &st) < 0)
        return;              /* keep what we have; the next check retries */
    if (f->cur && st.st_mtim.tv_sec == f->mtime.tv_sec && st.st_mtim.tv_nsec == f->mtime.tv_nsec &&
        st.st_size == f->size && st.st_ino == f->ino)
        return;
    struct fentries *e;
    char err[256];
    if (file_read(f, &e, &st, err, sizeof(err)) < 0) {
        log_warn("rules: %s (keeping the previous contents)", err);
        f->mtime = st.st_mtim;   /* do not retry a bad file every second */
        f->size = st.st_size;
        f->ino = st.st_ino;
        return;
    }
    log_info("rules: reloaded %s", f->path);
    fentries_free(f->cur);
    f->cur = e;
    f->mtime = st.st_mtim;
    f->size = st.st_size;
    f->ino = st.st_ino;
}

static int str_lookup(const struct fentries *e, const char *key)
{
    return e->nstr && bsearch(&key, e->str, e->nstr, sizeof(*e->str), cmpstr) != NULL;
}

/* fqdn lookup: exact, or a ".parent" entry for any parent domain. */
static int fqdn_lookup(const struct fentries *e, char *key)
{
    size_t n = strlen(key);
    if (n && key[n - 1] == '.')
        key[--n] = '\0';
    if (str_lookup(e, key))
        return 1;
    for (char *p = key; (p = strchr(p, '.')) != NULL; p++)
        if (str_lookup(e, p))
            return 1;
    return 0;
}

int rl_file_contains(struct rl_vm *vm, struct rl_fileobj *f, const struct rl_value *x)
{
    int found = 0;
    char key[512];
    pthread_mutex_lock(&f->mu);
    maybe_reload(f);
    const struct fentries *e = f->cur;
    if (e == NULL)
        goto out;
    if (x->t == T_IP) {
        for (size_t i = 0; i < e->ncidr && !found; i++)
            found = rl_ip_in_cidr(x->u.ip, &e->cidr[i]);
        goto out;
    }
    if (x->t != T_STRING && x->t != T_ADDR && x->t != T_FQDN)
        goto out;
    if (f->elem == T_REGEX) {
        for (size_t i = 0; i < e->nre && !found; i++)
            found = rl_regex_match(vm, e->re[i], x->u.s, x->len) == 1;
        goto out;
    }
    if (x->len >= sizeof(key) || memchr(x->u.s, '\0', x->len))
        goto out;
    memcpy(key, x->u.s, x->len);
    key[x->len] = '\0';
    if (f->elem == T_STRING) {
        found = str_lookup(e, key);
        goto out;
    }
    lower(key);
    if (f->elem == T_FQDN) {
        char *at = x->t == T_ADDR ? strrchr(key, '@') : NULL;
        found = fqdn_lookup(e, at ? at + 1 : key);
    } else if (f->elem == T_ADDR) {
        found = str_lookup(e, key);
        char *at = strrchr(key, '@');
        if (!found && at)
            found = str_lookup(e, at);
    }
out:
    pthread_mutex_unlock(&f->mu);
    return found;
}
