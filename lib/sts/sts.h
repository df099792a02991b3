/*
 * sts.h - SMTP MTA Strict Transport Security (RFC 8461) for the smtp agent.
 *
 *   sts_policy.c  the policy text and the _mta-sts TXT record parsers, MX
 *                 matching (pure: no I/O; fuzzed by t/fuzz/fuzz_sts.c)
 *   sts_fetch.c   the policy fetch over HTTPS with libcurl, the host name
 *                 resolved through lib/dns and pinned (CURLOPT_RESOLVE)
 *   sts_cache.c   the on-disk cache (one file per domain under the spool's
 *                 sts/) and sts_policy_get(), which ties the three together
 *
 * Everything here comes from the network: the parsers are strict and
 * bounded (STS_POLICY_MAX bytes, STS_MX_MAX mx lines), and a failure only
 * ever means "no policy" (or the cached one), never an exit. A domain
 * from mail becomes a file name and a URL only after sts_domain_ok().
 */
#ifndef POSTERN_STS_H
#define POSTERN_STS_H

#include <stddef.h>
#include <time.h>

#include "config/config.h"
#include "util/buf.h"

struct dns_ctx;

#define STS_POLICY_MAX  65536       /* policy body bytes (RFC 8461 3.3: 64 KB) */
#define STS_MX_MAX      64          /* mx lines kept; more: the policy is invalid */
#define STS_ID_MAX      32          /* TXT id= length (RFC 8461 3.1: 1*32) */
#define STS_MAX_AGE_MAX 31557600L   /* RFC 8461 3.2: max_age is at most a year */
#define STS_FETCH_TIMEOUT 30        /* seconds for the whole HTTPS fetch */

/* A policy's mode; STS_NO_POLICY (0, what zeroed memory says) is for
 * callers that keep "no policy at all" in the same field. */
enum sts_mode { STS_NO_POLICY = 0, STS_NONE, STS_TESTING, STS_ENFORCE };

struct sts_policy {
    enum sts_mode mode;
    long max_age;                   /* seconds, <= STS_MAX_AGE_MAX */
    int  nmx;
    char mx[STS_MX_MAX][256];       /* lower case, "*.example.net" or a name */
    /* set by sts_policy_get (not by the parser): */
    char id[STS_ID_MAX + 1];        /* the TXT id the policy was fetched under */
    time_t fetched;                 /* when (wall clock) */
    int from_cache;                 /* 1: read from the cache file */
};

/* ---- sts_policy.c: parsers (pure) ---- */
/* Parse a policy body (RFC 8461 3.2; LF or CRLF lines, "key: value").
 * Required: version STSv1 first, mode, max_age, and an mx line unless mode
 * is none; unknown keys ignored; a repeated version/mode/max_age keeps the
 * first. 0 ok, -1 invalid (why set). */
int  sts_policy_parse(const char *text, size_t len, struct sts_policy *p, char *why,
                      size_t whylen);
/* One TXT string: 1 a valid "v=STSv1; id=..." record (id copied),
 * 0 not an STS record (does not start with v=STSv1), -1 malformed. */
int  sts_txt_parse(const char *txt, size_t len, char *id_r, size_t idcap);
/* Does MX host name mx match one of the policy's mx patterns (RFC 8461
 * 4.1: case-insensitive, "*." matches exactly one leftmost label)? */
int  sts_mx_match(const struct sts_policy *p, const char *mx);
/* Is domain usable as an MTA-STS domain: a host name (letters, digits,
 * '-', '_', dots between labels), at most 253 octets? Also keeps it safe
 * as a file name and in a URL. */
int  sts_domain_ok(const char *domain);
/* "enforce", "testing", "none"; NULL for STS_NO_POLICY. */
const char *sts_mode_name(enum sts_mode m);

/* ---- sts_fetch.c ---- */
struct sts_fetch_opts {
    const char *ca_file;            /* NULL: the system CA store */
    int connect_timeout;            /* seconds */
    int timeout;                    /* seconds, whole transfer */
    int port;                       /* 443; tests may not change it */
};
/* GET https://mta-sts.DOMAIN/.well-known/mta-sts.txt into body (at most
 * STS_POLICY_MAX bytes): 200 only, no redirects, Content-Type text/plain,
 * certificate verified for mta-sts.DOMAIN. mta-sts.DOMAIN is resolved with
 * dns (AAAA and A) and pinned, so libcurl never resolves anything.
 * 0 ok, -1 (why set). */
int  sts_fetch(const struct sts_fetch_opts *o, struct dns_ctx *dns, const char *domain,
               buf_t *body, char *why, size_t whylen);

/* ---- sts_cache.c ---- */
/* The policy in force for domain (RFC 8461 5.1): TXT _mta-sts.DOMAIN; the
 * cached policy when its id matches and it has not expired; else a fresh
 * fetch (stored in cache_dir/DOMAIN by temp file + rename); when that fails,
 * a cached policy that has not expired. 1 policy in p, 0 none (logged). */
int  sts_policy_get(const struct config *cfg, struct dns_ctx *dns, const char *cache_dir,
                    const char *domain, struct sts_policy *p);
/* Cache file I/O (also for the tests): 0 ok, -1. */
int  sts_cache_read(const char *cache_dir, const char *domain, struct sts_policy *p);
int  sts_cache_write(const char *cache_dir, const char *domain, const struct sts_policy *p,
                     const char *body, size_t len);

#endif
