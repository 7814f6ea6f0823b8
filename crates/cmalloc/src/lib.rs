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
//!
//! The same functions are callable from Rust through the rlib (linking it
//! makes them the program's `malloc` too):
//!
//! ```
//! use bsdalloc_cmalloc::{free, malloc, malloc_usable_size};
//!
//! unsafe {
//!     let p = malloc(100);
//!     assert_eq!(p.addr() % 16, 0);
//!     assert_eq!(malloc_usable_size(p), 128); // kmem-00128
//!     free(p);
//! }
//! ```
//!
//! ## Environment
//!
//! - `BSDALLOC_LIMIT=<bytes>` (suffix `K`, `M` or `G`, powers of 1024):
//!   the kernel map's memory budget. At the budget the pagedaemon drains
//!   the caches; then `malloc` returns null with `ENOMEM`.
//! - `BSDALLOC_SHOW_STATS=1`: at exit, the facade's report
//!   (`vmstat -m`, `vmstat -C`, the kernel map, the arenas) and this
//!   crate's counters on standard error.
//!
//! A bad value is refused with one line on standard error
//! (`bsdalloc: BSDALLOC_LIMIT=lots: not a size …`) and ignored. Both are
//! read with `getenv`, which does not allocate.
//!
//! ## Design (the big theory)
//!
//! **Sizes.** `malloc(n)` is `kmem_intr_alloc(roundup(max(n, 1), 16),
//! KM_NOSLEEP)`: the `intr` variant because a C program may allocate in a
//! signal handler, `KM_NOSLEEP` because a C caller wants `NULL` and
//! `ENOMEM`, not a thread asleep until memory is freed. Sizes up to the
//! page go to kmem's size-class caches, larger ones to whole pages from
//! the kmem arena. Sizes that overflow the rounding or that no arena can
//! hold are null with `ENOMEM` before kmem is asked.
//!
//! **Alignment.** glibc promises 16 bytes on x86-64 and programs (SSE
//! code, `max_align_t`) rely on it. kmem promises 8 below the cache line,
//! the line from the 64-byte class up, the page for page classes and
//! whole pages. Rounding every size to 16 leaves only the 16- and
//! 32-byte classes below the line, and their objects are 16-aligned in
//! fact: they are `PR_NOTOUCH` pools (page header off the page, item
//! offset 0) whose item size divides the page, so there is no slack and
//! no colouring, and every object sits at a multiple of its size from a
//! page boundary. The tests check every size from 0 to 70,000 bytes;
//! debug builds assert it on every `malloc`. Larger alignments raise the
//! size to a class aligned enough (the line, the page) as the facade's
//! `Global` does; above the page, see the next paragraph.
//!
//! **Unsized free.** `free(p)` gets no size; kmem's free needs one. Two
//! ways were measured (`examples/pairs.rs`, release build, x86-64,
//! `valgrind --tool=callgrind`, instructions per `malloc`+`free` pair
//! from the difference of runs of 100,000 and 200,000 pairs; RSS of
//! 1,000,000 live blocks of 8 to 64 bytes, 8 bytes of which per block are
//! the benchmark's own pointer vector):
//!
//! | free finds the size | 32 B pair | 1000 B pair | 100 KB pair | RSS per small block |
//! |---|---:|---:|---:|---:|
//! | **page tags** (kmem's `lookup_size`, the default) | 337 | 343 | 6466 | **57.1 B** |
//! | a 16-byte header before each block (malloc(9)'s way, `--features header`) | 311 | 317 | 6389 | 88.0 B |
//!
//! The header saves 26 instructions a pair (8%: no tag load, no class
//! table load) and costs 54% more memory for small objects — a 24-byte
//! request becomes a 48-byte one, the 64-byte class — and pushes every
//! power-of-two size into the next class. Small objects dominate C
//! programs, so the default is the lookup: `Kernel::boot` with
//! `size_lookup(true)` keeps one 32-bit tag per page of the kmem arena
//! (written when a page changes hands, never on the object paths), and
//! `kmem().lookup_size(p)` reads the class's object size, or the whole
//! pages of a large allocation, in one load.
//!
//! **Alignments above the page** (`posix_memalign(&p, 65536, n)`) are
//! whole pages of `n + align - PAGE_SIZE` bytes from kmem and the aligned
//! address inside them. If that is not the first page, the 16 bytes before
//! it hold the first page's address and a check word. `free` sees no tag
//! on the address's page (`lookup_size` is `None` for an inner page), walks
//! back a page at a time — at most the largest such alignment handed out —
//! to the first tagged page, and accepts the pointer only if that is a
//! large allocation reaching past it and the header matches; every page
//! it reads is inside that live allocation. The unused head and tail are
//! the cost; such alignments are rare.
//!
//! **Colouring.** kmem hands out its classes of a page or more, and whole
//! pages, page aligned. Page-aligned buffers 4K-alias one another and the
//! kernel's page-cache pages, and the kernel's copy into them (`read`,
//! `pread`: `rep movsb`) ran 3.5 times slower: sqlite3, whose page buffers
//! are 4096 + ~270 bytes, spent 30% of its time there (9% under glibc),
//! and took 1.36 times glibc's time. So a `malloc` whose block leaves room
//! starts it 0, 64, 128 … bytes into its first page, by the page's number,
//! as pool(9) colours the first item of successive pages; `free` and
//! `realloc` round the address down to the page to find the block. sqlite3
//! went to 1.03 times glibc. `posix_memalign` and friends are not
//! coloured.
//!
//! **Invalid frees** are always detected where the lookup can tell: a
//! pointer on no tagged page (the stack, static data, another
//! allocator's memory, an inner page of a large block, a large block
//! freed already) prints `free(): invalid pointer 0x…` and aborts, as
//! glibc does; the check costs the valid frees nothing (the lookup failed
//! already). A pointer into the middle of a small object, or a second free
//! of one, goes unseen: kmem's debug features catch those, but
//! `kmem-size` and `redzone` want the size the caller asked for, which an
//! unsized free does not have, so this crate does not enable them.
//!
//! **Never recursing.** While a thread is inside the allocator a
//! thread-local flag is set (`const`-initialised, no destructor: reading
//! it never allocates, at any point of a thread's life). What comes back
//! in meanwhile — glibc's `pthread_setspecific` `calloc`ing a second-level
//! key block while the platform makes the thread a CPU, `pthread_atfork`
//! and `atexit` registration during the boot, a program's signal handler
//! — is served from a 1 MiB static bump arena that is never given back:
//! `free` recognises its addresses and ignores them, `realloc` copies out
//! of it. A `free` that comes in while the flag is set is leaked (and
//! counted) rather than sent into a kmem call on the same CPU. The kernel
//! boots at the first allocation, with the flag set, whichever thread
//! comes first (the others wait); nothing runs at load time, so
//! allocations before constructors, from `ld.so` or `dlsym`, work.
//!
//! **Threads.** A thread is a CPU from its first allocation (the
//! platform's slots); its exit gives the slot's cached objects back from a
//! `pthread_key` destructor. A `free` from a destructor that runs later —
//! another library's key, a C++ `thread_local`, Rust TLS — simply makes the
//! thread a CPU again. Threads beyond the 512 slots share the last 16 on a
//! locked path.
//!
//! **fork.** A child has one thread; a lock another thread held at the
//! fork is held for ever. The `pthread_atfork` prepare handler closes a
//! door and waits until no thread is inside the allocator, so no
//! allocator lock is held and no CPU is inside a CPU-local section when
//! the process is copied; the fast path pays one thread-local store and
//! load for it (an asymmetric Dekker pair with `membarrier`, no atomic
//! read-modify-write; see the `fork` module). Then it takes the
//! platform's own locks in order (`fork_prepare`): the exit lock, held by
//! a thread from its CPU exit hooks to its slot's release, and every CPU
//! slot's lock. In the child the other threads' slots are freed and their
//! cached objects move to the depots (`fork_child`, `pool_cache_cpu_init`
//! on their behalf): one CPU, nothing stranded. Fork handlers that other
//! libraries registered before the allocator booted run after its prepare
//! handler, with the door closed: the forking thread counts as inside the
//! allocator until its parent or child handler, so what they allocate
//! comes from the bootstrap arena instead of waiting for ever. Without
//! `membarrier` the door is best effort.
//!
//! ## glibc / NetBSD ↔ here
//!
//! | C / glibc | NetBSD kernel | here |
//! |---|---|---|
//! | `malloc(n)` | `kmem_intr_alloc(n, KM_NOSLEEP)` | [`malloc`]: size rounded to 16 |
//! | `free(p)` | `kmem_intr_free(p, size)` | [`free`]: size from the page tags (`Kmem::lookup_size`) |
//! | `calloc` | `kmem_intr_zalloc` (whole pages: only reused ones cleared) | [`calloc`], overflow → `ENOMEM` |
//! | `realloc`, `reallocarray` | (none; malloc(9)'s `realloc`) | [`realloc`]: in place in the same class or pages (`Kmem::resize_in_place`) |
//! | `posix_memalign`, `aligned_alloc`, `memalign`, `valloc`, `pvalloc` | kmem's class alignment; `uvm_km_alloc` alignment | size raised to an aligned class; over-allocated pages above the page |
//! | `malloc_usable_size` | `kmem_roundup_size` | [`malloc_usable_size`]: the class size or whole pages |
//! | `M_ARENA_MAX`, `MALLOC_ARENA_*` | per-CPU pool caches | one CPU slot per thread |
//! | `MALLOC_CHECK_`, `mallopt` | `KMEM_SIZE`, `KMEM_REDZONE`, … | invalid-free check always on |
//! | `malloc_stats()` | `vmstat -m`, `vmstat -C` | `BSDALLOC_SHOW_STATS=1`, [`Stats`] |
//! | `ulimit -v` | `nkmempages` | `BSDALLOC_LIMIT` |
//!
//! ## Features
//!
//! - `header`: measurement only — a 16-byte size header before every
//!   block instead of the page tags (the table above).
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
