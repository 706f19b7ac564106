/* adaptim fused optimizer steps: plain C (no torch headers), OpenMP, one call per parameter
 * group and step.
 *
 * Each exported function receives, for n tensors, k arrays of data pointers (ptrs[j*n + t] is
 * the j-th operand of tensor t: param, grad, then the state tensors), their element counts and
 * the hyperparameters as C doubles (so nothing is ever recompiled when lr changes). The element
 * range of all tensors together is cut into fixed chunks shared out among threads, so 5,000
 * small tensors cost what one large tensor of the same size costs.
 *
 * The arithmetic mirrors adaptim.functional operation by operation, in the parameter's precision
 * (scalars rounded to it first, as torch does), with fma() exactly where torch's vectorised CPU
 * kernels use fmadd or are compiled to one (add with alpha, lerp, addcmul). Built with
 * -ffp-contract=off and without -ffast-math so the compiler adds no other contraction or
 * reassociation. Each call also increments every tensor's step (state["step"] += 1) and
 * computes the step-dependent scalars (bias corrections, lr decay) per tensor from it.
 *
 * Modes (the storage of param/grad and of the state):
 *   0: double / double    1: float / float    2: float / bfloat16 (arithmetic in float)
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 16384

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = ((uint32_t)h) << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Round to nearest even, NaN kept NaN: what c10::BFloat16(float) does. */
static inline uint16_t f32_to_bf16(float f) {
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

/* ---- the rules, instantiated for one mode per library ----
 * Each mode is compiled into its own library (-DADAPTIM_MODE=0|1|2) on first use, so a float32
 * model waits for one third of the code to compile. */
#ifndef ADAPTIM_MODE
#error "compile with -DADAPTIM_MODE=0 (float64), 1 (float32) or 2 (float32 + bfloat16 state)"
#endif
#if ADAPTIM_MODE == 0
#define SUFFIX f64
#define SQRT sqrt
#define FMA fma
#define T double
#define ST double
#define LD(a, i) ((a)[i])
#define STR(a, i, v) ((a)[i] = (v))
#elif ADAPTIM_MODE == 1
#define SUFFIX f32
#define SQRT sqrtf
#define FMA fmaf
#define T float
#define ST float
#define LD(a, i) ((a)[i])
#define STR(a, i, v) ((a)[i] = (v))
#elif ADAPTIM_MODE == 2
/* bfloat16 state: 256-bit vectors convert 16 <-> 32-bit lanes faster than 512-bit ones here
 * (measured: 512-bit made the bf16 loops slower than the float32 ones). */
#pragma GCC push_options
#pragma GCC target("prefer-vector-width=256")
#define SUFFIX f32_bf16
#define SQRT sqrtf
#define FMA fmaf
#define T float
#define ST uint16_t
#define LD(a, i) bf16_to_f32((a)[i])
#define STR(a, i, v) ((a)[i] = f32_to_bf16(v))
#endif
/* One precision per library, so the body is included once. */
#include "kernels_body.h"
#if ADAPTIM_MODE == 2
#pragma GCC pop_options
#endif

/* adaptim_<rule>(mode, n, ptrs, sizes, steps, step_dtype, hp, nthreads): steps is NULL (SGD)
 * or n pointers to the step tensors (step_dtype 1: float32, 2: float64). Returns 0 on success. */
#if ADAPTIM_MODE == 0
#define SEG(rule) rule##_seg_f64
#elif ADAPTIM_MODE == 1
#define SEG(rule) rule##_seg_f32
#else
#define SEG(rule) rule##_seg_f32_bf16
#endif

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

int adaptim_abi_version(void) { return 2; }
int adaptim_mode(void) { return ADAPTIM_MODE; }
