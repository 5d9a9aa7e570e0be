// EuclideanLoss: the sum of squared differences of two blobs of n elements.
//
// Both kernels are elementwise with a grid-stride loop (flat index i, 64-bit):
// blockDim = (CL_BLOCK_THREADS, 1, 1), any gridDim.x >= 1. Shared memory:
// only the static scratch of finish_loss in the forward (at most 1032
// bytes, as ptxas reports).

// euclidean_loss_fwd_<dtype>(a, b, work, n)
// One thread adds (a[i] - b[i])^2 for each i of its stride. The grid's sum
// goes to work[0] (the caller divides by 2 * num) and n to work[1]. `work`
// needs 4 + 2 * gridDim.x zeroed words.
template <typename T>
__device__ void euclidean_loss_fwd_body(const T* __restrict__ a, const T* __restrict__ b,
                                        u64* __restrict__ work, i64 n) {
    typedef typename ElemOps<T>::acc_t A;
    A sum = 0;
    u64 count = 0;
    GRID_STRIDE_LOOP(i, n) {
        const A d = load(a, i) - load(b, i);
        sum += d * d;
        count += 1;
    }
    finish_loss(sum, count, work);
}

// euclidean_loss_bwd_<dtype>(a, b, da, db, alpha, n)
// One thread writes da[i] = alpha * (a[i] - b[i]) and db[i] = -da[i] for each
// i of its stride. Either output may be null and is then skipped.
template <typename T>
__device__ void euclidean_loss_bwd_body(const T* __restrict__ a, const T* __restrict__ b,
                                        T* __restrict__ da, T* __restrict__ db,
                                        typename ElemOps<T>::acc_t alpha, i64 n) {
    typedef typename ElemOps<T>::acc_t A;
    GRID_STRIDE_LOOP(i, n) {
        const A g = alpha * (load(a, i) - load(b, i));
        if (da != 0) {
            store(da, i, g);
        }
        if (db != 0) {
            store(db, i, -g);
        }
    }
}

#define EUCLIDEAN_ENTRY_POINTS(NAME, T)                                                        \
    extern "C" __global__ void CL_LAUNCH_BOUNDS euclidean_loss_fwd_##NAME( \
        const T* __restrict__ a, const T* __restrict__ b, u64* __restrict__ work, i64 n) {    \
        euclidean_loss_fwd_body(a, b, work, n);                                                \
    }                                                                                          \
    extern "C" __global__ void CL_LAUNCH_BOUNDS euclidean_loss_bwd_##NAME( \
        const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ da,                  \
        T* __restrict__ db, ElemOps<T>::acc_t alpha, i64 n) {                                  \
        euclidean_loss_bwd_body(a, b, da, db, alpha, n);                                       \
    }

FOR_SELECTED_DTYPE(EUCLIDEAN_ENTRY_POINTS)
