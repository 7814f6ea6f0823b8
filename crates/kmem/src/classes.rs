//! The size classes (spec §4.2, subr_kmem.c rev 1.87): which of the
//! candidate sizes get a cache for a given `PAGE_SIZE` and
//! `COHERENCY_UNIT`, their alignment and flags, and the two lookup tables
//! from an allocation size to its cache.

use core::fmt;

use crate::flags::{KMEM_ALIGN, KMEM_BIG_MAXSIZE, KMEM_BIG_SHIFT, KMEM_MAXSIZE, KMEM_SHIFT};

/// The small candidate sizes (`kmem_cache_sizes[]`).
const SMALL: [usize; 22] = [
    8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 768,
    1024,
];
/// Every candidate, small (`kmem_cache_sizes[]`) then big
/// (`kmem_cache_big_sizes[]`: 2048, 4096, 8192, 16384), with its cache
/// name: the names are `'static` because pool and pool-cache keep them.
pub(crate) const CANDIDATES: [(usize, &str); 26] = [
    (8, "kmem-00008"),
    (16, "kmem-00016"),
    (24, "kmem-00024"),
    (32, "kmem-00032"),
    (40, "kmem-00040"),
    (48, "kmem-00048"),
    (56, "kmem-00056"),
    (64, "kmem-00064"),
    (80, "kmem-00080"),
    (96, "kmem-00096"),
    (112, "kmem-00112"),
    (128, "kmem-00128"),
    (160, "kmem-00160"),
    (192, "kmem-00192"),
    (224, "kmem-00224"),
    (256, "kmem-00256"),
    (320, "kmem-00320"),
    (384, "kmem-00384"),
    (448, "kmem-00448"),
    (512, "kmem-00512"),
    (768, "kmem-00768"),
    (1024, "kmem-01024"),
    (2048, "kmem-02048"),
    (4096, "kmem-04096"),
    (8192, "kmem-08192"),
    (16384, "kmem-16384"),
];

/// The most classes a configuration can have.
pub const MAX_CLASSES: usize = CANDIDATES.len();

const _: () = {
    let mut i = 0;
    while i < SMALL.len() {
        assert!(CANDIDATES[i].0 == SMALL[i]);
        i += 1;
    }
};

const SMALL_SLOTS: usize = KMEM_MAXSIZE >> KMEM_SHIFT;
const BIG_SLOTS: usize = KMEM_BIG_MAXSIZE >> KMEM_BIG_SHIFT;
/// A lookup slot no class covers.
const NONE: u8 = u8::MAX;

/// One size class: a cache `kmem-NNNNN` of `size`-byte objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeClass {
    /// The object size.
    pub size: usize,
    /// The objects' alignment: 8 below the cache line, the page size for
    /// page multiples, the cache line otherwise.
    pub align: usize,
    /// `PR_NOTOUCH` (sizes below the cache line): the pool never writes
    /// into free objects.
    pub notouch: bool,
    /// The cache's name, `kmem-NNNNN` (five digits, zero padded).
    pub name: &'static str,
    /// Index into the candidate list (the class's identity across
    /// configurations).
    pub(crate) candidate: u8,
}

/// The classes for one `PAGE_SIZE` and `COHERENCY_UNIT`, and the lookup
/// tables from an allocation size (`allocsz`) to a class.
///
/// ```
/// use bsdalloc_kmem::SizeClasses;
///
/// let c = SizeClasses::compute(4096, 64);
/// let names: Vec<_> = c.classes().iter().map(|k| k.name).collect();
/// assert_eq!(names[..4], ["kmem-00008", "kmem-00016", "kmem-00032", "kmem-00064"]);
/// assert_eq!(c.lookup(33).map(|k| k.name), Some("kmem-00064"));
/// assert_eq!(c.lookup(4097), None); // whole pages
/// ```
#[derive(Clone, Copy)]
pub struct SizeClasses {
    page_size: usize,
    coherency_unit: usize,
    classes: [SizeClass; MAX_CLASSES],
    n: usize,
    /// `kmem_cache[]`: slot `(allocsz - 1) >> 3` → class, for `allocsz` up
    /// to `small_max`.
    small: [u8; SMALL_SLOTS],
    small_max: usize,
    /// `kmem_cache_big[]`: slot `(allocsz - 1) >> 11` → class, for
    /// `allocsz` up to `big_max`.
    big: [u8; BIG_SLOTS],
    big_max: usize,
}

impl fmt::Debug for SizeClasses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SizeClasses")
            .field("page_size", &self.page_size)
            .field("coherency_unit", &self.coherency_unit)
            .field("classes", &self.classes())
            .finish()
    }
}

impl SizeClasses {
    /// `kmem_create_caches` for both tables: walk the candidates in order,
    /// stop at the first one above the table's maximum or `PAGE_SIZE`, and
    /// keep
    /// - a size below `COHERENCY_UNIT` only if it divides it (`PR_NOTOUCH`,
    ///   align 8);
    /// - a multiple of `PAGE_SIZE` (align `PAGE_SIZE`);
    /// - otherwise only multiples of `COHERENCY_UNIT` (align
    ///   `COHERENCY_UNIT`).
    ///
    /// Lookup slots up to a kept size that no smaller kept size covers
    /// point to it, so a skipped size maps to the next kept one.
    ///
    /// # Panics
    /// If `page_size` or `coherency_unit` is not a power of two, or the
    /// cache line is below 8 bytes or above the page.
    pub const fn compute(page_size: usize, coherency_unit: usize) -> SizeClasses {
        assert!(
            page_size.is_power_of_two() && page_size >= 512,
            "kmem: PAGE_SIZE must be a power of two of at least 512"
        );
        assert!(
            coherency_unit.is_power_of_two()
                && coherency_unit >= KMEM_ALIGN
                && coherency_unit <= page_size,
            "kmem: COHERENCY_UNIT must be a power of two between 8 and PAGE_SIZE"
        );
        let mut t = SizeClasses {
            page_size,
            coherency_unit,
            classes: [SizeClass {
                size: 0,
                align: 0,
                notouch: false,
                name: "",
                candidate: 0,
            }; MAX_CLASSES],
            n: 0,
            small: [NONE; SMALL_SLOTS],
            small_max: 0,
            big: [NONE; BIG_SLOTS],
            big_max: 0,
        };
        let mut c = 0;
        while c < CANDIDATES.len() {
            let (size, name) = CANDIDATES[c];
            let is_big = c >= SMALL.len();
            let table_max = if is_big {
                KMEM_BIG_MAXSIZE
            } else {
                KMEM_MAXSIZE
            };
            if size > table_max || size > page_size {
                // This table is done; the big one starts at its first entry.
                if is_big {
                    break;
                }
                c = SMALL.len();
                continue;
            }
            let (keep, align, notouch) = if size < coherency_unit {
                (coherency_unit.is_multiple_of(size), KMEM_ALIGN, true)
            } else if size.is_multiple_of(page_size) {
                (true, page_size, false)
            } else {
                (size.is_multiple_of(coherency_unit), coherency_unit, false)
            };
            if keep {
                let k = t.n as u8;
                t.classes[t.n] = SizeClass {
                    size,
                    align,
                    notouch,
                    name,
                    candidate: c as u8,
                };
                t.n += 1;
                if is_big {
                    let mut i = t.big_max >> KMEM_BIG_SHIFT;
                    while i < size >> KMEM_BIG_SHIFT {
                        t.big[i] = k;
                        i += 1;
                    }
                    t.big_max = size;
                } else {
                    let mut i = t.small_max >> KMEM_SHIFT;
                    while i < size >> KMEM_SHIFT {
                        t.small[i] = k;
                        i += 1;
                    }
                    t.small_max = size;
                }
            }
            c += 1;
        }
        t
    }

    /// The page size the table was computed for.
    pub const fn page_size(&self) -> usize {
        self.page_size
    }

    /// The cache-line size the table was computed for.
    pub const fn coherency_unit(&self) -> usize {
        self.coherency_unit
    }

    /// The kept classes, smallest first.
    #[inline]
    pub fn classes(&self) -> &[SizeClass] {
        &self.classes[..self.n]
    }

    /// The largest `allocsz` served by a cache; above it, whole pages.
    pub const fn max_cached(&self) -> usize {
        if self.big_max > 0 {
            self.big_max
        } else {
            self.small_max
        }
    }

    /// The index (into [`classes`](SizeClasses::classes)) of the class
    /// serving `allocsz` bytes, or `None` for whole pages (or 0).
    #[inline]
    pub const fn index(&self, allocsz: usize) -> Option<usize> {
        if allocsz == 0 {
            return None;
        }
        let k = if allocsz <= self.small_max {
            self.small[(allocsz - 1) >> KMEM_SHIFT]
        } else if allocsz <= self.big_max {
            self.big[(allocsz - 1) >> KMEM_BIG_SHIFT]
        } else {
            return None;
        };
        Some(k as usize)
    }

    /// The class serving `allocsz` bytes, or `None` for whole pages.
    #[inline]
    pub fn lookup(&self, allocsz: usize) -> Option<&SizeClass> {
        self.index(allocsz).map(|i| &self.classes[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_up_to_the_maximum_is_covered_by_a_class_that_fits() {
        for (ps, cu) in [
            (4096, 64),
            (4096, 128),
            (16384, 64),
            (16384, 128),
            (8192, 32),
        ] {
            let t = SizeClasses::compute(ps, cu);
            for a in 1..=t.max_cached() {
                let k = t.lookup(a).unwrap();
                assert!(k.size >= a, "{ps}/{cu}: {a} → {}", k.size);
                // No smaller kept class would have fitted.
                assert!(
                    t.classes().iter().all(|c| c.size >= k.size || c.size < a),
                    "{ps}/{cu}: {a} not in its smallest class"
                );
            }
            assert!(t.lookup(t.max_cached() + 1).is_none());
            assert!(t.lookup(0).is_none());
        }
    }
}
