/*
 * test_aliases.c - the aliases(5) parser and index (lib/local/aliases.c,
 * aliases_db.c): golden cases of text -> "name: kind value | ..." or the
 * file:line:col errors, the compile (atomic, refuses a broken file and
 * keeps the old index) and the reader.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "local/aliases.h"

static int dump_entry(const char *name, const struct alias_list *items, unsigned line, void *arg)
{
    buf_t *out = arg;
    buf_printf(out, "%u %s:", line, name);
    for (size_t i = 0; i < items->n; i++)
        buf_printf(out, " %c[%s]", (char)items->v[i].kind, items->v[i].value);
    buf_append_char(out, '\n');
    return 0;
}

struct golden { const char *in, *out, *err; };

static const struct golden cases[] = {
    { "root: admin\n", "1 root: a[admin]\n", "" },
    { "# comment\n\nRoot :  Admin@Example.test , \\root\n",
      "3 root: a[Admin@Example.test] \\[root]\n", "" },
    { "list: a,\n  b,\n\tc\n# inner comment\n  d\nnext: e\n",
      "1 list: a[a] a[b] a[c] a[d]\n6 next: a[e]\n", "" },
    { "p: |/bin/cat\nq: \"|/usr/bin/x a, b\", /var/log/copy\n",
      "1 p: |[/bin/cat]\n2 q: |[/usr/bin/x a, b] /[/var/log/copy]\n", "" },
    { "inc: :include:/etc/list\n\"a b\": x\n", "1 inc: i[/etc/list]\n2 a b: a[x]\n", "" },
    { "q: \"a\\\"b\"\n", "", "t:1:4: bad character in address (quote commands and file names with blanks)\n" },
    { "noval:\n", "", "t:1:1: alias has no value\n" },
    { "  lead: x\n", "", "t:1:1: continuation line without an alias before it\n" },
    { "nocolon x\n", "", "t:1:9: ':' expected after the alias name\n" },
    { "a: x\nb: \"unterminated\n", "", "t:2:4: unterminated quoted item\n" },
    { "i: :include:rel\n", "", "t:1:4: :include: needs an absolute path\n" },
    { "c: |\n", "", "t:1:4: empty command after '|'\n" },
    { "s: a b\n", "", "t:1:4: bad character in address (quote commands and file names with blanks)\n" },
    { "x: a\ny: b <c>\nz: ok\n  more, @bad\n", "",
      "t:2:4: bad character in address (quote commands and file names with blanks)\n"
      "t:4:9: bad address\n" },
};

static void test_golden(void **st)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        buf_t out, err;
        buf_init(&out, 64);
        buf_init(&err, 64);
        int n = aliases_parse("t", cases[i].in, strlen(cases[i].in), dump_entry, &out, &err);
        buf_append_char(&out, '\0');
        buf_append_char(&err, '\0');
        if (strcmp(out.data, cases[i].err[0] ? out.data : cases[i].out) != 0 ||
            strcmp(err.data, cases[i].err) != 0)
            fail_msg("case %zu: got\n%s---\n%s", i, out.data, err.data);
        assert_int_equal(n != 0, cases[i].err[0] != '\0');
        buf_free(&out);
        buf_free(&err);
    }
}

static void test_list(void **st)
{
    const char *fwd = "# forward\n\\alice, \"|/usr/bin/vacation alice\"\nbob@example.test\n";
    struct alias_list l;
    buf_t err;
    alias_list_init(&l);
    buf_init(&err, 64);
    assert_int_equal(aliases_parse_list(".forward", fwd, strlen(fwd), &l, &err), 0);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.v[0].kind, AK_LOCAL);
    assert_string_equal(l.v[0].value, "alice");
    assert_int_equal(l.v[1].kind, AK_PIPE);
    assert_string_equal(l.v[1].value, "/usr/bin/vacation alice");
    assert_string_equal(l.v[2].value, "bob@example.test");
    alias_list_free(&l);
    assert_int_equal(aliases_parse_list(".forward", "a\x01\n", 3, &l, &err), 1);
    assert_string_equal(err.data, ".forward:1:1: control character in item\n");
    alias_list_free(&l);
    buf_free(&err);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_compile_and_lookup(void **st)
{
    char dir[] = "/tmp/test_aliases.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char src[256], idx[256];
    snprintf(src, sizeof(src), "%s/aliases", dir);
    snprintf(idx, sizeof(idx), "%s/aliases.cdb", dir);
    write_file(src, "root: admin\nlist: a, b\n");
    buf_t err;
    buf_init(&err, 64);
    assert_int_equal(aliases_compile(src, NULL, &err), 2);
    struct stat st1;
    assert_int_equal(stat(idx, &st1), 0);
    assert_int_equal(st1.st_mode & 0777, 0644);

    /* a duplicate or broken source keeps the old index */
    write_file(src, "root: admin\nroot: other\n");
    assert_int_equal(aliases_compile(src, NULL, &err), -1);
    assert_non_null(strstr(err.data, "aliases:2:1: duplicate alias \"root\""));
    buf_reset(&err);
    write_file(src, "root: admin\nbroken line\n");
    assert_int_equal(aliases_compile(src, NULL, &err), -1);
    assert_non_null(strstr(err.data, "/aliases:2:8: ':' expected"));
    struct stat st2;
    assert_int_equal(stat(idx, &st2), 0);
    assert_int_equal(st1.st_ino, st2.st_ino);

    struct aliases_db *db = aliases_db_new(src);
    struct alias_list l;
    alias_list_init(&l);
    assert_int_equal(aliases_lookup(db, "list", &l), 1);   /* the old index, stale */
    assert_int_equal(l.n, 2);
    assert_string_equal(l.v[1].value, "b");
    alias_list_free(&l);
    assert_int_equal(aliases_lookup(db, "nobody-here", &l), 0);
    aliases_db_free(db);

    /* no index: the source is read */
    unlink(idx);
    write_file(src, "postmaster: root\n");
    db = aliases_db_new(src);
    assert_int_equal(aliases_lookup(db, "postmaster", &l), 1);
    assert_string_equal(l.v[0].value, "root");
    alias_list_free(&l);
    aliases_db_free(db);
    unlink(src);
    rmdir(dir);
    buf_free(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_compile_and_lookup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
