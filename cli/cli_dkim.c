/*
 * cli_dkim.c - `postern dkim keygen|verify|sign` (lib/dkim).
 *
 *  keygen DOMAIN SELECTOR [--type rsa|ed25519]: a new private key in
 *    authentication.dkim_keys as DOMAIN.SELECTOR.key (PEM, mode 0600, owned
 *    by root and the postern group when run as root: cleanup reads it before
 *    dropping privileges); never over an existing file. Prints the DNS
 *    record to publish ("SELECTOR._domainkey.DOMAIN. IN TXT ...") and, on
 *    stderr, where the key went and the dkim block that uses it.
 *  verify [FILE]: one line per DKIM-Signature, "DOMAIN SELECTOR RESULT
 *    REASON" (tab-separated; "-" for what a broken signature lacks), keys
 *    through the configured resolver (dns.*); "- - none no DKIM-Signature"
 *    when there is none. Exit 0 whatever the results.
 *  sign DOMAIN [FILE]: the message with a DKIM-Signature per configured key
 *    of DOMAIN (the domain's dkim blocks) added on top.
 * Exit: 0 ok, 1 failure (configuration, key, file), 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "cli.h"
#include "dkim/pdk.h"
#include "dns/dns.h"
#include "util/fdio.h"

#define MSG_MAX (256LL * 1024 * 1024)

static int usage(void)
{
    fputs("usage: postern dkim keygen DOMAIN SELECTOR [--type rsa|ed25519]\n"
          "       postern [-c FILE] dkim verify [FILE]\n"
          "       postern [-c FILE] dkim sign DOMAIN [FILE]\n", stderr);
    return EX_USAGE_;
}

/* A domain or selector as it may appear in a file name and in DNS. */
static int label_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253 || s[0] == '.' || s[0] == '-' || strstr(s, ".."))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_'))
            return 0;
    }
    return 1;
}

static EVP_PKEY *new_key(int ed25519)
{
    EVP_PKEY_CTX *kc = EVP_PKEY_CTX_new_id(ed25519 ? EVP_PKEY_ED25519 : EVP_PKEY_RSA, NULL);
    EVP_PKEY *pk = NULL;
    if (kc && EVP_PKEY_keygen_init(kc) == 1 &&
        (ed25519 || EVP_PKEY_CTX_set_rsa_keygen_bits(kc, 2048) == 1))
        EVP_PKEY_keygen(kc, &pk);
    EVP_PKEY_CTX_free(kc);
    return pk;
}

/* The key directory (made 0750 when missing) and the group that may read. */
static int key_dir(const struct config *cfg, gid_t *gid_r)
{
    struct passwd *pw = getpwnam(cfg->user);
    struct group *gr = cfg->group ? getgrnam(cfg->group) : NULL;
    *gid_r = gr ? gr->gr_gid : pw ? pw->pw_gid : getgid();
    if (mkdir(cfg->dkim_keys, 0750) == 0) {
        if (geteuid() == 0 && chown(cfg->dkim_keys, 0, *gid_r) < 0) {
            cli_err("chown %s: %s", cfg->dkim_keys, strerror(errno));
            return -1;
        }
    } else if (errno != EEXIST) {
        cli_err("mkdir %s: %s", cfg->dkim_keys, strerror(errno));
        return -1;
    }
    return 0;
}

static void print_txt(const char *domain, const char *selector, const struct pdk_key *k)
{
    buf_t t;
    buf_init(&t, 512);
    pdk_key_txt(k, &t);
    printf("%s._domainkey.%s. IN TXT (", selector, domain);
    for (size_t i = 0; i < t.len; i += 250)   /* character-strings of <= 255 octets */
        printf(" \"%.*s\"", (int)(t.len - i > 250 ? 250 : t.len - i), t.data + i);
    printf(" )\n");
    buf_free(&t);
}

static int keygen(const struct config *cfg, int argc, char **argv)
{
    int ed = 0;
    if (argc == 6 && strcmp(argv[4], "--type") == 0 &&
        (strcmp(argv[5], "rsa") == 0 || strcmp(argv[5], "ed25519") == 0))
        ed = strcmp(argv[5], "ed25519") == 0;
    else if (argc != 4)
        return usage();
    const char *domain = argv[2], *selector = argv[3];
    if (!label_ok(domain) || !label_ok(selector)) {
        cli_err("dkim keygen: invalid domain or selector");
        return EX_USAGE_;
    }
    gid_t gid;
    if (key_dir(cfg, &gid) < 0)
        return EX_FAIL;
    char path[4096];
    if (str_format(path, sizeof(path), "%s/%s.%s.key", cfg->dkim_keys, domain, selector) < 0)
        return EX_FAIL;
    EVP_PKEY *pk = new_key(ed);
    if (pk == NULL) {
        cli_err("dkim keygen: key generation failed");
        return EX_FAIL;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        cli_err("%s: %s%s", path, strerror(errno), errno == EEXIST ? " (not replaced)" : "");
        EVP_PKEY_free(pk);
        return EX_FAIL;
    }
    BIO *b = BIO_new(BIO_s_mem());
    char *pem = NULL;
    long n = (b && PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL) == 1)
             ? BIO_get_mem_data(b, &pem) : -1;
    int rc = n > 0 && fchmod(fd, 0600) == 0 &&
             (geteuid() != 0 || fchown(fd, 0, gid) == 0) &&
             fdio_write_all(fd, pem, (size_t)n) == 0 && fsync(fd) == 0 ? 0 : -1;
    int e = errno;
    BIO_free(b);
    EVP_PKEY_free(pk);
    if (close(fd) < 0 || rc < 0) {
        cli_err("%s: %s", path, strerror(rc < 0 ? e : errno));
        unlink(path);
        return EX_FAIL;
    }
    struct pdk_key k;
    char err[256];
    if (pdk_key_load(&k, path, domain, selector, err, sizeof(err)) < 0) {
        cli_err("%s", err);
        return EX_FAIL;
    }
    print_txt(domain, selector, &k);
    fprintf(stderr, "postern: key written to %s; use it with\n"
            "  domain \"%s\" { dkim { selector = \"%s\"; key = \"%s\"; } }\n",
            path, domain, selector, path);
    pdk_key_free(&k);
    return EX_OK_;
}

/* The message from FILE or stdin. */
static int read_message(const char *path, buf_t *out)
{
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : 0;
    if (fd < 0) {
        cli_err("%s: %s", path, strerror(errno));
        return -1;
    }
    int r = fdio_read_file(fd, out, (size_t)MSG_MAX);
    int e = errno;
    if (path)
        close(fd);
    if (r < 0)
        cli_err("%s: %s", path ? path : "stdin", e == EFBIG ? "message too large" : strerror(e));
    return r;
}

static int verify(const struct config *cfg, int argc, char **argv)
{
    if (argc > 3)
        return usage();
    buf_t msg;
    struct dns_ctx *ctx = cli_dns_ctx(cfg);
    if (!ctx)
        return EX_FAIL;
    buf_init(&msg, 65536);
    if (read_message(argc > 2 ? argv[2] : NULL, &msg) < 0) {
        buf_free(&msg);
        dns_ctx_free(ctx);
        return EX_FAIL;
    }
    struct pdk_job *j = pdk_job_new("postern-dkim-verify", 0);
    pdk_job_verify(j, pdk_lookup_dns, ctx);
    pdk_job_feed(j, msg.data, msg.len);
    struct pdk_verdict v;
    pdk_job_end(j, &v, NULL, NULL, 0);
    pdk_job_free(j);
    if (v.n == 0)
        printf("-\t-\tnone\tno DKIM-Signature\n");
    for (int i = 0; i < v.n; i++)
        printf("%s\t%s\t%s\t%s\n", v.sig[i].domain[0] ? v.sig[i].domain : "-",
               v.sig[i].selector[0] ? v.sig[i].selector : "-",
               pdk_result_name(v.sig[i].result), v.sig[i].reason[0] ? v.sig[i].reason : "-");
    buf_free(&msg);
    dns_ctx_free(ctx);
    return EX_OK_;
}

static int sign(const struct config *cfg, int argc, char **argv)
{
    if (argc < 3 || argc > 4)
        return usage();
    const struct domain_conf *d = config_domain(cfg, argv[2]);
    if (d == NULL || d->ndkim == 0) {
        cli_err("dkim sign: no dkim block for domain \"%s\" in %s", argv[2], cfg->path);
        return EX_FAIL;
    }
    buf_t msg, sigs;
    buf_init(&msg, 65536);
    if (read_message(argc > 3 ? argv[3] : NULL, &msg) < 0) {
        buf_free(&msg);
        return EX_FAIL;
    }
    struct pdk_job *j = pdk_job_new("postern-dkim-sign", 0);
    struct pdk_key keys[CFG_DKIM_KEYS_MAX];
    int nk = 0, rc = EX_OK_;
    char err[256];
    for (int i = 0; i < d->ndkim && nk < CFG_DKIM_KEYS_MAX; i++) {
        if (pdk_key_load(&keys[nk], d->dkim[i].key, d->name, d->dkim[i].selector, err,
                         sizeof(err)) < 0 || pdk_job_sign(j, &keys[nk], err, sizeof(err)) < 0) {
            cli_err("dkim sign: selector %s: %s", d->dkim[i].selector, err);
            rc = EX_FAIL;
            continue;
        }
        nk++;
    }
    buf_init(&sigs, 2048);
    if (rc == EX_OK_) {
        pdk_job_feed(j, msg.data, msg.len);
        pdk_job_end(j, NULL, &sigs, err, sizeof(err));
        if (err[0]) {
            cli_err("dkim sign: %s", err);
            rc = EX_FAIL;
        }
    }
    if (rc == EX_OK_) {
        int crlf = msg.len > 1 && memchr(msg.data, '\r', msg.len) != NULL;
        for (size_t i = 0; i < sigs.len; i++) {     /* the message's own line ends */
            if (crlf && sigs.data[i] == '\n')
                putchar('\r');
            putchar(sigs.data[i]);
        }
        fwrite(msg.data, 1, msg.len, stdout);
        if (fflush(stdout) != 0)
            rc = EX_FAIL;
    }
    pdk_job_free(j);
    for (int i = 0; i < nk; i++)
        pdk_key_free(&keys[i]);
    buf_free(&sigs);
    buf_free(&msg);
    return rc;
}

int cli_dkim(struct cli *c, int argc, char **argv)
{
    if (argc < 2)
        return usage();
    const char *sub = argv[1];
    if (strcmp(sub, "keygen") != 0 && strcmp(sub, "verify") != 0 && strcmp(sub, "sign") != 0)
        return usage();
    if (strcmp(sub, "keygen") == 0 && argc != 4 && argc != 6)
        return usage();
    struct config *cfg = cli_load_config(c->config_path);
    if (!cfg)
        return EX_FAIL;
    int rc = strcmp(sub, "keygen") == 0 ? keygen(cfg, argc, argv)
             : strcmp(sub, "verify") == 0 ? verify(cfg, argc, argv)
             : sign(cfg, argc, argv);
    config_free(cfg);
    return rc;
}
