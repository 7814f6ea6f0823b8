//! `KM_*` flags and kmem's constants.

use core::fmt;

bitflags::bitflags! {
    /// NetBSD's `km_flag_t`: exactly one of `KM_SLEEP` and `KM_NOSLEEP`.
    #[derive(Clone, Copy, PartialEq, Eq, Hash)]
    pub struct KmFlags: u32 {
        /// `KM_SLEEP` (= `PR_WAITOK`): may sleep for memory; never fails.
        const SLEEP = 0x1;
        /// `KM_NOSLEEP` (= `PR_NOWAIT`): never sleeps; may fail.
        const NOSLEEP = 0x2;
    }
}

/// `KM_SLEEP`.
pub const KM_SLEEP: KmFlags = KmFlags::SLEEP;
/// `KM_NOSLEEP`.
pub const KM_NOSLEEP: KmFlags = KmFlags::NOSLEEP;

impl fmt::Debug for KmFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for (name, v) in [
            ("KM_SLEEP", KmFlags::SLEEP),
            ("KM_NOSLEEP", KmFlags::NOSLEEP),
        ] {
            if self.contains(v) {
                write!(f, "{sep}{name}")?;
                sep = " | ";
            }
        }
        let rest = self.bits() & !KmFlags::all().bits();
        if rest != 0 {
            write!(f, "{sep}{rest:#x}")?;
        } else if sep.is_empty() {
            write!(f, "0")?;
        }
        Ok(())
    }
}

impl KmFlags {
    /// Whether this is exactly one of `KM_SLEEP` and `KM_NOSLEEP`, and
    /// nothing else.
    #[inline]
    pub const fn is_valid(self) -> bool {
        self.bits() == KmFlags::SLEEP.bits() || self.bits() == KmFlags::NOSLEEP.bits()
    }
}

/// `KMEM_ALIGN`: every allocation is at least this aligned, and sizes are
/// rounded up to it.
pub const KMEM_ALIGN: usize = 8;
/// `KMEM_SHIFT`: lookup granularity of the small table (8 bytes).
pub const KMEM_SHIFT: u32 = 3;
/// `KMEM_MAXSIZE`: the largest size of the small table.
pub const KMEM_MAXSIZE: usize = 1024;
/// `KMEM_BIG_SHIFT`: lookup granularity of the big table (2 KiB).
pub const KMEM_BIG_SHIFT: u32 = 11;
/// `KMEM_BIG_MAXSIZE`: the largest size of the big table (only sizes up to
/// `PAGE_SIZE` get a cache).
pub const KMEM_BIG_MAXSIZE: usize = 16384;

/// `SIZE_SIZE`: bytes of the size footer (feature `kmem-size`), else 0.
pub const SIZE_SIZE: usize = if cfg!(feature = "kmem-size") {
    core::mem::size_of::<usize>()
} else {
    0
};

/// `kmem_roundup_size`: `size` rounded up to [`KMEM_ALIGN`].
///
/// # Panics
/// If the rounded size does not fit in a `usize` (no allocation of that
/// size can exist).
#[inline]
#[track_caller]
pub const fn kmem_roundup_size(size: usize) -> usize {
    match size.checked_next_multiple_of(KMEM_ALIGN) {
        Some(s) => s,
        None => panic!("kmem_roundup_size: size overflows the address space"),
    }
}
