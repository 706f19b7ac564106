"""The rules of ``kernels_body.h`` as Triton kernels (the device side of :mod:`._triton`).

One kernel per rule; each program updates one chunk of ``BLOCK`` elements of one tensor. The
launch gets three tensors:

- ``chunks`` (int64, cached per group): one row ``(tensor index, first element, numel)`` per chunk;
- ``table`` (int64) and ``table_f64`` (the same memory viewed as float64), built on the host each
  step: ``HP_SLOTS`` hyperparameter slots (the spec's named fields, read here by name as
  ``ADAM_LR`` from the generated :mod:`._hp_fields`, as float64), then one record of
  ``RECORD`` slots per tensor: the data pointers of its operands (param, grad, state...) and
  its step-dependent scalars (float64: bias corrections, decayed lr, SGD's first-step flag).

Every option is a ``tl.constexpr`` (each combination compiles once); every number is data, so
nothing recompiles when lr or any hyperparameter changes. The arithmetic mirrors the C kernel
operation by operation: FMA exactly where it has one (launched with ``enable_fp_fusion=False``
so the compiler adds no other), correctly rounded division and square root (``tl.div_rn``,
``tl.sqrt_rn``; float64 ``/`` and ``sqrt`` are IEEE already), scalars rounded to the arithmetic
type first. Arithmetic is float64 for float64 parameters and float32 otherwise (float16 and
bfloat16 parameters and state are loaded to float32 and rounded once when stored, to nearest
even). bfloat16 is converted with integer operations, bit for bit as ``kernels.c`` and
``c10::BFloat16`` do, so results are the same in Triton's interpreter and on a GPU.

Storage kinds (``PK`` parameter and gradient, ``SK`` state): 0 float64, 1 float32, 2 float16,
3 bfloat16.
"""

import triton
import triton.language as tl

from adaptim._fused._hp_fields import (
    ADADELTA_EPS, ADADELTA_NEG_LR, ADADELTA_ONE_MINUS_RHO, ADADELTA_RHO, ADAGRAD_EPS,
    ADAM_BETA2, ADAM_DECAY_FACTOR, ADAM_EPS, ADAM_ONE_MINUS_BETA1, ADAM_ONE_MINUS_BETA2,
    HP_GRAD_SCALE, HP_WEIGHT_DECAY, RMSPROP_ALPHA, RMSPROP_EPS, RMSPROP_LR, RMSPROP_MOMENTUM,
    RMSPROP_NEG_LR, RMSPROP_ONE_MINUS_ALPHA, SGD_MOMENTUM, SGD_NEG_LR, SGD_ONE_MINUS_DAMPENING)

HP_SLOTS = tl.constexpr(16)  # hyperparameter slots before the first record (>= every HP_COUNT)


# ---------------------------------------------------------------- helpers
@triton.jit
def _chunk(chunks, BLOCK: tl.constexpr, ALIGNED: tl.constexpr):
    """This program's tensor index, element offsets and mask. ALIGNED (the host checked it):
    every tensor's element count is a multiple of 8, so the mask is constant over 8 elements
    and loads can be vectorised (chunk starts are multiples of BLOCK by construction)."""
    c = tl.program_id(0)
    t = tl.load(chunks + 3 * c)
    start = tl.load(chunks + 3 * c + 1)
    numel = tl.load(chunks + 3 * c + 2)
    if ALIGNED:
        start = tl.multiple_of(start, BLOCK)
        numel = tl.multiple_of(numel, 8)
    offs = start + tl.arange(0, BLOCK)
    return t, offs, offs < numel


@triton.jit
def _addr(table, t, j, RECORD: tl.constexpr):
    """Data pointer of operand j of tensor t (an int64)."""
    return tl.load(table + HP_SLOTS + t * RECORD + j)


@triton.jit
def _hp(table_f64, i, PK: tl.constexpr):
    """Hyperparameter field i rounded to the arithmetic type (as the C kernel's (T)hp[i])."""
    x = tl.load(table_f64 + i)
    if PK != 0:
        x = x.to(tl.float32)
    return x


@triton.jit
def _scalar(table_f64, t, j, RECORD: tl.constexpr, PK: tl.constexpr):
    """Slot j of tensor t's record (a float64 scalar), rounded to the arithmetic type."""
    x = tl.load(table_f64 + HP_SLOTS + t * RECORD + j)
    if PK != 0:
        x = x.to(tl.float32)
    return x


@triton.jit
def _ptr(addr, DTYPE: tl.constexpr, ALIGNED: tl.constexpr):
    """``addr`` as a pointer to DTYPE; ALIGNED (the host checked every pointer): 16-byte
    aligned, which lets the compiler use 16-byte vector loads and stores."""
    p = addr.to(tl.pointer_type(DTYPE))
    if ALIGNED:
        p = tl.multiple_of(p, 16)
    return p


@triton.jit
def _load(addr, offs, mask, KIND: tl.constexpr, ALIGNED: tl.constexpr):
    """Elements of the tensor at ``addr`` in the arithmetic type (float64 for KIND 0, else
    float32)."""
    if KIND == 0:
        x = tl.load(_ptr(addr, tl.float64, ALIGNED) + offs, mask=mask, other=0.0)
    elif KIND == 1:
        x = tl.load(_ptr(addr, tl.float32, ALIGNED) + offs, mask=mask, other=0.0)
    elif KIND == 2:
        x = tl.load(_ptr(addr, tl.float16, ALIGNED) + offs, mask=mask, other=0.0)
        x = x.to(tl.float32)
    else:  # bfloat16: the upper half of a float32
        bits = tl.load(_ptr(addr, tl.uint16, ALIGNED) + offs, mask=mask, other=0)
        x = (bits.to(tl.uint32) << 16).to(tl.float32, bitcast=True)
    return x


@triton.jit
def _store(addr, offs, x, mask, KIND: tl.constexpr, ALIGNED: tl.constexpr):
    """Store ``x`` (arithmetic type) into the tensor at ``addr``, rounding to nearest even."""
    if KIND == 0:
        tl.store(_ptr(addr, tl.float64, ALIGNED) + offs, x, mask=mask)
    elif KIND == 1:
        tl.store(_ptr(addr, tl.float32, ALIGNED) + offs, x, mask=mask)
    elif KIND == 2:
        tl.store(_ptr(addr, tl.float16, ALIGNED) + offs, x.to(tl.float16), mask=mask)
    else:  # bfloat16 as c10::BFloat16(float): round to nearest even, NaN stays NaN
        bits = x.to(tl.uint32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        bits = tl.where(x != x, 0x7FC0, bits)
        tl.store(_ptr(addr, tl.uint16, ALIGNED) + offs, bits.to(tl.uint16), mask=mask)


@triton.jit
def _div(a, b, PK: tl.constexpr):
    if PK == 0:
        r = a / b
    else:
        r = tl.div_rn(a, b)
    return r


@triton.jit
def _sqrt(x, PK: tl.constexpr):
    if PK == 0:
        r = tl.sqrt(x)
    else:
        r = tl.sqrt_rn(x)
    return r


@triton.jit
def _grad(G, P, table_f64, PK: tl.constexpr, HAS_WD: tl.constexpr):
    """g ← ±(grad · grad_scale) [+ λ θ] (the common fields GRAD_SCALE and WEIGHT_DECAY)."""
    g = G * _hp(table_f64, HP_GRAD_SCALE, PK)
    if HAS_WD:
        g = tl.fma(_hp(table_f64, HP_WEIGHT_DECAY, PK), P, g)
    return g


@triton.jit
def _lerp(start, end, w):
    """torch.lerp(start, end, w): start + w·(end − start) if |w| < 0.5, else
    end + (w − 1)·(end − start)."""
    small = tl.abs(w) < 0.5
    coeff = tl.where(small, w, w - 1.0)
    return tl.fma(coeff, end - start, tl.where(small, start, end))


# ---------------------------------------------------------------- rules
@triton.jit
def sgd_kernel(table, table_f64, chunks, PK: tl.constexpr, SK: tl.constexpr,
               BLOCK: tl.constexpr, ALIGNED: tl.constexpr, HAS_WD: tl.constexpr,
               HAS_MOM: tl.constexpr, NESTEROV: tl.constexpr):
    """SGD. Record: P, G, BUF, init (1.0: first step, v ← g). hp: the SGD_* fields."""
    RECORD: tl.constexpr = 4
    t, offs, mask = _chunk(chunks, BLOCK, ALIGNED)
    p_addr = _addr(table, t, 0, RECORD)
    P = _load(p_addr, offs, mask, PK, ALIGNED)
    g = _grad(_load(_addr(table, t, 1, RECORD), offs, mask, PK, ALIGNED), P, table_f64, PK, HAS_WD)
    d = g
    if HAS_MOM:
        mom = _hp(table_f64, SGD_MOMENTUM, PK)
        b_addr = _addr(table, t, 2, RECORD)
        v = tl.fma(_hp(table_f64, SGD_ONE_MINUS_DAMPENING, PK), g,
                   _load(b_addr, offs, mask, SK, ALIGNED) * mom)
        v = tl.where(_scalar(table_f64, t, 3, RECORD, PK) != 0, g, v)
        _store(b_addr, offs, v, mask, SK, ALIGNED)
        if NESTEROV:
            d = tl.fma(mom, v, g)
        else:
            d = v
    _store(p_addr, offs, tl.fma(_hp(table_f64, SGD_NEG_LR, PK), d, P), mask, PK, ALIGNED)


@triton.jit
def adagrad_kernel(table, table_f64, chunks, PK: tl.constexpr, SK: tl.constexpr,
                   BLOCK: tl.constexpr, ALIGNED: tl.constexpr, HAS_WD: tl.constexpr,
                   EPS_IN_SQRT: tl.constexpr):
    """AdaGrad. Record: P, G, SUM, −η_t (η_t = η / (1 + (t − 1) lr_decay)).
    hp: the ADAGRAD_* fields."""
    RECORD: tl.constexpr = 4
    t, offs, mask = _chunk(chunks, BLOCK, ALIGNED)
    p_addr = _addr(table, t, 0, RECORD)
    s_addr = _addr(table, t, 2, RECORD)
    P = _load(p_addr, offs, mask, PK, ALIGNED)
    g = _grad(_load(_addr(table, t, 1, RECORD), offs, mask, PK, ALIGNED), P, table_f64, PK, HAS_WD)
    s = tl.fma(g, g, _load(s_addr, offs, mask, SK, ALIGNED))
    _store(s_addr, offs, s, mask, SK, ALIGNED)
    eps = _hp(table_f64, ADAGRAD_EPS, PK)
    if EPS_IN_SQRT:
        std = _sqrt(s + eps, PK)
    else:
        std = _sqrt(s, PK) + eps
    P = P + _div(_scalar(table_f64, t, 3, RECORD, PK) * g, std, PK)
    _store(p_addr, offs, P, mask, PK, ALIGNED)


@triton.jit
def rmsprop_kernel(table, table_f64, chunks, PK: tl.constexpr, SK: tl.constexpr,
                   BLOCK: tl.constexpr, ALIGNED: tl.constexpr, HAS_WD: tl.constexpr,
                   EPS_IN_SQRT: tl.constexpr, CENTERED: tl.constexpr, HAS_MOM: tl.constexpr,
                   LR_IN_MOM: tl.constexpr):
    """RMSProp. Record: P, G, SQUARE_AVG, GRAD_AVG, MOMENTUM_BUFFER. hp: the RMSPROP_*
    fields."""
    RECORD: tl.constexpr = 5
    t, offs, mask = _chunk(chunks, BLOCK, ALIGNED)
    p_addr = _addr(table, t, 0, RECORD)
    sq_addr = _addr(table, t, 2, RECORD)
    P = _load(p_addr, offs, mask, PK, ALIGNED)
    g = _grad(_load(_addr(table, t, 1, RECORD), offs, mask, PK, ALIGNED), P, table_f64, PK, HAS_WD)
    w = _hp(table_f64, RMSPROP_ONE_MINUS_ALPHA, PK)
    sq = tl.fma(w * g, g,
                _load(sq_addr, offs, mask, SK, ALIGNED) * _hp(table_f64, RMSPROP_ALPHA, PK))
    _store(sq_addr, offs, sq, mask, SK, ALIGNED)
    s = sq
    if CENTERED:
        ga_addr = _addr(table, t, 3, RECORD)
        ga = _lerp(_load(ga_addr, offs, mask, SK, ALIGNED), g, w)
        _store(ga_addr, offs, ga, mask, SK, ALIGNED)
        s = tl.fma(-ga, ga, sq)
        s = tl.where(s < 0, 0.0, s)  # rounding can make E[g²] − E[g]² < 0; NaN passes
    eps = _hp(table_f64, RMSPROP_EPS, PK)
    if EPS_IN_SQRT:
        avg = _sqrt(s + eps, PK)
    else:
        avg = _sqrt(s, PK) + eps
    if HAS_MOM:
        mb_addr = _addr(table, t, 4, RECORD)
        mb = _load(mb_addr, offs, mask, SK, ALIGNED) * _hp(table_f64, RMSPROP_MOMENTUM, PK)
        if LR_IN_MOM:
            mb = mb + _div(_hp(table_f64, RMSPROP_LR, PK) * g, avg, PK)
            _store(mb_addr, offs, mb, mask, SK, ALIGNED)
            P = P - mb
        else:
            mb = mb + _div(g, avg, PK)
            _store(mb_addr, offs, mb, mask, SK, ALIGNED)
            P = tl.fma(_hp(table_f64, RMSPROP_NEG_LR, PK), mb, P)
    else:
        P = P + _div(_hp(table_f64, RMSPROP_NEG_LR, PK) * g, avg, PK)
    _store(p_addr, offs, P, mask, PK, ALIGNED)


@triton.jit
def adadelta_kernel(table, table_f64, chunks, PK: tl.constexpr, SK: tl.constexpr,
                    BLOCK: tl.constexpr, ALIGNED: tl.constexpr, HAS_WD: tl.constexpr):
    """AdaDelta. Record: P, G, SQUARE_AVG, ACC_DELTA. hp: the ADADELTA_* fields."""
    RECORD: tl.constexpr = 4
    t, offs, mask = _chunk(chunks, BLOCK, ALIGNED)
    p_addr = _addr(table, t, 0, RECORD)
    sq_addr = _addr(table, t, 2, RECORD)
    ad_addr = _addr(table, t, 3, RECORD)
    P = _load(p_addr, offs, mask, PK, ALIGNED)
    g = _grad(_load(_addr(table, t, 1, RECORD), offs, mask, PK, ALIGNED), P, table_f64, PK, HAS_WD)
    rho = _hp(table_f64, ADADELTA_RHO, PK)
    w = _hp(table_f64, ADADELTA_ONE_MINUS_RHO, PK)
    eps = _hp(table_f64, ADADELTA_EPS, PK)
    sq = tl.fma(w * g, g, _load(sq_addr, offs, mask, SK, ALIGNED) * rho)
    _store(sq_addr, offs, sq, mask, SK, ALIGNED)
    std = _sqrt(sq + eps, PK)
    ad = _load(ad_addr, offs, mask, SK, ALIGNED)
    delta = _div(_sqrt(ad + eps, PK), std, PK) * g
    ad = tl.fma(w * delta, delta, ad * rho)
    _store(ad_addr, offs, ad, mask, SK, ALIGNED)
    _store(p_addr, offs, tl.fma(_hp(table_f64, ADADELTA_NEG_LR, PK), delta, P), mask, PK,
           ALIGNED)


@triton.jit
def adam_kernel(table, table_f64, chunks, PK: tl.constexpr, SK: tl.constexpr,
                BLOCK: tl.constexpr, ALIGNED: tl.constexpr, HAS_WD: tl.constexpr,
                DECAY_PARAM: tl.constexpr, AMSGRAD: tl.constexpr, EPS_FORM: tl.constexpr):
    """Adam/AdamW/AMSGrad. Record: P, G, EXP_AVG, EXP_AVG_SQ, MAX_EXP_AVG_SQ, −step size,
    b₂ = 1 − β₂ᵗ, √b₂. hp: the ADAM_* fields."""
    RECORD: tl.constexpr = 8
    t, offs, mask = _chunk(chunks, BLOCK, ALIGNED)
    p_addr = _addr(table, t, 0, RECORD)
    m_addr = _addr(table, t, 2, RECORD)
    v_addr = _addr(table, t, 3, RECORD)
    P = _load(p_addr, offs, mask, PK, ALIGNED)
    if DECAY_PARAM:  # AdamW: θ ← θ (1 − η λ)
        P = P * _hp(table_f64, ADAM_DECAY_FACTOR, PK)
    g = _grad(_load(_addr(table, t, 1, RECORD), offs, mask, PK, ALIGNED), P, table_f64, PK, HAS_WD)
    m = _lerp(_load(m_addr, offs, mask, SK, ALIGNED), g,
              _hp(table_f64, ADAM_ONE_MINUS_BETA1, PK))
    _store(m_addr, offs, m, mask, SK, ALIGNED)
    v = tl.fma(_hp(table_f64, ADAM_ONE_MINUS_BETA2, PK) * g, g,
               _load(v_addr, offs, mask, SK, ALIGNED) * _hp(table_f64, ADAM_BETA2, PK))
    _store(v_addr, offs, v, mask, SK, ALIGNED)
    if AMSGRAD:  # torch.maximum: NaN if either is NaN
        vm_addr = _addr(table, t, 4, RECORD)
        vm = _load(vm_addr, offs, mask, SK, ALIGNED)
        vm = tl.where(vm != vm, vm, tl.where(v != v, v, tl.where(vm > v, vm, v)))
        _store(vm_addr, offs, vm, mask, SK, ALIGNED)
        v = vm
    eps = _hp(table_f64, ADAM_EPS, PK)
    if EPS_FORM == 0:
        denom = _div(_sqrt(v, PK), _scalar(table_f64, t, 7, RECORD, PK), PK) + eps
    elif EPS_FORM == 1:
        denom = _sqrt(_div(v, _scalar(table_f64, t, 6, RECORD, PK), PK) + eps, PK)
    else:
        denom = _sqrt(v, PK) + eps
    P = P + _div(_scalar(table_f64, t, 5, RECORD, PK) * m, denom, PK)
    _store(p_addr, offs, P, mask, PK, ALIGNED)
