/*
 * unit_tmpdir.h - a unit test's scratch directory under /tmp: made with
 * mkdtemp, removed with everything below it (nftw, no shell) when the test
 * is done. Included by the test programs that need one; the one copy of
 * that ritual.
 */
#ifndef POSTERN_UNIT_TMPDIR_H
#define POSTERN_UNIT_TMPDIR_H
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>

/* path (size bytes) := a fresh "/tmp/<name>.XXXXXX"; 0 or -1. */
static __attribute__((unused)) int tmpdir_make(char *path, size_t size, const char *name)
{
    snprintf(path, size, "/tmp/%s.XXXXXX", name);
    return mkdtemp(path) ? 0 : -1;
}

static int tmpdir_rm_one(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb;
    (void)flag;
    (void)f;
    return remove(p);
}

/* Remove path and everything below it; 0 or -1. */
static __attribute__((unused)) int tmpdir_remove(const char *path)
{
    return nftw(path, tmpdir_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
