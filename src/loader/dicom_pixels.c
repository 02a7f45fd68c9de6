/* filled in by the DICOM pixel pipeline */
typedef int ms_dicom_pixels_placeholder;
