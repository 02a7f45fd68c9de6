/* CLI info command */
typedef int ms_info_placeholder;
