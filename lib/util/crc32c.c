/*
 * crc32c.c - CRC-32C, hardware (SSE 4.2) or table; see crc32c.h.
 */
#include <pthread.h>
#include <string.h>

#include "util/crc32c.h"

#define POLY 0x82f63b78u    /* Castagnoli, reflected */

static uint32_t table[256];

static void table_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
        table[i] = c;
    }
}

static uint32_t crc_sw(uint32_t crc, const unsigned char *p, size_t n)
{
    while (n--)
        crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc_hw(uint32_t crc, const unsigned char *p, size_t n)
{
    uint64_t c = crc;
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
    }
    uint32_t c32 = (uint32_t)c;
    while (n--)
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32;
}
#endif

/* 1 table, 2 hardware: chosen once (pthread_once: any thread may be first) */
static int impl;
static pthread_once_t impl_once = PTHREAD_ONCE_INIT;

static void impl_init(void)
{
    table_init();
    impl = 1;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2"))
        impl = 2;
#endif
}

static int impl_get(void)
{
    pthread_once(&impl_once, impl_init);
    return impl;
}

uint32_t crc32c(uint32_t crc, const void *p, size_t n)
{
    crc = ~crc;
#if defined(__x86_64__)
    if (impl_get() == 2)
        return ~crc_hw(crc, p, n);
#else
    impl_get();
#endif
    return ~crc_sw(crc, p, n);
}

uint32_t crc32c_zeros(uint32_t crc, size_t n)
{
    static const unsigned char zeros[256];
    while (n > 0) {
        size_t k = n < sizeof(zeros) ? n : sizeof(zeros);
        crc = crc32c(crc, zeros, k);
        n -= k;
    }
    return crc;
}
