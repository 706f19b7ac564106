/* adaptim fused optimizer steps: plain C (no torch headers), OpenMP, one call per parameter
 * group and step.
 *
 * Each exported function receives, for n tensors, k arrays of data pointers (ptrs[j*n + t] is
 * the j-th operand of tensor t: param, grad, then the state tensors), their element counts and
 * the hyperparameters as C doubles (so nothing is ever recompiled when lr changes). The element
 * range of all tensors together is cut into fixed chunks shared out among threads, so 5,000
 * small tensors cost what one large tensor of the same size costs.
 *
 * The arithmetic mirrors adaptim.functional operation by operation, in float64 for float64
 * parameters and float32 for all others (scalars rounded to it first, as torch does), with
 * fma() exactly where torch's vectorised CPU kernels use fmadd or are compiled to one (add with
 * alpha, lerp, addcmul). Built with
 * -ffp-contract=off and without -ffast-math so the compiler adds no other contraction or
 * reassociation. Each call also increments every tensor's step (state["step"] += 1) and
 * computes the step-dependent scalars (bias corrections, lr decay) per tensor from it.
 *
 * Modes (the storage of param/grad and of the state, one library each): see the table below.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 16384

static inline __attribute__((always_inline)) float bf16_to_f32(uint16_t h) {
    uint32_t u = ((uint32_t)h) << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Round to nearest even, NaN kept NaN: what c10::BFloat16(float) does. */
static inline __attribute__((always_inline)) uint16_t f32_to_bf16(float f) {
    uint32_t u;
    if (f != f) return 0x7FC0;
    memcpy(&u, &f, sizeof u);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}



/* Adam's b1 = 1 − β₁ᵗ and b2 = 1 − β₂ᵗ (libm pow, as Python's **). The tensors of a group
 * normally share one step, so each thread keeps its last result instead of calling pow twice
 * per tensor. */
static inline void bias_corrections(double beta1, double beta2, double step, double *b1,
                                    double *b2) {
    static _Thread_local double key[3] = {NAN, NAN, NAN}, value[2];
    if (key[0] != beta1 || key[1] != beta2 || key[2] != step) {
        value[0] = 1 - pow(beta1, step);
        value[1] = 1 - pow(beta2, step);
        key[0] = beta1, key[1] = beta2, key[2] = step;
    }
    *b1 = value[0];
    *b2 = value[1];
}

/* torch.maximum: NaN if either is NaN. */
#define MAXIMUM(a, b) (((a) != (a)) ? (a) : (((b) != (b)) ? (b) : ((a) > (b) ? (a) : (b))))

/* Offsets of each tensor in the concatenated element range; returns the total. */
static int64_t offsets_of(int64_t n, const int64_t *sizes, int64_t *off) {
    off[0] = 0;
    for (int64_t t = 0; t < n; t++) off[t + 1] = off[t] + sizes[t];
    return off[n];
}

/* Last t with off[t] <= pos (skipping empty tensors before pos). */
static int64_t tensor_at(int64_t n, const int64_t *off, int64_t pos) {
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        int64_t mid = (lo + hi + 1) / 2;
        if (off[mid] <= pos) lo = mid; else hi = mid - 1;
    }
    return lo;
}

typedef void (*segment_fn)(void **ptrs, int64_t n, int64_t t, int64_t b, int64_t e,
                           const double *hp, double step);

/* The optimizer's step count of tensor t (a 0-d float32 or float64 tensor, as torch keeps it). */
static inline double step_of(void **steps, int step_dtype, int64_t t) {
    if (!steps) return 0.0;
    return step_dtype == 2 ? *(double *)steps[t] : (double)*(float *)steps[t];
}

/* Increment every tensor's step (state["step"] += 1, also for empty tensors), then run fn over
 * every element of every tensor, in chunks shared among nthreads threads. */
static int for_all_segments(segment_fn fn, void **ptrs, int64_t n, const int64_t *sizes,
                            void **steps, int step_dtype, const double *hp, int nthreads) {
    if (n <= 0) return 0;
    if (steps) {
        for (int64_t t = 0; t < n; t++) {
            if (step_dtype == 2) *(double *)steps[t] += 1.0;
            else *(float *)steps[t] += 1.0f;
        }
    }
    int64_t *off = (int64_t *)malloc(sizeof(int64_t) * (size_t)(n + 1));
    if (!off) return -1;
    int64_t total = offsets_of(n, sizes, off);
    int64_t nchunks = (total + CHUNK - 1) / CHUNK;
    if (nthreads < 1) nthreads = 1;
    /* Threads only for steps of over a million elements: a parallel region costs microseconds
     * on an idle machine but milliseconds on a loaded one, more than a small step itself. */
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nchunks > 64 && nthreads > 1)
    for (int64_t c = 0; c < nchunks; c++) {
        int64_t lo = c * CHUNK;
        int64_t hi = lo + CHUNK < total ? lo + CHUNK : total;
        int64_t t = tensor_at(n, off, lo);
        while (lo < hi && t < n) {
            int64_t end = off[t + 1] < hi ? off[t + 1] : hi;
            if (end > lo)
                fn(ptrs, n, t, lo - off[t], end - off[t], hp, step_of(steps, step_dtype, t));
            lo = end > lo ? end : lo;
            t++;
        }
    }
    free(off);
    return 0;
}

/* IEEE float16 <-> float32 in integer arithmetic, written as selects so loops using them
 * vectorise (GCC 12 vectorises no loop that converts through _Float16: one vcvtss2sh per
 * element). Both are bit-identical to torch's conversions (.to(torch.float16) on every float32
 * bit pattern, .float() on every float16 one): round to nearest even, subnormals kept, overflow
 * to ±inf, a NaN kept NaN with its sign and quiet bit set and the top of its payload. */
static inline __attribute__((always_inline)) float f16_to_f32(uint16_t h) {
    uint32_t em = (uint32_t)(h & 0x7FFFu) << 13, exp = em & 0x0F800000u;
    uint32_t u = em + 0x38000000u; /* normal: exponent rebiased 15 -> 127 */
    /* inf/NaN: exponent all ones; a NaN gets the quiet bit */
    uint32_t special = (em + 0x70000000u) | ((em & 0x7FE000u) ? 0x400000u : 0u);
    u = exp == 0x0F800000u ? special : u;
    /* zero/subnormal: man · 2^-24, as (2^-14 + man · 2^-24) − 2^-14, exact in float */
    uint32_t us = em + 0x38800000u, usub;
    float sub;
    memcpy(&sub, &us, sizeof sub);
    sub -= 6.103515625e-05f;
    memcpy(&usub, &sub, sizeof usub);
    u = exp == 0 ? usub : u;
    u |= (uint32_t)(h & 0x8000u) << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline __attribute__((always_inline)) uint16_t f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7FFFFFFFu;
    /* normal half: exponent rebiased 127 -> 15, the 13 dropped bits rounded to nearest even */
    uint32_t r = a - 0x38000000u;
    uint32_t normal = (r + 0xFFFu + ((r >> 13) & 1u)) >> 13;
    /* below 2^-14, a subnormal half (man · 2^-24): adding 0.5 rounds |f| to a multiple of
     * 2^-24, to nearest even, and leaves man in the low bits of the sum */
    float x, y;
    memcpy(&x, &a, sizeof x);
    y = x + 0.5f;
    uint32_t v;
    memcpy(&v, &y, sizeof v);
    uint32_t res = a < 0x38800000u ? v - 0x3F000000u : normal;
    res = a >= 0x477FF000u ? 0x7C00u : res;                          /* >= 65520: inf */
    res = a > 0x7F800000u ? 0x7E00u | ((a >> 13) & 0x3FFu) : res;   /* NaN */
    return (uint16_t)(sign | res);
}

/* ---- the rules, instantiated for one mode per library ----
 * Each mode is compiled into its own library (-DADAPTIM_MODE=0..7) on first use, so a model
 * waits for the one precision it needs to compile. A mode names the storage of the parameter
 * (and its gradient, same dtype) and of the state:
 *   mode  param     state        mode  param     state
 *   0     float64   float64      4     bfloat16  bfloat16
 *   1     float32   float32      5     float16   float32
 *   2     float32   bfloat16     6     float16   bfloat16
 *   3     bfloat16  float32      7     float16   float16
 * Arithmetic is in float64 for mode 0 and float32 for every other mode: a 16-bit parameter,
 * gradient or state element is widened to float32 when loaded (exact), the float32 rule runs on
 * it, and the new parameter and state are rounded once when stored (round to nearest even). */
#ifndef ADAPTIM_MODE
#error "compile with -DADAPTIM_MODE=0..7 (see kernels.c)"
#endif
#define PASTE_(a, b) a##b
#define PASTE(a, b) PASTE_(a, b)
/* storage kinds: the C type, the widening load and the rounding store */
#define STORAGE_F64 double
#define LOAD_F64(x) (x)
#define STORE_F64(x) (x)
#define STORAGE_F32 float
#define LOAD_F32(x) (x)
#define STORE_F32(x) (x)
#define STORAGE_BF16 uint16_t
#define LOAD_BF16(x) bf16_to_f32(x)
#define STORE_BF16(x) f32_to_bf16(x)
#define STORAGE_F16 uint16_t
#define LOAD_F16(x) f16_to_f32(x)
#define STORE_F16(x) f32_to_f16(x)
#if ADAPTIM_MODE == 0
#define P_KIND F64
#define S_KIND F64
#define MODE_SUFFIX f64
#elif ADAPTIM_MODE == 1
#define P_KIND F32
#define S_KIND F32
#define MODE_SUFFIX f32
#elif ADAPTIM_MODE == 2
#define P_KIND F32
#define S_KIND BF16
#define MODE_SUFFIX f32_bf16
#elif ADAPTIM_MODE == 3
#define P_KIND BF16
#define S_KIND F32
#define MODE_SUFFIX bf16_f32
#elif ADAPTIM_MODE == 4
#define P_KIND BF16
#define S_KIND BF16
#define MODE_SUFFIX bf16_bf16
#elif ADAPTIM_MODE == 5
#define P_KIND F16
#define S_KIND F32
#define MODE_SUFFIX f16_f32
#elif ADAPTIM_MODE == 6
#define P_KIND F16
#define S_KIND BF16
#define MODE_SUFFIX f16_bf16
#elif ADAPTIM_MODE == 7
#define P_KIND F16
#define S_KIND F16
#define MODE_SUFFIX f16_f16
#else
#error "ADAPTIM_MODE must be 0..7"
#endif
/* float16 with the CPU's F16C instructions: the integer conversions above cost more than the
 * rule's arithmetic (measured: a float16 Adam step took 2.5x a bfloat16 one), so the segment is
 * cut into blocks, each block's float16 operands converted to float32 by vcvtph2ps, the float32
 * rule run on the block, and the float16 results rounded back by vcvtps2ph (the same rounding,
 * bit for bit). RULE_P_KIND/RULE_S_KIND: the storage the rules themselves then see. */
#if (ADAPTIM_MODE >= 5) && defined(__F16C__) && defined(__AVX__) && !defined(ADAPTIM_NO_F16C)
#include <immintrin.h>
#define F16_BLOCKS 1
#define RULE_P_KIND F32
#if ADAPTIM_MODE == 6
#define RULE_S_KIND BF16
#else
#define RULE_S_KIND F32
#endif
#define SUFFIX PASTE(MODE_SUFFIX, _blocks)
#else
#define F16_BLOCKS 0
#define RULE_P_KIND P_KIND
#define RULE_S_KIND S_KIND
#define SUFFIX MODE_SUFFIX
#endif
#if ADAPTIM_MODE == 0
#define T double
#define SQRT sqrt
#define FMA fma
#else
#define T float
#define SQRT sqrtf
#define FMA fmaf
#endif
#define PT PASTE(STORAGE_, RULE_P_KIND)
#define ST PASTE(STORAGE_, RULE_S_KIND)
#define PLD(a, i) PASTE(LOAD_, RULE_P_KIND)((a)[i])
#define PSTR(a, i, v) ((a)[i] = PASTE(STORE_, RULE_P_KIND)(v))
#define LD(a, i) PASTE(LOAD_, RULE_S_KIND)((a)[i])
#define STR(a, i, v) ((a)[i] = PASTE(STORE_, RULE_S_KIND)(v))
#if ADAPTIM_MODE >= 2
/* 16-bit conversions (integer shifts and adds): 256-bit vectors convert 16 <-> 32-bit lanes
 * faster than 512-bit ones here (measured: 512-bit made the bf16 loops slower than the float32
 * ones). */
#pragma GCC push_options
#pragma GCC target("prefer-vector-width=256")
#endif
/* One precision per library, so the body is included once; its segment functions are
 * <rule>_seg_<SUFFIX>. */
#include "kernels_body.h"

#define SEG_(rule, s) rule##_seg_##s
#define SEG__(rule, s) SEG_(rule, s)

/* The element conversions of the parameter's storage (OUTER: the mode's own, whether or not
 * the rules see float32 blocks); exported for the tests. */
#define OUT_PT PASTE(STORAGE_, P_KIND)
#define OUT_ST PASTE(STORAGE_, S_KIND)
#define OUT_PLD(x) PASTE(LOAD_, P_KIND)(x)
#define OUT_PSTR(x) PASTE(STORE_, P_KIND)(x)
#define OUT_LD(x) PASTE(LOAD_, S_KIND)(x)
#define OUT_STR(x) PASTE(STORE_, S_KIND)(x)

#if F16_BLOCKS
#define F16_BLOCK 512
#define MAX_OPERANDS 5
/* operands of each rule (param, grad, state...) */
#define OPERANDS_sgd 3
#define OPERANDS_adagrad 3
#define OPERANDS_rmsprop 5
#define OPERANDS_adadelta 4
#define OPERANDS_adam 5

static inline void f16_block_load(const uint16_t *restrict src, float *restrict dst, int64_t m) {
    int64_t i = 0;
    for (; i + 8 <= m; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < m; i++) dst[i] = f16_to_f32(src[i]);
}

static inline void f16_block_store(const float *restrict src, uint16_t *restrict dst, int64_t m) {
    int64_t i = 0;
    for (; i + 8 <= m; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < m; i++) dst[i] = f32_to_f16(src[i]);
}

/* Elements [b, e) of tensor t, block by block: float16 operands (parameter, gradient and, in
 * mode 7, the state) widened into float32 buffers, ``rule`` (the float32-storage segment) run
 * on the block, the parameter and float16 state rounded back. */
static void f16_blocks(segment_fn rule, int k, void **ptrs, int64_t n, int64_t t, int64_t b,
                       int64_t e, const double *hp, double step) {
    float buf[MAX_OPERANDS][F16_BLOCK] __attribute__((aligned(64)));
    void *block[MAX_OPERANDS];
    const int f16_state = ADAPTIM_MODE == 7;
    for (int64_t lo = b; lo < e; lo += F16_BLOCK) {
        const int64_t m = e - lo < F16_BLOCK ? e - lo : F16_BLOCK;
        for (int j = 0; j < k; j++) {
            void *src = ptrs[(int64_t)j * n + t];
            if (!src) {
                block[j] = NULL;
            } else if (j < 2 || f16_state) {
                f16_block_load((const uint16_t *)src + lo, buf[j], m);
                block[j] = buf[j];
            } else {
                block[j] = (ST *)src + lo;
            }
        }
        rule(block, 1, 0, 0, m, hp, step);
        for (int j = 0; j < k; j++) {
            void *dst = ptrs[(int64_t)j * n + t];
            if (dst && (j == 0 || (j >= 2 && f16_state)))
                f16_block_store(buf[j], (uint16_t *)dst + lo, m);
        }
    }
}

#define BLOCKED(rule)                                                                     \
    static void SEG__(rule, MODE_SUFFIX)(void **ptrs, int64_t n, int64_t t, int64_t b,    \
                                         int64_t e, const double *hp, double step) {      \
        f16_blocks(SEG__(rule, SUFFIX), PASTE(OPERANDS_, rule), ptrs, n, t, b, e, hp, step);\
    }
ADAPTIM_RULES(BLOCKED)
#undef BLOCKED

/* adaptim_store_param / adaptim_load_param (and _state): the conversions the rules' stores and
 * loads make, over n elements; adaptim_store_elements / adaptim_load_elements: the element-wise
 * ones (tails shorter than a vector, and CPUs without F16C). For the tests. */
void adaptim_store_param(int64_t n, const float *src, uint16_t *dst) {
    f16_block_store(src, dst, n);
}
void adaptim_load_param(int64_t n, const uint16_t *src, float *dst) {
    f16_block_load(src, dst, n);
}
#if ADAPTIM_MODE == 7
void adaptim_store_state(int64_t n, const float *src, uint16_t *dst) {
    f16_block_store(src, dst, n);
}
void adaptim_load_state(int64_t n, const uint16_t *src, float *dst) {
    f16_block_load(src, dst, n);
}
#endif
#else
void adaptim_store_param(int64_t n, const T *restrict src, OUT_PT *restrict dst) {
    for (int64_t i = 0; i < n; i++) dst[i] = OUT_PSTR(src[i]);
}
void adaptim_load_param(int64_t n, const OUT_PT *restrict src, T *restrict dst) {
    for (int64_t i = 0; i < n; i++) dst[i] = OUT_PLD(src[i]);
}
#endif
#if !F16_BLOCKS || ADAPTIM_MODE != 7
void adaptim_store_state(int64_t n, const T *restrict src, OUT_ST *restrict dst) {
    for (int64_t i = 0; i < n; i++) dst[i] = OUT_STR(src[i]);
}
void adaptim_load_state(int64_t n, const OUT_ST *restrict src, T *restrict dst) {
    for (int64_t i = 0; i < n; i++) dst[i] = OUT_LD(src[i]);
}
#endif
void adaptim_store_elements(int64_t n, const T *restrict src, OUT_PT *restrict dst) {
    for (int64_t i = 0; i < n; i++) dst[i] = OUT_PSTR(src[i]);
}
void adaptim_load_elements(int64_t n, const OUT_PT *restrict src, T *restrict dst) {
    for (int64_t i = 0; i < n; i++) dst[i] = OUT_PLD(src[i]);
}
#if ADAPTIM_MODE >= 2
#pragma GCC pop_options
#endif

#define SEG(rule) SEG__(rule, MODE_SUFFIX)

/* adaptim_<rule>(mode, n, ptrs, sizes, steps, step_dtype, hp, nthreads): steps is NULL (SGD)
 * or n pointers to the step tensors (step_dtype 1: float32, 2: float64). Returns 0 on success,
 * -2 if this library was not built for ``mode``. */
#define EXPORT(rule)                                                                        \
    int adaptim_##rule(int mode, int64_t n, void **ptrs, const int64_t *sizes, void **steps,\
                       int step_dtype, const double *hp, int nthreads) {                    \
        if (mode != ADAPTIM_MODE) return -2;                                                \
        return for_all_segments(SEG(rule), ptrs, n, sizes, steps, step_dtype, hp, nthreads);\
    }

ADAPTIM_RULES(EXPORT)

int adaptim_abi_version(void) { return 3; }
int adaptim_mode(void) { return ADAPTIM_MODE; }
