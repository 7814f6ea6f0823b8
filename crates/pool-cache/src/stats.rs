//! Statistics: a cache's `kern.pool` cache fields ([`PoolCacheStats`],
//! summed over the per-CPU deltas) and vmstat's "Pool cache statistics."
//! table (`vmstat -C`, spec §3.7).

use core::fmt;

use bsdalloc_pool::PoolStats;

use crate::pool_cache::RawPoolCache;
use crate::registry::for_each_pool_cache;

/// One cache's counters (`struct pool_sysctl`'s `pr_cache_*` fields), summed
/// over its CPUs at the moment of the snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolCacheStats {
    /// The cache's (and its pool's) name.
    pub name: &'static str,
    /// `cache_meta_size`: the group capacity, 15 or 63.
    pub meta_size: usize,
    /// `cache_nfull`: Σ nfull, full groups in the depot.
    pub nfull: i64,
    /// `cache_npartial`: Σ npart, partial groups in the depot.
    pub npartial: i64,
    /// `cache_nempty`: not computed (0), as in NetBSD.
    pub nempty: u64,
    /// `cache_ncontended`: Σ contended.
    pub ncontended: u64,
    /// `cache_nmiss_pcpu`: Σ misses (requests that left the CPU's groups).
    pub nmiss_pcpu: u64,
    /// `cache_nhit_pcpu`: Σ hits.
    pub nhit_pcpu: u64,
    /// `cache_nmiss_global`: Σ pcmisses (requests that reached the pool).
    pub nmiss_global: u64,
    /// `cache_nhit_global`: `nmiss_pcpu − nmiss_global` (misses the depot
    /// served).
    pub nhit_global: u64,
    /// Objects in the CPUs' current and previous groups now.
    pub cpu_cached: u64,
    /// The embedded pool's counters.
    pub pool: PoolStats,
}

impl RawPoolCache {
    /// A snapshot of the cache's counters: every CPU's, by cross-call
    /// (thread context), and the pool's.
    pub fn stats(&self) -> PoolCacheStats {
        let t = self.core.totals();
        PoolCacheStats {
            name: self.name(),
            meta_size: self.group_size(),
            nfull: t.nfull,
            npartial: t.npart,
            nempty: 0,
            ncontended: t.contended,
            nmiss_pcpu: t.misses,
            nhit_pcpu: t.hits,
            nmiss_global: t.pcmisses,
            nhit_global: t.misses.saturating_sub(t.pcmisses),
            cpu_cached: t.cached,
            pool: self.pool().stats(),
        }
    }
}

/// `vmstat -C` options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmstatCOptions {
    /// `-v`: also caches whose requests never reached the pool.
    pub verbose: bool,
}

const NAME_WIDTH: usize = 11;

fn header(f: &mut fmt::Formatter<'_>) -> fmt::Result {
    writeln!(f, "Pool cache statistics.")?;
    writeln!(
        f,
        "{:<NAME_WIDTH$} {:>5} {:>5} {:>4} {:>4} {:>9} {:>10} {:>5} {:>11} {:>5}",
        "Name",
        "Spin",
        "GrpSz",
        "Full",
        "Emty",
        "PoolLayer",
        "CacheLayer",
        "Hit%",
        "CpuLayer",
        "Hit%"
    )
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

fn row(f: &mut fmt::Formatter<'_>, s: &PoolCacheStats) -> fmt::Result {
    let cache_layer = s.nhit_global + s.nmiss_global;
    let cpu_layer = s.nhit_pcpu + s.nmiss_pcpu;
    writeln!(
        f,
        // A space before every column, as vmstat's printf has: a number
        // wider than its column pushes the line right instead of running
        // into its neighbour.
        "{:<NAME_WIDTH$} {:>5} {:>5} {:>4} {:>4} {:>9} {:>10} {:>5.1} {:>11} {:>5.1}",
        s.name,
        s.ncontended,
        s.meta_size,
        s.nfull,
        s.nempty,
        s.nmiss_global,
        cache_layer,
        pct(s.nhit_global, cache_layer),
        cpu_layer,
        pct(s.nhit_pcpu, cpu_layer)
    )
}

/// Write the `vmstat -C` table for `rows` (hidden: caches whose requests
/// never reached the pool, unless `verbose`).
pub fn write_vmstat_c(
    f: &mut fmt::Formatter<'_>,
    rows: impl IntoIterator<Item = PoolCacheStats>,
    opts: VmstatCOptions,
) -> fmt::Result {
    header(f)?;
    for s in rows {
        if s.nmiss_global == 0 && !opts.verbose {
            continue;
        }
        row(f, &s)?;
    }
    Ok(())
}

/// `vmstat -C` over every cache in the system, as `Display` (thread
/// context: the per-CPU counters are read by cross-call).
///
/// ```
/// use bsdalloc_pool::PrFlags;
/// use bsdalloc_pool_cache::{PoolCacheConfig, RawPoolCache, VmstatCOptions, pool_cache_vmstat_c};
///
/// static C: RawPoolCache = RawPoolCache::new(PoolCacheConfig::new("vmstatc-doc", 64));
/// C.bootstrap();
/// let x = C.get(PrFlags::WAITOK).unwrap();
/// unsafe { C.put(x) };
/// let table = pool_cache_vmstat_c(VmstatCOptions::default()).to_string();
/// assert!(table.starts_with("Pool cache statistics.\n"));
/// assert!(table.lines().any(|l| l.starts_with("vmstatc-doc")));
/// ```
pub fn pool_cache_vmstat_c(opts: VmstatCOptions) -> VmstatC {
    VmstatC { opts }
}

/// See [`pool_cache_vmstat_c`].
#[derive(Clone, Copy, Debug)]
pub struct VmstatC {
    opts: VmstatCOptions,
}

impl fmt::Display for VmstatC {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        header(f)?;
        let mut res = Ok(());
        for_each_pool_cache(|pc| {
            if res.is_err() {
                return;
            }
            let s = pc.stats();
            if s.nmiss_global == 0 && !self.opts.verbose {
                return;
            }
            res = row(f, &s);
        });
        res
    }
}

/// Format a fixed set of snapshots as `vmstat -C`.
#[derive(Clone, Copy, Debug)]
pub struct VmstatCRows<'a> {
    /// The rows.
    pub rows: &'a [PoolCacheStats],
    /// Options.
    pub opts: VmstatCOptions,
}

impl fmt::Display for VmstatCRows<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_vmstat_c(f, self.rows.iter().copied(), self.opts)
    }
}
