/* convert_impl.h: helpers shared by the converters: the mapping between Frugal's flat
 * tensors and an outside format's named tensors, GPT-2's byte-to-unicode alphabet. */
#ifndef FRUGAL_CONVERT_IMPL_H
#define FRUGAL_CONVERT_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "frugal/model.h"

/* How an outside tensor relates to a Frugal tensor. */
typedef enum cv_op {
    CV_COPY = 0,  /* same shape, same order */
    CV_ROWS = 1,  /* rows [row0, row0 + rows) of the Frugal matrix (fused qkv / gate-up split) */
    CV_TRANS = 2, /* transposed (GPT-2's Conv1D stores [in, out]) */
} cv_op;

typedef struct cv_map {
    char name[160];           /* the outside name */
    const fg_tensor_info *ti; /* the Frugal tensor */
    cv_op op;
    int row0, rows, cols; /* the part of ti it covers: rows x cols (CV_TRANS: stored cols x rows) */
    float scale;          /* outside = scale x Frugal: 1, the router logit scale, or 0 (writes zeros) */
} cv_map;

/* GPT-2's bytes_to_unicode: the code point standing for byte b in byte-level BPE strings. */
/* FG_ERR_UNSUPPORTED naming `where` when the model uses a Frugal architecture lever that
 * no exported class expresses (FFN sharing, MLA, MTP modules), else FG_OK. */
fg_status cv_check_plain(const fg_model_config *c, const char *where);

int cv_byte_unicode(int b);
/* Appends the UTF-8 of the byte-level string for bytes[0..n) to out (cap bytes, NUL
 * ended); returns the length, or -1 when it does not fit. */
int cv_bytes_to_bpe(const uint8_t *bytes, size_t n, char *out, size_t cap);

/* Copies between the model and an outside fp32 buffer for one mapping entry. */
void cv_gather(const float *params, const cv_map *e, float *out);
void cv_scatter(float *params, const cv_map *e, const float *in);

#endif
