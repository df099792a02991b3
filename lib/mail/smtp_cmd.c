/*
 * smtp_cmd.c - split an SMTP command line and parse MAIL/RCPT arguments.
 * Pure functions over (pointer, length); never reads outside the line and
 * never assumes NUL termination (fuzzed by t/fuzz/fuzz_smtp_cmd.c).
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>
#include "mail/smtp_cmd.h"

int smtp_cmd_split(const char *line, size_t len, struct smtp_cmd *c)
{
    size_t i = 0, v = 0;
    c->verb[0] = '\0';
    c->arg = line;
    c->arglen = 0;
    while (i < len && line[i] != ' ') {
        unsigned char ch = (unsigned char)line[i];
        if (!isalnum(ch) || v >= SMTP_VERB_MAX)
            return -1;
        c->verb[v++] = (char)toupper(ch);
        i++;
    }
    c->verb[v] = '\0';
    while (i < len && line[i] == ' ')
        i++;
    size_t end = len;
    while (end > i && (line[end - 1] == ' ' || line[end - 1] == '\t'))
        end--;
    c->arg = line + i;
    c->arglen = end - i;
    return 0;
}

int smtp_cmd_mailrcpt(const char *arg, size_t len, const char *prefix, unsigned addr_flags,
                      buf_t *addr, struct smtp_mailrcpt *r)
{
    size_t pl = strlen(prefix), used = 0;
    r->nparams = 0;
    r->addr_err = ADDR_OK;
    buf_reset(addr);
    if (len < pl || strncasecmp(arg, prefix, pl) != 0)
        return SMTP_MR_SYNTAX;
    size_t i = pl;
    while (i < len && arg[i] == ' ')
        i++;
    r->addr_err = addr_parse_path(arg + i, len - i, addr_flags, addr, &used);
    if (r->addr_err != ADDR_OK)
        return SMTP_MR_ADDR;
    i += used;
    if (i < len && arg[i] != ' ') {
        r->addr_err = ADDR_ERR_SYNTAX;     /* junk glued to ">" */
        return SMTP_MR_ADDR;
    }
    int e = esmtp_parse_params(arg + i, len - i, r->params, ESMTP_MAX_PARAMS, &r->nparams);
    if (e == -2)
        return SMTP_MR_TOOMANY;
    if (e < 0)
        return SMTP_MR_PARAM;
    return SMTP_MR_OK;
}

int smtp_cmd_bdat(const char *arg, size_t len, uint64_t *size_r, int *last_r)
{
    size_t i = 0;
    uint64_t v = 0;
    while (i < len && arg[i] >= '0' && arg[i] <= '9') {
        if (i >= 19)
            return -1;          /* over 10^19 - 1: cannot be a real chunk */
        v = v * 10 + (uint64_t)(arg[i] - '0');
        i++;
    }
    if (i == 0)
        return -1;
    *size_r = v;
    *last_r = 0;
    if (i == len)
        return 0;
    if (arg[i] != ' ')
        return -1;
    while (i < len && arg[i] == ' ')
        i++;
    if (len - i != 4 || strncasecmp(arg + i, "LAST", 4) != 0)
        return -1;
    *last_r = 1;
    return 0;
}
