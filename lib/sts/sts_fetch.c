/*
 * sts_fetch.c - the MTA-STS policy fetch over HTTPS (sts.h), with libcurl.
 *
 * RFC 8461 3.3: GET https://mta-sts.DOMAIN/.well-known/mta-sts.txt, the
 * certificate valid for mta-sts.DOMAIN (PKIX, delivery.tls_ca_file or the
 * system store), no redirects, only 200 with Content-Type text/plain, the
 * body at most STS_POLICY_MAX bytes, every wait bounded.
 *
 * Name resolution: Postern has one resolver, lib/dns (unbound, DNSSEC,
 * tests' local-data). mta-sts.DOMAIN is resolved there and handed to
 * libcurl with CURLOPT_RESOLVE; only https is allowed, proxies are off, so
 * libcurl's own resolver is never asked. Must never be given a domain that
 * sts_domain_ok() refused (it becomes part of a URL).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <curl/curl.h>

#include "sts/sts.h"
#include "dns/dns.h"
#include "util/log.h"

#define STS_FETCH_ADDRS 8     /* addresses of mta-sts.DOMAIN handed to libcurl */

static int fail(char *why, size_t whylen, const char *fmt, const char *arg)
{
    snprintf(why, whylen, fmt, arg);
    return -1;
}

/* "host:port:addr,addr,..." for CURLOPT_RESOLVE (IPv6 in brackets), from
 * AAAA then A. 0, or -1 when there is no address (why set). */
static int pin_addrs(struct dns_ctx *dns, const char *host, int port, buf_t *out, char *why,
                     size_t whylen)
{
    static const uint16_t types[] = { DNS_T_AAAA, DNS_T_A };
    int n = 0, tempfail = 0;
    buf_printf(out, "%s:%d:", host, port);
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        struct dns_answer *a = dns_resolve(dns, host, types[t]);
        if (a->status == DNS_TEMPFAIL)
            tempfail = 1;
        for (int i = 0; a->status == DNS_FOUND && i < a->n && n < STS_FETCH_ADDRS; i++) {
            if (a->rr[i].type != types[t])
                continue;
            const char *ip = a->rr[i].u.addr.text;
            buf_printf(out, n ? (types[t] == DNS_T_AAAA ? ",[%s]" : ",%s")
                              : (types[t] == DNS_T_AAAA ? "[%s]" : "%s"), ip);
            n++;
        }
        dns_answer_free(a);
    }
    if (n == 0)
        return fail(why, whylen, tempfail ? "%s: DNS lookup failed" : "%s: no address", host);
    return 0;
}

/* CURLOPT_WRITEFUNCTION: append, refusing more than STS_POLICY_MAX bytes
 * (returning less than given makes libcurl stop with CURLE_WRITE_ERROR). */
static size_t on_data(char *p, size_t size, size_t nmemb, void *arg)
{
    buf_t *b = arg;
    size_t n = size * nmemb;
    if (n > STS_POLICY_MAX || b->len + n > STS_POLICY_MAX)
        return 0;
    buf_append(b, p, n);
    return n;
}

/* text/plain, with or without parameters (RFC 8461 3.3). */
static int is_text_plain(const char *ct)
{
    if (ct == NULL || strncasecmp(ct, "text/plain", 10) != 0)
        return 0;
    return ct[10] == '\0' || ct[10] == ';' || ct[10] == ' ' || ct[10] == '\t';
}

static void set_options(CURL *c, const struct sts_fetch_opts *o, const char *url,
                        struct curl_slist *pin, buf_t *body, char *errbuf)
{
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_RESOLVE, pin);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PROXY, "");                /* no proxy, not even from env */
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (o->ca_file)
        curl_easy_setopt(c, CURLOPT_CAINFO, o->ca_file);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)o->connect_timeout);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)o->timeout);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE, (long)STS_POLICY_MAX);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "Postern MTA-STS");
}

/* Perform the request; 0 when a 200 text/plain body arrived. */
static int perform(CURL *c, const char *url, char *errbuf, char *why, size_t whylen)
{
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_WRITE_ERROR || rc == CURLE_FILESIZE_EXCEEDED) {   /* on_data, MAXFILESIZE */
        snprintf(why, whylen, "%s: policy larger than %d bytes", url, STS_POLICY_MAX);
        return -1;
    }
    if (rc != CURLE_OK) {
        snprintf(why, whylen, "%s: %s", url, errbuf[0] ? errbuf : curl_easy_strerror(rc));
        return -1;
    }
    long code = 0;
    char *ct = NULL;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    if (code != 200) {
        snprintf(why, whylen, "%s: HTTP status %ld", url, code);
        return -1;
    }
    if (!is_text_plain(ct))
        return fail(why, whylen, "%s: Content-Type is not text/plain", url);
    return 0;
}

int sts_fetch(const struct sts_fetch_opts *o, struct dns_ctx *dns, const char *domain,
              buf_t *body, char *why, size_t whylen)
{
    static int curl_ready;
    if (dns == NULL)
        return fail(why, whylen, "%s: no resolver", domain);
    if (!sts_domain_ok(domain))
        return fail(why, whylen, "%s: not a domain name", domain);
    if (!curl_ready) {           /* once, in a single-threaded agent */
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
            return fail(why, whylen, "%s: libcurl cannot start", domain);
        curl_ready = 1;
    }
    char host[300], url[400], errbuf[CURL_ERROR_SIZE] = "";
    snprintf(host, sizeof(host), "mta-sts.%s", domain);
    snprintf(url, sizeof(url), "https://%s/.well-known/mta-sts.txt", host);
    buf_t pin;
    buf_init(&pin, 256);
    int rc = pin_addrs(dns, host, o->port, &pin, why, whylen);
    struct curl_slist *list = NULL;
    CURL *c = NULL;
    if (rc == 0 && ((list = curl_slist_append(NULL, pin.data)) == NULL ||
                    (c = curl_easy_init()) == NULL))
        rc = fail(why, whylen, "%s: libcurl out of memory", domain);
    if (rc == 0) {
        buf_reset(body);
        set_options(c, o, url, list, body, errbuf);
        rc = perform(c, url, errbuf, why, whylen);
    }
    if (c)
        curl_easy_cleanup(c);
    curl_slist_free_all(list);
    buf_free(&pin);
    return rc;
}
