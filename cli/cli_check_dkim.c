/*
 * cli_check_dkim.c - `postern check` for the domains' DKIM keys: each key
 * file (every dkim block) is a regular file owned by root or the postern
 * user, not readable or writable by others, and parses as an RSA (>= 1024
 * bits) or Ed25519 private key; when the configured resolver answers for
 * SELECTOR._domainkey.DOMAIN, its p= must be the key's public half (no
 * record at all is a problem too: receivers could not verify). A resolver
 * that does not answer (offline machine) is reported as a note, not a
 * problem. cleanup reads the keys while still root, so they are checked as
 * the invoking user.
 */
#include <errno.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "dkim/pdk.h"
#include "dns/dns.h"

static int problem(const char *path, const struct domain_conf *d, const char *sel,
                   const char *fmt, ...) PRINTF_LIKE(4, 5);

static int problem(const char *path, const struct domain_conf *d, const char *sel,
                   const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: domain \"%s\".dkim (selector \"%s\"): ", path, d->name, sel);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

static int file_ok(const char *path, const struct config *cfg, const struct domain_conf *d,
                   const struct dkim_key_conf *kc)
{
    struct stat st;
    if (stat(kc->key, &st) < 0)
        return problem(path, d, kc->selector, "%s: %s", kc->key, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return problem(path, d, kc->selector, "%s is not a regular file", kc->key);
    struct passwd *pw = getpwnam(cfg->user);
    if (st.st_uid != 0 && (pw == NULL || st.st_uid != pw->pw_uid))
        return problem(path, d, kc->selector, "%s is owned by uid %ld, not root or %s",
                       kc->key, (long)st.st_uid, cfg->user);
    if (st.st_mode & 027)
        return problem(path, d, kc->selector, "%s has mode %04o: a private key must be "
                       "0600 (0640 at most)", kc->key, (unsigned)(st.st_mode & 07777));
    return 0;
}

/* The published record against the key: 0 ok, 1 problem. */
static int dns_ok(const char *path, struct dns_ctx *ctx, const struct domain_conf *d,
                  const struct dkim_key_conf *kc, const struct pdk_key *k)
{
    char name[300], txt[PDK_TXT_MAX], why[96];
    str_format(name, sizeof(name), "%s._domainkey.%s", kc->selector, d->name);
    pdk_cache_flush();
    enum pdk_lookup_status st = pdk_lookup_dns(ctx, name, txt, sizeof(txt), why, sizeof(why));
    if (st == PDK_KEY_TEMPFAIL) {
        fprintf(stderr, "%s: note: %s: DNS did not answer (%s): record not compared\n", path,
                name, why);
        return 0;
    }
    if (st == PDK_KEY_NOTFOUND)
        return problem(path, d, kc->selector, "no key record at %s (publish the TXT record "
                       "`postern dkim keygen` printed)", name);
    struct pdk_tag tags[PDK_TAGS_MAX];
    int n = pdk_tags_parse(txt, strlen(txt), tags, PDK_TAGS_MAX);
    char p[PDK_TXT_MAX];
    if (n < 0 || pdk_tags_get(tags, n, "p", p, sizeof(p)) < 0)
        return problem(path, d, kc->selector, "the record at %s is not a DKIM key record",
                       name);
    if (strcmp(p, k->pub) != 0)
        return problem(path, d, kc->selector, "the record at %s publishes another key than %s",
                       name, kc->key);
    return 0;
}

int cli_check_dkim(const char *path, const struct config *cfg)
{
    int problems = 0;
    struct dns_ctx *ctx = NULL;
    int tried = 0;
    for (int i = 0; i < cfg->ndomains; i++) {
        const struct domain_conf *d = &cfg->domains[i];
        for (int j = 0; j < d->ndkim; j++) {
            const struct dkim_key_conf *kc = &d->dkim[j];
            if (file_ok(path, cfg, d, kc)) {
                problems++;
                continue;
            }
            struct pdk_key k;
            char err[256];
            if (pdk_key_load(&k, kc->key, d->name, kc->selector, err, sizeof(err)) < 0) {
                problems += problem(path, d, kc->selector, "%s", err);
                continue;
            }
            if (ctx == NULL && !tried) {
                tried = 1;          /* a failure says "postern: dns: ..." once */
                ctx = cli_dns_ctx(cfg);
            }
            if (ctx)
                problems += dns_ok(path, ctx, d, kc, &k);
            pdk_key_free(&k);
        }
    }
    dns_ctx_free(ctx);
    return problems;
}
