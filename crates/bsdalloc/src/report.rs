//! The kernel's one report: what `vmstat -m`, `vmstat -C`, `vmem_dump`
//! and malloc(9)'s type table show on NetBSD.

use core::fmt;

use bsdalloc_pool::{VmstatOptions, pool_vmstat_m};
use bsdalloc_pool_cache::{VmstatCOptions, pool_cache_vmstat_c};
use bsdalloc_vmem::{ArenaStats, for_each_arena};

/// The report of [`Kernel::report`](crate::Kernel::report), as `Display`:
///
/// 1. `vmstat -m`: "Memory resource pool statistics", one row per pool
///    (the kmem caches `kmem-NNNNN`, the quantum caches `kva-NNNNN`, every
///    pool of the program), and the totals;
/// 2. `vmstat -C`: "Pool cache statistics.", per cache the CPU-layer and
///    depot hits and misses;
/// 3. "Memory statistics by type": malloc(9)'s per-type table and "Memory
///    Totals" (with the `kmalloc` feature);
/// 4. "Kernel map": the address space, committed, wired and cached pages,
///    the budget, pagedaemon passes and sleeps;
/// 5. "Arenas": a `vmem_dump` summary per arena — quantum, size, in use,
///    segments, spans, hash, allocation counters.
///
/// Each part snapshots its counters and formats them with no allocator
/// lock held, so the report may be written anywhere, including into a
/// `String` that this kernel allocates.
#[derive(Clone, Copy, Debug)]
pub struct Report {
    wide: bool,
}

impl Report {
    pub(crate) fn new() -> Report {
        Report { wide: true }
    }

    /// `vmstat -m` without `-W` (the narrow columns).
    #[must_use]
    pub fn narrow(mut self) -> Report {
        self.wide = false;
        self
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = crate::kernel();
        write!(
            f,
            "{}",
            pool_vmstat_m(VmstatOptions {
                wide: self.wide,
                verbose: false,
            })
        )?;
        writeln!(f)?;
        write!(f, "{}", pool_cache_vmstat_c(VmstatCOptions::default()))?;
        #[cfg(feature = "kmalloc")]
        {
            writeln!(f)?;
            write!(f, "{}", bsdalloc_kmalloc::malloc_stats())?;
        }
        writeln!(f)?;
        writeln!(f, "Kernel map")?;
        writeln!(f, "{}", k.map().stats())?;
        writeln!(f)?;
        writeln!(f, "Arenas (vmem_dump summary)")?;
        writeln!(
            f,
            "{:<12} {:>7} {:>11} {:>10} {:>10} {:>6} {:>6} {:>6} {:>8} {:>10} {:>10} {:>5}",
            "Name",
            "Quantum",
            "Size",
            "InUse",
            "Free",
            "Busy",
            "Frsegs",
            "Spans",
            "Imported",
            "Allocs",
            "Frees",
            "Fail"
        )?;
        arena_row(f, &k.map().kmem_arena().stats())?;
        let mut res = Ok(());
        for_each_arena(|a| {
            if res.is_ok() {
                res = arena_row(f, &a.stats());
            }
        });
        res
    }
}

/// One arena's line: sizes in KiB, then segment and counter totals.
fn arena_row(f: &mut fmt::Formatter<'_>, s: &ArenaStats) -> fmt::Result {
    writeln!(
        f,
        "{:<12} {:>7} {:>10}K {:>9}K {:>9}K {:>6} {:>6} {:>6} {:>8} {:>10} {:>10} {:>5}",
        s.name,
        s.quantum,
        s.size >> 10,
        s.inuse >> 10,
        (s.size - s.inuse) >> 10,
        s.nbusy,
        s.nfree,
        s.nspans,
        s.nimported,
        s.counters.allocs,
        s.counters.frees,
        s.counters.failures
    )
}
