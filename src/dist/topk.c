/* topk.c: the top-k sparsification codec of Deep Gradient Compression: selection of the
 * k largest |v| by quickselect on a scratch copy, error feedback and momentum-factor
 * masking in place, (index, value) messages with uint32 or varint-delta indices and fp32
 * or bf16 values, and the decoder that adds a message into a dense buffer. */
#include <math.h>
#include <string.h>

#include "frugal/dist.h"

size_t fg_topk_count(size_t len, double density)
{
    size_t k = (size_t)floor(density * (double)len);
    if (k < 1)
        k = 1;
    return k > len ? len : k;
}

size_t fg_topk_max_bytes(size_t k, fg_topk_format f)
{
    return k * ((f.delta_idx ? 5 : 4) + (f.bf16 ? 2 : 4));
}

static uint16_t to_bf16(float x)
{
    uint32_t b;
    memcpy(&b, &x, 4);
    if ((b & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((b >> 16) | 0x40); /* NaN stays NaN */
    b += 0x7fffu + ((b >> 16) & 1u);         /* round to nearest even */
    return (uint16_t)(b >> 16);
}

static float from_bf16(uint16_t h)
{
    uint32_t b = (uint32_t)h << 16;
    float x;
    memcpy(&x, &b, 4);
    return x;
}

/* The k-th largest of a[0..n) (1-based k), reordering a: quickselect with a three-way
 * partition (greater | equal | less), so runs of equal values end it at once. */
static float kth_largest(float *a, size_t n, size_t k)
{
    size_t lo = 0, hi = n, want = k - 1;
    while (hi - lo > 1) {
        float pivot = a[lo + (hi - lo) / 2];
        size_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            float x = a[i];
            if (x > pivot) {
                a[i++] = a[lt];
                a[lt++] = x;
            } else if (x < pivot) {
                a[i] = a[--gt];
                a[gt] = x;
            } else {
                i++;
            }
        }
        if (want < lt)
            hi = lt;
        else if (want >= gt)
            lo = gt;
        else
            return pivot;
    }
    return a[lo];
}

/* |x|, with NaN above everything: a NaN gradient is sent (and the step fails loudly)
 * instead of breaking the selection's count */
static float mag(float x)
{
    return isnan(x) ? INFINITY : fabsf(x);
}

static size_t put_varint(uint8_t *o, uint32_t x)
{
    size_t n = 0;
    while (x >= 0x80) {
        o[n++] = (uint8_t)(x | 0x80);
        x >>= 7;
    }
    o[n++] = (uint8_t)x;
    return n;
}

size_t fg_topk_encode(float *v, float *u, size_t len, size_t k, fg_topk_format f, uint8_t *out, float *scratch)
{
    if (k > len)
        k = len;
    for (size_t i = 0; i < len; i++)
        scratch[i] = mag(v[i]);
    float thr = kth_largest(scratch, len, k);
    /* above the threshold all go; at it, the lowest indices fill up to k */
    size_t above = 0;
    for (size_t i = 0; i < len; i++)
        above += mag(v[i]) > thr;
    size_t ties = k - above, nidx = 0;
    uint8_t *p = out;
    size_t vbytes = f.bf16 ? 2 : 4;
    /* indices first (their size is known only after writing, for varints), values after:
     * the values go to scratch (free now) and are appended */
    uint32_t prev = 0;
    for (size_t i = 0; i < len && nidx < k; i++) {
        float a = mag(v[i]);
        if (!(a > thr || (a == thr && ties > 0)))
            continue;
        if (!(a > thr))
            ties--;
        if (f.delta_idx) {
            p += put_varint(p, (uint32_t)i - (nidx ? prev + 1 : 0));
        } else {
            uint32_t x = (uint32_t)i;
            memcpy(p, &x, 4);
            p += 4;
        }
        prev = (uint32_t)i;
        float sent = v[i];
        if (f.bf16)
            sent = from_bf16(to_bf16(v[i]));
        scratch[nidx] = v[i];
        v[i] -= sent; /* error feedback: what bf16 lost stays for the next step */
        if (u)
            u[i] = 0; /* momentum factor masking */
        nidx++;
    }
    for (size_t j = 0; j < nidx; j++) {
        if (f.bf16) {
            uint16_t h = to_bf16(scratch[j]);
            memcpy(p, &h, 2);
        } else {
            memcpy(p, &scratch[j], 4);
        }
        p += vbytes;
    }
    return (size_t)(p - out);
}

size_t fg_topk_decode_add(const uint8_t *in, size_t avail, size_t len, size_t k, fg_topk_format f, float *dst)
{
    /* two passes over the index block: find where the values start, then add */
    size_t pos = 0;
    for (size_t j = 0; j < k; j++) {
        if (f.delta_idx) {
            do {
                if (pos >= avail)
                    return 0;
            } while (in[pos++] & 0x80);
        } else {
            pos += 4;
        }
    }
    size_t vbytes = f.bf16 ? 2 : 4, vstart = pos;
    if (pos > avail || avail - pos < k * vbytes)
        return 0;
    pos = 0;
    uint64_t idx = 0;
    for (size_t j = 0; j < k; j++) {
        if (f.delta_idx) {
            uint64_t x = 0;
            int sh = 0;
            uint8_t b;
            do {
                b = in[pos++];
                if (sh < 35)
                    x |= (uint64_t)(b & 0x7f) << sh;
                sh += 7;
            } while (b & 0x80);
            idx = j ? idx + 1 + x : x;
        } else {
            uint32_t x;
            memcpy(&x, in + pos, 4);
            pos += 4;
            idx = x;
        }
        if (idx >= len)
            return 0;
        float val;
        if (f.bf16) {
            uint16_t h;
            memcpy(&h, in + vstart + j * 2, 2);
            val = from_bf16(h);
        } else {
            memcpy(&val, in + vstart + j * 4, 4);
        }
        dst[idx] += val;
    }
    return vstart + k * vbytes;
}
