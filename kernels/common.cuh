// Shared device code for every kernel file: element types, math wrappers,
// deterministic warp and block reductions, row mappings, label checks and the
// reduction workspace.
//
// src/gpu/nvrtc.rs prepends this text to each .cu file (NVRTC gets no include
// path into the source tree), after two lines it generates:
//   #define CAFFE_LOSS_DTYPE_<X>   the element type whose entry points the
//                                  file stamps (F32, F64, F16 or BF16)
//   #define CL_BLOCK_THREADS <n>   the block size every launch uses, a
//                                  multiple of 32; entry points declare it
//                                  through CL_LAUNCH_BOUNDS below
// No CUDA header is included: the 16-bit conversions below are written out.

typedef long long i64;
typedef unsigned long long u64;

// Every entry point runs with blockDim.x == CL_BLOCK_THREADS. The second
// bound, at least 4 resident blocks per SM, caps registers at 64 per thread
// (65536 / (4 * 256)), which keeps half of an SM's 2048 threads busy on
// sm_80 and sm_90 to hide memory latency. With the thread count alone, ptxas
// 13.0 aimed at 32 registers for sm_80 and sm_90 and spilled a few bytes in
// several kernels. With a minimum of 1 block it used up to 128 registers.
// tests/kernels_ptx.rs checks that no kernel spills under this cap.
#define CL_LAUNCH_BOUNDS __launch_bounds__(CL_BLOCK_THREADS, 4)

// ---------------------------------------------------------------------------
// Element types. f16 and bf16 are stored as 16-bit patterns and all their
// arithmetic runs in float; f32 runs in float and f64 in double.

struct f16_bits {
    unsigned short bits;
};

struct bf16_bits {
    unsigned short bits;
};

template <typename T>
struct ElemOps;

template <>
struct ElemOps<float> {
    typedef float acc_t;
    static __device__ __forceinline__ float to_acc(float v) { return v; }
    static __device__ __forceinline__ float from_acc(float v) { return v; }
};

template <>
struct ElemOps<double> {
    typedef double acc_t;
    static __device__ __forceinline__ double to_acc(double v) { return v; }
    static __device__ __forceinline__ double from_acc(double v) { return v; }
};

template <>
struct ElemOps<f16_bits> {
    typedef float acc_t;
    // cvt between f16 and f32 exists since sm_20, so this needs no header.
    static __device__ __forceinline__ float to_acc(f16_bits v) {
        float f;
        asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.bits));
        return f;
    }
    static __device__ __forceinline__ f16_bits from_acc(float f) {
        f16_bits v;
        asm("cvt.rn.f16.f32 %0, %1;" : "=h"(v.bits) : "f"(f));
        return v;
    }
};

template <>
struct ElemOps<bf16_bits> {
    typedef float acc_t;
    // bf16 is the upper half of an f32, so widening is a shift.
    static __device__ __forceinline__ float to_acc(bf16_bits v) {
        return __uint_as_float(((unsigned int)v.bits) << 16);
    }
    // Rounds to nearest, ties to even, and keeps NaN a quiet NaN. Written with
    // integer operations because cvt.rn.bf16.f32 needs sm_80.
    static __device__ __forceinline__ bf16_bits from_acc(float f) {
        unsigned int u = __float_as_uint(f);
        bf16_bits v;
        if ((u & 0x7fffffffu) > 0x7f800000u) {
            v.bits = (unsigned short)((u >> 16) | 0x0040u);
            return v;
        }
        u += 0x7fffu + ((u >> 16) & 1u);
        v.bits = (unsigned short)(u >> 16);
        return v;
    }
};

template <typename T>
__device__ __forceinline__ typename ElemOps<T>::acc_t load(const T* p, i64 i) {
    return ElemOps<T>::to_acc(p[i]);
}

template <typename T>
__device__ __forceinline__ void store(T* p, i64 i, typename ElemOps<T>::acc_t v) {
    p[i] = ElemOps<T>::from_acc(v);
}

// ---------------------------------------------------------------------------
// Math in the accumulation type. Caffe's clamps: SoftmaxWithLoss clamps
// probabilities at FLT_MIN even for double, the Infogain and
// MultinomialLogistic losses at 1e-20 (kLOG_THRESHOLD).

// FLT_MIN = 2^-126 exactly, so the double kernels clamp at the same value.
#define CL_FLT_MIN 1.17549435082228750797e-38
#define CL_LOG_THRESHOLD 1e-20
#define CL_INFINITY __int_as_float(0x7f800000)

__device__ __forceinline__ float op_exp(float x) { return expf(x); }
__device__ __forceinline__ double op_exp(double x) { return exp(x); }
__device__ __forceinline__ float op_log(float x) { return logf(x); }
__device__ __forceinline__ double op_log(double x) { return log(x); }
__device__ __forceinline__ float op_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double op_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float op_trunc(float x) { return truncf(x); }
__device__ __forceinline__ double op_trunc(double x) { return trunc(x); }
// Products the compiler may not fuse into an FMA with a neighbouring add,
// where the same expression must round the same way on every lane.
__device__ __forceinline__ float op_mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double op_mul_rn(double a, double b) { return __dmul_rn(a, b); }

// std::max semantics, (a < b) ? b : a, as Caffe uses it: a NaN in `a`
// survives, a NaN in `b` does not.
template <typename A>
__device__ __forceinline__ A op_max(A a, A b) {
    return (a < b) ? b : a;
}

// ---------------------------------------------------------------------------
// Online softmax statistics: the running maximum `m` of a row and the sum `s`
// of exp(x - m), built in one pass over the row.

template <typename A>
struct MaxSum {
    A m;
    A s;
};

template <typename A>
__device__ __forceinline__ MaxSum<A> max_sum_empty() {
    MaxSum<A> v;
    v.m = -(A)CL_INFINITY;
    v.s = 0;
    return v;
}

template <typename A>
__device__ __forceinline__ void max_sum_push(MaxSum<A>& v, A x) {
    if (x > v.m) {
        // First element: m is -inf, so s becomes 0 * 0 + 1.
        v.s = v.s * op_exp(v.m - x) + (A)1;
        v.m = x;
    } else if (x != -(A)CL_INFINITY) {
        // A NaN lands here and makes s NaN, which the loss then reports.
        v.s += op_exp(x - v.m);
    }
}

// Symmetric in its arguments, so every lane of a butterfly gets the same
// bits. The products are rounded on their own: an FMA would fuse only one of
// them with the final add, and which one differs between the two lanes.
template <typename A>
__device__ __forceinline__ MaxSum<A> max_sum_merge(MaxSum<A> a, MaxSum<A> b) {
    MaxSum<A> r;
    r.m = (a.m > b.m) ? a.m : b.m;
    A ta = (a.s == (A)0) ? (A)0 : op_mul_rn(a.s, op_exp(a.m - r.m));
    A tb = (b.s == (A)0) ? (A)0 : op_mul_rn(b.s, op_exp(b.m - r.m));
    r.s = ta + tb;
    return r;
}

// ---------------------------------------------------------------------------
// Warp and block reductions. The butterfly (xor) pattern adds the same two
// operands on both lanes of each pair, so every lane ends with the same bits
// and the result depends only on the input order, never on timing.

#define CL_FULL_MASK 0xffffffffu
#define CL_WARP 32

__device__ __forceinline__ float shfl_xor(float v, int o) {
    return __shfl_xor_sync(CL_FULL_MASK, v, o);
}
__device__ __forceinline__ double shfl_xor(double v, int o) {
    return __shfl_xor_sync(CL_FULL_MASK, v, o);
}
__device__ __forceinline__ u64 shfl_xor(u64 v, int o) {
    return __shfl_xor_sync(CL_FULL_MASK, v, o);
}
template <typename A>
__device__ __forceinline__ MaxSum<A> shfl_xor(MaxSum<A> v, int o) {
    MaxSum<A> r;
    r.m = shfl_xor(v.m, o);
    r.s = shfl_xor(v.s, o);
    return r;
}

struct OpSum {
    template <typename V>
    __device__ __forceinline__ V operator()(V a, V b) const { return a + b; }
};

struct OpMaxSum {
    template <typename A>
    __device__ __forceinline__ MaxSum<A> operator()(MaxSum<A> a, MaxSum<A> b) const {
        return max_sum_merge(a, b);
    }
};

// Requires all 32 lanes of the warp to call it.
template <typename V, typename Op>
__device__ __forceinline__ V warp_allreduce(V v, Op op) {
    for (int o = CL_WARP / 2; o > 0; o /= 2) {
        v = op(v, shfl_xor(v, o));
    }
    return v;
}

// Requires every thread of the block to call it, blockDim.x a multiple of 32
// and at most 1024. Returns the same value on every thread. `identity` fills
// the unused slots of the second stage.
template <typename V, typename Op>
__device__ __forceinline__ V block_allreduce(V v, Op op, V identity) {
    __shared__ V partials[CL_WARP];
    const int lane = threadIdx.x % CL_WARP;
    const int warp = threadIdx.x / CL_WARP;
    const int warps = blockDim.x / CL_WARP;

    v = warp_allreduce(v, op);

    // The barrier also protects `partials` from a previous call.
    __syncthreads();
    if (lane == 0) {
        partials[warp] = v;
    }
    __syncthreads();

    v = (lane < warps) ? partials[lane] : identity;
    return warp_allreduce(v, op);
}

template <typename V>
__device__ __forceinline__ V block_sum(V v) {
    return block_allreduce(v, OpSum(), (V)0);
}

// ---------------------------------------------------------------------------
// Row mappings. A "row" is the set of C elements (o, c, s) for one (o, s) of a
// blob viewed as outer x C x inner, at flat index (o * C + c) * inner + s.
// Rust picks the mapping (src/gpu/launch.rs) and passes it as an int:
//   MAP_THREAD: one thread per row; with inner >= 32 neighbouring threads read
//               neighbouring s, so loads coalesce.
//   MAP_WARP:   one warp per row, lanes stride over c.
//   MAP_BLOCK:  one block per row, threads stride over c.
// Rows are visited with a grid-stride loop over groups. All members of a
// group see the same rows, so group reductions inside the loop are safe.

#define MAP_THREAD 0
#define MAP_WARP 1
#define MAP_BLOCK 2

template <int MAP>
struct Group;

template <>
struct Group<MAP_THREAD> {
    static __device__ __forceinline__ i64 first() {
        return (i64)blockIdx.x * blockDim.x + threadIdx.x;
    }
    static __device__ __forceinline__ i64 stride() { return (i64)gridDim.x * blockDim.x; }
    static __device__ __forceinline__ int rank() { return 0; }
    static __device__ __forceinline__ int size() { return 1; }
    template <typename V, typename Op>
    static __device__ __forceinline__ V allreduce(V v, Op, V) {
        return v;
    }
};

template <>
struct Group<MAP_WARP> {
    static __device__ __forceinline__ i64 first() {
        return ((i64)blockIdx.x * blockDim.x + threadIdx.x) / CL_WARP;
    }
    static __device__ __forceinline__ i64 stride() {
        return (i64)gridDim.x * blockDim.x / CL_WARP;
    }
    static __device__ __forceinline__ int rank() { return threadIdx.x % CL_WARP; }
    static __device__ __forceinline__ int size() { return CL_WARP; }
    template <typename V, typename Op>
    static __device__ __forceinline__ V allreduce(V v, Op op, V) {
        return warp_allreduce(v, op);
    }
};

template <>
struct Group<MAP_BLOCK> {
    static __device__ __forceinline__ i64 first() { return blockIdx.x; }
    static __device__ __forceinline__ i64 stride() { return gridDim.x; }
    static __device__ __forceinline__ int rank() { return threadIdx.x; }
    static __device__ __forceinline__ int size() { return blockDim.x; }
    template <typename V, typename Op>
    static __device__ __forceinline__ V allreduce(V v, Op op, V identity) {
        return block_allreduce(v, op, identity);
    }
};

template <int MAP, typename V>
__device__ __forceinline__ V group_sum(V v) {
    return Group<MAP>::allreduce(v, OpSum(), (V)0);
}

template <int MAP, typename A>
__device__ __forceinline__ MaxSum<A> group_max_sum(MaxSum<A> v) {
    return Group<MAP>::allreduce(v, OpMaxSum(), max_sum_empty<A>());
}

// Position of row `row` = o * inner + s: flat index of its element c = 0.
__device__ __forceinline__ i64 row_base(i64 row, i64 channels, i64 inner) {
    const i64 o = row / inner;
    const i64 s = row - o * inner;
    return o * channels * inner + s;
}

// Calls BODY<MAP>(args...) for the mapping chosen at run time. `mapping` is
// the same for the whole grid, so barriers inside BODY stay uniform.
#define DISPATCH_MAPPING(mapping, BODY, ...)      \
    do {                                          \
        switch (mapping) {                        \
        case MAP_WARP:                            \
            BODY<MAP_WARP>(__VA_ARGS__);          \
            break;                                \
        case MAP_BLOCK:                           \
            BODY<MAP_BLOCK>(__VA_ARGS__);         \
            break;                                \
        default:                                  \
            BODY<MAP_THREAD>(__VA_ARGS__);        \
            break;                                \
        }                                         \
    } while (0)

// Grid-stride loop over flat indices [0, n) with 64-bit indices.
#define GRID_STRIDE_LOOP(i, n)                                          \
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (i64)gridDim.x * blockDim.x)

// ---------------------------------------------------------------------------
// Labels. Labels are stored in the element type. Like Caffe, a label whose
// value truncated toward zero equals ignore_label is skipped before any other
// check. Any other label must be an integer in [0, C); otherwise the kernel
// records it and never uses it as an index.

#define LABEL_VALID 0
#define LABEL_IGNORED 1
#define LABEL_INVALID 2

// (int)v is undefined outside the int range and for NaN, so test first.
template <typename A>
__device__ __forceinline__ bool truncates_to(A v, int target) {
    return v >= (A)-2147483648.0 && v < (A)2147483648.0 && (int)v == target;
}

template <typename A>
__device__ __forceinline__ int classify_label(A v, i64 channels, int has_ignore,
                                              int ignore_label, i64* cls) {
    if (has_ignore && truncates_to(v, ignore_label)) {
        return LABEL_IGNORED;
    }
    // NaN fails every comparison and lands in the invalid branch.
    if (!(v >= (A)0) || !(v < (A)channels) || v != op_trunc(v)) {
        return LABEL_INVALID;
    }
    const i64 c = (i64)v;
    if (c >= channels) {
        // (A)channels may round up for channels above 2^24 in float.
        return LABEL_INVALID;
    }
    *cls = c;
    return LABEL_VALID;
}

// ---------------------------------------------------------------------------
// Reduction workspace, an array of u64 words that the launcher zeroes:
//   [0] loss sum, the bits of a double
//   [1] valid count
//   [2] first bad label: ~position, 0 when none (atomicMax keeps the smallest
//       position)
//   [3] number of blocks that have finished
//   [4, 4 + gridDim.x)                 per-block sums, bits of doubles
//   [4 + gridDim.x, 4 + 2 * gridDim.x) per-block counts

#define WORK_SUM 0
#define WORK_COUNT 1
#define WORK_BAD_LABEL 2
#define WORK_DONE 3
#define WORK_PARTIALS 4

__device__ __forceinline__ void record_bad_label(u64* work, i64 position) {
    atomicMax(&work[WORK_BAD_LABEL], ~(u64)position);
}

// Ends a loss kernel: reduces the block's sums and counts, stores them as the
// block's partial and lets the last block to finish add all partials in block
// order. Every thread of the block must call it. Integer atomics only pick
// the last block. The float sum is never built with atomics, so the same
// input and grid give the same bits on every run.
template <typename A>
__device__ void finish_loss(A thread_sum, u64 thread_count, u64* work) {
    __shared__ bool is_last;
    const A sum = block_sum(thread_sum);
    const u64 count = block_sum(thread_count);
    const unsigned int blocks = gridDim.x;

    if (threadIdx.x == 0) {
        work[WORK_PARTIALS + blockIdx.x] = (u64)__double_as_longlong((double)sum);
        work[WORK_PARTIALS + blocks + blockIdx.x] = count;
        // Publish the partials before taking a ticket.
        __threadfence();
        const u64 ticket = atomicAdd(&work[WORK_DONE], 1ull);
        is_last = (ticket == blocks - 1);
    }
    __syncthreads();
    if (!is_last) {
        return;
    }
    __threadfence();

    // volatile: read the other blocks' partials from L2, not a stale L1 line.
    const volatile u64* partials = work + WORK_PARTIALS;
    double total = 0.0;
    u64 total_count = 0;
    for (unsigned int b = threadIdx.x; b < blocks; b += blockDim.x) {
        total += __longlong_as_double((long long)partials[b]);
        total_count += partials[blocks + b];
    }
    total = block_sum(total);
    total_count = block_sum(total_count);
    if (threadIdx.x == 0) {
        work[WORK_SUM] = (u64)__double_as_longlong(total);
        work[WORK_COUNT] = total_count;
    }
}

// ---------------------------------------------------------------------------
// Element type selection. Rust defines exactly one CAFFE_LOSS_DTYPE_<X>; each
// .cu file ends with FOR_SELECTED_DTYPE(ITS_STAMP_MACRO), which expands the
// stamp macro once with the suffix used in entry-point names and the C type.

#if defined(CAFFE_LOSS_DTYPE_F32)
#define FOR_SELECTED_DTYPE(STAMP) STAMP(f32, float)
#elif defined(CAFFE_LOSS_DTYPE_F64)
#define FOR_SELECTED_DTYPE(STAMP) STAMP(f64, double)
#elif defined(CAFFE_LOSS_DTYPE_F16)
#define FOR_SELECTED_DTYPE(STAMP) STAMP(f16, f16_bits)
#elif defined(CAFFE_LOSS_DTYPE_BF16)
#define FOR_SELECTED_DTYPE(STAMP) STAMP(bf16, bf16_bits)
#else
#error "define one of CAFFE_LOSS_DTYPE_F32, _F64, _F16, _BF16"
#endif
