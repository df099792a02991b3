/*
 * sts_cache.c - the MTA-STS policy in force for a domain (sts.h): the TXT
 * record, the on-disk cache and the fetch, combined as RFC 8461 5.1 says.
 *
 * Cache: one file per domain, cache_dir/DOMAIN (the spool's sts/, owned by
 * the postern user; DOMAIN lower case and checked by sts_domain_ok(), so
 * it is one path component and never starts with a dot). Content:
 *     postern-sts 1\n id ID\n fetched UNIXTIME\n \n BODY
 * where BODY is the policy as fetched; it is parsed again on every read,
 * so a damaged file is simply no cache. Several smtp agents may fetch the
 * same domain at once: each writes its own temporary file (.tmp.PID.N) and
 * renames it into place, so a reader sees a whole file, old or new.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <ctype.h>

#include "sts/sts.h"
#include "dns/dns.h"
#include "util/fdio.h"
#include "util/log.h"

#define CACHE_MAGIC "postern-sts 1\n"
#define CACHE_HEAD_MAX 256

static int cache_path(char *out, size_t size, const char *dir, const char *domain)
{
    if (!sts_domain_ok(domain))
        return -1;
    return str_format(out, size, "%s/%s", dir, domain);
}

/* The header's "id ID\nfetched T\n\n": fills p->id, p->fetched; returns the
 * body's offset, or -1. */
static long parse_head(const char *s, size_t len, struct sts_policy *p)
{
    size_t ml = strlen(CACHE_MAGIC);
    if (len < ml || memcmp(s, CACHE_MAGIC, ml) != 0)
        return -1;
    const char *end = memmem(s, len < CACHE_HEAD_MAX ? len : CACHE_HEAD_MAX, "\n\n", 2);
    if (end == NULL)
        return -1;
    char head[CACHE_HEAD_MAX + 1], id[STS_ID_MAX + 2];
    size_t hl = (size_t)(end - s) + 1;
    memcpy(head, s, hl);
    head[hl] = '\0';
    long long t;
    if (sscanf(head + ml, "id %33[A-Za-z0-9]\nfetched %lld\n", id, &t) != 2 ||
        strlen(id) > STS_ID_MAX || t < 0)
        return -1;
    str_copy(p->id, sizeof(p->id), id);
    p->fetched = (time_t)t;
    return (long)hl + 1;
}

int sts_cache_read(const char *dir, const char *domain, struct sts_policy *p)
{
    char path[600], why[100];
    if (cache_path(path, sizeof(path), dir, domain) < 0)
        return -1;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    buf_t b;
    buf_init(&b, 4096);
    int rc = fdio_read_file(fd, &b, STS_POLICY_MAX + CACHE_HEAD_MAX);
    close(fd);
    struct sts_policy tmp;
    long off = rc == 0 ? parse_head(b.data, b.len, &tmp) : -1;
    if (off < 0 || sts_policy_parse(b.data + off, b.len - (size_t)off, p, why, sizeof(why)) < 0)
        rc = -1;
    if (rc == 0) {
        memcpy(p->id, tmp.id, sizeof(p->id));
        p->fetched = tmp.fetched;
        p->from_cache = 1;
    } else {
        log_warn("MTA-STS cache %s unreadable or damaged: ignored", path);
    }
    buf_free(&b);
    return rc;
}

int sts_cache_write(const char *dir, const char *domain, const struct sts_policy *p,
                    const char *body, size_t len)
{
    static unsigned seq;
    char path[600], tmp[600];
    if (cache_path(path, sizeof(path), dir, domain) < 0 ||
        str_format(tmp, sizeof(tmp), "%s/.tmp.%ld.%u", dir, (long)getpid(), seq++) < 0)
        return -1;
    buf_t b;
    buf_init(&b, len + 128);
    buf_printf(&b, CACHE_MAGIC "id %s\nfetched %lld\n\n", p->id, (long long)p->fetched);
    buf_append(&b, body, len);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    int rc = fd < 0 ? -1 : fdio_write_all(fd, b.data, b.len);
    if (fd >= 0 && close(fd) < 0)
        rc = -1;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -1;
    if (rc < 0) {
        log_warn("MTA-STS cache %s: cannot write: %m", path);
        if (fd >= 0)
            unlink(tmp);
    }
    buf_free(&b);
    return rc;
}

/* The TXT record _mta-sts.DOMAIN: 1 exactly one valid STSv1 record (id
 * set), 0 none or not exactly one (RFC 8461 3.1), -1 temporary failure. */
static int txt_id(struct dns_ctx *dns, const char *domain, char *id, size_t idcap)
{
    char name[300];
    if (dns == NULL || str_format(name, sizeof(name), "_mta-sts.%s", domain) < 0)
        return -1;
    struct dns_answer *a = dns_resolve(dns, name, DNS_T_TXT);
    int rc = a->status == DNS_TEMPFAIL ? -1 : 0, nsts = 0, valid = 0;
    for (int i = 0; a->status == DNS_FOUND && i < a->n; i++) {
        if (a->rr[i].type != DNS_T_TXT)
            continue;
        int r = sts_txt_parse(a->rr[i].u.txt.text, a->rr[i].u.txt.len, id, idcap);
        nsts += r != 0;
        valid += r == 1;
    }
    if (rc == 0 && nsts == 1 && valid == 1)
        rc = 1;
    else if (rc == 0 && nsts > 0)
        log_info("MTA-STS: %s: %d STSv1 records, %d valid: no policy record", name, nsts, valid);
    dns_answer_free(a);
    return rc;
}

/* Failed fetches, remembered per process (one slot per domain hash): a
 * policy server that is down is asked again only after STS_FAIL_TTL
 * seconds or once the TXT id changes, so every retry of a queue full of
 * mail for the domain does not wait for the fetch again. */
#define STS_FAIL_SLOTS 64
#define STS_FAIL_TTL   300
static struct fail_slot {
    char domain[254];
    char id[STS_ID_MAX + 1];
    time_t at;
} fails[STS_FAIL_SLOTS];

static struct fail_slot *fail_slot(const char *domain)
{
    return &fails[str_hash(domain) % STS_FAIL_SLOTS];
}

static int failed_recently(const char *domain, const char *id)
{
    const struct fail_slot *f = fail_slot(domain);
    time_t now = time(NULL);
    return strcmp(f->domain, domain) == 0 && strcmp(f->id, id) == 0 && f->at <= now &&
           now - f->at < STS_FAIL_TTL;
}

static void note_failure(const char *domain, const char *id, int failed)
{
    struct fail_slot *f = fail_slot(domain);
    if (failed) {
        str_copy(f->domain, sizeof(f->domain), domain);
        str_copy(f->id, sizeof(f->id), id);
        f->at = time(NULL);
    } else if (strcmp(f->domain, domain) == 0) {
        f->domain[0] = '\0';
    }
}

/* Fetch, parse and cache a fresh policy published under id. 0 or -1. */
static int refresh(const struct config *cfg, struct dns_ctx *dns, const char *dir,
                   const char *domain, const char *id, struct sts_policy *p)
{
    if (failed_recently(domain, id)) {
        log_debug("MTA-STS: policy fetch for %s failed less than %d s ago: not retried yet",
                  domain, STS_FAIL_TTL);
        return -1;
    }
    struct sts_fetch_opts o = {
        .ca_file = cfg->tls_ca_file, .timeout = STS_FETCH_TIMEOUT, .port = 443,
        .connect_timeout = cfg->smtp_connect_timeout < STS_FETCH_TIMEOUT ?
                           cfg->smtp_connect_timeout : STS_FETCH_TIMEOUT };
    char why[400];
    buf_t body;
    buf_init(&body, 1024);
    int rc = sts_fetch(&o, dns, domain, &body, why, sizeof(why));
    if (rc == 0 && sts_policy_parse(body.data, body.len, p, why, sizeof(why)) < 0) {
        log_info("MTA-STS: policy of %s invalid: %s", domain, why);
        rc = -1;
    } else if (rc < 0) {
        log_info("MTA-STS: policy fetch for %s failed: %s", domain, why);
    }
    if (rc == 0) {
        str_copy(p->id, sizeof(p->id), id);
        p->fetched = time(NULL);
        sts_cache_write(dir, domain, p, body.data, body.len);
        log_info("MTA-STS: policy of %s (id %s): mode %s, max_age %ld, %d mx", domain, id,
                 sts_mode_name(p->mode), p->max_age, p->nmx);
    }
    note_failure(domain, id, rc < 0);
    buf_free(&body);
    return rc;
}

int sts_policy_get(const struct config *cfg, struct dns_ctx *dns, const char *cache_dir,
                   const char *domain, struct sts_policy *p)
{
    char dom[256], id[STS_ID_MAX + 1];
    if (str_copy(dom, sizeof(dom), domain) < 0 || !sts_domain_ok(dom))
        return 0;
    for (char *c = dom; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    struct sts_policy *cached = xmalloc(sizeof(*cached));
    int have = sts_cache_read(cache_dir, dom, cached) == 0 &&
               cached->fetched + cached->max_age > time(NULL);   /* not expired */
    int t = txt_id(dns, dom, id, sizeof(id));
    int rc = 0;
    if (t == 1 && have && strcmp(cached->id, id) == 0) {
        *p = *cached;                 /* unchanged: no fetch (RFC 8461 5.1) */
        rc = 1;
    } else if (t == 1 && refresh(cfg, dns, cache_dir, dom, id, p) == 0) {
        rc = 1;
    } else if (have) {                /* no record, or the fetch failed: keep using it */
        log_info("MTA-STS: using the cached policy of %s (id %s, mode %s)", dom, cached->id,
                 sts_mode_name(cached->mode));
        *p = *cached;
        rc = 1;
    }
    free(cached);
    return rc;
}
