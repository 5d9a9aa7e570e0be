// MultinomialLogisticLoss of probabilities x of shape num x dim with one
// label per sample: -log(max(x[label], 1e-20)).

// multinomial_logistic_loss_fwd_<dtype>(prob, label, work, num, dim)
// Elementwise over the num samples with a grid-stride loop (sample r, 64-bit):
// one thread adds -log(max(prob[r * dim + l], 1e-20)) for label l = label[r]
// and 1 to the valid count. A label that is not an integer in [0, dim) is
// recorded in work[2] and adds nothing. blockDim = (CL_BLOCK_THREADS, 1, 1),
// any gridDim.x >= 1; static shared memory of finish_loss only (at most
// 1032 bytes, as ptxas reports).
// `work` needs 4 + 2 * gridDim.x zeroed words.
template <typename T>
__device__ void multinomial_logistic_loss_fwd_body(const T* __restrict__ prob,
                                                   const T* __restrict__ label,
                                                   u64* __restrict__ work, i64 num, i64 dim) {
    typedef typename ElemOps<T>::acc_t A;
    A loss = 0;
    u64 valid = 0;

    GRID_STRIDE_LOOP(row, num) {
        i64 cls = 0;
        if (classify_label(load(label, row), dim, 0, 0, &cls) != LABEL_VALID) {
            record_bad_label(work, row);
            continue;
        }
        loss -= op_log(op_max(load(prob, row * dim + cls), (A)CL_LOG_THRESHOLD));
        valid += 1;
    }

    finish_loss(loss, valid, work);
}

// multinomial_logistic_loss_bwd_<dtype>(prob, label, dx, scale, num, dim,
//                                       mapping)
// One row group (see common.cuh; row r is prob[r * dim + j]) writes its row
// of dx: 0 everywhere except dx[l] = -scale / max(prob[l], 1e-20) for label
// l. Rows with an invalid label get dx = 0. blockDim = (CL_BLOCK_THREADS, 1, 1),
// any gridDim.x >= 1, no shared memory.
template <int MAP, typename T>
__device__ void multinomial_logistic_loss_bwd_body(const T* __restrict__ prob,
                                                   const T* __restrict__ label,
                                                   T* __restrict__ dx,
                                                   typename ElemOps<T>::acc_t scale, i64 num,
                                                   i64 dim) {
    typedef typename ElemOps<T>::acc_t A;

    for (i64 row = Group<MAP>::first(); row < num; row += Group<MAP>::stride()) {
        const i64 base = row * dim;
        i64 cls = -1;
        if (classify_label(load(label, row), dim, 0, 0, &cls) != LABEL_VALID) {
            cls = -1;
        }
        for (i64 j = Group<MAP>::rank(); j < dim; j += Group<MAP>::size()) {
            A g = 0;
            if (j == cls) {
                g = -scale / op_max(load(prob, base + j), (A)CL_LOG_THRESHOLD);
            }
            store(dx, base + j, g);
        }
    }
}

#define MULTINOMIAL_ENTRY_POINTS(NAME, T)                                                   \
    extern "C" __global__ void CL_LAUNCH_BOUNDS                         \
        multinomial_logistic_loss_fwd_##NAME(const T* __restrict__ prob,                    \
                                             const T* __restrict__ label,                   \
                                             u64* __restrict__ work, i64 num, i64 dim) {    \
        multinomial_logistic_loss_fwd_body(prob, label, work, num, dim);                    \
    }                                                                                       \
    extern "C" __global__ void CL_LAUNCH_BOUNDS                         \
        multinomial_logistic_loss_bwd_##NAME(const T* __restrict__ prob,                    \
                                             const T* __restrict__ label,                   \
                                             T* __restrict__ dx, ElemOps<T>::acc_t scale,   \
                                             i64 num, i64 dim, int mapping) {               \
        DISPATCH_MAPPING(mapping, multinomial_logistic_loss_bwd_body, prob, label, dx,      \
                         scale, num, dim);                                                  \
    }

FOR_SELECTED_DTYPE(MULTINOMIAL_ENTRY_POINTS)
