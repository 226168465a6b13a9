/* codec.c: the tensor encodings of checkpoint files: raw, byte-plane shuffle + zstd,
 * and XOR with the base tensor + shuffle + zstd (deltas). File layout is in format.c. */
#include <string.h>
#include <zstd.h>

#include "ckpt_impl.h"

void ckpt_scratch_free(ckpt_scratch *s)
{
    fg_free(s->shuf);
    fg_free(s->out);
    ZSTD_freeCCtx(s->cctx);
    memset(s, 0, sizeof *s);
}

static fg_status grow(uint8_t **p, size_t *cap, size_t need)
{
    if (*cap >= need)
        return FG_OK;
    uint8_t *q = fg_malloc(need ? need : 1);
    if (!q)
        return FG_ERR_NOMEM;
    fg_free(*p);
    *p = q;
    *cap = need;
    return FG_OK;
}

const char *fg_ckpt_encoding_name(int enc)
{
    switch (enc) {
    case FG_CKPT_ENC_RAW: return "raw";
    case FG_CKPT_ENC_SHUF_ZSTD: return "shuffle-zstd";
    case FG_CKPT_ENC_XOR_SHUF_ZSTD: return "xor-shuffle-zstd";
    }
    return "unknown";
}

/* One pass over the words, four output streams: the planes are written sequentially
 * so this runs at memory speed. */
void ckpt_shuffle(uint8_t *dst, const uint8_t *src, const uint8_t *base, size_t bytes)
{
    size_t n4 = bytes / 4;
    uint8_t *d0 = dst, *d1 = dst + n4, *d2 = dst + 2 * n4, *d3 = dst + 3 * n4;
    for (size_t i = 0; i < n4; i++) {
        uint32_t w;
        memcpy(&w, src + 4 * i, 4);
        if (base) {
            uint32_t b;
            memcpy(&b, base + 4 * i, 4);
            w ^= b;
        }
        d0[i] = (uint8_t)w;
        d1[i] = (uint8_t)(w >> 8);
        d2[i] = (uint8_t)(w >> 16);
        d3[i] = (uint8_t)(w >> 24);
    }
    for (size_t i = 4 * n4; i < bytes; i++)
        dst[i] = base ? (uint8_t)(src[i] ^ base[i]) : src[i];
}

void ckpt_unshuffle(uint8_t *dst, const uint8_t *src, size_t bytes, bool xor_into)
{
    size_t n4 = bytes / 4;
    const uint8_t *s0 = src, *s1 = src + n4, *s2 = src + 2 * n4, *s3 = src + 3 * n4;
    for (size_t i = 0; i < n4; i++) {
        uint32_t w = (uint32_t)s0[i] | (uint32_t)s1[i] << 8 | (uint32_t)s2[i] << 16 | (uint32_t)s3[i] << 24;
        if (xor_into) {
            uint32_t b;
            memcpy(&b, dst + 4 * i, 4);
            w ^= b;
        }
        memcpy(dst + 4 * i, &w, 4);
    }
    for (size_t i = 4 * n4; i < bytes; i++)
        dst[i] = xor_into ? (uint8_t)(dst[i] ^ src[i]) : src[i];
}

fg_status ckpt_encode(ckpt_scratch *s, int enc, int level, const uint8_t *src, const uint8_t *base, size_t bytes,
                      const uint8_t **stored, size_t *stored_bytes)
{
    if (enc == FG_CKPT_ENC_RAW) {
        *stored = src;
        *stored_bytes = bytes;
        return FG_OK;
    }
    if (enc != FG_CKPT_ENC_SHUF_ZSTD && enc != FG_CKPT_ENC_XOR_SHUF_ZSTD)
        return fg_error(FG_ERR_INTERNAL, "checkpoint: unknown encoding %d", enc);
    if (!s->cctx) {
        s->cctx = ZSTD_createCCtx();
        if (!s->cctx)
            return fg_error(FG_ERR_NOMEM, "checkpoint: cannot create a zstd context");
    }
    fg_status st = grow(&s->shuf, &s->shuf_cap, bytes);
    if (st == FG_OK)
        st = grow(&s->out, &s->out_cap, ZSTD_compressBound(bytes));
    if (st != FG_OK)
        return st;
    ckpt_shuffle(s->shuf, src, enc == FG_CKPT_ENC_XOR_SHUF_ZSTD ? base : NULL, bytes);
    size_t r = ZSTD_compressCCtx(s->cctx, s->out, s->out_cap, s->shuf, bytes, level);
    if (ZSTD_isError(r))
        return fg_error(FG_ERR_INTERNAL, "checkpoint: zstd compression failed: %s", ZSTD_getErrorName(r));
    *stored = s->out;
    *stored_bytes = r;
    return FG_OK;
}

fg_status ckpt_decode(ckpt_scratch *s, int enc, uint8_t *dst, size_t bytes, const uint8_t *stored, size_t stored_bytes,
                      const char *path, const char *name)
{
    if (enc == FG_CKPT_ENC_RAW) {
        if (stored_bytes != bytes)
            return fg_error(FG_ERR_FORMAT, "%s: tensor '%s': raw size %zu != %zu", path, name, stored_bytes, bytes);
        memcpy(dst, stored, bytes);
        return FG_OK;
    }
    if (enc != FG_CKPT_ENC_SHUF_ZSTD && enc != FG_CKPT_ENC_XOR_SHUF_ZSTD)
        return fg_error(FG_ERR_UNSUPPORTED, "%s: tensor '%s': unknown encoding %d", path, name, enc);
    unsigned long long fs = ZSTD_getFrameContentSize(stored, stored_bytes);
    if (fs != (unsigned long long)bytes)
        return fg_error(FG_ERR_CORRUPT, "%s: tensor '%s': zstd frame holds %llu bytes, expected %zu", path, name, fs,
                        bytes);
    fg_status st = grow(&s->shuf, &s->shuf_cap, bytes);
    if (st != FG_OK)
        return st;
    size_t r = ZSTD_decompress(s->shuf, bytes, stored, stored_bytes);
    if (ZSTD_isError(r) || r != bytes)
        return fg_error(FG_ERR_CORRUPT, "%s: tensor '%s': zstd: %s", path, name,
                        ZSTD_isError(r) ? ZSTD_getErrorName(r) : "short frame");
    ckpt_unshuffle(dst, s->shuf, bytes, enc == FG_CKPT_ENC_XOR_SHUF_ZSTD);
    return FG_OK;
}
