/* dispatch.c: the kernel dispatch table: the registry of every variant of every op, the
 * kernel knobs (mode, GEMM threading, threads; the only reader of FG_KERNELS and
 * FG_BLAS_THREADING), the choice made by fg_kernels_configure, and the public fg_* entry
 * points generated from the op list, which call through the table (configuring lazily). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "frugal/hw.h"
#include "kernels_impl.h"
#include "x86/x86_impl.h"

fg_kernel_table fg_kt;

static const char *const level_names[] = {"ref", "blas", "avx2", "avx512", "avx512bf16", "avx512vnni"};

#define FG_KERNEL_OP(ret, name, params, args, check) #name,
static const char *const op_names[FG_N_KERNEL_OPS] = {
#include "frugal/kernel_ops.h"
};

/* The BLAS rows; every op's reference row is generated from the op list below, and
 * x86_impl.h adds the ISA rows. Any order: an op takes its highest-level row that the
 * mode and the CPU allow. */
#define FG_BASE_VARIANTS(V)                                                                                            \
    V(sgemm, FG_LVL_BLAS, fg_sgemm_blas)                                                                               \
    V(matmul_forward, FG_LVL_BLAS, fg_matmul_forward_blas)                                                             \
    V(matmul_backward, FG_LVL_BLAS, fg_matmul_backward_blas)                                                           \
    V(bgemm, FG_LVL_BLAS, fg_bgemm_blas)                                                                               \
    V(bgemm_pack_b, FG_LVL_BLAS, fg_bgemm_pack_b_blas)                                                                 \
    V(bgemm_packed, FG_LVL_BLAS, fg_bgemm_packed_blas)

/* Every row's function has its op's type, or this file does not compile. */
FG_BASE_VARIANTS(FG_VARIANT_TYPE_CHECK)
FG_X86_VARIANTS(FG_VARIANT_TYPE_CHECK)

static const fg_kernel_variant registry[] = {
#define FG_KERNEL_OP(ret, name, params, args, check) FG_VARIANT_ROW(name, FG_LVL_REF, fg_##name##_ref)
#include "frugal/kernel_ops.h"
    FG_BASE_VARIANTS(FG_VARIANT_ROW) FG_X86_VARIANTS(FG_VARIANT_ROW)};
#define N_REGISTRY (sizeof registry / sizeof registry[0])

/* Copies a row's function into its op's slot, member to member (both typed). */
static void put(fg_kernel_table *t, const fg_kernel_variant *v)
{
    switch (v->op) {
#define FG_KERNEL_OP(ret, name, params, args, check)                                                                   \
    case FG_OP_##name:                                                                                                 \
        t->name = v->fn.name;                                                                                          \
        break;
#include "frugal/kernel_ops.h"
    case FG_N_KERNEL_OPS: break;
    }
    t->level[v->op] = (unsigned char)v->level;
}

/* Whether the CPU (less FG_HW_DISABLE) has a level's features. The levels above avx512
 * are independent units (bf16, int8), so "has a higher level" does not imply "has this". */
static int cpu_has(int lvl)
{
    const fg_cpu *cpu = fg_hw_cpu();
    int avx2 = cpu->avx2 && cpu->fma;
    int avx512 = avx2 && cpu->avx512f && cpu->avx512bw && cpu->avx512vl && cpu->avx512dq && cpu->os_avx512;
    switch (lvl) {
    case FG_LVL_REF:
    case FG_LVL_BLAS: return 1;
    case FG_LVL_AVX2: return avx2;
    case FG_LVL_AVX512: return avx512;
    case FG_LVL_AVX512BF16: return avx512 && cpu->avx512_bf16;
    case FG_LVL_AVX512VNNI: return avx512 && cpu->avx512_vnni;
    default: return 0;
    }
}

/* The highest level the CPU has (for messages and the mode check). */
static int cpu_level(void)
{
    int lvl = FG_LVL_AVX512VNNI;
    while (lvl > FG_LVL_BLAS && !cpu_has(lvl))
        lvl--;
    return lvl;
}

static int op_index(const char *op)
{
    for (int i = 0; i < FG_N_KERNEL_OPS; i++)
        if (!strcmp(op_names[i], op))
            return i;
    return -1;
}

/* ---- the knobs: one parser each ---- */
static int mode_level(const char *mode)
{
    if (!strcmp(mode, "auto"))
        return FG_LVL_AVX512VNNI;
    for (int i = 0; i < (int)(sizeof level_names / sizeof level_names[0]); i++)
        if (!strcmp(mode, level_names[i]))
            return i;
    return -1;
}

static const char *const mode_values[] = {"auto", "ref", "blas", "avx2", "avx512", "avx512bf16", "avx512vnni"};
static const char *const threading_values[] = {"omp", "blas"};

/* Resolves one string knob: the argument, else the environment variable, else the
 * default. *out: the canonical (static) spelling; a bad value is FG_ERR_INVALID naming
 * where it came from. */
static fg_status resolve(const char *arg, const char *env_name, const char *dflt, const char *const *values,
                         int n_values, const char *expected, const char *arg_name, const char **out,
                         const char **source)
{
    const char *env = getenv(env_name), *v = arg ? arg : env ? env : dflt;
    *source = arg ? "argument" : env ? env_name : "default";
    for (int i = 0; i < n_values; i++)
        if (!strcmp(v, values[i])) {
            *out = values[i];
            return FG_OK;
        }
    if (arg)
        return fg_error(FG_ERR_INVALID, "%s '%s': expected %s", arg_name, v, expected);
    return fg_error(FG_ERR_INVALID, "%s='%s' (environment): expected %s", env_name, v, expected);
}

/* How GEMMs use the cores (docs/KERNELS.md): "omp" = split over OpenMP threads, BLAS
 * single-threaded per call; "blas" = the BLAS threads each call. */
#define FG_BLAS_THREADING_DEFAULT "omp"

static fg_kernels_settings settings;

/* fg_kernels_configure; read_hw 0 leaves the CPU features as they are (the lazy
 * fallback after a bad FG_HW_DISABLE, which fg_hw_init would refuse again). */
static fg_status configure(const char *mode, const char *blas_threading, int threads, int read_hw)
{
    fg_kernels_settings s = {0};
    fg_status st =
        resolve(mode, "FG_KERNELS", "auto", mode_values, 7, "auto, ref, blas, avx2, avx512, avx512bf16 or avx512vnni",
                "kernels mode", &s.mode, &s.mode_source);
    if (st == FG_OK)
        st = resolve(blas_threading, "FG_BLAS_THREADING", FG_BLAS_THREADING_DEFAULT, threading_values, 2, "omp or blas",
                     "blas_threading", &s.blas_threading, &s.blas_threading_source);
    if (st == FG_OK && read_hw)
        st = fg_hw_init();
    if (st != FG_OK)
        return st;
    s.hw_disable = fg_hw_disabled();
    int want = mode_level(s.mode), have = cpu_level();
    if (strcmp(s.mode, "auto") && !cpu_has(want))
        return fg_error(FG_ERR_UNSUPPORTED, "kernels mode '%s' needs %s, which this CPU (or FG_HW_DISABLE) lacks",
                        s.mode, level_names[want]);
    /* threads first, then the BLAS pool, then the table: every variant sees the count */
    if (threads > 0)
        fg_threads_set(threads);
    s.threads = fg_threads_get();
    int split = !strcmp(s.blas_threading, "omp");
    fg_blas_set_threads(split, s.threads);

    fg_kernel_table t;
    memset(&t, 0, sizeof t);
    for (size_t i = 0; i < N_REGISTRY; i++)
        if ((int)registry[i].level <= want && cpu_has((int)registry[i].level) &&
            (!t.level[registry[i].op] || registry[i].level > t.level[registry[i].op]))
            put(&t, &registry[i]);
    t.blas_split = split;
    /* publish the table before the flag a lazy reader checks */
    fg_kt = t;
    __atomic_store_n(&fg_kt.ready, 1, __ATOMIC_RELEASE);
    settings = s;
    if (strcmp(s.mode_source, "argument") && strcmp(s.mode_source, "default"))
        FG_INFO("kernels: FG_KERNELS=%s (environment override)", s.mode);
    if (!strcmp(s.blas_threading_source, "FG_BLAS_THREADING"))
        FG_INFO("kernels: FG_BLAS_THREADING=%s (environment override)", s.blas_threading);
    if (s.hw_disable[0])
        FG_INFO("kernels: FG_HW_DISABLE=%s (environment override): %s is the best level left", s.hw_disable,
                level_names[have]);
    return FG_OK;
}

fg_status fg_kernels_configure(const char *mode, const char *blas_threading, int threads)
{
    return configure(mode, blas_threading, threads, 1);
}

fg_status fg_kernels_init(const char *mode)
{
    return fg_kernels_configure(mode, NULL, 0);
}

/* First use without fg_kernels_configure: a bad environment falls back to the defaults
 * (with a warning) rather than leaving the table empty. The first use may come from
 * several threads at once (MoE experts run kernels inside a parallel region), so the
 * lazy fill is serialised and `ready` is read with acquire order. */
static void ensure_init(void)
{
    if (__atomic_load_n(&fg_kt.ready, __ATOMIC_ACQUIRE))
        return;
#pragma omp critical(fg_kernels_lazy_init)
    {
        if (!fg_kt.ready && fg_kernels_configure(NULL, NULL, 0) != FG_OK) {
            FG_WARN("%s; using auto kernels and %s GEMM threading", fg_last_error(), FG_BLAS_THREADING_DEFAULT);
            /* cannot fail: valid arguments, the CPU features as they stand */
            FG_ASSERT(configure("auto", FG_BLAS_THREADING_DEFAULT, 0, 0) == FG_OK);
        }
    }
}

fg_kernels_settings fg_kernels_settings_get(void)
{
    ensure_init();
    return settings;
}

const char *fg_kernels_blas_threading(void)
{
    ensure_init();
    return settings.blas_threading;
}

const char *fg_kernels_variant(const char *op)
{
    ensure_init();
    /* Short names ("matmul", "attention") report the forward op. */
    char buf[64];
    snprintf(buf, sizeof buf, "%s_forward", op);
    int i = op_index(op);
    if (i < 0)
        i = op_index(buf);
    return i < 0 ? "?" : level_names[fg_kt.level[i]];
}

void fg_kernels_print(FILE *f)
{
    ensure_init();
    fprintf(f, "  (mode %s from %s, blas_threading %s from %s, %d threads, FG_HW_DISABLE %s)\n", settings.mode,
            settings.mode_source, settings.blas_threading, settings.blas_threading_source, settings.threads,
            settings.hw_disable[0] ? settings.hw_disable : "unset");
    for (int i = 0; i < FG_N_KERNEL_OPS; i++) {
        fprintf(f, "  %-20s %s", op_names[i], level_names[fg_kt.level[i]]);
        if (fg_kt.level[i] == FG_LVL_BLAS) {
            fprintf(f, " (");
            fg_blas_print(f);
            fprintf(f, ")");
        }
        fprintf(f, "\n");
    }
}

int fg_kernels_variants(const char *op, const char **names, int cap)
{
    int have = cpu_level(), n = 0, id = op_index(op);
    /* ascending level, "ref" first */
    for (int lvl = FG_LVL_REF; lvl <= have; lvl++)
        for (size_t i = 0; i < N_REGISTRY && n < cap && cpu_has(lvl); i++)
            if ((int)registry[i].op == id && (int)registry[i].level == lvl)
                names[n++] = level_names[lvl];
    return n;
}

fg_status fg_kernels_set(const char *op, const char *variant_name)
{
    ensure_init();
    int lvl = mode_level(variant_name), id = op_index(op);
    const fg_kernel_variant *v = NULL;
    for (size_t i = 0; i < N_REGISTRY && lvl >= 0 && strcmp(variant_name, "auto"); i++)
        if ((int)registry[i].op == id && (int)registry[i].level == lvl)
            v = &registry[i];
    if (!v)
        return fg_error(FG_ERR_INVALID, "kernel op '%s' has no variant '%s'", op, variant_name);
    if (!cpu_has(lvl))
        return fg_error(FG_ERR_UNSUPPORTED, "variant '%s' of '%s' needs CPU features this machine lacks", variant_name,
                        op);
    put(&fg_kt, v);
    return FG_OK;
}

/* ---- public entry points, one per op of the list: the shape check once at entry
 * (FG_ASSERT aborts with the condition: a caller bug), then the chosen variant ---- */
#define FG_KCALL_void(call) call;
#define FG_KCALL_double(call) return call;
#define FG_KERNEL_OP(ret, name, params, args, check)                                                                   \
    ret fg_##name params                                                                                               \
    {                                                                                                                  \
        ensure_init();                                                                                                 \
        FG_ASSERT(check);                                                                                              \
        FG_KCALL_##ret(fg_kt.name args)                                                                                \
    }
#include "frugal/kernel_ops.h"
