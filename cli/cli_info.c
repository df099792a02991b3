/*
 * cli_info.c - `postern version` (version, build options, the libraries
 * linked and their run-time versions) and `postern config show [-n|-d]
 * [KEY...]` (effective settings, like postconf).
 */
#include <event2/event.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <unbound.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "cli.h"
#include "postern_version.h"

int cli_version(struct cli *c, int argc, char **argv)
{
    if (argc > 1) {
        cli_err("version takes no arguments");
        return EX_USAGE_;
    }
    char pcre[64] = "";
    pcre2_config(PCRE2_CONFIG_VERSION, pcre);
    printf("postern %s (%s)\n", POSTERN_VERSION, POSTERN_BUILD);
    printf("prefix:    %s (config %s/etc/postern/postern.conf)\n", config_prefix(),
           config_prefix());
    printf("compiler:  %s\n", __VERSION__);
    printf("openssl:   %s\n", OpenSSL_version(OPENSSL_VERSION));
    printf("libevent:  %s\n", event_get_version());
    printf("libunbound: %s\n", ub_version());
    printf("pcre2:     %s\n", pcre);
    return EX_OK_;
}

static int show_usage(void)
{
    fputs("usage: postern [-c FILE] config show [-n|-d] [KEY...]\n", stderr);
    return EX_USAGE_;
}

int cli_config(struct cli *c, int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "show") != 0)
        return show_usage();
    int mode = 0, i = 2;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "-n") == 0 && mode == 0)
            mode = 'n';
        else if (strcmp(argv[i], "-d") == 0 && mode == 0)
            mode = 'd';
        else
            return show_usage();
    }
    /* the defaults need no file: `config show -d` works before any set-up */
    struct config *cfg = mode == 'd' ? NULL : cli_load_config(c->config_path);
    if (mode != 'd' && cfg == NULL)
        return EX_FAIL;
    static const struct config none;
    buf_t out, err;
    buf_init(&out, 4096);
    buf_init(&err, 64);
    int unknown = config_show(cfg ? cfg : &none, mode, argv + i, argc - i, &out, &err);
    fwrite(out.data, 1, out.len, stdout);
    if (err.len)
        fprintf(stderr, "postern: %.*s", (int)err.len, err.data);
    buf_free(&out);
    buf_free(&err);
    config_free(cfg);
    return unknown ? EX_FAIL : EX_OK_;
}
