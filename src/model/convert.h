// Converting models between formats: an open model (HF folder or GGUF) to a GGUF file with
// its weights in f32, f16, bf16, q8_0, q4_0 or q4_K (llama.cpp's names, metadata keys and
// Llama q/k row order, so llama.cpp reads the file too), or to a Hugging Face folder
// (config.json, model.safetensors in f32 / f16 / bf16, the tokenizer when the source has
// one) that transformers loads.
#ifndef TW_MODEL_CONVERT_H
#define TW_MODEL_CONVERT_H

#include "model/model.h"

// Writes m as GGUF at path (atomically). type is the matrices' dtype: 1-D tensors stay f32;
// a matrix whose rows do not divide into the type's blocks falls back (q4_K -> q4_0 -> f16);
// with q4_K the output matrix takes q6_K, as llama.cpp's Q4_K_M does, unless it is q4_K
// already. A matrix already in its target dtype keeps its bytes (rows reordered at most), so
// a model of quantised weights is written exactly. Returns 0 or an error naming the tensor;
// TW_EEXIST when path exists (nothing is written over).
int tw_convert_to_gguf(const struct tw_model *m, const char *path, enum tw_dtype type);
// Writes m as a Hugging Face folder at dir (built beside it, then renamed into place; dir
// must not exist). type is f32, f16 or bf16 (quantised weights are decoded).
int tw_convert_to_hf(const struct tw_model *m, const char *dir, enum tw_dtype type);

#endif
