/*
 * smtp_cache.c - the one SMTP connection an agent process keeps open
 * between requests (smtp.h struct smtp_cache): closed with QUIT after
 * SMTP_CACHE_IDLE_MS idle, at a request for another destination, and at
 * stop. smtp_session.c decides what may be kept and reuses it. Must never
 * wait long: QUIT gets a short deadline, the peer may already be gone.
 */
#include <string.h>

#include "smtp.h"
#include "util/clock.h"
#include "util/log.h"

#define SMTP_CACHE_QUIT_TIMEOUT 2

void smtp_cache_init(struct smtp_cache *c)
{
    memset(c, 0, sizeof(*c));
    c->io.fd = -1;
}

void smtp_cache_close(struct smtp_cache *c)
{
    if (!c->open)
        return;
    struct smtp_reply r;
    if (sio_write(&c->io, "QUIT\r\n", 6, SMTP_CACHE_QUIT_TIMEOUT) == 0)
        sio_reply(&c->io, &r, SMTP_CACHE_QUIT_TIMEOUT);
    sio_close(&c->io);
    log_trace(TRACE_SMTP, "%s: kept connection closed after %d message%s", c->relay, c->nmsg,
              c->nmsg == 1 ? "" : "s");
    c->open = 0;
    c->nmsg = 0;
}

int smtp_cache_idle(struct smtp_cache *c)
{
    if (!c->open)
        return 0;
    int64_t left = c->since + SMTP_CACHE_IDLE_MS - clock_now_ms();
    if (left <= 0) {
        smtp_cache_close(c);
        return 0;
    }
    return (int)left;
}
