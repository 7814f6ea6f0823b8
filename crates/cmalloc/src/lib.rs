//! # bsdalloc-cmalloc — the C allocation ABI over kmem(9)
//!
//! `malloc`, `free`, `calloc`, `realloc`, `reallocarray`,
//! `posix_memalign`, `aligned_alloc`, `memalign`, `valloc`, `pvalloc` and
//! `malloc_usable_size`, exported from a shared library that any
//! dynamically linked program can load first:
//!
//! ```text
//! cargo build --release -p bsdalloc-cmalloc
//! LD_PRELOAD=target/release/libbsdalloc_cmalloc.so BSDALLOC_SHOW_STATS=1 python3 -c 'print(sum(range(10**6)))'
//! ```
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

use core::ffi::{c_int, c_void};
use core::ptr;

mod boot;
mod early;
mod fork;
mod heap;

pub use boot::{Stats, parse_size};

use heap::{MIN_ALIGN, enomem, set_errno};

/// `malloc(3)`: `size` bytes, 16-byte aligned; `malloc(0)` is a unique
/// pointer. Null with `errno = ENOMEM` when the memory (or the budget) is
/// exhausted.
///
/// # Safety
/// Callable from C at any time: always safe to call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    let Some(_g) = boot::enter() else {
        return early::alloc(size, MIN_ALIGN).cast();
    };
    heap::alloc(size, false).cast()
}

/// `free(3)`: `free(NULL)` does nothing; a pointer this allocator did not
/// return is reported ("free(): invalid pointer") and aborts.
///
/// # Safety
/// `p` is null or a live block of this allocator, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(p: *mut c_void) {
    let p = p.cast::<u8>();
    if p.is_null() || early::contains(p) {
        return;
    }
    if !boot::is_up() {
        heap::invalid("free", p);
    }
    let Some(_g) = boot::enter() else {
        heap::leak();
        return;
    };
    // SAFETY: the caller's contract; the kernel is up.
    unsafe { heap::free(p) }
}

/// `calloc(3)`: `nmemb * size` zeroed bytes; null with `ENOMEM` if the
/// product overflows.
///
/// # Safety
/// Always safe to call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn calloc(nmemb: usize, size: usize) -> *mut c_void {
    let Some(n) = nmemb.checked_mul(size) else {
        return enomem().cast();
    };
    let Some(_g) = boot::enter() else {
        return early::alloc(n, MIN_ALIGN).cast();
    };
    heap::alloc(n, true).cast()
}

/// `realloc(3)`, as glibc: `realloc(NULL, n)` is `malloc(n)`;
/// `realloc(p, 0)` frees `p` and returns null; on failure null with
/// `ENOMEM` and `p` untouched. Stays in place when the new size has the
/// same size class or the same whole pages.
///
/// # Safety
/// `p` is null or a live block of this allocator; unless null is returned
/// for a nonzero size, `p` is not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    let p = p.cast::<u8>();
    if p.is_null() {
        // SAFETY: always safe.
        return unsafe { malloc(size) };
    }
    if size == 0 {
        // SAFETY: the caller's contract.
        unsafe { free(p.cast()) };
        return ptr::null_mut();
    }
    if early::contains(p) {
        // SAFETY: a block of the bootstrap arena, never given back.
        let old = unsafe { early::size(p) };
        // SAFETY: always safe.
        let q = unsafe { malloc(size) }.cast::<u8>();
        if !q.is_null() {
            // SAFETY: disjoint blocks of at least the copied length.
            unsafe { ptr::copy_nonoverlapping(p, q, old.min(size)) };
        }
        return q.cast();
    }
    if !boot::is_up() {
        heap::invalid("realloc", p);
    }
    let Some(_g) = boot::enter() else {
        // Inside the allocator: a fresh block from the bootstrap arena,
        // the old one left where it is.
        // SAFETY: a live block of ours (the caller's contract).
        let old = unsafe { heap::usable_size(p) };
        let q = early::alloc(size, MIN_ALIGN);
        if !q.is_null() {
            // SAFETY: disjoint blocks of at least the copied length.
            unsafe { ptr::copy_nonoverlapping(p, q, old.min(size)) };
            heap::leak();
        }
        return q.cast();
    };
    // SAFETY: the caller's contract; the kernel is up.
    unsafe { heap::realloc(p, size) }.cast()
}

/// `reallocarray(3)`: `realloc(p, nmemb * size)`, or null with `ENOMEM`
/// (and `p` untouched) if the product overflows.
///
/// # Safety
/// As [`realloc`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, nmemb: usize, size: usize) -> *mut c_void {
    match nmemb.checked_mul(size) {
        // SAFETY: the caller's contract.
        Some(n) => unsafe { realloc(p, n) },
        None => enomem().cast(),
    }
}

/// `n` bytes aligned to `align` (a power of two), errno untouched.
fn aligned(align: usize, n: usize) -> *mut u8 {
    let Some(_g) = boot::enter() else {
        return early::alloc(n, align);
    };
    heap::alloc_aligned(align, n)
}

/// `posix_memalign(3)`: `EINVAL` unless `align` is a power of two and a
/// multiple of `sizeof(void *)`; `ENOMEM` when out of memory; `*memptr`
/// is set only on success.
///
/// # Safety
/// `memptr` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_memalign(
    memptr: *mut *mut c_void,
    align: usize,
    size: usize,
) -> c_int {
    if !align.is_power_of_two() || align < size_of::<*mut c_void>() {
        return libc::EINVAL;
    }
    // SAFETY: errno is this thread's.
    let saved = unsafe { *libc::__errno_location() };
    let p = aligned(align, size);
    set_errno(saved);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller's contract.
    unsafe { memptr.write(p.cast()) };
    0
}

/// `aligned_alloc(3)` (C11), as glibc 2.38: null with `EINVAL` unless
/// `align` is a power of two; the size need not be a multiple of it.
///
/// # Safety
/// Always safe to call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    aligned(align, size).cast()
}

/// `memalign(3)`, as glibc: an alignment that is not a power of two is
/// rounded up to one (null with `EINVAL` if there is none).
///
/// # Safety
/// Always safe to call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    let Some(align) = align.checked_next_power_of_two() else {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    };
    aligned(align, size).cast()
}

fn page_size() -> usize {
    // SAFETY: no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// `valloc(3)`: `memalign(PAGE_SIZE, size)`.
///
/// # Safety
/// Always safe to call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    aligned(page_size(), size).cast()
}

/// `pvalloc(3)`: `valloc` of the size rounded up to whole pages (one page
/// for 0).
///
/// # Safety
/// Always safe to call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let ps = page_size();
    match size.max(1).checked_next_multiple_of(ps) {
        Some(n) => aligned(ps, n).cast(),
        None => enomem().cast(),
    }
}

/// `malloc_usable_size(3)`: the bytes the block at `p` can hold (its size
/// class, its whole pages); 0 for null.
///
/// # Safety
/// `p` is null or a live block of this allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    let p = p.cast::<u8>();
    if p.is_null() {
        return 0;
    }
    if early::contains(p) {
        // SAFETY: a block of the bootstrap arena.
        return unsafe { early::size(p) };
    }
    if !boot::is_up() {
        heap::invalid("malloc_usable_size", p);
    }
    // SAFETY: the caller's contract; the kernel is up. No guard: a lookup
    // takes no lock and allocates nothing.
    unsafe { heap::usable_size(p) }
}
