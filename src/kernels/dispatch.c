/* dispatch.c: the kernel dispatch table: a registry of every variant of every op, the
 * choice made once by fg_kernels_init from the mode and the CPU features, and the
 * public fg_* entry points that call through the table (initialising lazily). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "frugal/hw.h"
#include "kernels_impl.h"
#include "x86/x86_impl.h"

fg_kernel_table fg_kt;

/* How GEMMs use the cores (docs/KERNELS.md): "omp" = split over OpenMP threads, BLAS
 * single-threaded; "blas" = the BLAS's own thread pool. */
#define FG_BLAS_THREADING_DEFAULT "omp"

/* Variant levels, ascending: a mode allows every level up to its own. */
enum { LVL_REF = 0, LVL_BLAS = 1, LVL_AVX2 = 2, LVL_AVX512 = 3 };
static const char *const level_names[] = {"ref", "blas", "avx2", "avx512"};

typedef void (*any_fn)(void);
typedef struct variant {
    const char *op;
    int level;
    size_t slot; /* offsetof(fg_kernel_table, <op>) */
    any_fn fn;
} variant;

#define V(op, lvl, field, f)                                                                                           \
    {                                                                                                                  \
        op, lvl, offsetof(fg_kernel_table, field), (any_fn)(f)                                                         \
    }

/* Per op, in ascending preference; the chosen one is the last allowed. */
static const variant registry[] = {V("sgemm", LVL_REF, sgemm, fg_sgemm_ref),
                                   V("sgemm", LVL_BLAS, sgemm, fg_sgemm_blas),
                                   V("matmul_forward", LVL_REF, matmul_forward, fg_matmul_forward_ref),
                                   V("matmul_forward", LVL_BLAS, matmul_forward, fg_matmul_forward_blas),
                                   V("matmul_backward", LVL_REF, matmul_backward, fg_matmul_backward_ref),
                                   V("matmul_backward", LVL_BLAS, matmul_backward, fg_matmul_backward_blas),
                                   V("embedding_forward", LVL_REF, embedding_forward, fg_embedding_forward_ref),
                                   V("embedding_backward", LVL_REF, embedding_backward, fg_embedding_backward_ref),
                                   V("rmsnorm_forward", LVL_REF, rmsnorm_forward, fg_rmsnorm_forward_ref),
                                   V("rmsnorm_backward", LVL_REF, rmsnorm_backward, fg_rmsnorm_backward_ref),
                                   V("layernorm_forward", LVL_REF, layernorm_forward, fg_layernorm_forward_ref),
                                   V("layernorm_backward", LVL_REF, layernorm_backward, fg_layernorm_backward_ref),
                                   V("rope_forward", LVL_REF, rope_forward, fg_rope_forward_ref),
                                   V("rope_backward", LVL_REF, rope_backward, fg_rope_backward_ref),
                                   V("attention_forward", LVL_REF, attention_forward, fg_attention_forward_ref),
                                   V("attention_backward", LVL_REF, attention_backward, fg_attention_backward_ref),
                                   V("gelu_forward", LVL_REF, gelu_forward, fg_gelu_forward_ref),
                                   V("gelu_backward", LVL_REF, gelu_backward, fg_gelu_backward_ref),
                                   V("swiglu_forward", LVL_REF, swiglu_forward, fg_swiglu_forward_ref),
                                   V("swiglu_backward", LVL_REF, swiglu_backward, fg_swiglu_backward_ref),
                                   V("softmax_xent", LVL_REF, softmax_xent, fg_softmax_xent_ref),
                                   V("add", LVL_REF, add, fg_add_ref),
                                   V("axpy", LVL_REF, axpy, fg_axpy_ref),
                                   V("scale", LVL_REF, scale, fg_scale_ref),
                                   V("sumsq", LVL_REF, sumsq, fg_sumsq_ref),
                                   V("adamw_update", LVL_REF, adamw_update, fg_adamw_update_ref),
                                   FG_X86_VARIANTS};
#undef V
#define N_REGISTRY (sizeof registry / sizeof registry[0])

static int cpu_level(void)
{
    const fg_cpu *cpu = fg_hw_cpu();
    if (cpu->avx512f && cpu->avx512bw && cpu->avx512vl && cpu->avx512dq && cpu->os_avx512 && cpu->avx2 && cpu->fma)
        return LVL_AVX512;
    if (cpu->avx2 && cpu->fma)
        return LVL_AVX2;
    return LVL_BLAS;
}

static void put(fg_kernel_table *t, const variant *v)
{
    memcpy((char *)t + v->slot, &v->fn, sizeof v->fn);
}

static int mode_level(const char *mode)
{
    if (!strcmp(mode, "auto"))
        return LVL_AVX512;
    for (int i = 0; i < (int)(sizeof level_names / sizeof level_names[0]); i++)
        if (!strcmp(mode, level_names[i]))
            return i;
    return -1;
}

_Static_assert(N_REGISTRY <= FG_KERNEL_REGISTRY_MAX, "raise FG_KERNEL_REGISTRY_MAX");

/* Fills the table for a mode and a GEMM threading ("omp" or "blas"). */
static fg_status init_table(const char *mode, const char *threading)
{
    int want = mode_level(mode);
    if (want < 0)
        return fg_error(FG_ERR_INVALID, "unknown kernels mode '%s' (valid: auto, ref, blas, avx2, avx512)", mode);
    int have = cpu_level();
    if (strcmp(mode, "auto") && want > have)
        return fg_error(FG_ERR_UNSUPPORTED, "kernels mode '%s' needs %s, which this CPU (or FG_HW_DISABLE) lacks", mode,
                        level_names[want]);
    if (strcmp(threading, "omp") && strcmp(threading, "blas"))
        return fg_error(FG_ERR_INVALID, "FG_BLAS_THREADING='%s': expected omp or blas", threading);
    int limit = want < have ? want : have;
    fg_kernel_table t;
    memset(&t, 0, sizeof t);
    /* rows are in ascending level per op, so the last allowed row of an op wins */
    for (size_t i = 0; i < N_REGISTRY; i++) {
        if (registry[i].level > limit)
            continue;
        put(&t, &registry[i]);
        for (size_t j = 0; j < N_REGISTRY; j++)
            if (!strcmp(registry[j].op, registry[i].op))
                t.level[j] = (unsigned char)registry[i].level;
    }
    t.blas_split = !strcmp(threading, "omp");
    /* publish the table before the flag a lazy reader checks */
    fg_kt = t;
    __atomic_store_n(&fg_kt.ready, 1, __ATOMIC_RELEASE);
    fg_blas_set_threads(fg_threads_get());
    return FG_OK;
}

fg_status fg_kernels_init(const char *mode)
{
    if (!mode)
        mode = fg_env("FG_KERNELS", "auto");
    return init_table(mode, fg_env("FG_BLAS_THREADING", FG_BLAS_THREADING_DEFAULT));
}

/* First use without fg_kernels_init: a bad environment falls back to the defaults
 * (with a warning) rather than leaving the table empty. The first use may come from
 * several threads at once (MoE experts run kernels inside a parallel region), so the
 * lazy fill is serialised and `ready` is read with acquire order. */
static void ensure_init(void)
{
    if (__atomic_load_n(&fg_kt.ready, __ATOMIC_ACQUIRE))
        return;
#pragma omp critical(fg_kernels_lazy_init)
    {
        if (!fg_kt.ready && fg_kernels_init(NULL) != FG_OK) {
            FG_WARN("%s; using auto kernels", fg_last_error());
            init_table("auto", FG_BLAS_THREADING_DEFAULT);
        }
    }
}

static const variant *find_variant(const char *op, int level)
{
    for (size_t i = 0; i < N_REGISTRY; i++)
        if (!strcmp(registry[i].op, op) && registry[i].level == level)
            return &registry[i];
    return NULL;
}

const char *fg_kernels_variant(const char *op)
{
    ensure_init();
    /* Short names ("matmul", "attention") report the forward op. */
    char buf[64];
    for (size_t i = 0; i < N_REGISTRY; i++) {
        snprintf(buf, sizeof buf, "%s_forward", op);
        if (!strcmp(registry[i].op, op) || !strcmp(registry[i].op, buf))
            return level_names[fg_kt.level[i]];
    }
    return "?";
}

void fg_kernels_print(FILE *f)
{
    ensure_init();
    for (size_t i = 0; i < N_REGISTRY; i++) {
        int seen = 0;
        for (size_t j = 0; j < i; j++)
            seen |= !strcmp(registry[j].op, registry[i].op);
        if (seen)
            continue;
        fprintf(f, "  %-20s %s", registry[i].op, level_names[fg_kt.level[i]]);
        if (fg_kt.level[i] == LVL_BLAS) {
            fprintf(f, " (");
            fg_blas_print(f);
            fprintf(f, ")");
        }
        fprintf(f, "\n");
    }
}

int fg_kernels_variants(const char *op, const char **names, int cap)
{
    int have = cpu_level(), n = 0;
    for (size_t i = 0; i < N_REGISTRY && n < cap; i++)
        if (!strcmp(registry[i].op, op) && registry[i].level <= have)
            names[n++] = level_names[registry[i].level];
    return n;
}

fg_status fg_kernels_set(const char *op, const char *variant_name)
{
    ensure_init();
    int lvl = mode_level(variant_name);
    const variant *v = lvl < 0 || !strcmp(variant_name, "auto") ? NULL : find_variant(op, lvl);
    if (!v)
        return fg_error(FG_ERR_INVALID, "kernel op '%s' has no variant '%s'", op, variant_name);
    if (lvl > cpu_level())
        return fg_error(FG_ERR_UNSUPPORTED, "variant '%s' of '%s' needs CPU features this machine lacks", variant_name,
                        op);
    put(&fg_kt, v);
    for (size_t j = 0; j < N_REGISTRY; j++)
        if (!strcmp(registry[j].op, op))
            fg_kt.level[j] = (unsigned char)lvl;
    return FG_OK;
}

/* ---- public entry points: shape checks once at entry (FG_ASSERT aborts with the
 * condition: a caller bug), then the chosen variant ---- */
void fg_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
              int ldb, float beta, float *C, int ldc)
{
    ensure_init();
    FG_ASSERT(M >= 0 && N >= 0 && K >= 0);
    fg_kt.sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void fg_matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N, int C, int OC)
{
    ensure_init();
    FG_ASSERT(N >= 0 && C >= 0 && OC >= 0);
    fg_kt.matmul_forward(out, inp, weight, bias, N, C, OC);
}

void fg_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                        const float *weight, int N, int C, int OC)
{
    ensure_init();
    FG_ASSERT(N >= 0 && C >= 0 && OC >= 0);
    fg_kt.matmul_backward(dinp, dweight, dbias, dout, inp, weight, N, C, OC);
}

void fg_embedding_forward(float *out, const int32_t *tokens, const float *wte, const float *wpe, int N, int T, int C)
{
    ensure_init();
    FG_ASSERT(N >= 0 && C >= 0 && (!wpe || T > 0));
    fg_kt.embedding_forward(out, tokens, wte, wpe, N, T, C);
}

void fg_embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int N, int T, int C)
{
    ensure_init();
    FG_ASSERT(N >= 0 && C >= 0 && (!dwpe || T > 0));
    fg_kt.embedding_backward(dwte, dwpe, dout, tokens, N, T, C);
}

void fg_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N, int C, float eps)
{
    ensure_init();
    fg_kt.rmsnorm_forward(out, rstd, inp, weight, N, C, eps);
}

void fg_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                         const float *rstd, int N, int C)
{
    ensure_init();
    fg_kt.rmsnorm_backward(dinp, dweight, dout, inp, weight, rstd, N, C);
}

void fg_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                          const float *bias, int N, int C, float eps)
{
    ensure_init();
    fg_kt.layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, eps);
}

void fg_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                           const float *weight, const float *mean, const float *rstd, int N, int C)
{
    ensure_init();
    fg_kt.layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
}

void fg_rope_forward(float *x, int B, int T, int NH, int HS, int row_stride, int pos0, float theta)
{
    ensure_init();
    FG_ASSERT(HS % 2 == 0 && row_stride >= NH * HS);
    fg_kt.rope_forward(x, B, T, NH, HS, row_stride, pos0, theta);
}

void fg_rope_backward(float *dx, int B, int T, int NH, int HS, int row_stride, int pos0, float theta)
{
    ensure_init();
    FG_ASSERT(HS % 2 == 0 && row_stride >= NH * HS);
    fg_kt.rope_backward(dx, B, T, NH, HS, row_stride, pos0, theta);
}

void fg_attention_forward(float *out, float *lse, const float *qkv, int B, int T, int C, int NH)
{
    ensure_init();
    FG_ASSERT(NH > 0 && C % NH == 0 && B >= 0 && T >= 0);
    fg_kt.attention_forward(out, lse, qkv, B, T, C, NH);
}

void fg_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out, const float *lse, int B,
                           int T, int C, int NH)
{
    ensure_init();
    FG_ASSERT(NH > 0 && C % NH == 0 && B >= 0 && T >= 0);
    fg_kt.attention_backward(dqkv, dout, qkv, out, lse, B, T, C, NH);
}

void fg_gelu_forward(float *out, const float *inp, size_t n)
{
    ensure_init();
    fg_kt.gelu_forward(out, inp, n);
}

void fg_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n)
{
    ensure_init();
    fg_kt.gelu_backward(dinp, dout, inp, n);
}

void fg_swiglu_forward(float *out, const float *inp, int N, int H)
{
    ensure_init();
    fg_kt.swiglu_forward(out, inp, N, H);
}

void fg_swiglu_backward(float *dinp, const float *dout, const float *inp, int N, int H)
{
    ensure_init();
    fg_kt.swiglu_backward(dinp, dout, inp, N, H);
}

double fg_softmax_xent(float *dlogits, float *losses, const float *logits, const int32_t *targets, int N, int V, int Vp,
                       float dloss)
{
    ensure_init();
    FG_ASSERT(N >= 0 && V > 0 && V <= Vp);
    return fg_kt.softmax_xent(dlogits, losses, logits, targets, N, V, Vp, dloss);
}

void fg_add(float *out, const float *a, const float *b, size_t n)
{
    ensure_init();
    fg_kt.add(out, a, b, n);
}

void fg_axpy(float *y, float a, const float *x, size_t n)
{
    ensure_init();
    fg_kt.axpy(y, a, x, n);
}

void fg_scale(float *x, float s, size_t n)
{
    ensure_init();
    fg_kt.scale(x, s, n);
}

double fg_sumsq(const float *x, size_t n)
{
    ensure_init();
    return fg_kt.sumsq(x, n);
}

void fg_adamw_update(float *params, const float *grads, float *m, float *v, size_t n, float lr, float beta1,
                     float beta2, float eps, float weight_decay, int t)
{
    ensure_init();
    fg_kt.adamw_update(params, grads, m, v, n, lr, beta1, beta2, eps, weight_decay, t);
}
