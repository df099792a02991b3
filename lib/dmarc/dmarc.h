/*
 * dmarc.h - DMARC (RFC 7489) on Postern's own resolver and libopendmarc.
 *
 * Who uses it: cleanup at end of data (the From domain, smtpd's SPF result
 * and the DKIM results of the message), `postern dmarc DOMAIN`, the unit
 * tests and the fuzz target.
 *
 * Split like lib/spf: the evaluator has no I/O of its own. It names the one
 * TXT lookup it needs next (_dmarc.<From domain>, then, when that has no
 * DMARC record, _dmarc.<organizational domain>) and is handed the answer;
 * two drivers (dmarc_run.c) do the lookups through lib/dns, blocking for the
 * CLI or in an event loop for cleanup. libopendmarc parses the record
 * (opendmarc_policy_store_dmarc: its own DNS code is never called) and finds
 * organizational domains in the Public Suffix List (Debian's publicsuffix
 * package), loaded once by dmarc_init() before any chroot.
 *
 * Tri-state: a temporary DNS failure on a lookup DMARC needs is temperror,
 * and temperror never yields a policy to enforce (the caller never rejects
 * or quarantines on it).
 *
 * Never: trust record text (bounded copy, checked syntax before the parser
 * sees it), or call libopendmarc's resolver.
 */
#ifndef POSTERN_DMARC_H
#define POSTERN_DMARC_H

#include <stdint.h>

#include "dns/dns.h"

#define DMARC_PSL_DEFAULT "/usr/share/publicsuffix/public_suffix_list.dat"
#define DMARC_RECORD_MAX  1024       /* longer records are cut (logged as such) */
#define DMARC_DKIM_MAX    16         /* DKIM results considered per message */
#define DMARC_OVERALL_MS  20000      /* default cap on one whole evaluation */

enum dmarc_result { DMARC_R_NONE, DMARC_R_PASS, DMARC_R_FAIL, DMARC_R_TEMPERROR,
                    DMARC_R_PERMERROR };
enum dmarc_policy { DMARC_P_NONE, DMARC_P_QUARANTINE, DMARC_P_REJECT };

struct dmarc_dkim {
    const char *domain;     /* d= of one signature */
    const char *result;     /* its result word: "pass", "fail", ... */
};

struct dmarc_input {
    const char *from_domain;            /* RFC5322.From domain; "" or NULL: none */
    const char *spf_result;             /* smtpd's SPF result word; "" = not checked */
    const char *spf_domain;             /* the domain SPF checked (MAIL FROM or HELO) */
    const struct dmarc_dkim *dkim;      /* at most DMARC_DKIM_MAX are looked at */
    int ndkim;
    int draw;                           /* pct sampling: 0..99, or -1: random */
};

struct dmarc_outcome {
    enum dmarc_result result;
    enum dmarc_policy policy;     /* what the record asks for this message: p= or sp=,
                                   * lowered one step when the pct= draw excluded it */
    enum dmarc_policy published;  /* p= or sp= as published (before pct=) */
    int  has_record;              /* a valid DMARC record was found */
    int  sp_used;                 /* the policy came from sp= (a subdomain) */
    int  pct;                     /* 0..100 */
    int  sampled_out;             /* failed, but pct= said not to apply the policy */
    char adkim, aspf;             /* 'r' relaxed or 's' strict */
    int  spf_aligned, dkim_aligned;   /* a passing identifier aligned */
    char dkim_domain[DNS_NAME_MAX + 1];   /* the aligned passing d=, or the first d= */
    char dkim_result[16];                 /* its result word, "none" without any */
    char from_domain[DNS_NAME_MAX + 1];
    char org_domain[DNS_NAME_MAX + 1];    /* organizational domain of from_domain */
    char record_domain[DNS_NAME_MAX + 1]; /* where the record was found: from or org */
    char record[DMARC_RECORD_MAX];        /* the record text, "" when none */
    char reason[160];                     /* what decided, for logs and the CLI */
};

const char *dmarc_result_name(enum dmarc_result r);
const char *dmarc_policy_name(enum dmarc_policy p);

/* ---- dmarc_psl.c: organizational domains ------------------------------ */
/* Loads the Public Suffix List once (path NULL: DMARC_PSL_DEFAULT); before a
 * chroot. 0, or -1 (logged): organizational domains are then the last two
 * labels. Safe to call again (no-op). */
int  dmarc_init(const char *psl_path);
/* The organizational domain of d (RFC 7489 3.2), lower case, into out. */
void dmarc_org_domain(const char *d, char *out, size_t cap);

/* ---- dmarc_record.c: record selection and parsing (fuzzed) ------------ */
struct dmarc_record {
    enum dmarc_policy p, sp;
    int  has_sp;
    int  pct;
    char adkim, aspf;
};
/* 1 when txt (len bytes, may hold NULs) is a DMARC record: starts with
 * v=DMARC1 (RFC 7489 6.4: blanks around '=' allowed, then ';' or end). */
int  dmarc_record_is_dmarc(const char *txt, size_t len);
/* Parses a record (NUL-terminated, at most DMARC_RECORD_MAX - 1 bytes) with
 * libopendmarc. 0, or -1 with why (a syntax error: permerror). A record
 * without p= but with rua= counts as p=none (RFC 7489 6.6.3). */
int  dmarc_record_parse(const char *record, struct dmarc_record *r, char *why, size_t cap);

/* ---- dmarc_eval.c: the evaluator (no I/O) ----------------------------- */
/* Decides from a record already found (record NULL: none exists; tempfail:
 * a lookup failed temporarily). Pure but for the pct= draw (in->draw < 0).
 * Used by the drivers and the unit tests. */
void dmarc_decide(const struct dmarc_input *in, const char *record, const char *record_domain,
                  int tempfail, struct dmarc_outcome *out);

struct dmarc_eval;
struct dmarc_eval *dmarc_eval_new(const struct dmarc_input *in);
/* 1: the TXT lookup *name_r is needed next (hand its answer to
 * dmarc_eval_answer); 0: finished, see dmarc_eval_outcome. */
int  dmarc_eval_step(struct dmarc_eval *e, const char **name_r);
void dmarc_eval_answer(struct dmarc_eval *e, struct dns_answer *a);   /* takes a */
void dmarc_eval_abort(struct dmarc_eval *e, const char *why);        /* -> temperror */
const struct dmarc_outcome *dmarc_eval_outcome(const struct dmarc_eval *e);
void dmarc_eval_free(struct dmarc_eval *e);

/* ---- dmarc_run.c: drivers --------------------------------------------- */
void dmarc_check_sync(struct dns_ctx *ctx, const struct dmarc_input *in, int overall_ms,
                      struct dmarc_outcome *out);
/* In the dns context's event loop: cb runs once, later (never from inside
 * dmarc_check_start), unless cancelled. NULL when it cannot start. */
typedef void (*dmarc_cb)(const struct dmarc_outcome *o, void *arg);
struct dmarc_check;
struct event_base;
struct dmarc_check *dmarc_check_start(struct dns_ctx *ctx, struct event_base *base,
                                      const struct dmarc_input *in, int overall_ms,
                                      dmarc_cb cb, void *arg);
void dmarc_check_cancel(struct dmarc_check *c);

/* ---- dmarc_report.c: aggregate-report data ---------------------------- */
#define DMARC_REPORT_MAX (64L * 1024 * 1024)   /* bytes before records -> records.1 */
struct dmarc_report_row {
    int64_t when;                 /* seconds since the epoch */
    const char *queue_id, *client_ip, *disposition;   /* none | quarantine | reject */
    const struct dmarc_outcome *o;
    const char *spf_result, *spf_domain;
};
/* One line (no LF) of the per-message record file; every value sanitised
 * (no blank, control byte or '=' from the message or DNS). */
struct buf;
void dmarc_report_line(const struct dmarc_report_row *row, struct buf *out);
/* Appends the line to path (kept open O_APPEND, one write; the path is
 * looked at again once a second, so a file moved away is followed by a new
 * one); past DMARC_REPORT_MAX the file is renamed to path.1 first. 0 or -1
 * (errno). */
int  dmarc_report_append(const char *path, const struct dmarc_report_row *row);

#endif
