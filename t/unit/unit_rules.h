/*
 * unit_rules.h - what the rule-language unit tests (test_rules_compile,
 * test_rules_vm, test_rules_services) share: their scratch directory `dir`
 * (a cmocka group's setup and teardown), a program compiled from text as
 * dir/t.rules, and a file written into dir.
 */
#ifndef POSTERN_UNIT_RULES_H
#define POSTERN_UNIT_RULES_H
#include <errno.h>
#include <string.h>
#include "rules/rules.h"
#include "unit_tmpdir.h"

#define UNIT_UNUSED __attribute__((unused))

static char dir[64];

static UNIT_UNUSED int rules_dir_setup(void **state)
{
    (void)state;
    return tmpdir_make(dir, sizeof(dir), program_invocation_short_name);
}

static UNIT_UNUSED int rules_dir_teardown(void **state)
{
    (void)state;
    return tmpdir_remove(dir);
}

/* src compiled as dir/t.rules; diagnostics on stderr, and it must compile. */
static UNIT_UNUSED struct rl_program *prog(const char *src)
{
    char name[128];
    snprintf(name, sizeof(name), "%s/t.rules", dir);
    struct rl_diag d = { 0 };
    struct rl_program *p = rl_compile_buffer(name, src, strlen(src), &d);
    for (int i = 0; i < d.n; i++)
        fprintf(stderr, "%d:%d: %s\n", d.v[i].line, d.v[i].col, d.v[i].msg);
    rl_diag_free(&d);
    assert_non_null(p);
    return p;
}

/* dir/name := content. */
static UNIT_UNUSED void put(const char *name, const char *content)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
}

#endif
