//! # bsdalloc-vmem — NetBSD's vmem(9) resource allocator
//!
//! An arena hands out ranges of integers: kernel virtual addresses, I/O
//! ports, device windows, process IDs — anything numbered. This is NetBSD's
//! vmem (after Bonwick and Adams, "Magazines and Vmem", USENIX 2001),
//! `no_std` and self-hosted.
//!
//! ```
//! use bsdalloc_vmem::{Arena, VmFlags, XallocConstraints};
//!
//! // An address arena: [0x1000_0000, +256 MiB), 4 KiB quantum.
//! let kva = Arena::create("kva", 0x1000_0000, 256 << 20, 4096).unwrap();
//! let a = kva.alloc(3 * 4096, VmFlags::NOSLEEP | VmFlags::INSTANTFIT).unwrap();
//! // 64 KiB-aligned, not crossing a 1 MiB boundary, in the upper half:
//! let c = XallocConstraints::new(8192).align(65536).nocross(1 << 20).min(0x1800_0000);
//! let b = kva.xalloc(c, VmFlags::NOSLEEP | VmFlags::BESTFIT).unwrap();
//! assert_eq!(b % 65536, 0);
//! assert!(b >= 0x1800_0000);
//! kva.free(a, 3 * 4096);
//! kva.xfree(b, 8192);
//! kva.assert_sane();
//! ```
//!
//! ## Design (the big theory)
//!
//! **Spans and segments.** An arena's resources are *spans*: static ones
//! added with [`Arena::add`], and imported ones obtained from a
//! [`SpanSource`] (often a parent arena) when the arena runs dry. Each span
//! is cut into *segments*, free or busy. Every span and segment is described
//! by a *boundary tag* ([`BoundaryTag`]). All tags sit on one doubly linked
//! *segment list*: adding a span appends its span tag followed by one free
//! tag covering it; splitting inserts new tags next to the split one. So
//! within a span the segments are in address order and tile it exactly, and
//! the tag before a span's first segment is its span tag: coalescing never
//! crosses a span boundary.
//!
//! **Free lists.** A free segment of `q` quanta is on `freelist[floor(log2
//! q)]`: list *n* holds sizes in `[2^n, 2^(n+1))` quanta. *Instant fit*
//! starts at the first list whose every member is large enough
//! (`ceil(log2 q)`) and takes the head of the first non-empty list that
//! passes the constraint test: at most 64 probes, constant time whatever the
//! number of segments. If that finds nothing, the search is repeated as
//! *best fit*, which scans each list from `floor(log2 q)` up and takes the
//! first segment that fits ("first fit within the smallest adequate class").
//! *Next fit* (an illumos extension, for IDs) walks the segment list forward
//! from a cursor that follows the last allocation, wrapping around.
//!
//! **Busy hash.** Busy tags are hashed by start address, so a free finds its
//! tag in constant expected time. The table starts as one embedded bucket and
//! grows (powers of two) on allocation when the busy count's high-water mark
//! passes its size; [`Arena::rehash`] (NetBSD's periodic rehash) also
//! shrinks it, with the mark decaying each time. NetBSD stops at 65536
//! buckets; here the default limit is 4M ([`VMEM_HASHSIZE_MAX_LARGE`], an
//! extension, see *Scaling* below), and [`VmFlags::NETBSDHASH`] restores
//! NetBSD's cap. Chains are singly linked.
//!
//! **Free.** A free looks the tag up, marks it free, absorbs a free
//! successor, then a free predecessor. If the result is exactly an imported
//! span, the span goes back to its source; otherwise onto a free list.
//!
//! **Self-hosting.** Tags come from 200 static tags, then from 64 KiB chunks
//! (2 MiB ones after the first 16) of a [`MetaSource`] (by default fresh OS pages; a kernel passes its meta
//! arena to [`vmem_subsystem_init`]). Each arena keeps more than
//! `BT_MINRESERVE` (4) spare tags before an operation, refilling from the
//! global supply with its lock dropped, and returns spares above
//! `BT_MAXFREE` (64) after a free. `VM_PRIVTAGS` arenas live on tags donated
//! with [`Arena::add_bts`] only. Hash tables and `vmem_create` descriptors
//! also come from the meta source. Nothing here calls the Rust global
//! allocator.
//!
//! **Sleeping.** With `VM_SLEEP`, an allocation that finds no space and no
//! import sleeps on the arena's sleep queue, saying how many bytes it
//! needs. A free (or a new span) wakes only the sleepers it can satisfy,
//! oldest first: those that ask for no more than the largest free segment
//! can hold and fit in the free bytes not yet promised to an earlier
//! sleeper. A sleeper woken in vain (fragmentation), or one that succeeded
//! with room to spare, passes the wakeup on; none is woken twice for the
//! same state of the arena. (NetBSD broadcasts on every free; with many
//! sleepers they then all queue on the lock only to sleep again.) A
//! constrained request (align, phase, nocross) never imports and fails with
//! `ENOMEM` even with `VM_SLEEP`, as in NetBSD.
//!
//! **Raw pointers.** Tags link to each other by raw pointers, valid only
//! while the tag is on the list it was found on, under the arena lock. The
//! link manipulation and the pointer arithmetic on vmem's own memory (tag
//! chunks, hash tables, descriptor slots) live in one module (`links.rs`),
//! with strict-provenance arithmetic (pointers derived from their
//! allocation, never from integers) for Miri; every internal function that
//! follows a tag pointer its caller passes is `unsafe`, its list membership
//! the contract.
//!
//! **Invariants** (checked by [`Arena::check`], the `VMEM_SANITY` walker):
//! no tag is inverted; spans never overlap; each span is tiled exactly by
//! its segments; no two free segments are adjacent; each free segment is on
//! the list of its size class and each busy one in the hash; `vm_size`,
//! `vm_inuse` and the counts agree with the tags.
//!
//! **Locks.** The arena lock is the platform's `KMutex` — NetBSD's
//! `mutex_init(MUTEX_DEFAULT, ipl)`: an adaptive mutex for an `IPL_NONE`
//! arena (contending threads sleep instead of spinning), an IPL spin mutex
//! above, so an arena created at `IPL_VM` can be used from interrupt
//! handlers up to that level. Order: arena list → arena lock → global tag
//! supply (`IPL_HIGH`).
//!
//! The workspace rule: *never call out to unknown code while holding a spin
//! mutex* — no writer, callback, trait object or anything else that may
//! allocate, block or take locks of its own. Snapshot under the lock, drop
//! it, then call out. Code that allocates may re-enter this very arena (the
//! global allocator may be built on it) and spin on a lock its own CPU
//! holds; code that blocks stalls every CPU spinning for the lock, with
//! interrupts up to its level held off.
//! Here: [`SpanSource`] import and release, [`QuantumCache`] and
//! [`MetaSource`] calls run with no vmem lock held; [`Arena::dump`] copies
//! tags in batches and writes them with the lock dropped;
//! [`for_each_arena`] calls its closure with no lock held (arenas are pinned
//! instead); and panics, whose hook is unknown code too, are raised after
//! the lock is released.
//!
//! ## Scaling: where the time goes with a million live segments
//!
//! Measured with V1 of `BENCHMARKS.md` (quantum 16, a 64 GiB span, L live
//! segments of 1-256 quanta; each operation frees a random live segment
//! and allocates a new one, instant fit) on the project's 2-core VM (AMD
//! EPYC, KVM). Times from `vmem_scale` (benches/src/bin), medians of 3 runs
//! of 1M operations, old and new binaries run back to back; misses from
//! callgrind's cache simulation (32 KiB D1, 32 MiB LL) over 100k-200k
//! operations, because this VM exposes no hardware counters to `perf stat`
//! (so no TLB counts either: see the page arithmetic below).
//!
//! | L | before (ns) | after (ns) | D1 misses/op before → after | LL misses/op before → after | busy-hash tags per lookup before → after |
//! |---|---|---|---|---|---|
//! | 100 | 77-98 | 64 | 0 → 0 | 0 → 0 | 1.75 → 1.35 |
//! | 10k | 97-99 | 89 | 11.4 → 10.8 | 0.04 → 0.04 | 1.30 → 1.29 |
//! | 100k | 258-296 | 194-350 | 11.5 → 10.0 | 0.21 → 0.16 (1.5 → 2.0 with an 8 MiB LL) | 1.75 → 1.38 |
//! | 1M | 2075-2247 | 851-914 | 18.8 → 8.1 | 7.5 → 4.1 | 8.62 → 1.47 |
//!
//! Best fit at L = 100k: 6.8 µs before, 6.7 µs after (unchanged; see
//! below). Instructions per operation rose from 770-930 to 820-940 (the
//! prefetches, the chain re-walk on remove).
//!
//! **The memory floor here.** A dependent load costs 9 ns over 1 MiB,
//! 17 ns over 4 MiB, 57 ns over 8 MiB and 130-150 ns from 16 MiB up
//! (`vmem_scale --floor BYTES`): the last-level cache this VM actually
//! gets is 4-8 MiB, not the 32 MiB `lscpu` reports. At 100k live the
//! metadata is already ~10 MiB (150k tags of 56 B, the table, the
//! benchmark's own live array), so most misses go to DRAM.
//!
//! **Before.** NetBSD caps the busy hash at 65536 buckets: at 1M busy
//! segments a chain holds 15 tags and a lookup looks at 8.6 of them, each a
//! miss on a different tag — two thirds of the 2.1 µs. The rest, per
//! operation: the doubly linked chain insert wrote the old first tag (a
//! miss); coalescing read the two segment neighbours one after the other
//! and, for each free one, wrote its two free-list neighbours and its
//! segment neighbour; carving wrote the chosen head's list successor and
//! segment predecessor. 1M tags and the table (~90 MiB) over 4 KiB pages
//! are 22k pages against ~2k second-level TLB entries: nearly every miss
//! was a page walk too. Free segments number about half the busy ones
//! (496k at 1M), so tags per busy segment are 1.5.
//!
//! **What changed** (default configuration; addresses and failures are
//! NetBSD's, pinned by `tests/pinned_sequence.rs`):
//! - the busy hash grows past NetBSD's 65536 buckets (an extension, to
//!   [`VMEM_HASHSIZE_MAX_LARGE`]; [`VmFlags::NETBSDHASH`] keeps the cap),
//!   on allocation once the busy count passes the bucket count, so the
//!   load stays at or below 1 (≤ 1.5 tags per lookup);
//! - chains are singly linked: an insert writes the bucket and the new tag
//!   only; a remove re-walks the chain the lookup just cached; a rehash
//!   moves each tag once;
//! - prefetches turn serial misses into overlapping ones: both segment
//!   neighbours as soon as the lookup finds the tag; the free-list and
//!   segment neighbours of the free ones before they are absorbed; at a
//!   carve, the head's successor and predecessor, the bucket and the
//!   tail's list head together;
//! - tags come in 2 MiB chunks after the first 16 small ones, and the
//!   default meta source aligns 2 MiB multiples and advises
//!   `MADV_HUGEPAGE`: 1M tags and their table sit in ~45 huge pages.
//!
//! **What is left.** At 1M the critical path is still about four dependent
//! DRAM loads (the caller's own record of the segment, the bucket, the
//! tag, its neighbours' types): ~600 ns at this VM's 150 ns, ~320 ns on a
//! machine with 80 ns DRAM. A memory allocator such as talc avoids the
//! hash lookup altogether by keeping its tag next to the
//! memory it describes, which an arena of integers without backing memory
//! cannot. At 100k the gain is within the noise: the larger table (1 MiB
//! against 0.5) adds about as many simulated misses as the shorter chains
//! save.
//!
//! **Metadata at 1M** (V5's counter block): 56 B per tag, 1.43 tags per
//! busy segment, and an 8 MiB table: 88.4 B per busy segment, 61.9 B per
//! segment (busy or free).
//!
//! **Best fit and constrained xalloc** keep NetBSD's choice: the first
//! segment in free-list (LIFO) order, within the smallest class that can
//! hold the request, that is large enough and passes the constraints. That
//! order is only in the list, so the scan stays a walk of dependent loads;
//! it gains only the cheaper free and carve around it (6.8 → 6.7 µs at
//! 100k). A faster scan that returns the same segment needs the order kept
//! elsewhere too (sub-lists per size sub-class with insertion sequence
//! numbers, merged by sequence); not done.
//!
//! ## NetBSD ↔ Rust
//!
//! | NetBSD | bsdalloc-vmem |
//! |---|---|
//! | `vmem_create`, `vmem_xcreate` | [`vmem_create`]`(cfg, base, size)`, [`vmem_xcreate`]`(cfg, base, size)` → `&'static Arena`; or [`Arena::with_config`]`(cfg, base, size)`, [`Arena::create`]`(name, base, size, quantum)` by value |
//! | their `name, quantum, importfn/releasefn/arg, qcache_max, flags, ipl` | [`ArenaConfig`] (`new(name, quantum)`, `.source()`, `.qcache_max()`, `.flags()`, `.ipl()`) |
//! | `vmem_init` | [`vmem_init`]`(storage, cfg, base, size)` (caller storage), [`Arena::new`]`(cfg)` (const, for statics) |
//! | `vmem_destroy` | [`vmem_destroy`] (`unsafe`: the arena is gone), [`Arena::destroy`] (safe: the arena stays, unusable), `Drop` of a by-value `Arena` |
//! | `vmem_add`, `vmem_add_bts` | [`Arena::add`], [`Arena::add_bts`] |
//! | `vmem_alloc`, `vmem_free` | [`Arena::alloc`], [`Arena::free`] (and [`Arena::alloc_segment`] → RAII [`Segment`]) |
//! | `vmem_xalloc`, `vmem_xfree` | [`vmem_xalloc`] (positional), [`Arena::xalloc`] with [`XallocConstraints`], [`Arena::xfree`] ([`Arena::xalloc_segment`]) |
//! | `vmem_xalloc`'s `size, align, phase, nocross, minaddr, maxaddr` | [`XallocConstraints`] (`new(size)`, `.align()`, `.phase()`, `.nocross()`, `.min()`, `.max()`; max inclusive) |
//! | `vmem_xalloc_addr`, `vmem_xfreeall` | [`Arena::xalloc_addr`] (extension: rounds a size that is not a quantum multiple), [`Arena::xfreeall`] |
//! | `vmem_roundup_size`, `vmem_size` | [`Arena::roundup_size`], [`Arena::size`] with [`SizeType`] |
//! | `vmem_import_t`, `vmem_ximport_t`, `vmem_release_t`, `arg` | [`SpanSource`] (implemented by [`Arena`] itself) |
//! | `qcache_max` + pool caches | [`ArenaConfig::qcache_max`], [`QuantumCache`], [`Arena::set_quantum_cache`] |
//! | `qc_destroy` in `vmem_destroy`; reclaim of the `qc_cache` pools | [`QuantumCache::qc_destroy`] (by [`Arena::destroy`]), [`QuantumCache::qc_reclaim`] (by [`Arena::reclaim`]) |
//! | `vmem_rehash_start` | [`Arena::rehash`], [`vmem_rehash_all`] |
//! | `vmem_subsystem_init` | [`vmem_subsystem_init`] with a [`MetaSource`] |
//! | `vmem_dump`, `vmem_print`, `vmem_printall`, `vmem_whatis` | [`Arena::dump`], [`vmem_printall`], [`vmem_whatis`] |
//! | `VMEM_SANITY` | [`Arena::check`], [`Arena::assert_sane`] |
//! | `VM_SLEEP`, `VM_NOSLEEP`, `VM_INSTANTFIT`, `VM_BESTFIT` | [`VmFlags::SLEEP`], [`VmFlags::NOSLEEP`], [`VmFlags::INSTANTFIT`], [`VmFlags::BESTFIT`] |
//! | `VM_BOOTSTRAP`, `VM_POPULATING`, `VM_LARGEIMPORT`, `VM_XIMPORT`, `VM_PRIVTAGS` | [`VmFlags::BOOTSTRAP`], [`VmFlags::POPULATING`], [`VmFlags::LARGEIMPORT`], [`VmFlags::XIMPORT`], [`VmFlags::PRIVTAGS`] |
//! | (extension) busy hash past 65536 buckets, the default | [`VMEM_HASHSIZE_MAX_LARGE`], [`Arena::hash_max`], [`Arena::hash_chains`]; [`VmFlags::NETBSDHASH`] keeps NetBSD's cap; [`VmFlags::LARGEHASH`] (now a no-op) |
//! | illumos `VM_NEXTFIT` (extension) | [`VmFlags::NEXTFIT`], [`IdAllocator`] with [`IdPolicy::Rotate`] |
//! | `VMEM_ALLOC`, `VMEM_FREE`, `VMEM_ADDR_MIN`, `VMEM_ADDR_MAX` | [`SizeType::ALLOC`], [`SizeType::FREE`], [`VMEM_ADDR_MIN`], [`VMEM_ADDR_MAX`] |
//! | `VMEM_EST_BTCOUNT` | [`vmem_est_btcount`] |
//! | `ENOMEM` | [`VmemError::NoMemory`] |
//!
//! Programming errors (size 0, bad constraints, freeing what is not
//! allocated or with the wrong size, destroying a busy arena, `xfreeall` on
//! a cached arena, bad flags) panic with NetBSD's assertion text, before any
//! state changes.
#![no_std]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "std")]
extern crate std;

// Lock rules (see "Locks" above): the arena lock and the global locks (arena
// list, tag supply, descriptor slab) are IPL spin mutexes. While one is held,
// run only this crate's own code and the platform's (other spin mutexes in
// the documented order, wait-channel broadcasts). Writers, `SpanSource`,
// `QuantumCache`, `MetaSource`, user closures and panics come after the guard
// is dropped: copy what they need first (`Arena::dump` shows how to walk a
// long list that way: batches, a generation counter to resume).

mod alloc;
mod arena;
mod bt;
mod constraints;
mod debug;
mod fit;
mod flags;
mod hash;
mod inner;
mod lifecycle;
mod links;
mod netbsd;
mod qcache;
mod registry;
mod wrappers;

pub use arena::{Arena, ArenaConfig, SpanSource};
#[cfg(feature = "std")]
pub use bt::OsMetaSource;
pub use bt::{
    BoundaryTag, HUGE_META_CHUNK, MetaSource, TagSupplyStats, tag_supply_stats, vmem_subsystem_init,
};
pub use constraints::XallocConstraints;
pub use debug::{ArenaStats, Insanity, vmem_printall, vmem_whatis};
pub use flags::{
    BT_MAXFREE, BT_MINRESERVE, STATIC_BT_COUNT, SizeType, VMEM_ADDR_MAX, VMEM_ADDR_MIN,
    VMEM_HASHSIZE_MAX, VMEM_HASHSIZE_MAX_LARGE, VMEM_HASHSIZE_MIN, VMEM_MAXORDER, VMEM_NAME_MAX,
    VMEM_QCACHE_IDX_MAX, VmFlags, VmemError, vmem_est_btcount,
};
pub use hash::HashChains;
pub use inner::Counters;
pub use netbsd::{
    vmem_add, vmem_alloc, vmem_create, vmem_descriptors_live, vmem_destroy, vmem_free, vmem_init,
    vmem_roundup_size, vmem_size, vmem_xalloc, vmem_xalloc_addr, vmem_xcreate, vmem_xfree,
    vmem_xfreeall,
};
pub use qcache::QuantumCache;
pub use registry::{for_each_arena, vmem_rehash_all};
pub use wrappers::{Id, IdAllocator, IdPolicy, Segment};
