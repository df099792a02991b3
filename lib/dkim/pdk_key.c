/*
 * pdk_key.c - DKIM keys: the public half from DNS (through lib/dns, with one
 * process-wide cache) and the private half from a file.
 *
 * The cache: PDK_CACHE_SIZE entries keyed by the lookup name, answers kept
 * for their TTL (at most PDK_CACHE_TTL), "no key" and temporary failures
 * PDK_CACHE_NEG seconds so a burst from one broken domain costs one lookup.
 * One mutex; lookups run outside it (two threads may look up the same name
 * at once: both answers are fine). Used from cleanup's worker threads.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/bio.h>
#include <openssl/x509.h>

#include "dkim/pdk.h"
#include "dns/dns.h"
#include "util/clock.h"
#include "util/fdio.h"

#define KEY_FILE_MAX (16 * 1024)

struct centry {
    char name[DNS_NAME_MAX + 1];
    enum pdk_lookup_status st;
    char *text;
    int64_t expires;            /* clock_now_ms; 0 = free slot */
};

static pthread_mutex_t cmu = PTHREAD_MUTEX_INITIALIZER;
static struct centry cache[PDK_CACHE_SIZE];

static int cache_get(const char *name, char *out, size_t cap, enum pdk_lookup_status *st)
{
    int64_t now = clock_now_ms();
    int hit = 0;
    pthread_mutex_lock(&cmu);
    for (int i = 0; i < PDK_CACHE_SIZE; i++) {
        struct centry *e = &cache[i];
        if (e->expires > now && strcmp(e->name, name) == 0) {
            *st = e->st;
            str_copy(out, cap, e->text ? e->text : "");
            hit = 1;
            break;
        }
    }
    pthread_mutex_unlock(&cmu);
    return hit;
}

static void cache_put(const char *name, enum pdk_lookup_status st, const char *text,
                      uint32_t ttl)
{
    int64_t now = clock_now_ms();
    uint32_t keep = st == PDK_KEY_FOUND ? (ttl < PDK_CACHE_TTL ? ttl : PDK_CACHE_TTL)
                                        : PDK_CACHE_NEG;
    if (keep == 0)
        return;
    pthread_mutex_lock(&cmu);
    struct centry *victim = &cache[0];
    for (int i = 0; i < PDK_CACHE_SIZE; i++) {
        struct centry *e = &cache[i];
        if (e->expires <= now || strcmp(e->name, name) == 0) {
            victim = e;
            break;
        }
        if (e->expires < victim->expires)
            victim = e;             /* the one that expires first goes */
    }
    free(victim->text);
    str_copy(victim->name, sizeof(victim->name), name);
    victim->st = st;
    victim->text = text ? xstrdup(text) : NULL;
    victim->expires = now + (int64_t)keep * 1000;
    pthread_mutex_unlock(&cmu);
}

void pdk_cache_flush(void)
{
    pthread_mutex_lock(&cmu);
    for (int i = 0; i < PDK_CACHE_SIZE; i++) {
        free(cache[i].text);
        cache[i].text = NULL;
        cache[i].expires = 0;
    }
    pthread_mutex_unlock(&cmu);
}

/* The record among the TXT answers: the first that looks like a key. */
static const struct dns_txt *pick_key(const struct dns_answer *a)
{
    for (int i = 0; i < a->n; i++) {
        const struct dns_txt *t = &a->rr[i].u.txt;
        if (a->rr[i].type != DNS_T_TXT || memchr(t->text, '\0', t->len))
            continue;
        if (strstr(t->text, "p=") != NULL)
            return t;
    }
    return NULL;
}

enum pdk_lookup_status pdk_lookup_dns(void *arg, const char *name, char *out, size_t cap,
                                      char *why, size_t whylen)
{
    struct dns_ctx *ctx = arg;
    enum pdk_lookup_status st;
    if (cache_get(name, out, cap, &st)) {
        str_copy(why, whylen, st == PDK_KEY_TEMPFAIL ? "key lookup failed (cached)" : "");
        return st;
    }
    if (ctx == NULL) {
        str_copy(why, whylen, "no resolver");
        return PDK_KEY_TEMPFAIL;
    }
    struct dns_answer *a = dns_resolve(ctx, name, DNS_T_TXT);
    uint32_t ttl = PDK_CACHE_TTL;
    const struct dns_txt *t = NULL;
    if (a->status == DNS_FOUND && (t = pick_key(a)) != NULL) {
        st = PDK_KEY_FOUND;
        for (int i = 0; i < a->n; i++)
            if (a->rr[i].ttl < ttl)
                ttl = a->rr[i].ttl;
        str_copy(out, cap, t->text);
        str_copy(why, whylen, "");
    } else if (a->status == DNS_TEMPFAIL) {
        st = PDK_KEY_TEMPFAIL;
        str_format(why, whylen, "key lookup failed: %s", a->why[0] ? a->why : "DNS error");
    } else {
        st = PDK_KEY_NOTFOUND;
        str_copy(why, whylen, "no key record");
    }
    dns_answer_free(a);
    cache_put(name, st, st == PDK_KEY_FOUND ? out : NULL, ttl);
    return st;
}

/* ---- private keys --------------------------------------------------------- */

static int b64(const unsigned char *p, int n, char *out, size_t cap)
{
    if ((size_t)(4 * ((n + 2) / 3)) + 1 > cap)
        return -1;
    EVP_EncodeBlock((unsigned char *)out, p, n);
    return 0;
}

/* The p= value: RSA as SubjectPublicKeyInfo DER (RFC 6376 3.6.1), Ed25519
 * as the raw 32 octets (RFC 8463 4.2). */
static int public_of(EVP_PKEY *pk, struct pdk_key *k)
{
    if (k->alg == PDK_ED25519_SHA256) {
        unsigned char raw[64];
        size_t rl = sizeof(raw);
        if (EVP_PKEY_get_raw_public_key(pk, raw, &rl) != 1)
            return -1;
        return b64(raw, (int)rl, k->pub, sizeof(k->pub));
    }
    unsigned char *der = NULL;
    int dl = i2d_PUBKEY(pk, &der);
    if (dl <= 0)
        return -1;
    int r = b64(der, dl, k->pub, sizeof(k->pub));
    OPENSSL_free(der);
    return r;
}

int pdk_key_load(struct pdk_key *k, const char *path, const char *domain,
                 const char *selector, char *err, size_t errlen)
{
    memset(k, 0, sizeof(*k));
    str_copy(k->domain, sizeof(k->domain), domain);
    str_copy(k->selector, sizeof(k->selector), selector);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        str_format(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    buf_t kb;
    buf_init(&kb, 4096);
    int rr = fdio_read_file(fd, &kb, KEY_FILE_MAX);
    int e = errno;
    close(fd);
    if (rr < 0) {
        str_format(err, errlen, "%s: %s", path, e == EFBIG ? "too large for a key" : strerror(e));
        buf_free(&kb);
        return -1;
    }
    size_t n = kb.len;
    char *text = buf_steal(&kb);
    buf_free(&kb);                  /* buf_steal leaves an empty buffer */
    BIO *bio = BIO_new_mem_buf(text, (int)n);
    EVP_PKEY *pk = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    int id = pk ? EVP_PKEY_base_id(pk) : 0;
    if (id == EVP_PKEY_RSA && EVP_PKEY_bits(pk) >= 1024)
        k->alg = PDK_RSA_SHA256;
    else if (id == EVP_PKEY_ED25519)
        k->alg = PDK_ED25519_SHA256;
    if (k->alg == 0 || public_of(pk, k) < 0) {
        str_format(err, errlen, "%s: %s", path,
                   pk == NULL ? "not a PEM private key"
                   : id == EVP_PKEY_RSA ? "RSA key shorter than 1024 bits"
                   : "neither an RSA nor an Ed25519 key");
        EVP_PKEY_free(pk);
        free(text);
        return -1;
    }
    EVP_PKEY_free(pk);
    k->pem = text;
    k->pemlen = (size_t)n;
    return 0;
}

void pdk_key_free(struct pdk_key *k)
{
    if (k->pem) {
        OPENSSL_cleanse(k->pem, k->pemlen);
        free(k->pem);
    }
    k->pem = NULL;
}

void pdk_key_txt(const struct pdk_key *k, buf_t *out)
{
    buf_printf(out, "v=DKIM1; k=%s; p=%s", k->alg == PDK_ED25519_SHA256 ? "ed25519" : "rsa",
               k->pub);
}
