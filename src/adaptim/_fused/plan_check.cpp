/* adaptim plan check: re-validates a cached plan (adaptim/_fused/__init__.py, _PlanCheck: the
 * C kernel's, a Triton launch's, a multi-tensor step's) against the live tensors in one pass of
 * C++, about 0.1 µs per tensor (memory latency: a tensor's metadata is a dozen cache lines).
 *
 * Compiled on first use with the installed torch's headers (see _plan_check.py) and called
 * through ctypes.PyDLL, so the GIL is held throughout. Parameters and gradients are read afresh
 * at every step: each pointer the kernel will use is compared with (parameters) or taken from
 * (gradients) the live tensor, together with everything that makes it valid for the kernel
 * (the plan's device, strided, contiguous, no conjugate or negative bit, no Python dispatch,
 * the dtype and element count the plan was built for); those tensors are referenced by the
 * group and by ``p.grad`` while the kernel runs. State tensors are compared by identity with
 * the ones the plan holds (with their storages, so their memory lives as long as the plan).
 *
 * Returns 0 when the plan holds (the gradients' pointers are then written into the plan's
 * buffer), 1 when anything differs (the caller drops the plan and gathers the group again).
 * Never raises: a C++ exception or a Python error in a lookup counts as a difference.
 */
#include <Python.h>
#include <torch/csrc/autograd/python_variable.h>

#include <cstdint>

namespace {

/* The TensorImpl of a plain torch.Tensor or torch.nn.Parameter object (no other subclass, whose
 * Python attributes could say something the C++ tensor does not), else nullptr. */
inline c10::TensorImpl *impl_of(PyObject *obj, PyObject *tensor_type, PyObject *param_type) {
    PyObject *type = reinterpret_cast<PyObject *>(Py_TYPE(obj));
    if (type != tensor_type && type != param_type) return nullptr;
    const at::Tensor &t = THPVariable_Unpack(obj);
    return t.defined() ? t.unsafeGetTensorImpl() : nullptr;
}

/* A device as one number: its type (c10::DeviceType) and index. */
inline int device_code(const c10::Device &d) {
    return static_cast<int>(d.type()) * 256 + (static_cast<int>(d.index()) & 0xff);
}

/* Whether the kernel can take t as a dense run of numel elements of dtype on the device whose
 * device_code is device. */
inline bool dense(const c10::TensorImpl *t, int dtype, int64_t numel, int device) {
    return t->layout() == c10::kStrided && device_code(t->device()) == device &&
           !t->is_python_dispatch() && !t->is_conj() && !t->is_neg() &&
           static_cast<int>(c10::typeMetaToScalarType(t->dtype())) == dtype &&
           t->numel() == numel && t->is_contiguous();
}

inline uint64_t address(const c10::TensorImpl *t) {
    return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(t->data()));
}

/* A few thousand tensors' metadata is scattered over memory that the kernel's last pass has
 * evicted from the caches, so the checks are bound by memory latency (each tensor is a chain:
 * Python object, TensorImpl, autograd meta, gradient's TensorImpl, storages). The loops below
 * prefetch each link of the chain a few tensors ahead (STRIDE per link), so the loads of
 * different tensors overlap. */
constexpr Py_ssize_t STRIDE = 4;
constexpr Py_ssize_t RING = 16; /* > 2 * STRIDE */

/* The TensorImpl fields the checks read: the storage and autograd meta pointers near its start,
 * offset, size, dtype, device, dispatch keys and flags at its end (the sizes and strides in
 * between are not read). */
inline void prefetch_impl(const c10::TensorImpl *t) {
    const char *c = reinterpret_cast<const char *>(t);
    __builtin_prefetch(c);
    __builtin_prefetch(c + sizeof(c10::TensorImpl) - 40);
    __builtin_prefetch(c + sizeof(c10::TensorImpl) - 1);
}

inline void prefetch_lines(const void *p, int lines) {
    const char *c = static_cast<const char *>(p);
    for (int l = 0; l < lines; ++l) __builtin_prefetch(c + 64 * l);
}

/* ob_type and the tensor (THPVariable) share the object's first line */
inline const c10::TensorImpl *unpacked(PyObject *obj) {
    const at::Tensor &t = THPVariable_Unpack(obj);
    return t.unsafeGetTensorImpl();
}

int check(PyObject *tensor_type, PyObject *param_type, PyObject *group_params,
          PyObject *plan_params, const uint8_t *in_plan, PyObject *state, PyObject *snap_keys,
          PyObject *snap_values, PyObject *states, PyObject *keys, PyObject *values,
          uint64_t *buf, int64_t n, int64_t k, int pdtype, int device) {
    /* the group's parameter list, element by element */
    if (!PyList_CheckExact(group_params) || !PyList_CheckExact(plan_params)) return 1;
    const Py_ssize_t m = PyList_GET_SIZE(group_params);
    if (m != PyList_GET_SIZE(plan_params)) return 1;
    PyObject *const *gp = &PyList_GET_ITEM(group_params, 0);
    PyObject *const *pp = &PyList_GET_ITEM(plan_params, 0);
    for (Py_ssize_t a = 0; a < m; ++a)
        if (gp[a] != pp[a]) return 1;
    /* every parameter's type first: the prefetching below unpacks tensors ahead */
    for (Py_ssize_t a = 0; a < m; ++a) {
        if (a + STRIDE < m) __builtin_prefetch(gp[a + STRIDE]);
        PyObject *type = reinterpret_cast<PyObject *>(Py_TYPE(gp[a]));
        if ((type != tensor_type && type != param_type) || !THPVariable_Unpack(gp[a]).defined())
            return 1;
    }
    const uint64_t *numels = buf + k * n;
    /* the gradients' TensorImpls, read at stage a + 2 * STRIDE and used at a */
    const c10::TensorImpl *ring[RING];
    auto grad_of = [&](Py_ssize_t a) {
        const at::Tensor &g = unpacked(gp[a])->grad();
        const c10::TensorImpl *gt = g.defined() ? g.unsafeGetTensorImpl() : nullptr;
        ring[a % RING] = gt;
        return gt;
    };
    for (Py_ssize_t a = 0; a < 2 * STRIDE && a < m; ++a) grad_of(a);
    int64_t i = 0; /* index among the planned tensors (the parameters with a gradient) */
    for (Py_ssize_t a = 0; a < m; ++a) {
        if (a + 4 * STRIDE < m) prefetch_impl(unpacked(gp[a + 4 * STRIDE]));
        if (a + 3 * STRIDE < m) {
            const c10::TensorImpl *t = unpacked(gp[a + 3 * STRIDE]);
            if (t->autograd_meta() != nullptr) __builtin_prefetch(t->autograd_meta());
            if (t->has_storage()) __builtin_prefetch(t->storage().unsafeGetStorageImpl());
        }
        if (a + 2 * STRIDE < m) {
            const c10::TensorImpl *gt = grad_of(a + 2 * STRIDE);
            if (gt != nullptr) prefetch_impl(gt);
        }
        if (a + STRIDE < m) {
            const c10::TensorImpl *gt = ring[(a + STRIDE) % RING];
            if (gt != nullptr && gt->has_storage())
                __builtin_prefetch(gt->storage().unsafeGetStorageImpl());
        }
        const c10::TensorImpl *pt = unpacked(gp[a]);
        const c10::TensorImpl *gt = ring[a % RING];
        if (!in_plan[a]) {
            if (gt != nullptr) return 1; /* a gradient where the plan has none */
            continue;
        }
        if (gt == nullptr || i >= n) return 1;
        const int64_t numel = static_cast<int64_t>(numels[i]);
        if (!dense(pt, pdtype, numel, device) || address(pt) != buf[i]) return 1;
        if (!dense(gt, pdtype, numel, device)) return 1;
        buf[n + i] = address(gt); /* a new gradient (zero_grad, backward) is taken as it is */
        ++i;
    }
    if (i != n) return 1;
    const Py_ssize_t nkeys = PyTuple_GET_SIZE(keys);
    if (nkeys == 0) return 0;
    if (!PyDict_Check(state) || !PyList_CheckExact(states) || PyList_GET_SIZE(states) != n ||
        !PyList_CheckExact(values) || PyList_GET_SIZE(values) != nkeys * n)
        return 1;
    PyObject *const *sts = &PyList_GET_ITEM(states, 0);
    if (snap_keys == Py_None) {
        /* this group holds the lesser part of optimizer.state: each planned parameter is
         * looked up. The lookup runs Python code (Tensor.__hash__), which could change any
         * list, so nothing read before it is trusted after it: the lists are read afresh. */
        for (Py_ssize_t a = 0, t = 0; a < m; ++a) {
            if (PyList_GET_SIZE(group_params) != m || PyList_GET_SIZE(states) != n) return 1;
            if (!in_plan[a]) continue;
            PyObject *st = PyDict_GetItemWithError(state, PyList_GET_ITEM(group_params, a));
            if (st == nullptr || st != PyList_GET_ITEM(states, t++)) { /* (borrowed) */
                PyErr_Clear();
                return 1;
            }
        }
        if (PyList_GET_SIZE(states) != n || PyList_GET_SIZE(values) != nkeys * n) return 1;
    } else {
        /* optimizer.state, entry by entry (iterating hashes nothing): each planned parameter
         * still maps to the state dict the plan read */
        if (!PyList_CheckExact(snap_keys) || !PyList_CheckExact(snap_values) ||
            PyDict_GET_SIZE(state) != PyList_GET_SIZE(snap_keys))
            return 1;
        Py_ssize_t pos = 0, j = 0;
        PyObject *key, *value;
        while (PyDict_Next(state, &pos, &key, &value)) {
            if (j >= PyList_GET_SIZE(snap_keys) || key != PyList_GET_ITEM(snap_keys, j) ||
                value != PyList_GET_ITEM(snap_values, j))
                return 1;
            ++j;
        }
    }
    /* each state tensor the kernel uses is the one the plan holds (values[q * n + t]: key q of
     * tensor t), so its memory is the memory the plan's pointers name */
    sts = &PyList_GET_ITEM(states, 0);
    PyObject *const *held = &PyList_GET_ITEM(values, 0);
    for (int64_t t = 0; t < n; ++t) {
        if (t + 2 * STRIDE < n) __builtin_prefetch(sts[t + 2 * STRIDE]);
        if (t + STRIDE < n && PyDict_CheckExact(sts[t + STRIDE]))
            prefetch_lines(reinterpret_cast<PyDictObject *>(sts[t + STRIDE])->ma_keys, 3);
        PyObject *st = sts[t];
        if (!PyDict_CheckExact(st)) return 1;
        for (Py_ssize_t q = 0; q < nkeys; ++q) {
            PyObject *v = PyDict_GetItemWithError(st, PyTuple_GET_ITEM(keys, q)); /* borrowed */
            if (v != held[q * n + t]) {
                PyErr_Clear();
                return 1;
            }
        }
    }
    return 0;
}

} // namespace

extern "C" {

int adaptim_plan_check(PyObject *tensor_type, PyObject *param_type, PyObject *group_params,
                       PyObject *plan_params, const uint8_t *in_plan, PyObject *state,
                       PyObject *snap_keys, PyObject *snap_values, PyObject *states,
                       PyObject *keys, PyObject *values, uint64_t *buf, int64_t n, int64_t k,
                       int pdtype, int device) {
    try {
        return check(tensor_type, param_type, group_params, plan_params, in_plan, state,
                     snap_keys, snap_values, states, keys, values, buf, n, k, pdtype, device);
    } catch (...) {
        if (PyErr_Occurred()) PyErr_Clear();
        return 1;
    }
}

/* The dtype code this library compares (c10::ScalarType) of a tensor object, -1 if none. */
int adaptim_plan_dtype(PyObject *tensor_type, PyObject *param_type, PyObject *obj) {
    try {
        const c10::TensorImpl *t = impl_of(obj, tensor_type, param_type);
        return t == nullptr ? -1 : static_cast<int>(c10::typeMetaToScalarType(t->dtype()));
    } catch (...) {
        return -1;
    }
}

/* The device code this library compares (see device_code) of a tensor object, -1 if none. */
int adaptim_plan_device(PyObject *tensor_type, PyObject *param_type, PyObject *obj) {
    try {
        const c10::TensorImpl *t = impl_of(obj, tensor_type, param_type);
        return t == nullptr ? -1 : device_code(t->device());
    } catch (...) {
        return -1;
    }
}

int adaptim_plan_check_abi(void) { return 3; }

} // extern "C"
