//! The `M_*` flags of malloc(9).

use core::fmt;

bitflags::bitflags! {
    /// The `flags` argument of [`malloc`](crate::malloc) and
    /// [`realloc`](crate::realloc). `M_WAITOK` is no bit at all (the
    /// default), as in NetBSD.
    #[derive(Clone, Copy, PartialEq, Eq, Hash)]
    pub struct MFlags: u32 {
        /// `M_NOWAIT` (0x0001): never sleep; may return `None`. Required
        /// in interrupt context.
        const NOWAIT = 0x0001;
        /// `M_ZERO` (0x0002): the block comes back zero-filled.
        const ZERO = 0x0002;
        /// `M_CANFAIL` (0x0004): with `M_WAITOK`, return `None` instead of
        /// panicking when the request can never be satisfied (a size no
        /// arena can hold).
        const CANFAIL = 0x0004;
    }
}

/// `M_WAITOK` (0x0000): may sleep — for memory, or at the type's limit —
/// and never fails.
pub const M_WAITOK: MFlags = MFlags::empty();
/// `M_NOWAIT`.
pub const M_NOWAIT: MFlags = MFlags::NOWAIT;
/// `M_ZERO`.
pub const M_ZERO: MFlags = MFlags::ZERO;
/// `M_CANFAIL`.
pub const M_CANFAIL: MFlags = MFlags::CANFAIL;

impl MFlags {
    /// Whether the caller may sleep (no `M_NOWAIT`).
    #[inline]
    pub const fn may_sleep(self) -> bool {
        self.bits() & MFlags::NOWAIT.bits() == 0
    }
}

impl fmt::Debug for MFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = if self.contains(MFlags::NOWAIT) {
            "M_NOWAIT"
        } else {
            "M_WAITOK"
        };
        f.write_str(first)?;
        for (name, v) in [("M_ZERO", MFlags::ZERO), ("M_CANFAIL", MFlags::CANFAIL)] {
            if self.contains(v) {
                write!(f, " | {name}")?;
            }
        }
        let rest = self.bits() & !MFlags::all().bits();
        if rest != 0 {
            write!(f, " | {rest:#x}")?;
        }
        Ok(())
    }
}

#[cfg(all(test, not(bsdalloc_loom)))]
mod tests {
    use super::*;

    #[test]
    fn values_are_netbsds() {
        assert_eq!(M_WAITOK.bits(), 0);
        assert_eq!(M_NOWAIT.bits(), 1);
        assert_eq!(M_ZERO.bits(), 2);
        assert_eq!(M_CANFAIL.bits(), 4);
        assert!(M_WAITOK.may_sleep());
        assert!((M_WAITOK | M_ZERO).may_sleep());
        assert!(!(M_NOWAIT | M_ZERO).may_sleep());
    }

    #[test]
    fn debug_names_the_flags() {
        extern crate std;
        use std::format;
        assert_eq!(format!("{M_WAITOK:?}"), "M_WAITOK");
        assert_eq!(format!("{:?}", M_NOWAIT | M_ZERO), "M_NOWAIT | M_ZERO");
        assert_eq!(
            format!("{:?}", M_CANFAIL | MFlags::from_bits_retain(0x40)),
            "M_WAITOK | M_CANFAIL | 0x40"
        );
    }
}
