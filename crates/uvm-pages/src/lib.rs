//! # bsdalloc-uvm-pages — NetBSD's uvm_km(9): kernel memory in pages
//!
//! The bottom allocator of the stack: whole pages of kernel memory, wired,
//! pageable or address-space only, and the import functions that let vmem
//! arenas stack on backed memory as NetBSD's kmem arenas do.
//!
//! ```
//! use bsdalloc_uvm_pages::{KernelMap, KmConfig, UvmFlags};
//!
//! let map = KernelMap::bootstrap(KmConfig { size: 1 << 30, ..KmConfig::new() }).unwrap();
//! let ps = map.page_size();
//! let p = map.uvm_km_alloc(3 * ps, 0, UvmFlags::WIRED | UvmFlags::ZERO).unwrap();
//! unsafe { p.as_ptr().add(2 * ps).write(7) }; // resident, zero-filled
//! map.uvm_km_free(p, 3 * ps, UvmFlags::WIRED);
//! ```
//!
//! ## Design
//!
//! **The kernel map** is one address range reserved from the
//! [`PageSource`](bsdalloc_platform::PageSource) at bootstrap
//! ([`KernelMap::bootstrap`]) and never committed up front. Its first half
//! is `kernel_map` proper, split into three regions — wired, pageable and
//! VA-only — each managed by a vmem arena (quantum one page, `IPL_VM`), so
//! that [`KernelMap::uvm_km_free`] can tell from an address alone what type
//! and size it was allocated with, and refuse anything else. The second half
//! is the `kmem_arena` ([`KernelMap::kmem_arena`]): a vmem arena with a
//! static span, on which arenas stack through
//! [`KernelMap::uvm_km_kmem_alloc`] ([`KmemSource`]).
//!
//! **Pages.** Bitmaps over the whole range (committed, wired, in use, the
//! first page of each allocation, the pages of VA-only allocations),
//! atomics in memory taken from the page source itself, record each
//! page's state. The start bits with the in-use (or VA-only) bits give
//! every allocation's exact extent, guard pages excluded: a free is
//! checked against it (and against its vmem arena's busy segment where the
//! arena can see it) before anything changes, so a wrong size or guard
//! split is refused without touching a neighbour, and
//! [`KernelMap::enter`] stays inside one VA-only allocation. Backing a
//! range commits the runs that are not committed (`mlock` for wired
//! memory, where permitted) and reuses the rest. A freed wired
//! page stays committed as long as the map's cached pages stay within the
//! *free-page target*; so allocation after free in steady state makes no OS
//! call. Above the target, and always for pageable memory (which must read
//! as zero on demand), freed pages go straight back to the OS
//! (`MADV_DONTNEED`: resident memory really drops).
//!
//! **Raw pointers** live in one module (`raw.rs`): the page bitmaps (atomics
//! in the meta area, behind a bounds-checked safe API once carved) and the
//! reservation, which turns map addresses — integers, as vmem hands them
//! out — into pointers with the reservation's provenance (`with_addr`,
//! never an integer cast), so that Miri's strict provenance can check the
//! map.
//!
//! **The budget and the pagedaemon.** With a page limit set, a request that
//! would commit more pages than the limit first runs a pagedaemon pass
//! ([`KernelMap::pagedaemon`]): cached pages go back to the OS, then every
//! registered drain hook runs (pools register theirs), then cached pages go
//! back again, and sleepers are woken if memory came back. If memory is
//! still short, `NOWAIT` (and `CANFAIL`) requests fail; the others sleep on
//! the `uvmwait` channel until a free brings memory back — NetBSD's
//! `uvm_wait` — and run another pass only after a free (which may have
//! left cached pages), never on a wakeup that brought nothing: waiters
//! with nothing freed stay asleep instead of waking each other. Memory a
//! drain hook could give back but that no free announces (a pool page
//! that went idle) is found at the next free or the next request.
//!
//! **Locks.** The map's state lock is an `IPL_VM` spin mutex, held for bit
//! updates, accounting and giving cached pages back; never across a sleep
//! or a drain hook. Each region's vmem arena has its own lock. A page is
//! marked in use under the state lock before its allocation commits it, and
//! cached pages are given back only under that lock, so the two never race.
//! Order (the workspace's, outermost first): pool list → pool_cache → pool
//! → region or kmem arena → map state lock → vmem's tag supply. The page
//! source is called under the state lock: it is the machine, below every
//! lock (see `PageSource`); drain hooks and stats writers never are.
//!
//! ## Flags in user space
//!
//! | flag | here |
//! |---|---|
//! | `UVM_KMF_WIRED` | committed and `mlock`ed now (if `RLIMIT_MEMLOCK` allows; else resident, counted as wired, see [`PageStats`](bsdalloc_platform::PageStats)) |
//! | `UVM_KMF_PAGEABLE` | read-write, demand zero: pages appear on first touch |
//! | `UVM_KMF_VAONLY` | address space only, inaccessible until [`KernelMap::enter`] |
//! | `UVM_KMF_ZERO` | zero-filled; fresh pages are zero, reused ones are cleared |
//! | `UVM_KMF_CANFAIL` | fail after one pagedaemon pass instead of sleeping |
//! | `UVM_KMF_NOWAIT` | never sleep: fail on shortage |
//! | `UVM_KMF_WAITVA` | sleep for address space instead of failing |
//! | `UVM_KMF_TRYLOCK` | accepted: the map lock is a spin mutex never held across a sleep |
//! | `UVM_KMF_EXEC` | mapped read-write-execute |
//! | `UVM_KMF_COLORMATCH` | VA-only; user space has no cache colours: accepted, the colour is ignored |
//!
//! ## NetBSD ↔ Rust
//!
//! | NetBSD | bsdalloc-uvm-pages |
//! |---|---|
//! | `uvm_km_bootstrap`, `kernel_map` | [`KernelMap::bootstrap`] with [`KmConfig`] → `&'static KernelMap` |
//! | `uvm_km_alloc(kernel_map, size, align, flags)` | [`KernelMap::uvm_km_alloc`] |
//! | `uvm_km_free(kernel_map, va, size, type)` | [`KernelMap::uvm_km_free`] |
//! | `uvm_km_kmem_alloc`, `uvm_km_kmem_free` | [`KernelMap::uvm_km_kmem_alloc`], [`KernelMap::uvm_km_kmem_free`], [`KmemSource`] as vmem import/release |
//! | `kmem_arena` | [`KernelMap::kmem_arena`], with its import source [`KernelMap::kmem_source`] |
//! | `uvm_km_va_starved_p` | [`KernelMap::va_starved`] |
//! | `pmap_kenter_pa`, `pmap_kremove` (for VA-only) | [`KernelMap::enter`], [`KernelMap::remove`] |
//! | `uvm_kick_pdaemon`, pagedaemon | [`KernelMap::pagedaemon`] |
//! | pool drain hooks called at shortage | [`DrainHook`] (a trait: the hook's state is its `self`), [`KernelMap::register_drain_hook`] |
//! | (Rust) a map address as a pointer | [`KernelMap::va_ptr`] (keeps the reservation's provenance) |
//! | `uvmexp.free`, `freetarg`, limits | [`KmConfig::limit_pages`], [`KmConfig::free_target_pages`], [`KmStats`] |
//! | `UVM_KMF_*` | [`UvmFlags`] |
//! | guard pages (old `KMEM_GUARD`) | [`KernelMap::uvm_km_alloc_guarded`], [`KernelMap::uvm_km_free_guarded`] |
#![no_std]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "std")]
extern crate std;

mod flags;
mod map;
mod pages;
mod raw;
mod source;

pub use flags::{BootError, KmType, UvmFlags};
pub use map::{KernelMap, KmConfig, KmStats};
pub use pages::DrainHook;
pub use source::KmemSource;
