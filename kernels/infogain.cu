// InfogainLoss: a softmax over the axis followed by the information-gain
// weighted log loss, -sum_c H[l, c] * log(max(p_c, 1e-20)) for label l, with
// H a C x C matrix in row-major order (H[l * C + c]).
//
// Blob layout, row mapping and launch shape are those of softmax.cu: element
// (o, c, s) at (o * C + c) * inner + s, one row per (o, s) with its label at
// label[o * inner + s], blockDim = (CL_BLOCK_THREADS, 1, 1), any gridDim.x >= 1,
// only static shared memory (at most 1032 bytes, as ptxas reports).

// infogain_loss_fwd_<dtype>(x, label, infogain, prob, stats, work, outer,
//                           channels, inner, has_ignore, ignore_label, mapping)
// One row group builds the row's max m and sum s of exp(x - m) in one pass
// and stores them at stats[2 * row], stats[2 * row + 1]. For a valid label l
// a second pass adds -sum_c H[l, c] * log(max(p_c, 1e-20)) to the loss and 1
// to the valid count. When `prob` is not null, that pass also writes p, for
// ignored and invalid rows too. Invalid labels are recorded in work[2].
// `work` needs 4 + 2 * gridDim.x zeroed words.
template <int MAP, typename T>
__device__ void infogain_loss_fwd_body(const T* __restrict__ x, const T* __restrict__ label,
                                       const T* __restrict__ infogain, T* __restrict__ prob,
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

        // Every member of the group reads the same label, so `kind` is
        // uniform and the group_sum below is reached by all or none.
        i64 cls = 0;
        const int kind =
            classify_label(load(label, row), channels, has_ignore, ignore_label, &cls);
        if (Group<MAP>::rank() == 0) {
            stats[2 * row] = st.m;
            stats[2 * row + 1] = st.s;
            if (kind == LABEL_INVALID) {
                record_bad_label(work, row);
            }
        }
        if (kind != LABEL_VALID && prob == 0) {
            continue;
        }

        A term = 0;
        for (i64 c = Group<MAP>::rank(); c < channels; c += Group<MAP>::size()) {
            const i64 i = base + c * inner;
            const A p = op_exp(load(x, i) - st.m) / st.s;
            if (prob != 0) {
                store(prob, i, p);
            }
            if (kind == LABEL_VALID) {
                term -= load(infogain, cls * channels + c) * op_log(op_max(p, (A)CL_LOG_THRESHOLD));
            }
        }
        if (kind == LABEL_VALID) {
            term = group_sum<MAP>(term);
            if (Group<MAP>::rank() == 0) {
                loss += term;
                valid += 1;
            }
        }
    }

    finish_loss(loss, valid, work);
}

// infogain_loss_bwd_<dtype>(x, label, infogain, stats, dx, scale, outer,
//                           channels, inner, has_ignore, ignore_label, mapping)
// One row group writes dx_c = scale * (p_c * sum_k H[l, k] - H[l, c]) for one
// row with label l, p recomputed from x and the forward's stats. Rows whose
// label is ignored or invalid get dx = 0, and H is then not read.
template <int MAP, typename T>
__device__ void infogain_loss_bwd_body(const T* __restrict__ x, const T* __restrict__ label,
                                       const T* __restrict__ infogain,
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

        const i64 h_row = cls * channels;
        A h_sum = 0;
        for (i64 c = Group<MAP>::rank(); c < channels; c += Group<MAP>::size()) {
            h_sum += load(infogain, h_row + c);
        }
        h_sum = group_sum<MAP>(h_sum);

        const A m = stats[2 * row];
        const A s = stats[2 * row + 1];
        for (i64 c = Group<MAP>::rank(); c < channels; c += Group<MAP>::size()) {
            const i64 i = base + c * inner;
            const A p = op_exp(load(x, i) - m) / s;
            store(dx, i, scale * (p * h_sum - load(infogain, h_row + c)));
        }
    }
}

#define INFOGAIN_ENTRY_POINTS(NAME, T)                                                        \
    extern "C" __global__ void CL_LAUNCH_BOUNDS infogain_loss_fwd_##NAME( \
        const T* __restrict__ x, const T* __restrict__ label, const T* __restrict__ infogain, \
        T* __restrict__ prob, ElemOps<T>::acc_t* __restrict__ stats, u64* __restrict__ work, \
        i64 outer, i64 channels, i64 inner, int has_ignore, int ignore_label, int mapping) { \
        DISPATCH_MAPPING(mapping, infogain_loss_fwd_body, x, label, infogain, prob, stats,    \
                         work, outer, channels, inner, has_ignore, ignore_label);            \
    }                                                                                         \
    extern "C" __global__ void CL_LAUNCH_BOUNDS infogain_loss_bwd_##NAME( \
        const T* __restrict__ x, const T* __restrict__ label, const T* __restrict__ infogain, \
        const ElemOps<T>::acc_t* __restrict__ stats, T* __restrict__ dx,                     \
        ElemOps<T>::acc_t scale, i64 outer, i64 channels, i64 inner, int has_ignore,         \
        int ignore_label, int mapping) {                                                     \
        DISPATCH_MAPPING(mapping, infogain_loss_bwd_body, x, label, infogain, stats, dx,      \
                         scale, outer, channels, inner, has_ignore, ignore_label);           \
    }

FOR_SELECTED_DTYPE(INFOGAIN_ENTRY_POINTS)
