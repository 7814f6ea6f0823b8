//! `pool_init`'s layout decisions, as a pure function: item size, redzone,
//! page-header placement, items per page, bitmap or free list, the header
//! pool, colouring. No memory is touched, so the rules are tested (and run
//! under Miri) on their own.

use core::fmt;

use crate::flags::{ALIGNBYTES, PHPOOL_MAX, POOL_REDZONE_SIZE, PrFlags};
use crate::raw::{BITMAP_MIN_BITS, PH_BITMAP_OFFSET, PHSIZE, POOL_ITEM_SIZE, POOL_ITEM_SIZE_MAGIC};

/// The bitmap sizes (in items) of the header pools `phpool-N`, by index:
/// `PHPOOL_FREELIST_NELEM(idx)`.
pub const fn phpool_nelem(idx: usize) -> usize {
    if idx == 0 { BITMAP_MIN_BITS } else { 32 << idx }
}

/// The item size of header pool `idx`: the fixed header and a bitmap of
/// `phpool_nelem(idx)` bits in 32-bit words.
pub const fn phpool_item_size(idx: usize) -> usize {
    PH_BITMAP_OFFSET + phpool_nelem(idx).div_ceil(32) * 4
}

/// What `pool_init` decided for a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolLayout {
    /// `pr_size`: the rounded item size (free-list record, alignment,
    /// redzone).
    pub size: usize,
    /// `pr_reqsize`: the size the caller asked for (`PR_ZERO` clears this
    /// much; the redzone starts here).
    pub reqsize: usize,
    /// `pr_align`.
    pub align: usize,
    /// `pr_itemoffset`: where items start in a page before colouring (the
    /// on-page header rounded up to `align`; 0 off-page).
    pub itemoffset: usize,
    /// `pr_itemsperpage`.
    pub itemsperpage: usize,
    /// `pr_maxcolor`: the largest colour offset.
    pub maxcolor: usize,
    /// The back-end page size.
    pub pagesz: usize,
    /// `pr_roflags`: the caller's flags with `PR_NOTOUCH` (from
    /// `PR_PSERIALIZE`), `PR_PHINPAGE` and `PR_USEBMAP` as decided.
    pub roflags: PrFlags,
    /// The header pool for off-page headers (`phpool-N`), by index.
    pub phpool: Option<usize>,
    /// Whether items carry a redzone (feature `redzone`).
    pub redzone: bool,
}

impl PoolLayout {
    /// Headers live in their pages.
    pub fn phinpage(&self) -> bool {
        self.roflags.contains(PrFlags::PHINPAGE)
    }

    /// Free items are tracked in a bitmap.
    pub fn usebmap(&self) -> bool {
        self.roflags.contains(PrFlags::USEBMAP)
    }
}

/// Why `pool_init` refuses (each a NetBSD assertion or panic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// Size 0.
    ZeroSize,
    /// `align` is not a power of two.
    BadAlign(usize),
    /// `align_offset` is not 0 ("XXX ioff will be removed").
    AlignOffset(usize),
    /// The item does not fit in a page.
    TooLarge {
        /// The rounded item size.
        size: usize,
        /// The page size.
        pagesz: usize,
    },
    /// More items per page than the largest header pool's bitmap holds.
    TooManyItems(usize),
    /// The page size is not a power of two.
    BadPageSize(usize),
    /// `PR_PHINPAGE` with `PR_NOALIGN`: an on-page header cannot be found
    /// from an item of an unaligned page.
    PhinpageNoalign,
}

impl LayoutError {
    /// The panic message, NetBSD's where NetBSD has one.
    pub fn message<'a>(&'a self, wchan: &'a str) -> impl fmt::Display + 'a {
        struct M<'a>(&'a LayoutError, &'a str);
        impl fmt::Display for M<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let w = self.1;
                match *self.0 {
                    LayoutError::ZeroSize => write!(f, "pool_init: [{w}] size 0"),
                    LayoutError::BadAlign(a) => {
                        write!(f, "pool_init: [{w}] align {a} is not a power of two")
                    }
                    LayoutError::AlignOffset(o) => write!(
                        f,
                        "pool_init: [{w}] ioff == 0 failed: align_offset {o} (XXX ioff will be removed)"
                    ),
                    LayoutError::TooLarge { size, pagesz } => write!(
                        f,
                        "pool_init: [{w}] pool item size ({size}) larger than page size ({pagesz})"
                    ),
                    LayoutError::TooManyItems(n) => write!(
                        f,
                        "pool_init: [{w}] too large itemsperpage({n}) for PR_USEBMAP"
                    ),
                    LayoutError::BadPageSize(p) => write!(
                        f,
                        "pool_init: [{w}] allocator page size {p} is not a power of two"
                    ),
                    LayoutError::PhinpageNoalign => write!(
                        f,
                        "pool_init: [{w}] PR_PHINPAGE with PR_NOALIGN: the header of an unaligned page cannot be found"
                    ),
                }
            }
        }
        M(self, wchan)
    }
}

/// Which debug features shape the layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebugOptions {
    /// `POOL_CHECK_MAGIC`: the free-list record holds a 4-byte magic.
    pub magic: bool,
    /// `POOL_REDZONE`.
    pub redzone: bool,
}

impl DebugOptions {
    /// As this build's features say.
    pub const BUILD: DebugOptions = DebugOptions {
        magic: cfg!(feature = "magic"),
        redzone: cfg!(feature = "redzone"),
    };
}

/// `pool_init(pp, size, align, ioff, flags, …)` for a back end with pages
/// of `pagesz` bytes: every decision of subr_pool.c rev 1.284, in its order.
pub fn compute(
    size: usize,
    align: usize,
    ioff: usize,
    flags: PrFlags,
    pagesz: usize,
    dbg: DebugOptions,
) -> Result<PoolLayout, LayoutError> {
    if ioff != 0 {
        return Err(LayoutError::AlignOffset(ioff));
    }
    if size == 0 {
        return Err(LayoutError::ZeroSize);
    }
    if align != 0 && !align.is_power_of_two() {
        return Err(LayoutError::BadAlign(align));
    }
    if !pagesz.is_power_of_two() {
        return Err(LayoutError::BadPageSize(pagesz));
    }
    let mut flags = flags & PrFlags::INIT_MASK;
    if flags.contains(PrFlags::PSERIALIZE) {
        flags |= PrFlags::NOTOUCH;
    }
    if flags.contains(PrFlags::PHINPAGE | PrFlags::NOALIGN) {
        return Err(LayoutError::PhinpageNoalign);
    }
    let align = if align == 0 { ALIGNBYTES } else { align };
    let item_record = if dbg.magic {
        POOL_ITEM_SIZE_MAGIC
    } else {
        POOL_ITEM_SIZE
    };
    let mut prsize = size;
    if !flags.contains(PrFlags::NOTOUCH) && prsize < item_record {
        prsize = item_record;
    }
    let too_large = LayoutError::TooLarge {
        size: prsize,
        pagesz,
    };
    prsize = prsize.checked_next_multiple_of(align).ok_or(too_large)?;
    if prsize > pagesz {
        return Err(LayoutError::TooLarge {
            size: prsize,
            pagesz,
        });
    }

    // pool_redzone_init: use the padding if it holds the redzone, else
    // grow the item unless that makes it more than half a page.
    let mut redzone = false;
    if dbg.redzone && !flags.contains(PrFlags::NOTOUCH) {
        if prsize - size >= POOL_REDZONE_SIZE {
            redzone = true;
        } else {
            let nsz = (prsize + POOL_REDZONE_SIZE).next_multiple_of(align);
            if nsz <= pagesz / 2 {
                prsize = nsz;
                redzone = true;
            }
        }
    }

    // pool_init_is_phinpage.
    let phinpage = if flags.contains(PrFlags::PHINPAGE) {
        true
    } else if flags.intersects(PrFlags::NOTOUCH | PrFlags::NOALIGN) {
        false
    } else {
        prsize < (pagesz / 16).min(PHSIZE * 8) || pagesz / prsize == (pagesz - PHSIZE) / prsize
    };
    let (itemoffset, itemspace) = if phinpage {
        let off = PHSIZE.next_multiple_of(align);
        if off + prsize > pagesz {
            return Err(LayoutError::TooLarge {
                size: off + prsize,
                pagesz,
            });
        }
        flags |= PrFlags::PHINPAGE;
        (off, pagesz - off)
    } else {
        (0, pagesz)
    };
    let itemsperpage = itemspace / prsize;
    if itemsperpage > u16::MAX as usize {
        return Err(LayoutError::TooManyItems(itemsperpage));
    }

    // pool_init_is_usebmap.
    let usebmap = flags.contains(PrFlags::NOTOUCH)
        || !phinpage
        || itemsperpage <= (PHSIZE.next_multiple_of(align) - PH_BITMAP_OFFSET) * 8;
    if usebmap {
        flags |= PrFlags::USEBMAP;
    }
    let phpool = if phinpage {
        None
    } else {
        match (0..PHPOOL_MAX).find(|&i| itemsperpage <= phpool_nelem(i)) {
            Some(i) => Some(i),
            None => return Err(LayoutError::TooManyItems(itemsperpage)),
        }
    };
    let slack = itemspace - itemsperpage * prsize;
    Ok(PoolLayout {
        size: prsize,
        reqsize: size,
        align,
        itemoffset,
        itemsperpage,
        maxcolor: slack - slack % align,
        pagesz,
        roflags: flags,
        phpool,
        redzone,
    })
}

#[cfg(test)]
mod tests {
    //! The layout table of spec §2.1 against values worked out by hand
    //! from subr_pool.c rev 1.284 (LP64, PHSIZE 56, a free-list record of
    //! 16 bytes, 24 with the magic).
    use super::*;

    const NONE: DebugOptions = DebugOptions {
        magic: false,
        redzone: false,
    };
    const DIAG: DebugOptions = DebugOptions {
        magic: true,
        redzone: true,
    };

    /// (size, align, flags, pagesz, debug) → (size, itemoffset, ipp,
    /// phinpage, usebmap, phpool, maxcolor, redzone)
    #[allow(clippy::type_complexity)]
    const TABLE: &[(
        usize,
        usize,
        PrFlags,
        usize,
        DebugOptions,
        (usize, usize, usize, bool, bool, Option<usize>, usize, bool),
    )] = &[
        // 64 B: below 1/16 page → on-page; (4096-56)/64 = 63 items: more
        // than the 64 spare bits? 63 ≤ 64 → bitmap. Slack 4040-4032 = 8.
        (
            64,
            0,
            PrFlags::empty(),
            4096,
            NONE,
            (64, 56, 63, true, true, None, 8, false),
        ),
        // 64 B aligned to 64: items start at 64, (4096-64)/64 = 63, the
        // header's spare room is 64-48 = 16 bytes = 128 bits → bitmap.
        (
            64,
            64,
            PrFlags::empty(),
            4096,
            NONE,
            (64, 64, 63, true, true, None, 0, false),
        ),
        // 8 B grows to the 16-byte free-list record: on-page, 252 items,
        // more than 64 bits → free list. Slack 4040 - 4032 = 8.
        (
            8,
            0,
            PrFlags::empty(),
            4096,
            NONE,
            (16, 56, 252, true, false, None, 8, false),
        ),
        // With the magic the record is 24 bytes: 168 items, slack 8.
        (
            8,
            0,
            PrFlags::empty(),
            4096,
            NONE.with_magic(),
            (24, 56, 168, true, false, None, 8, false),
        ),
        // 1024 B: not small; on-page would lose an item (4 vs 3) → off,
        // bitmap, phpool-64 (idx 0), no slack.
        (
            1024,
            0,
            PrFlags::empty(),
            4096,
            NONE,
            (1024, 0, 4, false, true, Some(0), 0, false),
        ),
        // 1000 B: 4096/1000 = 4 == 4040/1000 = 4 → on-page, bitmap.
        // Slack 4040 - 4000 = 40 → colours up to 40.
        (
            1000,
            0,
            PrFlags::empty(),
            4096,
            NONE,
            (1000, 56, 4, true, true, None, 40, false),
        ),
        // 200 B: 200 < min(256, 448) → on-page; 20 items, slack 40.
        (
            200,
            0,
            PrFlags::empty(),
            4096,
            NONE,
            (200, 56, 20, true, true, None, 40, false),
        ),
        // 300 B rounds to 304: not small; 13 vs 13 → on-page; slack 88.
        (
            300,
            0,
            PrFlags::empty(),
            4096,
            NONE,
            (304, 56, 13, true, true, None, 88, false),
        ),
        // 512 B: 8 vs 7 → off-page, bitmap, phpool-64.
        (
            512,
            0,
            PrFlags::empty(),
            4096,
            NONE,
            (512, 0, 8, false, true, Some(0), 0, false),
        ),
        // NOTOUCH 8 B: no record, off-page, 512 items → phpool-512 (idx 4).
        (
            8,
            0,
            PrFlags::NOTOUCH,
            4096,
            NONE,
            (8, 0, 512, false, true, Some(4), 0, false),
        ),
        // PSERIALIZE implies NOTOUCH.
        (
            16,
            0,
            PrFlags::PSERIALIZE,
            4096,
            NONE,
            (16, 0, 256, false, true, Some(3), 0, false),
        ),
        // NOTOUCH 1 B on 4 KiB: 4096 items → phpool-4096 (idx 7).
        (
            1,
            1,
            PrFlags::NOTOUCH,
            4096,
            NONE,
            (1, 0, 4096, false, true, Some(7), 0, false),
        ),
        // NOALIGN forces off-page even for small items.
        (
            64,
            0,
            PrFlags::NOALIGN,
            4096,
            NONE,
            (64, 0, 64, false, true, Some(0), 0, false),
        ),
        // Forced PHINPAGE for a 1024 B item: 3 items, slack 4040-3072.
        (
            1024,
            0,
            PrFlags::PHINPAGE,
            4096,
            NONE,
            (1024, 56, 3, true, true, None, 968, false),
        ),
        // A whole page: off-page, one item.
        (
            4096,
            0,
            PrFlags::empty(),
            4096,
            NONE,
            (4096, 0, 1, false, true, Some(0), 0, false),
        ),
        // 8 KiB pages (big allocator), 5000 B, NOALIGN: off-page, 1 item.
        (
            5000,
            0,
            PrFlags::NOALIGN,
            8192,
            NONE,
            (5000, 0, 1, false, true, Some(0), 3192, false),
        ),
        // Redzone in the padding: 20 B rounds to 24 (4 bytes spare).
        (
            20,
            0,
            PrFlags::empty(),
            4096,
            DIAG,
            (24, 56, 168, true, false, None, 8, true),
        ),
        // Redzone that grows the item: 64 → 72; 56 items, slack 8.
        (
            64,
            0,
            PrFlags::empty(),
            4096,
            DIAG,
            (72, 56, 56, true, true, None, 8, true),
        ),
        // Redzone refused above half a page: 2048 stays 2048.
        (
            2048,
            0,
            PrFlags::empty(),
            4096,
            DIAG,
            (2048, 0, 2, false, true, Some(0), 0, false),
        ),
        // No redzone for NOTOUCH.
        (
            64,
            0,
            PrFlags::NOTOUCH,
            4096,
            DIAG,
            (64, 0, 64, false, true, Some(0), 0, false),
        ),
        // 65 items need phpool-128 (idx 2): NOTOUCH 63 B items.
        (
            63,
            1,
            PrFlags::NOTOUCH,
            4096,
            NONE,
            (63, 0, 65, false, true, Some(2), 1, false),
        ),
    ];

    impl DebugOptions {
        const fn with_magic(self) -> DebugOptions {
            DebugOptions {
                magic: true,
                ..self
            }
        }
    }

    #[test]
    fn netbsd_layout_table() {
        for (i, &(size, align, flags, pagesz, dbg, want)) in TABLE.iter().enumerate() {
            let l = compute(size, align, 0, flags, pagesz, dbg).unwrap();
            let got = (
                l.size,
                l.itemoffset,
                l.itemsperpage,
                l.phinpage(),
                l.usebmap(),
                l.phpool,
                l.maxcolor,
                l.redzone,
            );
            assert_eq!(got, want, "row {i}: size {size} align {align} {flags:?}");
            assert_eq!(l.reqsize, size);
            assert!(l.itemoffset + l.itemsperpage * l.size + l.maxcolor <= pagesz);
        }
    }

    #[test]
    fn phpool_sizes_are_netbsds() {
        let n: [usize; PHPOOL_MAX] = core::array::from_fn(phpool_nelem);
        assert_eq!(n, [64, 64, 128, 256, 512, 1024, 2048, 4096]);
        assert_eq!(phpool_item_size(0), 56);
        assert_eq!(phpool_item_size(7), 48 + 512);
        assert_eq!(PHSIZE, 56);
    }

    #[test]
    fn refusals() {
        let c = |s, a, o, f, p| compute(s, a, o, f, p, NONE);
        assert_eq!(
            c(0, 0, 0, PrFlags::empty(), 4096),
            Err(LayoutError::ZeroSize)
        );
        assert_eq!(
            c(8, 3, 0, PrFlags::empty(), 4096),
            Err(LayoutError::BadAlign(3))
        );
        assert_eq!(
            c(8, 0, 4, PrFlags::empty(), 4096),
            Err(LayoutError::AlignOffset(4))
        );
        assert!(matches!(
            c(4097, 0, 0, PrFlags::empty(), 4096),
            Err(LayoutError::TooLarge {
                size: 4104,
                pagesz: 4096
            })
        ));
        assert_eq!(
            c(1, 1, 0, PrFlags::NOTOUCH, 8192),
            Err(LayoutError::TooManyItems(8192))
        );
        assert_eq!(
            c(64, 0, 0, PrFlags::PHINPAGE | PrFlags::NOALIGN, 4096),
            Err(LayoutError::PhinpageNoalign)
        );
        extern crate std;
        use std::string::ToString;
        assert_eq!(
            LayoutError::TooLarge {
                size: 8192,
                pagesz: 4096
            }
            .message("big")
            .to_string(),
            "pool_init: [big] pool item size (8192) larger than page size (4096)"
        );
    }
}
