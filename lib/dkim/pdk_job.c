/*
 * pdk_job.c - one message through libopendkim: verification of every
 * DKIM-Signature and any number of new signatures, in one pass.
 *
 * One libopendkim library handle for the process (made once, options set
 * before any thread uses it): keys come only through key_lookup() below,
 * which hands the job's lookup function the name; libopendkim's own
 * resolver is never reached. Content arrives with LF line ends (queue
 * files) and is handed on with CRLF, as DKIM canonicalises it.
 * Runs in any thread; a job belongs to one thread at a time.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <opendkim/dkim.h>

#include "dkim/pdk.h"
#include "util/clock.h"

#define FEED_CHUNK 65536

/* Headers we sign when present (RFC 6376 5.4.1), From also once more than
 * it occurs (oversigned) so no From can be added after signing. */
static const char *sign_hdrs[] = {
    "from", "sender", "reply-to", "subject", "date", "message-id", "to", "cc",
    "mime-version", "content-type", "content-transfer-encoding", "content-id",
    "content-description", "in-reply-to", "references", "list-id", "list-help",
    "list-unsubscribe", "list-subscribe", "list-post", "list-owner", "list-archive",
    "list-unsubscribe-post", "resent-date", "resent-from", "resent-sender", "resent-to",
    "resent-cc", "resent-message-id", NULL,
};
static const char *oversign_hdrs[] = { "from", NULL };

struct lookup_note {            /* why a key lookup failed, per signature */
    const void *sig;
    int tempfail;
    char why[96];
};

struct pdk_job {
    char id[64];
    int64_t deadline;
    DKIM *ver;
    pdk_lookup_fn *fn;
    void *arg;
    struct lookup_note notes[PDK_MAX_SIGS];
    int nnotes;
    DKIM *sign[PDK_MAX_KEYS];
    char sign_domain[PDK_MAX_KEYS][64];
    int nsign;
    int at_bol;                 /* the last byte fed ended a line */
    int cr_pending;             /* a CR was the last byte (CRLF input) */
    char *out;                  /* CRLF staging */
    size_t outlen;
};

static DKIM_LIB *lib;
static pthread_once_t lib_once = PTHREAD_ONCE_INIT;

static DKIM_CBSTAT key_lookup(DKIM *d, DKIM_SIGINFO *sig, u_char *buf, size_t buflen);
static DKIM_CBSTAT prescreen(DKIM *d, DKIM_SIGINFO **sigs, int n);

static void lib_init(void)
{
    lib = dkim_init(NULL, NULL);
    if (lib == NULL)
        return;
    unsigned int flags = DKIM_LIBFLAGS_BADSIGHANDLES;
    dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags, sizeof(flags));
    dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNHDRS, sign_hdrs, sizeof(char **));
    dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_OVERSIGNHDRS, oversign_hdrs, sizeof(char **));
    dkim_set_key_lookup(lib, key_lookup);
    dkim_set_prescreen(lib, prescreen);
}

static DKIM_LIB *get_lib(void)
{
    pthread_once(&lib_once, lib_init);
    return lib;
}

const char *pdk_result_name(enum pdk_result r)
{
    static const char *names[] = { "none", "pass", "fail", "policy", "neutral", "temperror",
                                   "permerror" };
    return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "permerror";
}

/* Past PDK_MAX_SIGS signatures the rest are ignored (bounded work). */
static DKIM_CBSTAT prescreen(DKIM *d, DKIM_SIGINFO **sigs, int n)
{
    for (int i = PDK_MAX_SIGS; i < n; i++)
        dkim_sig_ignore(sigs[i]);
    return DKIM_CBSTAT_CONTINUE;
}

static int name_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_';
}

/* The key of sig: "s._domainkey.d" through the job's function. A failed
 * lookup must not stop libopendkim from checking the other signatures (a
 * TRYAGAIN would end the whole verification), so it answers "no key" and
 * the note turns that signature into temperror afterwards. */
static DKIM_CBSTAT key_lookup(DKIM *d, DKIM_SIGINFO *sig, u_char *buf, size_t buflen)
{
    struct pdk_job *j = dkim_get_user_context(d);
    const char *dom = (const char *)dkim_sig_getdomain(sig);
    const char *sel = (const char *)dkim_sig_getselector(sig);
    if (j == NULL || j->nnotes >= PDK_MAX_SIGS || dom == NULL || sel == NULL)
        return DKIM_CBSTAT_NOTFOUND;
    struct lookup_note *note = &j->notes[j->nnotes++];
    memset(note, 0, sizeof(*note));
    note->sig = sig;
    char name[300];
    if (str_format(name, sizeof(name), "%s._domainkey.%s", sel, dom) < 0 ||
        strlen(name) > 253) {
        str_copy(note->why, sizeof(note->why), "key name too long");
        return DKIM_CBSTAT_NOTFOUND;
    }
    for (const char *p = name; *p; p++)
        if (!name_char_ok((unsigned char)*p)) {
            str_copy(note->why, sizeof(note->why), "invalid selector or domain");
            return DKIM_CBSTAT_NOTFOUND;
        }
    if (j->deadline && clock_now_ms() >= j->deadline) {
        note->tempfail = 1;
        str_copy(note->why, sizeof(note->why), "time limit for the message reached");
        return DKIM_CBSTAT_NOTFOUND;
    }
    char why[96] = "";
    enum pdk_lookup_status st = j->fn(j->arg, name, (char *)buf, buflen, why, sizeof(why));
    if (st == PDK_KEY_FOUND)
        return DKIM_CBSTAT_CONTINUE;
    note->tempfail = st == PDK_KEY_TEMPFAIL;
    str_copy(note->why, sizeof(note->why), why[0] ? why : "no key record");
    return DKIM_CBSTAT_NOTFOUND;
}

struct pdk_job *pdk_job_new(const char *id, int64_t deadline_ms)
{
    struct pdk_job *j = xcalloc(1, sizeof(*j));
    str_copy(j->id, sizeof(j->id), id && *id ? id : "postern");
    j->deadline = deadline_ms;
    j->at_bol = 1;
    j->out = xmalloc(2 * FEED_CHUNK + 2);
    return j;
}

void pdk_job_verify(struct pdk_job *j, pdk_lookup_fn *fn, void *arg)
{
    DKIM_LIB *l = get_lib();
    DKIM_STAT st;
    if (l == NULL || j->ver)
        return;
    j->fn = fn;
    j->arg = arg;
    j->ver = dkim_verify(l, (const u_char *)j->id, NULL, &st);
    if (j->ver)
        dkim_set_user_context(j->ver, j);
}

int pdk_job_sign(struct pdk_job *j, const struct pdk_key *k, char *err, size_t errlen)
{
    DKIM_LIB *l = get_lib();
    DKIM_STAT st = DKIM_STAT_INTERNAL;
    if (j->nsign >= PDK_MAX_KEYS || l == NULL) {
        str_copy(err, errlen, "too many signatures");
        return -1;
    }
    DKIM *d = dkim_sign(l, (const u_char *)j->id, NULL, (dkim_sigkey_t)k->pem,
                        (const u_char *)k->selector, (const u_char *)k->domain,
                        DKIM_CANON_RELAXED, DKIM_CANON_RELAXED,
                        k->alg == PDK_ED25519_SHA256 ? DKIM_SIGN_ED25519SHA256
                                                     : DKIM_SIGN_RSASHA256, -1, &st);
    if (d == NULL) {
        str_format(err, errlen, "%s", dkim_getresultstr(st));
        return -1;
    }
    str_copy(j->sign_domain[j->nsign], sizeof(j->sign_domain[0]), k->domain);
    j->sign[j->nsign++] = d;
    return 0;
}

static void feed_all(struct pdk_job *j, const char *p, size_t n)
{
    if (n == 0)
        return;
    if (j->ver)
        dkim_chunk(j->ver, (u_char *)p, n);
    for (int i = 0; i < j->nsign; i++)
        if (j->sign[i])
            dkim_chunk(j->sign[i], (u_char *)p, n);
}

void pdk_job_feed(struct pdk_job *j, const void *data, size_t n)
{
    const char *p = data;
    while (n > 0) {
        size_t take = n > FEED_CHUNK ? FEED_CHUNK : n;
        size_t o = 0;
        for (size_t i = 0; i < take; i++) {
            char c = p[i];
            if (c == '\n' && !j->cr_pending)
                j->out[o++] = '\r';
            j->cr_pending = c == '\r';
            j->out[o++] = c;
        }
        j->at_bol = p[take - 1] == '\n';
        feed_all(j, j->out, o);
        p += take;
        n -= take;
    }
}

static const struct lookup_note *note_of(const struct pdk_job *j, const void *sig)
{
    for (int i = 0; i < j->nnotes; i++)
        if (j->notes[i].sig == sig)
            return &j->notes[i];
    return NULL;
}

/* A key error from a lookup this job made, or libopendkim's own finding. */
static enum pdk_result from_error(const struct lookup_note *note, int err, char *why,
                                  size_t cap)
{
    if (note && note->why[0] && (note->tempfail || err == DKIM_SIGERROR_NOKEY)) {
        str_copy(why, cap, note->why);
        return note->tempfail ? PDK_TEMPERROR : PDK_PERMERROR;
    }
    const char *s = dkim_sig_geterrorstr(err);
    str_copy(why, cap, s ? s : "signature could not be processed");
    switch (err) {
    case DKIM_SIGERROR_BADSIG:
    case DKIM_SIGERROR_EXPIRED:
    case DKIM_SIGERROR_FUTURE:
    case DKIM_SIGERROR_SUBDOMAIN:
    case DKIM_SIGERROR_KEYREVOKED:
        return PDK_FAIL;
    case DKIM_SIGERROR_KEYFAIL:
        return PDK_TEMPERROR;
    case DKIM_SIGERROR_KEYTOOSMALL:
        return PDK_POLICY;
    default:
        return PDK_PERMERROR;
    }
}

/* l= shorter than the body: what follows it is nobody's signed text. */
static void check_length(DKIM *d, DKIM_SIGINFO *sig, struct pdk_sig *r)
{
    ssize_t msglen = -1, canonlen = -1, signlen = -1;
    if (dkim_sig_getcanonlen(d, sig, &msglen, &canonlen, &signlen) != DKIM_STAT_OK)
        return;
    if (signlen >= 0 && msglen > canonlen) {
        r->result = PDK_POLICY;
        str_format(r->reason, sizeof(r->reason),
                   "l=%zd leaves %zd body octets unsigned", signlen, msglen - canonlen);
    }
}

static void tag_text(DKIM_SIGINFO *sig, const char *tag, char *out, size_t cap)
{
    const u_char *v = dkim_sig_gettagvalue(sig, 0, (u_char *)tag);
    char tmp[512];
    size_t j = 0;
    for (size_t i = 0; v && v[i] && j + 1 < sizeof(tmp); i++)
        if (v[i] != ' ' && v[i] != '\t' && v[i] != '\r' && v[i] != '\n')
            tmp[j++] = (char)v[i];
    pdk_sanitize(out, cap, tmp, j);
}

static void one_result(struct pdk_job *j, DKIM_SIGINFO *sig, struct pdk_sig *r)
{
    memset(r, 0, sizeof(*r));
    tag_text(sig, "d", r->domain, sizeof(r->domain));
    tag_text(sig, "s", r->selector, sizeof(r->selector));
    tag_text(sig, "b", r->b, 13);
    tag_text(sig, "a", r->alg, sizeof(r->alg));
    for (char *p = r->domain; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    unsigned int flags = dkim_sig_getflags(sig);
    int err = dkim_sig_geterror(sig);
    int bh = dkim_sig_getbh(sig);
    if ((flags & DKIM_SIGFLAG_PASSED) && bh == DKIM_SIGBH_MATCH) {
        r->result = PDK_PASS;
        check_length(j->ver, sig, r);
    } else if ((flags & DKIM_SIGFLAG_PROCESSED) && bh == DKIM_SIGBH_MISMATCH) {
        r->result = PDK_FAIL;
        str_copy(r->reason, sizeof(r->reason), "body hash did not verify");
    } else if ((flags & DKIM_SIGFLAG_PROCESSED) &&
               (err == DKIM_SIGERROR_OK || err == DKIM_SIGERROR_UNKNOWN)) {
        r->result = PDK_FAIL;
        str_copy(r->reason, sizeof(r->reason), "signature did not verify");
    } else {
        r->result = from_error(note_of(j, sig), err, r->reason, sizeof(r->reason));
    }
    if (r->result == PDK_PASS && strcmp(r->alg, "rsa-sha1") == 0 && !r->reason[0])
        str_copy(r->reason, sizeof(r->reason), "rsa-sha1 is historic (RFC 8301)");
    if (flags & DKIM_SIGFLAG_TESTKEY) {      /* t=y: the result stands, said so */
        size_t l = strlen(r->reason);
        str_format(r->reason + l, sizeof(r->reason) - l, "%stesting key", l ? ", " : "");
    }
}

static void verify_end(struct pdk_job *j, struct pdk_verdict *v)
{
    memset(v, 0, sizeof(*v));
    if (j->ver == NULL)
        return;
    dkim_chunk(j->ver, NULL, 0);
    dkim_eom(j->ver, NULL);
    DKIM_SIGINFO **sigs = NULL;
    int n = 0;
    if (dkim_getsiglist(j->ver, &sigs, &n) != DKIM_STAT_OK || sigs == NULL)
        return;
    for (int i = 0; i < n && v->n < PDK_MAX_SIGS; i++) {
        if (dkim_sig_getflags(sigs[i]) & DKIM_SIGFLAG_IGNORE)
            continue;
        one_result(j, sigs[i], &v->sig[v->n++]);
    }
    if (n > PDK_MAX_SIGS) {
        struct pdk_sig *r = &v->sig[v->n++];
        memset(r, 0, sizeof(*r));
        r->result = PDK_PERMERROR;
        str_format(r->reason, sizeof(r->reason),
                   "%d more signatures not evaluated (at most %d)", n - PDK_MAX_SIGS,
                   PDK_MAX_SIGS);
    }
}

static void sign_end(struct pdk_job *j, int i, buf_t *sigs, char *err, size_t errlen)
{
    DKIM *d = j->sign[i];
    dkim_chunk(d, NULL, 0);
    DKIM_STAT st = dkim_eom(d, NULL);
    u_char *hdr = NULL;
    size_t len = 0;
    if (st == DKIM_STAT_OK)
        st = dkim_getsighdr_d(d, sizeof("DKIM-Signature: ") - 1, &hdr, &len);
    if (st != DKIM_STAT_OK || hdr == NULL) {
        const char *e = dkim_geterror(d);
        str_format(err, errlen, "signing for %s: %s", j->sign_domain[i],
                   e ? e : dkim_getresultstr(st));
        return;
    }
    buf_append_str(sigs, "DKIM-Signature: ");
    for (size_t k = 0; k < len; k++)
        if (hdr[k] != '\r')
            buf_append_char(sigs, (char)hdr[k]);
    buf_append_char(sigs, '\n');
}

void pdk_job_end(struct pdk_job *j, struct pdk_verdict *v, buf_t *sigs, char *err,
                 size_t errlen)
{
    if (!j->at_bol)
        pdk_job_feed(j, "\n", 1);           /* DKIM canonical form ends lines */
    if (err && errlen)
        err[0] = '\0';
    if (v)
        verify_end(j, v);
    for (int i = 0; i < j->nsign; i++)
        if (sigs)
            sign_end(j, i, sigs, err, errlen);
}

void pdk_job_free(struct pdk_job *j)
{
    if (j == NULL)
        return;
    if (j->ver)
        dkim_free(j->ver);
    for (int i = 0; i < j->nsign; i++)
        dkim_free(j->sign[i]);
    free(j->out);
    free(j);
}

enum pdk_result pdk_verdict_best(const struct pdk_verdict *v)
{
    static const enum pdk_result order[] = { PDK_PASS, PDK_FAIL, PDK_POLICY, PDK_NEUTRAL,
                                             PDK_TEMPERROR, PDK_PERMERROR };
    for (size_t k = 0; k < sizeof(order) / sizeof(order[0]); k++)
        for (int i = 0; i < v->n; i++)
            if (v->sig[i].result == order[k])
                return order[k];
    return PDK_NONE;
}

void pdk_verdict_domains(const struct pdk_verdict *v, buf_t *out)
{
    for (int i = 0; i < v->n; i++) {
        if (v->sig[i].result != PDK_PASS || !v->sig[i].domain[0])
            continue;
        int dup = 0;
        for (int k = 0; k < i; k++)
            dup |= v->sig[k].result == PDK_PASS && strcmp(v->sig[k].domain, v->sig[i].domain) == 0;
        if (dup)
            continue;
        if (out->len)
            buf_append_char(out, ' ');
        buf_append_str(out, v->sig[i].domain);
    }
}

/* LeakSanitizer (make SAN=1) reads this in the programs that link lib/dkim
 * (cleanup, bin/postern, test_dkim; the fuzz targets, which link every
 * object of lib/): libopendkim's Ed25519
 * signing leak (pdk.h, "Known limit") is theirs. Its OpenSSL objects are
 * seen only as far as libcrypto (built without frame pointers, the stack
 * ends there), so libcrypto's allocations are not reported in these
 * programs; everything allocated through our own code still is. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:dkim_privkey_load\nleak:libcrypto.so\n";
}
