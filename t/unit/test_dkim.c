/*
 * test_dkim.c - lib/dkim without DNS: the tag-list parser, the
 * Authentication-Results composer and recogniser (golden texts), the best
 * result and domain list, and libopendkim round trips (sign with pdk_job,
 * verify with a table of key records in place of the resolver): rsa and
 * ed25519 pass, a changed header or body fails, a missing key is permerror,
 * a failed lookup temperror, a testing key says so, LF and CRLF input sign
 * alike, more than PDK_MAX_SIGS signatures stop at the bound, and an x= in
 * the past fails as expired.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <opendkim/dkim.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "dkim/authres.h"
#include "dkim/pdk.h"

/* ---- tag lists ------------------------------------------------------------ */

static void test_tags(void **state)
{
    struct pdk_tag t[PDK_TAGS_MAX];
    char v[64];
    const char *s = " v=1; a = rsa-sha256 ;\r\n\td=ex\r\n ample.test; b=ab c\td;";
    int n = pdk_tags_parse(s, strlen(s), t, PDK_TAGS_MAX);
    assert_int_equal(n, 4);
    assert_int_equal(pdk_tags_get(t, n, "a", v, sizeof v), 0);
    assert_string_equal(v, "rsa-sha256");
    pdk_tags_get(t, n, "d", v, sizeof v);
    assert_string_equal(v, "example.test");
    pdk_tags_get(t, n, "b", v, sizeof v);
    assert_string_equal(v, "abcd");
    assert_int_equal(pdk_tags_get(t, n, "x", v, sizeof v), -1);
    static const char *const bad[] = {
        "v=1; v=2", "=1", "v", "v=1;;a=2", "; v=1", "1v=2", "v w=1", "a-b=1",
        "averyveryverylongtagname=1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (pdk_tags_parse(bad[i], strlen(bad[i]), t, PDK_TAGS_MAX) != -1)
            fail_msg("should not parse: %s", bad[i]);
    assert_int_equal(pdk_tags_parse("", 0, t, PDK_TAGS_MAX), 0);
    assert_int_equal(pdk_tags_parse("k=rsa; p=", 9, t, PDK_TAGS_MAX), 2);
    assert_int_equal(t[1].vlen, 0);
    /* truncated copies stay terminated */
    pdk_tags_get(t, 2, "k", v, 2);
    assert_string_equal(v, "r");
    pdk_sanitize(v, sizeof v, "a\"b;c\r\nd\x80(e)", 11);
    assert_string_equal(v, "a?b?c??d??e");
}

/* ---- Authentication-Results ------------------------------------------------ */

static void test_authres_format(void **state)
{
    struct pdk_verdict v = { 0 };
    v.n = 2;
    v.sig[0] = (struct pdk_sig){ PDK_PASS, "example.org", "s1", "AbC/dE+fGh12", "rsa-sha256", "" };
    v.sig[1] = (struct pdk_sig){ PDK_FAIL, "x.test", "sel", "zz", "ed25519-sha256",
                                 "body hash \"did\" not verify" };
    struct authres a = { .spf_result = "pass", .spf_domain = "example.org",
                         .spf_sender = "a b@example.org", .dkim_on = 1, .dkim = &v,
                         .dmarc_result = "pass", .dmarc_header_from = "example.org",
                         .dmarc_policy = "reject" };
    buf_t out;
    buf_init(&out, 256);
    authres_format(&out, "mx.test", &a);
    assert_string_equal(out.data,
        "Authentication-Results: mx.test;\n"
        "\tspf=pass smtp.mailfrom=\"a b@example.org\";\n"
        "\tdkim=pass\n\t header.d=example.org header.s=s1 header.b=AbC/dE+fGh12 header.a=rsa-sha256;\n"
        "\tdkim=fail reason=\"body hash \\\"did\\\" not verify\"\n"
        "\t header.d=x.test header.s=sel header.b=zz header.a=ed25519-sha256;\n"
        "\tdmarc=pass policy.dmarc=reject header.from=example.org\n");
    buf_reset(&out);
    struct authres none = { 0 };
    authres_format(&out, "mx.test", &none);
    assert_string_equal(out.data, "Authentication-Results: mx.test; none\n");
    buf_reset(&out);
    struct authres helo = { .spf_result = "fail", .spf_domain = "h.test", .spf_sender = "",
                            .spf_helo = 1, .dkim_on = 1 };
    authres_format(&out, "mx.test", &helo);
    assert_string_equal(out.data,
        "Authentication-Results: mx.test;\n\tspf=fail smtp.helo=h.test;\n\tdkim=none\n");
    buf_free(&out);
}

static void test_authres_ours(void **state)
{
    static const struct { const char *f; int ours; } t[] = {
        { "Authentication-Results: mx.test; dkim=pass", 1 },
        { "authentication-results:MX.TEST;spf=pass", 1 },
        { "Authentication-Results : mx.test 1; none", 1 },
        { "Authentication-Results: (c (nested)) mx.test;\n none", 1 },
        { "Authentication-Results:\n\tmx.test\n\t; none", 1 },
        { "Authentication-Results: \"mx.test\"; none", 1 },
        { "Authentication-Results: mx.test.evil; none", 0 },
        { "Authentication-Results: other.test; dkim=pass header.d=mx.test", 0 },
        { "Authentication-Results-Original: mx.test; none", 0 },
        { "X-Authentication-Results: mx.test; none", 0 },
        { "Authentication-Results: mx.tes", 0 },
        { "Authentication-Results:", 0 },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (authres_is_ours(t[i].f, strlen(t[i].f), "mx.test") != t[i].ours)
            fail_msg("%s: want %d", t[i].f, t[i].ours);
    const char *h = "Received: x\nAuthentication-Results: MX.test;\n dkim=pass\n"
                    "Subject: s\nAuthentication-Results: o.test; none\n"
                    "Authentication-Results: mx.test; x";
    buf_t out;
    buf_init(&out, 64);
    assert_int_equal(authres_strip(&out, h, strlen(h), "mx.test"), 2);
    assert_string_equal(out.data, "Received: x\nSubject: s\nAuthentication-Results: o.test; none\n");
    buf_free(&out);
}

static void test_verdict(void **state)
{
    struct pdk_verdict v = { 0 };
    assert_int_equal(pdk_verdict_best(&v), PDK_NONE);
    v.n = 4;
    v.sig[0].result = PDK_PERMERROR;
    v.sig[1].result = PDK_TEMPERROR;
    v.sig[2].result = PDK_FAIL;
    v.sig[3].result = PDK_POLICY;
    assert_int_equal(pdk_verdict_best(&v), PDK_FAIL);
    v.sig[3].result = PDK_PASS;
    str_copy(v.sig[3].domain, sizeof v.sig[3].domain, "b.test");
    v.sig[0].result = PDK_PASS;
    str_copy(v.sig[0].domain, sizeof v.sig[0].domain, "a.test");
    v.sig[1].result = PDK_PASS;
    str_copy(v.sig[1].domain, sizeof v.sig[1].domain, "b.test");
    assert_int_equal(pdk_verdict_best(&v), PDK_PASS);
    buf_t d;
    buf_init(&d, 16);
    pdk_verdict_domains(&v, &d);
    assert_string_equal(d.data, "a.test b.test");
    buf_free(&d);
    assert_string_equal(pdk_result_name(PDK_POLICY), "policy");
}

/* ---- round trips through libopendkim --------------------------------------- */

struct zone {
    const char *name;
    char txt[PDK_TXT_MAX];
    enum pdk_lookup_status st;
};
static struct zone zone[4];
static int lookups;

static enum pdk_lookup_status table(void *arg, const char *name, char *out, size_t cap,
                                    char *why, size_t whylen)
{
    lookups++;
    for (size_t i = 0; i < sizeof zone / sizeof zone[0]; i++)
        if (zone[i].name && strcmp(zone[i].name, name) == 0) {
            if (zone[i].st == PDK_KEY_TEMPFAIL)
                str_copy(why, whylen, "key lookup failed: timeout");
            str_copy(out, cap, zone[i].txt);
            return zone[i].st;
        }
    return PDK_KEY_NOTFOUND;
}

static void make_key(struct pdk_key *k, int ed, const char *sel)
{
    EVP_PKEY_CTX *kc = EVP_PKEY_CTX_new_id(ed ? EVP_PKEY_ED25519 : EVP_PKEY_RSA, NULL);
    EVP_PKEY *pk = NULL;
    assert_int_equal(EVP_PKEY_keygen_init(kc), 1);
    if (!ed)
        EVP_PKEY_CTX_set_rsa_keygen_bits(kc, 1024);
    assert_int_equal(EVP_PKEY_keygen(kc, &pk), 1);
    char path[] = "/tmp/test_dkim_XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    char err[256];
    assert_int_equal(pdk_key_load(k, path, "example.test", sel, err, sizeof err), 0);
    unlink(path);
    EVP_PKEY_free(pk);
    EVP_PKEY_CTX_free(kc);
}

static const char MSG[] = "From: a@example.test\r\nTo: b@x.test\r\nSubject: s\r\n\r\nbody\r\n";

/* Signatures of msg by keys (prepended), as text. */
static char *sign_msg(const char *msg, struct pdk_key *keys, int n)
{
    struct pdk_job *j = pdk_job_new("t", 0);
    char err[256];
    for (int i = 0; i < n; i++)
        assert_int_equal(pdk_job_sign(j, &keys[i], err, sizeof err), 0);
    pdk_job_feed(j, msg, strlen(msg));
    buf_t sigs;
    buf_init(&sigs, 1024);
    pdk_job_end(j, NULL, &sigs, err, sizeof err);
    assert_string_equal(err, "");
    pdk_job_free(j);
    buf_append_str(&sigs, msg);
    char *r = buf_steal(&sigs);
    buf_free(&sigs);
    return r;
}

static void verify(const char *msg, struct pdk_verdict *v)
{
    struct pdk_job *j = pdk_job_new("t", 0);
    pdk_job_verify(j, table, NULL);
    pdk_job_feed(j, msg, strlen(msg));
    pdk_job_end(j, v, NULL, NULL, 0);
    pdk_job_free(j);
}

static void publish(int i, const char *name, const struct pdk_key *k, const char *extra,
                    enum pdk_lookup_status st)
{
    buf_t t;
    buf_init(&t, 512);
    pdk_key_txt(k, &t);
    buf_append_str(&t, extra);
    zone[i].name = name;
    zone[i].st = st;
    str_copy(zone[i].txt, sizeof zone[i].txt, t.data);
    buf_free(&t);
}

static char *replace(const char *s, const char *a, const char *b)
{
    const char *p = strstr(s, a);
    assert_non_null(p);
    buf_t o;
    buf_init(&o, strlen(s) + strlen(b));
    buf_append(&o, s, (size_t)(p - s));
    buf_append_str(&o, b);
    buf_append_str(&o, p + strlen(a));
    char *r = buf_steal(&o);
    buf_free(&o);
    return r;
}

static void test_roundtrip(void **state)
{
    struct pdk_key k[2];
    make_key(&k[0], 0, "s1");
    make_key(&k[1], 1, "s2");
    publish(0, "s1._domainkey.example.test", &k[0], "", PDK_KEY_FOUND);
    publish(1, "s2._domainkey.example.test", &k[1], "; t=y", PDK_KEY_FOUND);
    char *m = sign_msg(MSG, k, 2);
    assert_non_null(strstr(m, "a=rsa-sha256"));
    assert_non_null(strstr(m, "a=ed25519-sha256"));
    assert_non_null(strstr(m, "h=From:To:Subject:from"));   /* From oversigned */
    struct pdk_verdict v;
    verify(m, &v);
    assert_int_equal(v.n, 2);
    assert_int_equal(v.sig[0].result, PDK_PASS);
    assert_string_equal(v.sig[0].domain, "example.test");
    assert_string_equal(v.sig[0].selector, "s1");
    assert_int_equal(strlen(v.sig[0].b), 12);
    assert_int_equal(v.sig[1].result, PDK_PASS);
    assert_string_equal(v.sig[1].reason, "testing key");
    /* the same text with LF line ends verifies too */
    char *lf = xstrdup(m);
    size_t j = 0;
    for (size_t i = 0; lf[i]; i++)
        if (lf[i] != '\r')
            lf[j++] = lf[i];
    lf[j] = '\0';
    verify(lf, &v);
    assert_int_equal(pdk_verdict_best(&v), PDK_PASS);
    /* a changed header, a changed body */
    char *h = replace(m, "Subject: s", "Subject: S");
    verify(h, &v);
    assert_int_equal(v.sig[0].result, PDK_FAIL);
    assert_int_equal(v.sig[1].result, PDK_FAIL);
    char *b = replace(m, "body", "bodY");
    verify(b, &v);
    assert_int_equal(v.sig[0].result, PDK_FAIL);
    assert_string_equal(v.sig[0].reason, "body hash did not verify");
    /* no key, a failed lookup: the other signature is still checked */
    zone[0].st = PDK_KEY_NOTFOUND;
    zone[1].st = PDK_KEY_TEMPFAIL;
    verify(m, &v);
    assert_int_equal(v.sig[0].result, PDK_PERMERROR);
    assert_int_equal(v.sig[1].result, PDK_TEMPERROR);
    assert_string_equal(v.sig[1].reason, "key lookup failed: timeout");
    zone[1].st = PDK_KEY_FOUND;
    verify(m, &v);
    assert_int_equal(v.sig[1].result, PDK_PASS);
    /* unsigned: none */
    verify(MSG, &v);
    assert_int_equal(v.n, 0);
    free(h);
    free(b);
    free(lf);
    free(m);
    pdk_key_free(&k[0]);
    pdk_key_free(&k[1]);
}

static void test_too_many(void **state)
{
    struct pdk_key k;
    make_key(&k, 1, "s2");
    publish(1, "s2._domainkey.example.test", &k, "", PDK_KEY_FOUND);
    buf_t m;
    buf_init(&m, 4096);
    char *one = sign_msg(MSG, &k, 1);
    size_t siglen = strlen(one) - strlen(MSG);
    for (int i = 0; i < PDK_MAX_SIGS + 3; i++)
        buf_append(&m, one, siglen);
    buf_append_str(&m, MSG);
    struct pdk_verdict v;
    lookups = 0;
    verify(m.data, &v);
    assert_int_equal(v.n, PDK_MAX_SIGS + 1);
    assert_int_equal(v.sig[0].result, PDK_PASS);
    assert_int_equal(v.sig[PDK_MAX_SIGS].result, PDK_PERMERROR);
    assert_non_null(strstr(v.sig[PDK_MAX_SIGS].reason, "3 more signatures"));
    assert_true(lookups <= PDK_MAX_SIGS);
    free(one);
    buf_free(&m);
    pdk_key_free(&k);
}

/* x= in the past: a signature made by a library of the test's own with a
 * fixed time in 2001 and a 60 s lifetime. */
static void test_expired(void **state)
{
    struct pdk_key k;
    make_key(&k, 0, "s1");
    publish(0, "s1._domainkey.example.test", &k, "", PDK_KEY_FOUND);
    DKIM_LIB *lib = dkim_init(NULL, NULL);
    uint64_t fixed = 1000000000, ttl = 60;
    dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_FIXEDTIME, &fixed, sizeof fixed);
    dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNATURETTL, &ttl, sizeof ttl);
    DKIM_STAT st;
    DKIM *d = dkim_sign(lib, (const u_char *)"t", NULL, (dkim_sigkey_t)k.pem,
                        (const u_char *)"s1", (const u_char *)"example.test", DKIM_CANON_RELAXED,
                        DKIM_CANON_RELAXED, DKIM_SIGN_RSASHA256, -1, &st);
    assert_non_null(d);
    assert_int_equal(dkim_chunk(d, (u_char *)MSG, strlen(MSG)), DKIM_STAT_OK);
    dkim_chunk(d, NULL, 0);
    assert_int_equal(dkim_eom(d, NULL), DKIM_STAT_OK);
    u_char *hdr;
    size_t len;
    assert_int_equal(dkim_getsighdr_d(d, 16, &hdr, &len), DKIM_STAT_OK);
    buf_t m;
    buf_init(&m, 1024);
    buf_printf(&m, "DKIM-Signature: %.*s\r\n%s", (int)len, (const char *)hdr, MSG);
    assert_non_null(strstr(m.data, "x=1000000060"));
    dkim_free(d);
    dkim_close(lib);
    struct pdk_verdict v;
    verify(m.data, &v);
    assert_int_equal(v.n, 1);
    assert_int_equal(v.sig[0].result, PDK_FAIL);
    assert_string_equal(v.sig[0].reason, "signature expired");
    buf_free(&m);
    pdk_key_free(&k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tags),
        cmocka_unit_test(test_authres_format),
        cmocka_unit_test(test_authres_ours),
        cmocka_unit_test(test_verdict),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_too_many),
        cmocka_unit_test(test_expired),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
