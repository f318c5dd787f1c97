// Implements export.h. The HF folder goes through model/convert.h's writer with the merged
// weights standing in for the base folder (so that its tokenizer and template files are
// copied as they are); the adapter's names are PEFT's (base_model.model.<module>.lora_A.weight),
// its config the keys peft's LoraConfig reads.
#include <jansson.h>
#include <string.h>

#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "base/mem.h"
#include "model/convert.h"
#include "model/safetensors.h"
#include "train/export.h"

int tw_lm_export_hf(tw_lm *lm, const struct tw_model *side, const char *dir, enum tw_dtype dtype)
{
    struct tw_model *v;
    int rc = tw_lm_merged(lm, &v);
    if (rc)
        return rc;
    // The merged weights stand for side's folder while they are written: convert copies the
    // tokenizer, template and generation files of a safetensors model's path.
    char *path = v->path;
    const char *format = v->format;
    tw_tokenizer *tok = v->tok;
    if (side) {
        v->path = side->path;
        v->format = "safetensors";
        v->tok = side->tok; // config.json's BOS and EOS ids
    }
    rc = tw_convert_to_hf(v, dir, dtype);
    v->path = path, v->format = format, v->tok = tok;
    return rc;
}

static const char *const modules[TW_PROJ_COUNT] = { "q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                    "gate_proj", "up_proj", "down_proj" };

int tw_lm_save_adapter(const tw_lm *lm, const char *dir, const char *base)
{
    if (!tw_lm_is_lora(lm))
        return tw_error_set(TW_EINVAL, "%s: the model has no LoRA adapter to save", dir);
    const struct tw_lm_opts *o = tw_lm_options(lm);
    json_t *cfg = json_object(), *targets = json_array();
    for (int p = 0; p < TW_PROJ_COUNT; p++)
        if (o->lora_targets & (1u << p))
            json_array_append_new(targets, json_string(modules[p]));
    json_object_set_new(cfg, "peft_type", json_string("LORA"));
    json_object_set_new(cfg, "task_type", json_string("CAUSAL_LM"));
    json_object_set_new(cfg, "base_model_name_or_path", base ? json_string(base) : json_null());
    json_object_set_new(cfg, "r", json_integer(o->lora_r));
    json_object_set_new(cfg, "lora_alpha", json_real(o->lora_alpha));
    json_object_set_new(cfg, "lora_dropout", json_real(o->lora_dropout));
    json_object_set_new(cfg, "target_modules", targets);
    json_object_set_new(cfg, "bias", json_string("none"));
    json_object_set_new(cfg, "fan_in_fan_out", json_false());
    json_object_set_new(cfg, "inference_mode", json_true());
    json_object_set_new(cfg, "init_lora_weights", json_true());
    char *text = NULL, path[4096];
    int rc = tw_json_dump(cfg, JSON_INDENT(2), &text);
    json_decref(cfg);
    if (!rc)
        rc = tw_path_join(path, sizeof path, dir, "adapter_config.json");
    if (!rc)
        rc = tw_file_write_atomic(path, text, strlen(text));
    tw_free(text);
    struct tw_st_writer w;
    tw_st_writer_init(&w);
    for (size_t i = 0; !rc && i < tw_lm_n_params(lm); i++) {
        const struct tw_lm_param *p = tw_lm_param_at(lm, i);
        rc = tw_st_writer_add(&w, p->name, TW_ST_DTYPE_F32, p->ne, p->ndim, p->w,
                              p->n * sizeof(float));
    }
    if (!rc)
        rc = tw_st_writer_metadata(&w, "format", "pt");
    if (!rc)
        rc = tw_path_join(path, sizeof path, dir, "adapter_model.safetensors");
    if (!rc)
        rc = tw_st_write(&w, path);
    tw_st_writer_free(&w);
    return rc ? tw_error_prefix("%s: writing the adapter", dir) : 0;
}
