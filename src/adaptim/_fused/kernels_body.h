/* The update rules for one mode; included by kernels.c with T (arithmetic and param type), ST
 * (state storage type), LD/STR (state load/store), SQRT, FMA and SUFFIX defined.
 * State is loaded, updated in T and stored once (bf16: rounded once per step; the step itself
 * uses the unrounded T values). Each segment function updates elements [b, e) of tensor t. Hyperparameter layouts (hp[i]) are
 * written next to each rule and built by adaptim/_fused/_ckernel.py. */
#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SUFFIX)
#define OPERAND(type, j) ((type *)ptrs[(j) * n + t] + b)

/* torch's addcmul (self + s·t1·t2) is compiled to fma(s·t1, t2, self) in torch 2.13's CPU
 * kernels; the rules below write that FMA explicitly so results match bit for bit.
 *
 * Common gradient preparation, mirroring the unfused path: g ← ±(grad · grad_scale) [+ λ θ].
 * hp[0] = ±grad_scale (negative when maximize), hp[1] = λ, hp[2] = (λ ≠ 0). */
#define PREPARE_GRAD(g, P, G, i) \
    T g = G[i] * gs;             \
    if (has_wd) g = FMA(wd, P[i], g);

/* SGD: ptrs P, G, BUF. hp: [gs, wd, has_wd, -lr, momentum, has_momentum, 1-dampening, nesterov,
 * init_buffer (first step: v ← g)]. */
static void FN(sgd_seg)(void **ptrs, int64_t n, int64_t t, int64_t b, int64_t e, const double *hp) {
    T *restrict P = OPERAND(T, 0);
    const T *restrict G = OPERAND(const T, 1);
    ST *restrict BUF = OPERAND(ST, 2);
    const T gs = (T)hp[0], wd = (T)hp[1], neg_lr = (T)hp[3], mom = (T)hp[4], damp1 = (T)hp[6];
    const int has_wd = hp[2] != 0, has_mom = hp[5] != 0, nesterov = hp[7] != 0,
              init = hp[8] != 0;
    e -= b;
    if (!has_mom) {
        for (int64_t i = 0; i < e; i++) {
            PREPARE_GRAD(g, P, G, i)
            P[i] = FMA(neg_lr, g, P[i]);
        }
        return;
    }
    for (int64_t i = 0; i < e; i++) {
        PREPARE_GRAD(g, P, G, i)
        T v;
        if (init) v = g;
        else v = FMA(damp1, g, LD(BUF, i) * mom);
        STR(BUF, i, v);
        T d = nesterov ? FMA(mom, v, g) : v;
        P[i] = FMA(neg_lr, d, P[i]);
    }
}

/* AdaGrad: ptrs P, G, SUM. hp: [gs, wd, has_wd, -lr_t, eps, eps_in_sqrt]. */
static void FN(adagrad_seg)(void **ptrs, int64_t n, int64_t t, int64_t b, int64_t e,
                            const double *hp) {
    T *restrict P = OPERAND(T, 0);
    const T *restrict G = OPERAND(const T, 1);
    ST *restrict SUM = OPERAND(ST, 2);
    const T gs = (T)hp[0], wd = (T)hp[1], neg_clr = (T)hp[3], eps = (T)hp[4];
    const int has_wd = hp[2] != 0, eps_in_sqrt = hp[5] != 0;
    e -= b;
    for (int64_t i = 0; i < e; i++) {
        PREPARE_GRAD(g, P, G, i)
        T s = FMA(g, g, LD(SUM, i));
        STR(SUM, i, s);
        T std = eps_in_sqrt ? SQRT(s + eps) : SQRT(s) + eps;
        P[i] = P[i] + (neg_clr * g) / std;
    }
}

/* RMSProp: ptrs P, G, SQUARE_AVG, GRAD_AVG, MOMENTUM_BUFFER. hp: [gs, wd, has_wd, alpha,
 * 1-alpha, eps, eps_in_sqrt, centered, momentum, has_momentum, lr_in_momentum, lr, -lr]. */
static void FN(rmsprop_seg)(void **ptrs, int64_t n, int64_t t, int64_t b, int64_t e,
                            const double *hp) {
    T *restrict P = OPERAND(T, 0);
    const T *restrict G = OPERAND(const T, 1);
    ST *restrict SQ = OPERAND(ST, 2);
    ST *restrict GA = OPERAND(ST, 3);
    ST *restrict MB = OPERAND(ST, 4);
    const T gs = (T)hp[0], wd = (T)hp[1], alpha = (T)hp[3], w = (T)hp[4], eps = (T)hp[5],
            mom = (T)hp[8], lr = (T)hp[11], neg_lr = (T)hp[12];
    const T wm1 = w - (T)1;
    const int small = fabs((double)w) < 0.5;
    const int has_wd = hp[2] != 0, eps_in_sqrt = hp[6] != 0, centered = hp[7] != 0,
              has_mom = hp[9] != 0, lr_in_mom = hp[10] != 0;
    e -= b;
    for (int64_t i = 0; i < e; i++) {
        PREPARE_GRAD(g, P, G, i)
        T sq = FMA(w * g, g, LD(SQ, i) * alpha);
        STR(SQ, i, sq);
        T s = sq;
        if (centered) {
            T ga = LD(GA, i);
            ga = LERP(ga, g, w, wm1, small);
            STR(GA, i, ga);
            s = FMA(-ga, ga, sq);
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

/* AdaDelta: ptrs P, G, SQUARE_AVG, ACC_DELTA. hp: [gs, wd, has_wd, rho, 1-rho, eps, -lr]. */
static void FN(adadelta_seg)(void **ptrs, int64_t n, int64_t t, int64_t b, int64_t e,
                             const double *hp) {
    T *restrict P = OPERAND(T, 0);
    const T *restrict G = OPERAND(const T, 1);
    ST *restrict SQ = OPERAND(ST, 2);
    ST *restrict AD = OPERAND(ST, 3);
    const T gs = (T)hp[0], wd = (T)hp[1], rho = (T)hp[3], w = (T)hp[4], eps = (T)hp[5],
            neg_lr = (T)hp[6];
    const int has_wd = hp[2] != 0;
    e -= b;
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

/* Adam/AdamW/AMSGrad: ptrs P, G, EXP_AVG, EXP_AVG_SQ, MAX_EXP_AVG_SQ. hp: [gs, wd, has_wd,
 * decoupled, 1-lr·wd, 1-beta1, beta2, 1-beta2, amsgrad, eps_form (0 torch, 1 eps_in_sqrt,
 * 2 eps_hat), eps, b2, sqrt(b2), -step_size]. */
static void FN(adam_seg)(void **ptrs, int64_t n, int64_t t, int64_t b, int64_t e,
                         const double *hp) {
    T *restrict P = OPERAND(T, 0);
    const T *restrict G = OPERAND(const T, 1);
    ST *restrict M = OPERAND(ST, 2);
    ST *restrict V = OPERAND(ST, 3);
    ST *restrict VMAX = OPERAND(ST, 4);
    const T gs = (T)hp[0], wd_raw = (T)hp[1], decay = (T)hp[4], w = (T)hp[5], beta2 = (T)hp[6],
            w2 = (T)hp[7], eps = (T)hp[10], bc2 = (T)hp[11], sqrt_bc2 = (T)hp[12],
            neg_step = (T)hp[13];
    const T wm1 = w - (T)1;
    const int small = fabs((double)w) < 0.5;
    const int decoupled = hp[3] != 0, amsgrad = hp[8] != 0, eps_form = (int)hp[9];
    const int has_wd = hp[2] != 0 && !decoupled, decay_param = hp[2] != 0 && decoupled;
    const T wd = wd_raw;
    e -= b;
    for (int64_t i = 0; i < e; i++) {
        if (decay_param) P[i] = P[i] * decay;
        PREPARE_GRAD(g, P, G, i)
        T m = LERP(LD(M, i), g, w, wm1, small);
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

#undef CAT_
#undef CAT
#undef FN
#undef OPERAND
#undef PREPARE_GRAD
