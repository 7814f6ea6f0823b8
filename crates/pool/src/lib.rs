//! # bsdalloc-pool — NetBSD's pool(9) resource-pool allocator
//!
//! Fixed-size items carved from pages: the allocator under NetBSD's
//! pool_cache and kmem, usable on its own where a subsystem wants a
//! guaranteed reserve (low-water mark), a bound (hard limit), interrupt-safe
//! allocation, or items that are not memory at all. `no_std`, self-hosted.
//!
//! ```
//! use bsdalloc_platform::Ipl;
//! use bsdalloc_pool::{Pool, PoolConfig, PrFlags, RawPool, VmstatOptions, pool_vmstat_m};
//!
//! // NetBSD style: a pool on caller storage, raw items.
//! static MBUFS: RawPool = RawPool::new(PoolConfig::new("mbufpl", 256).ipl(Ipl::Vm));
//! MBUFS.init();
//! MBUFS.setlowat(32); // keep 32 free items for interrupt handlers
//! MBUFS.sethardlimit(1024, Some("WARNING: mbuf limit reached"), 60);
//! let m = MBUFS.get(PrFlags::NOWAIT | PrFlags::ZERO).unwrap();
//! unsafe { MBUFS.put(m) };
//!
//! // Rust style: typed boxes that put themselves back.
//! let pool: Pool<[u64; 8]> = Pool::new("vectors", Ipl::None);
//! let v = pool.get([7; 8]);
//! assert_eq!(v[3], 7);
//! drop(v);
//!
//! // vmstat -m over every pool in the system.
//! let table = pool_vmstat_m(VmstatOptions::default()).to_string();
//! assert!(table.contains("mbufpl"));
//! ```
//!
//! ## Design (the big theory)
//!
//! **Pages and items.** A pool takes pages of `pa_pagesz` bytes from its
//! back-end allocator ([`PoolAllocator`]) and cuts each into
//! `itemsperpage` items of `pr_size` bytes. Each page has a header
//! (`struct pool_item_header`: list links, the page address, the idle
//! timestamp, items out, the first item's offset, and the free-item state).
//! [`RawPool::init`] decides the layout exactly as subr_pool.c rev 1.284
//! does ([`layout::compute`], spec §2.1): the item grows to the free-list
//! record and to its alignment; the header goes *in* the page when forced,
//! when items are smaller than `min(page/16, 8 × header)`, or when it costs
//! no item, and *off* the page otherwise (never for `PR_NOTOUCH` or
//! `PR_NOALIGN`); free items are tracked by a bitmap in the header
//! (`PR_NOTOUCH`, off-page headers, or on-page headers with room for the
//! bits) or by a list threaded through the free items. Off-page headers come
//! from eight header pools `phpool-N` sized for N-bit bitmaps, and are found
//! from an item by a splay tree keyed by page address (exact page, or the
//! nearest page below for `PR_NOALIGN`); on-page headers by masking the
//! item's address. The slack at the end of a page colours successive pages'
//! first item by 0, align, 2·align … up to `maxcolor`.
//!
//! **Page lists.** Every page is on one of three lists: empty (nothing
//! out), partial, full. The current page is the first partial page, else the
//! first empty one, else none — and it is none iff no item is free. A get
//! takes the lowest free bit or the list head of the current page; a put
//! returns the item and moves its page between lists. A page that becomes
//! empty is released at once only above `maxpages` (set by the hard limit
//! and by prime) and above the minimums; otherwise it waits on the empty
//! list with a timestamp for [`RawPool::reclaim`], which releases pages
//! idle ≥ 10 s (the pool's [`Clock`]). `pool_sethiwat`'s `maxitems` is
//! recorded but, as in rev 1.284, not used by that decision.
//!
//! **Growing.** One grower at a time (`PR_GROWING`): a `PR_WAITOK` grower
//! drops the pool lock around the back-end allocator (which may sleep), a
//! `PR_NOWAIT` one keeps it (`PR_GROWINGNOWAIT`); a waiting caller restarts
//! (`ERESTART`) when the grower is done. A `PR_NOWAIT` page failure calls
//! the pool's drain hook once and retries once. Gets below the low-water
//! marks catch up with `PR_NOWAIT` growth.
//!
//! **Invariants** ([`RawPool::chk`] checks them): each page is on the list
//! its items-out count says; `nitems` is the free items of all pages,
//! `nout = npages × itemsperpage − nitems`, `nidle` the empty pages;
//! `curpage` is null iff `nitems == 0`; every free list item holds the
//! magic (feature `magic`) and lies at an item of its own page.
//!
//! **Locks.** The pool lock is a `KMutex` at the pool's IPL — NetBSD's
//! `mutex_init(MUTEX_DEFAULT, ipl)`: adaptive at `IPL_NONE`, an IPL spin
//! mutex above, so an `IPL_VM` pool is usable from interrupt handlers up to
//! `IPL_VM`; an `IPL_NONE` pool panics there with NetBSD's message. Order
//! (the workspace's): pool list → pool → header pool (a leaf, taken inside
//! a pool's lock by a `PR_NOWAIT` grow) → vmem arena → kernel map. The
//! pool list lock is adaptive and walked by pinning (`pr_refcnt`):
//! [`for_each_pool`], [`pool_drain`], `vmstat -m`, `pool_whatis` call out
//! with no lock held, and destroy waits for pins. Unknown code — drain
//! hooks, the log sink, writers, panics — runs with no pool lock held:
//! NetBSD calls the drain hook with the lock held after a `PR_NOWAIT` page
//! failure; here the lock is dropped around it (`PR_GROWING` keeps other
//! growers out). The back-end allocator is the exception NetBSD makes: a
//! `PR_NOWAIT` grow calls it with the lock held, so it must not take locks
//! ranked before the pool.
//!
//! **Memory pressure.** The kernel map's pagedaemon
//! ([`bsdalloc_uvm_pages::KernelMap::pagedaemon`]) calls a drain hook that
//! runs [`pool_drain`] round robin until a pool released pages. The map
//! runs its pagedaemon in the allocating thread; under a pool lock (a
//! `PR_NOWAIT` grow), a spin mutex or in an interrupt the hook does
//! nothing and leaves it to the next pass.
//!
//! **Self-hosting.** Pages come from the kernel map (`uvm_km_kmem_alloc`),
//! headers from the header pools over the meta arena, and descriptors of
//! [`pool_create`] from a pool of pool descriptors: nothing calls the Rust
//! global allocator. Raw pointer work (headers, lists, bitmaps, the splay
//! tree, redzones) is in one module with strict-provenance arithmetic.
//!
//! **Debug features** (spec §2.9): `magic` (`POOL_CHECK_MAGIC`: "free list
//! modified" on reuse of a written-to free item), `redzone`
//! (`POOL_REDZONE`: a 2-byte pattern after the requested size, checked at
//! put), `quarantine` (`POOL_QUARANTINE`: a 128-entry FIFO before reuse);
//! `debug-all` turns on the DIAGNOSTIC pair. Always checked, as in NetBSD:
//! bitmap double frees ("already freed"), on-page page and pool-id
//! validation, a missing header, a put with nothing out, a busy destroy.
//! Every such panic happens before anything changes and with no lock held.
//!
//! ## NetBSD ↔ Rust
//!
//! | NetBSD | bsdalloc-pool |
//! |---|---|
//! | `struct pool`, `pool_init(pp, size, align, ioff, flags, wchan, palloc, ipl)` | [`RawPool::new`]`(`[`PoolConfig`]`)` (const) + [`RawPool::init`]; [`pool_create`] (descriptor from the stack's memory) |
//! | `pool_destroy` | [`RawPool::destroy`], [`pool_destroy`] |
//! | `pool_get(pp, flags)`, `pool_put(pp, v)` | [`RawPool::get`], [`RawPool::put`] (unsafe); typed [`Pool::get`] → [`PoolBox`] |
//! | `PR_WAITOK`, `PR_NOWAIT`, `PR_LIMITFAIL`, `PR_ZERO`, `PR_NOTOUCH`, `PR_NOALIGN`, `PR_PHINPAGE`, `PR_RECURSIVE`, `PR_PSERIALIZE`, `PR_LARGECACHE` | [`PrFlags`] |
//! | `pool_prime`, `pool_setlowat`, `pool_sethiwat`, `pool_sethardlimit` | [`RawPool::prime`], [`RawPool::setlowat`], [`RawPool::sethiwat`], [`RawPool::sethardlimit`] |
//! | `pool_set_drain_hook(pp, fn, arg)` | [`RawPool::set_drain_hook`] with a [`PoolDrainHook`] |
//! | `pool_nget`, `pool_nput`, `pool_totalpages` | [`RawPool::nget`], [`RawPool::nput`], [`pool_totalpages`] |
//! | `pool_reclaim`, `pool_drain` | [`RawPool::reclaim`], [`pool_drain`] |
//! | `pool_chk`, `pool_printit`, `pool_printall`, `pool_whatis` | [`RawPool::chk`], [`RawPool::printit`], [`pool_printall`], [`pool_whatis`] |
//! | `struct pool_allocator` (`pa_alloc`, `pa_free`, `pa_pagesz`) | [`PoolAllocator`] |
//! | `pool_allocator_kmem`, `_nointr`, `_meta`, `_big[]`, `pool_bigidx` | [`POOL_ALLOCATOR_KMEM`], [`POOL_ALLOCATOR_NOINTR`], [`POOL_ALLOCATOR_META`], [`POOL_ALLOCATOR_BIG`], [`pool_allocator_big`] |
//! | a vmem arena as back end | [`VmemAllocator`] |
//! | `pool_subsystem_init`, pagedaemon → `pool_drain` | [`pool_subsystem_init`], [`pool_register_pagedaemon`] |
//! | `time_uptime`, `pool_inactive_time`, `log(LOG_ERR)` | [`Clock`] ([`UptimeClock`], [`ManualClock`]), [`POOL_INACTIVE_TIME`], [`LogSink`] |
//! | `fault_inject()` in `pool_get` | [`POOL_GET_FAULTS`] |
//! | `sysctl kern.pool`, `vmstat -m [-W] [-v]` | [`RawPool::stats`] → [`PoolStats`]; [`pool_vmstat_m`], [`VmstatRows`] |
//! | `pp->pr_cache` (for pool_cache) | [`RawPool::set_cache`] with a [`PoolCacheHook`] |
//! | `POOL_CHECK_MAGIC`, `POOL_REDZONE`, `POOL_QUARANTINE` | features `magic`, `redzone`, `quarantine` |
//!
//! ## Features and cfgs
//!
//! - `std` (default): the user-space machine and a kernel map set up at
//!   first use. Without it, call [`pool_subsystem_init`] first.
//! - `magic`, `redzone`, `quarantine`, `debug-all`: see above.
//! - `--cfg bsdalloc_loom`: builds over loom's atomics (outside semver).
#![no_std]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "std")]
extern crate std;

mod allocator;
mod clock;
mod debug;
mod flags;
pub mod layout;
mod pool;
mod put;
mod raw;
mod registry;
mod stats;
mod tuning;
mod typed;

pub use allocator::{
    KmemAllocator, MetaAllocator, POOL_ALLOCATOR_BIG, POOL_ALLOCATOR_KMEM, POOL_ALLOCATOR_META,
    POOL_ALLOCATOR_NOINTR, PoolAllocator, VmemAllocator, kernel_map, page_size, pool_allocator_big,
    pool_subsystem_init, pool_subsystem_map,
};
pub use clock::{Clock, LogSink, ManualClock, UPTIME, UptimeClock, pool_set_log_sink};
pub use debug::{PoolInconsistency, pool_printall, pool_whatis};
pub use flags::{
    ALIGNBYTES, PHPOOL_MAX, PI_MAGIC, POOL_ALLOCATOR_BIG_BASE, POOL_ALLOCATOR_BIG_COUNT,
    POOL_INACTIVE_TIME, POOL_QUARANTINE_DEPTH, POOL_REDZONE_SIZE, PoolError, PrFlags, UNLIMITED,
};
pub use layout::{PoolLayout, phpool_item_size, phpool_nelem};
pub use pool::{POOL_GET_FAULTS, PoolCacheHook, PoolConfig, PoolDrainHook, RawPool};
pub use registry::{
    for_each_pool, pool_count, pool_create, pool_destroy, pool_drain, pool_register_pagedaemon,
    pool_totalpages,
};
pub use stats::{PoolStats, VmstatM, VmstatOptions, VmstatRows, pool_vmstat_m, write_vmstat_m};
pub use typed::{Pool, PoolBox};
