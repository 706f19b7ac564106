/* adaptim plan check: re-validates a cached fused-step plan (adaptim/_fused/__init__.py, _Plan)
 * against the live tensors in one pass of C++, a few nanoseconds per tensor.
 *
 * Compiled on first use with the installed torch's headers (see _plan_check.py) and called
 * through ctypes.PyDLL, so the GIL is held throughout. Nothing is trusted from an earlier step:
 * every pointer the kernel will use is read from, or compared with, the live tensor it belongs
 * to, together with everything that makes the pointer valid for the kernel (CPU, strided,
 * contiguous, no conjugate or negative bit, no Python dispatch, the dtype and element count the
 * plan was built for). The tensors are referenced by the group, ``p.grad`` and the state dicts
 * while the kernel runs, so a pointer that passes is live memory of the right size.
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

/* Whether the kernel can take t as a dense run of numel elements of dtype on the CPU. */
inline bool dense(const c10::TensorImpl *t, int dtype, int64_t numel) {
    return t->layout() == c10::kStrided && t->device_type() == c10::DeviceType::CPU &&
           !t->is_python_dispatch() && !t->is_conj() && !t->is_neg() &&
           static_cast<int>(c10::typeMetaToScalarType(t->dtype())) == dtype &&
           t->numel() == numel && t->is_contiguous();
}

inline uint64_t address(const c10::TensorImpl *t) {
    return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(t->data()));
}

int check(PyObject *tensor_type, PyObject *param_type, PyObject *group_params,
          PyObject *plan_params, const uint8_t *in_plan, PyObject *state, PyObject *snap_keys,
          PyObject *snap_values, PyObject *states, PyObject *keys, const int64_t *key_info,
          uint64_t *buf, int64_t n, int64_t k, int pdtype) {
    /* the group's parameter list, element by element */
    if (!PyList_CheckExact(group_params) || !PyList_CheckExact(plan_params)) return 1;
    const Py_ssize_t m = PyList_GET_SIZE(group_params);
    if (m != PyList_GET_SIZE(plan_params)) return 1;
    const uint64_t *numels = buf + k * n;
    const Py_ssize_t nkeys = PyTuple_GET_SIZE(keys);
    if (nkeys > 0 && (!PyDict_Check(state) || !PyList_CheckExact(states) ||
                      PyList_GET_SIZE(states) != n))
        return 1;
    /* Without a snapshot of optimizer.state (this group holds the lesser part of it), each
     * planned parameter is looked up (a Python-level Tensor.__hash__). */
    const bool lookup = nkeys > 0 && snap_keys == Py_None;
    int64_t i = 0; /* index among the planned tensors (the parameters with a gradient) */
    for (Py_ssize_t a = 0; a < m; ++a) {
        PyObject *p = PyList_GET_ITEM(group_params, a);
        if (p != PyList_GET_ITEM(plan_params, a)) return 1;
        const c10::TensorImpl *pt = impl_of(p, tensor_type, param_type);
        if (pt == nullptr) return 1;
        const at::Tensor &g = pt->grad();
        if (!in_plan[a]) {
            if (g.defined()) return 1; /* a gradient where the plan has none */
            continue;
        }
        if (!g.defined() || i >= n) return 1;
        const int64_t numel = static_cast<int64_t>(numels[i]);
        if (!dense(pt, pdtype, numel) || address(pt) != buf[i]) return 1;
        const c10::TensorImpl *gt = g.unsafeGetTensorImpl();
        if (!dense(gt, pdtype, numel)) return 1;
        buf[n + i] = address(gt); /* a new gradient (zero_grad, backward) is taken as it is */
        if (lookup) {
            PyObject *st = PyDict_GetItemWithError(state, p); /* borrowed */
            if (st != PyList_GET_ITEM(states, i)) {
                PyErr_Clear();
                return 1;
            }
        }
        ++i;
    }
    if (i != n) return 1;
    if (nkeys == 0) return 0;
    if (!lookup) {
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
    /* each state tensor the kernel uses: key_info holds, per key, the buffer offset of its
     * pointers, its dtype and whether it is the step count (one element) */
    for (Py_ssize_t q = 0; q < nkeys; ++q) {
        PyObject *name = PyTuple_GET_ITEM(keys, q);
        const uint64_t *slot = buf + key_info[3 * q];
        const int dtype = static_cast<int>(key_info[3 * q + 1]);
        const bool is_step = key_info[3 * q + 2] != 0;
        for (int64_t t = 0; t < n; ++t) {
            PyObject *st = PyList_GET_ITEM(states, t);
            if (!PyDict_CheckExact(st)) return 1;
            PyObject *v = PyDict_GetItemWithError(st, name); /* borrowed */
            if (v == nullptr) {
                PyErr_Clear();
                return 1;
            }
            const c10::TensorImpl *vt = impl_of(v, tensor_type, param_type);
            if (vt == nullptr ||
                !dense(vt, dtype, is_step ? 1 : static_cast<int64_t>(numels[t])) ||
                address(vt) != slot[t])
                return 1;
        }
    }
    return 0;
}

} // namespace

extern "C" {

int adaptim_plan_check(PyObject *tensor_type, PyObject *param_type, PyObject *group_params,
                       PyObject *plan_params, const uint8_t *in_plan, PyObject *state,
                       PyObject *snap_keys, PyObject *snap_values, PyObject *states,
                       PyObject *keys, const int64_t *key_info, uint64_t *buf, int64_t n,
                       int64_t k, int pdtype) {
    try {
        return check(tensor_type, param_type, group_params, plan_params, in_plan, state,
                     snap_keys, snap_values, states, keys, key_info, buf, n, k, pdtype);
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

int adaptim_plan_check_abi(void) { return 1; }

} // extern "C"
