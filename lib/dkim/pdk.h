/*
 * pdk.h - DKIM (RFC 6376, RFC 8463 ed25519) verify and sign on libopendkim,
 * with every key looked up through Postern's own resolver (lib/dns).
 *
 * Users: cleanup (cleanup/cleanup_auth.c: verifies inbound mail and signs
 * submitted mail in its worker threads), `postern dkim verify|sign|keygen`
 * and `postern check` (key files against their DNS record).
 *
 * One job (struct pdk_job) runs over one message in a single pass: at most
 * one verification and PDK_MAX_KEYS signatures, fed the queue file's content
 * (LF line ends; converted to CRLF here). Keys are fetched by libopendkim's
 * key-lookup callback (dkim_set_key_lookup), which calls the job's lookup
 * function: pdk_key.c's one through lib/dns with a shared bounded cache, or
 * a table in the unit tests. libopendkim never resolves anything itself.
 *
 * Bounds: at most PDK_MAX_SIGS signatures of a message are evaluated (the
 * rest are ignored and reported as permerror "too many signatures"), each
 * key lookup is bounded by the resolver's timeout and the whole job by the
 * deadline the caller gives (lookups after it: temperror).
 *
 * Decisions (postern.conf(5) says them too):
 *  - l= shorter than the body: the content past it is unsigned; the
 *    signature's result is "policy" (not pass) and the reason says how many
 *    octets were unsigned, so an appended text never rides on a pass;
 *  - h= must include From (libopendkim's required header): else permerror;
 *  - x= in the past: fail ("signature expired");
 *  - rsa-sha1 (RFC 8301 calls it historic) still verifies, as in dkimpy
 *    and OpenDKIM, with the reason saying so;
 *  - key t=y (testing): the result stands, the reason says "testing";
 *    t=s with an i= subdomain: fail.
 * Known limit: libopendkim 2.11 (Debian 12) does not free an Ed25519
 * signing key's OpenSSL object at dkim_free (about 0.5 KiB per Ed25519
 * signature, measured with mallinfo2; none for RSA or for verification;
 * fixed upstream by OpenDKIM PR #321): cleanup counts its Ed25519
 * signatures and asks master for a replacement after
 * processes.cleanup_max_ed25519 (cleanup_auth.c count_ed25519).
 * Never: let a message make libopendkim resolve, block without a bound, or
 * put a byte from the message into a result field unsanitised.
 */
#ifndef POSTERN_PDK_H
#define POSTERN_PDK_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "util/buf.h"

struct dns_ctx;

#define PDK_MAX_SIGS    10      /* signatures evaluated per message */
#define PDK_MAX_KEYS    8       /* signing keys per domain (rollover) */
#define PDK_TXT_MAX     4096    /* a key record */
#define PDK_REASON_MAX  160

enum pdk_result {
    PDK_NONE = 0, PDK_PASS, PDK_FAIL, PDK_POLICY, PDK_NEUTRAL, PDK_TEMPERROR, PDK_PERMERROR,
};
const char *pdk_result_name(enum pdk_result r);

/* One signature's outcome; every text is printable ASCII, bounded. */
struct pdk_sig {
    enum pdk_result result;
    char domain[256];           /* d= */
    char selector[64];          /* s= */
    char b[16];                 /* the first 12 characters of b= (header.b) */
    char alg[24];               /* a= */
    char reason[PDK_REASON_MAX];
};

struct pdk_verdict {
    int n;                      /* signatures reported in sig[] */
    struct pdk_sig sig[PDK_MAX_SIGS + 1];   /* + one "too many" line */
};

/* The best result of a verdict: pass if any signature passed, else the
 * first of fail, policy, neutral, temperror, permerror present; none
 * without signatures. (dkim.result in the rules.) */
enum pdk_result pdk_verdict_best(const struct pdk_verdict *v);
/* Space-separated d= of the passing signatures, each once, lower case
 * (dkim.domains). */
void pdk_verdict_domains(const struct pdk_verdict *v, buf_t *out);

/* ---- key lookup ---------------------------------------------------------- */
enum pdk_lookup_status { PDK_KEY_FOUND, PDK_KEY_NOTFOUND, PDK_KEY_TEMPFAIL };
/* name: "selector._domainkey.domain" (no final dot); the record text into
 * out (NUL-terminated, at most cap - 1 bytes). */
typedef enum pdk_lookup_status pdk_lookup_fn(void *arg, const char *name, char *out,
                                             size_t cap, char *why, size_t whylen);

/* pdk_key.c: the resolver's lookup with the process-wide cache (TTL capped
 * at PDK_CACHE_TTL, failures kept PDK_CACHE_NEG seconds, PDK_CACHE_SIZE
 * entries, thread-safe); arg is a struct dns_ctx * used by one thread at a
 * time. */
#define PDK_CACHE_SIZE 512
#define PDK_CACHE_TTL  3600
#define PDK_CACHE_NEG  60
pdk_lookup_fn pdk_lookup_dns;
void pdk_cache_flush(void);

/* ---- signing keys -------------------------------------------------------- */
enum pdk_alg { PDK_RSA_SHA256 = 1, PDK_ED25519_SHA256 = 2 };
struct pdk_key {
    char domain[256], selector[64];
    enum pdk_alg alg;
    char *pem;                  /* the private key file's text */
    size_t pemlen;
    char pub[1024];             /* the p= value for DNS (base64) */
};
/* Load a PEM private key (RSA or Ed25519, PKCS#8 or traditional): 0, or -1
 * with the reason in err. */
int  pdk_key_load(struct pdk_key *k, const char *path, const char *domain,
                  const char *selector, char *err, size_t errlen);
void pdk_key_free(struct pdk_key *k);
/* The TXT record value that publishes k: "v=DKIM1; k=rsa; p=..." */
void pdk_key_txt(const struct pdk_key *k, buf_t *out);

/* ---- jobs --------------------------------------------------------------- */
struct pdk_job;
/* id: for libopendkim's messages (the queue id). deadline: CLOCK_MONOTONIC
 * milliseconds (clock_ms()) after which lookups fail, 0 = none. */
struct pdk_job *pdk_job_new(const char *id, int64_t deadline_ms);
/* Verify every DKIM-Signature, keys through fn(arg, ...). */
void pdk_job_verify(struct pdk_job *j, pdk_lookup_fn *fn, void *arg);
/* Add a signature by k (relaxed/relaxed, From oversigned); -1 when
 * libopendkim refuses the key (err says why). */
int  pdk_job_sign(struct pdk_job *j, const struct pdk_key *k, char *err, size_t errlen);
/* Message content, LF (or CRLF) line ends, in pieces of any size. */
void pdk_job_feed(struct pdk_job *j, const void *p, size_t n);
/* Finish: the verdict (when verifying) and the new DKIM-Signature fields,
 * "DKIM-Signature: ...\n" each, folded with LF + tab (when signing). A
 * signing failure is logged by the caller from err; sigs then lacks it. */
void pdk_job_end(struct pdk_job *j, struct pdk_verdict *v, buf_t *sigs, char *err,
                 size_t errlen);
void pdk_job_free(struct pdk_job *j);

/* ---- tag lists (pdk_tags.c: pure, fuzzed) ---------------------------------- */
#define PDK_TAGS_MAX 32
struct pdk_tag {
    char name[16];
    const char *v;              /* into the input; FWS kept inside */
    size_t vlen;
};
/* RFC 6376 3.2 tag-list: "n=v; n=v". Returns the number of tags (at most
 * max), or -1 when malformed (bad name, missing '=', duplicate tag). */
int  pdk_tags_parse(const char *s, size_t n, struct pdk_tag *tags, int max);
/* The tag's value with every FWS removed, into out (NUL-terminated,
 * truncated at cap - 1); 0, or -1 when the tag is absent. */
int  pdk_tags_get(const struct pdk_tag *tags, int n, const char *name, char *out, size_t cap);
/* Printable copy of at most cap - 1 bytes: control bytes, blanks and
 * non-ASCII become '?' (for results that go into headers and logs). */
void pdk_sanitize(char *out, size_t cap, const char *s, size_t n);

#endif
