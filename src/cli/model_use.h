/* What scan and calibrate share about a model: where the default one lives, and which images
 * its metadata accepts. */
#ifndef MEDSCREEN_CLI_MODEL_USE_H
#define MEDSCREEN_CLI_MODEL_USE_H

#include <stddef.h>

#include "medscreen/loader.h"
#include "medscreen/meta.h"

#define CLI_DEFAULT_MODEL_NAME "cxr-screener.msm"

/* models/cxr-screener.msm beside the executable's folder, else in ../share/medscreen/models;
 * NULL when neither is readable. The caller frees the result. */
char *cli_default_model_path(void);

/* The model a command uses: given (-m), else $MEDSCREEN_MODEL, else cli_default_model_path().
 * NULL, after a message naming cmd, when there is none; *owned receives what the caller frees
 * (NULL when nothing was allocated). */
const char *cli_model_choose(const char *given, const char *cmd, char **owned);

/* Why the model does not apply to this image, or NULL: a stable word ("modality",
 * "body_part", "view") with the message in msg. PNG and JPEG carry no modality and are
 * accepted (the user chose them). A DICOM image must have an accepted Modality; Body Part
 * Examined and View Position, often empty in real exports, are checked when present. */
const char *cli_model_refusal(const ms_model_meta *m, const ms_provenance *p, const char *path,
                              char *msg, size_t cap);

#endif
