/*
 * dns_answer.c - one libunbound result to a struct dns_answer: the
 * tri-state status (a bogus or malformed answer is a temporary failure),
 * the DNSSEC state, and the records parsed and bounded (DNS_MAX_RR,
 * DNS_ANSWER_MAX). Nothing unparsed leaves here.
 */
#include <stdlib.h>
#include <string.h>

#include <unbound.h>

#include "dns/dns_int.h"

void dns_answer_free(struct dns_answer *a)
{
    if (!a)
        return;
    for (int i = 0; i < a->n; i++)
        dns_rr_clear(&a->rr[i]);
    free(a->rr);
    free(a);
}

static void answer_drop(struct dns_answer *a, const char *why)
{
    for (int i = 0; i < a->n; i++)
        dns_rr_clear(&a->rr[i]);
    free(a->rr);
    a->rr = NULL;
    a->n = 0;
    a->status = DNS_TEMPFAIL;
    str_copy(a->why, sizeof a->why, why);
}

/* Copies and parses the rdata; 0, or -1 (answer dropped, why set). */
static int answer_records(struct dns_answer *a, const struct ub_result *r)
{
    size_t total = 0;
    int n = 0;
    while (r->data[n])
        n++;
    if (n > DNS_MAX_RR) {
        answer_drop(a, "too many records");
        return -1;
    }
    a->rr = xcalloc((size_t)(n ? n : 1), sizeof *a->rr);
    for (int i = 0; i < n; i++) {
        size_t len = r->len[i] < 0 ? 0 : (size_t)r->len[i];
        total += len;
        if (total > DNS_ANSWER_MAX) {
            answer_drop(a, "answer too large");
            return -1;
        }
        if (dns_rdata_parse(a->qtype, (const uint8_t *)r->data[i], len, &a->rr[a->n]) < 0) {
            answer_drop(a, "malformed record in the answer");
            return -1;
        }
        a->rr[a->n++].ttl = (uint32_t)(r->ttl < 0 ? 0 : r->ttl);
    }
    return 0;
}

void dns_answer_fill(struct dns_answer *a, const struct ub_result *r)
{
    a->rcode = r->rcode;
    a->sec = r->bogus ? DNS_SEC_BOGUS : r->secure ? DNS_SEC_SECURE : DNS_SEC_INSECURE;
    if (r->bogus) {
        /* validation failed: an attack or a broken zone; retry later */
        str_format(a->why, sizeof a->why, "DNSSEC bogus: %s",
                   r->why_bogus ? r->why_bogus : "validation failed");
        a->status = DNS_TEMPFAIL;
        return;
    }
    if (r->rcode == 3 || r->nxdomain) {
        a->status = DNS_NOTFOUND;
        a->nxdomain = 1;
        return;
    }
    if (r->rcode != 0) {
        /* SERVFAIL, REFUSED, ...: the server could not answer */
        str_format(a->why, sizeof a->why, "rcode %d", r->rcode);
        a->status = DNS_TEMPFAIL;
        return;
    }
    if (!r->havedata || !r->data || !r->data[0]) {
        a->status = DNS_NOTFOUND;          /* NODATA */
        return;
    }
    if (answer_records(a, r) == 0)
        a->status = DNS_FOUND;
}
