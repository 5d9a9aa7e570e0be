// ContrastiveLoss of feature pairs a, b of shape num x C with a similarity
// flag sim[r] per pair. A pair is similar when sim truncated toward zero is
// not 0, that is |sim| >= 1 (a NaN flag counts as dissimilar).
//
// Both kernels work on rows: row r is a[r * C + c], b[r * C + c] for c in
// [0, C). `mapping` spreads rows over threads (see common.cuh).
// blockDim = (CL_BLOCK_THREADS, 1, 1), any gridDim.x >= 1. Shared memory: only
// static scratch (at most 1032 bytes, as ptxas reports).

template <typename A>
__device__ __forceinline__ bool is_similar(A sim) {
    return sim >= (A)1 || sim <= (A)-1;
}

// contrastive_loss_fwd_<dtype>(a, b, sim, dist_sq, work, num, channels,
//                              margin, legacy, mapping)
// One row group computes d2 = sum_c (a - b)^2, stores it at dist_sq[r]
// (accumulation type, for the backward) and adds to the loss: d2 for a
// similar pair; for a dissimilar one max(margin - d2, 0) when `legacy`, else
// max(margin - sqrt(d2), 0)^2. The valid count is num; the caller divides
// the sum by 2 * num. `work` needs 4 + 2 * gridDim.x zeroed words.
template <int MAP, typename T>
__device__ void contrastive_loss_fwd_body(const T* __restrict__ a, const T* __restrict__ b,
                                          const T* __restrict__ sim,
                                          typename ElemOps<T>::acc_t* __restrict__ dist_sq,
                                          u64* __restrict__ work, i64 num, i64 channels,
                                          typename ElemOps<T>::acc_t margin, int legacy) {
    typedef typename ElemOps<T>::acc_t A;
    A loss = 0;
    u64 valid = 0;

    for (i64 row = Group<MAP>::first(); row < num; row += Group<MAP>::stride()) {
        const i64 base = row * channels;
        A d2 = 0;
        for (i64 c = Group<MAP>::rank(); c < channels; c += Group<MAP>::size()) {
            const A d = load(a, base + c) - load(b, base + c);
            d2 += d * d;
        }
        d2 = group_sum<MAP>(d2);

        if (Group<MAP>::rank() == 0) {
            dist_sq[row] = d2;
            if (is_similar(load(sim, row))) {
                loss += d2;
            } else if (legacy) {
                loss += op_max(margin - d2, (A)0);
            } else {
                const A gap = op_max(margin - op_sqrt(d2), (A)0);
                loss += gap * gap;
            }
            valid += 1;
        }
    }

    finish_loss(loss, valid, work);
}

// contrastive_loss_bwd_<dtype>(a, b, sim, dist_sq, da, db, alpha, num,
//                              channels, margin, legacy, mapping)
// One row group writes its rows of da = f * (a - b) and db = -f * (a - b),
// with d2 = dist_sq[r] from the forward and alpha = loss_weight / num:
//   similar:              f = alpha
//   dissimilar, legacy:   f = -alpha if margin - d2 > 0, else 0
//   dissimilar:           f = -alpha * mdist / (dist + 1e-4) if mdist > 0,
//                         else 0, with dist = sqrt(d2), mdist = margin - dist
// Either output may be null and is then skipped.
template <int MAP, typename T>
__device__ void contrastive_loss_bwd_body(const T* __restrict__ a, const T* __restrict__ b,
                                          const T* __restrict__ sim,
                                          const typename ElemOps<T>::acc_t* __restrict__ dist_sq,
                                          T* __restrict__ da, T* __restrict__ db,
                                          typename ElemOps<T>::acc_t alpha, i64 num,
                                          i64 channels, typename ElemOps<T>::acc_t margin,
                                          int legacy) {
    typedef typename ElemOps<T>::acc_t A;

    for (i64 row = Group<MAP>::first(); row < num; row += Group<MAP>::stride()) {
        const i64 base = row * channels;
        const A d2 = dist_sq[row];
        A f = 0;
        if (is_similar(load(sim, row))) {
            f = alpha;
        } else if (legacy) {
            f = (margin - d2 > (A)0) ? -alpha : (A)0;
        } else {
            const A dist = op_sqrt(d2);
            const A mdist = margin - dist;
            f = (mdist > (A)0) ? -alpha * mdist / (dist + (A)1e-4) : (A)0;
        }

        for (i64 c = Group<MAP>::rank(); c < channels; c += Group<MAP>::size()) {
            const A g = f * (load(a, base + c) - load(b, base + c));
            if (da != 0) {
                store(da, base + c, g);
            }
            if (db != 0) {
                store(db, base + c, -g);
            }
        }
    }
}

#define CONTRASTIVE_ENTRY_POINTS(NAME, T)                                                    \
    extern "C" __global__ void CL_LAUNCH_BOUNDS                          \
        contrastive_loss_fwd_##NAME(const T* __restrict__ a, const T* __restrict__ b,        \
                                    const T* __restrict__ sim,                               \
                                    ElemOps<T>::acc_t* __restrict__ dist_sq,                 \
                                    u64* __restrict__ work, i64 num, i64 channels,           \
                                    ElemOps<T>::acc_t margin, int legacy, int mapping) {     \
        DISPATCH_MAPPING(mapping, contrastive_loss_fwd_body, a, b, sim, dist_sq, work, num,  \
                         channels, margin, legacy);                                         \
    }                                                                                        \
    extern "C" __global__ void CL_LAUNCH_BOUNDS                          \
        contrastive_loss_bwd_##NAME(const T* __restrict__ a, const T* __restrict__ b,        \
                                    const T* __restrict__ sim,                               \
                                    const ElemOps<T>::acc_t* __restrict__ dist_sq,           \
                                    T* __restrict__ da, T* __restrict__ db,                  \
                                    ElemOps<T>::acc_t alpha, i64 num, i64 channels,          \
                                    ElemOps<T>::acc_t margin, int legacy, int mapping) {     \
        DISPATCH_MAPPING(mapping, contrastive_loss_bwd_body, a, b, sim, dist_sq, da, db,     \
                         alpha, num, channels, margin, legacy);                             \
    }

FOR_SELECTED_DTYPE(CONTRASTIVE_ENTRY_POINTS)
