/* OpenJPEG decoding */
typedef int ms_j2k_placeholder;
