//! Launch arithmetic: mappings, grids and workspaces for many shapes, and
//! errors (not wrong configurations) for shapes the kernels cannot index.
//! Runs without a GPU.

use caffe_loss::gpu::launch::{
    checked_elements, elementwise_launch, row_launch, work_words, RowMapping, BLOCK_THREADS,
    MAX_GRID_BLOCKS, MAX_KERNEL_ELEMENTS, THREAD_ROW_MAX_CHANNELS, WARP_ROW_MAX_CHANNELS,
    WARP_THREADS, WORK_HEADER_WORDS,
};

#[test]
fn mapping_follows_channels_and_inner() {
    let cases = [
        // (channels, inner, expected)
        (1, 1, RowMapping::Thread),
        (THREAD_ROW_MAX_CHANNELS, 1, RowMapping::Thread),
        (THREAD_ROW_MAX_CHANNELS + 1, 1, RowMapping::Warp),
        (31, 1, RowMapping::Warp),
        (33, 1, RowMapping::Warp),
        (1000, 1, RowMapping::Warp),
        (WARP_ROW_MAX_CHANNELS, 1, RowMapping::Warp),
        (WARP_ROW_MAX_CHANNELS + 1, 1, RowMapping::Block),
        (50_000, 1, RowMapping::Block),
        (50_000, 31, RowMapping::Block),
        (50_000, 32, RowMapping::Thread),
        (21, 32 * 32, RowMapping::Thread),
        (1000, 7, RowMapping::Warp),
    ];
    for (channels, inner, expected) in cases {
        assert_eq!(
            RowMapping::for_shape(channels, inner),
            expected,
            "channels {channels}, inner {inner}"
        );
    }
}

#[test]
fn mapping_kernel_args_match_header() {
    let header = caffe_loss::gpu::nvrtc::COMMON_HEADER;
    assert!(header.contains("#define MAP_THREAD 0"));
    assert!(header.contains("#define MAP_WARP 1"));
    assert!(header.contains("#define MAP_BLOCK 2"));
    assert_eq!(RowMapping::Thread.as_kernel_arg(), 0);
    assert_eq!(RowMapping::Warp.as_kernel_arg(), 1);
    assert_eq!(RowMapping::Block.as_kernel_arg(), 2);
}

#[test]
fn block_size_is_whole_warps() {
    assert_eq!(BLOCK_THREADS % WARP_THREADS, 0);
    const { assert!(BLOCK_THREADS <= 1024) };
    assert!(RowMapping::Warp.rows_per_block() * WARP_THREADS == BLOCK_THREADS);
}

#[test]
fn row_grid_covers_rows_up_to_cap() {
    let cases = [
        // (outer, channels, inner, expected grid)
        (1, 1, 1, 1),
        (45, 1, 1, 1),
        (1000, 1, 1, 4),
        (45, 31, 1, 6),
        (45, 33, 1, 6),
        (1000, 1000, 1, 125),
        (3, 50_000, 1, 3),
        (5000, 50_000, 1, MAX_GRID_BLOCKS),
        (3, 5, 37, 1),
        (8, 21, 4096, 128),
        (1 << 30, 2, 1, MAX_GRID_BLOCKS),
    ];
    for (outer, channels, inner, grid) in cases {
        let plan = row_launch(outer, channels, inner).expect("shape fits");
        assert_eq!(
            plan.config.grid_dim,
            (grid, 1, 1),
            "{outer}x{channels}x{inner}"
        );
        assert_eq!(plan.config.block_dim, (BLOCK_THREADS, 1, 1));
        assert_eq!(plan.config.shared_mem_bytes, 0);
        assert_eq!(plan.rows, (outer * inner) as u64);
        assert_eq!(plan.elements, (outer * channels * inner) as u64);
    }
}

#[test]
fn row_grid_reaches_every_row() {
    for (outer, channels, inner) in [(45, 1000, 1), (7, 50_000, 3), (100, 2, 1000)] {
        let plan = row_launch(outer, channels, inner).expect("shape fits");
        let groups_per_step =
            u64::from(plan.config.grid_dim.0) * u64::from(plan.mapping.rows_per_block());
        let steps = plan.rows.div_ceil(groups_per_step);
        assert!(steps >= 1);
        assert!(steps * groups_per_step >= plan.rows);
    }
}

#[test]
fn empty_shapes_still_get_one_block() {
    for (outer, channels, inner) in [(0, 10, 1), (10, 0, 1), (10, 10, 0)] {
        let plan = row_launch(outer, channels, inner).expect("empty shapes are valid");
        assert_eq!(plan.config.grid_dim.0, 1);
    }
    let plan = elementwise_launch(0).expect("zero elements are valid");
    assert_eq!(plan.config.grid_dim.0, 1);
    assert_eq!(plan.elements, 0);
}

#[test]
fn counts_past_32_bits_are_accepted() {
    // 2^36 elements: past any 32-bit index, well within 64-bit ones.
    let plan = row_launch(1 << 20, 1 << 12, 1 << 4).expect("2^36 elements fit");
    assert_eq!(plan.elements, 1 << 36);
    assert_eq!(plan.config.grid_dim.0, MAX_GRID_BLOCKS);

    let plan = elementwise_launch(1 << 33).expect("2^33 elements fit");
    assert_eq!(plan.elements, 1 << 33);
    assert_eq!(plan.config.grid_dim.0, MAX_GRID_BLOCKS);
}

#[test]
fn element_limit_is_inclusive() {
    let limit = usize::try_from(MAX_KERNEL_ELEMENTS).expect("64-bit usize");
    assert!(elementwise_launch(limit).is_ok());
    assert!(elementwise_launch(limit + 1).is_err());
    assert!(row_launch(1, limit, 1).is_ok());
    assert!(row_launch(1, limit + 1, 1).is_err());
}

#[test]
fn overflowing_shapes_are_rejected() {
    let cases = [
        (1usize << 40, 1usize << 30, 1usize),
        (usize::MAX, 2, 1),
        (2, usize::MAX, 2),
        (1 << 21, 1 << 21, 1 << 21),
        (1, 1 << 62, 1),
    ];
    for (outer, channels, inner) in cases {
        let error = row_launch(outer, channels, inner).expect_err("too many elements");
        let message = error.to_string();
        assert!(
            message.contains(&format!("{outer} x {channels} x {inner}")),
            "the message names the shape: {message}"
        );
        assert!(message.contains("more elements than the GPU kernels can index"));
    }
    assert!(elementwise_launch(usize::MAX).is_err());
}

#[test]
fn checked_elements_multiplies_dims() {
    assert_eq!(checked_elements(&[]), Ok(1));
    assert_eq!(checked_elements(&[3, 0, 5]), Ok(0));
    assert_eq!(checked_elements(&[3, 4, 5]), Ok(60));
    assert!(checked_elements(&[usize::MAX, usize::MAX]).is_err());
}

#[test]
fn elementwise_grid_rounds_up() {
    let cases = [
        (1, 1),
        (256, 1),
        (257, 2),
        (1 << 20, 4096.min(MAX_GRID_BLOCKS)),
        (1 << 40, MAX_GRID_BLOCKS),
    ];
    for (elements, grid) in cases {
        let plan = elementwise_launch(elements).expect("fits");
        assert_eq!(plan.config.grid_dim, (grid, 1, 1), "{elements} elements");
        assert_eq!(plan.config.block_dim, (BLOCK_THREADS, 1, 1));
    }
}

#[test]
fn workspace_has_header_and_two_words_per_block() {
    for elements in [0, 1, 1000, 1 << 30] {
        let plan = elementwise_launch(elements).expect("fits");
        let grid = plan.config.grid_dim.0 as usize;
        assert_eq!(work_words(&plan.config), WORK_HEADER_WORDS + 2 * grid);
    }
    assert_eq!(WORK_HEADER_WORDS, 4);
}

#[test]
fn grid_does_not_depend_on_device() {
    // The reduction order follows the grid, so the grid must be a function
    // of the shape alone; two calls agree.
    let first = row_launch(4096, 1000, 1).expect("fits");
    let second = row_launch(4096, 1000, 1).expect("fits");
    assert_eq!(first.config.grid_dim, second.config.grid_dim);
}
