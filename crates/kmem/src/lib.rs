//! # bsdalloc-kmem — NetBSD's kmem(9) general-purpose allocator
//!
//! The allocator memoryallocators(9) calls the default choice: variable
//! sizes, the caller remembers the size and gives it back at free. Sizes
//! up to a page come from pool caches, one per size class; larger sizes
//! are whole pages whose address space comes from the `kva` arena. `no_std`,
//! self-hosted.
//!
//! ```
//! use bsdalloc_kmem::{KM_NOSLEEP, KM_SLEEP, KmemBox, kmem, kmem_alloc, kmem_free, kmem_zalloc};
//!
//! // NetBSD style: sized raw memory; the size selects the cache.
//! let p = kmem_alloc(200, KM_SLEEP).unwrap();      // kmem-00256, 64-byte aligned
//! assert_eq!(p.as_ptr().addr() % 64, 0);
//! let z = kmem_zalloc(3 * 4096, KM_NOSLEEP).unwrap(); // whole pages
//! assert!(unsafe { std::slice::from_raw_parts(z.as_ptr(), 3 * 4096) }.iter().all(|&b| b == 0));
//! unsafe {
//!     kmem_free(p.as_ptr(), 200);
//!     kmem_free(z.as_ptr(), 3 * 4096);
//! }
//!
//! // Rust style: a handle that frees itself with the right size.
//! let b = KmemBox::new([1u64; 20]);
//! assert_eq!(b[19], 1);
//! drop(b);
//!
//! // vmstat -m and vmstat -C rows of the kmem caches.
//! let report = kmem().stats().to_string();
//! assert!(report.contains("kmem-00256"));
//! ```
//!
//! ## Design (the big theory)
//!
//! **Size classes** (spec §4.2, subr_kmem.c rev 1.87). Two candidate
//! tables — 8 … 1024 in 22 steps, looked up in 8-byte slots, and 2048 …
//! 16384, looked up in 2 KiB slots — are filtered for the machine's
//! `PAGE_SIZE` and `COHERENCY_UNIT` ([`SizeClasses::compute`]): a size
//! below the cache line is kept only if it divides the line (`PR_NOTOUCH`,
//! 8-byte aligned), a page multiple is page aligned, and anything else is
//! kept only if it is a multiple of the line (line aligned); nothing above
//! the page is cached. Each kept size is a pool cache `kmem-NNNNN` at
//! `IPL_VM`, and every lookup slot up to it that no smaller class covers
//! points to it. On amd64 (4 KiB, 64 B) that is 8, 16, 32, 64, 128, 192,
//! 256, 320, 384, 448, 512, 768, 1024, 2048 and 4096.
//!
//! **Allocation** (spec §4.3). `allocsz` is the request rounded up to 8,
//! plus the debug footer and redzone when those features are on. If a
//! class covers it, the object comes from that cache (`pool_cache_get`,
//! `PR_WAITOK` for `KM_SLEEP`, `PR_NOWAIT` for `KM_NOSLEEP`); otherwise the
//! request, rounded to pages, is `uvm_km_kmem_alloc(kva, …, INSTANTFIT)`:
//! address space from the `kva` arena — from its quantum caches up to
//! `qcache_max` (16 pages; 4 if the kmem arena is under 64 MiB) — backed by
//! fresh wired pages. `kmem_free` recomputes the same decision from the
//! caller's size, which is why the size must be the allocation's: it picks
//! the cache. Without debug features nothing records the size; large frees
//! are still checked against the kernel map's page bitmaps, so a wrong
//! size there panics before anything changes.
//!
//! **Sleeping.** `KM_SLEEP` never fails: a cache miss goes to the pool,
//! which sleeps for pages, and the kernel map sleeps under its budget
//! ([`KmemConfig::limit_pages`]) until memory is freed — its pagedaemon
//! drains the pools (and so the kmem caches) first. A size no arena can
//! ever hold panics with `KM_SLEEP` (it could only sleep forever) and fails
//! with `KM_NOSLEEP`; sizes whose rounding overflows never reach a cache.
//!
//! **Interrupts.** The caches, `kva` and its quantum caches and the kernel
//! map are all `IPL_VM`, so [`kmem_intr_alloc`] with `KM_NOSLEEP` and
//! [`kmem_intr_free`] work in interrupt handlers up to `IPL_VM`. The plain
//! [`kmem_alloc`], [`kmem_zalloc`] and [`kmem_free`] panic there with
//! NetBSD's "kmem(9) should not be used from the interrupt context".
//!
//! **Arenas** (spec §4.4, §6.3). [`Kmem::bootstrap`] takes a kernel map (or
//! builds one from the configured address space, budget, page source and
//! page size — a page size larger than the page source's runs over
//! [`LargePages`]) and stacks on its `kmem` arena: `kva` (quantum caches
//! from bsdalloc-pool-cache's [`vmem_qcache_init`](bsdalloc_pool_cache::vmem_qcache_init)),
//! `vmem-va` (importing ×16, `VM_LARGEIMPORT`) and `vmem-meta` (backed
//! memory imported from `vmem-va` through `uvm_km_kmem_alloc`), which holds
//! kmem's own metadata (the guard quarantine). The size-class pools take
//! their pages from the map's `kmem` arena directly — NetBSD's single-page
//! `uvm_km_kmem_alloc` on a direct-mapped port — because a `PR_NOWAIT`
//! grow calls its allocator with the pool lock held, and `kva`'s quantum
//! caches would take another pool's lock inside it. (bsdalloc-pool's own
//! metadata arena, also named `vmem-meta`, stacks on the same `kmem` arena
//! directly.)
//!
//! **The instance.** [`Kmem`] is `const`-constructible storage: a `static`.
//! Bootstrap builds everything and publishes it (a release store of the
//! state) under the instance's one lock, so two first users never both
//! build one. The process-wide default behind the `kmem_*` functions is
//! such a static, set up at first use with `std` over pool's standard
//! kernel map, or by [`kmem_init`]. [`Kmem::destroy`] tears an instance
//! down (after its census found nothing outstanding) and gives a map of
//! its own back to the page source.
//!
//! **Locks.** kmem adds none on its paths: a cache hit is pool-cache's
//! CPU-local section; misses take the pool's lock, then the arena and map
//! locks below it (the workspace order). The boot lock is taken only to
//! bootstrap and destroy; the guard quarantine's spin mutex is a leaf.
//!
//! **Self-hosting.** Cache descriptors come from pool-cache's `pcache`
//! pool, arena descriptors and boundary tags from vmem's meta source, the
//! instance lives in a `static`, strings and handles are kmem memory:
//! nothing calls the Rust global allocator.
//!
//! **Debug modes** (spec §4.5), each a feature that costs nothing when off:
//! `kmem-size` (a size footer after the caller's bytes, checked by
//! `kmem_free`: "kmem_free(PTR, SIZE) != allocated size N; overwrote?"),
//! `redzone` (pattern bytes after the caller's bytes, checked at free:
//! "kmem_redzone_check: …"), `poison` (freed objects filled with a pattern,
//! checked when handed out again: "kmem_poison_check: …"), `guard` (every
//! allocation ends at an unmapped guard page, and freed address space
//! waits unmapped in a FIFO quarantine). `debug-all` is the first three
//! with pool-cache's and pool's DIAGNOSTIC checks; `guard` replaces the
//! caches, so it runs on its own. Large allocations carry no footer or
//! redzone, as in NetBSD.
//!
//! **Memory checkers.** Built with `RUSTFLAGS="-Zsanitizer=address --cfg
//! bsdalloc_asan"`, kmem tells AddressSanitizer about its objects: a freed
//! object is poisoned for its whole class size, an allocated one is
//! addressable only for the bytes asked for, so a use after free or an
//! overrun into the class tail is reported although the pool page stays
//! mapped. Built with `RUSTFLAGS="--cfg bsdalloc_valgrind"`, kmem makes
//! Valgrind client requests (through the `crabgrind` crate, which needs
//! a C compiler and Valgrind's headers): an allocation is a
//! `VALGRIND_MALLOCLIKE_BLOCK` of the bytes asked for, its class tail
//! no-access, and a free a `VALGRIND_FREELIKE_BLOCK`, so memcheck reports
//! a use after free, an overrun into the class tail, a double free and a
//! leaked kmem block; kmem's own reads and writes of objects (debug
//! footers, redzones, poison, the pools' links) are marked defined around
//! them. Natively the requests do nothing. Large allocations are
//! memcheck blocks too, but their pages are plain memory again once freed
//! (no use after free seen there); ASan does not track them; guard mode
//! has no hooks.
//!
//! ## NetBSD ↔ Rust
//!
//! | NetBSD | bsdalloc-kmem |
//! |---|---|
//! | `kmem_alloc(size, flags)`, `kmem_zalloc`, `kmem_free(p, size)` | [`kmem_alloc`], [`kmem_zalloc`], [`kmem_free`] (default instance); [`Kmem::alloc`], [`Kmem::zalloc`], [`Kmem::free`] |
//! | `kmem_intr_alloc`, `kmem_intr_zalloc`, `kmem_intr_free` | [`kmem_intr_alloc`], [`kmem_intr_zalloc`], [`kmem_intr_free`]; [`Kmem::intr_alloc`], … |
//! | `KM_SLEEP`, `KM_NOSLEEP`, `km_flag_t` | [`KM_SLEEP`], [`KM_NOSLEEP`], [`KmFlags`] |
//! | `kmem_roundup_size`, `KMEM_ALIGN` | [`kmem_roundup_size`], [`KMEM_ALIGN`] |
//! | `kmem_asprintf`, `kmem_strdup`, `kmem_strdupsize`, `kmem_strndup`, `kmem_strfree` | [`kmem_asprintf`] (`format_args!`), [`kmem_strdup`], [`kmem_strdupsize`], [`kmem_strndup`] → [`KmemStr`]; [`kmem_strfree`] for raw strings |
//! | `kmem_tmpbuf_alloc`, `kmem_tmpbuf_free` | [`kmem_tmpbuf_alloc`], [`kmem_tmpbuf_free`]; safe [`TmpBuf`] |
//! | `kmem_init`, `uvm_km_bootstrap`'s arenas | [`kmem_init`], [`Kmem::bootstrap`] with [`KmemConfig`] |
//! | `kmem_cache[]`, `kmem_cache_big[]`, `kmem_cache_sizes[]`, `kmem_create_caches` | [`SizeClasses`], [`Kmem::cache`] |
//! | `kmem_arena`, `kmem_va_arena`, `kmem_va_meta_arena`, `kmem_meta_arena` | [`Kmem::map`]`().kmem_arena()`, [`Kmem::kva_arena`], [`Kmem::va_meta_arena`], [`Kmem::meta_arena`] |
//! | `COHERENCY_UNIT`, `PAGE_SIZE` | [`KmemConfig::coherency_unit`], [`KmemConfig::page_size`] |
//! | `KMEM_SIZE`, `KMEM_REDZONE`, `KMEM_POISON`, `KMEM_GUARD` (`kmem_guard_depth`) | features `kmem-size`, `redzone`, `poison`, `guard` ([`KmemConfig::guard_depth`]) |
//! | `vmstat -m`, `vmstat -C` rows of `kmem-*` | [`Kmem::stats`] → [`KmemStats`] |
//! | (Rust) typed handles | [`KmemBox`], [`KmemSlice`] |
//!
//! ## Features and cfgs
//!
//! - `std` (default): the user-space machine, and the default instance set
//!   up at first use. Without it, call [`kmem_init`] (after
//!   `pool_subsystem_init` and `pool_cache_subsystem_init`) first.
//! - `kmem-size`, `redzone`, `poison`, `guard`, `debug-all`: see above.
//! - `--cfg bsdalloc_asan` (with `-Zsanitizer=address`) and `--cfg
//!   bsdalloc_valgrind`: the memory checkers' tracking hooks, see above;
//!   each costs nothing when off. The Valgrind one brings in `crabgrind`
//!   (built with `cc` against `valgrind/valgrind.h`) and only then. Test
//!   `valgrind` runs its cases under memcheck itself.
#![no_std]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
// Guard mode replaces the cache path: its helpers go unused then.
#![cfg_attr(feature = "guard", allow(dead_code))]

#[cfg(feature = "std")]
extern crate std;

mod alloc;
mod api;
mod boxed;
mod classes;
mod debug;
mod flags;
#[cfg(feature = "guard")]
mod guard;
mod kmem;
mod owners;
mod pages;
mod stats;
mod strings;
mod track;

pub use api::{
    kmem, kmem_alloc, kmem_free, kmem_init, kmem_intr_alloc, kmem_intr_free, kmem_intr_zalloc,
    kmem_zalloc,
};
pub use boxed::{KmemBox, KmemSlice};
pub use classes::{MAX_CLASSES, SizeClass, SizeClasses};
pub use flags::{
    KM_NOSLEEP, KM_SLEEP, KMEM_ALIGN, KMEM_BIG_MAXSIZE, KMEM_BIG_SHIFT, KMEM_MAXSIZE, KMEM_SHIFT,
    KmFlags, SIZE_SIZE, kmem_roundup_size,
};
pub use kmem::{COHERENCY_UNIT, KMEM_ARENA_SMALL, Kmem, KmemCensus, KmemConfig, KmemError};
pub use pages::LargePages;
pub use stats::{KmemStats, LargeStats};
pub use strings::{
    KmemStr, TmpBuf, kmem_asprintf, kmem_strdup, kmem_strdupsize, kmem_strfree, kmem_strndup,
    kmem_tmpbuf_alloc, kmem_tmpbuf_free,
};
