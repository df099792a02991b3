/*
 * cli_dmarc.c - `postern [-c FILE] dmarc DOMAIN`: DMARC policy discovery
 * (lib/dmarc, RFC 7489 6.6.3) for DOMAIN as a From domain, through the
 * configured resolver (dns.*), blocking. Prints one "key: value" line each:
 * domain, record (or "none"), where it was found, the organizational
 * domain, the policy that applies to DOMAIN (p= or sp=), pct and the
 * alignment modes. Exit 0 when the answer is known (a record, none, or an
 * invalid record: permerror), 1 on a temporary DNS failure or a
 * configuration/resolver error, 2 for usage (DOMAIN not a domain name).
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "dmarc/dmarc.h"
#include "dns/dns.h"
#include "util/idna.h"

static void print_outcome(const struct dmarc_outcome *o)
{
    printf("domain: %s\n", o->from_domain);
    printf("record: %s\n", o->record[0] ? o->record : "none");
    if (o->record[0])
        printf("record_domain: _dmarc.%s\n", o->record_domain);
    printf("organizational_domain: %s\n", o->org_domain);
    if (o->has_record) {
        printf("policy: %s (%s=)\n", dmarc_policy_name(o->published), o->sp_used ? "sp" : "p");
        printf("pct: %d\n", o->pct);
        printf("alignment: adkim=%c aspf=%c\n", o->adkim, o->aspf);
    } else {
        printf("policy: none (%s)\n", o->reason);
    }
}

int cli_dmarc(struct cli *c, int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '\0' || argv[1][0] == '-' ||
        strlen(argv[1]) > DNS_NAME_MAX) {
        fputs("usage: postern [-c FILE] dmarc DOMAIN\n", stderr);
        return EX_USAGE_;
    }
    char ace[IDNA_ASCII_MAX];           /* a Unicode name: its A-labels (RFC 8616) */
    const char *domain = idna_lookup_name(argv[1], ace);
    if (domain == NULL) {
        cli_err("dmarc: %s: not a valid internationalized domain name", argv[1]);
        return EX_USAGE_;
    }
    struct config *cfg;
    struct dns_ctx *ctx = cli_resolver(c->config_path, &cfg);
    if (!ctx)
        return EX_FAIL;
    dmarc_init(NULL);
    /* no SPF or DKIM: only discovery; draw 0 keeps pct= from lowering it */
    struct dmarc_input in = { .from_domain = domain, .draw = 0 };
    struct dmarc_outcome o;
    dmarc_check_sync(ctx, &in, 0, &o);
    dns_ctx_free(ctx);
    config_free(cfg);
    if (o.result == DMARC_R_PERMERROR && !o.record[0]) {
        cli_err("dmarc: %s: %s", argv[1], o.reason);
        return EX_USAGE_;
    }
    if (o.result == DMARC_R_TEMPERROR) {
        cli_err("dmarc: %s: temperror: %s", argv[1], o.reason);
        return EX_FAIL;
    }
    print_outcome(&o);
    return EX_OK_;
}
