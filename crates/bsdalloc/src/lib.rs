//! # bsdalloc — NetBSD's kernel memory allocators, as one crate
//!
//! The facade over the workspace's layers, which memoryallocators(9)
//! describes bottom-up: **vmem** (resource arenas), **uvm_km** (the kernel
//! map: address space and wired pages), **pool** (fixed-size objects),
//! **pool_cache** (per-CPU object caches with constructors), **kmem**
//! (general-purpose, sized free) and **malloc(9)** (typed, with per-type
//! statistics). Boot them as one kernel with [`Kernel::boot`], make kmem
//! the program's allocator with [`Global`], and print what NetBSD's
//! `vmstat -m` and `vmstat -C` would with [`Kernel::report`].
//!
//! ```
//! use bsdalloc::prelude::*;
//!
//! // The process-wide kernel, started at first use.
//! let k = kernel();
//!
//! // kmem: sized allocations.
//! let p = kmem_alloc(200, KM_SLEEP).unwrap();
//! unsafe { kmem_free(p.as_ptr(), 200) };
//!
//! // malloc(9): typed allocations, per-type statistics.
//! MALLOC_DEFINE!(M_NETBUF, "netbuf", "network buffers");
//! let m = malloc(1500, &M_NETBUF, M_WAITOK | M_ZERO).unwrap();
//! assert_eq!(M_NETBUF.stats().inuse, 1);
//! unsafe { free(m.as_ptr(), &M_NETBUF) };
//!
//! // A pool cache of constructed objects.
//! let mbufs: PoolCache<[u8; 256]> = PoolCache::new("mbufpl", Ipl::Vm, || [0; 256]);
//! let mb = mbufs.get();
//! assert_eq!(mb[255], 0);
//! drop(mb);
//!
//! // The whole picture.
//! let report = k.report().to_string();
//! assert!(report.contains("kmem-00256"));
//! assert!(report.contains("Memory statistics by type"));
//! ```
//!
//! ## Design (the big theory)
//!
//! **One kernel.** NetBSD has one `kernel_map`, one `kmem_arena`, one set
//! of kmem caches, one list of malloc types; each layer here keeps its
//! process-wide instance in a `static` the same way. [`Kernel`] is the
//! handle to all of them together. [`Kernel::boot`] builds them in
//! NetBSD's boot order from a [`KernelConfig`] — vmem's tag supply, the
//! kernel map with its `kmem` arena (`uvm_km_bootstrap`), made the pools'
//! map (`pool_subsystem_init`: every pool's pages and off-page headers,
//! and the pagedaemon that drains them), kmem's arenas `kva` (with quantum
//! caches), `vmem-va`, `vmem-meta` and its size-class caches
//! (`kmem_init`), and malloc(9) on kmem (`malloc_init`). Without a boot,
//! the first use of any layer starts the same stack with the defaults
//! ([`kernel()`]); after that, [`Kernel::boot`] refuses
//! ([`BootError::AlreadyBooted`]).
//!
//! **Self-hosting.** Every descriptor, tag, header and per-CPU array comes
//! from the stack itself or from page sources; nothing calls the Rust
//! global allocator. That is what lets [`Global`] *be* the global
//! allocator, and what the workspace's tests check (a counting global
//! allocator; a re-entry detector around [`Global`]).
//!
//! **The global allocator.** [`Global`] maps a `Layout` straight onto
//! `kmem_intr_alloc(size, KM_NOSLEEP)` / `kmem_intr_free(p, size)`: Rust
//! passes the size at free, so kmem's sized free needs no header. Larger
//! alignments pick a kmem size whose class is aligned enough (see
//! [`Global`]), alignments above a page go to the kernel map. The `intr`
//! variants make it usable from interrupt handlers, and `KM_NOSLEEP` makes
//! a budget overrun return null (Rust's `handle_alloc_error`) instead of
//! sleeping forever.
//!
//! **Threads and CPUs.** In user space a thread is a CPU: its first
//! allocation claims one of the platform's CPU slots, its exit gives the
//! slot (and the objects cached in it) back. Threads beyond the exclusive
//! slots share the last ones behind a lock, so 10,000 threads work, only
//! slower.
//!
//! **A kernel of your own.** Built without `std`, the platform calls your
//! [`Machine`](platform::Machine); give [`KernelConfig::pages`] and
//! [`KernelConfig::meta`] and boot. Time is yours too: a pool gives an
//! empty page back (to the pagedaemon) only after it has been idle for
//! `POOL_INACTIVE_TIME` seconds of [`pool::UPTIME`], which without `std`
//! moves only when your clock interrupt calls `UPTIME.set(secs)`. See the
//! workspace's test kernel (`tests/kernel`), which boots the whole stack
//! this way on four CPUs and static RAM.
//!
//! ## NetBSD ↔ Rust
//!
//! | NetBSD | bsdalloc |
//! |---|---|
//! | `uvm_km_bootstrap`, `pool_subsystem_init`, `kmem_init`, `malloc_init` at boot | [`Kernel::boot`] with [`KernelConfig`]; [`kernel()`] |
//! | `PAGE_SIZE`, `COHERENCY_UNIT`, `nkmempages` / physmem | [`KernelConfig::page_size`], [`KernelConfig::coherency_unit`], [`KernelConfig::memory_limit`] |
//! | `uvm_kick_pdaemon` | [`Kernel::pagedaemon`] |
//! | `vmstat -m`, `vmstat -C`, `vmem_dump`, malloc types | [`Kernel::report`] → [`Report`] |
//! | (Rust) `#[global_allocator]`, `Allocator` | [`Global`]; [`BootGlobal`] to boot with a configuration at the first allocation |
//! | (extension) an allocation's size from its address (C `free`) | [`KernelConfig::size_lookup`], `kmem::Kmem::lookup_size` |
//! | the layers | [`vmem`], [`uvm_pages`], [`pool`], [`pool_cache`], [`kmem`](mod@kmem), [`kmalloc`], [`platform`] |
//!
//! ## Features
//!
//! - `std` (default): the user-space machine, OS pages, the default kernel
//!   at first use.
//! - `vmem`, `uvm-pages`, `pool`, `pool-cache`, `kmem`, `kmalloc`
//!   (default): the layers, each with the ones below it. [`Kernel`],
//!   [`Global`] and [`Report`] need `kmem`.
//! - `kmem-size`, `redzone`, `poison`, `guard`, `debug-all`: kmem's debug
//!   modes (NetBSD's `KMEM_SIZE`, `KMEM_REDZONE`, `KMEM_POISON`,
//!   `KMEM_GUARD`; `debug-all` the DIAGNOSTIC set). With `kmem-size`, a
//!   `dealloc` with another size than the allocation's panics.
#![no_std]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "std")]
extern crate std;

/// The machine under the allocators: CPUs, IPLs, interrupts, locks,
/// pages (bsdalloc-platform).
pub use bsdalloc_platform as platform;

/// Resource arenas: vmem(9) (bsdalloc-vmem).
#[cfg(feature = "vmem")]
pub use bsdalloc_vmem as vmem;

/// The kernel map: uvm_km(9) address space and wired pages
/// (bsdalloc-uvm-pages).
#[cfg(feature = "uvm-pages")]
pub use bsdalloc_uvm_pages as uvm_pages;

/// Fixed-size object pools: pool(9) (bsdalloc-pool).
#[cfg(feature = "pool")]
pub use bsdalloc_pool as pool;

/// Per-CPU object caches: pool_cache(9) (bsdalloc-pool-cache).
#[cfg(feature = "pool-cache")]
pub use bsdalloc_pool_cache as pool_cache;

/// General-purpose sized allocation: kmem(9) (bsdalloc-kmem).
#[cfg(feature = "kmem")]
pub use bsdalloc_kmem as kmem;

/// Typed allocation with per-type statistics: malloc(9)
/// (bsdalloc-kmalloc).
#[cfg(feature = "kmalloc")]
pub use bsdalloc_kmalloc as kmalloc;

#[cfg(feature = "kmem")]
mod global;
#[cfg(feature = "kmem")]
mod kernel;
#[cfg(feature = "kmem")]
mod report;

#[cfg(feature = "kmem")]
pub use global::{BootGlobal, Global};
#[cfg(feature = "kmem")]
pub use kernel::{BootError, Kernel, KernelConfig, kernel};
#[cfg(feature = "kmem")]
pub use report::Report;

/// The names a program uses most, from every enabled layer.
pub mod prelude {
    pub use bsdalloc_platform::{Ipl, SpinMutex, curcpu, intr_establish, intr_trigger};

    #[cfg(feature = "vmem")]
    pub use bsdalloc_vmem::{Arena, ArenaConfig, IdAllocator, VmFlags};

    #[cfg(feature = "uvm-pages")]
    pub use bsdalloc_uvm_pages::{KernelMap, UvmFlags};

    #[cfg(feature = "pool")]
    pub use bsdalloc_pool::{Pool, PoolConfig, PrFlags};

    #[cfg(feature = "pool-cache")]
    pub use bsdalloc_pool_cache::{CacheBox, PoolCache, PoolCacheConfig};

    #[cfg(feature = "kmem")]
    pub use bsdalloc_kmem::{
        KM_NOSLEEP, KM_SLEEP, KmemBox, KmemSlice, kmem_alloc, kmem_free, kmem_intr_alloc,
        kmem_intr_free, kmem_zalloc,
    };

    #[cfg(feature = "kmem")]
    pub use crate::{BootGlobal, Global, Kernel, KernelConfig, kernel};

    #[cfg(feature = "kmalloc")]
    pub use bsdalloc_kmalloc::{
        M_CANFAIL, M_DEVBUF, M_NOWAIT, M_TEMP, M_WAITOK, M_ZERO, MALLOC_DECLARE, MALLOC_DEFINE,
        MallocType, free, malloc, realloc,
    };
}
