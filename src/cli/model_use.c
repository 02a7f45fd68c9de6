/* What scan and calibrate share about a model (model_use.h). */
#include "model_use.h"

#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *cli_default_model_path(void) {
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return NULL;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash) return NULL;
    *slash = '\0';
    static const char *const rel[] = {"/../models/", "/../share/medscreen/models/"};
    for (size_t i = 0; i < 2; i++) {
        size_t len = strlen(exe) + strlen(rel[i]) + sizeof CLI_DEFAULT_MODEL_NAME;
        char *p = malloc(len);
        if (!p) return NULL;
        snprintf(p, len, "%s%s%s", exe, rel[i], CLI_DEFAULT_MODEL_NAME);
        if (access(p, R_OK) == 0) return p;
        free(p);
    }
    return NULL;
}

const char *cli_model_choose(const char *given, const char *cmd, char **owned) {
    *owned = NULL;
    if (given) return given;
    const char *env = getenv("MEDSCREEN_MODEL");
    if (env && env[0]) return env;
    *owned = cli_default_model_path();
    if (!*owned)
        cli_diag("%s: no model: give -m FILE or set MEDSCREEN_MODEL (models/" CLI_DEFAULT_MODEL_NAME
                 " was not found beside the executable)",
                 cmd);
    return *owned;
}

static int codes_accept(const ms_meta_codes *c, const char *value, int empty_ok) {
    if (c->any || c->count == 0) return 1;
    if (!value || !value[0]) return empty_ok;
    for (uint32_t i = 0; i < c->count; i++)
        if (strcmp(c->items[i], value) == 0) return 1;
    return 0;
}

const char *cli_model_refusal(const ms_model_meta *m, const ms_provenance *p, const char *path,
                              char *msg, size_t cap) {
    if (p->format != MS_FORMAT_DICOM) return NULL;
    if (!codes_accept(&m->modalities, p->modality, 0)) {
        snprintf(msg, cap, "%s: modality '%s' is not one the model accepts", path,
                 p->modality[0] ? p->modality : "(none)");
        return "modality";
    }
    if (!codes_accept(&m->body_parts, p->body_part, 1)) {
        snprintf(msg, cap, "%s: body part '%s' is not one the model accepts", path, p->body_part);
        return "body_part";
    }
    if (!codes_accept(&m->views, p->view_position, 1)) {
        snprintf(msg, cap, "%s: view position '%s' is not one the model accepts", path,
                 p->view_position);
        return "view";
    }
    return NULL;
}
