#ifndef MILLRACE_CRC32C_H
#define MILLRACE_CRC32C_H
#include <stddef.h>
#include <stdint.h>

/// Continues a CRC-32C (Castagnoli) over `length` bytes. `state` is the raw register:
/// start with 0xFFFFFFFF and XOR the result with 0xFFFFFFFF to finish.
uint32_t millrace_crc32c_update(uint32_t state, const void *data, size_t length);

/// 1 when the SSE4.2 instruction path is in use, 0 for the portable table path.
int millrace_crc32c_is_hardware(void);

/// The portable path alone, so tests can check both paths agree.
uint32_t millrace_crc32c_update_portable(uint32_t state, const void *data, size_t length);

#endif
