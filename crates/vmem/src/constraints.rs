//! `vmem_xalloc`'s constraints as one value ([`XallocConstraints`]), the
//! checks NetBSD asserts on them, and the fit test of one free segment
//! (spec §1.4).

use core::fmt;

use crate::bt::BoundaryTag;
use crate::flags::{VMEM_ADDR_MAX, VMEM_ADDR_MIN};

/// Where and how a constrained allocation may be placed: the `size`,
/// `align`, `phase`, `nocross`, `minaddr` and `maxaddr` arguments of
/// NetBSD's `vmem_xalloc`, as one `Copy` value for [`Arena::xalloc`] and
/// [`Arena::xalloc_segment`].
///
/// Built from [`XallocConstraints::new`] (no constraint but the size) with
/// chainable setters, usable in `const` items:
///
/// ```
/// use bsdalloc_vmem::{Arena, VmFlags, XallocConstraints};
///
/// // A DMA window: 8 KiB, 64 KiB aligned, never crossing 1 MiB, below 4 GiB.
/// const DMA: XallocConstraints = XallocConstraints::new(8192)
///     .align(64 << 10)
///     .nocross(1 << 20)
///     .max(0xffff_ffff);
/// let a = Arena::create("dma", 0x10_0000, 16 << 20, 4096).unwrap();
/// let p = a.xalloc(DMA, VmFlags::NOSLEEP | VmFlags::BESTFIT).unwrap();
/// assert_eq!(p % (64 << 10), 0);
/// a.xfree(p, 8192);
/// ```
///
/// NetBSD's rules, checked by `xalloc` (a broken one panics with NetBSD's
/// assertion text, before anything changes), with `q` the arena's quantum:
///
/// - `size` > 0; it is rounded up to a multiple of `q`.
/// - `align`: 0 (meaning `q`) or a power of two that is a multiple of `q`.
/// - `phase`: a multiple of `q`, below `align`; nonzero only with an
///   `align`. The result is `phase` modulo `align`.
/// - `nocross`: 0 (none) or a power of two multiple of `q`, at least the
///   rounded size; `[phase, phase + size)` itself must not cross it. The
///   result `[a, a + size)` does not cross a multiple of `nocross`.
/// - `minaddr ..= maxaddr`: both **inclusive**, so that a range may end at
///   the top of the address type ([`VMEM_ADDR_MAX`]); `minaddr <= maxaddr`.
///   The whole segment lies inside.
///
/// Restricted requests (an `align` above the quantum, a `phase` or a
/// `nocross`) never import from the arena's source, so they may fail with
/// `ENOMEM` even with `VM_SLEEP`, as in NetBSD.
///
/// [`Arena::xalloc`]: crate::Arena::xalloc
/// [`Arena::xalloc_segment`]: crate::Arena::xalloc_segment
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct XallocConstraints {
    /// Bytes wanted (rounded up to the quantum).
    pub size: usize,
    /// 0 (the quantum) or a power-of-two multiple of the quantum.
    pub align: usize,
    /// The result is `phase` modulo `align`.
    pub phase: usize,
    /// 0, or a power of two the segment must not cross a multiple of.
    pub nocross: usize,
    /// The lowest address the segment may start at (inclusive).
    pub minaddr: usize,
    /// The highest address the segment may cover (inclusive).
    pub maxaddr: usize,
}

impl fmt::Debug for XallocConstraints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XallocConstraints")
            .field("size", &format_args!("{:#x}", self.size))
            .field("align", &format_args!("{:#x}", self.align))
            .field("phase", &format_args!("{:#x}", self.phase))
            .field("nocross", &format_args!("{:#x}", self.nocross))
            .field("minaddr", &format_args!("{:#x}", self.minaddr))
            .field("maxaddr", &format_args!("{:#x}", self.maxaddr))
            .finish()
    }
}

impl XallocConstraints {
    /// `size` bytes anywhere: quantum alignment, no phase, no boundary,
    /// `VMEM_ADDR_MIN ..= VMEM_ADDR_MAX` (what `vmem_alloc` asks).
    #[inline]
    pub const fn new(size: usize) -> XallocConstraints {
        XallocConstraints {
            size,
            align: 0,
            phase: 0,
            nocross: 0,
            minaddr: VMEM_ADDR_MIN,
            maxaddr: VMEM_ADDR_MAX,
        }
    }

    /// Align the start to `align` (0: the quantum).
    #[inline]
    #[must_use]
    pub const fn align(self, align: usize) -> XallocConstraints {
        XallocConstraints { align, ..self }
    }

    /// Start at `phase` modulo the alignment.
    #[inline]
    #[must_use]
    pub const fn phase(self, phase: usize) -> XallocConstraints {
        XallocConstraints { phase, ..self }
    }

    /// Do not cross a multiple of `nocross` (0: no boundary).
    #[inline]
    #[must_use]
    pub const fn nocross(self, nocross: usize) -> XallocConstraints {
        XallocConstraints { nocross, ..self }
    }

    /// Start at `minaddr` or above.
    #[inline]
    #[must_use]
    pub const fn min(self, minaddr: usize) -> XallocConstraints {
        XallocConstraints { minaddr, ..self }
    }

    /// End at `maxaddr` or below: the last byte of the segment may be
    /// `maxaddr` itself (inclusive, as in NetBSD).
    #[inline]
    #[must_use]
    pub const fn max(self, maxaddr: usize) -> XallocConstraints {
        XallocConstraints { maxaddr, ..self }
    }

    /// Check NetBSD's rules for an arena named `name` with quantum `q`
    /// (the size is known to be nonzero). `None`: the constraints are valid
    /// but the size cannot be rounded to the quantum, so no arena can hold
    /// it (`ENOMEM`, never a shorter segment than asked).
    ///
    /// # Panics
    /// With NetBSD's assertion text for each broken rule.
    #[track_caller]
    pub(crate) fn check(self, name: &str, q: usize) -> Option<Request> {
        let XallocConstraints {
            size,
            align,
            phase,
            nocross,
            minaddr,
            maxaddr,
        } = self;
        if align != 0 && (!align.is_power_of_two() || align & (q - 1) != 0) {
            panic!(
                "vmem_xalloc: arena '{name}': align {align:#x} is not a power of two multiple of the quantum {q:#x}"
            );
        }
        if phase & (q - 1) != 0 {
            panic!(
                "vmem_xalloc: arena '{name}': phase {phase:#x} is not a multiple of the quantum {q:#x}"
            );
        }
        if align == 0 && phase != 0 {
            panic!("vmem_xalloc: arena '{name}': phase {phase:#x} without align");
        }
        if align != 0 && phase >= align {
            panic!("vmem_xalloc: arena '{name}': phase {phase:#x} >= align {align:#x}");
        }
        if nocross != 0 && (!nocross.is_power_of_two() || nocross & (q - 1) != 0) {
            panic!(
                "vmem_xalloc: arena '{name}': nocross {nocross:#x} is not a power of two multiple of the quantum"
            );
        }
        let rsize = size.checked_next_multiple_of(q);
        if nocross != 0 && rsize.is_none_or(|r| nocross < r) {
            let shown = rsize.unwrap_or(size);
            panic!("vmem_xalloc: arena '{name}': nocross {nocross:#x} < size {shown:#x}");
        }
        if let Some(r) = rsize
            && nocross != 0
            && phase
                .checked_add(r - 1)
                .is_none_or(|last| crosses(phase, last, nocross))
        {
            panic!(
                "vmem_xalloc: arena '{name}': [phase, phase+size) itself crosses nocross {nocross:#x}"
            );
        }
        if minaddr > maxaddr {
            panic!("vmem_xalloc: arena '{name}': minaddr {minaddr:#x} > maxaddr {maxaddr:#x}");
        }
        Some(Request(XallocConstraints {
            size: rsize?,
            align: if align == 0 { q } else { align },
            ..self
        }))
    }
}

/// Whether `[a, b]` crosses a multiple of `boundary` (0: never).
#[inline]
pub(crate) fn crosses(a: usize, b: usize, boundary: usize) -> bool {
    boundary != 0 && (a ^ b) & boundary.wrapping_neg() != 0
}

/// Constraints that passed [`XallocConstraints::check`], normalised: the
/// size is a nonzero multiple of the quantum and `align` is nonzero (the
/// quantum where the caller said 0). Only these reach the search.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Request(XallocConstraints);

impl Request {
    /// What `vmem_alloc` asks: `rsize` (already rounded) anywhere.
    #[inline]
    pub(crate) fn plain(rsize: usize, quantum: usize) -> Request {
        Request(XallocConstraints::new(rsize).align(quantum))
    }

    /// The rounded size.
    #[inline]
    pub(crate) fn size(&self) -> usize {
        self.0.size
    }

    /// Whether the request is constrained beyond size and window (then it
    /// never imports).
    pub(crate) fn restricted(&self, quantum: usize) -> bool {
        self.0.align != quantum || self.0.phase != 0 || self.0.nocross != 0
    }

    /// The same request, starting no lower than `lo` (next fit first looks
    /// at or after its rotor).
    pub(crate) fn at_or_above(&self, lo: usize) -> Request {
        let c = self.0;
        Request(c.min(c.minaddr.max(lo)))
    }

    /// The fit test of spec §1.4 for one free segment: the chosen start.
    ///
    /// NetBSD computes the aligned start with wrapping arithmetic, which near
    /// the top of the address type can wrap past zero and yield an address
    /// below the segment; here every step is checked, so a segment without
    /// a suitable address simply does not fit.
    pub(crate) fn fit(&self, bt: &BoundaryTag) -> Option<usize> {
        let c = &self.0;
        let lo = bt.start.max(c.minaddr);
        let end = bt.end().min(c.maxaddr);
        if lo > end {
            return None;
        }
        // The smallest start >= lo with start ≡ phase (mod align).
        let mut start = if lo <= c.phase {
            c.phase
        } else {
            (lo - c.phase)
                .checked_next_multiple_of(c.align)?
                .checked_add(c.phase)?
        };
        let last = start.checked_add(c.size - 1)?;
        if crosses(start, last, c.nocross) {
            // The next nocross boundary, plus the phase (align < nocross).
            start = (start - c.phase)
                .checked_next_multiple_of(c.nocross)?
                .checked_add(c.phase)?;
        }
        let last = start.checked_add(c.size - 1)?;
        (start >= lo && last <= end).then_some(start)
    }
}

#[cfg(test)]
mod tests {
    //! Pure logic, no OS pages: runs under Miri (`cargo xtask ci --full`).
    use super::*;
    use crate::bt::BT_TYPE_FREE;

    fn free_tag(start: usize, size: usize) -> BoundaryTag {
        let mut t = BoundaryTag::new();
        t.start = start;
        t.size = size;
        t.typ = BT_TYPE_FREE;
        t
    }

    /// Constraints as checked for a quantum-1 arena.
    fn req(c: XallocConstraints) -> Request {
        c.check("test", 1).expect("a size that rounds")
    }

    fn c(size: usize) -> XallocConstraints {
        XallocConstraints::new(size)
    }

    #[test]
    fn fit_obeys_every_constraint() {
        let t = free_tag(0x1000, 0x10000);
        assert_eq!(req(c(0x100)).fit(&t), Some(0x1000));
        assert_eq!(req(c(0x100).align(0x4000)).fit(&t), Some(0x4000));
        assert_eq!(
            req(c(0x100).align(0x4000).phase(0x10)).fit(&t),
            Some(0x4010)
        );
        // [0x1f80, 0x2080) would cross 0x2000: moved to the boundary.
        assert_eq!(
            req(c(0x100).align(0x80).nocross(0x1000).min(0x1f80)).fit(&t),
            Some(0x2000)
        );
        // Inclusive max: exactly the last byte is allowed, one less is not.
        assert_eq!(
            req(c(0x100).min(0x10f00).max(0x10fff)).fit(&t),
            Some(0x10f00)
        );
        assert_eq!(req(c(0x100).min(0x10f00).max(0x10ffe)).fit(&t), None);
        assert_eq!(req(c(0x20000)).fit(&t), None, "too small");
        // At the top of the address type, no wrap.
        let top = free_tag(usize::MAX - 0xfff, 0x1000);
        assert_eq!(req(c(0x1000)).fit(&top), Some(usize::MAX - 0xfff));
        assert_eq!(req(c(0x10).align(0x2000)).fit(&top), None);
    }

    #[test]
    fn crossing_a_boundary() {
        assert!(crosses(0x0ff0, 0x1010, 0x1000));
        assert!(!crosses(0x1000, 0x1fff, 0x1000));
        assert!(!crosses(0, usize::MAX, 0), "nocross 0 never crosses");
    }

    #[test]
    fn the_setters_build_what_the_fields_say() {
        const C: XallocConstraints = XallocConstraints::new(0x30)
            .align(0x100)
            .phase(0x10)
            .nocross(0x1000)
            .min(0x2000)
            .max(0x8fff);
        assert_eq!(
            C,
            XallocConstraints {
                size: 0x30,
                align: 0x100,
                phase: 0x10,
                nocross: 0x1000,
                minaddr: 0x2000,
                maxaddr: 0x8fff,
            }
        );
        let d = XallocConstraints::new(1);
        assert_eq!((d.align, d.phase, d.nocross), (0, 0, 0));
        assert_eq!((d.minaddr, d.maxaddr), (VMEM_ADDR_MIN, VMEM_ADDR_MAX));
    }

    #[test]
    fn check_normalises_size_and_align() {
        let r = c(0x11).check("n", 0x10).unwrap();
        assert_eq!(r.size(), 0x20, "rounded to the quantum");
        assert!(!r.restricted(0x10), "align 0 means the quantum");
        assert!(
            c(0x10)
                .align(0x20)
                .check("n", 0x10)
                .unwrap()
                .restricted(0x10)
        );
        assert!(
            c(usize::MAX).check("n", 0x10).is_none(),
            "valid, but no size rounds"
        );
    }
}
