/* kernels.h: the compute kernels every layer is built from, each a scalar reference
 * (`_ref`, always built) plus fast variants picked once at start-up into a dispatch
 * table (the one global besides the log level).
 *
 * Usage:
 *   fg_kernels_configure("auto", NULL, 0); // or "ref"; NULL/0: environment or default
 *   fg_matmul_forward(out, inp, w, b, N, C, OC);
 * Conventions (llm.c style): arguments are outputs, inputs, weights, dims. Every
 * backward ACCUMULATES into its d* outputs (+=); the caller zeroes them. Any d* output
 * may be NULL when that gradient is not needed. Rows are contiguous, row-major.
 * Kernels never allocate, except fg_kernels_configure and the bf16 GEMM's packing scratch
 * (fg_malloc per call; docs/KERNELS.md). All are multi-threaded (OpenMP)
 * over an output dimension so no two threads write one location.
 */
#ifndef FRUGAL_KERNELS_H
#define FRUGAL_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "frugal/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- configuration: every kernel knob enters here, once, before the first kernel ----
 *
 * fg_kernels_configure(mode, blas_threading, threads) applies FG_HW_DISABLE, sets the
 * thread count, then the BLAS threads, then fills the dispatch table, in that order (so
 * `--threads` reaches the BLAS in "blas" threading too). Each argument means:
 *   mode            "auto" (best variant the CPU supports), "ref" (scalar references),
 *                   or a level "blas", "avx2", "avx512", "avx512bf16" (each op takes its
 *                   best variant at or below it; avx512bf16 = AVX-512 + the bf16 dot-product
 *                   unit, where the bf16 GEMM has its kernel). NULL: $FG_KERNELS, else "auto".
 *   blas_threading  "omp" (GEMMs split over our OpenMP threads, each BLAS call
 *                   single-threaded; the default) or "blas" (the BLAS threads each call
 *                   itself, over the same OpenMP pool with the OpenMP build of OpenBLAS).
 *                   NULL: $FG_BLAS_THREADING, else "omp".
 *   threads         > 0: the OpenMP thread count (fg_threads_set), used by every kernel
 *                   and the BLAS. <= 0: keep the current count (OMP_NUM_THREADS, else
 *                   all cores).
 * Contract for a caller with a config (the trainer): pass the config's values, or
 * NULL / 0 where the user set nothing, so the environment overrides stay usable for
 * tests; then record fg_kernels_settings_get() (value and source of each knob). The
 * variables FG_KERNELS, FG_BLAS_THREADING and FG_HW_DISABLE (src/hw: masks CPU features,
 * e.g. "avx512,avx2") are read here and nowhere else, each by one parser; one in effect
 * is logged (FG_INFO "kernels: FG_KERNELS=ref (environment override)").
 * Errors (the table, threads and BLAS stay as they were): FG_ERR_INVALID for a bad
 * value, the message naming the knob and the value ("FG_BLAS_THREADING='x'
 * (environment): expected omp or blas", "blas_threading 'x': expected omp or blas",
 * "FG_HW_DISABLE='avx3': unknown feature 'avx3' ..."); FG_ERR_UNSUPPORTED when the mode
 * needs an ISA the CPU (or FG_HW_DISABLE) lacks. May be called again (tests,
 * benchmarks); not thread-safe: call it before starting threads. Calling a kernel
 * first configures with (NULL, NULL, 0). */
fg_status fg_kernels_configure(const char *mode, const char *blas_threading, int threads);

/* fg_kernels_configure(mode, NULL, 0): the historical entry point. */
fg_status fg_kernels_init(const char *mode);

/* The settings in effect (configuring with the defaults first if nothing has been
 * configured yet), for `frugal hw`, logs and config.json. Strings are static. */
typedef struct fg_kernels_settings {
    const char *mode;                  /* as given: "auto", "ref", "blas", "avx2", "avx512", "avx512bf16" */
    const char *mode_source;           /* "argument", "FG_KERNELS" or "default" */
    const char *blas_threading;        /* "omp" or "blas" */
    const char *blas_threading_source; /* "argument", "FG_BLAS_THREADING" or "default" */
    int threads;                       /* OpenMP threads when configured */
    const char *hw_disable;            /* FG_HW_DISABLE as applied, "" when unset */
} fg_kernels_settings;
fg_kernels_settings fg_kernels_settings_get(void);

/* "omp" or "blas": the GEMM threading in effect (for callers that schedule around it,
 * e.g. the MoE layer). */
const char *fg_kernels_blas_threading(void);

/* Prints one line per op: "op: variant" (for `frugal hw`). */
void fg_kernels_print(FILE *f);

/* Name of the variant chosen for an op ("matmul", "attention", ...), or "?" */
const char *fg_kernels_variant(const char *op);

/* ---- the ops: contracts in frugal/kernel_ops.h (one entry per op) ----
 * fg_<op> calls the variant the table chose; fg_<op>_ref is the scalar reference
 * (always built, what "ref" dispatches to; same contract, reductions in double;
 * tests compare every variant against it). */
#define FG_KERNEL_OP(ret, name, params, args, check)                                                                   \
    ret fg_##name params;                                                                                              \
    ret fg_##name##_ref params;
#include "frugal/kernel_ops.h"

/* bgemm_pack_b's layout (kernel_ops.h): strips of FG_BGEMM_NR columns, and the words a
 * packed op(B) [K,N] takes. */
enum { FG_BGEMM_NR = 48 };
static inline size_t fg_bgemm_packed_words(int N, int K)
{
    return (size_t)((N + FG_BGEMM_NR - 1) / FG_BGEMM_NR) * FG_BGEMM_NR * (size_t)((K + 1) / 2);
}

/* gemm_u8s8_pack_b's layout (kernel_ops.h): strips of FG_I8_NR rows of B, and the
 * words (4 bytes of k each) a packed B [N,K] takes. */
enum { FG_I8_NR = 48 };
static inline size_t fg_gemm_u8s8_packed_words(int N, int K)
{
    return (size_t)((N + FG_I8_NR - 1) / FG_I8_NR) * FG_I8_NR * (size_t)((K + 3) / 4);
}

/* Names of the variants an op can take on this CPU, for tests: fills names[0..cap)
 * with every variant of `op` this CPU supports ("ref" first) and returns the count. */
int fg_kernels_variants(const char *op, const char **names, int cap);
/* Forces one op to one variant by name (tests). FG_ERR_INVALID when unknown,
 * FG_ERR_UNSUPPORTED when this CPU lacks it. */
fg_status fg_kernels_set(const char *op, const char *variant);

#ifdef __cplusplus
}
#endif
#endif
