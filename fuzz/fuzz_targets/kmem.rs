//! kmem(9) as a random walk (TESTING.md #6) on instances of its own, one
//! per machine shape (4 KiB pages with 64-byte lines, 16 KiB with 128,
//! 8 KiB with 32), each over a counting page source: kmem_alloc /
//! kmem_zalloc (KM_SLEEP and KM_NOSLEEP, plain and `intr` entry points)
//! of 1 byte to a few pages, biased toward the class boundaries and page
//! multiples, and kmem_free. A model of the size classes, built here from
//! the rules (not from kmem's tables), says which class or how many
//! pages each size gets, and so its alignment; kmem's own answers must
//! agree. A `Layout` (any size, alignments 1 to 32 KiB and some that are
//! not powers of two) maps through `Kmem::layout_size` to the first of the
//! size, the size raised to the line, the size raised to the page, whose
//! class is aligned enough — refused above the page or when not a power
//! of two — and the block is that aligned. Every block is filled with a byte of its own and checked at
//! free (and by check-all); zalloc'd bytes must be zero; no two live
//! blocks overlap, counting each at its class size or whole pages. The
//! census (objects out of the caches' pools, large allocations and their
//! bytes) matches the model whenever asked, and is zero at the end of
//! every input. A rebuild destroys the instance, requires every page and
//! every byte of address space back with the page source, and boots it
//! again.
#![no_main]

use std::collections::BTreeMap;
use std::ptr::NonNull;

use arbitrary::Arbitrary;
use bsdalloc_kmem::{KM_NOSLEEP, KM_SLEEP, Kmem, KmemCensus, KmemConfig};
use bsdalloc_platform::{CountingPages, OS_PAGES, OsPages};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Size {
    /// 1 to 64 bytes.
    Tiny(u8),
    /// A kept class's size, give or take 2 bytes.
    Edge { class: u8, delta: i8 },
    /// 1 to 4 pages, give or take 2 bytes.
    Pages { n: u8, delta: i8 },
    /// Anything from 1 byte to 4.5 pages.
    Any(u32),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Alloc {
        size: Size,
        zero: bool,
        nosleep: bool,
        intr: bool,
    },
    /// A `Layout`'s size and alignment through `Kmem::layout_size`:
    /// every power of two up to twice the largest page, and some that are
    /// not powers of two.
    AllocAligned {
        size: Size,
        align_log: u8,
        zero: bool,
        nosleep: bool,
    },
    Free {
        pick: u16,
        intr: bool,
    },
    CheckAll,
    Census,
    Reclaim,
    Rebuild,
}

#[derive(Arbitrary, Debug)]
struct Input {
    machine: u8,
    ops: Vec<Op>,
}

struct Machine {
    kmem: Kmem,
    /// OS pages, counted: after destroy nothing may be left.
    pages: CountingPages<OsPages>,
    /// `PAGE_SIZE` (0: the OS's).
    page_size: usize,
    coherency_unit: usize,
    va_size: usize,
}

static MACHINES: [Machine; 3] = [
    // amd64: a "small" 32 MiB kmem arena (kva quantum caches of 4 pages).
    Machine {
        kmem: Kmem::new(),
        pages: CountingPages::new(&OS_PAGES),
        page_size: 0,
        coherency_unit: 64,
        va_size: 64 << 20,
    },
    // 16 KiB pages over the OS's 4 KiB ones, 128-byte lines, a 128 MiB
    // kmem arena (quantum caches of 16 pages).
    Machine {
        kmem: Kmem::new(),
        pages: CountingPages::new(&OS_PAGES),
        page_size: 16384,
        coherency_unit: 128,
        va_size: 256 << 20,
    },
    // 8 KiB pages, 32-byte lines: 8 and 16 below the line, 32 up line
    // aligned.
    Machine {
        kmem: Kmem::new(),
        pages: CountingPages::new(&OS_PAGES),
        page_size: 8192,
        coherency_unit: 32,
        va_size: 64 << 20,
    },
];

impl Machine {
    fn boot(&'static self) {
        let mut cfg = KmemConfig::new()
            .pages(&self.pages)
            .va_size(self.va_size)
            .coherency_unit(self.coherency_unit);
        if self.page_size != 0 {
            cfg = cfg.page_size(self.page_size);
        }
        self.kmem.bootstrap(cfg).expect("kmem bootstrap");
    }
}

/// kmem_cache_sizes[] then kmem_cache_big_sizes[].
const CANDIDATES: [usize; 26] = [
    8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 768,
    1024, 2048, 4096, 8192, 16384,
];

/// The kept classes for a page size and cache line (size, alignment), by
/// the rules of subr_kmem.c: nothing above the page; below the line only
/// divisors of it (8-byte aligned); page multiples page aligned; the rest
/// only multiples of the line (line aligned).
fn model_classes(ps: usize, cu: usize) -> Vec<(usize, usize)> {
    CANDIDATES
        .iter()
        .filter(|&&s| s <= ps)
        .filter_map(|&s| {
            if s < cu {
                (cu % s == 0).then_some((s, 8))
            } else if s % ps == 0 {
                Some((s, ps))
            } else {
                (s % cu == 0).then_some((s, cu))
            }
        })
        .collect()
}

/// Where a size goes: (reserved bytes, alignment, whole pages?).
fn model_route(classes: &[(usize, usize)], ps: usize, size: usize) -> (usize, usize, bool) {
    let allocsz = size.next_multiple_of(8);
    match classes.iter().find(|&&(s, _)| s >= allocsz) {
        Some(&(s, a)) => (s, a, false),
        None => (size.next_multiple_of(ps), ps, true),
    }
}

struct Live {
    addr: usize,
    size: usize,
    reserved: usize,
    large: bool,
    fill: u8,
}

fn check_fill(b: &Live) {
    // SAFETY: the block's `size` bytes, ours.
    let s = unsafe { std::slice::from_raw_parts(b.addr as *const u8, b.size) };
    if let Some(i) = s.iter().position(|&x| x != b.fill) {
        panic!(
            "block {:#x} ({} bytes): byte {i} is {:#04x}, not its fill {:#04x}",
            b.addr, b.size, s[i], b.fill
        );
    }
}

fn free_block(k: &Kmem, b: Live, by_addr: &mut BTreeMap<usize, usize>, intr: bool) {
    check_fill(&b);
    by_addr
        .remove(&b.addr)
        .expect("live block not in the address map");
    // SAFETY: a live block of this instance, allocated with `size`.
    unsafe {
        if intr {
            k.intr_free(b.addr as *mut u8, b.size);
        } else {
            k.free(b.addr as *mut u8, b.size);
        }
    }
}

fn size_of(size: Size, classes: &[(usize, usize)], ps: usize) -> usize {
    match size {
        Size::Tiny(v) => 1 + v as usize % 64,
        Size::Edge { class, delta } => {
            let c = classes[class as usize % classes.len()].0;
            (c as isize + (delta % 3) as isize).max(1) as usize
        }
        Size::Pages { n, delta } => {
            let p = (1 + n as usize % 4) * ps;
            (p as isize + (delta % 3) as isize) as usize
        }
        Size::Any(v) => 1 + v as usize % (4 * ps + ps / 2),
    }
}

/// A fresh block of `size` bytes: no overlap with a live block's reserved
/// range, zeroed if zalloc'd, then filled with a byte of its own.
#[allow(clippy::too_many_arguments)]
fn take(
    p: NonNull<u8>,
    size: usize,
    reserved: usize,
    large: bool,
    zero: bool,
    serial: &mut u8,
    by_addr: &mut BTreeMap<usize, usize>,
    live: &mut Vec<Live>,
) {
    let addr = p.as_ptr() as usize;
    if let Some((&a, &e)) = by_addr.range(..addr + reserved).next_back() {
        assert!(
            e <= addr,
            "{size} bytes at {addr:#x}..{:#x} overlap a live block at {a:#x}..{e:#x}",
            addr + reserved
        );
    }
    by_addr.insert(addr, addr + reserved);
    // SAFETY: `size` bytes, ours now.
    let s = unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), size) };
    if zero {
        if let Some(i) = s.iter().position(|&x| x != 0) {
            panic!(
                "kmem_zalloc({size}) at {addr:#x}: byte {i} is {:#04x}",
                s[i]
            );
        }
    }
    *serial = serial.wrapping_add(1);
    let fill = if *serial == 0 { 0xa5 } else { *serial };
    s.fill(fill);
    live.push(Live {
        addr,
        size,
        reserved,
        large,
        fill,
    });
}

fn census_of(live: &[Live]) -> KmemCensus {
    let small = live.iter().filter(|b| !b.large).count() as u64;
    let large: Vec<&Live> = live.iter().filter(|b| b.large).collect();
    KmemCensus {
        objects_out: small,
        large_out: large.len(),
        large_bytes: large.iter().map(|b| b.reserved).sum(),
        guarded_out: 0,
    }
}

fuzz_target!(|input: Input| {
    let m: &'static Machine = &MACHINES[input.machine as usize % MACHINES.len()];
    if !m.kmem.is_ready() {
        m.boot();
    }
    let k = &m.kmem;
    let ps = k.page_size();
    let classes = model_classes(ps, m.coherency_unit);
    // The model of the classes is kmem's.
    let theirs: Vec<(usize, usize)> = k
        .size_classes()
        .classes()
        .iter()
        .map(|c| (c.size, c.align))
        .collect();
    assert_eq!(
        classes, theirs,
        "size classes for PAGE_SIZE {ps}, COHERENCY_UNIT {}",
        m.coherency_unit
    );

    let start = k.stats().large;
    let mut live: Vec<Live> = Vec::new();
    // Start address → end of the reserved range, of every live block.
    let mut by_addr: BTreeMap<usize, usize> = BTreeMap::new();
    let mut serial = 0u8;
    let mut checks = 0;
    let mut rebuilds = 0;
    let mut large_allocs = 0u64;
    let mut large_frees = 0u64;
    let mut boots_since_start = 0;

    for op in input.ops.into_iter().take(400) {
        match op {
            Op::Alloc {
                size,
                zero,
                nosleep,
                intr,
            } => {
                let size = size_of(size, &classes, ps);
                let (reserved, align, large) = model_route(&classes, ps, size);
                assert_eq!(
                    k.allocated_size(size),
                    Some(reserved),
                    "allocated_size({size})"
                );
                assert_eq!(k.alignment_of(size), Some(align), "alignment_of({size})");
                let flags = if nosleep { KM_NOSLEEP } else { KM_SLEEP };
                let p = match (zero, intr) {
                    (false, false) => k.alloc(size, flags),
                    (true, false) => k.zalloc(size, flags),
                    (false, true) => k.intr_alloc(size, flags),
                    (true, true) => k.intr_zalloc(size, flags),
                };
                // No budget on these maps: KM_NOSLEEP has no reason to fail.
                let p = p.unwrap_or_else(|| panic!("{flags:?} allocation of {size} bytes failed"));
                assert_eq!(
                    p.as_ptr() as usize % align,
                    0,
                    "{size} bytes at {p:p}: not {align}-aligned"
                );
                take(
                    p,
                    size,
                    reserved,
                    large,
                    zero,
                    &mut serial,
                    &mut by_addr,
                    &mut live,
                );
                if large {
                    large_allocs += 1;
                }
            }
            Op::AllocAligned {
                size,
                align_log,
                zero,
                nosleep,
            } => {
                let size = size_of(size, &classes, ps);
                let align = match align_log % 20 {
                    l @ 0..16 => 1usize << l,
                    // Not powers of two.
                    l => [3, 24, 96, 6144][l as usize - 16],
                };
                let want = if !align.is_power_of_two() || align > ps {
                    None
                } else {
                    [size, size.max(m.coherency_unit), size.max(ps)]
                        .into_iter()
                        .find(|&s| model_route(&classes, ps, s).1 >= align)
                };
                let got = k.layout_size(size, align);
                assert_eq!(got, want, "layout_size({size}, {align})");
                let Some(req) = got else { continue };
                let (reserved, _, large) = model_route(&classes, ps, req);
                let flags = if nosleep { KM_NOSLEEP } else { KM_SLEEP };
                let p = if zero {
                    k.zalloc(req, flags)
                } else {
                    k.alloc(req, flags)
                };
                let p = p.unwrap_or_else(|| panic!("{flags:?} allocation of {req} bytes failed"));
                assert_eq!(
                    p.as_ptr() as usize % align,
                    0,
                    "layout ({size}, {align}): {req} bytes at {p:p}"
                );
                take(
                    p,
                    req,
                    reserved,
                    large,
                    zero,
                    &mut serial,
                    &mut by_addr,
                    &mut live,
                );
                if large {
                    large_allocs += 1;
                }
            }
            Op::Free { pick, intr } => {
                if live.is_empty() {
                    continue;
                }
                let b = live.swap_remove(pick as usize % live.len());
                if b.large {
                    large_frees += 1;
                }
                free_block(k, b, &mut by_addr, intr);
            }
            Op::CheckAll => {
                // Bounded: a check of every live block is the slow step.
                if checks < 4 {
                    checks += 1;
                    live.iter().for_each(check_fill);
                }
            }
            Op::Census => {
                assert_eq!(k.census(), census_of(&live), "census against the model");
            }
            Op::Reclaim => k.reclaim(),
            Op::Rebuild => {
                if rebuilds >= 2 {
                    continue;
                }
                rebuilds += 1;
                // destroy resets the large path's counters: the model's
                // start over with the new instance.
                for b in live.drain(..) {
                    free_block(k, b, &mut by_addr, false);
                }
                assert_eq!(k.census(), KmemCensus::default(), "census before destroy");
                // SAFETY: nothing of the instance is live or used.
                unsafe { k.destroy() };
                assert_eq!(
                    m.pages.committed_bytes(),
                    0,
                    "pages committed after destroy"
                );
                assert_eq!(
                    m.pages.reserved_bytes(),
                    0,
                    "address space reserved after destroy"
                );
                m.boot();
                boots_since_start += 1;
                large_allocs = 0;
                large_frees = 0;
            }
        }
    }
    for b in live.drain(..) {
        if b.large {
            large_frees += 1;
        }
        free_block(k, b, &mut by_addr, false);
    }
    assert!(by_addr.is_empty());
    // The census: everything back, live counters where they started.
    assert_eq!(k.census(), KmemCensus::default(), "census at the end");
    let end = k.stats().large;
    assert_eq!(
        (end.live, end.live_bytes),
        (0, 0),
        "large path live counters"
    );
    // destroy resets the counters; otherwise they moved by the model's.
    let (a0, f0) = if boots_since_start > 0 {
        (0, 0)
    } else {
        (start.allocs, start.frees)
    };
    assert_eq!(end.allocs - a0, large_allocs, "large allocations");
    assert_eq!(end.frees - f0, large_frees, "large frees");
    assert_eq!(
        end.fails,
        if boots_since_start > 0 {
            0
        } else {
            start.fails
        },
        "large failures"
    );
});
