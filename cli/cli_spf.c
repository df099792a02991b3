/*
 * cli_spf.c - `postern [-c FILE] spf IP SENDER [HELO]`: one SPF check
 * (lib/spf) through the configured resolver (dns.*), blocking. Prints the
 * result word, a space and the explanation (for fail: the domain's exp=
 * text or the default; otherwise what decided). Exit 0 on any result;
 * 1 for a configuration or resolver error, 2 for usage.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "dns/dns.h"
#include "spf/spf.h"

struct dns_ctx *cli_dns_ctx(const struct config *cfg)
{
    struct dns_config dc;
    buf_t err;
    dns_config_from(cfg, &dc);
    buf_init(&err, 64);
    struct dns_ctx *ctx = dns_ctx_new(&dc, NULL, &err);
    if (!ctx)
        cli_err("dns: %s", err.data);
    buf_free(&err);
    return ctx;
}

/* The configuration and its resolver for a diagnostic command (spf,
 * dmarc): NULL after saying why (nothing to free then). */
struct dns_ctx *cli_resolver(const char *config_path, struct config **cfg_r)
{
    struct config *cfg = cli_load_config(config_path);
    struct dns_ctx *ctx = cfg ? cli_dns_ctx(cfg) : NULL;
    if (!ctx && cfg) {
        config_free(cfg);
        cfg = NULL;
    }
    *cfg_r = cfg;
    return ctx;
}

int cli_spf(struct cli *c, int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fputs("usage: postern [-c FILE] spf IP SENDER [HELO]\n", stderr);
        return EX_USAGE_;
    }
    struct config *cfg;
    struct dns_ctx *ctx = cli_resolver(c->config_path, &cfg);
    if (!ctx)
        return EX_FAIL;
    struct spf_request rq = { .ip = argv[1], .sender = argv[2],
                              .helo = argc > 3 ? argv[3] : "", .receiver = cfg->hostname };
    struct spf_outcome o;
    spf_check_sync(ctx, &rq, 0, &o);
    printf("%s %s\n", spf_result_name(o.result),
           o.result == SPF_FAIL ? o.explanation : o.reason);
    dns_ctx_free(ctx);
    config_free(cfg);
    return EX_OK_;
}
