/*
 * rl_parse.c - the rules parser: declarations and statements by recursive
 * descent, expressions by a Pratt parser driven by one table (clox). Every
 * node carries file:line:col. Panic-mode recovery: after the first error the
 * parser stays quiet until it resynchronises at a statement or declaration
 * boundary, so one mistake gives one error. Nesting is bounded
 * (RL_DEPTH_MAX) so hostile input cannot exhaust the C stack.
 */
#include <stdio.h>
#include <string.h>
#include "rules/rl_int.h"

struct parser {
    struct rl_cc *cc;
    int file;
    struct rl_lexer lx;
    struct rl_token cur, prev;
    int panic;
    int had_error;
    int depth;
};

enum prec { P_NONE = 0, P_OR, P_AND, P_EQ, P_CMP, P_UNARY, P_CALL };

typedef struct rl_node *(*prefix_fn)(struct parser *);
typedef struct rl_node *(*infix_fn)(struct parser *, struct rl_node *);
struct prule { prefix_fn prefix; infix_fn infix; enum prec prec; };
static const struct prule *get_rule(enum rl_tok t);
static struct rl_node *expression(struct parser *p);
static struct rl_node *block(struct parser *p);

/* ---- errors and token helpers -------------------------------------------------- */
static void describe(const struct rl_token *t, char *out, size_t n)
{
    if (t->type == TK_IDENT || (t->type >= TK_IMPORT && t->type < TK__COUNT))
        snprintf(out, n, "'%.*s'", (int)(t->len > 40 ? 40 : t->len), t->start);
    else if (t->type == TK_INT || t->type == TK_DURATION)
        snprintf(out, n, "'%.*s'", (int)(t->len > 20 ? 20 : t->len), t->start);
    else
        snprintf(out, n, "%s", rl_tok_name(t->type));
}

static void error_at(struct parser *p, const struct rl_token *t, const char *msg)
{
    if (p->panic || (t->type == TK_EOF && p->had_error))
        return;     /* "found end of file" after an error is its echo */
    p->panic = 1;
    p->had_error = 1;
    rl_error(p->cc, p->file, t->line, t->col, "%s", msg);
}

static void error_expected(struct parser *p, const char *what)
{
    char d[64], m[160];
    describe(&p->cur, d, sizeof(d));
    snprintf(m, sizeof(m), "expected %s, found %s", what, d);
    error_at(p, &p->cur, m);
}

static void advance(struct parser *p)
{
    p->prev = p->cur;
    for (;;) {
        p->cur = rl_lex_next(&p->lx);
        if (p->cur.type != TK_ERROR)
            return;
        char m[96];
        if (strcmp(p->cur.err, "unexpected character") == 0)
            snprintf(m, sizeof(m), "unexpected character '%.*s'", (int)p->cur.len, p->cur.start);
        else
            snprintf(m, sizeof(m), "%s", p->cur.err);
        error_at(p, &p->cur, m);
        if (p->cur.err[0] == 'i') {     /* a bad number still stands for a number */
            p->cur.type = TK_INT;
            p->cur.ival = 0;
            return;
        }
    }
}

static int check(const struct parser *p, enum rl_tok t) { return p->cur.type == t; }

static int match(struct parser *p, enum rl_tok t)
{
    if (!check(p, t))
        return 0;
    advance(p);
    return 1;
}

static int consume(struct parser *p, enum rl_tok t, const char *what)
{
    if (check(p, t)) {
        advance(p);
        return 1;
    }
    error_expected(p, what ? what : rl_tok_name(t));
    return 0;
}

static struct rl_node *node_at(struct parser *p, int kind, const struct rl_token *t)
{
    return rl_node_new(p->cc, kind, p->file, t->line, t->col);
}

static void set_name(struct rl_node *n, const struct rl_token *t)
{
    n->s = t->start;
    n->slen = (uint32_t)t->len;
}

static int enter(struct parser *p)
{
    if (++p->depth > RL_DEPTH_MAX) {
        error_at(p, &p->cur, "nesting too deep");
        return 0;
    }
    return 1;
}

/* ---- string literals ------------------------------------------------------------- */
/* Unescape s[0..n) into the arena; -1 (and *bad set) on a bad escape. */
static int unescape(struct parser *p, const char *s, size_t n, struct rl_node *out, size_t *bad)
{
    char *d = rl_arena_alloc(&p->cc->arena, n + 1);
    size_t k = 0;
    out->s = d;         /* valid (empty) even when an escape is bad */
    out->slen = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') {
            d[k++] = s[i];
            continue;
        }
        if (i + 1 >= n) {
            *bad = i;
            return -1;
        }
        char c = s[++i];
        switch (c) {
        case 'n': d[k++] = '\n'; break;
        case 't': d[k++] = '\t'; break;
        case '\\': case '"': case '`': case '$': d[k++] = c; break;
        default:
            *bad = i - 1;
            return -1;
        }
    }
    d[k] = '\0';
    out->s = d;
    out->slen = (uint32_t)k;
    return 0;
}

static struct rl_node *plain_string(struct parser *p, const struct rl_token *t)
{
    struct rl_node *n = node_at(p, N_STRING, t);
    size_t bad = 0;
    if (unescape(p, t->start + 1, t->len - 2, n, &bad) < 0) {
        char m[64];
        snprintf(m, sizeof(m), "invalid escape sequence '\\%c'",
                 bad + 2 < t->len - 1 ? t->start[bad + 2] : ' ');
        struct rl_token e = *t;
        e.col += (int)bad + 1;
        error_at(p, &e, m);
    }
    return n;
}

static struct rl_node *string_lit(struct parser *p)
{
    return plain_string(p, &p->prev);
}

/* A backtick string: literal pieces and ${expr} pieces, each parsed by a
 * nested parser whose lexer starts at the expression's own line/col. */
static struct rl_node *template_lit(struct parser *p)
{
    struct rl_token t = p->prev;
    struct rl_node *n = node_at(p, N_TEMPLATE, &t);
    struct rl_node **tail = &n->a;
    const char *s = t.start + 1, *end = t.start + t.len - 1;
    int line = t.line, col = t.col + 1;
    buf_t lit;
    buf_init(&lit, 64);
    int lit_line = line, lit_col = col;
    while (s < end) {
        if (*s == '\\' && s + 1 < end) {
            char c = s[1];
            char o = c == 'n' ? '\n' : c == 't' ? '\t' : c;
            if (!strchr("nt\\\"`$", c)) {
                struct rl_token e = t;
                e.line = line;
                e.col = col;
                char m[64];
                snprintf(m, sizeof(m), "invalid escape sequence '\\%c'", c);
                error_at(p, &e, m);
            }
            buf_append_char(&lit, o);
            s += 2;
            col += 2;
            continue;
        }
        if (*s == '$' && s + 1 < end && s[1] == '{') {
            if (lit.len) {
                struct rl_node *ln = rl_node_new(p->cc, N_STRING, p->file, lit_line, lit_col);
                char *d = rl_arena_alloc(&p->cc->arena, lit.len + 1);
                memcpy(d, lit.data, lit.len);
                ln->s = d;
                ln->slen = (uint32_t)lit.len;
                *tail = ln;
                tail = &ln->next;
                buf_reset(&lit);
            }
            const char *e = s + 2;
            int depth = 1;
            while (e < end) {
                if (*e == '{')
                    depth++;
                else if (*e == '}' && --depth == 0)
                    break;
                e++;
            }
            struct parser sub = { .cc = p->cc, .file = p->file, .depth = p->depth };
            rl_lex_init(&sub.lx, s + 2, (size_t)(e - (s + 2)), line, col + 2);
            advance(&sub);
            struct rl_node *x;
            if (check(&sub, TK_EOF)) {
                error_at(&sub, &sub.cur, "empty interpolation '${}'");
                x = rl_node_new(p->cc, N_STRING, p->file, line, col);
                x->s = "";
            } else {
                x = expression(&sub);
                if (!check(&sub, TK_EOF))
                    error_expected(&sub, "'}' after interpolated expression");
            }
            if (sub.panic)
                p->panic = 1;
            *tail = x;
            tail = &x->next;
            for (const char *q = s; q < e + 1 && q < end; q++) {
                if (*q == '\n') {
                    line++;
                    col = 1;
                } else {
                    col++;
                }
            }
            s = e + 1;
            lit_line = line;
            lit_col = col;
            continue;
        }
        buf_append_char(&lit, *s);
        if (*s == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
        s++;
    }
    if (lit.len || n->a == NULL) {
        struct rl_node *ln = rl_node_new(p->cc, N_STRING, p->file, lit_line, lit_col);
        char *d = rl_arena_alloc(&p->cc->arena, lit.len + 1);
        memcpy(d, lit.data, lit.len);
        ln->s = d;
        ln->slen = (uint32_t)lit.len;
        *tail = ln;
    }
    buf_free(&lit);
    return n;
}

/* ---- expressions ------------------------------------------------------------------- */
static struct rl_node *parse_prec(struct parser *p, enum prec prec)
{
    if (!enter(p)) {
        p->depth--;
        if (!check(p, TK_EOF))
            advance(p);     /* always make progress */
        return node_at(p, N_BOOL, &p->prev);
    }
    const struct prule *r = get_rule(p->cur.type);
    if (r->prefix == NULL) {
        char d[64], m[128];
        describe(&p->cur, d, sizeof(d));
        snprintf(m, sizeof(m), "expected expression, found %s", d);
        error_at(p, &p->cur, m);
        /* leave braces and ';' for the statement parser to resynchronise on */
        if (!check(p, TK_LBRACE) && !check(p, TK_RBRACE) && !check(p, TK_SEMI) && !check(p, TK_EOF))
            advance(p);
        p->depth--;
        return node_at(p, N_BOOL, &p->prev);
    }
    advance(p);
    struct rl_node *left = r->prefix(p);
    while (prec <= get_rule(p->cur.type)->prec) {
        advance(p);
        left = get_rule(p->prev.type)->infix(p, left);
    }
    p->depth--;
    return left;
}

static struct rl_node *expression(struct parser *p)
{
    return parse_prec(p, P_OR);
}

static struct rl_node *number(struct parser *p)
{
    struct rl_node *n = node_at(p, N_INT, &p->prev);
    n->ival = p->prev.ival;
    return n;
}

static struct rl_node *literal(struct parser *p)
{
    struct rl_node *n = node_at(p, N_BOOL, &p->prev);
    n->ival = p->prev.type == TK_TRUE;
    return n;
}

static struct rl_node *grouping(struct parser *p)
{
    struct rl_node *e = expression(p);
    consume(p, TK_RPAREN, "')'");
    return e;
}

static struct rl_node *unary(struct parser *p)
{
    struct rl_token op = p->prev;
    struct rl_node *n = node_at(p, N_UNARY, &op);
    n->op = (uint8_t)op.type;
    n->a = parse_prec(p, P_UNARY);
    return n;
}

static struct rl_node *binary(struct parser *p, struct rl_node *left)
{
    struct rl_token op = p->prev;
    const struct prule *r = get_rule(op.type);
    struct rl_node *n = node_at(p, N_BINARY, &op);
    n->op = (uint8_t)op.type;
    n->a = left;
    n->b = parse_prec(p, (enum prec)(r->prec + 1));
    return n;
}

/* Comma-separated expressions up to `close`; returns the list. */
static struct rl_node *expr_list(struct parser *p, enum rl_tok close, const char *what)
{
    struct rl_node *head = NULL, **tail = &head;
    if (!check(p, close)) {
        do {
            if (check(p, close))
                break;          /* trailing comma */
            struct rl_node *e = expression(p);
            *tail = e;
            tail = &e->next;
        } while (match(p, TK_COMMA));
    }
    consume(p, close, what);
    return head;
}

static struct rl_node *list_lit(struct parser *p)
{
    struct rl_node *n = node_at(p, N_LIST, &p->prev);
    n->a = expr_list(p, TK_RBRACKET, "']' after list elements");
    return n;
}

static struct rl_node *call(struct parser *p, struct rl_node *callee)
{
    struct rl_node *n = rl_node_new(p->cc, N_CALL, p->file, callee->line, callee->col);
    n->a = callee;
    n->b = expr_list(p, TK_RPAREN, "')' after arguments");
    return n;
}

static struct rl_node *dot(struct parser *p, struct rl_node *obj)
{
    struct rl_node *n = node_at(p, N_MEMBER, &p->cur);
    n->a = obj;
    if (consume(p, TK_IDENT, "field or method name after '.'"))
        set_name(n, &p->prev);
    else
        n->s = "";
    return n;
}

/* identifier; `alias::name`; typed literal `cidr "..."`; `group [...]`;
 * `file:TYPE "path"` */
static struct rl_node *name_expr(struct parser *p)
{
    struct rl_token id = p->prev;
    if (check(p, TK_STRING)) {
        advance(p);
        struct rl_node *n = plain_string(p, &p->prev);
        n->kind = N_TYPED;
        n->line = id.line;
        n->col = id.col;
        n->ref2 = (int)(p->prev.line);    /* keep literal position for messages */
        n->ival = p->prev.col;
        n->c = node_at(p, N_NAME, &id);
        set_name(n->c, &id);
        return n;
    }
    if (id.len == 5 && memcmp(id.start, "group", 5) == 0 && check(p, TK_LBRACKET)) {
        advance(p);
        struct rl_node *n = node_at(p, N_GROUP, &id);
        n->a = expr_list(p, TK_RBRACKET, "']' after group members");
        return n;
    }
    if (id.len == 4 && memcmp(id.start, "file", 4) == 0 && check(p, TK_COLON)) {
        advance(p);
        struct rl_node *n = node_at(p, N_FILE, &id);
        n->c = node_at(p, N_NAME, &p->cur);
        if (consume(p, TK_IDENT, "file element type after 'file:'"))
            set_name(n->c, &p->prev);
        else
            n->c->s = "";
        if (consume(p, TK_STRING, "file path string")) {
            struct rl_node *s = plain_string(p, &p->prev);
            n->s = s->s;
            n->slen = s->slen;
        } else {
            n->s = "";
        }
        return n;
    }
    if (check(p, TK_COLCOL)) {
        advance(p);
        struct rl_node *n = node_at(p, N_QNAME, &id);
        set_name(n, &id);
        n->a = node_at(p, N_NAME, &p->cur);
        if (consume(p, TK_IDENT, "name after '::'"))
            set_name(n->a, &p->prev);
        else
            n->a->s = "";
        return n;
    }
    struct rl_node *n = node_at(p, N_NAME, &id);
    set_name(n, &id);
    return n;
}

static const struct prule prules[TK__COUNT] = {
    [TK_LPAREN]   = { grouping, call, P_CALL },
    [TK_DOT]      = { NULL, dot, P_CALL },
    [TK_LBRACKET] = { list_lit, NULL, P_NONE },
    [TK_BANG]     = { unary, NULL, P_NONE },
    [TK_MINUS]    = { unary, NULL, P_NONE },
    [TK_EQEQ]     = { NULL, binary, P_EQ },
    [TK_NE]       = { NULL, binary, P_EQ },
    [TK_LT]       = { NULL, binary, P_CMP },
    [TK_GT]       = { NULL, binary, P_CMP },
    [TK_LE]       = { NULL, binary, P_CMP },
    [TK_GE]       = { NULL, binary, P_CMP },
    [TK_IN]       = { NULL, binary, P_CMP },
    [TK_MATCHES]  = { NULL, binary, P_CMP },
    [TK_ANDAND]   = { NULL, binary, P_AND },
    [TK_OROR]     = { NULL, binary, P_OR },
    [TK_IDENT]    = { name_expr, NULL, P_NONE },
    [TK_STRING]   = { string_lit, NULL, P_NONE },
    [TK_TEMPLATE] = { template_lit, NULL, P_NONE },
    [TK_INT]      = { number, NULL, P_NONE },
    [TK_DURATION] = { number, NULL, P_NONE },
    [TK_TRUE]     = { literal, NULL, P_NONE },
    [TK_FALSE]    = { literal, NULL, P_NONE },
};

static const struct prule *get_rule(enum rl_tok t)
{
    return &prules[t];
}

/* ---- statements ---------------------------------------------------------------------- */
static void sync_stmt(struct parser *p)
{
    p->panic = 0;
    while (!check(p, TK_EOF)) {
        if (check(p, TK_LBRACE)) {      /* skip a whole nested block */
            int depth = 0;
            do {
                if (check(p, TK_LBRACE))
                    depth++;
                else if (check(p, TK_RBRACE))
                    depth--;
                advance(p);
            } while (depth > 0 && !check(p, TK_EOF));
            p->panic = 0;
            return;
        }
        if (p->prev.type == TK_SEMI)
            return;
        switch (p->cur.type) {
        case TK_LET: case TK_IF: case TK_FOR: case TK_RETURN: case TK_RBRACE:
        case TK_RULE: case TK_ACTION: case TK_STAGE: case TK_OBJECT: case TK_SERVICE:
        case TK_IMPORT:
            return;
        default:
            advance(p);
        }
    }
}

static struct rl_node *statement(struct parser *p);

static struct rl_node *if_stmt(struct parser *p)
{
    struct rl_node *n = node_at(p, N_IF, &p->prev);
    n->a = expression(p);
    n->b = block(p);
    if (match(p, TK_ELSE)) {
        if (match(p, TK_IF)) {
            if (enter(p))
                n->c = if_stmt(p);
            p->depth--;
        } else {
            n->c = block(p);
        }
    }
    return n;
}

static struct rl_node *return_stmt(struct parser *p)
{
    struct rl_node *n = node_at(p, N_RETURN, &p->prev);
    struct rl_node *st = node_at(p, N_STATUS, &p->cur);
    n->a = st;
    if (consume(p, TK_IDENT, "status after 'return'")) {
        set_name(st, &p->prev);
        if (match(p, TK_LPAREN))
            st->a = expr_list(p, TK_RPAREN, "')' after status arguments");
    } else {
        st->s = "";
    }
    consume(p, TK_SEMI, "';' after return");
    return n;
}

static struct rl_node *statement(struct parser *p)
{
    struct rl_node *n;
    if (match(p, TK_LET)) {
        n = node_at(p, N_LET, &p->prev);
        if (consume(p, TK_IDENT, "variable name after 'let'"))
            set_name(n, &p->prev);
        else
            n->s = "";
        consume(p, TK_EQ, "'=' after variable name");
        n->a = expression(p);
        consume(p, TK_SEMI, "';' after let");
    } else if (match(p, TK_IF)) {
        n = if_stmt(p);
    } else if (match(p, TK_FOR)) {
        n = node_at(p, N_FOR, &p->prev);
        if (consume(p, TK_IDENT, "loop variable after 'for'"))
            set_name(n, &p->prev);
        else
            n->s = "";
        consume(p, TK_IN, "'in' after loop variable");
        n->a = expression(p);
        n->b = block(p);
    } else if (match(p, TK_RETURN)) {
        n = return_stmt(p);
    } else {
        n = node_at(p, N_EXPR, &p->cur);
        n->a = expression(p);
        consume(p, TK_SEMI, "';' after expression");
    }
    if (p->panic)
        sync_stmt(p);
    return n;
}

static struct rl_node *block(struct parser *p)
{
    struct rl_node *b = node_at(p, N_BLOCK, &p->cur);
    if (!consume(p, TK_LBRACE, "'{'"))
        return b;
    if (!enter(p)) {
        p->depth--;
        return b;
    }
    struct rl_node **tail = &b->a;
    while (!check(p, TK_RBRACE) && !check(p, TK_EOF)) {
        if (check(p, TK_RULE) || check(p, TK_ACTION) || check(p, TK_STAGE)) {
            error_expected(p, "'}'");
            break;
        }
        struct rl_node *s = statement(p);
        *tail = s;
        tail = &s->next;
    }
    consume(p, TK_RBRACE, "'}'");
    p->depth--;
    return b;
}

/* ---- declarations ------------------------------------------------------------------- */
static void sync_decl(struct parser *p)
{
    p->panic = 0;
    while (!check(p, TK_EOF)) {
        if (check(p, TK_IMPORT) || check(p, TK_OBJECT) || check(p, TK_SERVICE) ||
            check(p, TK_STAGE))
            return;
        advance(p);
    }
}

static struct rl_node *stage_decl(struct parser *p)
{
    struct rl_node *n = node_at(p, N_STAGE, &p->cur);
    if (consume(p, TK_IDENT, "stage name"))
        set_name(n, &p->prev);
    else
        n->s = "";
    consume(p, TK_LBRACE, "'{' after stage name");
    struct rl_node **tail = &n->a;
    while (!check(p, TK_RBRACE) && !check(p, TK_EOF)) {
        if (!check(p, TK_RULE) && !check(p, TK_ACTION)) {
            error_expected(p, "'rule' or 'action'");
            while (!check(p, TK_EOF) && !check(p, TK_RULE) && !check(p, TK_ACTION) &&
                   !check(p, TK_RBRACE))
                advance(p);
            p->panic = 0;
            continue;
        }
        advance(p);
        int is_action = p->prev.type == TK_ACTION;
        struct rl_node *r = node_at(p, is_action ? N_ACTION : N_RULE, &p->prev);
        if (consume(p, TK_STRING, is_action ? "action name string" : "rule name string")) {
            struct rl_node *s = plain_string(p, &p->prev);
            r->s = s->s;
            r->slen = s->slen;
        } else {
            r->s = "";
            if (check(p, TK_IDENT))
                advance(p);     /* rule a { ...: take it as the name */
        }
        r->a = block(p);
        *tail = r;
        tail = &r->next;
        if (p->panic)
            sync_stmt(p);
    }
    consume(p, TK_RBRACE, "'}' after stage");
    return n;
}

static struct rl_node *service_decl(struct parser *p)
{
    struct rl_node *n = node_at(p, N_SERVICE, &p->prev);
    if (consume(p, TK_IDENT, "service name"))
        set_name(n, &p->prev);
    else
        n->s = "";
    consume(p, TK_EQ, "'=' after service name");
    n->a = node_at(p, N_NAME, &p->cur);
    if (consume(p, TK_IDENT, "service kind (csv, cmd, smtp)"))
        set_name(n->a, &p->prev);
    else
        n->a->s = "";
    consume(p, TK_LBRACE, "'{' after service kind");
    struct rl_node **tail = &n->b;
    while (!p->panic && !check(p, TK_RBRACE) && !check(p, TK_EOF)) {
        struct rl_node *o = node_at(p, N_OPTION, &p->cur);
        if (!consume(p, TK_IDENT, "option name"))
            break;
        set_name(o, &p->prev);
        consume(p, TK_EQ, "'=' after option name");
        o->a = expression(p);
        consume(p, TK_SEMI, "';' after option");
        *tail = o;
        tail = &o->next;
    }
    consume(p, TK_RBRACE, "'}' after service options");
    match(p, TK_SEMI);
    return n;
}

static struct rl_node *declaration(struct parser *p)
{
    struct rl_node *n = NULL;
    if (match(p, TK_IMPORT)) {
        n = node_at(p, N_IMPORT, &p->prev);
        if (consume(p, TK_STRING, "file name string after 'import'")) {
            struct rl_node *s = plain_string(p, &p->prev);
            n->s = s->s;
            n->slen = s->slen;
        } else {
            n->s = "";
        }
        consume(p, TK_AS, "'as' after import file");
        n->a = node_at(p, N_NAME, &p->cur);
        if (consume(p, TK_IDENT, "alias after 'as'"))
            set_name(n->a, &p->prev);
        else
            n->a->s = "";
        consume(p, TK_SEMI, "';' after import");
    } else if (match(p, TK_OBJECT)) {
        n = node_at(p, N_OBJECT, &p->prev);
        if (consume(p, TK_IDENT, "object name"))
            set_name(n, &p->prev);
        else
            n->s = "";
        consume(p, TK_EQ, "'=' after object name");
        n->a = expression(p);
        consume(p, TK_SEMI, "';' after object");
    } else if (match(p, TK_SERVICE)) {
        n = service_decl(p);
    } else if (match(p, TK_STAGE)) {
        n = stage_decl(p);
    } else {
        error_expected(p, "declaration (import, object, service or stage)");
        advance(p);
    }
    if (p->panic)
        sync_decl(p);
    return n;
}

struct rl_node *rl_parse(struct rl_cc *cc, int file, const char *src, size_t len)
{
    struct parser p = { .cc = cc, .file = file };
    rl_lex_init(&p.lx, src, len, 1, 1);
    advance(&p);
    struct rl_node *head = NULL, **tail = &head;
    while (!check(&p, TK_EOF)) {
        struct rl_node *d = declaration(&p);
        if (d) {
            *tail = d;
            tail = &d->next;
        }
    }
    return head;
}
