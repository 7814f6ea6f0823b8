//! `vmstat -m`'s malloc section: "Memory statistics by type" and "Memory
//! Totals".

use core::fmt;

use crate::types::{MallocTypeStats, malloc_types};

/// Bytes as `vmstat` shows them: KiB, rounded up.
fn kib(bytes: usize) -> usize {
    bytes.div_ceil(1024)
}

impl fmt::Display for MallocTypeStats {
    /// The type's row of "Memory statistics by type", as NetBSD's vmstat
    /// prints it (`%13s%6ld%6ldK%7ldK%6ldK%9ld%5u%6u`, then the sizes of
    /// `ks_size`, under 1 KiB in bytes, else in KiB), without a newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>13}{:>6}{:>6}K{:>7}K{:>6}K{:>9}{:>5}{:>6}",
            self.shortdesc,
            self.inuse,
            kib(self.memuse),
            kib(self.maxused),
            kib(self.limit),
            self.calls,
            self.limblocks,
            self.mapblocks
        )?;
        let mut sep = "  ";
        for n in 0..64 {
            if self.size & (1u64 << n) == 0 {
                continue;
            }
            let j = 1u64 << n;
            if j < 1024 {
                write!(f, "{sep}{j}")?;
            } else {
                write!(f, "{sep}{}K", j >> 10)?;
            }
            sep = ",";
        }
        Ok(())
    }
}

/// Write the malloc section of `vmstat -m` for `rows`: the "Memory
/// statistics by type" table — one row per type that was ever used
/// (`ks_calls` ≠ 0) — then "Memory Totals" (bytes in use and `free` in
/// KiB, requests). [`MallocStats`] writes it for the attached types.
///
/// ```
/// use bsdalloc_kmalloc::{MallocTypeStats, write_malloc_stats};
///
/// let temp = MallocTypeStats {
///     shortdesc: "temp", longdesc: "misc. temporary data buffers",
///     inuse: 3, calls: 10, memuse: 5000, maxused: 9000, limit: 1 << 20,
///     limblocks: 0, mapblocks: 0, size: (1 << 6) | (1 << 12),
/// };
/// let mut s = String::new();
/// write_malloc_stats(&mut s, [temp], 2048).unwrap();
/// assert_eq!(s, "\
/// Memory statistics by type                          Type  Kern
///         Type  InUse MemUse HighUse  Limit Requests Limit Limit Size(s)
///          temp     3     5K      9K  1024K       10    0     0  64,4K
///
/// Memory Totals:  In Use    Free    Requests
///                     5K      2K          10
/// ");
/// ```
pub fn write_malloc_stats(
    w: &mut impl fmt::Write,
    rows: impl IntoIterator<Item = MallocTypeStats>,
    free: usize,
) -> fmt::Result {
    writeln!(
        w,
        "Memory statistics by type                          Type  Kern"
    )?;
    writeln!(
        w,
        "        Type  InUse MemUse HighUse  Limit Requests Limit Limit Size(s)"
    )?;
    let mut totuse = 0usize;
    let mut totreq = 0u64;
    for r in rows {
        if r.calls == 0 {
            continue;
        }
        writeln!(w, "{r}")?;
        totuse = totuse.saturating_add(r.memuse);
        totreq = totreq.saturating_add(r.calls);
    }
    writeln!(w)?;
    writeln!(w, "Memory Totals:  In Use    Free    Requests")?;
    writeln!(
        w,
        "              {:>7}K {:>6}K    {:>8}",
        kib(totuse),
        kib(free),
        totreq
    )
}

/// The malloc section of `vmstat -m` ([`malloc_stats`]): `Display` walks
/// the attached types when printed.
#[derive(Clone, Copy, Debug)]
pub struct MallocStats {
    /// "Free": bytes of free items in the pages of kmem's size-class
    /// pools at the snapshot — memory malloc can hand out without new
    /// pages, as the old allocator's bucket free lists were. (Objects
    /// parked in the pool caches' per-CPU groups and depots are not
    /// counted.)
    pub free: usize,
}

impl fmt::Display for MallocStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_malloc_stats(f, malloc_types().map(|t| t.stats()), self.free)
    }
}

/// The malloc section of `vmstat -m` over every attached type. Thread
/// context: the free memory of kmem's caches is read by cross-call.
///
/// ```
/// use bsdalloc_kmalloc::{M_DEVBUF, M_WAITOK, free, malloc, malloc_stats};
///
/// let p = malloc(300, &M_DEVBUF, M_WAITOK).unwrap();
/// let table = malloc_stats().to_string();
/// assert!(table.contains("Memory statistics by type"));
/// assert!(table.lines().any(|l| l.trim_start().starts_with("devbuf")));
/// unsafe { free(p.as_ptr(), &M_DEVBUF) };
/// ```
pub fn malloc_stats() -> MallocStats {
    let k = crate::malloc::backend().stats();
    let free = k
        .caches()
        .map(|c| (c.pool.nitems as usize).saturating_mul(c.pool.size))
        .fold(0usize, usize::saturating_add);
    MallocStats { free }
}
