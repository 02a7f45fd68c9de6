/* Output helpers for the CLI: a growable byte buffer, a small JSON object writer and an
 * escaper that makes untrusted strings (DICOM text, file names) safe for a terminal.
 *
 * The JSON writer is deterministic: an object collects its members and renders them sorted
 * by key (byte order), floats use "%.6g" and non-finite numbers become null. Strings are
 * escaped per RFC 8259; bytes that are not valid UTF-8 become U+FFFD, so every line it
 * writes is valid UTF-8 JSON whatever a file name or a DICOM element contains.
 *
 * Allocation failures are sticky: the object or buffer remembers them and rendering
 * reports false, so callers check once at the end. Not thread-safe per object. */
#ifndef MEDSCREEN_CLI_JSON_H
#define MEDSCREEN_CLI_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cli_buf {
    char *p; /* NUL-terminated when len > 0 */
    size_t len, cap;
    bool oom;
} cli_buf;

void cli_buf_free(cli_buf *b); /* releases p and resets the buffer */
void cli_buf_append(cli_buf *b, const char *s, size_t n);
void cli_buf_puts(cli_buf *b, const char *s);
void cli_buf_printf(cli_buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Appends s as a quoted JSON string. */
void cli_json_escape(cli_buf *b, const char *s);

/* Appends s for a human reader: valid printable UTF-8 is copied, control characters become
 * \n, \t, \r or \xNN and invalid bytes \xNN, so a file cannot drive the terminal. */
void cli_text_escape(cli_buf *b, const char *s);

typedef struct cli_json_member {
    const char *key; /* borrowed: a string literal */
    char *value;     /* rendered JSON, owned */
} cli_json_member;

typedef struct cli_json {
    cli_json_member *m;
    size_t n, cap;
    bool oom;
} cli_json;

void cli_json_init(cli_json *o);
void cli_json_free(cli_json *o); /* safe on an initialised object; resets it */

/* Adders. key must outlive the object (use literals) and be unique within it. */
void cli_json_str(cli_json *o, const char *key, const char *s); /* NULL s: null */
void cli_json_num(cli_json *o, const char *key, double v);      /* %.6g; null if not finite */
void cli_json_int(cli_json *o, const char *key, int64_t v);
void cli_json_uint(cli_json *o, const char *key, uint64_t v);
void cli_json_bool(cli_json *o, const char *key, bool v);
void cli_json_null(cli_json *o, const char *key);
/* Renders child as the value of key and frees child (also on failure). */
void cli_json_obj(cli_json *o, const char *key, cli_json *child);

/* Takes an already rendered JSON value (an array, or an object whose keys come from data)
 * as the value of key; rendered is consumed. */
void cli_json_raw(cli_json *o, const char *key, cli_buf *rendered);

/* Appends the object, members sorted by key, without a trailing newline. Returns false if
 * any allocation failed (here or in an earlier adder). */
bool cli_json_render(cli_json *o, cli_buf *out);

#endif
