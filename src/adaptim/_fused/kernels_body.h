/* The update rules for one mode; included by kernels.c with T (arithmetic type), PT (parameter
 * and gradient storage type), ST (state storage type), PLD/PSTR (parameter and gradient
 * load/store), LD/STR (state load/store), SQRT, FMA and SUFFIX defined.
 *
 * Parameter, gradient and state are loaded (widened to T), updated in T and stored once (a
 * 16-bit parameter or state is rounded once per step; the step itself uses the unrounded T
 * values). Each segment function updates elements [b, e) of tensor t.
 * Every option is a compile-time flag of an always-inlined loop, and the segment function
 * switches over the flag combinations, so each loop the compiler sees is branch-free and
 * vectorises. Hyperparameters are read by name, hp[ADAM_LR], from hp_fields.h: the fields each
 * spec in adaptim/algorithms/ declares (hp_fields) and builds (hyperparameters()).
 *
 * torch's addcmul (self + s·t1·t2) is compiled to fma(s·t1, t2, self) in torch 2.13's CPU
 * kernels, and add(alpha) and lerp use fmadd; the rules write those FMAs explicitly.
 *
 * Common gradient preparation, mirroring the unfused path: g ← ±(grad · grad_scale) [+ λ θ].
 * Fields GRAD_SCALE = ±grad_scale (negative when maximize), WEIGHT_DECAY = λ and
 * HAS_WEIGHT_DECAY = (λ ≠ 0) come first in every rule. */
#include "hp_fields.h"

#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SUFFIX)
#define OPERAND(type, j) ((type *)ptrs[(j) * n + t] + b)
#define INLINE static inline __attribute__((always_inline))

#define PREPARE_GRAD(g, p, G, i) \
    T g = PLD(G, i) * gs;        \
    if (has_wd) g = FMA(wd, p, g);

/* SGD: ptrs P, G, BUF. hp: the SGD_* fields (init_buffer: first step, v ← g). */
INLINE void FN(sgd_loop)(PT *restrict P, const PT *restrict G, ST *restrict BUF, int64_t e,
                         const double *hp, const int has_wd, const int has_mom,
                         const int nesterov, const int init) {
    const T gs = (T)hp[SGD_GRAD_SCALE], wd = (T)hp[SGD_WEIGHT_DECAY],
            neg_lr = (T)hp[SGD_NEG_LR], mom = (T)hp[SGD_MOMENTUM],
            damp1 = (T)hp[SGD_ONE_MINUS_DAMPENING];
    for (int64_t i = 0; i < e; i++) {
        const T p = PLD(P, i);
        PREPARE_GRAD(g, p, G, i)
        T d = g;
        if (has_mom) {
            T v = init ? g : FMA(damp1, g, LD(BUF, i) * mom);
            STR(BUF, i, v);
            d = nesterov ? FMA(mom, v, g) : v;
        }
        PSTR(P, i, FMA(neg_lr, d, p));
    }
}

static void FN(sgd_seg)(void **ptrs, int64_t n, int64_t t, int64_t b, int64_t e, const double *hp,
                         double step) {
    PT *P = OPERAND(PT, 0);
    const PT *G = OPERAND(const PT, 1);
    ST *BUF = OPERAND(ST, 2);
    const int flags = (hp[SGD_HAS_WEIGHT_DECAY] != 0) | (hp[SGD_HAS_MOMENTUM] != 0) << 1
                    | (hp[SGD_NESTEROV] != 0) << 2 | (hp[SGD_INIT_BUFFER] != 0) << 3;
    e -= b;
#define C(f) case f: FN(sgd_loop)(P, G, BUF, e, hp, (f) & 1, (f) >> 1 & 1, (f) >> 2 & 1, (f) >> 3 & 1); break;
    switch (flags) { C(0) C(1) C(2) C(3) C(4) C(5) C(6) C(7) C(8) C(9) C(10) C(11) C(12) C(13) C(14) C(15) }
#undef C
}

/* AdaGrad: ptrs P, G, SUM. hp: the ADAGRAD_* fields.
 * η_t = η / (1 + (t − 1) · lr_decay), in double as adaptim.functional.adagrad computes it. */
INLINE void FN(adagrad_loop)(PT *restrict P, const PT *restrict G, ST *restrict SUM, int64_t e,
                             const double *hp, double step, const int has_wd,
                             const int eps_in_sqrt) {
    const double clr = hp[ADAGRAD_LR] / (1 + (step - 1) * hp[ADAGRAD_LR_DECAY]);
    const T gs = (T)hp[ADAGRAD_GRAD_SCALE], wd = (T)hp[ADAGRAD_WEIGHT_DECAY],
            neg_clr = (T)(-clr), eps = (T)hp[ADAGRAD_EPS];
    for (int64_t i = 0; i < e; i++) {
        const T p = PLD(P, i);
        PREPARE_GRAD(g, p, G, i)
        T s = FMA(g, g, LD(SUM, i));
        STR(SUM, i, s);
        T std = eps_in_sqrt ? SQRT(s + eps) : SQRT(s) + eps;
        PSTR(P, i, p + (neg_clr * g) / std);
    }
}

static void FN(adagrad_seg)(void **ptrs, int64_t n, int64_t t, int64_t b, int64_t e,
                            const double *hp, double step) {
    PT *P = OPERAND(PT, 0);
    const PT *G = OPERAND(const PT, 1);
    ST *SUM = OPERAND(ST, 2);
    const int flags = (hp[ADAGRAD_HAS_WEIGHT_DECAY] != 0) | (hp[ADAGRAD_EPS_IN_SQRT] != 0) << 1;
    e -= b;
#define C(f) case f: FN(adagrad_loop)(P, G, SUM, e, hp, step, (f) & 1, (f) >> 1 & 1); break;
    switch (flags) { C(0) C(1) C(2) C(3) }
#undef C
}

/* RMSProp: ptrs P, G, SQUARE_AVG, GRAD_AVG, MOMENTUM_BUFFER. hp: the RMSPROP_* fields. */
INLINE void FN(rmsprop_loop)(PT *restrict P, const PT *restrict G, ST *restrict SQ,
                             ST *restrict GA, ST *restrict MB, int64_t e, const double *hp,
                             const int has_wd, const int eps_in_sqrt, const int centered,
                             const int has_mom, const int lr_in_mom) {
    const T gs = (T)hp[RMSPROP_GRAD_SCALE], wd = (T)hp[RMSPROP_WEIGHT_DECAY],
            alpha = (T)hp[RMSPROP_ALPHA], w = (T)hp[RMSPROP_ONE_MINUS_ALPHA],
            eps = (T)hp[RMSPROP_EPS], mom = (T)hp[RMSPROP_MOMENTUM], lr = (T)hp[RMSPROP_LR],
            neg_lr = (T)hp[RMSPROP_NEG_LR];
    /* torch.lerp: start + w·(end − start) if |w| < 0.5 else end + (w − 1)·(end − start) */
    const int small = fabs((double)w) < 0.5;
    const T coeff = small ? w : w - (T)1;
    for (int64_t i = 0; i < e; i++) {
        const T p = PLD(P, i);
        PREPARE_GRAD(g, p, G, i)
        T sq = FMA(w * g, g, LD(SQ, i) * alpha);
        STR(SQ, i, sq);
        T s = sq;
        if (centered) {
            T ga = LD(GA, i);
            ga = FMA(coeff, g - ga, small ? ga : g);
            STR(GA, i, ga);
            s = FMA(-ga, ga, sq);
            s = s < (T)0 ? (T)0 : s; /* rounding can make E[g²] − E[g]² < 0; NaN passes */
        }
        T avg = eps_in_sqrt ? SQRT(s + eps) : SQRT(s) + eps;
        if (has_mom) {
            T mb = LD(MB, i) * mom;
            if (lr_in_mom) {
                mb = mb + (lr * g) / avg;
                STR(MB, i, mb);
                PSTR(P, i, p - mb);
            } else {
                mb = mb + g / avg;
                STR(MB, i, mb);
                PSTR(P, i, FMA(neg_lr, mb, p));
            }
        } else {
            PSTR(P, i, p + (neg_lr * g) / avg);
        }
    }
}

static void FN(rmsprop_seg)(void **ptrs, int64_t n, int64_t t, int64_t b, int64_t e,
                            const double *hp, double step) {
    PT *P = OPERAND(PT, 0);
    const PT *G = OPERAND(const PT, 1);
    ST *SQ = OPERAND(ST, 2);
    ST *GA = OPERAND(ST, 3);
    ST *MB = OPERAND(ST, 4);
    const int flags = (hp[RMSPROP_HAS_WEIGHT_DECAY] != 0) | (hp[RMSPROP_EPS_IN_SQRT] != 0) << 1
                    | (hp[RMSPROP_CENTERED] != 0) << 2 | (hp[RMSPROP_HAS_MOMENTUM] != 0) << 3
                    | (hp[RMSPROP_LR_IN_MOMENTUM] != 0) << 4;
    e -= b;
#define C(f) case f: FN(rmsprop_loop)(P, G, SQ, GA, MB, e, hp, (f) & 1, (f) >> 1 & 1, (f) >> 2 & 1, (f) >> 3 & 1, (f) >> 4 & 1); break;
    switch (flags) {
        C(0) C(1) C(2) C(3) C(4) C(5) C(6) C(7) C(8) C(9) C(10) C(11) C(12) C(13) C(14) C(15)
        C(16) C(17) C(18) C(19) C(20) C(21) C(22) C(23) C(24) C(25) C(26) C(27) C(28) C(29)
        C(30) C(31)
    }
#undef C
}

/* AdaDelta: ptrs P, G, SQUARE_AVG, ACC_DELTA. hp: the ADADELTA_* fields. */
INLINE void FN(adadelta_loop)(PT *restrict P, const PT *restrict G, ST *restrict SQ,
                              ST *restrict AD, int64_t e, const double *hp, const int has_wd) {
    const T gs = (T)hp[ADADELTA_GRAD_SCALE], wd = (T)hp[ADADELTA_WEIGHT_DECAY],
            rho = (T)hp[ADADELTA_RHO], w = (T)hp[ADADELTA_ONE_MINUS_RHO],
            eps = (T)hp[ADADELTA_EPS], neg_lr = (T)hp[ADADELTA_NEG_LR];
    for (int64_t i = 0; i < e; i++) {
        const T p = PLD(P, i);
        PREPARE_GRAD(g, p, G, i)
        T sq = FMA(w * g, g, LD(SQ, i) * rho);
        STR(SQ, i, sq);
        T std = SQRT(sq + eps);
        T ad = LD(AD, i);
        T delta = (SQRT(ad + eps) / std) * g;
        ad = FMA(w * delta, delta, ad * rho);
        STR(AD, i, ad);
        PSTR(P, i, FMA(neg_lr, delta, p));
    }
}

static void FN(adadelta_seg)(void **ptrs, int64_t n, int64_t t, int64_t b, int64_t e,
                             const double *hp, double step) {
    PT *P = OPERAND(PT, 0);
    const PT *G = OPERAND(const PT, 1);
    ST *SQ = OPERAND(ST, 2);
    ST *AD = OPERAND(ST, 3);
    e -= b;
    if (hp[ADADELTA_HAS_WEIGHT_DECAY] != 0) FN(adadelta_loop)(P, G, SQ, AD, e, hp, 1);
    else FN(adadelta_loop)(P, G, SQ, AD, e, hp, 0);
}

/* Adam/AdamW/AMSGrad: ptrs P, G, EXP_AVG, EXP_AVG_SQ, MAX_EXP_AVG_SQ. hp: the ADAM_* fields
 * (eps_form: 0 torch, 1 eps_in_sqrt, 2 eps_hat). The bias corrections b1 = 1 − β₁ᵗ,
 * b2 = 1 − β₂ᵗ and the step size are computed in double from this tensor's step exactly as
 * adaptim.functional.adam does (libm pow and sqrt, as Python's ** and math.sqrt). */
INLINE void FN(adam_loop)(PT *restrict P, const PT *restrict G, ST *restrict M, ST *restrict V,
                          ST *restrict VMAX, int64_t e, const double *hp, double step,
                          const int has_wd, const int decay_param, const int amsgrad,
                          const int eps_form) {
    double b1 = 1.0, b2 = 1.0;
    if (hp[ADAM_BIAS_CORRECTION] != 0) bias_corrections(hp[ADAM_BETA1], hp[ADAM_BETA2], step, &b1, &b2);
    const double step_size = eps_form == 2 ? hp[ADAM_LR] * sqrt(b2) / b1 : hp[ADAM_LR] / b1;
    const T gs = (T)hp[ADAM_GRAD_SCALE], wd = (T)hp[ADAM_WEIGHT_DECAY],
            decay = (T)hp[ADAM_DECAY_FACTOR], w = (T)hp[ADAM_ONE_MINUS_BETA1],
            beta2 = (T)hp[ADAM_BETA2], w2 = (T)hp[ADAM_ONE_MINUS_BETA2], eps = (T)hp[ADAM_EPS],
            bc2 = (T)b2, sqrt_bc2 = (T)sqrt(b2), neg_step = (T)(-step_size);
    const int small = fabs((double)w) < 0.5;
    const T coeff = small ? w : w - (T)1;
    for (int64_t i = 0; i < e; i++) {
        T p = PLD(P, i);
        if (decay_param) p = p * decay;
        PREPARE_GRAD(g, p, G, i)
        T m = LD(M, i);
        m = FMA(coeff, g - m, small ? m : g);
        STR(M, i, m);
        T v = FMA(w2 * g, g, LD(V, i) * beta2);
        STR(V, i, v);
        if (amsgrad) {
            T vm = LD(VMAX, i);
            vm = MAXIMUM(vm, v);
            STR(VMAX, i, vm);
            v = vm;
        }
        T denom = eps_form == 0 ? SQRT(v) / sqrt_bc2 + eps
                : eps_form == 1 ? SQRT(v / bc2 + eps)
                : SQRT(v) + eps;
        PSTR(P, i, p + (neg_step * m) / denom);
    }
}

static void FN(adam_seg)(void **ptrs, int64_t n, int64_t t, int64_t b, int64_t e,
                         const double *hp, double step) {
    PT *P = OPERAND(PT, 0);
    const PT *G = OPERAND(const PT, 1);
    ST *M = OPERAND(ST, 2);
    ST *V = OPERAND(ST, 3);
    ST *VMAX = OPERAND(ST, 4);
    const int decoupled = hp[ADAM_DECOUPLED] != 0, wd = hp[ADAM_HAS_WEIGHT_DECAY] != 0;
    const int flags = (wd && !decoupled) | (wd && decoupled) << 1 | (hp[ADAM_AMSGRAD] != 0) << 2
                    | ((int)hp[ADAM_EPS_FORM] & 3) << 3;
    e -= b;
#define C(f) case f: FN(adam_loop)(P, G, M, V, VMAX, e, hp, step, (f) & 1, (f) >> 1 & 1, (f) >> 2 & 1, (f) >> 3); break;
    switch (flags) {
        C(0) C(1) C(2) C(4) C(5) C(6) C(8) C(9) C(10) C(12) C(13) C(14) C(16) C(17) C(18)
        C(20) C(21) C(22)
    }
#undef C
}

#undef CAT_
#undef CAT
#undef FN
#undef OPERAND
#undef INLINE
#undef PREPARE_GRAD
