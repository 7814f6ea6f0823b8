//! # bsdalloc-pool-cache — NetBSD's pool_cache(9) and vmem quantum caches
//!
//! Per-CPU caches of *constructed* objects in front of a
//! [pool](bsdalloc_pool): the allocator memoryallocators(9) calls "expected
//! to be faster than other allocators", and the layer kmem's size classes
//! and vmem's quantum caches are built from. `no_std`, self-hosted.
//!
//! ```
//! use std::ptr::NonNull;
//! use bsdalloc_platform::Ipl;
//! use bsdalloc_pool::PrFlags;
//! use bsdalloc_pool_cache::{CtorFailed, PoolCache, PoolCacheConfig, RawPoolCache};
//!
//! // NetBSD style: a cache on caller storage, raw objects, a constructor
//! // that runs only when an object leaves the pool.
//! fn ctor(obj: NonNull<u8>, _: PrFlags) -> Result<(), CtorFailed> {
//!     unsafe { obj.as_ptr().write_bytes(0xa5, 128) };
//!     Ok(())
//! }
//! static MBUFS: RawPoolCache = RawPoolCache::new(
//!     PoolCacheConfig::new("mclpl", 128)
//!         .ipl(Ipl::Vm)
//!         .ctor(&(ctor as fn(NonNull<u8>, PrFlags) -> Result<(), CtorFailed>)),
//! );
//! MBUFS.bootstrap();
//! let m = MBUFS.get(PrFlags::NOWAIT).unwrap();
//! assert_eq!(unsafe { m.as_ptr().read() }, 0xa5);
//! unsafe { MBUFS.put(m) };           // stays constructed, in this CPU's group
//! MBUFS.invalidate();                // every CPU's groups back to the pool
//!
//! // Rust style: typed objects, RAII handles.
//! let cache: PoolCache<[u64; 8]> = PoolCache::new("vectors", Ipl::None, || [7; 8]);
//! let v = cache.get();
//! assert_eq!(v[3], 7);
//! drop(v);
//!
//! // vmstat -C over every cache in the system.
//! let table = bsdalloc_pool_cache::pool_cache_vmstat_c(Default::default()).to_string();
//! assert!(table.contains("mclpl"));
//! ```
//!
//! ## Design (the big theory)
//!
//! **Layers.** A get first looks in the calling CPU's *current* group
//! (NetBSD's `pcg_t`, a magazine: a LIFO array of 15 objects, 63 with
//! `PR_LARGECACHE`), then its *previous* group (swapping the two), then
//! the cache's *depot* of full groups (exchanging its empty current group
//! for a full one), and only then the pool — and only an object from the
//! pool is constructed. A put mirrors it: the current group, the previous
//! one, then an empty group (from a stack shared by all caches of the
//! group size, else allocated with `PR_NOWAIT` from the group pool
//! `pcgnormal`/`pcglarge`) replacing a full current group, which goes to
//! the depot; with no empty group at all the object is destructed and
//! given to the pool at once. So each CPU holds at most two groups, and a
//! CPU that runs out exchanges a whole group with the depot in O(1).
//! Destructors run exactly when objects go back to the pool: that
//! put, [`RawPoolCache::destruct_object`], and [`RawPoolCache::invalidate`]
//! (reclaim, the pagedaemon's `pool_drain`, destroy).
//!
//! **The per-CPU part** is a [`PerCpu`](bsdalloc_platform::PerCpu) element
//! per CPU: the current and previous group pointers, their fill counts and
//! capacities (kept here, not in the group, so that a hit touches the
//! CPU's own line and the one slot), and the counters `hits`, `misses`,
//! `pcmisses`, `contended`, `nfull`, `npart` — per-CPU deltas, summed for
//! statistics. An all-zero element is a CPU with NetBSD's shared *dummy
//! group* as current and previous: a null pointer with capacity 0, empty
//! for gets and full for puts, never dereferenced; so per-CPU storage
//! starts zeroed and CPUs that appear later need nothing
//! ([`pool_cache_cpu_init`] only clears a reused slot).
//!
//! **The fast path** (a hit in the current or previous group) runs inside
//! [`PerCpu::with`](bsdalloc_platform::PerCpu::with): a CPU-local section,
//! which raises the CPU's level to `IPL_VM` (NetBSD's `splvm()`) and
//! passes the slot's gate with one load. Inside: load the fill count, test
//! it, store it back ±1, load or store one slot, bump `hits`. No atomic
//! read-modify-write, no fence, no lock. Everything that may sleep, take a
//! lock or allocate — `pool_get`/`pool_put`, constructors, destructors,
//! group allocation — runs *outside* the section: the section returns
//! what to do and the caller does it, then enters again if it must.
//!
//! **The IPL argument.** A CPU's element is touched by: that CPU's
//! sections; its interrupt handlers (which allocate from `IPL_VM`
//! caches); cross-calls run in its context (invalidate); and, in user
//! space, other threads sharing the slot. The raise to `IPL_VM` defers
//! every handler up to `IPL_VM` until the section closes, so a handler
//! never sees a half-done push or pop; a cross-call aimed at a CPU inside a
//! section is taken when it closes, and one run on an idle CPU's behalf
//! closes its gate first; sharing threads take the gate as a lock. A
//! handler above `IPL_VM` that used a cache would find the section open
//! and panic (sections do not nest) rather than corrupt it — NetBSD's
//! `splvm` gives the same bound without the check.
//!
//! **The depot** (full and partial groups per cache) and the empty-group
//! stacks (one per group size, shared by all caches) are lock-free stacks
//! ([`Stack`]): push is a compare-exchange of the head; pop exchanges the
//! head for a *busy* sentinel, reads `next` and stores it, so no other CPU
//! can push or pop meanwhile and ABA cannot happen; take-all swaps the head
//! for null. Waits on the sentinel and failed exchanges count as
//! `contended`. Memory ordering: every head write is an RMW that read its
//! predecessor (`AcqRel` push, `Acquire` pop and take-all) or the pop's
//! `Release` store right after its own RMW, so each writer happens after
//! all earlier ones and a group's popper sees everything its pusher wrote.
//! A pop holds the sentinel for two instructions, which is why pops run at
//! `IPL_VM` (in a section or cross-call): a same-CPU handler must not spin
//! on it. The loom model (`tests/loom_pool_cache.rs`, `--cfg bsdalloc_loom`) runs this
//! code — not a copy — with two CPUs exchanging groups while a third party
//! invalidates, and catches the broken variant that pops without the
//! sentinel.
//!
//! **Invalidation** (`pool_cache_invalidate`, spec §3.7) cross-calls every
//! CPU ([`PerCpu::for_each_cpu`](bsdalloc_platform::PerCpu::for_each_cpu)):
//! each CPU's groups move to the depot (full → full list, empty → the
//! empty stack, partial → the partial list) and it is left the dummies;
//! then, outside any section, the full and partial lists are taken whole,
//! every object is destructed (one pserialize barrier per batch for
//! `PR_PSERIALIZE`) and returned to the pool, and the groups (and every
//! empty group) go back to the group pools. Idle and sleeping threads'
//! groups are reached too: the cross-call runs on their behalf. A thread's
//! exit gives its CPU's groups to the depot (a [`CpuExitHook`]
//! registered once for all caches), and the pool's reclaim — which the
//! pagedaemon's `pool_drain` calls — invalidates the cache through the
//! pool's [`PoolCacheHook`](bsdalloc_pool::PoolCacheHook).
//!
//! **`PR_ZERO`** (spec §3.6, a deliberate deviation): NetBSD zeroes only
//! objects fresh from the pool; here a cache without a constructor zeroes
//! every object it hands out with `PR_ZERO`, and one with a constructor
//! refuses the flag in debug builds and with `diagnostic` (release builds
//! behave as upstream).
//!
//! **Quantum caches** ([`vmem_qcache_init`]): for an arena with
//! `qcache_max`, one cache per multiple of the quantum, largest first,
//! named `"<arena>-<size>"`, `PR_NOALIGN | PR_NOTOUCH | PR_RECURSIVE`, over
//! "pages" that are segments of the arena itself (the smallest power of two
//! above `3 × qcache_max`, so they never come back to the cache); a class
//! with as many items per page as the next larger one shares its cache.
//! They plug into vmem's [`QuantumCache`](bsdalloc_vmem::QuantumCache)
//! hook: reclaim reclaims the caches, destroy destroys them.
//!
//! **Locks and order.** The per-CPU part has none (the section); the depot
//! none (lock-free). The list of caches is an adaptive mutex ranked with
//! the pool list, walked by pinning, so walkers (exit hook, statistics,
//! `vmstat -C`) hold no lock while they enter sections or take pool locks.
//! Sections are never entered with a pool_cache-or-deeper lock held.
//!
//! **Self-hosting.** Descriptors come from the `pcache` pool, groups from
//! `pcgnormal`/`pcglarge`, typed constructor records and quantum-cache
//! sets from pools of their own, all over the meta allocator; per-CPU
//! structures from a page source: nothing calls the Rust global allocator.
//!
//! ## NetBSD ↔ Rust
//!
//! | NetBSD | bsdalloc-pool-cache |
//! |---|---|
//! | `pool_cache_t`, `pool_cache_init(size, align, ioff, flags, name, palloc, ipl, ctor, dtor, arg)` | [`pool_cache_init`]`(`[`PoolCacheConfig`]`)` → `&'static` [`RawPoolCache`] |
//! | `pool_cache_bootstrap(pc, …)`, `pool_cache_bootstrap_destroy` | [`RawPoolCache::new`] (const) + [`RawPoolCache::bootstrap`], [`RawPoolCache::destroy`] |
//! | `pool_cache_destroy` | [`pool_cache_destroy`] |
//! | `ctor(arg, obj, flags)`, `dtor(arg, obj)` | [`ObjectCtor`], [`ObjectDtor`] (`arg` is `self`; plain `fn`s implement them) |
//! | `pool_cache_get`, `pool_cache_get_paddr` | [`RawPoolCache::get`], [`RawPoolCache::get_paddr`]; typed [`PoolCache::get`] → [`CacheBox`] |
//! | `pool_cache_put`, `pool_cache_put_paddr` | [`RawPoolCache::put`], [`RawPoolCache::put_paddr`] (unsafe); dropping a [`CacheBox`] |
//! | `POOL_PADDR_INVALID` | [`POOL_PADDR_INVALID`] |
//! | `pool_cache_destruct_object` | [`RawPoolCache::destruct_object`], [`CacheBox::destruct`] |
//! | `pool_cache_invalidate`, `pool_cache_reclaim` | [`RawPoolCache::invalidate`], [`RawPoolCache::reclaim`] |
//! | `pool_cache_set_drain_hook`, `_setlowat`, `_sethiwat`, `_sethardlimit`, `_prime`, `_nget`, `_nput` | the [`RawPoolCache`] methods of those names |
//! | `pool_cache_cpu_init(ci)` | [`pool_cache_cpu_init`] |
//! | `pc->pc_pool` | [`RawPoolCache::pool`] |
//! | `pcg_t`, `pool_cache_cpu_t`, `pcg_dummy` | [`Group`], the per-CPU element (private), a null group of capacity 0 |
//! | `pool_pcg_get`, `pool_pcg_put`, `pool_pcg_trunc` | [`Stack::pop`], [`Stack::push`], [`Stack::take_all`] |
//! | `PCG_NOBJECTS_NORMAL`, `PCG_NOBJECTS_LARGE` | [`PCG_NOBJECTS_NORMAL`], [`PCG_NOBJECTS_LARGE`] |
//! | (extension) address-only groups (8-byte slots) | [`PoolCacheConfig::no_paddr`] |
//! | `pool_cache_disable` | [`pool_cache_set_disabled`] |
//! | `fault_inject()` in `pool_cache_get` | [`POOL_CACHE_GET_FAULTS`] |
//! | `sysctl kern.pool` cache fields, `vmstat -C` | [`RawPoolCache::stats`] → [`PoolCacheStats`]; [`pool_cache_vmstat_c`] |
//! | `qc_init`, `qc_destroy`, `vm_qcache[]` | [`vmem_qcache_init`], [`QuantumCaches`] (vmem's [`QuantumCache`](bsdalloc_vmem::QuantumCache) hook) |
//!
//! ## Features and cfgs
//!
//! - `std` (default): the user-space machine; per-CPU structures from the
//!   OS. Without it, call [`pool_cache_subsystem_init`] (and the pool's
//!   `pool_subsystem_init`) first.
//! - `diagnostic`: a put of an object already in the CPU's groups panics
//!   (double put), taken slots are cleared, `PR_ZERO` with a constructor
//!   and an `IPL_NONE` cache in an interrupt panic in every build.
//!   `debug-all`: `diagnostic` plus the pool's DIAGNOSTIC features.
//! - `--cfg bsdalloc_loom`: builds over loom's atomics and exposes the
//!   engine as `model` for the loom tests (outside semver).
#![no_std]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "std")]
extern crate std;

mod cache;
mod group;
mod pool_cache;
mod qcache;
mod registry;
mod stats;
mod subsys;
mod typed;

pub use bsdalloc_platform::CpuExitHook;
pub use cache::{CpuCacheStats, CtorFailed, ObjectCtor, ObjectDtor};
pub use group::{Group, PCG_NOBJECTS_LARGE, PCG_NOBJECTS_NORMAL, POOL_PADDR_INVALID, Stack};
pub use pool_cache::{POOL_CACHE_GET_FAULTS, PoolCacheConfig, RawPoolCache, pool_cache_cpu_init};
pub use qcache::{QuantumCaches, VMEM_QCACHE_IDX_MAX, vmem_qcache_init};
pub use registry::{for_each_pool_cache, pool_cache_count};
pub use stats::{
    PoolCacheStats, VmstatC, VmstatCOptions, VmstatCRows, pool_cache_vmstat_c, write_vmstat_c,
};
pub use subsys::{
    pool_cache_destroy, pool_cache_groups_out, pool_cache_init, pool_cache_set_disabled,
    pool_cache_subsystem_init,
};
pub use typed::{CacheBox, PoolCache};

/// Loom only: the cache engine, for the models in `tests/loom_pool_cache.rs`.
#[cfg(bsdalloc_loom)]
#[doc(hidden)]
pub mod model {
    pub use crate::cache::{Backend, Core, CpuCacheStorage};
}
