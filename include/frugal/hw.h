/* hw.h: what the CPU can do, read once from cpuid and the OS (XCR0, AMX permission).
 *
 * Usage: const fg_cpu *cpu = fg_hw_cpu(); if (cpu->avx512f) ...
 * The first call detects; later calls return the same struct. AMX tiles are usable
 * only after fg_hw_request_amx() succeeded in this process (Linux arch_prctl).
 */
#ifndef FRUGAL_HW_H
#define FRUGAL_HW_H

#include <stdbool.h>
#include <stdio.h>

#include "frugal/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fg_cpu {
    char vendor[13];
    char brand[49];
    int family, model;
    int n_cores; /* online logical CPUs */
    bool avx2, fma, f16c;
    bool avx512f, avx512bw, avx512vl, avx512dq;
    bool avx512_bf16, avx512_fp16, avx512_vnni;
    bool amx_tile, amx_bf16, amx_int8;
    bool os_avx512;     /* XCR0 says the OS saves zmm state */
    bool amx_permitted; /* fg_hw_request_amx succeeded */
} fg_cpu;

/* Detects the CPU (once) and applies FG_HW_DISABLE, re-read at every call: a
 * comma-separated list of "avx512" (also masks AMX), "avx2" (and FMA), "amx" and
 * "avx512bf16" (the bf16 dot-product units only: AVX512-BF16 and AMX-BF16) and
 * "avx512vnni" (the int8 ones only: AVX512-VNNI and AMX-INT8), so
 * tests can run the fallbacks on a machine that has the features. FG_ERR_INVALID,
 * naming the variable and the unknown name, when the list is bad (the features then
 * stay as they were: AVX2/FMA, AVX-512 and AMX all off if this is the first call). Called by
 * fg_kernels_configure; not thread-safe. */
fg_status fg_hw_init(void);

/* Detected features less the masked ones (never NULL); runs fg_hw_init on first use
 * (a bad FG_HW_DISABLE is logged there). */
const fg_cpu *fg_hw_cpu(void);

/* FG_HW_DISABLE as last applied ("" when unset). */
const char *fg_hw_disabled(void);

/* Asks Linux for AMX tile state (ARCH_REQ_XCOMP_PERM). FG_OK when AMX is now usable;
 * FG_ERR_UNSUPPORTED (last error says why) otherwise. Idempotent. */
fg_status fg_hw_request_amx(void);

/* Prints the feature report used by `frugal hw`. */
void fg_hw_print(FILE *f);

/* The unit a training precision's GEMMs run on, in words, from the kernel variant the
 * dispatch table chose (hw knows the units, the kernels the choice; kernels sit above
 * hw, so callers pass fg_kernels_variant("matmul") for fp32 and ("bgemm") for bf16 and
 * fp8): "fp32", "bf16" or "fp8". Never NULL (an unknown precision: "?"). */
const char *fg_hw_unit(const char *precision, const char *fp32_variant, const char *bf16_variant, char *buf, size_t n);

/* One line per precision (fp32, bf16, fp8): "<indent><precision> <variant>  <unit>". */
void fg_hw_print_units(FILE *f, const char *indent, const char *fp32_variant, const char *bf16_variant);

#ifdef __cplusplus
}
#endif
#endif
