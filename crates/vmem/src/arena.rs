//! The arena: NetBSD's `struct vmem` and its entry points.

use core::fmt;
use core::ptr::{self, NonNull};

use bsdalloc_platform::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering,
};
use bsdalloc_platform::sync::cell::UnsafeCell;
use bsdalloc_platform::{Ipl, KMutex, KMutexGuard, WaitChannel, WaitQueue};

use crate::bt::{self, BT_F_PRIVATE, BT_TYPE_BUSY, BT_TYPE_SPAN, BT_TYPE_SPAN_STATIC, BoundaryTag};
use crate::flags::{
    BT_MINRESERVE, SizeType, VMEM_HASHSIZE_MAX, VMEM_HASHSIZE_MAX_LARGE, VMEM_NAME_MAX,
    VMEM_QCACHE_IDX_MAX, VmFlags, VmemError,
};
use crate::inner::Inner;

type Bt = BoundaryTag;

/// Where an arena imports spans from, and releases them to
/// (`vmem_import_t` / `vmem_ximport_t` / `vmem_release_t` with their `arg`).
///
/// Called with the arena lock dropped.
pub trait SpanSource: Sync {
    /// Import a span of at least `size` bytes; return its start and its real
    /// size (≥ `size`; larger only for `vmem_xcreate`-style sources).
    /// `flags` are the caller's sleep and strategy flags.
    fn import(&self, size: usize, flags: VmFlags) -> Result<(usize, usize), VmemError>;

    /// Give back a whole span returned by `import`.
    fn release(&self, addr: usize, size: usize);

    /// Whether `release` may be called (NetBSD: `releasefn != NULL`). When
    /// false, imported spans stay in the arena for good.
    fn can_release(&self) -> bool {
        true
    }
}

/// The quantum-cache hook (DESIGN.md §1): an arena with `qcache_max > 0`
/// sends sizes up to `qcache_max` here. `bsdalloc-pool-cache` implements
/// it (NetBSD's `qc_cache` pool caches, one per multiple of the quantum);
/// without one the arena serves those sizes itself.
///
/// The cache takes its memory from the arena it serves, in segments of its
/// own (with `xalloc`/`alloc` on `arena`, sizes above `qcache_max` or with
/// the cache detached), and hands out pieces of them. Every method is
/// called with no vmem lock held, so it may call the arena.
pub trait QuantumCache: Sync {
    /// Allocate `size` bytes (a multiple of the quantum, ≤ `qcache_max`).
    fn qc_alloc(&self, arena: &Arena, size: usize, flags: VmFlags) -> Result<usize, VmemError>;

    /// Free what `qc_alloc(size)` returned.
    fn qc_free(&self, arena: &Arena, addr: usize, size: usize);

    /// Give cached segments that hold nothing back to `arena` (NetBSD's
    /// pool reclaim of the `qc_cache` pools): what [`Arena::reclaim`] asks
    /// when memory is short. Outstanding pieces stay valid.
    fn qc_reclaim(&self, arena: &Arena);

    /// Give everything back to `arena`: called once, by [`Arena::destroy`]
    /// (NetBSD's `qc_destroy` in `vmem_destroy`), after the cache has been
    /// detached, so frees of any size now reach the arena itself. Pieces
    /// still handed out are the caller's leak; a cache may panic on them,
    /// as `pool_cache_destroy` does.
    fn qc_destroy(&self, arena: &Arena);
}

/// An importer over a parent arena: `vmem_alloc(parent)` / `vmem_free`.
impl SpanSource for Arena {
    fn import(&self, size: usize, flags: VmFlags) -> Result<(usize, usize), VmemError> {
        let a = self.alloc(size, flags.sleep_part() | VmFlags::INSTANTFIT)?;
        Ok((a, self.roundup_size(size)))
    }

    fn release(&self, addr: usize, size: usize) {
        self.free(addr, size);
    }
}

/// NetBSD's `struct vmem`: an arena of integer ranges.
///
/// ```
/// use bsdalloc_vmem::{Arena, VmFlags};
///
/// // vmem_create("pids", 300, 32768 - 300, 1, …): PIDs 300..32768.
/// let pids = Arena::create("pids", 300, 32768 - 300, 1).unwrap();
/// let pid = pids.alloc(1, VmFlags::NOSLEEP | VmFlags::INSTANTFIT).unwrap();
/// assert!((300..32768).contains(&pid));
/// pids.free(pid, 1);
/// assert_eq!(pids.stats().inuse, 0);
/// ```
pub struct Arena {
    pub(crate) name: &'static str,
    pub(crate) quantum: usize,
    pub(crate) qshift: u32,
    pub(crate) flags: VmFlags,
    ipl: Ipl,
    pub(crate) source: Option<&'static dyn SpanSource>,
    pub(crate) qcache_max: usize,
    /// `QC_NONE`, `QC_PLUGGED` or `QC_DETACHED`: whether `qcache` holds
    /// the cache and whether allocations go to it.
    qcache_state: AtomicU8,
    qcache: UnsafeCell<Option<&'static dyn QuantumCache>>,
    /// `MUTEX_DEFAULT` at the arena's level: adaptive at `IPL_NONE` (its
    /// waiters sleep instead of spinning), a spin mutex above.
    pub(crate) lock: KMutex<Inner>,
    pub(crate) cv: WaitChannel,
    /// Global arena list link (registered arenas only).
    pub(crate) next: AtomicPtr<Arena>,
    pub(crate) registered: AtomicBool,
    /// Registration serial number, unique and increasing (written under the
    /// arena-list lock); the list is in descending serial order, which is
    /// how `for_each_arena` resumes between batches.
    pub(crate) serial: AtomicU64,
    /// `for_each_arena` walkers holding this arena (pinned under the list
    /// lock, unpinned under the arena lock). `destroy` unregisters, then
    /// waits for 0 before tearing down.
    pub(crate) walkers: AtomicUsize,
    /// The descriptor came from `vmem_create` (meta memory), not the caller.
    pub(crate) descriptor: AtomicBool,
    /// Set (under the arena lock) by `destroy`. Every entry point that
    /// changes state checks it, under the lock where it takes the lock, and
    /// with a plain load on the quantum-cache paths, which do not.
    pub(crate) destroyed: AtomicBool,
}

// SAFETY: all mutable state is behind the arena's spin mutex, except the
// quantum-cache hook, written once before `qcache_state` publishes it.
unsafe impl Sync for Arena {}
// SAFETY: as above; the raw tag pointers inside belong to the arena.
unsafe impl Send for Arena {}

impl fmt::Debug for Arena {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Arena")
            .field("name", &self.name)
            .field("quantum", &self.quantum)
            .field("ipl", &self.ipl)
            .field("flags", &self.flags)
            .finish_non_exhaustive()
    }
}

/// How an arena is configured: the arguments of `vmem_create`, `vmem_xcreate`
/// and `vmem_init` other than the initial span, which every way of creating
/// an arena takes (`vmem_create(cfg, base, size)`, [`Arena::with_config`],
/// [`Arena::new`], …).
///
/// ```
/// use bsdalloc_platform::Ipl;
/// use bsdalloc_vmem::{Arena, ArenaConfig, VmFlags, vmem_create, vmem_destroy};
///
/// // vmem_create("kva", base, size, PAGE_SIZE, NULL, NULL, NULL, 0, VM_SLEEP, IPL_VM)
/// const KVA: ArenaConfig = ArenaConfig::new("kva", 4096).flags(VmFlags::SLEEP).ipl(Ipl::Vm);
/// let kva: &'static Arena = vmem_create(KVA, 0x1000_0000, 1 << 24).unwrap();
/// assert_eq!(kva.ipl(), Ipl::Vm);
/// // SAFETY: `kva` is not used afterwards.
/// unsafe { vmem_destroy(kva) };
/// ```
#[derive(Clone, Copy)]
pub struct ArenaConfig {
    /// Name (truncated to 16 bytes, `VMEM_NAME_MAX`).
    pub name: &'static str,
    /// The unit of allocation; a power of two.
    pub quantum: usize,
    /// Where to import spans from when exhausted (`importfn`, `releasefn`,
    /// `arg`).
    pub source: Option<&'static dyn SpanSource>,
    /// Sizes up to this go to the quantum cache (a multiple of the quantum,
    /// clamped to 16 quanta; 0: none).
    pub qcache_max: usize,
    /// Arena flags: `VM_SLEEP` or `VM_NOSLEEP` (for the arena's own needs),
    /// plus `VM_BOOTSTRAP`, `VM_LARGEIMPORT`, `VM_PRIVTAGS`, `VM_XIMPORT`.
    pub flags: VmFlags,
    /// Interrupt level that may use the arena (its lock's level).
    pub ipl: Ipl,
}

impl fmt::Debug for ArenaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArenaConfig")
            .field("name", &self.name)
            .field("quantum", &self.quantum)
            .field("has_source", &self.source.is_some())
            .field("qcache_max", &self.qcache_max)
            .field("flags", &self.flags)
            .field("ipl", &self.ipl)
            .finish()
    }
}

impl ArenaConfig {
    /// A plain arena: no source, no quantum cache, `VM_NOSLEEP`, `IPL_NONE`.
    pub const fn new(name: &'static str, quantum: usize) -> ArenaConfig {
        ArenaConfig {
            name,
            quantum,
            source: None,
            qcache_max: 0,
            flags: VmFlags::NOSLEEP,
            ipl: Ipl::None,
        }
    }

    /// Import spans from `source` when the arena runs dry, and release them
    /// to it.
    #[must_use]
    pub const fn source(self, source: &'static dyn SpanSource) -> ArenaConfig {
        ArenaConfig {
            source: Some(source),
            ..self
        }
    }

    /// Send sizes up to `qcache_max` to the quantum cache.
    #[must_use]
    pub const fn qcache_max(self, qcache_max: usize) -> ArenaConfig {
        ArenaConfig { qcache_max, ..self }
    }

    /// Arena flags (replacing the default `VM_NOSLEEP`).
    #[must_use]
    pub const fn flags(self, flags: VmFlags) -> ArenaConfig {
        ArenaConfig { flags, ..self }
    }

    /// The interrupt level that may use the arena.
    #[must_use]
    pub const fn ipl(self, ipl: Ipl) -> ArenaConfig {
        ArenaConfig { ipl, ..self }
    }
}

const fn truncate_name(name: &'static str) -> &'static str {
    if name.len() <= VMEM_NAME_MAX {
        return name;
    }
    let mut n = VMEM_NAME_MAX;
    while !name.is_char_boundary(n) {
        n -= 1;
    }
    name.split_at(n).0
}

/// No quantum cache was ever plugged in.
const QC_NONE: u8 = 0;
/// A quantum cache is plugged in and serves sizes up to `qcache_max`.
const QC_PLUGGED: u8 = 1;
/// The cache was detached by `destroy` (and told to give everything back):
/// the arena serves every size itself from then on.
const QC_DETACHED: u8 = 2;

/// Pause before retrying a tag refill under `VM_SLEEP` ("sleep one tick").
fn pause() {
    #[cfg(feature = "std")]
    std::thread::sleep(core::time::Duration::from_millis(1));
    #[cfg(not(feature = "std"))]
    for _ in 0..10_000 {
        core::hint::spin_loop();
    }
}

#[track_caller]
pub(crate) fn check_sleep_flags(what: &str, flags: VmFlags) {
    let s = flags & VmFlags::SLEEP_MASK;
    if s != VmFlags::SLEEP && s != VmFlags::NOSLEEP {
        panic!("{what}: flags {flags:?} must contain exactly one of VM_SLEEP and VM_NOSLEEP");
    }
}

#[track_caller]
pub(crate) fn check_fit_flags(what: &str, flags: VmFlags) -> VmFlags {
    let f = flags & VmFlags::FIT_MASK;
    if f != VmFlags::INSTANTFIT && f != VmFlags::BESTFIT && f != VmFlags::NEXTFIT {
        panic!(
            "{what}: flags {flags:?} must contain exactly one of VM_INSTANTFIT, VM_BESTFIT, VM_NEXTFIT"
        );
    }
    f
}

impl Arena {
    /// `vmem_init` on caller storage, without an initial span: a const
    /// constructor for statics. Add spans with [`Arena::add`].
    ///
    /// # Panics
    /// If the quantum is not a power of two, `qcache_max` is not a multiple
    /// of it, or `VM_XIMPORT` is passed (only `vmem_xcreate` sets it).
    pub const fn new(cfg: ArenaConfig) -> Arena {
        assert!(
            cfg.quantum.is_power_of_two(),
            "vmem_init: quantum must be a power of two"
        );
        assert!(
            cfg.qcache_max.is_multiple_of(cfg.quantum),
            "vmem_init: qcache_max must be a multiple of the quantum"
        );
        // Clamp to 16 quanta; with a quantum of 2^60 or more, 16 quanta do
        // not fit in a usize and any legal qcache_max is below them.
        let mut qmax = cfg.qcache_max;
        if let Some(limit) = VMEM_QCACHE_IDX_MAX.checked_mul(cfg.quantum)
            && qmax > limit
        {
            qmax = limit;
        }
        Arena {
            name: truncate_name(cfg.name),
            quantum: cfg.quantum,
            qshift: cfg.quantum.trailing_zeros(),
            flags: cfg.flags.intersection(VmFlags::ARENA_MASK),
            ipl: cfg.ipl,
            source: cfg.source,
            qcache_max: qmax,
            qcache_state: AtomicU8::new(QC_NONE),
            qcache: UnsafeCell::new(None),
            lock: KMutex::new(cfg.ipl, Inner::new()),
            cv: WaitChannel::new("vmem"),
            next: AtomicPtr::new(ptr::null_mut()),
            registered: AtomicBool::new(false),
            serial: AtomicU64::new(0),
            walkers: AtomicUsize::new(0),
            descriptor: AtomicBool::new(false),
            destroyed: AtomicBool::new(false),
        }
    }

    /// An arena with an initial static span `[base, base+size)` (size 0:
    /// none), `IPL_NONE`, no source. The common case of `vmem_create`.
    ///
    /// # Panics
    /// As [`Arena::new`].
    pub fn create(
        name: &'static str,
        base: usize,
        size: usize,
        quantum: usize,
    ) -> Result<Arena, VmemError> {
        Self::with_config(ArenaConfig::new(name, quantum), base, size)
    }

    /// `vmem_create` by value: configure, then add the initial span
    /// `[base, base+size)` if `size > 0`.
    ///
    /// # Panics
    /// As [`Arena::new`]; also with `VM_XIMPORT` (set by
    /// [`crate::vmem_xcreate`] only), `VM_PRIVTAGS` with an initial span, or
    /// flags without exactly one of `VM_SLEEP` and `VM_NOSLEEP`.
    pub fn with_config(cfg: ArenaConfig, base: usize, size: usize) -> Result<Arena, VmemError> {
        if cfg.flags.contains(VmFlags::XIMPORT) {
            panic!("vmem_create: VM_XIMPORT is set by vmem_xcreate only");
        }
        Self::build(cfg, base, size)
    }

    /// The one create path, behind `vmem_create`, `vmem_xcreate`,
    /// `vmem_init` and [`Arena::with_config`]: validate, construct, reserve
    /// tags and add the initial span. The caller then moves the arena where
    /// it lives (nothing points into an arena that is not registered yet:
    /// tags link to each other, never to their list heads).
    pub(crate) fn build(cfg: ArenaConfig, base: usize, size: usize) -> Result<Arena, VmemError> {
        if cfg.flags.contains(VmFlags::PRIVTAGS) && size != 0 {
            panic!("vmem_init: a VM_PRIVTAGS arena must be created without an initial span");
        }
        check_sleep_flags("vmem_create", cfg.flags);
        let a = Arena::new(cfg);
        a.init(cfg.flags, base, size)?;
        Ok(a)
    }

    /// The run-time part of `vmem_init`: bootstrap reserve, initial span.
    pub(crate) fn init(&self, flags: VmFlags, base: usize, size: usize) -> Result<(), VmemError> {
        self.init_reserve(flags)?;
        if size > 0 {
            self.add(base, size, flags.sleep_part())?;
        }
        Ok(())
    }

    fn init_reserve(&self, flags: VmFlags) -> Result<(), VmemError> {
        if flags.contains(VmFlags::BOOTSTRAP) && !self.flags.contains(VmFlags::PRIVTAGS) {
            let g = self.lock.lock();
            let g = self.refill(g, flags.sleep_part(), BT_MINRESERVE + 1)?;
            drop(g);
        }
        Ok(())
    }

    /// The arena's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The quantum.
    pub fn quantum(&self) -> usize {
        self.quantum
    }

    /// The interrupt level of the arena's lock.
    pub fn ipl(&self) -> Ipl {
        self.ipl
    }

    /// `qcache_max` after clamping.
    pub fn qcache_max(&self) -> usize {
        self.qcache_max
    }

    /// Arena flags.
    pub fn flags(&self) -> VmFlags {
        self.flags
    }

    /// `vmem_roundup_size`: `size` rounded up to a multiple of the quantum.
    ///
    /// # Panics
    /// If the rounded size does not fit in a `usize` (NetBSD wraps to a
    /// small number there); see [`Arena::checked_roundup_size`].
    #[inline]
    #[track_caller]
    pub fn roundup_size(&self, size: usize) -> usize {
        match self.checked_roundup_size(size) {
            Some(r) => r,
            None => panic!(
                "vmem_roundup_size: arena '{}': size {size:#x} overflows when rounded to the quantum {:#x}",
                self.name, self.quantum
            ),
        }
    }

    /// `size` rounded up to a multiple of the quantum, or `None` if that
    /// does not fit in a `usize`. Never less than `size`.
    #[inline]
    pub fn checked_roundup_size(&self, size: usize) -> Option<usize> {
        size.checked_next_multiple_of(self.quantum)
    }

    /// Count an allocation that failed before reaching the search (its
    /// size cannot be rounded), and return the error.
    #[track_caller]
    pub(crate) fn fail_early(&self) -> VmemError {
        self.check_alive(self.lock.lock()).stats.failures += 1;
        VmemError::NoMemory
    }

    /// Plug in the quantum cache (DESIGN.md §1). Once, before any allocation.
    ///
    /// # Panics
    /// If the arena has no `qcache_max`, already has (or had) a cache, or
    /// has live allocations.
    pub fn set_quantum_cache(&self, qc: &'static dyn QuantumCache) {
        self.assert_alive();
        assert!(
            self.qcache_max > 0,
            "vmem '{}': no qcache_max, nothing to cache",
            self.name
        );
        let g = self.check_alive(self.lock.lock());
        // The panics below run the panic hook (unknown code): never with
        // the arena's spin mutex held.
        if g.hash.nbusy != 0 {
            drop(g);
            panic!(
                "vmem '{}': quantum cache plugged in after allocations",
                self.name
            );
        }
        if self.qcache_state.load(Ordering::Relaxed) != QC_NONE {
            drop(g);
            panic!("vmem '{}': quantum cache already set", self.name);
        }
        // SAFETY: written once, under the lock, before `qcache_state` is
        // published with Release; readers load it with Acquire first, and
        // no later state writes the cell again.
        self.qcache.with_mut(|p| unsafe { *p = Some(qc) });
        self.qcache_state.store(QC_PLUGGED, Ordering::Release);
        drop(g);
    }

    /// The plugged-in cache, unless none was or `destroy` detached it.
    #[inline]
    pub(crate) fn quantum_cache(&self) -> Option<&'static dyn QuantumCache> {
        if self.qcache_state.load(Ordering::Acquire) == QC_PLUGGED {
            // SAFETY: published once (see set_quantum_cache), never changed.
            self.qcache.with(|p| unsafe { *p })
        } else {
            None
        }
    }

    /// Whether a quantum cache is plugged in (and not yet detached by
    /// [`Arena::destroy`]).
    pub fn has_quantum_cache(&self) -> bool {
        self.quantum_cache().is_some()
    }

    /// Ask the quantum cache to give the segments it holds idle back to the
    /// arena ([`QuantumCache::qc_reclaim`]; NetBSD reclaims the `qc_cache`
    /// pools when memory is short). Without a cache, nothing to do.
    ///
    /// # Panics
    /// On a destroyed arena.
    #[track_caller]
    pub fn reclaim(&self) {
        self.assert_alive();
        if let Some(qc) = self.quantum_cache() {
            qc.qc_reclaim(self);
        }
    }

    // ---- tags ----

    /// Make sure more than `want - 1` spare tags exist (NetBSD's
    /// `bt_refill`), dropping the lock around calls for more memory.
    pub(crate) fn refill<'a>(
        &'a self,
        mut g: KMutexGuard<'a, Inner>,
        flags: VmFlags,
        want: usize,
    ) -> Result<KMutexGuard<'a, Inner>, VmemError> {
        let private = self.flags.contains(VmFlags::PRIVTAGS);
        while g.nspare < want {
            if private {
                // Only donated tags: wait for frees to return some.
                if flags.contains(VmFlags::SLEEP) {
                    g.stats.sleeps += 1;
                    // Waits for tags, not space: `want` 0.
                    let tag = g.generation;
                    g = WaitQueue::wait_tagged(g, |i| &mut i.sleepers, 0, tag, "vmem");
                    continue;
                }
                return Err(VmemError::NoMemory);
            }
            let got = bt::SUPPLY.lock().pop();
            match got {
                Some(t) => g.spare_push(t),
                None => {
                    drop(g);
                    let grown = bt::grow_supply(flags);
                    if !grown {
                        if flags.contains(VmFlags::NOSLEEP) {
                            return Err(VmemError::NoMemory);
                        }
                        pause();
                    }
                    g = self.lock.lock();
                }
            }
        }
        Ok(g)
    }

    /// Return spare tags above `keep` to the global supply (private ones
    /// stay).
    pub(crate) fn trim(&self, g: &mut Inner, keep: usize) {
        if g.nspare <= keep {
            return;
        }
        let mut s = bt::SUPPLY.lock();
        while g.nspare > keep {
            match g.spare_pop_shared() {
                Some(t) => s.push(t),
                None => break,
            }
        }
    }

    /// `vmem_add_bts`: donate tags to this arena (private: never trimmed).
    ///
    /// # Panics
    /// On a destroyed arena, before the tags are touched.
    #[track_caller]
    pub fn add_bts(&self, tags: &'static mut [BoundaryTag]) {
        self.assert_alive();
        let mut g = self.check_alive(self.lock.lock());
        for t in tags.iter_mut() {
            *t = BoundaryTag::new();
            t.flags = BT_F_PRIVATE;
            g.spare_push(t as *mut Bt);
        }
    }

    // ---- spans ----

    /// `vmem_add`: add the static span `[addr, addr+size)`.
    ///
    /// # Panics
    /// If `size` is 0, the span wraps past the top of the address type, or
    /// `addr`/`size` are not quantum aligned.
    #[track_caller]
    pub fn add(&self, addr: usize, size: usize, flags: VmFlags) -> Result<(), VmemError> {
        self.assert_alive();
        check_sleep_flags("vmem_add", flags);
        if size == 0 {
            panic!("vmem_add: arena '{}': size 0", self.name);
        }
        if addr.checked_add(size - 1).is_none() {
            panic!(
                "vmem_add: arena '{}': span {addr:#x}+{size:#x} wraps around",
                self.name
            );
        }
        if (addr | size) & (self.quantum - 1) != 0 {
            panic!(
                "vmem_add: arena '{}': span {addr:#x}+{size:#x} is not quantum ({:#x}) aligned",
                self.name, self.quantum
            );
        }
        let g = self.check_alive(self.lock.lock());
        let g = self.refill(g, flags, 2)?;
        // `refill` may have dropped the lock: a destroy may have run since.
        let mut g = self.check_alive(g);
        g.add_span(addr, size, BT_TYPE_SPAN_STATIC, self.qshift);
        self.wake_sleepers(&mut g);
        Ok(())
    }

    /// Wake the sleepers the arena can satisfy now, oldest first: each
    /// that has not yet failed against this very state (its tag is the
    /// generation at which it last failed), asks for no more than the
    /// largest free segment can hold, and fits in the free bytes not yet
    /// promised to an earlier one. A sleeper for tags (`want` 0) wakes on
    /// any change. A woken sleeper that fails, or succeeds with room to
    /// spare, calls this again, so nobody who could proceed stays asleep.
    pub(crate) fn wake_sleepers(&self, g: &mut Inner) {
        if g.sleepers.is_empty() {
            return;
        }
        let generation = g.generation;
        let mut budget = g.size - g.inuse;
        let largest = g.largest_free_bound(self.qshift);
        g.sleepers.wake_tagged(|want, tag| {
            if tag == generation {
                return false;
            }
            if want == 0 {
                return true;
            }
            if want <= budget && want <= largest {
                budget -= want;
                true
            } else {
                false
            }
        });
    }

    /// Whether [`Arena::destroy`] has run.
    pub fn is_destroyed(&self) -> bool {
        self.destroyed.load(Ordering::Acquire)
    }

    /// The use-after-destroy check of the entry points that do not take the
    /// lock first (or not at all: the quantum-cache paths).
    #[inline]
    #[track_caller]
    pub(crate) fn assert_alive(&self) {
        if self.destroyed.load(Ordering::Acquire) {
            self.used_after_destroy();
        }
    }

    /// The authoritative check, under the lock (`destroyed` is written
    /// under it). Consumes the guard so that the panic, which runs the panic
    /// hook, never runs with the arena's spin mutex held.
    #[inline]
    #[track_caller]
    pub(crate) fn check_alive<'a>(&self, g: KMutexGuard<'a, Inner>) -> KMutexGuard<'a, Inner> {
        if self.destroyed.load(Ordering::Relaxed) {
            drop(g);
            self.used_after_destroy();
        }
        g
    }

    #[cold]
    #[track_caller]
    pub(crate) fn used_after_destroy(&self) -> ! {
        panic!("vmem: arena '{}' used after vmem_destroy", self.name);
    }

    // ---- sizes, rehash, destroy ----

    /// `vmem_size`: `SizeType::ALLOC` bytes busy, `FREE` span bytes not busy,
    /// `ALL` all span bytes.
    ///
    /// # Panics
    /// On any other mask, as NetBSD does.
    #[track_caller]
    pub fn size(&self, typemask: SizeType) -> usize {
        let g = self.lock.lock();
        match typemask.0 {
            0x01 => g.inuse,
            0x02 => g.size - g.inuse,
            0x03 => g.size,
            other => {
                drop(g);
                panic!("vmem_size: bad type mask {other:#x}")
            }
        }
    }

    /// Resize the busy hash from the high-water mark (`vmem_rehash`, spec
    /// §1.3.4): grow when it exceeds twice the table, shrink when below
    /// half; the mark decays. A periodic task calls this for every arena
    /// ([`crate::vmem_rehash_all`]); allocations grow the table on their own.
    pub fn rehash(&self) {
        self.rehash_to_max_busy(true);
    }

    pub(crate) fn rehash_to_max_busy(&self, decay: bool) {
        let (desired, cur) = {
            let g = self.lock.lock();
            // A destroyed arena has nothing to rehash, and a table installed
            // now would never be freed.
            if self.destroyed.load(Ordering::Relaxed) {
                return;
            }
            (g.hash.maxbusy.clamp(1, self.hash_max()), g.hash.size)
        };
        if !(desired > 2 * cur || 2 * desired < cur) {
            if decay {
                self.decay();
            }
            return;
        }
        // NetBSD's rounding: 1 << (floor(log2 n) + 1), clamped.
        let newsize = (1usize << (usize::BITS - desired.leading_zeros())).min(self.hash_max());
        let table = if newsize == 1 {
            None
        } else {
            let Some(meta) = bt::meta_source() else {
                return;
            };
            match meta.alloc_meta(table_bytes(newsize), VmFlags::NOSLEEP) {
                Some(p) => Some(p),
                None => return,
            }
        };
        let mut g = self.lock.lock();
        if self.destroyed.load(Ordering::Relaxed) {
            // Destroyed while the lock was dropped: the new table is unused.
            drop(g);
            if let (Some(t), Some(meta)) = (table, bt::meta_source()) {
                // SAFETY: allocated above with this size, never published.
                unsafe { meta.free_meta(t, table_bytes(newsize)) };
            }
            return;
        }
        // SAFETY: the table has room for `newsize` bucket heads (or is the
        // embedded bucket when newsize is 1).
        let (old, oldsize) = unsafe {
            g.hash.rehash(
                table.map_or(ptr::null_mut(), |p| p.as_ptr().cast()),
                newsize,
            )
        };
        g.stats.rehashes += 1;
        if decay {
            let h = &mut g.hash;
            h.maxbusy = if h.maxbusy < 2 {
                h.nbusy
            } else {
                (h.maxbusy / 2 - 1).max(h.nbusy)
            };
        }
        drop(g);
        if let (Some(old), Some(meta)) = (NonNull::new(old.cast::<u8>()), bt::meta_source()) {
            // SAFETY: the old table came from alloc_meta(table_bytes(oldsize))
            // and no arena references it after the rehash.
            unsafe { meta.free_meta(old, table_bytes(oldsize)) };
        }
    }

    fn decay(&self) {
        let mut g = self.lock.lock();
        if self.destroyed.load(Ordering::Relaxed) {
            return;
        }
        let h = &mut g.hash;
        h.maxbusy = if h.maxbusy < 2 {
            h.nbusy
        } else {
            (h.maxbusy / 2 - 1).max(h.nbusy)
        };
    }

    /// The most buckets the busy hash may have.
    pub fn hash_max(&self) -> usize {
        if self.flags.contains(VmFlags::LARGEHASH) {
            VMEM_HASHSIZE_MAX_LARGE
        } else {
            VMEM_HASHSIZE_MAX
        }
    }

    /// The busy-hash size (buckets).
    pub fn hash_size(&self) -> usize {
        self.lock.lock().hash.size
    }

    /// `vmem_destroy`: give imported spans back to the source, every tag
    /// back to the supply (donated ones are dropped with the arena), the
    /// hash table back to the meta source. The arena is unusable afterwards.
    ///
    /// A destroy waits (sleeping) for [`crate::for_each_arena`] walkers
    /// that hold the arena, so it must not be called from such a walker's
    /// callback on the same arena.
    ///
    /// An arena with a quantum cache first detaches it and has it give
    /// everything back ([`QuantumCache::qc_destroy`], called once, with no
    /// lock held); the arena then serves every size itself.
    ///
    /// # Panics
    /// If allocations are still live ("vmem_destroy: … still allocated"), or
    /// if the arena was already destroyed; nothing changes then, except
    /// that a quantum cache, once told to destroy itself, stays detached.
    #[track_caller]
    pub fn destroy(&self) {
        let g = self.check_alive(self.lock.lock());
        // The quantum cache first (NetBSD's `qc_destroy`): its segments are
        // busy ones of this arena. Detached under the lock, so that from now
        // on every size, the cache's own frees included, comes here; called
        // without it (unknown code).
        let detached = if self.qcache_state.load(Ordering::Relaxed) == QC_PLUGGED {
            self.qcache_state.store(QC_DETACHED, Ordering::Release);
            // SAFETY: published before QC_PLUGGED (see set_quantum_cache).
            self.qcache.with(|p| unsafe { *p })
        } else {
            None
        };
        drop(g);
        if let Some(qc) = detached {
            qc.qc_destroy(self);
        }
        let g = self.check_alive(self.lock.lock());
        if g.hash.nbusy != 0 {
            let (n, b) = (g.hash.nbusy, g.inuse);
            drop(g);
            self.still_allocated(n, b);
        }
        drop(g);
        // Only once the arena is known to be idle: a refused destroy changes
        // nothing. (The arena list ranks above arena locks.) Walkers pin
        // only registered arenas, under the list lock: once unregistered, no
        // new pin appears, and the ones taken before go away when their
        // callbacks return.
        crate::registry::unregister(self);
        let mut g = self.check_alive(self.lock.lock());
        while self.walkers.load(Ordering::Relaxed) != 0 {
            // Unpinning happens under this lock and broadcasts `cv`.
            g = self.cv.wait(g);
        }
        if g.hash.nbusy != 0 {
            // Allocated from while the lock was dropped (racing a destroy is
            // the caller's bug): refuse rather than tear live segments down.
            // The arena stays usable, though no longer registered.
            let (n, b) = (g.hash.nbusy, g.inuse);
            drop(g);
            self.still_allocated(n, b);
        }
        self.destroyed.store(true, Ordering::Release);
        // Sleepers of a destroyed arena wake to its use-after-destroy panic.
        g.sleepers.wake_all();
        g.generation = g.generation.wrapping_add(1);
        let mut released: [(usize, usize); 8] = [(0, 0); 8];
        loop {
            // Tear down span by span; release imported ones unlocked.
            let mut n = 0;
            let mut bt = g.seg_head;
            while !bt.is_null() && n < released.len() {
                // SAFETY: walking our own segment list.
                let next = unsafe { (*bt).seg_next };
                g.seg_remove(bt);
                // SAFETY: a tag we just unlinked.
                let (typ, start, size) = unsafe { ((*bt).typ, (*bt).start, (*bt).size) };
                if typ == crate::bt::BT_TYPE_FREE {
                    g.fl_remove(bt, self.qshift);
                }
                if typ == BT_TYPE_SPAN {
                    released[n] = (start, size);
                    n += 1;
                }
                if Inner::is_span_type(typ) {
                    g.size -= size;
                    g.nspans -= 1;
                }
                g.spare_push(bt);
                bt = next;
            }
            if n == 0 && g.seg_head.is_null() {
                break;
            }
            drop(g);
            if let Some(src) = self.source.filter(|s| s.can_release()) {
                for &(s, z) in &released[..n] {
                    src.release(s, z);
                }
            }
            g = self.lock.lock();
        }
        g.cursor = ptr::null_mut();
        g.nimported = 0;
        self.trim(&mut g, 0);
        // SAFETY: no tags remain; switching back to the embedded bucket.
        let (old, oldsize) = unsafe { g.hash.rehash(ptr::null_mut(), 1) };
        drop(g);
        if let (Some(old), Some(meta)) = (NonNull::new(old.cast::<u8>()), bt::meta_source()) {
            // SAFETY: the table came from alloc_meta(table_bytes(oldsize)).
            unsafe { meta.free_meta(old, table_bytes(oldsize)) };
        }
        self.cv.broadcast();
    }

    #[cold]
    #[track_caller]
    fn still_allocated(&self, n: usize, bytes: usize) -> ! {
        panic!(
            "vmem_destroy: arena '{}': {n} allocations ({bytes:#x} bytes) still allocated",
            self.name
        );
    }

    /// Whether `addr` is the start of a busy segment (for wrappers/tests).
    pub fn is_allocated(&self, addr: usize) -> bool {
        self.busy_size(addr).is_some()
    }

    /// The size of the busy segment that starts at `addr`, if there is one:
    /// one busy-hash lookup, constant expected time. Segments a quantum
    /// cache hands out live inside the cache's own larger segments and are
    /// not seen here.
    pub fn busy_size(&self, addr: usize) -> Option<usize> {
        let mut g = self.lock.lock();
        let bt = g.hash.lookup(addr);
        // SAFETY: a tag on the hash is valid.
        (!bt.is_null() && unsafe { (*bt).typ } == BT_TYPE_BUSY).then(|| {
            // SAFETY: as above.
            unsafe { (*bt).size }
        })
    }
}

/// A by-value arena ([`Arena::create`], [`Arena::with_config`], a field of
/// a struct) is destroyed when dropped, unless [`Arena::destroy`] already
/// ran: tags back to the global supply, imported spans back to the source,
/// the hash table back to the meta source.
///
/// Arenas that live in a `vmem_create` descriptor or in `vmem_init`'s
/// caller storage are never dropped (they end with [`vmem_destroy`]); nor
/// are statics.
///
/// A plugged-in quantum cache is destroyed first, as by [`Arena::destroy`].
///
/// # Panics
/// With live allocations, as `vmem_destroy` does ("… still allocated"),
/// except while the thread is already panicking (with the `std` feature):
/// the arena's tags and spans (and the cache) are then leaked rather than
/// turning the unwind into an abort.
///
/// [`vmem_destroy`]: crate::vmem_destroy
impl Drop for Arena {
    #[track_caller]
    fn drop(&mut self) {
        if self.destroyed.load(Ordering::Acquire) {
            return;
        }
        // While unwinding, a busy arena (or its quantum cache, whose
        // segments are busy here) is leaked rather than torn down: a panic
        // from `destroy`, or from the cache, would abort.
        #[cfg(feature = "std")]
        if std::thread::panicking() && self.lock.get_mut().hash.nbusy != 0 {
            return;
        }
        // Panics with live allocations, after the quantum cache gave its
        // segments back.
        self.destroy();
    }
}

pub(crate) fn table_bytes(buckets: usize) -> usize {
    (buckets * core::mem::size_of::<*mut Bt>()).next_multiple_of(4096)
}
