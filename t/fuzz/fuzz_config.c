/*
 * fuzz_config.c - libFuzzer target for the postern.conf parser and loader
 * (lib/config/config_parse.c, lib/config/config.c, lib/config/config_value.c).
 *
 * The input is loaded with config_load_buffer() as if it were a file in a
 * directory that does not exist, so relative includes match nothing; the
 * value parsers are also fed the first line directly. Any crash, leak,
 * hang or sanitizer report is a bug in the config code.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <netinet/in.h>

#include "config/config.h"

static void fuzz_values(const uint8_t *data, size_t size)
{
    char s[128];
    size_t n = size < sizeof(s) - 1 ? size : sizeof(s) - 1;
    const uint8_t *nl = memchr(data, '\n', n);
    if (nl)
        n = (size_t)(nl - data);
    memcpy(s, data, n);
    s[n] = '\0';
    int64_t v;
    struct cidr c;
    struct sockaddr_storage ss;
    socklen_t len;
    (void)config_parse_size(s, &v);
    (void)config_parse_duration(s, &v);
    if (cidr_parse(s, &c) == 0) {
        struct cidrlist l = { &c, 1 };
        struct sockaddr_in6 a6;
        memset(&a6, 0, sizeof(a6));
        a6.sin6_family = AF_INET6;
        memcpy(&a6.sin6_addr, c.addr, 16);
        if (!cidr_match_sa(&l, (struct sockaddr *)&a6))
            __builtin_trap();         /* a network must contain its own address */
    }
    (void)config_parse_address(s, &ss, &len);
    /* next hops (transport blocks, forward()/lmtp()): what is accepted is whole */
    for (int allow_unix = 0; allow_unix < 2; allow_unix++) {
        struct nexthop nh;
        buf_t msg;
        buf_init(&msg, 64);
        if (config_parse_nexthop(s, allow_unix ? 0 : 25, allow_unix, &nh, &msg) == 0 &&
            (nh.is_unix ? (!allow_unix || nh.path[0] != '/')
                        : (nh.host[0] == '\0' || nh.port < 1 || nh.port > 65535)))
            __builtin_trap();
        buf_free(&msg);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        log_init("fuzz_config", 1, 0, LOG_L_FATAL);
        init = 1;
    }
    fuzz_values(data, size);
    struct config_errors errs = { 0 };
    struct config *c = config_load_buffer("/nonexistent-fuzz-dir/postern.conf",
                                          (const char *)data, size, &errs);
    buf_t b;
    buf_init(&b, 128);
    for (int i = 0; i < errs.n; i++)
        config_error_format(&b, &errs.v[i]);
    if (c != NULL && errs.n != 0)
        __builtin_trap();             /* a config is returned only when clean */
    if (c != NULL) {
        (void)config_is_local_domain(c, "example.test");
        (void)config_domain(c, "tenant.example");
        (void)config_transport(c, "archive");
    }
    buf_free(&b);
    config_free(c);
    config_errors_free(&errs);
    return 0;
}
