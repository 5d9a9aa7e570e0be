// Softmax along an axis, and SoftmaxWithLoss (softmax followed by the
// multinomial logistic loss of the label's probability).
//
// Every kernel here views its blob as outer x C x inner, with element
// (o, c, s) at flat index (o * C + c) * inner + s, and works on rows: the C
// elements of one (o, s). `mapping` picks how rows are spread over threads
// (MAP_THREAD, MAP_WARP or MAP_BLOCK, see common.cuh). Launch shape for all:
// blockDim = (CL_BLOCK_THREADS, 1, 1), any gridDim.x >= 1 (rows are visited
// with a grid-stride loop). Shared memory: only the static scratch of
// block_allreduce and finish_loss, at most 1032 bytes (ptxas -v).

// softmax_fwd_<dtype>(x, y, outer, channels, inner, mapping)
// One row group computes y = exp(x - max) / sum(exp(x - max)) for one row:
// a single pass builds the row's max and sum, a second pass writes y.
template <int MAP, typename T>
__device__ void softmax_fwd_body(const T* __restrict__ x, T* __restrict__ y, i64 outer,
                                 i64 channels, i64 inner) {
    typedef typename ElemOps<T>::acc_t A;
    const i64 rows = outer * inner;

    for (i64 row = Group<MAP>::first(); row < rows; row += Group<MAP>::stride()) {
        const i64 base = row_base(row, channels, inner);

        MaxSum<A> stats = max_sum_empty<A>();
        for (i64 c = Group<MAP>::rank(); c < channels; c += Group<MAP>::size()) {
            max_sum_push(stats, load(x, base + c * inner));
        }
        stats = group_max_sum<MAP>(stats);

        for (i64 c = Group<MAP>::rank(); c < channels; c += Group<MAP>::size()) {
            const i64 i = base + c * inner;
            store(y, i, op_exp(load(x, i) - stats.m) / stats.s);
        }
    }
}

// softmax_bwd_<dtype>(y, dy, dx, outer, channels, inner, mapping)
// One row group computes dx = y * (dy - sum_c(dy * y)) for one row: one pass
// for the dot product, one to write dx.
template <int MAP, typename T>
__device__ void softmax_bwd_body(const T* __restrict__ y, const T* __restrict__ dy,
                                 T* __restrict__ dx, i64 outer, i64 channels, i64 inner) {
    typedef typename ElemOps<T>::acc_t A;
    const i64 rows = outer * inner;

    for (i64 row = Group<MAP>::first(); row < rows; row += Group<MAP>::stride()) {
        const i64 base = row_base(row, channels, inner);

        A dot = 0;
        for (i64 c = Group<MAP>::rank(); c < channels; c += Group<MAP>::size()) {
            const i64 i = base + c * inner;
            dot += load(dy, i) * load(y, i);
        }
        dot = group_sum<MAP>(dot);

        for (i64 c = Group<MAP>::rank(); c < channels; c += Group<MAP>::size()) {
            const i64 i = base + c * inner;
            store(dx, i, load(y, i) * (load(dy, i) - dot));
        }
    }
}

// softmax_loss_fwd_<dtype>(x, label, prob, stats, work, outer, channels,
//                          inner, has_ignore, ignore_label, mapping)
// One row group reads its row once, building max m and sum s of exp(x - m),
// and stores (m, s) at stats[2 * row], stats[2 * row + 1] (accumulation type)
// for the backward. For a valid label l = label[row], with row = o * inner + s,
// it adds -log(max(exp(x_l - m) / s, FLT_MIN)) to the loss and 1 to the valid
// count. An invalid label is recorded in work[2] and adds nothing. When `prob`
// is not null a second pass writes the probabilities. The grid's sums go to
// work[0] and work[1] (finish_loss); `work` needs 4 + 2 * gridDim.x zeroed
// words.
template <int MAP, typename T>
__device__ void softmax_loss_fwd_body(const T* __restrict__ x, const T* __restrict__ label,
                                      T* __restrict__ prob,
                                      typename ElemOps<T>::acc_t* __restrict__ stats,
                                      u64* __restrict__ work, i64 outer, i64 channels,
                                      i64 inner, int has_ignore, int ignore_label) {
    typedef typename ElemOps<T>::acc_t A;
    const i64 rows = outer * inner;
    A loss = 0;
    u64 valid = 0;

    for (i64 row = Group<MAP>::first(); row < rows; row += Group<MAP>::stride()) {
        const i64 base = row_base(row, channels, inner);

        MaxSum<A> st = max_sum_empty<A>();
        for (i64 c = Group<MAP>::rank(); c < channels; c += Group<MAP>::size()) {
            max_sum_push(st, load(x, base + c * inner));
        }
        st = group_max_sum<MAP>(st);

        if (Group<MAP>::rank() == 0) {
            stats[2 * row] = st.m;
            stats[2 * row + 1] = st.s;
            i64 cls = 0;
            const int kind =
                classify_label(load(label, row), channels, has_ignore, ignore_label, &cls);
            if (kind == LABEL_VALID) {
                const A p = op_exp(load(x, base + cls * inner) - st.m) / st.s;
                loss -= op_log(op_max(p, (A)CL_FLT_MIN));
                valid += 1;
            } else if (kind == LABEL_INVALID) {
                record_bad_label(work, row);
            }
        }

        if (prob != 0) {
            for (i64 c = Group<MAP>::rank(); c < channels; c += Group<MAP>::size()) {
                const i64 i = base + c * inner;
                store(prob, i, op_exp(load(x, i) - st.m) / st.s);
            }
        }
    }

    finish_loss(loss, valid, work);
}

// softmax_loss_bwd_<dtype>(x, label, stats, dx, scale, outer, channels, inner,
//                          has_ignore, ignore_label, mapping)
// One row group writes dx = scale * (p - onehot(label)) for one row, with
// p = exp(x - m) / s from the forward's stats: one read of x, one write of dx.
// Rows whose label is ignored, or invalid (the forward reported those), get
// dx = 0; the label is only compared, never used as an index.
template <int MAP, typename T>
__device__ void softmax_loss_bwd_body(const T* __restrict__ x, const T* __restrict__ label,
                                      const typename ElemOps<T>::acc_t* __restrict__ stats,
                                      T* __restrict__ dx, typename ElemOps<T>::acc_t scale,
                                      i64 outer, i64 channels, i64 inner, int has_ignore,
                                      int ignore_label) {
    typedef typename ElemOps<T>::acc_t A;
    const i64 rows = outer * inner;

    for (i64 row = Group<MAP>::first(); row < rows; row += Group<MAP>::stride()) {
        const i64 base = row_base(row, channels, inner);
        i64 cls = 0;
        const int kind =
            classify_label(load(label, row), channels, has_ignore, ignore_label, &cls);

        if (kind != LABEL_VALID) {
            for (i64 c = Group<MAP>::rank(); c < channels; c += Group<MAP>::size()) {
                store(dx, base + c * inner, (A)0);
            }
            continue;
        }

        const A m = stats[2 * row];
        const A s = stats[2 * row + 1];
        for (i64 c = Group<MAP>::rank(); c < channels; c += Group<MAP>::size()) {
            const i64 i = base + c * inner;
            const A p = op_exp(load(x, i) - m) / s;
            store(dx, i, scale * (p - (c == cls ? (A)1 : (A)0)));
        }
    }
}

#define SOFTMAX_ENTRY_POINTS(NAME, T)                                                        \
    extern "C" __global__ void CL_LAUNCH_BOUNDS                          \
        softmax_fwd_##NAME(const T* __restrict__ x, T* __restrict__ y, i64 outer,            \
                           i64 channels, i64 inner, int mapping) {                           \
        DISPATCH_MAPPING(mapping, softmax_fwd_body, x, y, outer, channels, inner);           \
    }                                                                                        \
    extern "C" __global__ void CL_LAUNCH_BOUNDS                          \
        softmax_bwd_##NAME(const T* __restrict__ y, const T* __restrict__ dy,                \
                           T* __restrict__ dx, i64 outer, i64 channels, i64 inner,           \
                           int mapping) {                                                    \
        DISPATCH_MAPPING(mapping, softmax_bwd_body, y, dy, dx, outer, channels, inner);      \
    }                                                                                        \
    extern "C" __global__ void CL_LAUNCH_BOUNDS softmax_loss_fwd_##NAME( \
        const T* __restrict__ x, const T* __restrict__ label, T* __restrict__ prob,         \
        ElemOps<T>::acc_t* __restrict__ stats, u64* __restrict__ work, i64 outer,           \
        i64 channels, i64 inner, int has_ignore, int ignore_label, int mapping) {           \
        DISPATCH_MAPPING(mapping, softmax_loss_fwd_body, x, label, prob, stats, work, outer, \
                         channels, inner, has_ignore, ignore_label);                        \
    }                                                                                        \
    extern "C" __global__ void CL_LAUNCH_BOUNDS softmax_loss_bwd_##NAME( \
        const T* __restrict__ x, const T* __restrict__ label,                               \
        const ElemOps<T>::acc_t* __restrict__ stats, T* __restrict__ dx,                    \
        ElemOps<T>::acc_t scale, i64 outer, i64 channels, i64 inner, int has_ignore,        \
        int ignore_label, int mapping) {                                                    \
        DISPATCH_MAPPING(mapping, softmax_loss_bwd_body, x, label, stats, dx, scale, outer,  \
                         channels, inner, has_ignore, ignore_label);                        \
    }

FOR_SELECTED_DTYPE(SOFTMAX_ENTRY_POINTS)
