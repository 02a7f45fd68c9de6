#include "loader_internal.h"

struct ms_dicom { int unused; };

ms_status ms_dicom_open(const uint8_t *data, size_t size, const char *name, const ms_limits *lim,
                        ms_dicom **out, ms_err *err) {
    (void)data; (void)size; (void)lim; (void)out;
    return ms_fail(err, MS_EUNSUPPORTED, "%s: DICOM decoding is not built yet", name);
}
uint32_t ms_dicom_frame_count(const ms_dicom *dcm) { (void)dcm; return 1; }
ms_status ms_dicom_decode_frame(ms_dicom *dcm, const ms_decode_opts *opts, ms_image **out,
                                ms_err *err) {
    (void)dcm; (void)opts; (void)out;
    return ms_fail(err, MS_EUNSUPPORTED, "DICOM decoding is not built yet");
}
void ms_dicom_close(ms_dicom *dcm) { (void)dcm; }
