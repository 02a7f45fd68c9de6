/* Internal to ms_core and its tests: SHA-256 with the block function chosen by the caller, so
 * tests and benchmarks can run the portable and the SHA-NI paths side by side in one process
 * (no global switch: the public functions always use MS_SHA256_AUTO). */
#ifndef MEDSCREEN_SHA256_INTERNAL_H
#define MEDSCREEN_SHA256_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "medscreen/core.h"

typedef enum ms_sha256_impl {
    MS_SHA256_AUTO = 0, /* SHA-NI where the CPU has it, else portable */
    MS_SHA256_PORTABLE, /* plain C, every CPU */
    MS_SHA256_SHANI     /* x86 SHA extensions; only where ms_sha256_shani_available() */
} ms_sha256_impl;

/* Whether this build and CPU can run MS_SHA256_SHANI (x86 with SHA, SSSE3 and SSE4.1).
 * Detected once; thread-safe. */
bool ms_sha256_shani_available(void);

/* ms_sha256_update / ms_sha256_final with a chosen block function. Asking for
 * MS_SHA256_SHANI where it is not available is a programmer error (assert). */
void ms_sha256_update_impl(ms_sha256 *s, const void *data, size_t n, ms_sha256_impl impl);
void ms_sha256_final_impl(ms_sha256 *s, uint8_t out[32], ms_sha256_impl impl);

#endif
