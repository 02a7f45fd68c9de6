/* A small, strict, bounded CSV record reader (RFC 4180) over a buffer, for files a user writes
 * by hand or exports from a spreadsheet (the labels of `medscreen calibrate`). Those files are
 * untrusted: the reader enforces limits on each record and reads in time linear in the input.
 *
 * What it accepts:
 * - records separated by LF or CRLF; the last record needs no line end;
 * - fields separated by commas; a field is either unquoted (no '"', no CR except in the CRLF that
 *   ends the record) or wholly quoted with '"', where "" stands for one quote and commas, LF and
 *   CR are taken literally; after the closing quote comes a comma, a line end or the end of input;
 * - empty lines (LF or CRLF alone) are skipped, so no record has zero fields; a line of only ""
 *   is one empty field, a line of only ',' two;
 * - a leading UTF-8 byte order mark (EF BB BF), as spreadsheets write it, is skipped;
 * - no NUL bytes anywhere (fields are returned as C strings);
 * - no trimming: spaces are part of the field. Bytes are not checked as UTF-8.
 *
 * Errors name the input, the line (1-based, counting LF; for an unterminated quote the line
 * where it opened) and the reason, e.g. "labels.csv:26: malformed CSV: a quoted field is not
 * closed". Fields are numbered from 1 in messages. */
#ifndef MEDSCREEN_CSV_H
#define MEDSCREEN_CSV_H

#include "medscreen/medscreen.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ms_csv_limits {
    uint32_t max_fields;     /* fields in one record (at least 1) */
    size_t max_record_bytes; /* unescaped bytes of one record: the sum of its field lengths */
} ms_csv_limits;

/* 1024 fields, 1 MiB per record. */
ms_csv_limits ms_csv_limits_default(void);

typedef struct ms_csv ms_csv; /* opaque reader; one thread at a time */

/* Starts reading len bytes of text (need not be NUL-terminated). text and name must outlive the
 * reader; name labels messages (NULL: "csv"); lim NULL means the defaults. The reader allocates
 * at most about max_record_bytes + 9 * max_fields bytes. On success *out belongs to the caller:
 * release it with ms_csv_destroy(). Thread-safe.
 * Errors: MS_EINVAL (NULL out, NULL text with len > 0, a limit of 0), MS_ENOMEM. */
ms_status ms_csv_create(const char *text, size_t len, const char *name, const ms_csv_limits *lim,
                        ms_csv **out, ms_err *err);
void ms_csv_destroy(ms_csv *r); /* NULL is a no-op */

/* Reads the next record. On MS_OK *got is true and the record can be read with the accessors
 * below until the next call, or false at the end of the input (and stays false).
 * Errors: MS_EFORMAT (malformed CSV), MS_ELIMIT (more fields or bytes than the limits allow),
 * MS_ENOMEM, MS_EINVAL (NULL r or got). After an error the record is gone and every further
 * call returns the same error and message. */
ms_status ms_csv_next(ms_csv *r, bool *got, ms_err *err);

/* The current record: its number of fields (0 before the first record, at the end and after
 * an error), its fields (NUL-terminated, never holding a NUL; *len, if non-NULL, gets the
 * length; NULL when i is out of range) and the line it starts on (0 when there is none). */
size_t ms_csv_nfields(const ms_csv *r);
const char *ms_csv_field(const ms_csv *r, size_t i, size_t *len);
size_t ms_csv_line(const ms_csv *r);

#ifdef __cplusplus
}
#endif
#endif
