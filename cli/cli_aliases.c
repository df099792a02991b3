/*
 * cli_aliases.c - `postern newaliases` (and bin/newaliases until the
 * sendmail-compatible program takes that name): compile local.aliases into
 * its index with aliases_compile() (lib/local/aliases.h). A broken source
 * prints every file:line:col error, exits 1 and keeps the old index.
 */
#include <stdio.h>

#include "cli.h"
#include "local/aliases.h"

int cli_aliases_build(const struct config *cfg)
{
    if (cfg->local_aliases == NULL || cfg->local_aliases[0] == '\0') {
        cli_err("newaliases: local.aliases is not set");
        return -1;
    }
    buf_t err, idx;
    buf_init(&err, 256);
    buf_init(&idx, 64);
    aliases_db_path(cfg->local_aliases, &idx);
    int n = aliases_compile(cfg->local_aliases, NULL, &err);
    if (n < 0) {
        fputs(err.data ? err.data : "", stderr);
        cli_err("newaliases: %s not rebuilt: the old index stays", idx.data);
    } else {
        printf("newaliases: %d aliases in %s\n", n, idx.data);
    }
    buf_free(&err);
    buf_free(&idx);
    return n < 0 ? -1 : 0;
}

int cli_newaliases(struct cli *c, int argc, char **argv)
{
    struct config *cfg = cli_load_config(c->config_path);
    if (cfg == NULL)
        return EX_FAIL;
    int rc = cli_aliases_build(cfg) == 0 ? 0 : EX_FAIL;
    config_free(cfg);
    return rc;
}
