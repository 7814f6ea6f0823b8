//! vmem quantum caches (spec §1.7, NetBSD's `qc_init`): pool caches that
//! front an arena for sizes up to `qcache_max`, one per multiple of the
//! quantum, named `"<arena>-<size>"`, whose "pages" are segments of the arena
//! itself. They plug into vmem through its [`QuantumCache`] hook.

use core::fmt::{self, Write};
use core::ptr::{self, NonNull};

use bsdalloc_platform::sync::atomic::{AtomicBool, Ordering};
use bsdalloc_pool::{POOL_ALLOCATOR_META, PoolAllocator, PoolConfig, PrFlags, RawPool};
use bsdalloc_vmem::{Arena, QuantumCache, VmFlags, VmemError};

use crate::pool_cache::{PoolCacheConfig, RawPoolCache};
use crate::subsys::{pool_cache_destroy, pool_cache_init};

/// At most this many classes (`qcache_max` is clamped to 16 quanta).
pub const VMEM_QCACHE_IDX_MAX: usize = 16;

const NAME_LEN: usize = 48;

/// The back end of the quantum-cache pools: segments of `pagesz` bytes of
/// the arena (`vmem_alloc(INSTANTFIT)`), larger than `qcache_max`, so the
/// arena never sends them back to its cache. Addresses, never touched
/// (the pools are `PR_NOTOUCH`).
struct QcAllocator {
    arena: &'static Arena,
    pagesz: usize,
    /// A segment at address 0 cannot be a pool page (items are non-null
    /// pointers): it is kept out of the cache until destroy.
    zero_held: AtomicBool,
}

// SAFETY: vmem hands out each segment once until freed; with NOSLEEP it
// does not sleep; its lock ranks after the pool. Pages are resource
// addresses (`is_memory` false): pools over them are PR_NOTOUCH, enforced
// by pool_init.
unsafe impl PoolAllocator for QcAllocator {
    fn pagesz(&self) -> usize {
        self.pagesz
    }

    fn alloc(&self, pagesz: usize, flags: PrFlags) -> Option<NonNull<u8>> {
        let vf = if flags.contains(PrFlags::WAITOK) {
            VmFlags::SLEEP | VmFlags::INSTANTFIT
        } else {
            VmFlags::NOSLEEP | VmFlags::INSTANTFIT
        };
        loop {
            let va = self.arena.alloc(pagesz, vf).ok()?;
            if let Some(p) = NonNull::new(ptr::without_provenance_mut(va)) {
                return Some(p);
            }
            self.zero_held.store(true, Ordering::Relaxed);
        }
    }

    unsafe fn free(&self, page: NonNull<u8>, pagesz: usize) {
        self.arena.free(page.as_ptr().addr(), pagesz);
    }

    fn name(&self) -> &'static str {
        "vmem-qcache"
    }

    fn is_memory(&self) -> bool {
        false
    }
}

/// An arena's quantum caches (NetBSD's `vm_qcache[]`): the provider of
/// vmem's [`QuantumCache`] hook.
pub struct QuantumCaches {
    arena: &'static Arena,
    quantum: usize,
    /// `log2(quantum)`: the class of a rounded size is a shift away.
    shift: u32,
    nclasses: usize,
    alloc: QcAllocator,
    /// Class `i` (size `(i + 1) × quantum`) → its cache (shared by classes
    /// with the same items per page).
    table: [Option<&'static RawPoolCache>; VMEM_QCACHE_IDX_MAX],
    names: [[u8; NAME_LEN]; VMEM_QCACHE_IDX_MAX],
}

impl fmt::Debug for QuantumCaches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuantumCaches")
            .field("arena", &self.arena.name())
            .field("quantum", &self.quantum)
            .field("classes", &self.nclasses)
            .field("pagesz", &self.alloc.pagesz)
            .finish_non_exhaustive()
    }
}

/// Descriptors of quantum-cache sets, from the stack's own memory.
static QCDESC: RawPool = RawPool::new(
    PoolConfig::new("vmemqc", core::mem::size_of::<QuantumCaches>())
        .align(core::mem::align_of::<QuantumCaches>())
        .allocator(&POOL_ALLOCATOR_META),
);
static QCDESC_INIT: bsdalloc_platform::AdaptiveMutex<()> =
    bsdalloc_platform::AdaptiveMutex::new(());

/// A `fmt::Write` into a fixed name buffer.
struct NameBuf<'a> {
    b: &'a mut [u8; NAME_LEN],
    n: usize,
}

impl Write for NameBuf<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.n + s.len();
        if end > NAME_LEN {
            return Err(fmt::Error);
        }
        self.b[self.n..end].copy_from_slice(s.as_bytes());
        self.n = end;
        Ok(())
    }
}

/// `qc_init`: create `arena`'s quantum caches and plug them in
/// ([`Arena::set_quantum_cache`]). Caches are made from the largest class
/// down: class `i` holds items of `i × quantum` bytes, aligned to the
/// quantum, `PR_NOALIGN | PR_NOTOUCH | PR_RECURSIVE`, at the arena's level,
/// over pages of the smallest power of two above `3 × qcache_max`; a class
/// with as many items per page as the next larger one shares its cache.
///
/// ```
/// use bsdalloc_pool_cache::vmem_qcache_init;
/// use bsdalloc_vmem::{ArenaConfig, VmFlags, vmem_xcreate};
///
/// let a = vmem_xcreate(ArenaConfig::new("ids", 1).qcache_max(16), 1, 1 << 20).unwrap();
/// let qc = vmem_qcache_init(a);
/// let id = a.alloc(3, VmFlags::SLEEP | VmFlags::INSTANTFIT).unwrap(); // from cache "ids-3"
/// assert_eq!(qc.cache_for(3).unwrap().name(), "ids-3");
/// a.free(id, 3);
/// ```
///
/// # Panics
/// If the arena has no `qcache_max`, already has a quantum cache, or has
/// live allocations; from interrupt context.
pub fn vmem_qcache_init(arena: &'static Arena) -> &'static QuantumCaches {
    let qmax = arena.qcache_max();
    assert!(
        qmax > 0,
        "qc_init: arena '{}' has no qcache_max",
        arena.name()
    );
    assert!(
        !arena.has_quantum_cache(),
        "qc_init: arena '{}' already has a quantum cache",
        arena.name()
    );
    let quantum = arena.quantum();
    let nclasses = (qmax / quantum).min(VMEM_QCACHE_IDX_MAX);
    let pagesz = (3 * qmax + 1).next_power_of_two();
    {
        let _g = QCDESC_INIT.lock();
        if !QCDESC.is_initialized() {
            QCDESC.init();
        }
    }
    let d = QCDESC
        .get(PrFlags::WAITOK)
        .expect("qc_init: PR_WAITOK returned nothing")
        .cast::<QuantumCaches>();
    // SAFETY: a fresh descriptor-sized, -aligned item of ours; it lives
    // until `qc_destroy`.
    let qc: &'static mut QuantumCaches = unsafe {
        d.as_ptr().write(QuantumCaches {
            arena,
            quantum,
            shift: quantum.trailing_zeros(),
            nclasses,
            alloc: QcAllocator {
                arena,
                pagesz,
                zero_held: AtomicBool::new(false),
            },
            table: [None; VMEM_QCACHE_IDX_MAX],
            names: [[0; NAME_LEN]; VMEM_QCACHE_IDX_MAX],
        });
        &mut *d.as_ptr()
    };
    let alloc: &'static QcAllocator = {
        let p: *const QcAllocator = &qc.alloc;
        // SAFETY: the descriptor is never moved or freed before
        // `qc_destroy` has destroyed every cache using it.
        unsafe { &*p }
    };
    let mut prev: Option<&'static RawPoolCache> = None;
    for i in (1..=nclasses).rev() {
        let size = i * quantum;
        let mut nb = NameBuf {
            b: &mut qc.names[i - 1],
            n: 0,
        };
        if write!(nb, "{}-{}", arena.name(), size).is_err() {
            nb.n = 0;
            let _ = write!(nb, "qcache-{size}");
        }
        let n = nb.n;
        let bytes: *const [u8] = &qc.names[i - 1][..n];
        // SAFETY: ASCII/UTF-8 written above, in a buffer that lives as
        // long as the descriptor (until the caches are destroyed).
        let name: &'static str = unsafe { core::str::from_utf8_unchecked(&*bytes) };
        let cfg = PoolCacheConfig::new(name, size)
            .align(quantum)
            .flags(
                PrFlags::NOALIGN
                    .union(PrFlags::NOTOUCH)
                    .union(PrFlags::RECURSIVE),
            )
            .ipl(arena.ipl())
            .allocator(alloc);
        let pc = pool_cache_init(cfg);
        if let Some(p) = prev
            && p.pool().layout().itemsperpage == pc.pool().layout().itemsperpage
        {
            // No benefit in a cache of its own: the larger class's serves.
            // SAFETY: fresh, unused.
            unsafe { pool_cache_destroy(pc) };
            qc.table[i - 1] = Some(p);
        } else {
            qc.table[i - 1] = Some(pc);
            prev = Some(pc);
        }
    }
    let qc: &'static QuantumCaches = qc;
    arena.set_quantum_cache(qc);
    qc
}

impl QuantumCaches {
    /// The cache serving `size` bytes (`ceil(size / quantum)`'s class), if
    /// `size ≤ qcache_max`.
    pub fn cache_for(&self, size: usize) -> Option<&'static RawPoolCache> {
        if size == 0 {
            return None;
        }
        let i = size.div_ceil(self.quantum);
        if i > self.nclasses {
            return None;
        }
        self.table[i - 1]
    }

    /// The distinct caches, largest class first.
    pub fn caches(&self) -> impl Iterator<Item = &'static RawPoolCache> + '_ {
        let t = &self.table[..self.nclasses];
        (0..self.nclasses).rev().filter_map(move |i| {
            let pc = t[i]?;
            let shared = i + 1 < self.nclasses && t[i + 1].is_some_and(|n| core::ptr::eq(n, pc));
            (!shared).then_some(pc)
        })
    }

    /// The cache pools' page size: the smallest power of two above
    /// `3 × qcache_max`.
    pub fn page_size(&self) -> usize {
        self.alloc.pagesz
    }

    /// The cache of a size vmem already rounded to the quantum.
    #[inline]
    fn cache(&self, arena: &Arena, size: usize) -> &'static RawPoolCache {
        let i = (size >> self.shift).wrapping_sub(1);
        match self.table.get(i).copied().flatten() {
            Some(pc) => pc,
            None => bad_size(arena, size),
        }
    }
}

impl QuantumCache for QuantumCaches {
    #[inline]
    fn qc_alloc(&self, arena: &Arena, size: usize, flags: VmFlags) -> Result<usize, VmemError> {
        let pf = if flags.contains(VmFlags::SLEEP) {
            PrFlags::WAITOK
        } else {
            PrFlags::NOWAIT
        };
        match self.cache(arena, size).get(pf) {
            Some(p) => Ok(p.as_ptr().addr()),
            None => Err(VmemError::NoMemory),
        }
    }

    #[inline]
    fn qc_free(&self, arena: &Arena, addr: usize, size: usize) {
        let pc = self.cache(arena, size);
        let Some(p) = NonNull::new(ptr::without_provenance_mut::<u8>(addr)) else {
            panic!(
                "vmem_free: arena '{}': address 0 was never handed out by its quantum cache",
                arena.name()
            );
        };
        // SAFETY: vmem's contract: `addr` came from `qc_alloc(size)` of this
        // arena (an item of this class's cache), freed once. A foreign
        // address is caught by the pool when the item goes back to it.
        unsafe { pc.put(p) };
    }

    fn qc_reclaim(&self, _arena: &Arena) {
        for pc in self.caches() {
            pc.reclaim();
        }
    }

    fn qc_destroy(&self, arena: &Arena) {
        for pc in self.caches() {
            // SAFETY: the arena is detached from us: nobody reaches the
            // caches any more.
            unsafe { pool_cache_destroy(pc) };
        }
        if self.alloc.zero_held.load(Ordering::Relaxed) {
            arena.free(0, self.alloc.pagesz);
        }
        // SAFETY: a descriptor of QCDESC, unused from now on.
        unsafe { QCDESC.put(NonNull::from(self).cast()) };
    }
}

#[cold]
#[inline(never)]
fn bad_size(arena: &Arena, size: usize) -> ! {
    panic!(
        "vmem '{}': quantum cache asked for {size:#x} bytes",
        arena.name()
    )
}
