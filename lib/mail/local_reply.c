/*
 * local_reply.c - the table of replies for local failures (local_reply.def).
 */
#include <errno.h>

#include "mail/local_reply.h"

static const struct local_reply rows[LR__COUNT] = {
    [LR_NONE] = { 451, "4.3.0", "Temporary local problem, try again later" },
#define LOCAL_REPLY(name, code, enh, text) [LR_##name] = { code, enh, text },
#include "mail/local_reply.def"
#undef LOCAL_REPLY
};

static const char *const names[LR__COUNT] = {
    [LR_NONE] = "NONE",
#define LOCAL_REPLY(name, code, enh, text) [LR_##name] = #name,
#include "mail/local_reply.def"
#undef LOCAL_REPLY
};

const struct local_reply *local_reply(enum local_status s)
{
    if ((unsigned)s >= LR__COUNT || s == LR_NONE)
        s = LR_TEMP;
    return &rows[s];
}

const char *local_reply_name(enum local_status s)
{
    return (unsigned)s < LR__COUNT ? names[s] : "unknown";
}

enum verdict local_reply_verdict(enum local_status s)
{
    return local_reply(s)->code >= 500 ? V_REJECT : V_TEMPFAIL;
}

enum local_status local_reply_errno(int err, enum local_status other)
{
    return err == ENOSPC || err == EDQUOT ? LR_NOSPACE : other;
}

void local_reply_format(buf_t *out, enum local_status s)
{
    const struct local_reply *r = local_reply(s);
    buf_printf(out, "%d %s %s", r->code, r->enhanced, r->text);
}
