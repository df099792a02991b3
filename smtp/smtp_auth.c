/*
 * smtp_auth.c - delivery.relay_auth: SMTP AUTH credentials for next hops.
 *
 * Lines "host user password" ('#' comments, blank lines ignored); host is
 * the relayhost as configured ("[smtp.example.com]:587") or its bare name
 * ("smtp.example.com"). The file is read at each delivery as the postern
 * user (the agent has dropped root by then), so it must be readable by
 * that user and by nobody else: a file readable or writable by others is
 * refused (the delivery is deferred, the log says why). Changes apply at
 * the next delivery, without a reload.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/stat.h>

#include "smtp.h"

/* Split the next whitespace-separated word from *p. */
static char *word(char **p)
{
    char *s = *p;
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s == '\0')
        return NULL;
    char *e = s;
    while (*e && *e != ' ' && *e != '\t')
        e++;
    if (*e)
        *e++ = '\0';
    *p = e;
    return s;
}

int smtp_auth_lookup(const struct config *cfg, const struct smtp_hop *hop, char *user,
                     size_t ulen, char *pass, size_t plen, char *why, size_t whylen)
{
    if (cfg->relay_auth == NULL)
        return 0;
    int fd = open(cfg->relay_auth, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        snprintf(why, whylen, "%s: %s", cfg->relay_auth, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (st.st_mode & 007) {
        snprintf(why, whylen, "%s: readable by others (chmod 600 or 640)", cfg->relay_auth);
        close(fd);
        return -1;
    }
    FILE *f = fdopen(fd, "r");
    if (f == NULL) {
        close(fd);
        snprintf(why, whylen, "%s: %s", cfg->relay_auth, strerror(errno));
        return -1;
    }
    char line[1024];
    int found = 0;
    while (!found && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = '\0';
        char *p = line, *h = word(&p), *u, *pw;
        if (h == NULL || h[0] == '#' || (u = word(&p)) == NULL || (pw = word(&p)) == NULL)
            continue;
        if (strcasecmp(h, hop->key) == 0 || strcasecmp(h, hop->host) == 0) {
            found = snprintf(user, ulen, "%s", u) < (int)ulen &&
                    snprintf(pass, plen, "%s", pw) < (int)plen;
        }
    }
    explicit_bzero(line, sizeof(line));
    fclose(f);
    return found;
}
