/*
 * config_parse.c - the postern.conf syntax: lexer, parser and includes.
 *
 * Produces a tree of cnodes (config_private.h) that config.c interprets.
 * Grammar:
 *   body  := { entry }
 *   entry := "include" STRING ";"
 *          | KEY [LABEL] "{" body "}" [";"]
 *          | KEY [LABEL] "=" value ";"        (";" optional after a block)
 *   value := STRING | WORD | "[" [item {"," item} [","]] "]" | "{" body "}"
 * Every input is bounded (config_private.h); problems are collected with
 * file:line:col and parsing resumes at the next ";" or "}" (panic mode), so
 * one mistake gives one error. Must never crash or loop on any input: it is
 * fuzzed (t/fuzz/fuzz_config.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "config/config_private.h"
#include "util/fdio.h"

enum tok_kind { T_EOF, T_STRING, T_WORD, T_EQ, T_SEMI, T_COMMA, T_LBRACE, T_RBRACE,
                T_LBRACK, T_RBRACK };

struct token {
    enum tok_kind kind;
    buf_t text;                 /* T_STRING (unescaped) / T_WORD */
    int line, col;              /* start */
    int eline, ecol;            /* just past the end */
};

struct lexer {
    const char *p, *end;
    const struct cfg_source *src;
    int line, col;
    int pline, pcol;            /* just past the previous token */
    struct token tok;           /* current token */
};

struct parser {
    struct cfg_tree *tree;
    struct config_errors *errs;
    const struct cfg_source *stack[CFG_INCLUDE_DEPTH + 1]; /* files being parsed */
    int nstack;
};

/* ---- errors and small helpers ---------------------------------------- */

void cfg_error_add(struct config_errors *e, const char *file, int line, int col,
                   const char *key, const char *fmt, ...)
{
    if (e->n >= CFG_ERRORS_MAX)
        return;
    buf_t b;
    buf_init(&b, 128);
    if (e->n == CFG_ERRORS_MAX - 1) {
        buf_append_str(&b, "too many errors, giving up");
    } else {
        va_list ap;
        va_start(ap, fmt);
        buf_vprintf(&b, fmt, ap);
        va_end(ap);
    }
    e->v = xrealloc(e->v, (size_t)(e->n + 1) * sizeof(*e->v));
    struct config_error *ce = &e->v[e->n++];
    ce->file = xstrdup(file ? file : "");
    ce->line = line;
    ce->col = col;
    ce->key = xstrdup(key ? key : "");
    ce->msg = buf_steal(&b);
    buf_free(&b);
}

int cfg_edit_distance(const char *a, const char *b, int cap)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return cap + 1;
    int prev[65], cur[65];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        int rowmin = cur[0];
        for (size_t j = 1; j <= lb; j++) {
            int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            int m = sub < del ? sub : del;
            cur[j] = m < ins ? m : ins;
            if (cur[j] < rowmin)
                rowmin = cur[j];
        }
        if (rowmin > cap)
            return cap + 1;
        memcpy(prev, cur, sizeof(cur[0]) * (lb + 1));
    }
    return prev[lb] > cap ? cap + 1 : prev[lb];
}

char *cfg_path_resolve(const char *dir, const char *rel)
{
    buf_t in, out;
    buf_init(&in, 256);
    if (rel[0] != '/') {
        buf_append_str(&in, dir && *dir ? dir : "/");
        buf_append_char(&in, '/');
    }
    buf_append_str(&in, rel);
    /* Lexical normalisation: component by component onto out. */
    buf_init(&out, in.len + 2);
    const char *p = in.data;
    while (*p) {
        while (*p == '/')
            p++;
        const char *s = p;
        while (*p && *p != '/')
            p++;
        size_t n = (size_t)(p - s);
        if (n == 0 || (n == 1 && s[0] == '.'))
            continue;
        if (n == 2 && s[0] == '.' && s[1] == '.') {
            char *slash = strrchr(out.data, '/');
            buf_truncate(&out, slash ? (size_t)(slash - out.data) : 0);
            continue;
        }
        buf_append_char(&out, '/');
        buf_append(&out, s, n);
    }
    if (out.len == 0)
        buf_append_char(&out, '/');
    buf_free(&in);
    char *r = buf_steal(&out);
    buf_free(&out);
    return r;
}

static struct cnode *node_new(enum cnode_kind kind, const struct cfg_source *src, int line, int col)
{
    struct cnode *n = xcalloc(1, sizeof(*n));
    n->kind = kind;
    n->file = src->path;
    n->dir = src->dir;
    n->line = n->kline = line;
    n->col = n->kcol = col;
    return n;
}

static void node_add(struct cnode *parent, struct cnode *kid)
{
    if (parent->nkids == parent->capkids) {
        parent->capkids = parent->capkids ? parent->capkids * 2 : 8;
        parent->kids = xrealloc(parent->kids, (size_t)parent->capkids * sizeof(*parent->kids));
    }
    parent->kids[parent->nkids++] = kid;
}

static void node_free(struct cnode *n)
{
    if (n == NULL)
        return;
    for (int i = 0; i < n->nkids; i++)
        node_free(n->kids[i]);
    free(n->kids);
    free(n->key);
    free(n->label);
    free(n->text);
    free(n);
}

void cfg_tree_free(struct cfg_tree *t)
{
    node_free(t->root);
    t->root = NULL;
    while (t->sources) {
        struct cfg_source *s = t->sources;
        t->sources = s->next;
        free(s->path);
        free(s->dir);
        free(s->real);
        free(s);
    }
    t->nsources = 0;
}

/* ---- lexer --------------------------------------------------------------- */

static void lx_error(struct parser *ps, struct lexer *lx, int line, int col, const char *key,
                     const char *msg)
{
    cfg_error_add(ps->errs, lx->src->path, line, col, key, "%s", msg);
}

static int is_word_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-' || c == '.' || c == '/' || c == ':' || c == '+' ||
           c == '@' || c == '%' || c == '~' || c == '*' || c == '$' || c >= 0x80;
}

static void lx_advance(struct lexer *lx)
{
    if (*lx->p == '\n') {
        lx->line++;
        lx->col = 1;
    } else {
        lx->col++;
    }
    lx->p++;
}

static void lx_string(struct parser *ps, struct lexer *lx)
{
    struct token *t = &lx->tok;
    int too_long = 0;
    t->kind = T_STRING;
    lx_advance(lx);                                   /* opening quote */
    for (;;) {
        if (lx->p >= lx->end || *lx->p == '\n') {
            lx_error(ps, lx, t->line, t->col, "", "unterminated string");
            break;
        }
        char c = *lx->p;
        if (c == '"') {
            lx_advance(lx);
            break;
        }
        if (c == '\\') {
            int l = lx->line, co = lx->col;
            lx_advance(lx);
            if (lx->p >= lx->end || *lx->p == '\n')
                continue;                             /* reported as unterminated */
            char e = *lx->p;
            lx_advance(lx);
            switch (e) {
            case '"': c = '"'; break;
            case '\\': c = '\\'; break;
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            default:
                cfg_error_add(ps->errs, lx->src->path, l, co, "",
                              "unknown escape \"\\%c\" in string (use \\\" \\\\ \\n \\t)",
                              (unsigned char)e >= 0x20 && (unsigned char)e < 0x7f ? e : '?');
                continue;
            }
        } else if ((unsigned char)c < 0x20 && c != '\t') {
            cfg_error_add(ps->errs, lx->src->path, lx->line, lx->col, "",
                          "control character 0x%02x in string", (unsigned char)c);
            lx_advance(lx);
            continue;
        } else {
            lx_advance(lx);
        }
        if (t->text.len >= CFG_TOKEN_MAX) {
            if (!too_long)
                cfg_error_add(ps->errs, lx->src->path, t->line, t->col, "",
                              "string too long (limit %d bytes)", CFG_TOKEN_MAX);
            too_long = 1;
            continue;
        }
        buf_append_char(&t->text, c);
    }
}

/* Read the next token into lx->tok; comments and whitespace are skipped. */
static void lx_next(struct parser *ps, struct lexer *lx)
{
    struct token *t = &lx->tok;
    int too_long = 0;
    lx->pline = t->eline;
    lx->pcol = t->ecol;
    buf_reset(&t->text);
    for (;;) {
        while (lx->p < lx->end && (*lx->p == ' ' || *lx->p == '\t' || *lx->p == '\r' ||
                                   *lx->p == '\n'))
            lx_advance(lx);
        if (lx->p < lx->end && *lx->p == '#') {
            while (lx->p < lx->end && *lx->p != '\n')
                lx_advance(lx);
            continue;
        }
        t->line = lx->line;
        t->col = lx->col;
        if (lx->p >= lx->end) {
            t->kind = T_EOF;
            break;
        }
        unsigned char c = (unsigned char)*lx->p;
        static const char punct[] = "=;,{}[]";
        const char *pp = c ? strchr(punct, c) : NULL;
        if (pp) {
            static const enum tok_kind kinds[] = { T_EQ, T_SEMI, T_COMMA, T_LBRACE, T_RBRACE,
                                                   T_LBRACK, T_RBRACK };
            t->kind = kinds[pp - punct];
            buf_append_char(&t->text, (char)c);
            lx_advance(lx);
            break;
        }
        if (c == '"') {
            lx_string(ps, lx);
            break;
        }
        if (is_word_char(c)) {
            t->kind = T_WORD;
            while (lx->p < lx->end && is_word_char((unsigned char)*lx->p)) {
                if (t->text.len < CFG_TOKEN_MAX)
                    buf_append_char(&t->text, *lx->p);
                else if (!too_long++)
                    lx_error(ps, lx, t->line, t->col, "", "word too long");
                lx_advance(lx);
            }
            break;
        }
        if (c >= 0x20 && c < 0x7f)
            cfg_error_add(ps->errs, lx->src->path, lx->line, lx->col, "",
                          "unexpected character '%c'", c);
        else
            cfg_error_add(ps->errs, lx->src->path, lx->line, lx->col, "",
                          "unexpected byte 0x%02x", c);
        lx_advance(lx);
    }
    t->eline = lx->line;
    t->ecol = lx->col;
}

static const char *tok_desc(const struct token *t, char *tmp, size_t size)
{
    switch (t->kind) {
    case T_EOF: return "end of file";
    case T_STRING: return "a string";
    case T_WORD:
        snprintf(tmp, size, "\"%.40s\"", t->text.data);
        return tmp;
    default:
        snprintf(tmp, size, "'%s'", t->text.data);
        return tmp;
    }
}

/* ---- parser -------------------------------------------------------------- */

static void parse_body(struct parser *ps, struct lexer *lx, struct cnode *block, int depth,
                       const char *path, int closing, int oline, int ocol);

/* Panic mode: skip to just after the next ";" or to the next "}" of this
 * level (not consumed), stepping over balanced groups. Iterative. */
static void skip_to_sync(struct parser *ps, struct lexer *lx)
{
    int depth = 0;
    for (;;) {
        switch (lx->tok.kind) {
        case T_EOF:
            return;
        case T_SEMI:
            if (depth == 0) {
                lx_next(ps, lx);
                return;
            }
            break;
        case T_LBRACE: case T_LBRACK:
            depth++;
            break;
        case T_RBRACE: case T_RBRACK:
            if (depth == 0)
                return;
            depth--;
            break;
        default:
            break;
        }
        lx_next(ps, lx);
    }
}

static void dotted(char *out, size_t size, const char *path, const char *key)
{
    if (path && *path)
        snprintf(out, size, "%s.%s", path, key);
    else
        snprintf(out, size, "%s", key);
}

static struct cnode *parse_list(struct parser *ps, struct lexer *lx, int depth, const char *key)
{
    struct token *t = &lx->tok;
    struct cnode *list = node_new(CN_LIST, lx->src, t->line, t->col);
    int oline = t->line, ocol = t->col, reported = 0;
    char tmp[64];
    lx_next(ps, lx);
    for (;;) {
        if (t->kind == T_RBRACK) {
            lx_next(ps, lx);
            return list;
        }
        if (t->kind == T_EOF || t->kind == T_SEMI || t->kind == T_RBRACE) {
            cfg_error_add(ps->errs, lx->src->path, oline, ocol, key, "'[' is never closed");
            return list;
        }
        if (t->kind != T_STRING && t->kind != T_WORD) {
            cfg_error_add(ps->errs, lx->src->path, t->line, t->col, key,
                          "lists hold strings, words and numbers, not %s",
                          tok_desc(t, tmp, sizeof(tmp)));
            if (t->kind == T_LBRACE || t->kind == T_LBRACK) {
                skip_to_sync(ps, lx);        /* skips the balanced group */
                return list;
            }
            lx_next(ps, lx);
            continue;
        }
        if (list->nkids >= CFG_LIST_MAX) {
            if (!reported)
                cfg_error_add(ps->errs, lx->src->path, t->line, t->col, key,
                              "list too long (limit %d items)", CFG_LIST_MAX);
            reported = 1;
        } else {
            struct cnode *it = node_new(CN_VALUE, lx->src, t->line, t->col);
            it->quoted = t->kind == T_STRING;
            it->text = xstrndup(t->text.data, t->text.len);
            node_add(list, it);
        }
        lx_next(ps, lx);
        if (t->kind == T_COMMA)
            lx_next(ps, lx);
        else if (t->kind != T_RBRACK && (t->kind == T_STRING || t->kind == T_WORD))
            cfg_error_add(ps->errs, lx->src->path, t->line, t->col, key,
                          "expected ',' or ']' in list");
    }
    (void)depth;
}

/* A value after "=": string, word, list or block. NULL after an error. */
static struct cnode *parse_value(struct parser *ps, struct lexer *lx, int depth, const char *key)
{
    struct token *t = &lx->tok;
    char tmp[64];
    if ((t->kind == T_LBRACE || t->kind == T_LBRACK) && depth >= CFG_DEPTH_MAX) {
        cfg_error_add(ps->errs, lx->src->path, t->line, t->col, key,
                      "nested too deeply (limit %d levels)", CFG_DEPTH_MAX);
        return NULL;
    }
    if (t->kind == T_STRING || t->kind == T_WORD) {
        struct cnode *v = node_new(CN_VALUE, lx->src, t->line, t->col);
        v->quoted = t->kind == T_STRING;
        v->text = xstrndup(t->text.data, t->text.len);
        lx_next(ps, lx);
        return v;
    }
    if (t->kind == T_LBRACK)
        return parse_list(ps, lx, depth + 1, key);
    if (t->kind == T_LBRACE) {
        struct cnode *b = node_new(CN_BLOCK, lx->src, t->line, t->col);
        int ol = t->line, oc = t->col;
        lx_next(ps, lx);
        parse_body(ps, lx, b, depth + 1, key, 1, ol, oc);
        return b;
    }
    cfg_error_add(ps->errs, lx->src->path, t->line, t->col, key, "expected a value, got %s",
                  tok_desc(t, tmp, sizeof(tmp)));
    return NULL;
}

static int read_file(struct parser *ps, const char *path, const char *from_file, int line,
                     int col, char **data_r, size_t *len_r)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    struct stat st;
    if (fd < 0) {
        cfg_error_add(ps->errs, from_file, line, col, "", "cannot open %s: %s", path,
                      strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        cfg_error_add(ps->errs, from_file, line, col, "", "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    if (st.st_size > CFG_FILE_MAX) {
        cfg_error_add(ps->errs, from_file, line, col, "", "%s: too large (limit %d bytes)",
                      path, CFG_FILE_MAX);
        close(fd);
        return -1;
    }
    buf_t b;
    buf_init(&b, (size_t)st.st_size + 1);
    if (fdio_read_file(fd, &b, CFG_FILE_MAX) < 0) {
        if (errno == EFBIG)
            cfg_error_add(ps->errs, from_file, line, col, "", "%s: too large (limit %d bytes)",
                          path, CFG_FILE_MAX);
        else
            cfg_error_add(ps->errs, from_file, line, col, "", "cannot read %s: %s", path,
                          strerror(errno));
        buf_free(&b);
        close(fd);
        return -1;
    }
    close(fd);
    *len_r = b.len;
    *data_r = buf_steal(&b);
    buf_free(&b);
    return 0;
}

static struct cfg_source *source_new(struct cfg_tree *t, const char *path, const char *real)
{
    struct cfg_source *s = xcalloc(1, sizeof(*s));
    s->path = xstrdup(path);
    char *abs;
    if (path[0] == '/') {
        abs = cfg_path_resolve("/", path);
    } else {
        char cwd[PATH_MAX];
        abs = cfg_path_resolve(getcwd(cwd, sizeof(cwd)) ? cwd : "/", path);
    }
    char *slash = strrchr(abs, '/');
    s->dir = slash == abs ? xstrdup("/") : xstrndup(abs, (size_t)(slash - abs));
    free(abs);
    s->real = real ? xstrdup(real) : NULL;
    s->next = t->sources;
    t->sources = s;
    t->nsources++;
    return s;
}

/* Lex and parse one file's text into block (which may be an outer block when
 * the file is included). */
static void parse_text(struct parser *ps, const struct cfg_source *src, const char *data,
                       size_t len, struct cnode *block, int depth, const char *path)
{
    struct lexer lx = { .p = data, .end = data + len, .src = src, .line = 1, .col = 1 };
    buf_init(&lx.tok.text, 64);
    ps->stack[ps->nstack++] = src;
    lx_next(ps, &lx);
    parse_body(ps, &lx, block, depth, path, 0, 0, 0);
    ps->nstack--;
    buf_free(&lx.tok.text);
}

static void include_one(struct parser *ps, const char *file, struct cnode *block, int depth,
                        const char *path, const struct cfg_source *from, int line, int col)
{
    char real[PATH_MAX];
    if (realpath(file, real) == NULL) {
        cfg_error_add(ps->errs, from->path, line, col, "", "cannot include %s: %s", file,
                      strerror(errno));
        return;
    }
    for (int i = 0; i < ps->nstack; i++) {
        if (ps->stack[i]->real && strcmp(ps->stack[i]->real, real) == 0) {
            cfg_error_add(ps->errs, from->path, line, col, "",
                          "include cycle: %s includes %s, which is already being read",
                          from->path, file);
            return;
        }
    }
    if (ps->nstack > CFG_INCLUDE_DEPTH) {
        cfg_error_add(ps->errs, from->path, line, col, "",
                      "includes nested too deeply (limit %d)", CFG_INCLUDE_DEPTH);
        return;
    }
    if (ps->tree->nsources >= CFG_FILES_MAX) {
        cfg_error_add(ps->errs, from->path, line, col, "", "too many included files (limit %d)",
                      CFG_FILES_MAX);
        return;
    }
    char *data;
    size_t len;
    if (read_file(ps, file, from->path, line, col, &data, &len) < 0)
        return;
    const struct cfg_source *src = source_new(ps->tree, file, real);
    parse_text(ps, src, data, len, block, depth, path);
    free(data);
}

/* include "pattern"; : glob relative to the including file, sorted. */
static void parse_include(struct parser *ps, struct lexer *lx, struct cnode *block, int depth,
                          const char *path)
{
    struct token *t = &lx->tok;
    int line = t->line, col = t->col;
    const struct cfg_source *from = lx->src;
    lx_next(ps, lx);                                  /* the include keyword */
    if (t->kind != T_STRING && t->kind != T_WORD) {
        cfg_error_add(ps->errs, from->path, t->line, t->col, "include",
                      "expected a file name or pattern after include");
        skip_to_sync(ps, lx);
        return;
    }
    char *pattern = cfg_path_resolve(from->dir, t->text.data);
    int has_magic = strpbrk(t->text.data, "*?[") != NULL;
    int pl = t->line, pc = t->col, el = t->eline, ec = t->ecol;
    lx_next(ps, lx);
    if (t->kind == T_SEMI)
        lx_next(ps, lx);
    else
        cfg_error_add(ps->errs, from->path, el, ec, "include", "expected ';' after include");
    glob_t g;
    int r = glob(pattern, 0, NULL, &g);
    if (r == GLOB_NOMATCH) {
        if (!has_magic)
            cfg_error_add(ps->errs, from->path, pl, pc, "include", "cannot include %s: %s",
                          pattern, strerror(ENOENT));
    } else if (r != 0) {
        cfg_error_add(ps->errs, from->path, pl, pc, "include", "cannot read %s", pattern);
    } else if (g.gl_pathc > CFG_GLOB_MAX) {
        cfg_error_add(ps->errs, from->path, pl, pc, "include",
                      "%s matches too many files (limit %d)", pattern, CFG_GLOB_MAX);
    } else {
        for (size_t i = 0; i < g.gl_pathc; i++)
            include_one(ps, g.gl_pathv[i], block, depth, path, from, line, col);
    }
    if (r == 0)
        globfree(&g);
    free(pattern);
}

/* One "key ..." entry of a block body. */
static void parse_entry(struct parser *ps, struct lexer *lx, struct cnode *block, int depth,
                        const char *path)
{
    struct token *t = &lx->tok;
    char tmp[64], key[256];
    /* A quoted key names something that is not a word (a map's key, e.g.
     * delivery.tls_policy's "[mx.example]:25"); config.c accepts it only
     * where a map is expected. It takes no label. */
    int qkey = t->kind == T_STRING;
    if (t->kind != T_WORD && !qkey) {
        cfg_error_add(ps->errs, lx->src->path, t->line, t->col, path,
                      "expected a key, got %s", tok_desc(t, tmp, sizeof(tmp)));
        if (t->kind == T_LBRACE || t->kind == T_LBRACK || t->kind == T_SEMI ||
            t->kind == T_STRING || t->kind == T_EQ || t->kind == T_COMMA)
            skip_to_sync(ps, lx);
        else
            lx_next(ps, lx);
        return;
    }
    if (!qkey && strcmp(t->text.data, "include") == 0) {
        parse_include(ps, lx, block, depth, path);
        return;
    }
    char *k = xstrndup(t->text.data, t->text.len), *label = NULL;
    int kline = t->line, kcol = t->col;
    dotted(key, sizeof(key), path, k);
    lx_next(ps, lx);
    if (!qkey && (t->kind == T_STRING || t->kind == T_WORD)) {
        label = xstrndup(t->text.data, t->text.len);
        lx_next(ps, lx);
        if (t->kind != T_LBRACE && t->kind != T_EQ) {
            cfg_error_add(ps->errs, lx->src->path, kline, kcol, key,
                          "expected '=' after key (a label must be followed by '{')");
            goto fail;
        }
    }
    struct cnode *v = NULL;
    int was_eq = t->kind == T_EQ;
    if (t->kind == T_EQ) {
        lx_next(ps, lx);
        v = parse_value(ps, lx, depth, key);
        if (v == NULL)
            goto fail;
    } else if (t->kind == T_LBRACE) {
        v = parse_value(ps, lx, depth, key);
        if (v == NULL)
            goto fail;
    } else {
        cfg_error_add(ps->errs, lx->src->path, t->line, t->col, key,
                      "expected '=' or '{' after \"%.40s\", got %s", k,
                      tok_desc(t, tmp, sizeof(tmp)));
        goto fail;
    }
    if (t->kind == T_SEMI) {
        lx_next(ps, lx);
    } else if (was_eq && v->kind != CN_BLOCK) {
        /* Report right after the value; carry on as if the ';' were there. */
        cfg_error_add(ps->errs, lx->src->path, lx->pline, lx->pcol, key,
                      "missing ';' after value");
    }
    v->key = k;
    v->qkey = qkey;
    v->label = label;
    v->kline = kline;
    v->kcol = kcol;
    if (block->nkids >= CFG_ENTRIES_MAX) {
        cfg_error_add(ps->errs, lx->src->path, kline, kcol, key,
                      "too many entries in one block (limit %d)", CFG_ENTRIES_MAX);
        node_free(v);
        return;
    }
    node_add(block, v);
    return;
fail:
    free(k);
    free(label);
    skip_to_sync(ps, lx);
}

static void parse_body(struct parser *ps, struct lexer *lx, struct cnode *block, int depth,
                       const char *path, int closing, int oline, int ocol)
{
    struct token *t = &lx->tok;
    for (;;) {
        if (t->kind == T_EOF) {
            if (closing)
                cfg_error_add(ps->errs, lx->src->path, oline, ocol, path,
                              "'{' is never closed");
            return;
        }
        if (t->kind == T_RBRACE) {
            if (closing) {
                lx_next(ps, lx);
                return;
            }
            cfg_error_add(ps->errs, lx->src->path, t->line, t->col, path,
                          "unexpected '}' (no block is open)");
            lx_next(ps, lx);
            continue;
        }
        if (t->kind == T_SEMI) {                      /* stray ';' is harmless */
            lx_next(ps, lx);
            continue;
        }
        parse_entry(ps, lx, block, depth, path);
    }
}

void cfg_tree_parse(struct cfg_tree *t, const char *path, const char *data, size_t len,
                    struct config_errors *errs)
{
    struct parser ps = { .tree = t, .errs = errs };
    char real[PATH_MAX];
    char *owned = NULL;
    memset(t, 0, sizeof(*t));
    if (data == NULL) {
        if (read_file(&ps, path, path, 0, 0, &owned, &len) < 0) {
            /* read_file reported "cannot open path" against path itself */
            const struct cfg_source *src = source_new(t, path, NULL);
            t->root = node_new(CN_BLOCK, src, 1, 1);
            return;
        }
        data = owned;
    } else if (len > CFG_FILE_MAX) {
        cfg_error_add(errs, path, 0, 0, "", "too large (limit %d bytes)", CFG_FILE_MAX);
        const struct cfg_source *src = source_new(t, path, NULL);
        t->root = node_new(CN_BLOCK, src, 1, 1);
        return;
    }
    const struct cfg_source *src = source_new(t, path, realpath(path, real) ? real : NULL);
    t->root = node_new(CN_BLOCK, src, 1, 1);
    parse_text(&ps, src, data, len, t->root, 0, "");
    free(owned);
}
