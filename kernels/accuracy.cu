// Accuracy (top-k) of scores viewed as outer x C x inner, element (o, c, s)
// at (o * C + c) * inner + s, with one label per row at
// label[o * inner + s].

// accuracy_fwd_<dtype>(x, label, work, per_class, outer, channels, inner,
//                      top_k, has_ignore, ignore_label, mapping)
// One row group (see common.cuh) handles one row with a valid label l: it
// counts the classes that rank ahead of l the way Caffe's std::partial_sort
// with std::greater on (score, class) pairs orders them, that is class c with
// score s_c is ahead when s_l < s_c, or when neither score is less than the
// other and c > l. The row is correct when fewer than top_k classes are
// ahead. work[0] gets the number of correct rows (as a double) and work[1]
// the number of rows with a valid label. Ignored rows count in neither, and
// invalid labels are recorded in work[2]. When `per_class` is not null (2 * C
// zeroed words), per_class[2 * l] counts the correct rows of class l and
// per_class[2 * l + 1] all its rows, with integer atomics.
// blockDim = (CL_BLOCK_THREADS, 1, 1), any gridDim.x >= 1; static shared
// memory only (at most 1032 bytes, as ptxas reports). `work` needs
// 4 + 2 * gridDim.x zeroed words.
template <int MAP, typename T>
__device__ void accuracy_fwd_body(const T* __restrict__ x, const T* __restrict__ label,
                                  u64* __restrict__ work, u64* __restrict__ per_class,
                                  i64 outer, i64 channels, i64 inner, int top_k,
                                  int has_ignore, int ignore_label) {
    typedef typename ElemOps<T>::acc_t A;
    const i64 rows = outer * inner;
    double correct = 0;
    u64 valid = 0;

    for (i64 row = Group<MAP>::first(); row < rows; row += Group<MAP>::stride()) {
        const i64 base = row_base(row, channels, inner);
        i64 cls = 0;
        const int kind =
            classify_label(load(label, row), channels, has_ignore, ignore_label, &cls);
        if (kind != LABEL_VALID) {
            if (kind == LABEL_INVALID && Group<MAP>::rank() == 0) {
                record_bad_label(work, row);
            }
            continue;
        }

        const A label_score = load(x, base + cls * inner);
        u64 ahead = 0;
        for (i64 c = Group<MAP>::rank(); c < channels; c += Group<MAP>::size()) {
            const A score = load(x, base + c * inner);
            if (label_score < score || (!(score < label_score) && c > cls)) {
                ahead += 1;
            }
        }
        ahead = group_sum<MAP>(ahead);

        if (Group<MAP>::rank() == 0) {
            const bool hit = top_k > 0 && ahead < (u64)top_k;
            correct += hit ? 1.0 : 0.0;
            valid += 1;
            if (per_class != 0) {
                if (hit) {
                    atomicAdd(&per_class[2 * cls], 1ull);
                }
                atomicAdd(&per_class[2 * cls + 1], 1ull);
            }
        }
    }

    finish_loss(correct, valid, work);
}

#define ACCURACY_ENTRY_POINTS(NAME, T)                                                     \
    extern "C" __global__ void CL_LAUNCH_BOUNDS accuracy_fwd_##NAME(   \
        const T* __restrict__ x, const T* __restrict__ label, u64* __restrict__ work,     \
        u64* __restrict__ per_class, i64 outer, i64 channels, i64 inner, int top_k,       \
        int has_ignore, int ignore_label, int mapping) {                                  \
        DISPATCH_MAPPING(mapping, accuracy_fwd_body, x, label, work, per_class, outer,     \
                         channels, inner, top_k, has_ignore, ignore_label);               \
    }

FOR_SELECTED_DTYPE(ACCURACY_ENTRY_POINTS)
