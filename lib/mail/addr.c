/*
 * addr.c - RFC 5321 path and mailbox parsing, ESMTP parameters, xtext.
 *
 * A small recursive-descent scanner over (pointer, end): every function
 * advances *pp only over bytes the grammar allows and reports the first
 * problem. Nothing here allocates except the caller's buf_t, nothing reads
 * past end, and nothing assumes NUL termination (the fuzzer feeds raw
 * bytes). Lengths are checked against the RFC limits (addr.h).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <string.h>
#include <strings.h>
#include "mail/addr.h"
#include "util/idna.h"
#include "util/buf.h"

/* atext per RFC 5322 3.2.3 (ASCII part) */
static int is_atext(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static int is_letdig(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Length of one well-formed UTF-8 sequence of 2..4 bytes at p, or 0.
 * Refuses overlongs, surrogates, code points over U+10FFFF and the C1
 * controls U+0080..U+009F (never wanted in an address or a log line). */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0];
    size_t len;
    unsigned min;
    unsigned cp;
    if (c >= 0xc2 && c <= 0xdf) { len = 2; cp = c & 0x1f; min = 0x80; }
    else if (c >= 0xe0 && c <= 0xef) { len = 3; cp = c & 0x0f; min = 0x800; }
    else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07; min = 0x10000; }
    else return 0;
    if ((size_t)(end - p) < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || cp < 0xa0)
        return 0;
    return len;
}

size_t addr_utf8_seq(const unsigned char *p, size_t n)
{
    return n > 0 ? utf8_seq(p, p + n) : 0;
}

int addr_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        if (*p < 0x80) {
            p++;
            continue;
        }
        size_t l = utf8_seq(p, end);
        if (l == 0)
            return 0;
        p += l;
    }
    return 1;
}

int addr_is_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return 0;
    return 1;
}

static int is_label_char(unsigned char c)
{
    return is_letdig(c) || c == '-';
}

/* Advance *pp over bytes ok() accepts and, with ADDR_F_UTF8, whole UTF-8
 * sequences (atoms and domain labels alike); -1 on a broken sequence. */
static int scan_run(const unsigned char **pp, const unsigned char *end, unsigned flags,
                    int (*ok)(unsigned char))
{
    const unsigned char *p = *pp;
    while (p < end) {
        if (ok(*p)) {
            p++;
        } else if (*p >= 0x80 && (flags & ADDR_F_UTF8)) {
            size_t l = utf8_seq(p, end);
            if (l == 0)
                return -1;
            p += l;
        } else {
            break;
        }
    }
    *pp = p;
    return 0;
}

/* Local-part = Dot-string / Quoted-string */
static int scan_local(const unsigned char **pp, const unsigned char *end, unsigned flags)
{
    const unsigned char *p = *pp, *start = p;
    if (p < end && *p == '"') {
        p++;
        for (;;) {
            if (p >= end)
                return ADDR_ERR_SYNTAX;
            unsigned char c = *p;
            if (c == '"')
                break;
            if (c == '\\') {
                if (p + 1 >= end || p[1] < 32 || p[1] > 126)
                    return ADDR_ERR_SYNTAX;
                p += 2;
            } else if (c >= 32 && c <= 126) {
                p++;
            } else if (c >= 0x80 && (flags & ADDR_F_UTF8)) {
                size_t l = utf8_seq(p, end);
                if (l == 0)
                    return ADDR_ERR_SYNTAX;
                p += l;
            } else {
                return ADDR_ERR_SYNTAX;
            }
        }
        p++;    /* closing quote */
    } else {
        for (;;) {
            const unsigned char *atom = p;
            if (scan_run(&p, end, flags, is_atext) < 0)
                return ADDR_ERR_SYNTAX;
            if (p == atom)
                return ADDR_ERR_SYNTAX;      /* empty atom: leading/double/trailing dot */
            if (p < end && *p == '.') {
                p++;
                continue;
            }
            break;
        }
    }
    if ((size_t)(p - start) > ADDR_LOCAL_MAX)
        return ADDR_ERR_LOCAL_LONG;
    *pp = p;
    return ADDR_OK;
}

/* Domain = sub-domain *("." sub-domain), labels of letters, digits, hyphens,
 * not starting or ending with a hyphen. */
static int scan_domain_name(const unsigned char **pp, const unsigned char *end, unsigned flags)
{
    const unsigned char *p = *pp, *start = p;
    for (;;) {
        const unsigned char *label = p;
        if (scan_run(&p, end, flags, is_label_char) < 0)
            return ADDR_ERR_SYNTAX;
        if (p == label || *label == '-' || p[-1] == '-')
            return ADDR_ERR_SYNTAX;
        if ((size_t)(p - label) > ADDR_LABEL_MAX)
            return ADDR_ERR_DOMAIN_LONG;
        if (p < end && *p == '.') {
            p++;
            continue;
        }
        break;
    }
    if ((size_t)(p - start) > ADDR_DOMAIN_MAX)
        return ADDR_ERR_DOMAIN_LONG;
    *pp = p;
    return ADDR_OK;
}

/* Snum 3("." Snum), each 0..255, 1-3 digits */
static int valid_ipv4(const unsigned char *p, size_t n)
{
    int parts = 0;
    size_t i = 0;
    while (parts < 4) {
        size_t d = 0;
        unsigned v = 0;
        while (i < n && p[i] >= '0' && p[i] <= '9' && d < 4) {
            v = v * 10 + (unsigned)(p[i] - '0');
            i++;
            d++;
        }
        if (d == 0 || d > 3 || v > 255)
            return 0;
        parts++;
        if (parts < 4) {
            if (i >= n || p[i] != '.')
                return 0;
            i++;
        }
    }
    return i == n;
}

/* address-literal = "[" ( IPv4 / "IPv6:" IPv6 ) "]"; general literals have no
 * registered tags and are refused. */
static int scan_literal(const unsigned char **pp, const unsigned char *end)
{
    const unsigned char *p = *pp + 1;       /* past "[" */
    const unsigned char *q = p;
    while (q < end && *q != ']' && (size_t)(q - p) < 64)
        q++;
    if (q >= end || *q != ']')
        return ADDR_ERR_SYNTAX;
    size_t n = (size_t)(q - p);
    if (n > 5 && strncasecmp((const char *)p, "IPv6:", 5) == 0) {
        char tmp[64];
        unsigned char a6[16];
        memcpy(tmp, p + 5, n - 5);
        tmp[n - 5] = '\0';
        for (size_t i = 0; i < n - 5; i++) {
            unsigned char c = (unsigned char)tmp[i];
            if (!(is_letdig(c) || c == ':' || c == '.'))
                return ADDR_ERR_SYNTAX;
        }
        if (inet_pton(AF_INET6, tmp, a6) != 1)
            return ADDR_ERR_SYNTAX;
    } else if (!valid_ipv4(p, n)) {
        return ADDR_ERR_SYNTAX;
    }
    *pp = q + 1;
    return ADDR_OK;
}

static int scan_domain(const unsigned char **pp, const unsigned char *end, unsigned flags)
{
    if (*pp < end && **pp == '[')
        return scan_literal(pp, end);
    return scan_domain_name(pp, end, flags);
}

/* Mailbox = Local-part "@" ( Domain / address-literal ) */
static int scan_mailbox(const unsigned char **pp, const unsigned char *end, unsigned flags)
{
    const unsigned char *p = *pp;
    int e = scan_local(&p, end, flags);
    if (e != ADDR_OK)
        return e;
    if (p >= end || *p != '@')
        return ADDR_ERR_SYNTAX;
    p++;
    if ((e = scan_domain(&p, end, flags)) != ADDR_OK)
        return e;
    *pp = p;
    return ADDR_OK;
}

int addr_parse_path(const char *s, size_t n, unsigned flags, buf_t *addr, size_t *used_r)
{
    const unsigned char *start = (const unsigned char *)s, *end = start + n;
    const unsigned char *p = start;
    int e;
    buf_reset(addr);
    if (p >= end || *p != '<')
        return ADDR_ERR_SYNTAX;
    p++;
    if (p < end && *p == '>') {
        if (!(flags & ADDR_F_NULL_OK))
            return ADDR_ERR_NULL;
        *used_r = 2;
        return ADDR_OK;
    }
    /* A-d-l = At-domain *( "," At-domain ) ":" - accepted and ignored */
    if (p < end && *p == '@') {
        for (;;) {
            p++;
            if ((e = scan_domain_name(&p, end, flags)) != ADDR_OK)
                return e;
            if (p < end && *p == ',' && p + 1 < end && p[1] == '@') {
                p++;
                continue;
            }
            break;
        }
        if (p >= end || *p != ':')
            return ADDR_ERR_SYNTAX;
        p++;
    }
    const unsigned char *mbox = p;
    if ((flags & ADDR_F_POSTMASTER) && (size_t)(end - p) >= 11 &&
        strncasecmp((const char *)p, "postmaster>", 11) == 0 && mbox == start + 1) {
        buf_set(addr, "postmaster", 10);
        *used_r = 12;
        return ADDR_OK;
    }
    if ((e = scan_mailbox(&p, end, flags)) != ADDR_OK)
        return e;
    if (p >= end || *p != '>')
        return ADDR_ERR_SYNTAX;
    p++;
    if ((size_t)(p - start) > ADDR_PATH_MAX)
        return ADDR_ERR_PATH_LONG;
    buf_set(addr, mbox, (size_t)(p - 1 - mbox));
    *used_r = (size_t)(p - start);
    return ADDR_OK;
}

int addr_check_mailbox(const char *s, size_t n, unsigned flags)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    if (n > ADDR_PATH_MAX - 2)
        return ADDR_ERR_PATH_LONG;
    int e = scan_mailbox(&p, end, flags);
    if (e != ADDR_OK)
        return e;
    return p == end ? ADDR_OK : ADDR_ERR_SYNTAX;
}

const char *addr_strerror(int err)
{
    switch (err) {
    case ADDR_OK:              return "ok";
    case ADDR_ERR_SYNTAX:      return "address syntax error";
    case ADDR_ERR_LOCAL_LONG:  return "local part too long";
    case ADDR_ERR_DOMAIN_LONG: return "domain too long";
    case ADDR_ERR_PATH_LONG:   return "address too long";
    case ADDR_ERR_NULL:        return "null address not allowed";
    default:                   return "unknown address error";
    }
}

/* Index of the "@" separating local part and domain, or the length when
 * there is none. Skips a quoted local part so "a@b"@c splits at the last. */
static size_t local_end(const char *addr)
{
    size_t i = 0;
    if (addr[0] == '"') {
        for (i = 1; addr[i] && addr[i] != '"'; i++)
            if (addr[i] == '\\' && addr[i + 1])
                i++;
        if (addr[i] == '"')
            i++;
    }
    for (; addr[i]; i++)
        if (addr[i] == '@')
            return i;
    return i;
}

const char *addr_domain(const char *addr)
{
    size_t i = local_end(addr);
    return addr[i] == '@' ? addr + i + 1 : addr + i;
}

size_t addr_local_part_len(const char *addr)
{
    return local_end(addr);
}

void addr_local_part(const char *addr, buf_t *out)
{
    buf_set(out, addr, local_end(addr));
}

/* ---- ESMTP parameters ---------------------------------------------------- */

/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-");
 * esmtp-value = 1*(%d33-60 / %d62-126) (UTF-8 allowed by RFC 6531; we let
 * bytes >= 0x80 through so SMTPUTF8 clients are not refused here). */
int esmtp_parse_params(const char *s, size_t n, struct esmtp_param *v, int max, int *n_r)
{
    size_t i = 0;
    int count = 0;
    for (;;) {
        size_t sp = i;
        while (i < n && s[i] == ' ')
            i++;
        if (i >= n)
            break;
        if (i == sp)
            return -1;          /* parameters must be separated by space */
        size_t k = i;
        if (!is_letdig((unsigned char)s[i]))
            return -1;
        while (i < n && (is_letdig((unsigned char)s[i]) || s[i] == '-'))
            i++;
        if (count >= max)
            return -2;
        v[count].key = s + k;
        v[count].keylen = i - k;
        v[count].val = NULL;
        v[count].vallen = 0;
        if (i < n && s[i] == '=') {
            size_t vs = ++i;
            while (i < n) {
                unsigned char c = (unsigned char)s[i];
                if (c == ' ')
                    break;
                if (c < 33 || c == '=' || c == 127)
                    return -1;
                i++;
            }
            if (i == vs)
                return -1;
            v[count].val = s + vs;
            v[count].vallen = i - vs;
        } else if (i < n && s[i] != ' ') {
            return -1;
        }
        count++;
    }
    *n_r = count;
    return 0;
}

int esmtp_param_is(const struct esmtp_param *p, const char *key)
{
    size_t l = strlen(key);
    return p->keylen == l && strncasecmp(p->key, key, l) == 0;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;      /* RFC 3461: upper-case hex only */
}

int xtext_decode(const char *s, size_t n, buf_t *out)
{
    buf_reset(out);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '+') {
            if (n - i < 3)
                return -1;
            int h = hexval((unsigned char)s[i + 1]), l = hexval((unsigned char)s[i + 2]);
            if (h < 0 || l < 0)
                return -1;
            c = (unsigned char)(h * 16 + l);
            if (c < 32 || c > 126)
                return -1;      /* decoded controls/NUL never pass */
            buf_append_char(out, (char)c);
            i += 2;
        } else if (c >= 33 && c <= 126 && c != '=') {
            buf_append_char(out, (char)c);
        } else {
            return -1;
        }
    }
    return 0;
}

/* The address without one pair of enclosing angle brackets: *n_r its length. */
static const char *unbracket(const char *a, size_t *n_r)
{
    size_t n = strlen(a);
    if (n >= 2 && a[0] == '<' && a[n - 1] == '>') {
        a++;
        n -= 2;
    }
    *n_r = n;
    return a;
}

char *addr_clean(const char *a)
{
    size_t n;
    a = unbracket(a, &n);
    if (n > 512)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)a[i];
        if (c <= ' ' || c == 127 || c == '<' || c == '>')
            return NULL;
    }
    return xstrndup(a, n);
}

int addr_same(const char *a, const char *b)
{
    size_t na, nb;
    a = unbracket(a, &na);
    b = unbracket(b, &nb);
    return na == nb && strncasecmp(a, b, na) == 0;
}

/* ---- author domains of a From field ------------------------------------ */

size_t addr_skip_qc(const char *s, size_t n, size_t i)
{
    int depth = 0;
    if (s[i] == '"') {
        for (i++; i < n; i++) {
            if (s[i] == '\\' && i + 1 < n)
                i++;
            else if (s[i] == '"')
                return i + 1;
        }
        return n;
    }
    for (; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n)
            i++;
        else if (s[i] == '(')
            depth++;
        else if (s[i] == ')' && --depth == 0)
            return i + 1;
    }
    return n;
}

/* The domain of the address in s[a, b) (comments, quoted strings and any
 * angle-addr skipped): the letters, digits, '-', '_', '.' and UTF-8 bytes
 * after its last '@' (white space after the '@' skipped; whatever follows
 * the run ignored, as a reader's eye would), lower case, U-labels turned
 * into A-labels (RFC 8616: a Unicode domain is looked up as such, not by
 * its ASCII start, which would be another domain), one final '.' dropped,
 * into d: 1, or 0 when there is none (no '@', a literal, over
 * ADDR_DOMAIN_MAX, an empty label, or no valid IDN). */
static int addr_span_domain(const char *s, size_t a, size_t b, char *d)
{
    size_t at = (size_t)-1;
    for (size_t i = a; i < b;) {
        if (s[i] == '"' || s[i] == '(') {
            i = addr_skip_qc(s, b, i);
            continue;
        }
        if (s[i] == '<') {              /* an angle-addr: its caller's business */
            while (i < b && s[i] != '>')
                i = s[i] == '"' || s[i] == '(' ? addr_skip_qc(s, b, i) : i + 1;
            continue;
        }
        if (s[i] == '@')
            at = i;
        i++;
    }
    if (at == (size_t)-1)
        return 0;
    size_t i = at + 1;
    while (i < b && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
        i++;
    size_t start = i;
    for (; i < b; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(isascii(c) && isalnum(c)) && c != '-' && c != '_' && c != '.' && c < 0x80)
            break;
        if (i - start >= IDNA_UTF8_MAX)
            return 0;           /* longer than any domain */
    }
    if (i == start || idna_domain_ascii(s + start, i - start, d, ADDR_DOMAIN_MAX + 1) < 0)
        return 0;
    size_t j = strlen(d);
    if (j > 0 && d[j - 1] == '.')   /* one final full stop (ASCII or not) */
        d[--j] = '\0';
    /* no empty label (".x", "x..y", "x.." ): no domain anyone reads as one */
    return j > 0 && d[0] != '.' && d[j - 1] != '.' && strstr(d, "..") == NULL;
}

/* Add d to out[] unless there already (addr_author_domains' count). */
static void author_add(const char *d, char out[][ADDR_DOMAIN_MAX + 1], int max, int *count)
{
    for (int k = 0; k < *count && k < max; k++)
        if (strcmp(out[k], d) == 0)
            return;
    if (*count < max)       /* past max, a repeat cannot be told apart: counted */
        memcpy(out[*count], d, strlen(d) + 1);
    (*count)++;
}

int addr_author_domains(const char *s, size_t n, char out[][ADDR_DOMAIN_MAX + 1], int max,
                        int count)
{
    size_t start = 0;                   /* the current mailbox */
    char d[ADDR_DOMAIN_MAX + 1];
    for (size_t i = 0; i <= n;) {
        char c = i < n ? s[i] : ',';
        if (c == '"' || c == '(') {
            i = addr_skip_qc(s, n, i);
            continue;
        }
        if (c == '<') {                 /* every angle-addr is an author, should a
                                         * mailbox (wrongly) have two */
            size_t k = i + 1;
            while (k < n && s[k] != '>') {
                if (s[k] == '"' || s[k] == '(')
                    k = addr_skip_qc(s, n, k);
                else
                    k++;
            }
            if (addr_span_domain(s, i + 1, k, d))
                author_add(d, out, max, &count);
            i = k < n ? k + 1 : n;
            continue;
        }
        if (c == ':')                   /* a group's name: its members follow */
            start = i + 1;
        else if (c == ',' || c == ';') {
            /* an address outside the angle-addr too (a display name with an
             * unquoted '@', which RFC 5322 does not allow): an author as well */
            if (addr_span_domain(s, start, i < n ? i : n, d))
                author_add(d, out, max, &count);
            start = i + 1;
        }
        i++;
    }
    return count;
}

