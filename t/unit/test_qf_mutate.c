/*
 * test_qf_mutate.c - golden tests of lib/filter/qf_mutate.c: for each mutation,
 * at the data stage and at postq, the byte-exact queue file it makes. Each
 * case writes an input queue file, applies the envelope part
 * (qfm_apply_env) and writes the new file (qfm_write), then compares it
 * byte for byte with a file written from the expected envelope (built by
 * hand) and the expected content (a literal).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "util/buf.h"
#include "filter/qf_mutate.h"
#include "mail/qfile.h"
#include "filter/filter_mut.h"

#define RCVD "Received: from c.example (c.example [192.0.2.1])\n\tby mx.example.test; Sat, 5 Dec 2026\n"
#define MSG  RCVD "From: a@example.org\nSubject: hello\nX-Keep: 1\n\nbody line\n"

/* ---- helpers ------------------------------------------------------------ */

static void set_str(char **f, const char *s)
{
    if (*f && **f)
        free(*f);
    *f = xstrdup(s);
}

/* The input envelope: two pending recipients. */
static void make_env(struct qf_env *e)
{
    qf_env_init(e);
    set_str(&e->queue_id, "4Q7ZK2M0001ABCD042");
    e->arrival = 1700000000123456LL;
    set_str(&e->sender, "alice@example.org");
    set_str(&e->client_ip, "192.0.2.1");
    set_str(&e->helo, "c.example");
    set_str(&e->protocol, "ESMTP");
    qf_env_add_rcpt(e, "bob@example.test", "", 0);
    qf_env_add_rcpt(e, "carol@example.test", "", 0);
}

static int memfd(void)
{
    int fd = memfd_create("qfm", MFD_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

static int write_file(const struct qf_env *e, const char *content, size_t n)
{
    int fd = memfd();
    struct qf_writer *w = qf_write_begin(fd, e);
    assert_non_null(w);
    assert_int_equal(qf_write_content(w, content, n), 0);
    assert_int_equal(qf_write_end(w), 0);
    return fd;
}

static char *slurp(int fd, size_t *len_r)
{
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    char *p = xmalloc((size_t)st.st_size + 1);
    assert_int_equal(qf_pread_all(fd, p, (size_t)st.st_size, 0), 0);
    *len_r = (size_t)st.st_size;
    return p;
}

struct mcase {
    const struct filter_mut *muts;
    int n;
    enum stage stage;
    enum verdict v;
};

static int ndiscarded;
static void on_discard(void *arg, int i, const char *why)
{
    ndiscarded++;
    assert_string_equal(why, "removed by rule \"r\"");
}

/* Apply c to (make_env, content) and compare the new file with one made of
 * want (an envelope) and want_content. want is freed. */
static void check(const struct mcase *c, const char *content, struct qf_env *want,
                  const char *want_content, struct qfm_result *r_out)
{
    struct qf_env in, env;
    make_env(&in);
    int ifd = write_file(&in, content, strlen(content));
    qf_env_free(&in);
    char err[128];
    assert_int_equal(qf_read(ifd, &env, err, sizeof(err)), 0);
    struct qfm_result r;
    qfm_apply_env(&env, c->stage, c->v, "r", c->muts, c->n, on_discard, NULL, &r);
    int ofd = memfd();
    assert_int_equal(qfm_write(ofd, &env, ifd, env.content_off, env.content_len, c->muts, c->n), 0);
    int wfd = write_file(want, want_content, strlen(want_content));
    size_t glen, wlen;
    char *got = slurp(ofd, &glen), *exp = slurp(wfd, &wlen);
    /* the content first, for a readable failure */
    struct qf_env back;
    assert_int_equal(qf_read(ofd, &back, err, sizeof(err)), 0);
    assert_int_equal(back.content_len, strlen(want_content));
    assert_memory_equal(got + back.content_off, want_content, strlen(want_content));
    assert_int_equal(glen, wlen);
    assert_memory_equal(got, exp, glen);
    if (r_out)
        *r_out = r;
    free(got);
    free(exp);
    qf_env_free(&back);
    qf_env_free(&env);
    qf_env_free(want);
    close(ifd);
    close(ofd);
    close(wfd);
}

#define MUT(k, rc, a, a2) { (uint32_t)(k), (char *)(rc), (char *)(a), (char *)(a2), (char *)"r" }

/* One header mutation at data and at postq: same content, notes differ
 * only by the "postq: " prefix. */
static void check_both(const struct filter_mut *m, int n, const char *content,
                       const char *want_content, const char *const *notes)
{
    for (int s = 0; s < 2; s++) {
        struct mcase c = { m, n, s ? STAGE_POSTQ : STAGE_DATA, V_NEXT };
        struct qf_env want;
        make_env(&want);
        for (int i = 0; notes[i]; i++) {
            char b[1200];
            snprintf(b, sizeof(b), "%s%s", s ? QFM_NOTE_POSTQ : "", notes[i]);
            qf_env_add_note(&want, b);
        }
        check(&c, content, &want, want_content, NULL);
    }
}

/* ---- headers ------------------------------------------------------------- */

static void test_add_header_after_received(void **st)
{
    static const struct filter_mut m[] = {
        MUT(FILTER_M_ADD_HEADER, "", "X-Spam", "yes"),
        MUT(FILTER_M_ADD_HEADER, "", "X-Tag", "two"),
    };
    static const char *const notes[] = { "rule \"r\": add_header X-Spam: yes",
                                         "rule \"r\": add_header X-Tag: two", NULL };
    check_both(m, 2, MSG,
               RCVD "X-Spam: yes\nX-Tag: two\nFrom: a@example.org\nSubject: hello\nX-Keep: 1\n"
               "\nbody line\n", notes);
}

static void test_add_header_without_received_goes_on_top(void **st)
{
    static const struct filter_mut m[] = { MUT(FILTER_M_ADD_HEADER, "", "X-A", "1") };
    static const char *const notes[] = { "rule \"r\": add_header X-A: 1", NULL };
    check_both(m, 1, "Subject: s\nReceived: x\n\nb\n", "X-A: 1\nSubject: s\nReceived: x\n\nb\n",
               notes);
}

static void test_set_header_replaces_folded_field_any_case(void **st)
{
    static const struct filter_mut m[] = { MUT(FILTER_M_SET_HEADER, "", "subject", "new one") };
    static const char *const notes[] = { "rule \"r\": set_header subject: new one", NULL };
    check_both(m, 1,
               RCVD "SUBJECT: a long subject\n\tfolded here\n  and here\nX-Keep: 1\nSubject : again\n"
               "\nbody\n",
               RCVD "subject: new one\nX-Keep: 1\n\nbody\n", notes);
}

static void test_remove_header_any_case(void **st)
{
    static const struct filter_mut m[] = { MUT(FILTER_M_REMOVE_HEADER, "", "x-remove-me", "") };
    static const char *const notes[] = { "rule \"r\": remove_header x-remove-me", NULL };
    check_both(m, 1, RCVD "X-Remove-Me: secret\n more\nX-Keep: 1\nx-REMOVE-me: 2\n\nX-Remove-Me: body\n",
               RCVD "X-Keep: 1\n\nX-Remove-Me: body\n", notes);
}

static void test_mutations_apply_in_order(void **st)
{
    static const struct filter_mut m[] = {
        MUT(FILTER_M_ADD_HEADER, "", "X-A", "1"),
        MUT(FILTER_M_REMOVE_HEADER, "", "X-A", ""),      /* removes the one just added */
        MUT(FILTER_M_SET_HEADER, "", "X-B", "1"),
        MUT(FILTER_M_SET_HEADER, "", "X-B", "2"),        /* one X-B left */
        MUT(FILTER_M_REMOVE_HEADER, "", "Received", ""), /* cleanup's own one stays */
    };
    static const char *const notes[] = {
        "rule \"r\": add_header X-A: 1", "rule \"r\": remove_header X-A",
        "rule \"r\": set_header X-B: 1", "rule \"r\": set_header X-B: 2",
        "rule \"r\": remove_header Received", NULL };
    check_both(m, 5, RCVD "Received: older\nX-A: 0\n\nb\n", RCVD "X-B: 2\n\nb\n", notes);
}

static void test_header_section_without_body(void **st)
{
    static const struct filter_mut m[] = { MUT(FILTER_M_ADD_HEADER, "", "X-A", "1") };
    static const char *const notes[] = { "rule \"r\": add_header X-A: 1", NULL };
    check_both(m, 1, RCVD "Subject: s\n", RCVD "X-A: 1\nSubject: s\n", notes);
    /* the last field unterminated: it stays so */
    check_both(m, 1, RCVD "Subject: s", RCVD "X-A: 1\nSubject: s", notes);
    static const struct filter_mut s[] = { MUT(FILTER_M_SET_HEADER, "", "Subject", "t") };
    static const char *const snotes[] = { "rule \"r\": set_header Subject: t", NULL };
    check_both(s, 1, RCVD "Subject: s", RCVD "Subject: t\n", snotes);
}

static void rep(buf_t *b, const char *s, int n)
{
    for (int i = 0; i < n; i++)
        buf_append_str(b, s);
}

static void test_long_value_capped_and_folded(void **st)
{
    buf_t v, want, note;
    buf_init(&v, 1024);
    rep(&v, "word ", 200);                  /* 1000 octets */
    /* "X-Long: " + value <= 998: the value is cut at the blank before
     * octet 990, keeping 198 words (989 octets); folded before a blank
     * into lines of <= 78: 14 words on the first line (77 octets), then
     * 15 (" word" x 15 = 75), 12 such lines, and 4 words left */
    buf_init(&want, 2048);
    buf_append_str(&want, RCVD "X-Long: word");
    rep(&want, " word", 13);
    buf_append_char(&want, '\n');
    for (int i = 0; i < 12; i++) {
        rep(&want, " word", 15);
        buf_append_char(&want, '\n');
    }
    rep(&want, " word", 4);
    buf_append_str(&want, "\nSubject: s\n\nb\n");
    const struct filter_mut m[] = { MUT(FILTER_M_ADD_HEADER, "", "X-Long", v.data) };
    buf_init(&note, 512);
    buf_printf(&note, "rule \"r\": add_header X-Long: %.400s", v.data);
    const char *notes[] = { note.data, NULL };
    check_both(m, 1, RCVD "Subject: s\n\nb\n", want.data, notes);
    /* and every line is within 998 octets, the field 8 + 989 unfolded */
    assert_int_equal(want.len - strlen(RCVD "\nSubject: s\n\nb\n") - 13, 8 + 989);
    buf_free(&v);
    buf_free(&want);
    buf_free(&note);
}

static void test_invalid_header_name_ignored(void **st)
{
    static const struct filter_mut m[] = { MUT(FILTER_M_ADD_HEADER, "", "X A", "1"),
                                           MUT(FILTER_M_REMOVE_HEADER, "", "Subject:", "") };
    struct mcase c = { m, 2, STAGE_DATA, V_NEXT };
    struct qf_env want;
    make_env(&want);
    struct qfm_result r;
    check(&c, MSG, &want, MSG, &r);
    assert_int_equal(r.changed, 0);
}

/* ---- envelope ---------------------------------------------------------------- */

static void test_rewrite_mail_from(void **st)
{
    static const struct filter_mut m[] = { MUT(FILTER_M_REWRITE_MAIL_FROM, "", "<new@ok.example>", "") };
    for (int s = 0; s < 2; s++) {
        struct mcase c = { m, 1, s ? STAGE_POSTQ : STAGE_DATA, V_NEXT };
        struct qf_env want;
        make_env(&want);
        set_str(&want.sender, "new@ok.example");
        qf_env_add_note(&want, s ? "postq: rule \"r\": rewrite_mail_from <new@ok.example>"
                                 : "rule \"r\": rewrite_mail_from <new@ok.example>");
        check(&c, MSG, &want, MSG, NULL);
    }
}

static void test_add_rcpt_and_bcc(void **st)
{
    static const struct filter_mut m[] = {
        MUT(FILTER_M_ADD_RCPT, "<dave@example.test>", "", ""),
        MUT(FILTER_M_BCC, "archive@example.test", "", ""),
        MUT(FILTER_M_ADD_RCPT, "BOB@Example.TEST", "", ""),   /* already there: nothing */
        MUT(FILTER_M_BCC, "bad address@x", "", ""),           /* invalid: ignored */
    };
    for (int s = 0; s < 2; s++) {
        struct mcase c = { m, 4, s ? STAGE_POSTQ : STAGE_DATA, V_NEXT };
        struct qf_env want;
        make_env(&want);
        qf_env_add_rcpt(&want, "dave@example.test", "", 0);
        qf_env_add_rcpt(&want, "archive@example.test", "", 0);
        qf_env_add_note(&want, s ? "postq: rule \"r\": add_rcpt <dave@example.test>"
                                 : "rule \"r\": add_rcpt <dave@example.test>");
        qf_env_add_note(&want, s ? "postq: rule \"r\": bcc <archive@example.test>"
                                 : "rule \"r\": bcc <archive@example.test>");
        check(&c, MSG, &want, MSG, NULL);
    }
}

static void test_remove_rcpt_data_drops_it(void **st)
{
    static const struct filter_mut m[] = { MUT(FILTER_M_REMOVE_RCPT, "<Bob@example.test>", "", "") };
    struct mcase c = { m, 1, STAGE_DATA, V_NEXT };
    struct qf_env want;
    qf_env_init(&want);
    make_env(&want);
    /* rebuild without bob: the same envelope with only carol */
    free(want.rcpts[0].addr);
    free(want.rcpts[0].orig);
    want.rcpts[0] = want.rcpts[1];
    want.nrcpts = 1;
    qf_env_add_note(&want, "rule \"r\": remove_rcpt <Bob@example.test>");
    ndiscarded = 0;
    check(&c, MSG, &want, MSG, NULL);
    assert_int_equal(ndiscarded, 0);
}

static void test_remove_rcpt_postq_discards(void **st)
{
    static const struct filter_mut m[] = { MUT(FILTER_M_REMOVE_RCPT, "bob@example.test", "", "") };
    struct mcase c = { m, 1, STAGE_POSTQ, V_NEXT };
    struct qf_env want;
    make_env(&want);
    want.rcpts[0].status = DS_DISCARDED;
    str_copy(want.rcpts[0].dsn, sizeof(want.rcpts[0].dsn), "2.0.0");
    str_copy(want.rcpts[0].reason, sizeof(want.rcpts[0].reason), "removed by rule \"r\"");
    qf_env_add_note(&want, "postq: rule \"r\": remove_rcpt <bob@example.test>");
    ndiscarded = 0;
    check(&c, MSG, &want, MSG, NULL);
    assert_int_equal(ndiscarded, 1);
}

static void test_quarantine(void **st)
{
    static const struct filter_mut m[] = { MUT(FILTER_M_QUARANTINE, "", "junk", "") };
    static const struct filter_mut bad[] = { MUT(FILTER_M_QUARANTINE, "", "no/such", "") };
    for (int s = 0; s < 2; s++) {
        struct mcase c = { m, 1, s ? STAGE_POSTQ : STAGE_DATA, V_QUARANTINE };
        struct qf_env want;
        struct qfm_result r;
        make_env(&want);
        set_str(&want.quarantine, "junk");
        qf_env_add_note(&want, s ? "postq: rule \"r\": quarantine junk"
                                 : "rule \"r\": quarantine junk");
        check(&c, MSG, &want, MSG, &r);
        assert_string_equal(r.quarantine, "junk");
        /* an invalid name: the default */
        c.muts = bad;
        make_env(&want);
        set_str(&want.quarantine, QFM_QUARANTINE_DEFAULT);
        qf_env_add_note(&want, s ? "postq: rule \"r\": quarantine quarantine"
                                 : "rule \"r\": quarantine quarantine");
        check(&c, MSG, &want, MSG, &r);
        assert_string_equal(r.quarantine, "quarantine");
        /* a quarantine verdict without a name: the default, no note */
        c.n = 0;
        make_env(&want);
        set_str(&want.quarantine, "quarantine");
        check(&c, MSG, &want, MSG, &r);
        assert_string_equal(r.quarantine, "quarantine");
        assert_int_equal(r.changed, 1);
    }
}

static void test_delivery_choices_not_applied(void **st)
{
    static const struct filter_mut m[] = { MUT(FILTER_M_MAILDIR, "", "", "") };
    struct mcase c = { m, 1, STAGE_POSTQ, V_NEXT };
    struct qf_env want;
    struct qfm_result r;
    make_env(&want);
    check(&c, MSG, &want, MSG, &r);
    assert_int_equal(r.changed, 0);
    assert_null(r.quarantine);
}

/* ---- pieces ----------------------------------------------------------------- */

static void test_field_is_and_header_len(void **st)
{
    assert_true(qfm_field_is("Subject: x\n", 11, "subject"));
    assert_true(qfm_field_is("SUBJECT \t: x\n", 13, "Subject"));
    assert_false(qfm_field_is("Subjects: x\n", 12, "Subject"));
    assert_false(qfm_field_is("Subject", 7, "Subject"));
    assert_int_equal(qfm_header_len("A: 1\n\nb\n", 8), 5);
    assert_int_equal(qfm_header_len("A: 1\nnot a field\n", 17), 5);
    assert_int_equal(qfm_header_len("A: 1\n b\n", 8), 8);
    assert_int_equal(qfm_header_len("\nbody\n", 6), 0);
    assert_true(qfm_qname_ok("spam-hold_2"));
    assert_false(qfm_qname_ok(""));
    assert_false(qfm_qname_ok("../x"));
}

static void test_apply_content_empty_header_section(void **st)
{
    static const struct filter_mut m[] = { MUT(FILTER_M_ADD_HEADER, "", "X-A", "1") };
    buf_t out;
    buf_init(&out, 64);
    qfm_apply_content(&out, "\nbody\n", 6, m, 1);
    assert_int_equal(out.len, 13);
    assert_memory_equal(out.data, "X-A: 1\n\nbody\n", 13);
    buf_free(&out);
}

/* A header section over several read chunks: qfm_write gives what
 * qfm_apply_content gives; one over 1 MiB is refused (EFBIG). */
static void test_write_large_header_section(void **st)
{
    static const struct filter_mut m[] = { MUT(FILTER_M_SET_HEADER, "", "X-F", "new") };
    buf_t c, want;
    buf_init(&c, 200000);
    buf_append_str(&c, RCVD);
    for (int i = 0; i < 3000; i++)
        buf_printf(&c, "X-F%d: %040d\n", i % 7, i);   /* X-F0..X-F6, not X-F */
    buf_append_str(&c, "X-F: old\n\nbody\n");
    buf_init(&want, c.len + 64);
    qfm_apply_content(&want, c.data, c.len, m, 1);
    struct qf_env e;
    make_env(&e);
    int ifd = write_file(&e, c.data, c.len), ofd = memfd();
    struct qf_env in;
    char err[128];
    assert_int_equal(qf_read(ifd, &in, err, sizeof(err)), 0);
    assert_int_equal(qfm_write(ofd, &e, ifd, in.content_off, in.content_len, m, 1), 0);
    size_t glen;
    char *got = slurp(ofd, &glen);
    struct qf_env back;
    assert_int_equal(qf_read(ofd, &back, err, sizeof(err)), 0);
    assert_int_equal(back.content_len, want.len);
    assert_memory_equal(got + back.content_off, want.data, want.len);
    assert_memory_equal(want.data + strlen(RCVD), "X-F: new\nX-F0: ", 15);
    free(got);
    qf_env_free(&back);
    qf_env_free(&in);
    close(ifd);
    close(ofd);
    /* over 1 MiB of fields */
    buf_reset(&c);
    for (int i = 0; i < 30000; i++)
        buf_printf(&c, "X-F%d: %040d\n", i % 7, i);
    ifd = write_file(&e, c.data, c.len);
    ofd = memfd();
    assert_int_equal(qf_read(ifd, &in, err, sizeof(err)), 0);
    errno = 0;
    assert_int_equal(qfm_write(ofd, &e, ifd, in.content_off, in.content_len, m, 1), -1);
    assert_int_equal(errno, EFBIG);
    qf_env_free(&in);
    qf_env_free(&e);
    close(ifd);
    close(ofd);
    buf_free(&c);
    buf_free(&want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_header_after_received),
        cmocka_unit_test(test_add_header_without_received_goes_on_top),
        cmocka_unit_test(test_set_header_replaces_folded_field_any_case),
        cmocka_unit_test(test_remove_header_any_case),
        cmocka_unit_test(test_mutations_apply_in_order),
        cmocka_unit_test(test_header_section_without_body),
        cmocka_unit_test(test_long_value_capped_and_folded),
        cmocka_unit_test(test_invalid_header_name_ignored),
        cmocka_unit_test(test_rewrite_mail_from),
        cmocka_unit_test(test_add_rcpt_and_bcc),
        cmocka_unit_test(test_remove_rcpt_data_drops_it),
        cmocka_unit_test(test_remove_rcpt_postq_discards),
        cmocka_unit_test(test_quarantine),
        cmocka_unit_test(test_delivery_choices_not_applied),
        cmocka_unit_test(test_field_is_and_header_len),
        cmocka_unit_test(test_apply_content_empty_header_section),
        cmocka_unit_test(test_write_large_header_section),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
