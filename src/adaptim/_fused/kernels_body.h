/* The update rules for one mode; included by kernels.c with T (arithmetic and param type), ST
 * (state storage type), LD/STR (state load/store), SQRT, FMA and SUFFIX defined.
 *
 * State is loaded, updated in T and stored once (bf16: rounded once per step; the step itself
 * uses the unrounded T values). Each segment function updates elements [b, e) of tensor t.
 * Every option is a compile-time flag of an always-inlined loop, and the segment function
 * switches over the flag combinations, so each loop the compiler sees is branch-free and
 * vectorises. Hyperparameter layouts (hp[i]) are written next to each rule and built by
 * adaptim/_fused/__init__.py.
 *
 * torch's addcmul (self + s·t1·t2) is compiled to fma(s·t1, t2, self) in torch 2.13's CPU
 * kernels, and add(alpha) and lerp use fmadd; the rules write those FMAs explicitly.
 *
 * Common gradient preparation, mirroring the unfused path: g ← ±(grad · grad_scale) [+ λ θ].
 * hp[0] = ±grad_scale (negative when maximize), hp[1] = λ, hp[2] = (λ ≠ 0). */
#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SUFFIX)
#define OPERAND(type, j) ((type *)ptrs[(j) * n + t] + b)
#define INLINE static inline __attribute__((always_inline))

#define PREPARE_GRAD(g, P, G, i) \
    T g = G[i] * gs;             \
    if (has_wd) g = FMA(wd, P[i], g);

/* SGD: ptrs P, G, BUF. hp: [gs, wd, has_wd, -lr, momentum, has_momentum, 1-dampening, nesterov,
 * init_buffer (first step: v ← g)]. */
INLINE void FN(sgd_loop)(T *restrict P, const T *restrict G, ST *restrict BUF, int64_t e,
                         const double *hp, const int has_wd, const int has_mom,
                         const int nesterov, const int init) {
    const T gs = (T)hp[0], wd = (T)hp[1], neg_lr = (T)hp[3], mom = (T)hp[4], damp1 = (T)hp[6];
    for (int64_t i = 0; i < e; i++) {
        PREPARE_GRAD(g, P, G, i)
        T d = g;
        if (has_mom) {
            T v = init ? g : FMA(damp1, g, LD(BUF, i) * mom);
            STR(BUF, i, v);
            d = nesterov ? FMA(mom, v, g) : v;
        }
        P[i] = FMA(neg_lr, d, P[i]);
    }
}

static void FN(sgd_seg)(void **ptrs, int64_t n, int64_t t, int64_t b, int64_t e, const double *hp,
                         double step) {
    T *P = OPERAND(T, 0);
    const T *G = OPERAND(const T, 1);
    ST *BUF = OPERAND(ST, 2);
    const int flags = (hp[2] != 0) | (hp[5] != 0) << 1 | (hp[7] != 0) << 2 | (hp[8] != 0) << 3;
    e -= b;
#define C(f) case f: FN(sgd_loop)(P, G, BUF, e, hp, (f) & 1, (f) >> 1 & 1, (f) >> 2 & 1, (f) >> 3 & 1); break;
    switch (flags) { C(0) C(1) C(2) C(3) C(4) C(5) C(6) C(7) C(8) C(9) C(10) C(11) C(12) C(13) C(14) C(15) }
#undef C
}

/* AdaGrad: ptrs P, G, SUM. hp: [gs, wd, has_wd, lr, lr_decay, eps, eps_in_sqrt].
 * η_t = η / (1 + (t − 1) · lr_decay), in double as adaptim.functional.adagrad computes it. */
INLINE void FN(adagrad_loop)(T *restrict P, const T *restrict G, ST *restrict SUM, int64_t e,
                             const double *hp, double step, const int has_wd,
                             const int eps_in_sqrt) {
    const double clr = hp[3] / (1 + (step - 1) * hp[4]);
    const T gs = (T)hp[0], wd = (T)hp[1], neg_clr = (T)(-clr), eps = (T)hp[5];
    for (int64_t i = 0; i < e; i++) {
        PREPARE_GRAD(g, P, G, i)
        T s = FMA(g, g, LD(SUM, i));
        STR(SUM, i, s);
        T std = eps_in_sqrt ? SQRT(s + eps) : SQRT(s) + eps;
        P[i] = P[i] + (neg_clr * g) / std;
    }
}

static void FN(adagrad_seg)(void **ptrs, int64_t n, int64_t t, int64_t b, int64_t e,
                            const double *hp, double step) {
    T *P = OPERAND(T, 0);
    const T *G = OPERAND(const T, 1);
    ST *SUM = OPERAND(ST, 2);
    const int flags = (hp[2] != 0) | (hp[6] != 0) << 1;
    e -= b;
#define C(f) case f: FN(adagrad_loop)(P, G, SUM, e, hp, step, (f) & 1, (f) >> 1 & 1); break;
    switch (flags) { C(0) C(1) C(2) C(3) }
#undef C
}

/* RMSProp: ptrs P, G, SQUARE_AVG, GRAD_AVG, MOMENTUM_BUFFER. hp: [gs, wd, has_wd, alpha,
 * 1-alpha, eps, eps_in_sqrt, centered, momentum, has_momentum, lr_in_momentum, lr, -lr]. */
INLINE void FN(rmsprop_loop)(T *restrict P, const T *restrict G, ST *restrict SQ,
                             ST *restrict GA, ST *restrict MB, int64_t e, const double *hp,
                             const int has_wd, const int eps_in_sqrt, const int centered,
                             const int has_mom, const int lr_in_mom) {
    const T gs = (T)hp[0], wd = (T)hp[1], alpha = (T)hp[3], w = (T)hp[4], eps = (T)hp[5],
            mom = (T)hp[8], lr = (T)hp[11], neg_lr = (T)hp[12];
    /* torch.lerp: start + w·(end − start) if |w| < 0.5 else end + (w − 1)·(end − start) */
    const int small = fabs((double)w) < 0.5;
    const T coeff = small ? w : w - (T)1;
    for (int64_t i = 0; i < e; i++) {
        PREPARE_GRAD(g, P, G, i)
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
                P[i] = P[i] - mb;
            } else {
                mb = mb + g / avg;
                STR(MB, i, mb);
                P[i] = FMA(neg_lr, mb, P[i]);
            }
        } else {
            P[i] = P[i] + (neg_lr * g) / avg;
        }
    }
}

static void FN(rmsprop_seg)(void **ptrs, int64_t n, int64_t t, int64_t b, int64_t e,
                            const double *hp, double step) {
    T *P = OPERAND(T, 0);
    const T *G = OPERAND(const T, 1);
    ST *SQ = OPERAND(ST, 2);
    ST *GA = OPERAND(ST, 3);
    ST *MB = OPERAND(ST, 4);
    const int flags = (hp[2] != 0) | (hp[6] != 0) << 1 | (hp[7] != 0) << 2 | (hp[9] != 0) << 3
                    | (hp[10] != 0) << 4;
    e -= b;
#define C(f) case f: FN(rmsprop_loop)(P, G, SQ, GA, MB, e, hp, (f) & 1, (f) >> 1 & 1, (f) >> 2 & 1, (f) >> 3 & 1, (f) >> 4 & 1); break;
    switch (flags) {
        C(0) C(1) C(2) C(3) C(4) C(5) C(6) C(7) C(8) C(9) C(10) C(11) C(12) C(13) C(14) C(15)
        C(16) C(17) C(18) C(19) C(20) C(21) C(22) C(23) C(24) C(25) C(26) C(27) C(28) C(29)
        C(30) C(31)
    }
#undef C
}

/* AdaDelta: ptrs P, G, SQUARE_AVG, ACC_DELTA. hp: [gs, wd, has_wd, rho, 1-rho, eps, -lr]. */
INLINE void FN(adadelta_loop)(T *restrict P, const T *restrict G, ST *restrict SQ,
                              ST *restrict AD, int64_t e, const double *hp, const int has_wd) {
    const T gs = (T)hp[0], wd = (T)hp[1], rho = (T)hp[3], w = (T)hp[4], eps = (T)hp[5],
            neg_lr = (T)hp[6];
    for (int64_t i = 0; i < e; i++) {
        PREPARE_GRAD(g, P, G, i)
        T sq = FMA(w * g, g, LD(SQ, i) * rho);
        STR(SQ, i, sq);
        T std = SQRT(sq + eps);
        T ad = LD(AD, i);
        T delta = (SQRT(ad + eps) / std) * g;
        ad = FMA(w * delta, delta, ad * rho);
        STR(AD, i, ad);
        P[i] = FMA(neg_lr, delta, P[i]);
    }
}

static void FN(adadelta_seg)(void **ptrs, int64_t n, int64_t t, int64_t b, int64_t e,
                             const double *hp, double step) {
    T *P = OPERAND(T, 0);
    const T *G = OPERAND(const T, 1);
    ST *SQ = OPERAND(ST, 2);
    ST *AD = OPERAND(ST, 3);
    e -= b;
    if (hp[2] != 0) FN(adadelta_loop)(P, G, SQ, AD, e, hp, 1);
    else FN(adadelta_loop)(P, G, SQ, AD, e, hp, 0);
}

/* Adam/AdamW/AMSGrad: ptrs P, G, EXP_AVG, EXP_AVG_SQ, MAX_EXP_AVG_SQ. hp: [gs, wd, has_wd,
 * decoupled, 1-lr·wd, 1-beta1, beta2, 1-beta2, amsgrad, eps_form (0 torch, 1 eps_in_sqrt,
 * 2 eps_hat), eps, lr, beta1, bias_correction]. The bias corrections b1 = 1 − β₁ᵗ,
 * b2 = 1 − β₂ᵗ and the step size are computed in double from this tensor's step exactly as
 * adaptim.functional.adam does (libm pow and sqrt, as Python's ** and math.sqrt). */
INLINE void FN(adam_loop)(T *restrict P, const T *restrict G, ST *restrict M, ST *restrict V,
                          ST *restrict VMAX, int64_t e, const double *hp, double step,
                          const int has_wd, const int decay_param, const int amsgrad,
                          const int eps_form) {
    double b1 = 1.0, b2 = 1.0;
    if (hp[13] != 0) {
        b1 = 1 - pow(hp[12], step);
        b2 = 1 - pow(hp[6], step);
    }
    const double step_size = eps_form == 2 ? hp[11] * sqrt(b2) / b1 : hp[11] / b1;
    const T gs = (T)hp[0], wd = (T)hp[1], decay = (T)hp[4], w = (T)hp[5], beta2 = (T)hp[6],
            w2 = (T)hp[7], eps = (T)hp[10], bc2 = (T)b2, sqrt_bc2 = (T)sqrt(b2),
            neg_step = (T)(-step_size);
    const int small = fabs((double)w) < 0.5;
    const T coeff = small ? w : w - (T)1;
    for (int64_t i = 0; i < e; i++) {
        if (decay_param) P[i] = P[i] * decay;
        PREPARE_GRAD(g, P, G, i)
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
        P[i] = P[i] + (neg_step * m) / denom;
    }
}

static void FN(adam_seg)(void **ptrs, int64_t n, int64_t t, int64_t b, int64_t e,
                         const double *hp, double step) {
    T *P = OPERAND(T, 0);
    const T *G = OPERAND(const T, 1);
    ST *M = OPERAND(ST, 2);
    ST *V = OPERAND(ST, 3);
    ST *VMAX = OPERAND(ST, 4);
    const int decoupled = hp[3] != 0, wd = hp[2] != 0;
    const int flags = (wd && !decoupled) | (wd && decoupled) << 1 | (hp[8] != 0) << 2
                    | ((int)hp[9] & 3) << 3;
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
