/*
 * smtp_mime.c - the smtp agent's side of the 8-bit to 7-bit downgrade
 * (lib/mail/mime8.h): an 8-bit message for a next hop without 8BITMIME is
 * scanned from the queue file before MAIL FROM, so a message with no 7-bit
 * form bounces before anything is sent; send_body (smtp_session.c) then
 * pipes the content through the converter.
 */
#include <stdlib.h>

#include "smtp.h"
#include "mail/mime8.h"

int smtp_mime_plan(const struct smtp_msg *m, struct mime8 **m8_r, char *why, size_t whylen)
{
    const struct qf_env *e = m->env;
    struct mime8 *m8 = mime8_new();
    char *in = xmalloc(SMTP_MIME_CHUNK);
    *m8_r = NULL;
    for (uint64_t off = 0; off < e->content_len;) {
        size_t want = e->content_len - off < SMTP_MIME_CHUNK ? (size_t)(e->content_len - off)
                                                             : SMTP_MIME_CHUNK;
        if (qf_pread_all(m->fd, in, want, e->content_off + (off_t)off) < 0) {
            free(in);
            mime8_free(m8);
            return -2;
        }
        mime8_scan(m8, in, want);
        off += want;
    }
    free(in);
    int rc = mime8_scan_end(m8, why, whylen);
    if (rc == 1)
        *m8_r = m8;
    else
        mime8_free(m8);
    return rc < 0 ? -1 : 0;
}
