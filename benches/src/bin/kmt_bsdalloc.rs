//! K2-K4 through bsdalloc's C ABI: `bsdalloc_cmalloc`'s exported `malloc`
//! and `free`, linked from the rlib, which are then this process's
//! `malloc` and `free` for everything in it (std's `System` included).
//! `kmt_bsdalloc WORKLOAD THREADS [--quick]`; see `bsdalloc_benches::kmt`.

use bsdalloc_benches::kmt::{CAlloc, child_main};

struct Bsdalloc;

impl CAlloc for Bsdalloc {
    const NAME: &'static str = "bsdalloc";

    #[inline]
    unsafe fn malloc(size: usize) -> *mut u8 {
        // SAFETY: C's malloc: always safe to call.
        unsafe { bsdalloc_cmalloc::malloc(size) }.cast()
    }

    #[inline]
    unsafe fn free(p: *mut u8, _size: usize) {
        // SAFETY: the caller's contract: a live block of this malloc.
        unsafe { bsdalloc_cmalloc::free(p.cast()) }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    child_main::<Bsdalloc>(&args);
}
