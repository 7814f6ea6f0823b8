//! `UVM_KMF_*` flags and errors.

use core::fmt;
use core::ops::BitOr;

/// The `uvm_km_alloc` / `uvm_km_free` flags (NetBSD's values).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct UvmFlags(pub u32);

impl UvmFlags {
    /// `UVM_KMF_WIRED`: resident memory, mapped at once.
    pub const WIRED: UvmFlags = UvmFlags(0x1);
    /// `UVM_KMF_PAGEABLE`: demand-zero memory (pages appear when touched).
    pub const PAGEABLE: UvmFlags = UvmFlags(0x2);
    /// `UVM_KMF_VAONLY`: address space only; map pages with
    /// [`KernelMap::enter`](crate::KernelMap::enter).
    pub const VAONLY: UvmFlags = UvmFlags(0x4);
    /// `UVM_KMF_TYPEMASK`: exactly one type per call.
    pub const TYPEMASK: UvmFlags = UvmFlags(0x7);
    /// `UVM_KMF_CANFAIL`: fail instead of waiting when memory cannot be
    /// reclaimed.
    pub const CANFAIL: UvmFlags = UvmFlags(0x8);
    /// `UVM_KMF_ZERO`: zero-filled (WIRED).
    pub const ZERO: UvmFlags = UvmFlags(0x10);
    /// `UVM_KMF_EXEC`: executable mapping.
    pub const EXEC: UvmFlags = UvmFlags(0x20);
    /// `UVM_KMF_TRYLOCK`: fail rather than wait for the map's lock.
    pub const TRYLOCK: UvmFlags = UvmFlags(0x0020_0000);
    /// `UVM_KMF_NOWAIT`: never sleep.
    pub const NOWAIT: UvmFlags = UvmFlags(0x0040_0000);
    /// `UVM_KMF_WAITVA`: sleep for address space if there is none.
    pub const WAITVA: UvmFlags = UvmFlags(0x0080_0000);
    /// `UVM_KMF_COLORMATCH`: VAONLY only; `align` carries a cache colour.
    pub const COLORMATCH: UvmFlags = UvmFlags(0x0400_0000);

    const KNOWN: u32 =
        0x7 | 0x8 | 0x10 | 0x20 | 0x0020_0000 | 0x0040_0000 | 0x0080_0000 | 0x0400_0000;

    /// Whether every flag of `other` is set.
    #[inline]
    pub const fn contains(self, other: UvmFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The type bits.
    #[inline]
    pub const fn typ(self) -> UvmFlags {
        UvmFlags(self.0 & Self::TYPEMASK.0)
    }

    pub(crate) fn unknown(self) -> u32 {
        self.0 & !Self::KNOWN
    }
}

impl BitOr for UvmFlags {
    type Output = UvmFlags;
    fn bitor(self, rhs: UvmFlags) -> UvmFlags {
        UvmFlags(self.0 | rhs.0)
    }
}

impl fmt::Debug for UvmFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: &[(UvmFlags, &str)] = &[
            (UvmFlags::WIRED, "UVM_KMF_WIRED"),
            (UvmFlags::PAGEABLE, "UVM_KMF_PAGEABLE"),
            (UvmFlags::VAONLY, "UVM_KMF_VAONLY"),
            (UvmFlags::CANFAIL, "UVM_KMF_CANFAIL"),
            (UvmFlags::ZERO, "UVM_KMF_ZERO"),
            (UvmFlags::EXEC, "UVM_KMF_EXEC"),
            (UvmFlags::TRYLOCK, "UVM_KMF_TRYLOCK"),
            (UvmFlags::NOWAIT, "UVM_KMF_NOWAIT"),
            (UvmFlags::WAITVA, "UVM_KMF_WAITVA"),
            (UvmFlags::COLORMATCH, "UVM_KMF_COLORMATCH"),
        ];
        let mut first = true;
        for (fl, name) in NAMES {
            if self.contains(*fl) {
                if !first {
                    f.write_str(" | ")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("0")?;
        }
        Ok(())
    }
}

/// The three allocation types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KmType {
    /// `UVM_KMF_WIRED`.
    Wired,
    /// `UVM_KMF_PAGEABLE`.
    Pageable,
    /// `UVM_KMF_VAONLY`.
    VaOnly,
}

impl KmType {
    pub(crate) fn of(flags: UvmFlags, what: &str) -> KmType {
        match flags.typ() {
            UvmFlags::WIRED => KmType::Wired,
            UvmFlags::PAGEABLE => KmType::Pageable,
            UvmFlags::VAONLY => KmType::VaOnly,
            t => panic!(
                "{what}: flags {flags:?} must contain exactly one type (got {:#x})",
                t.0
            ),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            KmType::Wired => "UVM_KMF_WIRED",
            KmType::Pageable => "UVM_KMF_PAGEABLE",
            KmType::VaOnly => "UVM_KMF_VAONLY",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Why the kernel map could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BootError {
    /// The page source refused the reservation.
    #[error("uvm_km_bootstrap: cannot reserve the kernel map: {0}")]
    Reserve(bsdalloc_platform::PageError),
    /// The configuration is inconsistent.
    #[error("uvm_km_bootstrap: {0}")]
    Config(&'static str),
    /// A vmem arena for the map could not be created.
    #[error("uvm_km_bootstrap: cannot create the map's arenas: {0}")]
    Arena(bsdalloc_vmem::VmemError),
}
