//! `PR_*` flags, the constants of subr_pool.c, and the error type.

use core::fmt;

bitflags::bitflags! {
    /// NetBSD's `PR_*` flags: `pool_init` flags (read-only once the pool
    /// exists), `pool_get` flags, and the pool's internal state bits, with
    /// NetBSD's values. `Debug` prints NetBSD's names (`PR_WAITOK |
    /// PR_ZERO`), then unknown bits in hex, or `0`.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct PrFlags: u32 {
        /// `PR_WAITOK`: `pool_get` may sleep (== `KM_SLEEP`).
        const WAITOK = 0x01;
        /// `PR_NOWAIT`: `pool_get` must not sleep (== `KM_NOSLEEP`).
        const NOWAIT = 0x02;
        /// `PR_WANTED` (internal): someone waits for an item at the hard
        /// limit.
        const WANTED = 0x04;
        /// `PR_PHINPAGE`: the page header lives inside the page (the caller
        /// may force it).
        const PHINPAGE = 0x40;
        /// `PR_LIMITFAIL`: even with `PR_WAITOK`, fail at the hard limit
        /// instead of waiting (still waits for memory).
        const LIMITFAIL = 0x100;
        /// `PR_RECURSIVE`: the items are pages of other pools; only changes
        /// how statistics total.
        const RECURSIVE = 0x200;
        /// `PR_NOTOUCH`: never write into free items (bitmap tracking, no
        /// redzone, no quarantine).
        const NOTOUCH = 0x400;
        /// `PR_NOALIGN`: back-end pages are not aligned to their size;
        /// off-page headers are found by a nearest-lower search.
        const NOALIGN = 0x800;
        /// `PR_LARGECACHE`: for pool_cache (large cache groups).
        const LARGECACHE = 0x1000;
        /// `PR_GROWING` (internal): a page allocation is in progress.
        const GROWING = 0x2000;
        /// `PR_GROWINGNOWAIT` (internal): by a `PR_NOWAIT` caller that kept
        /// the pool lock.
        const GROWINGNOWAIT = 0x4000;
        /// `PR_ZERO`: zero the requested size of the item before returning.
        const ZERO = 0x8000;
        /// `PR_USEBMAP` (internal): free items are tracked in a bitmap.
        const USEBMAP = 0x10000;
        /// `PR_PSERIALIZE`: freed items may still be read by passive
        /// serialisation readers; implies `PR_NOTOUCH`, and a cross-CPU
        /// barrier precedes giving pages back.
        const PSERIALIZE = 0x20000;
    }
}

impl PrFlags {
    /// The flags `pool_init` accepts from a caller.
    pub const INIT_MASK: PrFlags = PrFlags::PHINPAGE
        .union(PrFlags::RECURSIVE)
        .union(PrFlags::NOTOUCH)
        .union(PrFlags::NOALIGN)
        .union(PrFlags::LARGECACHE)
        .union(PrFlags::PSERIALIZE);
    /// The flags `pool_get` accepts.
    pub const GET_MASK: PrFlags = PrFlags::WAITOK
        .union(PrFlags::NOWAIT)
        .union(PrFlags::LIMITFAIL)
        .union(PrFlags::ZERO);
    pub(crate) const WAIT_MASK: PrFlags = PrFlags::WAITOK.union(PrFlags::NOWAIT);
}

impl fmt::Debug for PrFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (name, _) in self.iter_names() {
            if !first {
                f.write_str(" | ")?;
            }
            write!(f, "PR_{name}")?;
            first = false;
        }
        let unknown = self.bits() & !Self::all().bits();
        if unknown != 0 {
            if !first {
                f.write_str(" | ")?;
            }
            write!(f, "{unknown:#x}")?;
        } else if first {
            f.write_str("0")?;
        }
        Ok(())
    }
}

/// `pool_inactive_time`: seconds a page must have been idle before
/// `pool_reclaim` gives it back.
pub const POOL_INACTIVE_TIME: u64 = 10;
/// `PHPOOL_MAX`: the number of off-page header pools.
pub const PHPOOL_MAX: usize = 8;
/// `PI_MAGIC`: what a free list item holds with the `magic` feature.
pub const PI_MAGIC: u32 = 0xdead_dead;
/// `POOL_REDZONE_SIZE`: bytes of pattern after each item with `redzone`.
pub const POOL_REDZONE_SIZE: usize = 2;
/// `POOL_QUARANTINE_DEPTH`: items a pool parks before reuse with
/// `quarantine`.
pub const POOL_QUARANTINE_DEPTH: usize = 128;
/// `POOL_ALLOCATOR_BIG_BASE`: the first big allocator has pages of
/// `2^13` bytes; there are [`POOL_ALLOCATOR_BIG_COUNT`], up to 16 MiB.
pub const POOL_ALLOCATOR_BIG_BASE: u32 = 13;
/// How many big allocators exist (8 KiB … 16 MiB pages).
pub const POOL_ALLOCATOR_BIG_COUNT: usize = 12;
/// `ALIGN(1)`: the natural alignment an `align` of 0 stands for.
pub const ALIGNBYTES: usize = 8;
/// `UINT_MAX`, NetBSD's "no limit" for `maxpages` and `hardlimit`.
pub const UNLIMITED: u32 = u32::MAX;

/// Where NetBSD's pool returns an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// `ENOMEM`: no page could be had and the caller may not wait (or the
    /// hard limit was reached with `PR_NOWAIT` / `PR_LIMITFAIL`).
    #[error("pool: ENOMEM")]
    NoMemory,
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::format;

    #[test]
    fn values_and_names_are_netbsds() {
        assert_eq!(PrFlags::ZERO.bits(), 0x8000);
        assert_eq!(PrFlags::PSERIALIZE.bits(), 0x20000);
        assert_eq!(
            format!("{:?}", PrFlags::WAITOK | PrFlags::ZERO),
            "PR_WAITOK | PR_ZERO"
        );
        assert_eq!(format!("{:?}", PrFlags::empty()), "0");
        assert_eq!(
            format!("{:?}", PrFlags::from_bits_retain(0x8_0001)),
            "PR_WAITOK | 0x80000"
        );
    }
}
