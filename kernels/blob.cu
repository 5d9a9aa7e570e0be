// Blob utilities of the GPU net runner: adding one gradient into another,
// for a blob read by several layers.
//
// Elementwise over n elements with a grid-stride loop (flat index i,
// 64-bit): blockDim = (CL_BLOCK_THREADS, 1, 1), any gridDim.x >= 1. No shared
// memory.

// blob_add_<dtype>(x, y, n)
// One thread computes y[i] = y[i] + x[i] for each i of its stride, in the
// accumulation type, rounding once on store.
template <typename T>
__device__ void blob_add_body(const T* __restrict__ x, T* __restrict__ y, i64 n) {
    GRID_STRIDE_LOOP(i, n) {
        store(y, i, load(y, i) + load(x, i));
    }
}

#define BLOB_ENTRY_POINTS(NAME, T)                                                      \
    extern "C" __global__ void CL_LAUNCH_BOUNDS                                         \
        blob_add_##NAME(const T* __restrict__ x, T* __restrict__ y, i64 n) {            \
        blob_add_body(x, y, n);                                                         \
    }

FOR_SELECTED_DTYPE(BLOB_ENTRY_POINTS)
