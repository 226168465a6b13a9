/* kernels_impl.h: the dispatch table and the variant registration shared by the files
 * of src/kernels, all generated from the op list in frugal/kernel_ops.h. Not public. */
#ifndef FRUGAL_KERNELS_IMPL_H
#define FRUGAL_KERNELS_IMPL_H

/* Memory-bound ops (elementwise, conversions, norms, rope, SwiGLU) thread only from this
 * many elements on (2 MB of fp32): a fork/join with OMP_WAIT_POLICY=passive costs the
 * worker a futex sleep and wake, about 0.1 ms of CPU measured on the recipe model
 * (docs/perf/kernels.md, section 7), more than threads save below ~1 ms of work. The
 * split never changes a sum, only who computes which rows. */
#define FG_PAR_MIN_ELEMS ((size_t)1 << 19)

#include "frugal/kernels.h"

/* Per op: its function type fg_<op>_kernel, and a prototype for every variant suffix, so
 * a variant file whose definition differs from the list does not compile. Only the
 * variants registered (dispatch.c, x86/x86_impl.h) exist; the others are never named. */
#define FG_KERNEL_OP(ret, name, params, args, check)                                                                   \
    typedef ret fg_##name##_kernel params;                                                                             \
    fg_##name##_kernel fg_##name##_blas, fg_##name##_avx2, fg_##name##_avx512, fg_##name##_avx512bf16,                 \
        fg_##name##_avx512vnni;
#include "frugal/kernel_ops.h"

/* Op ids, in list order. */
#define FG_KERNEL_OP(ret, name, params, args, check) FG_OP_##name,
enum fg_kernel_op_id {
#include "frugal/kernel_ops.h"
    FG_N_KERNEL_OPS
};

/* Variant levels, ascending: a mode allows every level up to its own. AVX512BF16 is
 * AVX-512 plus the bf16 dot-product unit (vdpbf16ps, vcvtne2ps2bf16), AVX512VNNI AVX-512
 * plus the int8 one (vpdpbusd). The two units are independent features (FG_HW_DISABLE
 * masks each alone), so a row is taken only where the CPU has its level's features,
 * not merely a higher level (dispatch.c cpu_has). */
enum fg_kernel_level {
    FG_LVL_REF = 0,
    FG_LVL_BLAS = 1,
    FG_LVL_AVX2 = 2,
    FG_LVL_AVX512 = 3,
    FG_LVL_AVX512BF16 = 4,
    FG_LVL_AVX512VNNI = 5
};

/* One typed function pointer per op, the GEMM threading mode and the chosen levels. */
typedef struct fg_kernel_table {
    int ready;
    int blas_split; /* 1: GEMMs split over our OpenMP threads, BLAS single-threaded (blas_threading "omp") */
    unsigned char level[FG_N_KERNEL_OPS]; /* per op: level of the variant in its slot */
#define FG_KERNEL_OP(ret, name, params, args, check) fg_##name##_kernel *name;
#include "frugal/kernel_ops.h"
} fg_kernel_table;

/* The dispatch table: the one global of the module (filled by fg_kernels_configure). */
extern fg_kernel_table fg_kt;

/* ---- registering a variant ----
 * A registry row holds its function in a union with one member per op, initialised
 * through the op's member: no cast anywhere. Each row is also checked by
 * FG_VARIANT_TYPE_CHECK, a C11 static assertion that holds whatever the warning flags,
 * so a function registered under the wrong op does not compile (docs/KERNELS.md,
 * test_kernels_wrong_type). Lists of rows are written as V(op, level, function). */
typedef union fg_kernel_fn {
#define FG_KERNEL_OP(ret, name, params, args, check) fg_##name##_kernel *name;
#include "frugal/kernel_ops.h"
} fg_kernel_fn;

typedef struct fg_kernel_variant {
    enum fg_kernel_op_id op;
    enum fg_kernel_level level;
    fg_kernel_fn fn;
} fg_kernel_variant;

#define FG_VARIANT_ROW(op_, lvl, f) {FG_OP_##op_, lvl, {.op_ = f}},
#define FG_VARIANT_TYPE_CHECK(op_, lvl, f)                                                                             \
    _Static_assert(__builtin_types_compatible_p(__typeof__(f), fg_##op_##_kernel),                                     \
                   "kernel variant " #f " is registered for op " #op_ " but does not have its type");

/* ---- BLAS (src/kernels/blas.c): fg_sgemm_blas, fg_matmul_forward_blas, fg_matmul_backward_blas ---- */
/* Sets the BLAS library's thread count for the GEMM threading mode: 1 per call when
 * `split` (our OpenMP threads split the GEMMs), else n. Called before the table fills. */
void fg_blas_set_threads(int split, int n);
/* Prints "OpenBLAS <core>, <threading>" (no newline) for fg_kernels_print. */
void fg_blas_print(FILE *f);

/* Sum over n of rows[n, :] into acc[0..OC) (acc += ...), parallel over columns. */
void fg_bias_reduce(float *acc, const float *rows, int N, int OC);

/* The bf16 GEMMs' shared entry (bf16_blas.c): 1 when there is nothing left to do, i.e. an
 * empty C, or K == 0, where C = beta * C (beta == 0: C = 0, not read) has been done. */
int fg_bgemm_trivial(int M, int N, int K, float beta, float *C, int ldc);

#endif
