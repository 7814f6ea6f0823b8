//! K7 with bsdalloc's kmem as the global allocator (`bsdalloc::Global`).
//! `BSDALLOC_K7_REPORT=1` prints the kernel's report (vmstat -m, -C, the
//! arenas) to stderr at the end. See `bsdalloc_benches::k7`.

#[global_allocator]
static A: bsdalloc::Global = bsdalloc::Global;

fn main() {
    bsdalloc_benches::k7::program_main(
        "bsdalloc",
        Some(|| bsdalloc::kernel().report().to_string()),
    );
}
