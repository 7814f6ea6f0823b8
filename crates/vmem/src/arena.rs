//! The arena: NetBSD's `struct vmem`, its configuration, the import
//! source trait, and the entry points that manage tags, spans, sleepers,
//! sizes and the busy hash. Allocation and free are in `alloc.rs`,
//! creation and destruction in `lifecycle.rs`, the quantum cache in
//! `qcache.rs`.

use core::fmt;
use core::ptr::{self, NonNull};

use bsdalloc_platform::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering,
};
use bsdalloc_platform::sync::cell::UnsafeCell;
use bsdalloc_platform::{Ipl, KMutex, KMutexGuard, WaitChannel, WaitQueue};

use crate::bt::{self, BT_F_PRIVATE, BT_TYPE_BUSY, BT_TYPE_SPAN_STATIC, BoundaryTag};
use crate::flags::{SizeType, VMEM_HASHSIZE_MAX, VMEM_HASHSIZE_MAX_LARGE, VmFlags, VmemError};
use crate::inner::Inner;
use crate::qcache::QuantumCache;

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
    pub(crate) ipl: Ipl,
    pub(crate) source: Option<&'static dyn SpanSource>,
    pub(crate) qcache_max: usize,
    /// `QC_NONE`, `QC_PLUGGED` or `QC_DETACHED`: whether `qcache` holds
    /// the cache and whether allocations go to it.
    pub(crate) qcache_state: AtomicU8,
    pub(crate) qcache: UnsafeCell<Option<&'static dyn QuantumCache>>,
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

// The checks inline into every allocation; their panics stay out of line
// (the formatting arguments were being set up on the fast path).
#[inline]
#[track_caller]
pub(crate) fn check_sleep_flags(what: &str, flags: VmFlags) {
    let s = flags & VmFlags::SLEEP_MASK;
    if s != VmFlags::SLEEP && s != VmFlags::NOSLEEP {
        bad_sleep_flags(what, flags);
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn bad_sleep_flags(what: &str, flags: VmFlags) -> ! {
    panic!("{what}: flags {flags:?} must contain exactly one of VM_SLEEP and VM_NOSLEEP");
}

#[inline]
#[track_caller]
pub(crate) fn check_fit_flags(what: &str, flags: VmFlags) -> VmFlags {
    let f = flags & VmFlags::FIT_MASK;
    if f != VmFlags::INSTANTFIT && f != VmFlags::BESTFIT && f != VmFlags::NEXTFIT {
        bad_fit_flags(what, flags);
    }
    f
}

#[cold]
#[inline(never)]
#[track_caller]
fn bad_fit_flags(what: &str, flags: VmFlags) -> ! {
    panic!(
        "{what}: flags {flags:?} must contain exactly one of VM_INSTANTFIT, VM_BESTFIT, VM_NEXTFIT"
    );
}

impl Arena {
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
        // The quantum is a power of two (checked at creation): a mask, not
        // the division `checked_next_multiple_of` compiles to, on every
        // vmem_alloc and vmem_free.
        let m = self.quantum - 1;
        size.checked_add(m).map(|s| s & !m)
    }

    /// Count an allocation that failed before reaching the search (its
    /// size cannot be rounded), and return the error.
    #[track_caller]
    pub(crate) fn fail_early(&self) -> VmemError {
        self.check_alive(self.lock.lock()).stats.failures += 1;
        VmemError::NoMemory
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
                // SAFETY: the supply handed `t` over: ours, on no list.
                Some(t) => unsafe { g.spare_push(t) },
                None => {
                    drop(g);
                    let grown = bt::grow_supply(flags);
                    if !grown {
                        if flags.contains(VmFlags::NOSLEEP) {
                            return Err(VmemError::NoMemory);
                        }
                        bsdalloc_platform::kpause();
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
                // SAFETY: taken off our spare list: referenced by nobody.
                Some(t) => unsafe { s.push(t) },
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
            // SAFETY: donated for good (`&'static mut`): the arena's own,
            // on no list.
            unsafe { g.spare_push(ptr::from_mut(t)) };
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

    /// The busy hash is due to grow on allocation: its high-water mark
    /// exceeds its bucket count (load above 1), and it may grow. NetBSD
    /// waits for twice the bucket count, and only in its periodic rehash;
    /// growing at a load of 1 keeps the mean successful lookup below 1.5
    /// tags, for one table doubling in the allocation that crosses it.
    #[inline]
    pub(crate) fn hash_should_grow(&self, g: &Inner) -> bool {
        g.hash.maxbusy > g.hash.size && g.hash.size < self.hash_max()
    }

    /// Resize the busy hash from its high-water mark. `decay`: NetBSD's
    /// periodic rehash (resize only past a factor of two either way, then
    /// decay the mark); without it, the growth on allocation
    /// ([`Arena::hash_should_grow`]).
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
        let due = if decay {
            desired > 2 * cur || 2 * desired < cur
        } else {
            desired > cur
        };
        if !due {
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
        let (old, oldsize) = unsafe { g.hash.rehash(table.map(NonNull::cast), newsize) };
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
        if let (Some(old), Some(meta)) = (old, bt::meta_source()) {
            // SAFETY: the old table came from alloc_meta(table_bytes(oldsize))
            // and no arena references it after the rehash.
            unsafe { meta.free_meta(old.cast(), table_bytes(oldsize)) };
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

    /// The most buckets the busy hash may have: NetBSD's
    /// [`VMEM_HASHSIZE_MAX`] with [`VmFlags::NETBSDHASH`], else (the
    /// default, an extension) [`VMEM_HASHSIZE_MAX_LARGE`].
    pub fn hash_max(&self) -> usize {
        if self.flags.contains(VmFlags::NETBSDHASH) {
            VMEM_HASHSIZE_MAX
        } else {
            VMEM_HASHSIZE_MAX_LARGE
        }
    }

    /// The busy-hash size (buckets).
    pub fn hash_size(&self) -> usize {
        self.lock.lock().hash.size
    }

    /// The busy hash's chain lengths, walking every bucket under the arena
    /// lock: O(buckets + busy segments), for reports and tests.
    pub fn hash_chains(&self) -> crate::hash::HashChains {
        self.lock.lock().hash.chains()
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

pub(crate) fn table_bytes(buckets: usize) -> usize {
    (buckets * core::mem::size_of::<*mut Bt>()).next_multiple_of(4096)
}
