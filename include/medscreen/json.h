/* Output helpers (CLI and report layer): a growable byte buffer, a small JSON object writer and an
 * escaper that makes untrusted strings (DICOM text, file names) safe for a terminal.
 *
 * The JSON writer is deterministic: an object collects its members and renders them sorted
 * by key (byte order), floats use "%.6g" and non-finite numbers become null. Strings are
 * escaped per RFC 8259; bytes that are not valid UTF-8 become U+FFFD, so every line it
 * writes is valid UTF-8 JSON whatever a file name or a DICOM element contains.
 *
 * Allocation failures are sticky: the object or buffer remembers them and rendering
 * reports false, so callers check once at the end. Not thread-safe per object. */
#ifndef MEDSCREEN_JSON_H
#define MEDSCREEN_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ms_buf {
    char *p; /* NUL-terminated when len > 0 */
    size_t len, cap;
    bool oom;
} ms_buf;

void ms_buf_free(ms_buf *b); /* releases p and resets the buffer */
void ms_buf_append(ms_buf *b, const char *s, size_t n);
void ms_buf_puts(ms_buf *b, const char *s);
void ms_buf_printf(ms_buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF), or 0 if the byte at s does not start one; n > 0 bytes are
 * readable. *cp (when cp is not NULL) receives the code point. */
size_t ms_utf8_seq(const unsigned char *s, size_t n, uint32_t *cp);

/* Appends s as a quoted JSON string. */
void ms_json_escape(ms_buf *b, const char *s);

/* Appends s for a human reader: valid printable UTF-8 is copied, control characters become
 * \n, \t, \r or \xNN and invalid bytes \xNN, so a file cannot drive the terminal. */
void ms_text_escape(ms_buf *b, const char *s);

typedef struct ms_json_member {
    const char *key; /* borrowed: a string literal */
    char *value;     /* rendered JSON, owned */
} ms_json_member;

typedef struct ms_json {
    ms_json_member *m;
    size_t n, cap;
    bool oom;
} ms_json;

void ms_json_init(ms_json *o);
void ms_json_free(ms_json *o); /* safe on an initialised object; resets it */

/* Adders. key must outlive the object (use literals) and be unique within it. */
void ms_json_str(ms_json *o, const char *key, const char *s); /* NULL s: null */
void ms_json_num(ms_json *o, const char *key, double v);      /* %.6g; null if not finite */
void ms_json_int(ms_json *o, const char *key, int64_t v);
void ms_json_uint(ms_json *o, const char *key, uint64_t v);
void ms_json_bool(ms_json *o, const char *key, bool v);
void ms_json_null(ms_json *o, const char *key);
/* Renders child as the value of key and frees child (also on failure). */
void ms_json_obj(ms_json *o, const char *key, ms_json *child);

/* Takes an already rendered JSON value (an array, or an object whose keys come from data)
 * as the value of key; rendered is consumed. */
void ms_json_raw(ms_json *o, const char *key, ms_buf *rendered);

/* Appends the object, members sorted by key, without a trailing newline. Returns false if
 * any allocation failed (here or in an earlier adder). */
bool ms_json_render(ms_json *o, ms_buf *out);

#endif
