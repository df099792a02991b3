/*
 * crc32c.h - CRC-32C (Castagnoli), the checksum of a queue file's END
 * record (lib/mail/qfile.h). Uses the SSE 4.2 crc32 instruction when the CPU
 * has it (several GB/s), else a table (same result).
 */
#ifndef POSTERN_CRC32C_H
#define POSTERN_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continue crc (0 to start) over n bytes at p. */
uint32_t crc32c(uint32_t crc, const void *p, size_t n);
/* Continue crc over n zero bytes. */
uint32_t crc32c_zeros(uint32_t crc, size_t n);

#endif
