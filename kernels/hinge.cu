// HingeLoss (one-vs-all, L1 or L2) of scores x of shape num x dim with one
// label per sample: t_j = max(0, 1 + x_j) for j != l and max(0, 1 - x_l) for
// the label l.
//
// Both kernels work on rows: row r is x[r * dim + j] for j in [0, dim), with
// label[r]; `mapping` spreads rows over threads (see common.cuh).
// blockDim = (CL_BLOCK_THREADS, 1, 1), any gridDim.x >= 1. Shared memory: only
// static scratch (at most 1032 bytes, as ptxas reports). `norm` is 1 for L1
// and 2 for L2.

#define HINGE_L2 2

// Caffe negates the label's score, then takes max(0, 1 + value).
template <typename A>
__device__ __forceinline__ A hinge_term(A x, bool is_label) {
    return op_max((A)0, (A)1 + (is_label ? -x : x));
}

// hinge_loss_fwd_<dtype>(x, label, work, num, dim, norm, mapping)
// One row group adds sum_j t_j (L1) or sum_j t_j^2 (L2) of its row to the
// loss and 1 to the valid count. A label that is not an integer in [0, dim)
// is recorded in work[2] and its row adds nothing. `work` needs
// 4 + 2 * gridDim.x zeroed words.
template <int MAP, typename T>
__device__ void hinge_loss_fwd_body(const T* __restrict__ x, const T* __restrict__ label,
                                    u64* __restrict__ work, i64 num, i64 dim, int norm) {
    typedef typename ElemOps<T>::acc_t A;
    A loss = 0;
    u64 valid = 0;

    for (i64 row = Group<MAP>::first(); row < num; row += Group<MAP>::stride()) {
        i64 cls = 0;
        if (classify_label(load(label, row), dim, 0, 0, &cls) != LABEL_VALID) {
            if (Group<MAP>::rank() == 0) {
                record_bad_label(work, row);
            }
            continue;
        }

        const i64 base = row * dim;
        A sum = 0;
        for (i64 j = Group<MAP>::rank(); j < dim; j += Group<MAP>::size()) {
            const A t = hinge_term(load(x, base + j), j == cls);
            sum += (norm == HINGE_L2) ? t * t : t;
        }
        sum = group_sum<MAP>(sum);
        if (Group<MAP>::rank() == 0) {
            loss += sum;
            valid += 1;
        }
    }

    finish_loss(loss, valid, work);
}

// hinge_loss_bwd_<dtype>(x, label, dx, scale, num, dim, norm, mapping)
// One row group writes its row of dx, with sign +1 for j != l and -1 for the
// label l: L1: dx_j = scale * sign where t_j > 0, else 0; L2:
// dx_j = 2 * scale * sign * t_j. Rows with an invalid label get dx = 0.
template <int MAP, typename T>
__device__ void hinge_loss_bwd_body(const T* __restrict__ x, const T* __restrict__ label,
                                    T* __restrict__ dx, typename ElemOps<T>::acc_t scale,
                                    i64 num, i64 dim, int norm) {
    typedef typename ElemOps<T>::acc_t A;

    for (i64 row = Group<MAP>::first(); row < num; row += Group<MAP>::stride()) {
        const i64 base = row * dim;
        i64 cls = 0;
        if (classify_label(load(label, row), dim, 0, 0, &cls) != LABEL_VALID) {
            for (i64 j = Group<MAP>::rank(); j < dim; j += Group<MAP>::size()) {
                store(dx, base + j, (A)0);
            }
            continue;
        }

        for (i64 j = Group<MAP>::rank(); j < dim; j += Group<MAP>::size()) {
            const A t = hinge_term(load(x, base + j), j == cls);
            const A sign = (j == cls) ? (A)-1 : (A)1;
            A g;
            if (norm == HINGE_L2) {
                g = (A)2 * scale * sign * t;
            } else {
                g = (t > (A)0) ? scale * sign : (A)0;
            }
            store(dx, base + j, g);
        }
    }
}

#define HINGE_ENTRY_POINTS(NAME, T)                                                        \
    extern "C" __global__ void CL_LAUNCH_BOUNDS hinge_loss_fwd_##NAME( \
        const T* __restrict__ x, const T* __restrict__ label, u64* __restrict__ work,     \
        i64 num, i64 dim, int norm, int mapping) {                                        \
        DISPATCH_MAPPING(mapping, hinge_loss_fwd_body, x, label, work, num, dim, norm);    \
    }                                                                                      \
    extern "C" __global__ void CL_LAUNCH_BOUNDS hinge_loss_bwd_##NAME( \
        const T* __restrict__ x, const T* __restrict__ label, T* __restrict__ dx,         \
        ElemOps<T>::acc_t scale, i64 num, i64 dim, int norm, int mapping) {               \
        DISPATCH_MAPPING(mapping, hinge_loss_bwd_body, x, label, dx, scale, num, dim,      \
                         norm);                                                            \
    }

FOR_SELECTED_DTYPE(HINGE_ENTRY_POINTS)
