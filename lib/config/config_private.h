/*
 * config_private.h - internals shared by config.c, config_table.c,
 * config_parse.c and config_value.c. Nobody outside lib/config*.c includes this.
 *
 * config_parse.c turns the text (plus includes) into a tree of cnodes that
 * remember file/line/col; config.c walks that tree against the parameter
 * table. The parser never interprets values: it only knows the syntax.
 */
#ifndef POSTERN_CONFIG_PRIVATE_H
#define POSTERN_CONFIG_PRIVATE_H

#include <stddef.h>
#include "config/config.h"

/* Input bounds: every one is checked and reported, never assumed. */
#define CFG_FILE_MAX      (4 * 1024 * 1024)  /* bytes per file */
#define CFG_TOKEN_MAX     4096               /* bytes per string or word */
#define CFG_DEPTH_MAX     16                 /* nested blocks and lists */
#define CFG_LIST_MAX      1024               /* items per list */
#define CFG_ENTRIES_MAX   4096               /* entries per block */
#define CFG_INCLUDE_DEPTH 8                  /* nested includes */
#define CFG_FILES_MAX     128                /* files per load, main included */
#define CFG_GLOB_MAX      64                 /* files matched by one include */
#define CFG_LISTENERS_MAX 64                 /* listen { NAME { } } blocks */
#define CFG_DOMAINS_MAX   10000              /* domain "x" { } blocks */
#define CFG_ERRORS_MAX    200                /* stop collecting after this */

enum cnode_kind { CN_VALUE, CN_LIST, CN_BLOCK };

struct cnode {
    enum cnode_kind kind;
    int quoted;                 /* CN_VALUE written as "string" */
    char *key;                  /* entry name inside a block (NULL for list items) */
    int qkey;                   /* the key was written as "string" (map keys) */
    char *label;                /* domain "x" { } */
    char *text;                 /* CN_VALUE */
    struct cnode **kids;        /* list items or block entries */
    int nkids, capkids;
    const char *file, *dir;     /* interned in the tree's source list */
    int line, col;              /* first token of the value */
    int kline, kcol;            /* the key (== line/col for list items) */
};

struct cfg_source {
    char *path;                 /* as reported in messages */
    char *dir;                  /* absolute directory, for relative paths */
    char *real;                 /* realpath, for cycle detection */
    struct cfg_source *next;
};

struct cfg_tree {
    struct cnode *root;         /* CN_BLOCK */
    struct cfg_source *sources;
    int nsources;
};

/* Parse a file (data == NULL: read path) into *t. Syntax problems go to errs;
 * the tree then holds every entry that did parse. */
void cfg_tree_parse(struct cfg_tree *t, const char *path, const char *data, size_t len,
                    struct config_errors *errs);
void cfg_tree_free(struct cfg_tree *t);

/* Append one error (copies everything); silently stops at CFG_ERRORS_MAX. */
void cfg_error_add(struct config_errors *e, const char *file, int line, int col,
                   const char *key, const char *fmt, ...) PRINTF_LIKE(6, 7);

/* "dir/rel" made absolute and lexically normalised (".", ".." and "//"). */
char *cfg_path_resolve(const char *dir, const char *rel);

/* A size in its largest exact unit: 52428800 -> "50M" (errors, config show). */
void cfg_format_size(buf_t *b, int64_t v);

/* Levenshtein distance, capped (returns cap+1 when larger). */
int cfg_edit_distance(const char *a, const char *b, int cap);

/* ---- parameter tables (config_table.c), walked by config.c ---- */

enum ptype { P_STR, P_PATH, P_INT, P_LONG, P_SIZE, P_DUR, P_BOOL, P_ENUM,
             P_STRLIST, P_CIDRLIST, P_DURLIST };

#define F_REQUIRED 1            /* may not be empty */
#define F_TEMPLATE 2            /* path template: "~/..." is left alone */

struct enumval { const char *name; int v; };

/* An item check for strings and list elements: 0 ok, -1 with a message. */
typedef int (*item_check_fn)(const char *s, buf_t *msg);

struct param {
    const char *name;           /* dotted, relative to the table's block */
    enum ptype type;
    size_t off, off2;           /* off2: element count of P_DURLIST */
    const char *def;            /* default, in config syntax; lists comma-separated */
    int64_t min, max;           /* for numbers and each list element */
    const struct enumval *ev;   /* P_ENUM: NULL-terminated */
    unsigned flags;
    item_check_fn check;
};

/* listen.X.auth is stored as 0/1/2, then split into the two flags. */
enum { AUTH_NONE = 0, AUTH_OPTIONAL = 1, AUTH_REQUIRED = 2 };

struct table {
    const struct param *p;
    int n;
    const char *prefix;          /* error-key prefix: "", "listen.smtp", "domain.x" */
    const char *const *extra;    /* extra keys valid at the top of this table */
};

#define CFG_TABLE_MAX 128       /* rows in one table (checked at compile time) */
extern const struct param cfg_params[], cfg_listener_params[], cfg_domain_params[];
extern const int cfg_nparams, cfg_nlistener, cfg_ndomain;
extern const struct enumval cfg_ev_tls_policy[];   /* delivery.tls and its map */
#define CFG_TLS_POLICIES_MAX 10000      /* delivery.tls_policy entries */

/* Item checks also used on block names: 0 ok, -1 with a message. */
int cfg_check_hostname(const char *s, buf_t *msg);
int cfg_check_identifier(const char *s, buf_t *msg);
int cfg_check_relayhost(const char *s, buf_t *msg);   /* "[host]:port", "host:port", "host" */
/* Parse value node v for parameter p into its field of base; problems go to errs. */
void cfg_apply_value(struct config_errors *errs, const struct param *p, void *base,
                     const struct cnode *v, const char *key);
/* Fill base with the table's defaults (known valid: a bad one is a panic). */
void cfg_apply_defaults(const struct param *tab, int n, void *base);
void cfg_free_fields(const struct param *tab, int n, void *base);
void cfg_free_strlist(struct strlist *l);

/* config_transport.c: one transport "NAME" { } block; free them all. */
void cfg_apply_transport(struct config *c, struct config_errors *errs, const struct cnode *e);
void cfg_transports_free(struct config *c);

#endif
