/* convert.h: models in the ecosystem's formats: safetensors files (sharded with an
 * index), Hugging Face transformers directories (GPT2LMHeadModel, LlamaForCausalLM) and
 * GGUF files for llama.cpp (docs/FORMATS.md "Models for other programs").
 *
 * Usage:
 *   fg_hf_export(m, tok, "out_dir", 0);                 // model.safetensors + config.json + ...
 *   fg_model *m = fg_hf_import("hf_dir", B, T, NULL);    // NULL + fg_last_error() on failure
 *   fg_gguf_export(m, tok, "model.gguf", FG_GGUF_Q8_0);
 *   fg_model *g = fg_gguf_import("model.gguf", B, T);
 * Readers check everything before they build a model: a file whose header lies about
 * offsets or shapes, a truncated file, an unknown dtype or a config missing a key is
 * refused with a message naming the file and the problem.
 */
#ifndef FRUGAL_CONVERT_H
#define FRUGAL_CONVERT_H

#include <stddef.h>
#include <stdint.h>

#include "frugal/core.h"
#include "frugal/model.h"
#include "frugal/tok.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- safetensors ---- */
typedef enum fg_st_dtype {
    FG_ST_F32 = 0,
    FG_ST_F16 = 1,
    FG_ST_BF16 = 2,
    FG_ST_F64 = 3,
} fg_st_dtype;

#define FG_ST_MAX_DIM 8

typedef struct fg_st_tensor {
    char name[192];
    fg_st_dtype dtype;
    int ndim;
    int64_t shape[FG_ST_MAX_DIM];
    uint64_t begin, end; /* data_offsets, relative to the byte buffer after the header */
    int file;            /* which file of an fg_st_set holds it */
} fg_st_tensor;

/* One safetensors file (mapped read-only) or the shards of a directory. */
typedef struct fg_st_set {
    int n_files;
    char **paths;
    const uint8_t **maps;
    size_t *sizes, *data_start;
    int n;
    fg_st_tensor *t;
    char *metadata_json; /* the first file's __metadata__ as JSON text, or NULL */
} fg_st_set;

/* Opens path: a .safetensors file, or a directory holding model.safetensors or
 * model.safetensors.index.json and its shards. Every header is checked against the
 * specification (offsets contiguous, covering the buffer, sizes matching dtype x shape,
 * known dtypes, no duplicate names) before FG_OK. */
fg_status fg_st_open(fg_st_set *s, const char *path);
void fg_st_close(fg_st_set *s);
const fg_st_tensor *fg_st_find(const fg_st_set *s, const char *name);
size_t fg_st_numel(const fg_st_tensor *t);
/* Reads a tensor as fp32 (F16, BF16, F64 converted). */
void fg_st_read_f32(const fg_st_set *s, const fg_st_tensor *t, float *out);

/* A tensor to write: fp32 data, row-major. */
typedef struct fg_st_out {
    const char *name;
    int ndim;
    int64_t shape[FG_ST_MAX_DIM];
    const float *data;
} fg_st_out;

/* Writes the tensors into dir as model.safetensors, or, when their bytes exceed
 * max_shard_bytes (0 = 5 GB, transformers' default), as model-0000i-of-0000N.safetensors
 * plus model.safetensors.index.json. metadata: NULL or "key", "value" pairs ending with
 * NULL (the __metadata__ object). Each file is written whole or not at all. */
fg_status fg_st_write_dir(const char *dir, const fg_st_out *t, int n, size_t max_shard_bytes,
                          const char *const *metadata);
/* One file holding all tensors. */
fg_status fg_st_write_file(const char *path, const fg_st_out *t, int n, const char *const *metadata);

/* ---- Hugging Face transformers directories ---- */
/* Writes model.safetensors (sharded over max_shard_bytes, 0 = default), config.json and
 * generation_config.json for GPT2LMHeadModel (gpt2 layout), LlamaForCausalLM (llama
 * layout) or Glm4MoeForCausalLM (llama layout with MoE: the transformers class that
 * routes as Frugal does, docs/FORMATS.md), and tokenizer.json + tokenizer_config.json
 * when tok is not NULL (a byte tokenizer is written as a byte-level BPE without merges).
 * MoE models Glm4Moe cannot hold (gpt2 layout, no shared expert) are refused
 * (FG_ERR_UNSUPPORTED). */
fg_status fg_hf_export(const fg_model *m, const fg_tokenizer *tok, const char *dir, size_t max_shard_bytes);

/* Builds a model from a transformers directory (config.json + safetensors) of the
 * classes fg_hf_export writes, for batches B x T (T <= 0: max_position_embeddings).
 * Nothing is written. NULL + last error naming the file on failure. */
fg_model *fg_hf_import(const char *dir, int B, int T);

/* ---- GGUF (llama.cpp) ---- */
typedef enum fg_gguf_type {
    FG_GGUF_F32 = 0,
    FG_GGUF_F16 = 1,
    FG_GGUF_Q8_0 = 8, /* ggml's type ids */
} fg_gguf_type;

/* Writes a GGUF v3 file for llama.cpp's "llama" architecture (llama layout, dense):
 * hyper-parameters, the GPT-2 BPE tokenizer (tok: NULL = the byte tokenizer's 257
 * tokens) and the weights, matrices in `type` (norms stay f32; a matrix whose rows are
 * not a multiple of 32 stays f16 under Q8_0). Other models: FG_ERR_UNSUPPORTED. */
fg_status fg_gguf_export(const fg_model *m, const fg_tokenizer *tok, const char *path, fg_gguf_type type);
/* Reads a GGUF file written by fg_gguf_export (llama architecture, f32/f16/q8_0
 * tensors) back into a model, dequantized. NULL + last error naming the file. */
fg_model *fg_gguf_import(const char *path, int B, int T);

/* fp16 codec (IEEE binary16, round to nearest even), used by both formats. */
uint16_t fg_f32_to_f16(float f);
float fg_f16_to_f32(uint16_t h);

#ifdef __cplusplus
}
#endif
#endif
