//! # bsdalloc-kmalloc — NetBSD's malloc(9)
//!
//! The kernel's legacy variable-size allocator, as memoryallocators(9)
//! describes it: `malloc(size, type, flags)` and `free(addr, type)`, no
//! size to remember at free, usable from interrupt handlers with
//! `M_NOWAIT`, and a *type* on every allocation "thus providing
//! statistics as to the memory usage of different kernel subsystems". A
//! thin layer over [kmem](bsdalloc_kmem), as in NetBSD since 2012, with the
//! per-type statistics and limits of the pre-2019 kernels kept. `no_std`,
//! self-hosted.
//!
//! ```
//! use bsdalloc_kmalloc::*;
//!
//! MALLOC_DEFINE!(M_SOFTC, "softc", "driver private state");
//!
//! // Small requests: the header, then the caller's bytes.
//! let p = malloc(100, &M_SOFTC, M_WAITOK | M_ZERO).unwrap();
//! assert!(unsafe { std::slice::from_raw_parts(p.as_ptr(), 100) }.iter().all(|&b| b == 0));
//!
//! // A page or more: page aligned (the header ends the page before).
//! let big = malloc(3 * 4096, &M_DEVBUF, M_NOWAIT).unwrap();
//! assert_eq!(big.as_ptr().addr() % 4096, 0);
//!
//! // realloc grows by copying, never shrinks.
//! let p = unsafe { realloc(p.as_ptr(), 50, &M_SOFTC, M_WAITOK) }.unwrap(); // same block
//! let p = unsafe { realloc(p.as_ptr(), 500, &M_SOFTC, M_WAITOK) }.unwrap(); // moved
//!
//! // Per-type statistics, exact.
//! let s = M_SOFTC.stats();
//! assert_eq!((s.inuse, s.calls), (1, 2));
//! let table = malloc_stats().to_string(); // vmstat -m's "Memory statistics by type"
//! assert!(table.contains("softc"));
//!
//! unsafe {
//!     free(p.as_ptr(), &M_SOFTC);
//!     free(big.as_ptr(), &M_DEVBUF);
//! }
//! assert_eq!(M_SOFTC.stats().memuse, 0);
//! ```
//!
//! ## Design (the big theory)
//!
//! **Layout** (spec §5.2, kern_malloc.c rev 1.158). A [`MallocHeader`]
//! precedes every block: `mh_size`, the header plus the requested bytes,
//! and — ours — the block's type, so that `free` can check the type it
//! is given (a wrong one would silently corrupt two types' statistics).
//! The header is two words, a multiple of `ALIGNBYTES + 1` (8,
//! [`MALLOC_ALIGN`]). A request under `PAGE_SIZE` is one kmem block of
//! `header + size` bytes, header first. A request of `PAGE_SIZE` or more
//! is a kmem block of `PAGE_SIZE + size` bytes — always kmem's whole-page
//! path, page aligned — whose first page ends with the header, so the
//! caller's bytes start page aligned on the second page. `free` reads
//! `mh_size` back and recomputes the same decision (`mh_size ≥ PAGE_SIZE
//! + header` is the large layout) to give kmem its block and size. A size
//! whose layout overflows, or that no kmem arena could ever hold, never
//! reaches kmem: `M_NOWAIT` and `M_CANFAIL` get `None`, a plain
//! `M_WAITOK` panics (it could only sleep forever).
//!
//! **Flags.** `M_WAITOK` is kmem's `KM_SLEEP`, `M_NOWAIT` its
//! `KM_NOSLEEP`; `M_ZERO` zeroes the whole kmem block. malloc always
//! calls kmem's `kmem_intr_*` entry points, which are the plain ones
//! without their interrupt check: malloc does its own — `M_NOWAIT` works
//! in interrupt handlers up to `IPL_VM` (memoryallocators(9); current
//! NetBSD dropped this), and `M_WAITOK` there panics with kmem's message,
//! "kmem(9) should not be used from the interrupt context". An
//! `M_WAITOK` allocation first asks kmem with `KM_NOSLEEP`; only if that
//! fails does it sleep with `KM_SLEEP`, and counts the wait in the type's
//! `ks_mapblocks` ("Kern Limit" blocks).
//!
//! **realloc** (spec §5.2): a null block is `malloc`, size 0 is `free`
//! and `None`, a size within the block's usable bytes returns the block
//! itself (never shrinks), anything else allocates, copies the old usable
//! bytes and frees the old block; when that allocation fails the old
//! block is untouched.
//!
//! **Types** (spec §5.3). A [`MallocType`] is a `static` —
//! [`MALLOC_DEFINE!`], [`MALLOC_DEFINE_LIMIT!`], [`MALLOC_JUSTDEFINE!`];
//! [`MALLOC_DECLARE!`] uses one defined elsewhere — with NetBSD's
//! `struct malloc_type` counters: `ks_inuse`, `ks_calls`, `ks_memuse`,
//! `ks_maxused`, `ks_limit`, `ks_limblocks`, `ks_mapblocks`, `ks_size`.
//! `ks_memuse` counts each block at the size kmem reserved for it (its
//! size class, or its whole pages), as NetBSD counted bucket sizes, and
//! `ks_size` records the power-of-two ceilings of those sizes. NetBSD
//! attached the `MALLOC_DEFINE`d types at boot through a link set; Rust
//! has no portable link set, so such a type attaches itself at its first
//! `malloc` (one load on the fast path; the first use takes the list
//! lock). Attaching sets NetBSD's default limit, 60 % of `nkmempages`
//! (the kernel map's memory budget, or the kmem arena without one),
//! unless the type was defined with one.
//!
//! **Why per-type atomics and not per-CPU counters.** Per-CPU counters
//! (platform's `PerCpu`, summed on read) would make `ks_inuse` and
//! `ks_calls` cheaper under contention, but two of the counters cannot be
//! summed: the limit must be tested against the type's *current*
//! `ks_memuse` at every allocation, and `ks_maxused` is the high-water
//! mark of the sum, not a sum of per-CPU high-water marks. Both need one
//! point where the type's usage is decided. That point is a
//! compare-and-swap on the type's `ks_memuse` — "below the limit? then
//! add my bytes" — the exact step NetBSD did under `splvm` and its
//! `malloc_lock`, without any lock: each allocation saw the type below
//! its limit, and a type overshoots its limit by at most one allocation,
//! never by several that raced. The other counters are plain atomic adds
//! on the same cache line (each type's counters have a line to
//! themselves, 128-byte aligned), which the CAS has just taken
//! exclusively; `ks_maxused` and `ks_size` are read first and written
//! only when they grow. Reading per-CPU counters would also need
//! cross-calls (thread context only), where these are plain loads,
//! usable anywhere. No global lock is taken on any malloc or free.
//!
//! **Limits.** At or above its limit a type refuses `M_NOWAIT` (`None`)
//! and puts `M_WAITOK` callers to sleep on its wait channel, counting
//! `ks_limblocks` each time. A free (or a failed allocation giving back
//! its reservation) that takes the type from at-or-above to below its
//! limit wakes them; the sleeper tests `ks_memuse` under the type's
//! interlock and the waker takes that interlock after its subtraction, so
//! no wakeup is lost. [`malloc_type_setlimit`] wakes them too. The
//! interlock is an `IPL_VM` spin mutex, taken only at the limit, because
//! frees in interrupt handlers wake sleepers.
//!
//! **Checks.** `free` compares the header's type with its `type`
//! argument and panics, naming both types, on a mismatch; a freed block's
//! header has its type cleared, so a second free of a block whose memory
//! was not reused yet panics ("already freed"), and so does a pointer
//! whose header names no attached type. A header size that cannot be one
//! of ours panics before kmem sees it. `free(NULL)` panics, as in NetBSD.
//!
//! **Statistics.** [`MallocType::stats`] reads a type's counters;
//! [`malloc_stats`] prints, as `vmstat -m` did, "Memory statistics by
//! type" (one row per type ever used) and "Memory Totals".
//!
//! **Locks.** None on the fast path. The list of attached types has an
//! `IPL_VM` spin mutex (registry rank) for attach and detach, and each
//! type the limit interlock; neither is held while calling kmem, so
//! malloc adds nothing to the lock order of the layers below. Walking the
//! list for statistics takes no lock: types are `static`, so a link
//! never dangles.
//!
//! **Self-hosting.** Types are statics linked in place, headers live in
//! the blocks, the statistics table is written straight to the caller's
//! writer: nothing calls the Rust global allocator.
//!
//! ## NetBSD ↔ Rust
//!
//! | NetBSD | bsdalloc-kmalloc |
//! |---|---|
//! | `malloc(size, type, flags)` | [`malloc`] |
//! | `free(addr, type)` | [`free`] (`unsafe`) |
//! | `realloc(addr, size, type, flags)` | [`realloc`] (`unsafe`) |
//! | `M_WAITOK`, `M_NOWAIT`, `M_ZERO`, `M_CANFAIL` | [`M_WAITOK`], [`M_NOWAIT`], [`M_ZERO`], [`M_CANFAIL`] ([`MFlags`]) |
//! | `struct malloc_header`, `ALIGNBYTES + 1` | [`MallocHeader`], [`MALLOC_HEADER_SIZE`], [`MALLOC_ALIGN`] |
//! | `struct malloc_type`, `M_MAGIC` | [`MallocType`], [`M_MAGIC`]; counters in [`MallocTypeStats`] |
//! | `MALLOC_DEFINE`, `MALLOC_DEFINE_LIMIT`, `MALLOC_JUSTDEFINE`, `MALLOC_DECLARE` | [`MALLOC_DEFINE!`], [`MALLOC_DEFINE_LIMIT!`], [`MALLOC_JUSTDEFINE!`], [`MALLOC_DECLARE!`] |
//! | `malloc_type_attach`, `malloc_type_detach`, `malloc_type_setlimit` | [`malloc_type_attach`], [`malloc_type_detach`], [`malloc_type_setlimit`] |
//! | `kmemstatistics` (the list of types) | [`malloc_types`] |
//! | `M_DEVBUF`, `M_DMAMAP`, `M_FREE`, `M_PCB`, `M_TEMP`, `M_RTABLE`, `M_FTABLE`, `M_UFSMNT`, `M_NETADDR`, `M_MRTABLE` | the same names; [`BUILTIN_TYPES`] |
//! | `vmstat -m`: "Memory statistics by type", "Memory Totals" | [`malloc_stats`] → [`MallocStats`]; [`write_malloc_stats`] |
//! | `kmeminit` (malloc over kmem) | [`malloc_init`] (optional: the default kmem instance otherwise) |
//! | (FreeBSD) `malloc_usable_size` | [`malloc_usable_size`] |
//!
//! ## Features and cfgs
//!
//! - `std` (default): the user-space machine underneath, and kmem's
//!   default instance set up at first use. Without it, set up kmem
//!   (`kmem_init`) before the first `malloc`, or give malloc an instance
//!   with [`malloc_init`].
//! - `debug-all`: kmem's, the pool cache's and the pool's DIAGNOSTIC
//!   checks underneath (size footer, redzone, poison), so that kmem checks
//!   every malloc block at free; malloc has no debug modes of its own (its
//!   type check at free is always on). The test suite runs a second time
//!   with it.
//! - `--cfg bsdalloc_loom`: builds over loom's atomics (outside semver).
#![no_std]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(any(test, feature = "std"))]
extern crate std;

mod flags;
mod malloc;
mod stats;
mod types;

pub use flags::{M_CANFAIL, M_NOWAIT, M_WAITOK, M_ZERO, MFlags};
pub use malloc::{
    MALLOC_ALIGN, MALLOC_HEADER_SIZE, MallocError, MallocHeader, backend, free, malloc,
    malloc_init, malloc_usable_size, realloc,
};
pub use stats::{MallocStats, malloc_stats, write_malloc_stats};
pub use types::{
    BUILTIN_TYPES, M_DEVBUF, M_DMAMAP, M_FREE, M_FTABLE, M_MAGIC, M_MRTABLE, M_NETADDR, M_PCB,
    M_RTABLE, M_TEMP, M_UFSMNT, MallocType, MallocTypeStats, MallocTypes, malloc_type_attach,
    malloc_type_detach, malloc_type_setlimit, malloc_types,
};
