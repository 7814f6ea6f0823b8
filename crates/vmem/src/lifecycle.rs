//! An arena's life: construction (`vmem_init`'s const part), the one
//! create path behind `vmem_create`, `vmem_xcreate`, `vmem_init` and
//! [`Arena::with_config`], and the teardown of `vmem_destroy` and `Drop`.

use core::ptr;

use bsdalloc_platform::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering,
};
use bsdalloc_platform::sync::cell::UnsafeCell;
use bsdalloc_platform::{KMutex, LockRank, WaitChannel};

use crate::arena::{Arena, ArenaConfig, check_sleep_flags, table_bytes};
use crate::bt::{self, BT_TYPE_SPAN};
use crate::flags::{BT_MINRESERVE, VMEM_NAME_MAX, VMEM_QCACHE_IDX_MAX, VmFlags, VmemError};
use crate::inner::Inner;
use crate::qcache::QC_NONE;

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
            lock: KMutex::ranked(cfg.ipl, LockRank::Arena, Inner::new()),
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

    /// `vmem_destroy`: give imported spans back to the source, every tag
    /// back to the supply (donated ones are dropped with the arena), the
    /// hash table back to the meta source. The arena is unusable afterwards.
    ///
    /// A destroy waits (sleeping) for [`crate::for_each_arena`] walkers
    /// that hold the arena, so it must not be called from such a walker's
    /// callback on the same arena.
    ///
    /// An arena with a quantum cache first detaches it and has it give
    /// everything back ([`QuantumCache::qc_destroy`](crate::QuantumCache::qc_destroy), called once, with no
    /// lock held); the arena then serves every size itself.
    ///
    /// # Panics
    /// If allocations are still live ("vmem_destroy: … still allocated"), or
    /// if the arena was already destroyed; nothing changes then, except
    /// that a quantum cache, once told to destroy itself, stays detached.
    #[track_caller]
    pub fn destroy(&self) {
        let g = self.check_alive(self.lock.lock());
        // The quantum cache first; called without the lock (unknown code).
        let detached = self.detach_quantum_cache(&g);
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
                // SAFETY: walking our own segment list; `bt` is on it.
                let (next, typ, start, size) = unsafe {
                    let t = ((*bt).seg_next, (*bt).typ, (*bt).start, (*bt).size);
                    g.seg_remove(bt);
                    t
                };
                if typ == crate::bt::BT_TYPE_FREE {
                    // SAFETY: a FREE tag is on the free list of its class.
                    unsafe { g.fl_remove(bt, self.qshift) };
                }
                if typ == BT_TYPE_SPAN {
                    released[n] = (start, size);
                    n += 1;
                }
                if Inner::is_span_type(typ) {
                    g.size -= size;
                    g.nspans -= 1;
                }
                // SAFETY: off every list now (no BUSY tags are left).
                unsafe { g.spare_push(bt) };
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
        let (old, oldsize) = unsafe { g.hash.rehash(None, 1) };
        drop(g);
        if let (Some(old), Some(meta)) = (old, bt::meta_source()) {
            // SAFETY: the table came from alloc_meta(table_bytes(oldsize)).
            unsafe { meta.free_meta(old.cast(), table_bytes(oldsize)) };
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
