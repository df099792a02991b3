/*
 * hash.h - FNV-1a, the one string hash of in-memory tables (metrics
 * series, the rules' CSV index, the DNS answer cache, smtpd's recipient
 * answers). Not for anything an attacker must not be able to collide:
 * every table using it is bounded, so collisions cost time, not memory.
 */
#ifndef POSTERN_HASH_H
#define POSTERN_HASH_H

#include <stdint.h>

#define FNV1A_INIT 2166136261u

static inline uint32_t fnv1a_byte(uint32_t h, unsigned char c)
{
    return (h ^ c) * 16777619u;
}

static inline uint32_t fnv1a_str(uint32_t h, const char *s)
{
    for (; *s; s++)
        h = fnv1a_byte(h, (unsigned char)*s);
    return h;
}

/* ASCII letters folded to lower case first (keys compared without case). */
static inline uint32_t fnv1a_str_lower(uint32_t h, const char *s)
{
    for (; *s; s++)
        h = fnv1a_byte(h, (unsigned char)((*s >= 'A' && *s <= 'Z') ? *s + 32 : *s));
    return h;
}

#endif
