//! `UVM_KMF_*` flags and errors.
//!
//! [`UvmFlags`] follows the stack's pattern for NetBSD flag words (see
//! `bsdalloc_vmem`'s flags): a [`bitflags`] type with NetBSD's values and
//! names without the `UVM_KMF_` prefix, masks outside the `bitflags!`
//! block, and a `Debug` that prints `UVM_KMF_WIRED | UVM_KMF_ZERO` (then
//! unknown bits in hex, or `0`). Callers who build flags from a raw word
//! ([`UvmFlags::from_bits_retain`]) keep the unknown bits, which
//! `uvm_km_alloc` refuses with "unknown flags"; [`UvmFlags::from_bits`]
//! refuses them at once.

use core::fmt;

bitflags::bitflags! {
    /// The `uvm_km_alloc` / `uvm_km_free` flags (NetBSD's values).
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct UvmFlags: u32 {
        /// `UVM_KMF_WIRED`: resident memory, mapped at once.
        const WIRED = 0x1;
        /// `UVM_KMF_PAGEABLE`: demand-zero memory (pages appear when touched).
        const PAGEABLE = 0x2;
        /// `UVM_KMF_VAONLY`: address space only; map pages with
        /// [`KernelMap::enter`](crate::KernelMap::enter).
        const VAONLY = 0x4;
        /// `UVM_KMF_CANFAIL`: fail instead of waiting when memory cannot be
        /// reclaimed.
        const CANFAIL = 0x8;
        /// `UVM_KMF_ZERO`: zero-filled (WIRED).
        const ZERO = 0x10;
        /// `UVM_KMF_EXEC`: executable mapping.
        const EXEC = 0x20;
        /// `UVM_KMF_TRYLOCK`: fail rather than wait for the map's lock.
        const TRYLOCK = 0x0020_0000;
        /// `UVM_KMF_NOWAIT`: never sleep.
        const NOWAIT = 0x0040_0000;
        /// `UVM_KMF_WAITVA`: sleep for address space if there is none.
        const WAITVA = 0x0080_0000;
        /// `UVM_KMF_COLORMATCH`: VAONLY only; `align` carries a cache colour.
        const COLORMATCH = 0x0400_0000;
    }
}

impl UvmFlags {
    /// `UVM_KMF_TYPEMASK`: exactly one type per call.
    pub const TYPEMASK: UvmFlags = UvmFlags::WIRED
        .union(UvmFlags::PAGEABLE)
        .union(UvmFlags::VAONLY);

    /// The type bits.
    #[inline]
    pub const fn typ(self) -> UvmFlags {
        self.intersection(Self::TYPEMASK)
    }

    /// Bits that name no `UVM_KMF_*` flag (only in flags built with
    /// [`UvmFlags::from_bits_retain`]).
    #[inline]
    pub const fn unknown(self) -> u32 {
        self.bits() & !Self::all().bits()
    }
}

impl fmt::Debug for UvmFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // NetBSD's spelling (see the module docs).
        let mut first = true;
        for (name, _) in self.iter_names() {
            if !first {
                f.write_str(" | ")?;
            }
            write!(f, "UVM_KMF_{name}")?;
            first = false;
        }
        let unknown = self.unknown();
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
                t.bits()
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
