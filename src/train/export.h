// A trained model out to files: a Hugging Face folder of the weights (LoRA merged into the
// base) that transformers and twin load, and a PEFT adapter folder (adapter_config.json,
// adapter_model.safetensors) that peft loads over the base.
#ifndef TW_TRAIN_EXPORT_H
#define TW_TRAIN_EXPORT_H

#include "model/model.h"
#include "train/lm.h"

// Writes lm's weights (merged) as an HF folder at dir (which must not exist; built beside it
// and renamed into place) in dtype f32, f16 or bf16. side: a model whose folder's tokenizer,
// chat template and generation files are copied (the base; for a model pretrained from
// scratch, a model opened from the tokenizer's folder), or NULL for none. 0, or the errors of
// tw_convert_to_hf.
int tw_lm_export_hf(tw_lm *lm, const struct tw_model *side, const char *dir, enum tw_dtype dtype);

// Writes lm's LoRA adapter into the existing folder dir: adapter_model.safetensors (f32, PEFT's
// tensor names) and adapter_config.json (rank, alpha, dropout, target modules; base names the
// base model for base_model_name_or_path). TW_EINVAL when lm has no adapter; TW_EIO.
int tw_lm_save_adapter(const tw_lm *lm, const char *dir, const char *base);

#endif
