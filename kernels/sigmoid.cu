// Sigmoid, and SigmoidCrossEntropyLoss (sigmoid followed by the cross
// entropy against targets in [0, 1]).
//
// All four kernels are elementwise over n elements with a grid-stride loop
// (flat index i, 64-bit): blockDim = (CL_BLOCK_THREADS, 1, 1), any
// gridDim.x >= 1. Shared memory: only the static scratch of finish_loss in
// the loss forward (at most 1032 bytes, as ptxas reports).

// sigmoid_fwd_<dtype>(x, y, n)
// One thread computes y[i] = 1 / (1 + exp(-x[i])) for each i of its stride.
template <typename T>
__device__ void sigmoid_fwd_body(const T* __restrict__ x, T* __restrict__ y, i64 n) {
    typedef typename ElemOps<T>::acc_t A;
    GRID_STRIDE_LOOP(i, n) {
        store(y, i, (A)1 / ((A)1 + op_exp(-load(x, i))));
    }
}

// sigmoid_bwd_<dtype>(y, dy, dx, n)
// One thread computes dx[i] = dy[i] * y[i] * (1 - y[i]) for each i of its
// stride, from the forward's output y.
template <typename T>
__device__ void sigmoid_bwd_body(const T* __restrict__ y, const T* __restrict__ dy,
                                 T* __restrict__ dx, i64 n) {
    typedef typename ElemOps<T>::acc_t A;
    GRID_STRIDE_LOOP(i, n) {
        const A yi = load(y, i);
        store(dx, i, load(dy, i) * yi * ((A)1 - yi));
    }
}

// sigmoid_cross_entropy_loss_fwd_<dtype>(x, target, work, n, has_ignore,
//                                        ignore_label)
// One thread adds, for each i of its stride whose target t does not truncate
// to ignore_label, the term
//   -(x * (t - (x >= 0)) - log(1 + exp(x - 2 * x * (x >= 0))))
// (Caffe's overflow-free form of the cross entropy of sigmoid(x) against t)
// and 1 to the valid count. Targets are not range-checked: soft targets are
// allowed. `work` needs 4 + 2 * gridDim.x zeroed words.
template <typename T>
__device__ void sigmoid_cross_entropy_loss_fwd_body(const T* __restrict__ x,
                                                    const T* __restrict__ target,
                                                    u64* __restrict__ work, i64 n,
                                                    int has_ignore, int ignore_label) {
    typedef typename ElemOps<T>::acc_t A;
    A loss = 0;
    u64 valid = 0;

    GRID_STRIDE_LOOP(i, n) {
        const A t = load(target, i);
        if (has_ignore && truncates_to(t, ignore_label)) {
            continue;
        }
        const A xi = load(x, i);
        const A positive = (xi >= (A)0) ? (A)1 : (A)0;
        loss -= xi * (t - positive) - op_log((A)1 + op_exp(xi - (A)2 * xi * positive));
        valid += 1;
    }

    finish_loss(loss, valid, work);
}

// sigmoid_cross_entropy_loss_bwd_<dtype>(x, target, dx, scale, n, has_ignore,
//                                        ignore_label)
// One thread writes dx[i] = scale * (sigmoid(x[i]) - t[i]) for each i of its
// stride, and 0 where t truncates to ignore_label.
template <typename T>
__device__ void sigmoid_cross_entropy_loss_bwd_body(const T* __restrict__ x,
                                                    const T* __restrict__ target,
                                                    T* __restrict__ dx,
                                                    typename ElemOps<T>::acc_t scale, i64 n,
                                                    int has_ignore, int ignore_label) {
    typedef typename ElemOps<T>::acc_t A;
    GRID_STRIDE_LOOP(i, n) {
        const A t = load(target, i);
        if (has_ignore && truncates_to(t, ignore_label)) {
            store(dx, i, (A)0);
            continue;
        }
        const A sigmoid = (A)1 / ((A)1 + op_exp(-load(x, i)));
        store(dx, i, scale * (sigmoid - t));
    }
}

#define SIGMOID_ENTRY_POINTS(NAME, T)                                                         \
    extern "C" __global__ void CL_LAUNCH_BOUNDS                           \
        sigmoid_fwd_##NAME(const T* __restrict__ x, T* __restrict__ y, i64 n) {               \
        sigmoid_fwd_body(x, y, n);                                                            \
    }                                                                                         \
    extern "C" __global__ void CL_LAUNCH_BOUNDS sigmoid_bwd_##NAME(       \
        const T* __restrict__ y, const T* __restrict__ dy, T* __restrict__ dx, i64 n) {      \
        sigmoid_bwd_body(y, dy, dx, n);                                                       \
    }                                                                                         \
    extern "C" __global__ void CL_LAUNCH_BOUNDS                           \
        sigmoid_cross_entropy_loss_fwd_##NAME(const T* __restrict__ x,                        \
                                              const T* __restrict__ target,                   \
                                              u64* __restrict__ work, i64 n, int has_ignore,  \
                                              int ignore_label) {                             \
        sigmoid_cross_entropy_loss_fwd_body(x, target, work, n, has_ignore, ignore_label);    \
    }                                                                                         \
    extern "C" __global__ void CL_LAUNCH_BOUNDS                           \
        sigmoid_cross_entropy_loss_bwd_##NAME(                                                \
            const T* __restrict__ x, const T* __restrict__ target, T* __restrict__ dx,        \
            ElemOps<T>::acc_t scale, i64 n, int has_ignore, int ignore_label) {               \
        sigmoid_cross_entropy_loss_bwd_body(x, target, dx, scale, n, has_ignore,              \
                                            ignore_label);                                    \
    }

FOR_SELECTED_DTYPE(SIGMOID_ENTRY_POINTS)
