// The only C++ in medscreen: DCMTK's dcmdata behind the C API of dicom_dcmtk.h.
// Every extern "C" function is a catch-all; nothing C++ escapes.

#include "dicom_dcmtk.h"

#include <new>
#include <string.h>

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcistrma.h"
#include "dcmtk/dcmdata/dcmetinf.h"
#include "dcmtk/dcmdata/dcpixel.h"
#include "dcmtk/dcmdata/dcpixseq.h"
#include "dcmtk/dcmdata/dcpxitem.h"
#include "dcmtk/dcmdata/dcrledrg.h"
#include "dcmtk/dcmdata/dcxfer.h"
#include "dcmtk/dcmjpeg/djdecode.h"
#include "dcmtk/dcmjpls/djdecode.h"
#include "dcmtk/oflog/oflog.h"

struct ms_dcmtk {
    DcmFileFormat file;
    DcmDataset *dataset;
    char name[512];
};

namespace {

// A random-access input stream over caller memory. Unlike DcmInputBufferStream it can hand
// DCMTK a factory, which is what makes DCMTK check each declared length against the bytes
// left and defer loading large values: without it a 12-byte file declaring a 4 GB element
// makes DCMTK allocate 4 GB before noticing the data are missing.
class MemProducer : public DcmProducer {
  public:
    MemProducer(const Uint8 *data, offile_off_t size) : data_(data), size_(size), pos_(0) {}
    OFBool good() const { return OFTrue; }
    OFCondition status() const { return EC_Normal; }
    OFBool eos() { return pos_ >= size_; }
    offile_off_t avail() { return size_ - pos_; }
    offile_off_t read(void *buf, offile_off_t n) {
        if (n > size_ - pos_) n = size_ - pos_;
        if (n > 0) memcpy(buf, data_ + pos_, (size_t)n);
        pos_ += n;
        return n;
    }
    offile_off_t skip(offile_off_t n) {
        if (n > size_ - pos_) n = size_ - pos_;
        pos_ += n;
        return n;
    }
    void putback(offile_off_t n) { pos_ = n > pos_ ? 0 : pos_ - n; }

  private:
    const Uint8 *data_;
    offile_off_t size_, pos_;
};

class MemInputStream : public DcmInputStream {
  public:
    MemInputStream(const Uint8 *data, offile_off_t size)
        : DcmInputStream(&producer_), producer_(data, size), data_(data), size_(size) {}
    DcmInputStreamFactory *newFactory() const;

  private:
    MemProducer producer_;
    const Uint8 *data_;
    offile_off_t size_;
};

class MemStreamFactory : public DcmInputStreamFactory {
  public:
    MemStreamFactory(const Uint8 *data, offile_off_t size, offile_off_t offset)
        : data_(data), size_(size), offset_(offset) {}
    DcmInputStream *create() const {
        MemInputStream *in = new MemInputStream(data_, size_);
        in->skip(offset_);
        return in;
    }
    DcmInputStreamFactory *clone() const { return new MemStreamFactory(*this); }
    DcmInputStreamFactoryType ident() const { return DFT_DcmInputFileStreamFactory; }

  private:
    const Uint8 *data_;
    offile_off_t size_, offset_;
};

DcmInputStreamFactory *MemInputStream::newFactory() const {
    // Like DcmInputFileStream: no factory once a decompression filter sits in between.
    if (currentProducer() != &producer_) return NULL;
    return new MemStreamFactory(data_, size_, tell());
}

// Values longer than this are skipped (with a bounds check) and loaded on first use.
const Uint32 MS_DCMTK_MAX_READ_LENGTH = 4096;

// DCMTK numbers fragments like the items of the pixel sequence: item 0 is the offset table.
const unsigned long MS_DCMTK_FRAGMENT_BASE = 0;

ms_status frame_fragments(ms_dcmtk *d, DcmPixelSequence *seq, uint32_t frame, uint32_t frames,
                          bool j2k, unsigned long *first, unsigned long *last, ms_err *err);
bool dcmtk_jpeg_scan_stalls(const Uint8 *p, Uint32 n);

// Codec registration and log silencing are process-wide in DCMTK; C++11 guarantees this
// static is initialised once even when several threads open files at the same time.
struct DcmtkGlobals {
    DcmtkGlobals() {
        OFLog::configure(OFLogger::OFF_LOG_LEVEL);
        // Some writers announce Explicit VR but write Implicit VR; read them as pydicom does.
        dcmAcceptUnexpectedImplicitEncoding.set(OFTrue);
        // YBR JPEG is converted to RGB as the photometric interpretation asks; the
        // decoded colour model is reported back by getUncompressedFrame.
        DJDecoderRegistration::registerCodecs();
        DJLSDecoderRegistration::registerCodecs();
        DcmRLEDecoderRegistration::registerCodecs();
    }
};

void ensure_globals() { static DcmtkGlobals globals; }

void copy_string(DcmItem *item, const DcmTagKey &tag, char *dst, size_t dst_size) {
    OFString v;
    dst[0] = '\0';
    if (item != NULL && item->findAndGetOFStringArray(tag, v).good()) {
        // Trim DICOM padding (trailing spaces / NULs) and leading spaces.
        size_t b = 0, e = v.size();
        while (b < e && v[b] == ' ') b++;
        while (e > b && (v[e - 1] == ' ' || v[e - 1] == '\0')) e--;
        ms_str_copy(dst, dst_size, v.substr(b, e - b).c_str());
    }
}

// The Pixel Data element, or NULL when absent or not of class DcmPixelData (a file can give
// (7FE0,0010) another VR, and DCMTK then builds a different element class).
DcmPixelData *pixel_data(DcmDataset *ds) {
    DcmElement *px = NULL;
    if (ds->findAndGetElement(DCM_PixelData, px).bad() || px == NULL) return NULL;
    if (px->ident() != EVR_PixelData) return NULL;
    return OFstatic_cast(DcmPixelData *, px);
}

bool get_u16(DcmItem *item, const DcmTagKey &tag, uint16_t *out) {
    Uint16 v = 0;
    if (item->findAndGetUint16(tag, v).bad()) return false;
    *out = v;
    return true;
}

// A US or SS value at pos (LUT descriptors may use either VR).
bool get_us_or_ss(DcmItem *item, const DcmTagKey &tag, unsigned long pos, uint16_t *out) {
    DcmElement *el = NULL;
    if (item->findAndGetElement(tag, el).bad() || el == NULL) return false;
    Uint16 u = 0;
    if (el->getUint16(u, pos).good()) {
        *out = u;
        return true;
    }
    Sint16 s = 0;
    if (el->getSint16(s, pos).good()) {
        *out = (uint16_t)s;
        return true;
    }
    return false;
}

// Reads a LUT (descriptor + data) from item; PS3.3 C.11.1.1.1. signed_first: the first
// mapped value is SS when the pixel data are signed.
ms_status read_lut(DcmItem *item, const DcmTagKey &desc_tag, const DcmTagKey &data_tag,
                   bool signed_first, const char *what, ms_dcm_lut *lut, const char *name,
                   ms_err *err) {
    uint16_t d0, d1, d2;
    if (!item->tagExistsWithValue(desc_tag) && !item->tagExistsWithValue(data_tag)) {
        // Type 2 attributes sent empty: the table is absent, not broken.
        lut->data = NULL;
        return MS_OK;
    }
    if (!get_us_or_ss(item, desc_tag, 0, &d0) || !get_us_or_ss(item, desc_tag, 1, &d1) ||
        !get_us_or_ss(item, desc_tag, 2, &d2))
        return ms_fail(err, MS_EFORMAT, "%s: %s descriptor is missing or incomplete", name, what);
    uint32_t entries = d0 == 0 ? 65536u : d0;
    if (d2 < 8 || d2 > 16)
        return ms_fail(err, MS_EFORMAT, "%s: %s descriptor gives %u bits per entry, expected 8..16",
                       name, what, (unsigned)d2);
    const Uint16 *words = NULL;
    unsigned long count = 0;
    if (item->findAndGetUint16Array(data_tag, words, &count).bad() || words == NULL)
        return ms_fail(err, MS_EFORMAT, "%s: %s data are missing", name, what);
    uint16_t *data = (uint16_t *)ms_malloc((size_t)entries * sizeof(uint16_t));
    if (data == NULL) return ms_fail(err, MS_ENOMEM, "%s: cannot allocate %s", name, what);
    if (count >= entries) {
        memcpy(data, words, (size_t)entries * sizeof(uint16_t));
    } else if (d2 == 8 && count * 2 >= entries) {
        // 8-bit entries packed two per OW word, first entry in the low byte.
        for (uint32_t i = 0; i < entries; i++)
            data[i] = (uint16_t)((words[i / 2] >> ((i & 1) ? 8 : 0)) & 0xFF);
    } else {
        ms_free(data);
        return ms_fail(err, MS_EFORMAT, "%s: %s has %lu data words for %u entries", name, what,
                       count, entries);
    }
    lut->entries = entries;
    lut->first_mapped = signed_first ? (int32_t)(int16_t)d1 : (int32_t)d1;
    lut->bits = d2;
    lut->data = data;
    return MS_OK;
}

// Functional groups (enhanced multi-frame objects) carry spacing, rescale and windows in
// nested sequences (PS3.3 C.7.6.16): look at the top level, then the shared groups, then
// the frame's own groups.
DcmItem *find_group(DcmDataset *ds, const DcmTagKey &macro_seq, const DcmTagKey &tag,
                    uint32_t frame) {
    if (ds->tagExistsWithValue(tag)) return ds;
    const DcmTagKey groups[2] = {DCM_SharedFunctionalGroupsSequence,
                                 DCM_PerFrameFunctionalGroupsSequence};
    for (int i = 0; i < 2; i++) {
        DcmItem *fg = NULL, *macro = NULL;
        signed long item = i == 0 ? 0 : (signed long)frame;
        if (ds->findAndGetSequenceItem(groups[i], fg, item).good() && fg != NULL &&
            fg->findAndGetSequenceItem(macro_seq, macro, 0).good() && macro != NULL &&
            macro->tagExistsWithValue(tag))
            return macro;
    }
    return NULL;
}

bool get_f64(DcmItem *item, const DcmTagKey &tag, unsigned long pos, double *out) {
    Float64 v = 0;
    if (item == NULL || item->findAndGetFloat64(tag, v, pos).bad()) return false;
    if (!(v == v) || v > 1e300 || v < -1e300) return false; // NaN or infinite
    *out = v;
    return true;
}

ms_status frame_values_impl(ms_dcmtk *d, uint32_t frame, ms_dcm_frame_values *fv, ms_err *err) {
    DcmDataset *ds = d->dataset;
    memset(fv, 0, sizeof *fv);
    DcmItem *rs = find_group(ds, DCM_PixelValueTransformationSequence, DCM_RescaleSlope, frame);
    if (rs != NULL) {
        if (!get_f64(rs, DCM_RescaleSlope, 0, &fv->rescale_slope) ||
            !get_f64(rs, DCM_RescaleIntercept, 0, &fv->rescale_intercept))
            return ms_fail(err, MS_EFORMAT,
                           "%s: Rescale Slope/Intercept present but not valid numbers", d->name);
        if (fv->rescale_slope == 0.0)
            return ms_fail(err, MS_EFORMAT, "%s: Rescale Slope is 0", d->name);
        fv->has_rescale = true;
    }
    DcmItem *win = find_group(ds, DCM_FrameVOILUTSequence, DCM_WindowCenter, frame);
    if (win != NULL) {
        DcmElement *wc = NULL;
        unsigned long vm = 0;
        if (win->findAndGetElement(DCM_WindowCenter, wc).good() && wc != NULL) vm = wc->getVM();
        for (unsigned long i = 0; i < vm && fv->n_windows < MS_DCM_MAX_WINDOWS; i++) {
            double c, w;
            if (!get_f64(win, DCM_WindowCenter, i, &c) || !get_f64(win, DCM_WindowWidth, i, &w))
                break; // a window without a valid width is unusable; keep the earlier ones
            fv->window_center[fv->n_windows] = c;
            fv->window_width[fv->n_windows] = w;
            fv->n_windows++;
        }
        copy_string(win, DCM_VOILUTFunction, fv->voi_lut_function, sizeof fv->voi_lut_function);
    }
    return MS_OK;
}

ms_status get_attrs_impl(ms_dcmtk *d, ms_dcm_attrs *a, ms_err *err) {
    DcmDataset *ds = d->dataset;
    const char *name = d->name;
    memset(a, 0, sizeof *a);

    copy_string(d->file.getMetaInfo(), DCM_TransferSyntaxUID, a->transfer_syntax,
                sizeof a->transfer_syntax);
    if (a->transfer_syntax[0] == '\0') {
        // A bare data set: report what DCMTK detected while parsing.
        DcmXfer xfer(ds->getOriginalXfer());
        ms_str_copy(a->transfer_syntax, sizeof a->transfer_syntax, xfer.getXferID());
    }

    DcmPixelData *pd = pixel_data(ds);
    if (pd == NULL && ds->tagExists(DCM_PixelData))
        return ms_fail(err, MS_EFORMAT, "%s: Pixel Data (7FE0,0010) has an invalid VR", name);
    a->has_pixel_data = pd != NULL;
    a->has_float_pixel_data =
        ds->tagExists(DCM_FloatPixelData) || ds->tagExists(DCM_DoubleFloatPixelData);
    if (a->has_pixel_data) {
        DcmElement *px = pd;
        DcmPixelSequence *seq = NULL;
        E_TransferSyntax orig = ds->getOriginalXfer();
        a->encapsulated =
            DcmXfer(orig).isEncapsulated() ||
            (pd->getEncapsulatedRepresentation(orig, NULL, seq).good() && seq != NULL);
        if (!a->encapsulated) a->pixel_data_length = px->getLength();
    }

    a->has_bits_allocated = get_u16(ds, DCM_BitsAllocated, &a->bits_allocated);
    a->has_bits_stored = get_u16(ds, DCM_BitsStored, &a->bits_stored);
    a->has_high_bit = get_u16(ds, DCM_HighBit, &a->high_bit);
    a->has_samples_per_pixel = get_u16(ds, DCM_SamplesPerPixel, &a->samples_per_pixel);
    get_u16(ds, DCM_Rows, &a->rows);
    get_u16(ds, DCM_Columns, &a->columns);
    get_u16(ds, DCM_PixelRepresentation, &a->pixel_representation);
    get_u16(ds, DCM_PlanarConfiguration, &a->planar_configuration);
    a->frames = 1;
    Sint32 nframes = 0;
    if (ds->findAndGetSint32(DCM_NumberOfFrames, nframes).good()) {
        if (nframes < 0)
            return ms_fail(err, MS_EFORMAT, "%s: Number of Frames is %ld", name, (long)nframes);
        a->frames = nframes == 0 ? 1u : (uint32_t)nframes; // 0 is invalid; treat as one
    }
    copy_string(ds, DCM_PhotometricInterpretation, a->photometric, sizeof a->photometric);

    bool sgn = a->pixel_representation == 1;
    ms_status st = frame_values_impl(d, 0, &a->fv, err);
    if (st != MS_OK) return st;
    DcmItem *mlut = NULL;
    if (ds->findAndGetSequenceItem(DCM_ModalityLUTSequence, mlut, 0).good() && mlut != NULL) {
        st = read_lut(mlut, DCM_LUTDescriptor, DCM_LUTData, sgn, "Modality LUT", &a->modality_lut,
                      name, err);
        if (st != MS_OK) return st;
    }
    for (uint32_t i = 0; i < MS_DCM_MAX_VOI_LUTS; i++) {
        DcmItem *vi = NULL;
        if (ds->findAndGetSequenceItem(DCM_VOILUTSequence, vi, (signed long)i).bad() || vi == NULL)
            break;
        // The VOI LUT's first mapped value follows the modality output, which is signed
        // when the stored pixels are signed or a rescale can make them negative.
        st = read_lut(vi, DCM_LUTDescriptor, DCM_LUTData, sgn || a->fv.has_rescale, "VOI LUT",
                      &a->voi_lut[a->n_voi_luts], name, err);
        if (st != MS_OK) return st;
        if (a->voi_lut[a->n_voi_luts].data != NULL) a->n_voi_luts++;
    }
    copy_string(ds, DCM_PresentationLUTShape, a->presentation_lut_shape,
                sizeof a->presentation_lut_shape);

    a->has_segmented_palette = ds->tagExists(DCM_SegmentedRedPaletteColorLookupTableData);
    if (strcmp(a->photometric, "PALETTE COLOR") == 0 && !a->has_segmented_palette) {
        static const DcmTagKey desc[3] = {DCM_RedPaletteColorLookupTableDescriptor,
                                          DCM_GreenPaletteColorLookupTableDescriptor,
                                          DCM_BluePaletteColorLookupTableDescriptor};
        static const DcmTagKey data[3] = {DCM_RedPaletteColorLookupTableData,
                                          DCM_GreenPaletteColorLookupTableData,
                                          DCM_BluePaletteColorLookupTableData};
        static const char *what[3] = {"red palette", "green palette", "blue palette"};
        for (int i = 0; i < 3; i++) {
            st = read_lut(ds, desc[i], data[i], false, what[i], &a->palette[i], name, err);
            if (st != MS_OK) return st;
            if (a->palette[i].data == NULL)
                return ms_fail(err, MS_EFORMAT, "%s: %s lookup table is missing", name, what[i]);
        }
    }

    DcmItem *sp = find_group(ds, DCM_PixelMeasuresSequence, DCM_PixelSpacing, 0);
    a->has_pixel_spacing = get_f64(sp, DCM_PixelSpacing, 0, &a->pixel_spacing[0]) &&
                           get_f64(sp, DCM_PixelSpacing, 1, &a->pixel_spacing[1]) &&
                           a->pixel_spacing[0] > 0 && a->pixel_spacing[1] > 0;
    a->has_imager_pixel_spacing =
        get_f64(ds, DCM_ImagerPixelSpacing, 0, &a->imager_pixel_spacing[0]) &&
        get_f64(ds, DCM_ImagerPixelSpacing, 1, &a->imager_pixel_spacing[1]) &&
        a->imager_pixel_spacing[0] > 0 && a->imager_pixel_spacing[1] > 0;

    copy_string(ds, DCM_Modality, a->modality, sizeof a->modality);
    copy_string(ds, DCM_BodyPartExamined, a->body_part, sizeof a->body_part);
    copy_string(ds, DCM_ViewPosition, a->view_position, sizeof a->view_position);
    copy_string(ds, DCM_StudyInstanceUID, a->study_uid, sizeof a->study_uid);
    copy_string(ds, DCM_SeriesInstanceUID, a->series_uid, sizeof a->series_uid);
    copy_string(ds, DCM_SOPInstanceUID, a->sop_uid, sizeof a->sop_uid);
    copy_string(ds, DCM_SOPClassUID, a->sop_class_uid, sizeof a->sop_class_uid);
    if (a->sop_class_uid[0] == '\0') /* a DICOMDIR names its class only in the meta header */
        copy_string(d->file.getMetaInfo(), DCM_MediaStorageSOPClassUID, a->sop_class_uid,
                    sizeof a->sop_class_uid);
    return MS_OK;
}

ms_status meta_ts_impl(const uint8_t *data, size_t size, const char *name, char ts[65],
                       ms_err *err) {
    ensure_globals();
    ts[0] = '\0';
    DcmFileFormat probe;
    MemInputStream in(data, (offile_off_t)size);
    probe.transferInit();
    // Stops at the first data set element, before reading any value of it.
    OFCondition cond = probe.readUntilTag(in, EXS_Unknown, EGL_noChange, MS_DCMTK_MAX_READ_LENGTH,
                                          DcmTagKey(0x0003, 0x0000));
    probe.transferEnd();
    // After a failed read an element may hold a length the data do not back, and touching
    // it would load that many bytes. Refuse here: a file whose meta header DCMTK cannot
    // read must not reach a full parse that might inflate a deflated data set unbounded.
    if (cond.bad())
        return ms_fail(err, MS_EFORMAT, "%s: DICOM parse error in the File Meta Information: %s",
                       name, cond.text());
    copy_string(probe.getMetaInfo(), DCM_TransferSyntaxUID, ts, 65);
    return MS_OK;
}

ms_status open_impl(const uint8_t *data, size_t size, bool dataset_only, const char *name,
                    ms_dcmtk **out, ms_err *err) {
    ensure_globals();
    ms_dcmtk *d = new ms_dcmtk();
    ms_str_copy(d->name, sizeof d->name, name);
    MemInputStream in(data, (offile_off_t)size);
    OFCondition cond;
    if (dataset_only) {
        // An inflated Deflated Explicit VR Little Endian data set (PS3.5 A.5).
        DcmDataset *ds = d->file.getDataset();
        ds->transferInit();
        cond = ds->read(in, EXS_LittleEndianExplicit, EGL_noChange, MS_DCMTK_MAX_READ_LENGTH);
        ds->transferEnd();
    } else {
        d->file.transferInit();
        cond = d->file.read(in, EXS_Unknown, EGL_noChange, MS_DCMTK_MAX_READ_LENGTH);
        d->file.transferEnd();
    }
    if (cond.bad()) {
        delete d;
        const char *hint = (cond == EC_InvalidStream || cond == EC_StreamNotifyClient)
                               ? " (truncated, or an element longer than the data left)"
                               : "";
        return ms_fail(err, MS_EFORMAT, "%s: DICOM parse error: %s%s", name, cond.text(), hint);
    }
    d->dataset = d->file.getDataset();
    if (d->dataset == NULL || d->dataset->card() == 0) {
        delete d;
        return ms_fail(err, MS_EFORMAT, "%s: DICOM file has an empty data set", name);
    }
    *out = d;
    return MS_OK;
}

// Native 1-bit frames (PS3.5 8.1.1: packed from the least significant bit, frames not
// byte-aligned) unpacked to one byte per pixel.
ms_status native_bit_frame(ms_dcmtk *d, DcmElement *px, uint32_t frame, size_t pixels, uint8_t *buf,
                           ms_err *err) {
    Uint8 *bytes = NULL;
    uint64_t first = (uint64_t)frame * pixels, end_bit = first + pixels;
    if (px->getUint8Array(bytes).bad() || bytes == NULL || (uint64_t)px->getLength() * 8u < end_bit)
        return ms_fail(err, MS_EFORMAT, "%s: frame %u is beyond the 1-bit pixel data", d->name,
                       frame);
    for (size_t i = 0; i < pixels; i++) {
        uint64_t bit = first + i;
        buf[i] = (uint8_t)((bytes[bit >> 3] >> (bit & 7u)) & 1u);
    }
    return MS_OK;
}

// Native 8-bit frames copied straight from the element: DCMTK's frame API refuses native
// YBR_FULL_422, whose frames hold two samples per pixel.
ms_status native_bytes_frame(ms_dcmtk *d, DcmElement *px, uint32_t frame, size_t frame_bytes,
                             void *buf, ms_err *err) {
    Uint8 *bytes = NULL;
    uint64_t end = ((uint64_t)frame + 1u) * frame_bytes;
    if (px->getUint8Array(bytes).bad() || bytes == NULL || px->getLength() < end)
        return ms_fail(err, MS_EFORMAT, "%s: frame %u is beyond the pixel data", d->name, frame);
    memcpy(buf, bytes + (size_t)frame * frame_bytes, frame_bytes);
    return MS_OK;
}

ms_status decode_frame_impl(ms_dcmtk *d, uint32_t frame, size_t frame_bytes, void *buf,
                            size_t buf_size, char color_model[17], uint16_t *planar, ms_err *err) {
    DcmPixelData *pd = pixel_data(d->dataset);
    if (pd == NULL) return ms_fail(err, MS_ENOPIXELS, "%s: no pixel data", d->name);
    DcmElement *px = pd;
    if (buf_size > 0xFFFFFFFEu)
        return ms_fail(err, MS_ELIMIT, "%s: frame of %zu bytes is too large for DCMTK", d->name,
                       buf_size);
    OFString pi;
    Uint16 bits_allocated = 0;
    d->dataset->findAndGetOFString(DCM_PhotometricInterpretation, pi);
    d->dataset->findAndGetUint16(DCM_BitsAllocated, bits_allocated);
    bool native = !DcmXfer(d->dataset->getOriginalXfer()).isEncapsulated();
    if (bits_allocated == 1 && native) {
        ms_str_copy(color_model, 17, pi.c_str());
        *planar = 0;
        return native_bit_frame(d, px, frame, frame_bytes, (uint8_t *)buf, err);
    }
    if (pi == "YBR_FULL_422" && bits_allocated == 8 &&
        !DcmXfer(d->dataset->getOriginalXfer()).isEncapsulated()) {
        ms_str_copy(color_model, 17, "YBR_FULL_422");
        *planar = 0;
        return native_bytes_frame(d, px, frame, frame_bytes, buf, err);
    }
    // DCMTK finds a frame's first fragment itself only when frames are read in order or the
    // offset table is filled; find it here so that any frame can be read on its own.
    Uint32 start_fragment = 0;
    DcmPixelSequence *seq = NULL;
    if (!native &&
        pd->getEncapsulatedRepresentation(d->dataset->getOriginalXfer(), NULL, seq).bad())
        seq = NULL;
    if (seq != NULL && frame > 0) {
        Sint32 nframes = 1;
        d->dataset->findAndGetSint32(DCM_NumberOfFrames, nframes);
        unsigned long first = 0, last = 0;
        if (nframes > 1 &&
            frame_fragments(d, seq, frame, (uint32_t)nframes, false, &first, &last, NULL) == MS_OK)
            start_fragment = (Uint32)(first - MS_DCMTK_FRAGMENT_BASE);
    }
    E_TransferSyntax xfer = d->dataset->getOriginalXfer();
    if (!native && seq != NULL &&
        (xfer == EXS_JPEGProcess1 || xfer == EXS_JPEGProcess2_4 || xfer == EXS_JPEGProcess14 ||
         xfer == EXS_JPEGProcess14SV1)) {
        DcmPixelItem *it = NULL;
        Uint8 *bytes = NULL;
        unsigned long first = start_fragment ? start_fragment : 1;
        if (seq->getItem(it, first).good() && it != NULL && it->getUint8Array(bytes).good() &&
            bytes != NULL && dcmtk_jpeg_scan_stalls(bytes, it->getLength()))
            return ms_fail(err, MS_EFORMAT,
                           "%s: frame %u: JPEG marker TEM (FF01) before the frame header", d->name,
                           frame);
    }
    OFString model;
    OFCondition cond = pd->getUncompressedFrame(d->dataset, frame, start_fragment, buf,
                                                (Uint32)buf_size, model, NULL);
    if (cond.bad()) {
        if (cond == EC_CannotChangeRepresentation)
            return ms_fail(err, MS_EUNSUPPORTED, "%s: no decoder for transfer syntax %s", d->name,
                           DcmXfer(d->dataset->getOriginalXfer()).getXferName());
        return ms_fail(err, MS_EFORMAT, "%s: cannot decode frame %u: %s", d->name, frame,
                       cond.text());
    }
    ms_str_copy(color_model, 17, model.c_str());
    // Decoders rewrite Planar Configuration to describe the samples they produced.
    Uint16 pc = 0;
    d->dataset->findAndGetUint16(DCM_PlanarConfiguration, pc);
    *planar = pc;
    return MS_OK;
}

// DCMTK 3.6.7 finds a JPEG frame's bit depth with a marker walk over the frame's first
// fragment that never advances past a TEM marker (FF01): a TEM before the frame header makes
// it loop forever. Walk the fragment as it will; true if that walk would reach a TEM.
bool dcmtk_jpeg_scan_stalls(const Uint8 *p, Uint32 n) {
    Uint32 off = 0;
    while (off + 4 < n) {
        if (p[off] != 0xFF) return false; // DCMTK stops at anything but a marker
        Uint8 m = p[off + 1];
        if (m == 0x01) return true;
        if (m == 0xFF) { // a fill byte before a marker (T.81 B.1.1.2): DCMTK steps over it
            off += 1;
            continue;
        }
        bool sof = m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
        if (sof) return false; // DCMTK returns at the frame header
        if ((m >= 0xD0 && m <= 0xD9) || (m > 0x02 && m <= 0xBF))
            off += 2;
        else if (m >= 0xC4)
            off += 2u + (Uint32)(p[off + 2] << 8 | p[off + 3]);
        else
            return false;
    }
    return false;
}

// Does a fragment begin a codestream? JPEG 2000: SOC + SIZ; JPEG and JPEG-LS: SOI.
bool starts_frame(DcmPixelItem *item, bool j2k) {
    Uint8 *p = NULL;
    if (item->getLength() < 4 || item->getUint8Array(p).bad() || p == NULL) return false;
    if (j2k) return p[0] == 0xFF && p[1] == 0x4F && p[2] == 0xFF && p[3] == 0x51;
    return p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF;
}

// Which fragments (1-based item indices, [first, last]) hold a frame: PS3.5 A.4. Uses the
// Basic Offset Table when it has one entry per frame, else one fragment per frame, else a
// single frame in all fragments, else the codestream start markers (SOC or SOI).
ms_status frame_fragments(ms_dcmtk *d, DcmPixelSequence *seq, uint32_t frame, uint32_t frames,
                          bool j2k, unsigned long *first, unsigned long *last, ms_err *err) {
    unsigned long items = seq->card();
    if (items < 2)
        return ms_fail(err, MS_EFORMAT, "%s: encapsulated pixel data have no fragments", d->name);
    unsigned long nfrag = items - 1;
    DcmPixelItem *bot = NULL;
    seq->getItem(bot, 0);
    Uint32 bot_len = bot != NULL ? bot->getLength() : 0;
    if (bot != NULL && bot_len >= 4u * (uint64_t)frames && frames > 1) {
        Uint8 *b = NULL;
        if (bot->getUint8Array(b).good() && b != NULL) {
            // Offsets count bytes from the first fragment's item tag (8-byte item headers).
            uint64_t start = 0, end = UINT64_MAX;
            const Uint8 *o = b + 4u * frame;
            start =
                (uint64_t)o[0] | (uint64_t)o[1] << 8 | (uint64_t)o[2] << 16 | (uint64_t)o[3] << 24;
            if (frame + 1 < frames) {
                o += 4;
                end = (uint64_t)o[0] | (uint64_t)o[1] << 8 | (uint64_t)o[2] << 16 |
                      (uint64_t)o[3] << 24;
            }
            uint64_t pos = 0;
            unsigned long f = 0, l = 0;
            for (unsigned long i = 1; i <= nfrag; i++) {
                DcmPixelItem *it = NULL;
                if (seq->getItem(it, i).bad() || it == NULL) break;
                if (pos >= start && pos < end) {
                    if (f == 0) f = i;
                    l = i;
                }
                pos += 8u + it->getLength();
            }
            if (f != 0) {
                *first = f;
                *last = l;
                return MS_OK;
            }
        }
    }
    if (nfrag == frames) {
        *first = *last = frame + 1u;
        return MS_OK;
    }
    if (frames == 1) {
        *first = 1;
        *last = nfrag;
        return MS_OK;
    }
    uint32_t seen = 0;
    for (unsigned long i = 1; i <= nfrag; i++) {
        DcmPixelItem *it = NULL;
        if (seq->getItem(it, i).bad() || it == NULL) break;
        if (!starts_frame(it, j2k)) continue;
        if (seen == frame) {
            unsigned long j = i + 1;
            for (; j <= nfrag; j++) {
                DcmPixelItem *nx = NULL;
                if (seq->getItem(nx, j).bad() || nx == NULL || starts_frame(nx, j2k)) break;
            }
            *first = i;
            *last = j - 1;
            return MS_OK;
        }
        seen++;
    }
    return ms_fail(err, MS_EFORMAT,
                   "%s: cannot find the fragments of frame %u (%lu fragments, %u frames, no usable "
                   "offset table)",
                   d->name, frame, nfrag, frames);
}

ms_status native_view_impl(ms_dcmtk *d, uint32_t frame, size_t frame_bytes, const void **out,
                           ms_err *err) {
    E_TransferSyntax xfer = d->dataset->getOriginalXfer();
    DcmXfer x(xfer);
    Uint16 bits_allocated = 0;
    d->dataset->findAndGetUint16(DCM_BitsAllocated, bits_allocated);
    DcmElement *px = pixel_data(d->dataset);
    if (x.isEncapsulated() || x.getByteOrder() != EBO_LittleEndian ||
        (bits_allocated != 8 && bits_allocated != 16) || px == NULL)
        return MS_EUNSUPPORTED; /* not an error: the caller decodes instead */
    uint64_t end = ((uint64_t)frame + 1u) * frame_bytes;
    if (px->getLength() < end)
        return ms_fail(err, MS_EFORMAT,
                       "%s: pixel data have %u bytes, frame %u needs %llu (truncated?)", d->name,
                       (unsigned)px->getLength(), frame, (unsigned long long)end);
    const Uint8 *base = NULL;
    if (px->getVR() == EVR_OW) {
        Uint16 *w = NULL;
        if (px->getUint16Array(w).bad() || w == NULL) return MS_EUNSUPPORTED;
        base = reinterpret_cast<const Uint8 *>(w);
    } else {
        Uint8 *b = NULL;
        if (px->getUint8Array(b).bad() || b == NULL) return MS_EUNSUPPORTED;
        base = b;
    }
    *out = base + (size_t)frame * frame_bytes;
    return MS_OK;
}

ms_status bitstream_impl(ms_dcmtk *d, uint32_t frame, uint64_t max_bytes, uint8_t **out,
                         size_t *out_size, ms_err *err) {
    DcmPixelData *pd = pixel_data(d->dataset);
    if (pd == NULL) return ms_fail(err, MS_ENOPIXELS, "%s: no pixel data", d->name);
    DcmPixelSequence *seq = NULL;
    if (pd->getEncapsulatedRepresentation(d->dataset->getOriginalXfer(), NULL, seq).bad() ||
        seq == NULL)
        return ms_fail(err, MS_EFORMAT, "%s: pixel data are not encapsulated", d->name);
    Sint32 nframes = 1;
    if (d->dataset->findAndGetSint32(DCM_NumberOfFrames, nframes).bad() || nframes < 1) nframes = 1;
    unsigned long first = 0, last = 0;
    ms_status st = frame_fragments(d, seq, frame, (uint32_t)nframes, true, &first, &last, err);
    if (st != MS_OK) return st;
    size_t total = 0;
    for (unsigned long i = first; i <= last; i++) {
        DcmPixelItem *it = NULL;
        if (seq->getItem(it, i).bad() || it == NULL)
            return ms_fail(err, MS_EFORMAT, "%s: fragment %lu is missing", d->name, i);
        if (!ms_add_size(total, it->getLength(), &total) || total > max_bytes)
            return ms_fail(err, MS_ELIMIT, "%s: frame %u compressed data exceed %llu bytes",
                           d->name, frame, (unsigned long long)max_bytes);
    }
    if (total == 0)
        return ms_fail(err, MS_EFORMAT, "%s: frame %u has no compressed data", d->name, frame);
    uint8_t *buf = (uint8_t *)ms_malloc(total);
    if (buf == NULL)
        return ms_fail(err, MS_ENOMEM, "%s: cannot allocate %zu bytes", d->name, total);
    size_t pos = 0;
    for (unsigned long i = first; i <= last; i++) {
        DcmPixelItem *it = NULL;
        Uint8 *p = NULL;
        seq->getItem(it, i);
        Uint32 n = it->getLength();
        if (n == 0) continue;
        if (it->getUint8Array(p).bad() || p == NULL) {
            ms_free(buf);
            return ms_fail(err, MS_EFORMAT, "%s: fragment %lu cannot be read", d->name, i);
        }
        memcpy(buf + pos, p, n);
        pos += n;
    }
    *out = buf;
    *out_size = total;
    return MS_OK;
}

} // namespace

#define MS_DCMTK_GUARD(name, body)                                                                 \
    try {                                                                                          \
        body                                                                                       \
    } catch (const std::bad_alloc &) {                                                             \
        return ms_fail(err, MS_ENOMEM, "%s: out of memory in DCMTK", name);                        \
    } catch (...) {                                                                                \
        return ms_fail(err, MS_EINTERNAL, "%s: DCMTK exception", name);                            \
    }

extern "C" ms_status ms_dcmtk_meta_transfer_syntax(const uint8_t *data, size_t size,
                                                   const char *name, char ts[65], ms_err *err) {
    MS_DCMTK_GUARD(name, return meta_ts_impl(data, size, name, ts, err);)
}

extern "C" ms_status ms_dcmtk_open(const uint8_t *data, size_t size, bool dataset_only,
                                   const char *name, ms_dcmtk **out, ms_err *err) {
    MS_DCMTK_GUARD(name, return open_impl(data, size, dataset_only, name, out, err);)
}

extern "C" ms_status ms_dcmtk_get_attrs(ms_dcmtk *d, ms_dcm_attrs *out, ms_err *err) {
    MS_DCMTK_GUARD(d->name, {
        ms_status st = get_attrs_impl(d, out, err);
        if (st != MS_OK) ms_dcm_attrs_free(out);
        return st;
    })
}

extern "C" ms_status ms_dcmtk_get_frame_values(ms_dcmtk *d, uint32_t frame,
                                               ms_dcm_frame_values *out, ms_err *err) {
    MS_DCMTK_GUARD(d->name, return frame_values_impl(d, frame, out, err);)
}

extern "C" void ms_dcm_attrs_free(ms_dcm_attrs *a) {
    if (a == NULL) return;
    ms_free(a->modality_lut.data);
    a->modality_lut.data = NULL;
    for (int i = 0; i < MS_DCM_MAX_VOI_LUTS; i++) {
        ms_free(a->voi_lut[i].data);
        a->voi_lut[i].data = NULL;
    }
    for (int i = 0; i < 3; i++) {
        ms_free(a->palette[i].data);
        a->palette[i].data = NULL;
    }
}

extern "C" ms_status ms_dcmtk_decode_frame(ms_dcmtk *d, uint32_t frame, size_t frame_bytes,
                                           void *buf, size_t buf_size, char color_model[17],
                                           uint16_t *planar_configuration, ms_err *err) {
    MS_DCMTK_GUARD(d->name, return decode_frame_impl(d, frame, frame_bytes, buf, buf_size,
                                                     color_model, planar_configuration, err);)
}

extern "C" ms_status ms_dcmtk_native_frame_view(ms_dcmtk *d, uint32_t frame, size_t frame_bytes,
                                                const void **out, ms_err *err) {
    MS_DCMTK_GUARD(d->name, return native_view_impl(d, frame, frame_bytes, out, err);)
}

extern "C" ms_status ms_dcmtk_frame_bitstream(ms_dcmtk *d, uint32_t frame, uint64_t max_bytes,
                                              uint8_t **out, size_t *out_size, ms_err *err) {
    MS_DCMTK_GUARD(d->name, return bitstream_impl(d, frame, max_bytes, out, out_size, err);)
}

extern "C" void ms_dcmtk_close(ms_dcmtk *d) {
    try {
        delete d;
    } catch (...) {
        // Nothing sensible to report from a destructor; DCMTK does not throw here.
    }
}
