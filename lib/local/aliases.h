/*
 * aliases.h - the /etc/aliases format (local.aliases), .forward and
 * :include: files: a parser with file:line:col errors, the compiled index
 * (a tinycdb file next to the source, written by aliases_compile, which
 * `newaliases` and `postern newaliases` call) and its reader.
 *
 * Used by the local delivery agent (expansion), smtpd's and filter's
 * local-recipient check (lib/local/local_rcpt.h), the CLI and newaliases.
 * The parser is pure (text in, entries out); must never let a broken line
 * through: one error per bad line, and a file with any error compiles to
 * nothing (the old index stays).
 *
 * Syntax (aliases(5)): "name: item, item, ..."; a line starting with blank
 * continues the previous entry; a line whose first non-blank is '#' is a
 * comment; blank lines are ignored. name may be quoted ("a b": ...). An
 * item is an address (user or user@domain), "|command", "/file",
 * ":include:/file" or "\user" (the user's own mailbox, no further
 * expansion). An item may be quoted ("|cmd with, commas"), with \" and \\
 * inside the quotes. A .forward or :include: file is a list of items only
 * (commas or new lines between them).
 */
#ifndef POSTERN_ALIASES_H
#define POSTERN_ALIASES_H

#include <stddef.h>
#include <sys/types.h>
#include "util/buf.h"

#define ALIAS_NAME_MAX   256     /* bytes of a name */
#define ALIAS_ITEM_MAX   4096    /* bytes of one item (a command line) */
#define ALIAS_ITEMS_MAX  10000   /* items in one entry / one list file */
#define ALIAS_FILE_MAX   (64u << 20) /* bytes of an aliases source file */
#define ALIAS_LIST_FILE_MAX (1u << 20) /* bytes of a .forward or :include: file */
#define ALIAS_ERRORS_MAX 50      /* errors reported before giving up */

enum alias_kind {
    AK_ADDR = 'a',        /* user or user@domain */
    AK_PIPE = '|',        /* |command (value without the '|') */
    AK_FILE = '/',        /* /path */
    AK_INCLUDE = 'i',     /* :include:/path (value is the path) */
    AK_LOCAL = '\\',      /* \user: mailbox, no further expansion (value: user) */
};

struct alias_item {
    enum alias_kind kind;
    char *value;
};

struct alias_list {
    struct alias_item *v;
    size_t n, cap;
};

void alias_list_init(struct alias_list *l);
void alias_list_free(struct alias_list *l);
void alias_list_add(struct alias_list *l, enum alias_kind kind, const char *value, size_t len);

/* Called once per entry: name lowercased, line of its first line. A
 * non-zero return stops the parse (returned by aliases_parse). */
typedef int alias_entry_fn(const char *name, const struct alias_list *items, unsigned line,
                           void *arg);

/* Parse an aliases file held in text[0..len). fname is used in messages.
 * Errors are appended to err as "fname:line:col: message\n". Returns the
 * number of errors (0 = every entry went to fn), or fn's non-zero return
 * negated. */
int aliases_parse(const char *fname, const char *text, size_t len, alias_entry_fn *fn,
                  void *arg, buf_t *err);

/* Parse a .forward or :include: file (items only) into out (appended).
 * Errors as above; returns their number. */
int aliases_parse_list(const char *fname, const char *text, size_t len,
                       struct alias_list *out, buf_t *err);

/* The compiled file of a source: "<src>.cdb" (out replaced). */
void aliases_db_path(const char *src, buf_t *out);

/* newaliases: parse src and write its index to dst (NULL = "<src>.cdb")
 * atomically (a temporary file in the same directory, fsync, rename, fsync
 * of the directory), mode 0644. A source with any error writes nothing: the
 * old index stays, err holds every "file:line:col: message". Returns the
 * number of aliases, or -1. */
int aliases_compile(const char *src, const char *dst, buf_t *err);

/* What aliases_compile would say about src, writing nothing (postern
 * check): the number of aliases, or -1 with err filled. */
int aliases_check(const char *src, buf_t *err);

/* Serialise / deserialise one entry's items as stored in the index: for
 * each item, its kind byte, its value, a NUL. */
void aliases_encode(const struct alias_list *items, buf_t *out);
int  aliases_decode(const unsigned char *p, size_t n, struct alias_list *out);

/* ---- the reader ------------------------------------------------------------ */

struct aliases_db;

/* A reader for source src (the index is "<src>.cdb"). Nothing is opened
 * yet; src may be NULL or "" (no aliases). */
struct aliases_db *aliases_db_new(const char *src);
void aliases_db_free(struct aliases_db *db);

/* Look name (lowercased by the caller) up: 1 found (items appended to out),
 * 0 not found, -1 temporary failure (logged). The index is reopened when
 * it changed (checked at most once a second). An index older than its
 * source is used, with an error logged once ("run newaliases"), as Postfix
 * does; with no index at all the source itself is compiled in memory (a
 * warning logged once) so a fresh system routes postmaster at once. */
int  aliases_lookup(struct aliases_db *db, const char *name, struct alias_list *out);

/* Owner of the source file (for pipe and file deliveries): 0 when it is
 * root's or unknown. */
uid_t aliases_db_owner(struct aliases_db *db);

#endif
