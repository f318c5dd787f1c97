// What the model verbs (generate, chat, embed, rerank) share: --model, --threads, --ctx and
// the sampling options, and opening the model with a backend and a context. --model is a
// path, or a reference to a model of the home's registry (store/registry.h).
#ifndef TW_CLI_MODEL_ARGS_H
#define TW_CLI_MODEL_ARGS_H

#include <stdbool.h>

#include "cli/cli.h"
#include "model/context.h"
#include "model/generate.h"
#include "model/model.h"

#define TW_CLI_MAX_STOPS 16

struct tw_cli_model {
    const char *model;
    int threads;
    int32_t ctx;
    struct tw_gen_params gen;
    const char *stops[TW_CLI_MAX_STOPS];
    const char *home; // the twin home whose registry --model's references name
    char path[4096];  // the folder that a registry reference resolved to
    // opened by tw_cli_model_open
    const char *device; // --device: cpu, cuda, cuda:N, auto (NULL: $TWIN_DEVICE or auto)
    struct tw_model *m;
    struct tw_backend *be;
    tw_ctx *c;
    struct tw_model *host; // the model as opened, when m is its copy on a GPU
};

// Defaults: every CPU, the model's context up to 4096, the sampling defaults; home is the twin
// home (borrowed) whose registry --model may name a model of.
void tw_cli_model_init(struct tw_cli_model *a, const char *home);
// Whether s names a device: cpu, cuda, cuda:N or auto (tw_backend_open's names).
bool tw_cli_device_ok(const char *s);
// When argv[*i] is one of the shared options (the sampling ones only when `sampling`):
// consumes it and returns TW_EXIT_OK, or prints a usage error and returns TW_EXIT_USAGE.
// Returns -1 when argv[*i] is not one of them.
int tw_cli_model_opt(const struct tw_verb *v, int argc, char **argv, int *i,
                     struct tw_cli_model *a, bool sampling);
// Resolves a->model: an existing file or folder, or a string that is not a reference, stays;
// a reference ("NAME", "NAME:3", "NAME:latest", "@promoted") becomes its registered folder;
// NULL becomes the home's promoted model. 0, or an error naming the home and the reference
// (without --model and a promoted model, TW_ESTATE saying how to promote one).
int tw_cli_model_resolve(struct tw_cli_model *a);
// Resolves and opens a->model on a->device's backend with a context; 0 or an error
// (message set).
int tw_cli_model_open(struct tw_cli_model *a);
void tw_cli_model_close(struct tw_cli_model *a);
// The option lines of the usage texts.
#define TW_CLI_MODEL_USAGE                                                               \
    "  --model PATH        a Hugging Face folder, a .gguf file or a registered model\n"  \
    "                      (NAME, NAME:VERSION; twin models ls) (required)\n"            \
    "  --threads N         CPU threads (default: all)\n"                                 \
    "  --device D          cpu, cuda, cuda:N (GPU N) or auto: a GPU when there is one\n" \
    "                      (default: $TWIN_DEVICE, else auto)\n"
#define TW_CLI_SAMPLING_USAGE                                                          \
    "  --ctx N             context positions (default: the model's, at most 4096)\n"   \
    "  -n, --max-tokens N  tokens to generate at most (default 256)\n"                 \
    "  --temp T            temperature; 0 is greedy (default 0.8)\n"                   \
    "  --top-k K           keep the K most likely tokens (default 40; 0 off)\n"        \
    "  --top-p P           nucleus sampling (default 0.95; 1 off)\n"                   \
    "  --min-p P           drop tokens below P times the best (default 0.05)\n"        \
    "  --repeat-penalty R  transformers' repetition penalty (default 1, off)\n"        \
    "  --frequency-penalty F, --presence-penalty P   OpenAI's penalties (default 0)\n" \
    "  --seed S            the sampler's seed (default 0)\n"                           \
    "  --stop TEXT         stop before TEXT (repeatable)\n"                            \
    "  --ignore-eos        go on past end-of-generation tokens\n"

#endif
