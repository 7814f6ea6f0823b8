//! The quantum-cache hook: the trait `bsdalloc-pool-cache` implements, how
//! an arena plugs a cache in, asks it to reclaim, and detaches it at
//! destroy.

use bsdalloc_platform::KMutexGuard;
use bsdalloc_platform::sync::atomic::Ordering;

use crate::arena::Arena;
use crate::flags::{VmFlags, VmemError};
use crate::inner::Inner;

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

/// No quantum cache was ever plugged in.
pub(crate) const QC_NONE: u8 = 0;
/// A quantum cache is plugged in and serves sizes up to `qcache_max`.
pub(crate) const QC_PLUGGED: u8 = 1;
/// The cache was detached by `destroy` (and told to give everything back):
/// the arena serves every size itself from then on.
pub(crate) const QC_DETACHED: u8 = 2;

impl Arena {
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

    /// Detach the plugged-in cache, if any, and return it for its
    /// `qc_destroy` (NetBSD's `vmem_destroy` calls `qc_destroy` first: the
    /// cache's segments are busy ones of this arena). Under the lock, so
    /// that from now on every size, the cache's own frees included, comes
    /// to the arena itself; the caller calls the cache after dropping it.
    pub(crate) fn detach_quantum_cache(
        &self,
        _locked: &KMutexGuard<'_, Inner>,
    ) -> Option<&'static dyn QuantumCache> {
        if self.qcache_state.load(Ordering::Relaxed) != QC_PLUGGED {
            return None;
        }
        self.qcache_state.store(QC_DETACHED, Ordering::Release);
        // SAFETY: published before QC_PLUGGED (see set_quantum_cache),
        // never written again.
        self.qcache.with(|p| unsafe { *p })
    }
}
