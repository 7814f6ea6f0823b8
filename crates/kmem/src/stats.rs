//! Statistics: each size class's cache (`vmstat -m` rows of its pool,
//! `vmstat -C` rows of the cache) and the large path's counters.

use core::fmt;

use bsdalloc_platform::sync::atomic::Ordering;
use bsdalloc_pool::{VmstatOptions, write_vmstat_m};
use bsdalloc_pool_cache::{PoolCacheStats, VmstatCOptions, write_vmstat_c};

use crate::classes::MAX_CLASSES;
use crate::kmem::Kmem;

/// Counters of the large (whole-page) path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LargeStats {
    /// Large allocations ever made.
    pub allocs: u64,
    /// Large allocations ever freed.
    pub frees: u64,
    /// `KM_NOSLEEP` large allocations that failed.
    pub fails: u64,
    /// Live large allocations.
    pub live: usize,
    /// Bytes of live large allocations (whole pages).
    pub live_bytes: usize,
}

/// A snapshot of a kmem instance: its caches, in size order, and the
/// large path. `Display` prints the kmem rows of `vmstat -m` and
/// `vmstat -C`, then the large path.
#[derive(Clone, Copy, Debug)]
pub struct KmemStats {
    /// `PAGE_SIZE`.
    pub page_size: usize,
    /// `COHERENCY_UNIT`.
    pub coherency_unit: usize,
    /// Each class's cache statistics (its pool's in `.pool`), smallest
    /// first; `None` past the last class.
    pub caches: [Option<PoolCacheStats>; MAX_CLASSES],
    /// The large path.
    pub large: LargeStats,
    /// Bytes of the `kva` arena in use (large allocations and the address
    /// space its quantum caches hold).
    pub kva_in_use: usize,
}

impl KmemStats {
    /// The caches' statistics.
    pub fn caches(&self) -> impl Iterator<Item = &PoolCacheStats> + '_ {
        self.caches.iter().flatten()
    }

    /// The statistics of the cache named `name` (`kmem-00064`).
    pub fn cache(&self, name: &str) -> Option<&PoolCacheStats> {
        self.caches().find(|c| c.name == name)
    }
}

impl fmt::Display for KmemStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "kmem: PAGE_SIZE {}, COHERENCY_UNIT {}",
            self.page_size, self.coherency_unit
        )?;
        write_vmstat_m(
            f,
            self.caches().map(|c| c.pool),
            VmstatOptions {
                wide: true,
                verbose: true,
            },
        )?;
        writeln!(f)?;
        write_vmstat_c(f, self.caches().copied(), VmstatCOptions { verbose: true })?;
        writeln!(f)?;
        write!(
            f,
            "kmem large: {} allocs, {} frees, {} failed, {} live ({} bytes); kva in use {} bytes",
            self.large.allocs,
            self.large.frees,
            self.large.fails,
            self.large.live,
            self.large.live_bytes,
            self.kva_in_use
        )
    }
}

impl Kmem {
    /// A statistics snapshot (thread context: the caches' per-CPU
    /// counters are read by cross-call).
    pub fn stats(&self) -> KmemStats {
        let k = self.inner();
        let mut caches = [None; MAX_CLASSES];
        for (slot, pc) in caches.iter_mut().zip(k.caches.iter()) {
            *slot = pc.map(|pc| pc.stats());
        }
        KmemStats {
            page_size: k.ps,
            coherency_unit: k.classes.coherency_unit(),
            caches,
            large: LargeStats {
                allocs: self.large.allocs.load(Ordering::Relaxed),
                frees: self.large.frees.load(Ordering::Relaxed),
                fails: self.large.fails.load(Ordering::Relaxed),
                live: self.large.live.load(Ordering::Relaxed),
                live_bytes: self.large.live_bytes.load(Ordering::Relaxed),
            },
            kva_in_use: k.kva.size(bsdalloc_vmem::SizeType::ALLOC),
        }
    }
}
