//! K2-K4 through the peers' C-style entry points, each prefixed so that
//! they live side by side with glibc's: `kmt_peers ALLOC WORKLOAD THREADS
//! [--quick]`, ALLOC one of `mimalloc` (`mi_malloc`/`mi_free`), `glibc`
//! (`malloc`/`free`) and, built with `c-peers`, `jemalloc`
//! (`_rjem_malloc`/`_rjem_free`), `rpmalloc` (`rpmalloc`/`rpfree`) and
//! `snmalloc` (`sn_rust_alloc`/`sn_rust_dealloc`: snmalloc-sys builds only
//! its Rust entry points, which take the size, so its free is sized).
//! One allocator per process, so peak RSS is its own (the others are
//! linked but unused). See `bsdalloc_benches::kmt`.

use bsdalloc_benches::kmt::{CAlloc, child_main};

struct Mimalloc;

impl CAlloc for Mimalloc {
    const NAME: &'static str = "mimalloc";

    #[inline]
    unsafe fn malloc(size: usize) -> *mut u8 {
        // SAFETY: mi_malloc is always safe to call.
        unsafe { libmimalloc_sys::mi_malloc(size) }.cast()
    }

    #[inline]
    unsafe fn free(p: *mut u8, _size: usize) {
        // SAFETY: the caller's contract: a live block of mi_malloc.
        unsafe { libmimalloc_sys::mi_free(p.cast()) }
    }
}

struct Glibc;

impl CAlloc for Glibc {
    const NAME: &'static str = "glibc";

    #[inline]
    unsafe fn malloc(size: usize) -> *mut u8 {
        // SAFETY: malloc is always safe to call.
        unsafe { libc::malloc(size) }.cast()
    }

    #[inline]
    unsafe fn free(p: *mut u8, _size: usize) {
        // SAFETY: the caller's contract: a live block of malloc.
        unsafe { libc::free(p.cast()) }
    }
}

#[cfg(feature = "c-peers")]
struct Jemalloc;

#[cfg(feature = "c-peers")]
impl CAlloc for Jemalloc {
    const NAME: &'static str = "jemalloc";

    #[inline]
    unsafe fn malloc(size: usize) -> *mut u8 {
        // SAFETY: jemalloc's malloc is always safe to call.
        unsafe { tikv_jemalloc_sys::malloc(size) }.cast()
    }

    #[inline]
    unsafe fn free(p: *mut u8, _size: usize) {
        // SAFETY: the caller's contract: a live block of jemalloc's malloc.
        unsafe { tikv_jemalloc_sys::free(p.cast()) }
    }
}

#[cfg(feature = "c-peers")]
struct Rpmalloc;

#[cfg(feature = "c-peers")]
impl CAlloc for Rpmalloc {
    const NAME: &'static str = "rpmalloc";

    #[inline]
    unsafe fn malloc(size: usize) -> *mut u8 {
        // SAFETY: built with `preload` (the rpmalloc crate asks for it),
        // rpmalloc initialises itself and each thread on first use.
        unsafe { rpmalloc_sys::rpmalloc(size) }.cast()
    }

    #[inline]
    unsafe fn free(p: *mut u8, _size: usize) {
        // SAFETY: the caller's contract: a live block of rpmalloc.
        unsafe { rpmalloc_sys::rpfree(p.cast()) }
    }
}

#[cfg(feature = "c-peers")]
struct Snmalloc;

#[cfg(feature = "c-peers")]
impl CAlloc for Snmalloc {
    const NAME: &'static str = "snmalloc";
    const SIZED_FREE: bool = true;

    #[inline]
    unsafe fn malloc(size: usize) -> *mut u8 {
        // SAFETY: alignment 16 is a power of two.
        unsafe { snmalloc_sys::sn_rust_alloc(16, size) }.cast()
    }

    #[inline]
    unsafe fn free(p: *mut u8, size: usize) {
        // SAFETY: the caller's contract: a live block of sn_rust_alloc(16,
        // size).
        unsafe { snmalloc_sys::sn_rust_dealloc(p.cast(), 16, size) };
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((alloc, rest)) = args.split_first() else {
        eprintln!("usage: kmt_peers ALLOC WORKLOAD THREADS [--quick]");
        std::process::exit(2);
    };
    match alloc.as_str() {
        "mimalloc" => child_main::<Mimalloc>(rest),
        "glibc" => child_main::<Glibc>(rest),
        #[cfg(feature = "c-peers")]
        "jemalloc" => child_main::<Jemalloc>(rest),
        #[cfg(feature = "c-peers")]
        "rpmalloc" => child_main::<Rpmalloc>(rest),
        #[cfg(feature = "c-peers")]
        "snmalloc" => child_main::<Snmalloc>(rest),
        a => {
            eprintln!(
                "kmt_peers: unknown allocator {a} (jemalloc, rpmalloc, snmalloc need c-peers)"
            );
            std::process::exit(2);
        }
    }
}
