//! `vm_flag_t`, the `vmem_size` type mask, constants and the error type.
//!
//! **Flags across the stack.** NetBSD's flag words (`VM_*` here, `UVM_KMF_*`
//! in `bsdalloc-uvm-pages`, and the `PR_*`, `KM_*` and `M_*` of the crates
//! to come) are each one [`bitflags`] type: `no_std`, no allocation, the
//! NetBSD values, the names without their prefix (`VM_SLEEP` is
//! [`VmFlags::SLEEP`]), `const` set operations, and `from_bits` /
//! `from_bits_retain` / `bits` at the C boundary. Masks that group flags are
//! associated constants outside the `bitflags!` block, so that they are
//! not flags themselves (iteration and `all()` see only real flags). `Debug`
//! prints the NetBSD names, `VM_SLEEP | VM_INSTANTFIT`, then any unknown
//! bits in hex, or `0`: panic messages quote flags that way.

use core::fmt;

bitflags::bitflags! {
    /// NetBSD's `vm_flag_t`: allocation and arena-creation flags.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct VmFlags: u32 {
        /// `VM_SLEEP`: may block until resources exist.
        const SLEEP = 0x0000_0001;
        /// `VM_NOSLEEP`: never block; fail with `ENOMEM`.
        const NOSLEEP = 0x0000_0002;
        /// `VM_INSTANTFIT`: constant-time choice of a free segment.
        const INSTANTFIT = 0x0000_1000;
        /// `VM_BESTFIT`: first fit within the smallest adequate size class.
        const BESTFIT = 0x0000_2000;
        /// Next fit (illumos `VM_NEXTFIT`; **an extension, not in NetBSD**):
        /// walk the segments forward from a cursor that follows the last
        /// allocation, wrapping; rotor-like reuse for ID allocation.
        const NEXTFIT = 0x0000_4000;
        /// `VM_BOOTSTRAP`: arena flag; fill the spare-tag reserve at creation.
        const BOOTSTRAP = 0x0001_0000;
        /// `VM_POPULATING`: this request refills the tag supply; do not
        /// refill tags first (breaks the recursion).
        const POPULATING = 0x0004_0000;
        /// `VM_LARGEIMPORT`: arena flag; imports ask for 16 times the need.
        const LARGEIMPORT = 0x0008_0000;
        /// `VM_XIMPORT`: set by `vmem_xcreate`; the import may return more.
        const XIMPORT = 0x0010_0000;
        /// `VM_PRIVTAGS`: arena flag; use only tags donated with `add_bts`.
        const PRIVTAGS = 0x0020_0000;
        /// Arena flag, **an extension, not in NetBSD**: let the busy hash
        /// grow to [`VMEM_HASHSIZE_MAX_LARGE`] buckets instead of NetBSD's
        /// 65536. This is now the default (see "Scaling" in the crate
        /// docs); the flag stays accepted and changes nothing.
        const LARGEHASH = 0x0040_0000;
        /// Arena flag, **an extension, not in NetBSD**: cap the busy hash
        /// at NetBSD's [`VMEM_HASHSIZE_MAX`] (65536 buckets), as
        /// subr_vmem.c does, instead of letting it grow with the live count
        /// (the default). Chains then lengthen past 65536 live segments:
        /// about 15 tags per chain at a million.
        const NETBSDHASH = 0x0080_0000;
    }
}

impl VmFlags {
    /// No flags (`0`).
    pub const NONE: VmFlags = VmFlags::empty();

    pub(crate) const SLEEP_MASK: VmFlags = VmFlags::SLEEP.union(VmFlags::NOSLEEP);
    pub(crate) const FIT_MASK: VmFlags = VmFlags::INSTANTFIT
        .union(VmFlags::BESTFIT)
        .union(VmFlags::NEXTFIT);
    pub(crate) const ARENA_MASK: VmFlags = VmFlags::BOOTSTRAP
        .union(VmFlags::LARGEIMPORT)
        .union(VmFlags::XIMPORT)
        .union(VmFlags::PRIVTAGS)
        .union(VmFlags::LARGEHASH)
        .union(VmFlags::NETBSDHASH);

    /// The sleep flag of these flags (`SLEEP` or `NOSLEEP`).
    #[inline]
    pub const fn sleep_part(self) -> VmFlags {
        self.intersection(Self::SLEEP_MASK)
    }
}

impl fmt::Debug for VmFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // NetBSD's spelling (see the module docs).
        let mut first = true;
        for (name, _) in self.iter_names() {
            if !first {
                f.write_str(" | ")?;
            }
            write!(f, "VM_{name}")?;
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

/// `VMEM_ALLOC` / `VMEM_FREE`: which bytes `vmem_size` counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeType(pub u32);

impl SizeType {
    /// `VMEM_ALLOC`: bytes in busy segments.
    pub const ALLOC: SizeType = SizeType(0x01);
    /// `VMEM_FREE`: span bytes not busy.
    pub const FREE: SizeType = SizeType(0x02);
    /// `VMEM_ALLOC | VMEM_FREE`: all span bytes.
    pub const ALL: SizeType = SizeType(0x03);
}

/// `VMEM_ADDR_MIN`.
pub const VMEM_ADDR_MIN: usize = 0;
/// `VMEM_ADDR_MAX`: all ones, so a range may end at the top of the type.
pub const VMEM_ADDR_MAX: usize = usize::MAX;
/// `VMEM_MAXORDER`: bits of `vmem_size_t`, the number of free lists.
pub const VMEM_MAXORDER: usize = usize::BITS as usize;
/// `VMEM_QCACHE_IDX_MAX`: at most 16 quantum-cache classes.
pub const VMEM_QCACHE_IDX_MAX: usize = 16;
/// `VMEM_NAME_MAX`: arena names are truncated to 16 bytes.
pub const VMEM_NAME_MAX: usize = 16;
/// `VMEM_HASHSIZE_MIN`.
pub const VMEM_HASHSIZE_MIN: usize = 1;
/// `VMEM_HASHSIZE_MAX`: NetBSD's busy-hash limit, kept by arenas created
/// with [`VmFlags::NETBSDHASH`].
pub const VMEM_HASHSIZE_MAX: usize = 65536;
/// The busy-hash limit by default (an extension; NetBSD stops at
/// [`VMEM_HASHSIZE_MAX`]): 4M buckets, a 32 MiB table, reached only with
/// millions of live segments. The table grows with the busy count, so an
/// arena with few segments keeps a small one.
pub const VMEM_HASHSIZE_MAX_LARGE: usize = 1 << 22;
/// `STATIC_BT_COUNT`: tags available before any page exists.
pub const STATIC_BT_COUNT: usize = 200;
/// `BT_MINRESERVE`: an arena keeps more spare tags than this.
pub const BT_MINRESERVE: usize = 4;
/// `BT_MAXFREE`: spare tags above this go back to the global supply.
pub const BT_MAXFREE: usize = 64;

/// Tags needed for `nspans` spans holding `nsegs` allocations in total
/// (NetBSD's `VMEM_EST_BTCOUNT`), for sizing `add_bts` donations.
pub const fn vmem_est_btcount(nspans: usize, nsegs: usize) -> usize {
    // A span tag and a free tag per span, then each allocation may split a
    // free segment in two, plus the two tags an xalloc reserves. Saturating:
    // an estimate that wrapped in a release build would under-donate.
    nspans
        .saturating_add(nsegs)
        .saturating_mul(2)
        .saturating_add(2 + BT_MINRESERVE)
}

/// What vmem returns where NetBSD returns an errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VmemError {
    /// `ENOMEM`: no space (or no boundary tags) and the caller may not sleep,
    /// or a constrained request cannot be met.
    #[error("vmem: ENOMEM: no space satisfies the request")]
    NoMemory,
}
