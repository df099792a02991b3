/*
 * rl_lex.c - the rules lexer (clox style): tokens point into the source,
 * nothing is copied; line and column (1-based, bytes) on every token.
 * Used by rl_parse.c, also on the inside of `${...}` in backtick strings
 * (started at the line/col of the expression). Never reads past `end`.
 */
#include <string.h>
#include "rules/rl_int.h"

void rl_lex_init(struct rl_lexer *l, const char *src, size_t len, int line, int col)
{
    l->src = l->cur = src;
    l->end = src + len;
    l->line = line;
    l->col = col;
}

static const struct { const char *word; enum rl_tok t; } keywords[] = {
    { "import", TK_IMPORT }, { "as", TK_AS }, { "object", TK_OBJECT },
    { "service", TK_SERVICE }, { "stage", TK_STAGE }, { "rule", TK_RULE },
    { "action", TK_ACTION }, { "if", TK_IF }, { "else", TK_ELSE }, { "for", TK_FOR },
    { "in", TK_IN }, { "let", TK_LET }, { "return", TK_RETURN }, { "true", TK_TRUE },
    { "false", TK_FALSE }, { "matches", TK_MATCHES },
};

static const char *const tok_names[TK__COUNT] = {
    [TK_EOF] = "end of file", [TK_ERROR] = "error", [TK_IDENT] = "identifier",
    [TK_STRING] = "string", [TK_TEMPLATE] = "string", [TK_INT] = "integer",
    [TK_DURATION] = "duration", [TK_LBRACE] = "'{'", [TK_RBRACE] = "'}'",
    [TK_LPAREN] = "'('", [TK_RPAREN] = "')'", [TK_LBRACKET] = "'['",
    [TK_RBRACKET] = "']'", [TK_COMMA] = "','", [TK_SEMI] = "';'", [TK_DOT] = "'.'",
    [TK_COLON] = "':'", [TK_COLCOL] = "'::'", [TK_EQ] = "'='", [TK_EQEQ] = "'=='",
    [TK_NE] = "'!='", [TK_LT] = "'<'", [TK_GT] = "'>'", [TK_LE] = "'<='",
    [TK_GE] = "'>='", [TK_ANDAND] = "'&&'", [TK_OROR] = "'||'", [TK_BANG] = "'!'",
    [TK_MINUS] = "'-'", [TK_IMPORT] = "'import'", [TK_AS] = "'as'",
    [TK_OBJECT] = "'object'", [TK_SERVICE] = "'service'", [TK_STAGE] = "'stage'",
    [TK_RULE] = "'rule'", [TK_ACTION] = "'action'", [TK_IF] = "'if'",
    [TK_ELSE] = "'else'", [TK_FOR] = "'for'", [TK_IN] = "'in'", [TK_LET] = "'let'",
    [TK_RETURN] = "'return'", [TK_TRUE] = "'true'", [TK_FALSE] = "'false'",
    [TK_MATCHES] = "'matches'",
};

const char *rl_tok_name(enum rl_tok t)
{
    return (unsigned)t < TK__COUNT && tok_names[t] ? tok_names[t] : "token";
}

static int is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int is_digit(int c) { return c >= '0' && c <= '9'; }

static int peekc(const struct rl_lexer *l, size_t k)
{
    return l->cur + k < l->end ? (unsigned char)l->cur[k] : -1;
}

static void adv(struct rl_lexer *l)
{
    if (*l->cur == '\n') {
        l->line++;
        l->col = 1;
    } else {
        l->col++;
    }
    l->cur++;
}

static void skip_space(struct rl_lexer *l)
{
    while (l->cur < l->end) {
        int c = (unsigned char)*l->cur;
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            adv(l);
        } else if (c == '#' || (c == '/' && peekc(l, 1) == '/')) {
            while (l->cur < l->end && *l->cur != '\n')
                adv(l);
        } else {
            return;
        }
    }
}

static struct rl_token make(struct rl_lexer *l, enum rl_tok t, const char *start, int line,
                            int col)
{
    struct rl_token k;
    memset(&k, 0, sizeof(k));
    k.type = t;
    k.start = start;
    k.len = (size_t)(l->cur - start);
    k.line = line;
    k.col = col;
    return k;
}

static struct rl_token error_tok(struct rl_lexer *l, const char *msg, const char *start, int line,
                                 int col)
{
    struct rl_token k = make(l, TK_ERROR, start, line, col);
    k.err = msg;
    return k;
}

/* "..." (escapes \" \\ \n \t) or `...` (may span lines, holds ${expr}). */
static struct rl_token string_tok(struct rl_lexer *l, int line, int col)
{
    const char *start = l->cur;
    char q = *l->cur;
    adv(l);
    int depth = 0;
    while (l->cur < l->end) {
        char c = *l->cur;
        if (c == '\\' && l->cur + 1 < l->end) {
            adv(l);
            adv(l);
            continue;
        }
        if (q == '"' && c == '\n')
            break;
        if (q == '`' && c == '$' && peekc(l, 1) == '{') {
            depth++;
            adv(l);
        } else if (q == '`' && depth > 0 && c == '}') {
            depth--;
        } else if (c == q && depth == 0) {
            adv(l);
            return make(l, q == '"' ? TK_STRING : TK_TEMPLATE, start, line, col);
        }
        adv(l);
    }
    return error_tok(l, "unterminated string", start, line, col);
}

static struct rl_token number_tok(struct rl_lexer *l, int line, int col)
{
    const char *start = l->cur;
    int64_t v = 0;
    int over = 0;
    while (l->cur < l->end && is_digit(*l->cur)) {
        int d = *l->cur - '0';
        if (v > (INT64_MAX - d) / 10)
            over = 1;
        else
            v = v * 10 + d;
        adv(l);
    }
    enum rl_tok t = TK_INT;
    int c = peekc(l, 0);
    if ((c == 's' || c == 'm' || c == 'h' || c == 'd') && !is_alpha(peekc(l, 1)) &&
        !is_digit(peekc(l, 1))) {
        int64_t mul = c == 's' ? 1 : c == 'm' ? 60 : c == 'h' ? 3600 : 86400;
        if (v > INT64_MAX / mul)
            over = 1;
        else
            v *= mul;
        adv(l);
        t = TK_DURATION;
    }
    if (l->cur < l->end && (is_alpha(*l->cur) || is_digit(*l->cur))) {
        while (l->cur < l->end && (is_alpha(*l->cur) || is_digit(*l->cur)))
            adv(l);
        return error_tok(l, "invalid number", start, line, col);
    }
    if (over)
        return error_tok(l, "integer too large", start, line, col);
    struct rl_token k = make(l, t, start, line, col);
    k.ival = v;
    return k;
}

struct rl_token rl_lex_next(struct rl_lexer *l)
{
    skip_space(l);
    int line = l->line, col = l->col;
    const char *start = l->cur;
    if (l->cur >= l->end)
        return make(l, TK_EOF, start, line, col);
    int c = (unsigned char)*l->cur;
    if (is_alpha(c)) {
        while (l->cur < l->end && (is_alpha(*l->cur) || is_digit(*l->cur)))
            adv(l);
        size_t n = (size_t)(l->cur - start);
        for (size_t i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++)
            if (strlen(keywords[i].word) == n && memcmp(keywords[i].word, start, n) == 0)
                return make(l, keywords[i].t, start, line, col);
        return make(l, TK_IDENT, start, line, col);
    }
    if (is_digit(c))
        return number_tok(l, line, col);
    if (c == '"' || c == '`')
        return string_tok(l, line, col);
    int c1 = peekc(l, 1);
    enum rl_tok t = TK_ERROR;
    int two = 0;
    switch (c) {
    case '{': t = TK_LBRACE; break;
    case '}': t = TK_RBRACE; break;
    case '(': t = TK_LPAREN; break;
    case ')': t = TK_RPAREN; break;
    case '[': t = TK_LBRACKET; break;
    case ']': t = TK_RBRACKET; break;
    case ',': t = TK_COMMA; break;
    case ';': t = TK_SEMI; break;
    case '.': t = TK_DOT; break;
    case '-': t = TK_MINUS; break;
    case ':': t = c1 == ':' ? (two = 1, TK_COLCOL) : TK_COLON; break;
    case '=': t = c1 == '=' ? (two = 1, TK_EQEQ) : TK_EQ; break;
    case '!': t = c1 == '=' ? (two = 1, TK_NE) : TK_BANG; break;
    case '<': t = c1 == '=' ? (two = 1, TK_LE) : TK_LT; break;
    case '>': t = c1 == '=' ? (two = 1, TK_GE) : TK_GT; break;
    case '&': if (c1 == '&') { two = 1; t = TK_ANDAND; } break;
    case '|': if (c1 == '|') { two = 1; t = TK_OROR; } break;
    default: break;
    }
    adv(l);
    if (two)
        adv(l);
    if (t == TK_ERROR) {
        /* swallow a whole UTF-8 sequence so the message shows one character */
        while (l->cur < l->end && ((unsigned char)*l->cur & 0xc0) == 0x80)
            adv(l);
        return error_tok(l, "unexpected character", start, line, col);
    }
    return make(l, t, start, line, col);
}
