/* DICOM RLE Lossless (PS3.5 Annex G) decoding, written here because DCMTK 3.6.7's RLE decoder
 * reads out of bounds on malformed segment offsets. Private to the loader. */
#ifndef MEDSCREEN_RLE_H
#define MEDSCREEN_RLE_H

#include "medscreen/core.h"

/* Decodes one RLE frame of pixels = rows * columns pixels with samples_per_pixel samples of
 * bytes_per_sample bytes (1, 2 or 4) into out (out_size >= pixels * samples * bytes) as host
 * order samples, one sample plane after another (Planar Configuration 1).
 * Errors: MS_EFORMAT (bad header, offsets, or segments that decode short). */
ms_status ms_rle_decode(const uint8_t *data, size_t size, const char *name, size_t pixels,
                        unsigned samples_per_pixel, unsigned bytes_per_sample, void *out,
                        size_t out_size, ms_err *err);

#endif
