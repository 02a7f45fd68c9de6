/* A small, strict, bounded JSON reader (RFC 8259) for files medscreen wrote earlier and a user
 * may have edited since (per-scan reports for --resume, reference files for --expect). Those
 * files are untrusted: the reader enforces limits, never recurses on input, and parses in time
 * linear in the input (plus n log n per object for the duplicate-key check).
 *
 * What it accepts, exactly RFC 8259 and no more:
 * - any value at the top level, surrounded only by space, tab, CR and LF; nothing after it;
 * - no comments, trailing commas, single quotes, unquoted keys, byte order mark, NaN/Infinity,
 *   leading zeros, '+' signs or bare '.5' / '1.';
 * - strings in valid UTF-8 (no overlongs, no encoded surrogates, nothing above U+10FFFF) with no
 *   raw control characters (U+0000..U+001F); \u escapes are decoded to UTF-8, a surrogate pair
 *   to one 4-byte sequence. Lone surrogates are rejected, not mapped to U+FFFD: our writer never
 *   produces them, so one means the file was edited or corrupted. \u0000 is accepted and yields
 *   a 0 byte inside the string (ms_jval_str's len tells);
 * - numbers as doubles (strtod, so the C numeric locale, as the writer's "%.6g"). A number that
 *   overflows a double is rejected (MS_EFORMAT); one that underflows becomes 0 or a subnormal.
 *   A number token longer than MS_JSON_MAX_NUMBER_CHARS is refused (MS_ELIMIT), which keeps
 *   the conversion cost per number bounded;
 * - objects without duplicate keys (byte comparison after unescaping): a hand-edited reference
 *   with two "score" members is ambiguous, so it is an error naming the key.
 *
 * Errors name the input, the byte offset, line:column (1-based; columns count bytes) and what
 * was expected, e.g. "ref.json: offset 17 (line 2, column 5): expected ',' or '}' after an
 * object member, found ']'".
 *
 * The document owns every node and string (one arena); nodes are read-only after parsing and
 * a document may be read from several threads at once. */
#ifndef MEDSCREEN_JSON_READ_H
#define MEDSCREEN_JSON_READ_H

#include "medscreen/medscreen.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest number token accepted (digits, sign, '.', exponent). */
enum { MS_JSON_MAX_NUMBER_CHARS = 512 };

typedef enum ms_jtype { MS_JNULL, MS_JBOOL, MS_JNUM, MS_JSTR, MS_JARR, MS_JOBJ } ms_jtype;
typedef struct ms_jval ms_jval; /* a node; read-only after parse */
typedef struct ms_jdoc ms_jdoc; /* owns every node and string */

typedef struct ms_json_limits {
    uint32_t max_depth; /* nested arrays/objects; 0 allows only a scalar document */
    uint64_t max_nodes; /* values of any kind, the root and containers included */
    size_t max_bytes;   /* length of the text */
} ms_json_limits;

/* depth 64, 1e6 nodes, 64 MiB. */
ms_json_limits ms_json_limits_default(void);

/* Parses len bytes of text (need not be NUL-terminated). name labels messages (NULL: "json");
 * lim NULL means the defaults. On success *out belongs to the caller: release it with
 * ms_jdoc_destroy(). Thread-safe.
 * Errors: MS_EINVAL (NULL out, or NULL text with len > 0), MS_EFORMAT (not strict JSON, or a
 * number that overflows a double), MS_ELIMIT (over lim, or a number token longer than
 * MS_JSON_MAX_NUMBER_CHARS), MS_ENOMEM. Memory used is about 32 bytes per node and 24 per
 * object member plus the string bytes, all bounded by the limits. */
ms_status ms_json_parse(const char *text, size_t len, const char *name, const ms_json_limits *lim,
                        ms_jdoc **out, ms_err *err);
void ms_jdoc_destroy(ms_jdoc *d); /* NULL is a no-op; invalidates every node and string */

const ms_jval *ms_jdoc_root(const ms_jdoc *d); /* never NULL for a parsed document */

/* Accessors: all accept NULL (and values of the wrong type) and then return NULL, 0, false or
 * MS_JNULL, so lookups can be chained without checks in between. */
ms_jtype ms_jval_type(const ms_jval *v);
/* Member value by key (a C string, so keys holding \u0000 cannot be looked up this way).
 * O(log n): members are also indexed in sorted order. */
const ms_jval *ms_jval_get(const ms_jval *obj, const char *key);
const ms_jval *ms_jval_at(const ms_jval *arr, size_t i); /* array element, or object member value */
size_t ms_jval_len(const ms_jval *v);                    /* array elements / object members */
/* Key of member i, in document order; *len (if non-NULL) gets its length. NUL-terminated. */
const char *ms_jval_key_at(const ms_jval *obj, size_t i, size_t *len);
bool ms_jval_num(const ms_jval *v, double *out); /* false unless a number */
bool ms_jval_bool(const ms_jval *v, bool *out);  /* false unless true/false */
/* NULL unless a string. NUL-terminated; contains a 0 byte where the JSON had \u0000, so use
 * *len (if non-NULL) when that matters. */
const char *ms_jval_str(const ms_jval *v, size_t *len);

/* Dotted path lookup: "input.sha256", "regions.0.score". A segment selects an object member by
 * key or, when the value is an array, an element by decimal index. Keys containing '.' cannot be
 * reached this way. NULL if any step is missing, or if the path is empty or has empty segments. */
const ms_jval *ms_jval_path(const ms_jval *v, const char *dotted);

#ifdef __cplusplus
}
#endif
#endif
