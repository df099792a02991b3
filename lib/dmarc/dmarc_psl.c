/*
 * dmarc_psl.c - organizational domains (RFC 7489 3.2) from the Public
 * Suffix List, through libopendmarc's table (opendmarc_tld_read_file,
 * opendmarc_get_tld). The list is read once, before a chroot; lookups only
 * read the table (one thread per process asks: cleanup's loop, the CLI).
 * Without the list the organizational domain is the last two labels, which
 * is right for the common cases and logged once as a degradation.
 */
#include <ctype.h>
#include <string.h>
#include <sys/types.h>

#include <opendmarc/dmarc.h>

#include "dmarc/dmarc.h"
#include "util/buf.h"
#include "util/log.h"

/* Exported by libopendmarc but not declared in its header. */
int opendmarc_get_tld(u_char *domain, u_char *tld, size_t tld_len);

static int psl_loaded;

int dmarc_init(const char *psl_path)
{
    if (psl_loaded)
        return 0;
    char path[1024];
    str_copy(path, sizeof path, psl_path && *psl_path ? psl_path : DMARC_PSL_DEFAULT);
    /* the file's comments start with "//", wildcards with "*.", exceptions "!" */
    if (opendmarc_tld_read_file(path, "//", "*.", "!") != 0) {
        log_warn("dmarc: cannot read the public suffix list %s: organizational domains "
                 "are the last two labels", path);
        return -1;
    }
    psl_loaded = 1;
    return 0;
}

/* The last two labels of d (or d itself). */
static void last_two(const char *d, char *out, size_t cap)
{
    const char *p = d + strlen(d);
    int dots = 0;
    while (p > d) {
        if (p[-1] == '.' && ++dots == 2)
            break;
        p--;
    }
    str_copy(out, cap, p);
}

void dmarc_org_domain(const char *d, char *out, size_t cap)
{
    char low[DNS_NAME_MAX + 1];
    size_t n = 0;
    for (; d[n] && n < sizeof low - 1; n++)
        low[n] = (char)tolower((unsigned char)d[n]);
    while (n > 0 && low[n - 1] == '.')
        n--;                                   /* a final dot names the same domain */
    low[n] = '\0';
    u_char tld[DNS_NAME_MAX + 1] = "";
    if (psl_loaded && opendmarc_get_tld((u_char *)low, tld, sizeof tld) == 0 && tld[0])
        str_copy(out, cap, (const char *)tld);
    else
        last_two(low, out, cap);
}
