/*
 * dmarc_record.c - which TXT strings are DMARC records, and their tags.
 *
 * Selection is ours (RFC 7489 6.6.3: a record starts with "v=DMARC1";
 * anything else at _dmarc is ignored). The tag-list itself is parsed by
 * libopendmarc (opendmarc_policy_store_dmarc) on a bounded, NUL-free copy:
 * it accepts the lenient forms real records use ("p=reject ;", upper
 * case), and refuses an unknown value of p=, sp=, adkim=, aspf=, pct=, which
 * we report as permerror. Its resolver is never called here.
 *
 * Fuzzed by t/fuzz/fuzz_dmarc.c.
 */
#include <string.h>
#include <sys/types.h>

#include <opendmarc/dmarc.h>

#include "dmarc/dmarc.h"
#include "util/buf.h"

static int wsp(char c)
{
    return c == ' ' || c == '\t';
}

int dmarc_record_is_dmarc(const char *txt, size_t len)
{
    size_t i = 0;
    if (len < 1 || txt[0] != 'v')
        return 0;
    for (i = 1; i < len && wsp(txt[i]); i++)
        ;
    if (i >= len || txt[i] != '=')
        return 0;
    for (i++; i < len && wsp(txt[i]); i++)
        ;
    if (len - i < 6 || memcmp(txt + i, "DMARC1", 6) != 0)
        return 0;
    for (i += 6; i < len && wsp(txt[i]); i++)
        ;
    return i == len || txt[i] == ';';
}

static enum dmarc_policy policy_of(int p)
{
    return p == DMARC_RECORD_P_REJECT ? DMARC_P_REJECT
         : p == DMARC_RECORD_P_QUARANTINE ? DMARC_P_QUARANTINE : DMARC_P_NONE;
}

/* One libopendmarc parse of rec (a private copy: the library takes u_char *). */
static int od_parse(const char *rec, struct dmarc_record *r)
{
    DMARC_POLICY_T *pc = opendmarc_policy_connect_init((u_char *)"0.0.0.0", 0);
    if (pc == NULL)
        return DMARC_PARSE_ERROR_NO_ALLOC;
    char copy[DMARC_RECORD_MAX + 16];
    str_copy(copy, sizeof copy, rec);
    int st = opendmarc_policy_store_dmarc(pc, (u_char *)copy, (u_char *)"invalid", NULL);
    if (st == DMARC_PARSE_OKAY) {
        int p = 0, sp = 0, pct = 100, adkim = 0, aspf = 0;
        opendmarc_policy_fetch_p(pc, &p);
        opendmarc_policy_fetch_sp(pc, &sp);
        opendmarc_policy_fetch_pct(pc, &pct);
        opendmarc_policy_fetch_adkim(pc, &adkim);
        opendmarc_policy_fetch_aspf(pc, &aspf);
        r->p = policy_of(p);
        r->has_sp = sp != DMARC_RECORD_P_UNSPECIFIED;
        r->sp = r->has_sp ? policy_of(sp) : r->p;
        r->pct = pct < 0 ? 100 : pct > 100 ? 100 : pct;
        r->adkim = adkim == DMARC_RECORD_A_STRICT ? 's' : 'r';
        r->aspf = aspf == DMARC_RECORD_A_STRICT ? 's' : 'r';
    }
    opendmarc_policy_connect_shutdown(pc);
    return st;
}

/* A rua= tag anywhere in the record (RFC 7489 6.6.3: then p= defaults to none). */
static int has_rua(const char *rec)
{
    for (const char *p = rec; (p = strchr(p, ';')) != NULL; ) {
        p++;
        while (wsp(*p))
            p++;
        if (strncasecmp(p, "rua", 3) == 0) {
            const char *q = p + 3;
            while (wsp(*q))
                q++;
            if (*q == '=')
                return 1;
        }
    }
    return 0;
}

int dmarc_record_parse(const char *record, struct dmarc_record *r, char *why, size_t cap)
{
    memset(r, 0, sizeof *r);
    size_t n = strlen(record);
    if (n >= DMARC_RECORD_MAX || !dmarc_record_is_dmarc(record, n)) {
        str_copy(why, cap, n >= DMARC_RECORD_MAX ? "record too long" : "not a DMARC record");
        return -1;
    }
    int st = od_parse(record, r);
    if (st == DMARC_PARSE_ERROR_NO_REQUIRED_P && has_rua(record)) {
        char with_p[DMARC_RECORD_MAX + 16];
        str_format(with_p, sizeof with_p, "%s;p=none", record);
        st = od_parse(with_p, r);
    }
    if (st != DMARC_PARSE_OKAY) {
        str_format(why, cap, "invalid DMARC record: %s", opendmarc_policy_status_to_str(st));
        return -1;
    }
    return 0;
}
