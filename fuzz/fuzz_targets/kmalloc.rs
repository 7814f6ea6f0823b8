//! malloc(9) against its contract (TESTING.md #7) and an exact model of
//! its per-type statistics, over a kmem instance of its own
//! (`malloc_init`). Two types of the target's: `fz` (MALLOC_DEFINE, the
//! default limit, 60 % of the kmem arena) and `fz-limit`
//! (MALLOC_DEFINE_LIMIT, its limit set per input and by the walk).
//!
//! - malloc of 0 bytes to a few pages, biased toward kmem's class
//!   boundaries (less the header) and page multiples: at least
//!   MALLOC_ALIGN aligned, page aligned from a page up; `M_ZERO` zeroed;
//!   usable size the requested size; no two live blocks' kmem blocks
//!   overlap. Every block is filled with a byte of its own and checked at
//!   free, at realloc and by check-all.
//! - Sizes that can never be allocated (the layout overflows, or no arena
//!   holds them) fail with `M_NOWAIT` and with `M_WAITOK | M_CANFAIL`
//!   instead of returning a small block, and change no statistic.
//! - realloc: of NULL is malloc; to 0 frees and returns NULL; within the
//!   usable size returns the block itself (never shrinks); larger copies
//!   the old bytes (the rest zero with `M_ZERO`) and frees the old block;
//!   a failure (at the limit, or a size that can never be allocated)
//!   returns NULL and leaves the old block as it was.
//! - The limit: a type refuses `M_NOWAIT` exactly when its MemUse is at or
//!   above its limit before the call; below, the call succeeds and may
//!   take the type past the limit by that one block (the one-block
//!   overshoot of NetBSD's malloc). `M_WAITOK` at the limit would sleep
//!   forever in one thread, so the walk sends `M_NOWAIT` there.
//! - After every operation each type's InUse, Requests, MemUse (each
//!   block at the size kmem reserves: its class, or its whole pages),
//!   HighUse, the Size(s) bits, and the Type Limit and Kern Limit block
//!   counts (no sleeps here: both stay) equal the model's, and MemUse is
//!   at least the requested bytes plus headers.
//! - At the end everything is freed: both types at zero, and the kmem
//!   instance's census is empty.
#![no_main]

use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::Once;

use arbitrary::Arbitrary;
use bsdalloc_kmalloc::{
    M_CANFAIL, M_NOWAIT, M_WAITOK, M_ZERO, MALLOC_ALIGN, MALLOC_DEFINE, MALLOC_DEFINE_LIMIT,
    MALLOC_HEADER_SIZE, MFlags, MallocType, free, malloc, malloc_init, malloc_type_attach,
    malloc_type_setlimit, malloc_types, malloc_usable_size, realloc,
};
use bsdalloc_kmem::{Kmem, KmemCensus, KmemConfig};
use libfuzzer_sys::fuzz_target;

MALLOC_DEFINE!(M_FZ, "fz", "fuzz: default limit");
MALLOC_DEFINE_LIMIT!(M_FZLIM, "fz-limit", "fuzz: a small limit", 16384);

static K: Kmem = Kmem::new();
static INIT: Once = Once::new();
static TYPES: [&MallocType; 2] = [&M_FZ, &M_FZLIM];

const H: usize = MALLOC_HEADER_SIZE;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Size {
    /// 0 to 64 bytes.
    Tiny(u8),
    /// A kmem class less the header, give or take 2 bytes.
    Edge { class: u8, delta: i8 },
    /// 1 to 4 pages, give or take 2 bytes (a page less one is the last
    /// small layout).
    Pages { n: u8, delta: i8 },
    /// 0 to 4.5 pages.
    Any(u32),
    /// A size that can never be allocated.
    Huge(u8),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Malloc {
        limited: bool,
        size: Size,
        zero: bool,
        nowait: bool,
        canfail: bool,
    },
    Free {
        pick: u16,
    },
    Realloc {
        /// `None`: realloc(NULL, …).
        pick: Option<u16>,
        limited: bool,
        size: Size,
        zero: bool,
        nowait: bool,
        canfail: bool,
    },
    /// realloc to 0: a free.
    ReallocZero {
        pick: u16,
    },
    SetLimit(u16),
    CheckAll,
}

#[derive(Arbitrary, Debug)]
struct Input {
    limit: u16,
    ops: Vec<Op>,
}

/// kmem_cache_sizes[] then kmem_cache_big_sizes[].
const CANDIDATES: [usize; 26] = [
    8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 768,
    1024, 2048, 4096, 8192, 16384,
];

/// kmem's kept class sizes (subr_kmem.c's rules).
fn model_classes(ps: usize, cu: usize) -> Vec<usize> {
    CANDIDATES
        .iter()
        .copied()
        .filter(|&s| s <= ps)
        .filter(|&s| {
            if s < cu {
                cu % s == 0
            } else {
                s % ps == 0 || s % cu == 0
            }
        })
        .collect()
}

/// The model's counters of a type.
#[derive(Clone, Copy, Debug, Default)]
struct TypeModel {
    inuse: usize,
    calls: u64,
    memuse: usize,
    maxused: usize,
    size: u64,
    limblocks: u64,
    mapblocks: u64,
    limit: usize,
    /// Requested bytes plus headers of the live blocks.
    requested: usize,
}

impl TypeModel {
    fn of(ty: &MallocType) -> TypeModel {
        let s = ty.stats();
        TypeModel {
            inuse: s.inuse,
            calls: s.calls,
            memuse: s.memuse,
            maxused: s.maxused,
            size: s.size,
            limblocks: s.limblocks,
            mapblocks: s.mapblocks,
            limit: s.limit,
            requested: 0,
        }
    }

    fn check(&self, ty: &MallocType) {
        let s = ty.stats();
        let got = (
            s.inuse,
            s.calls,
            s.memuse,
            s.maxused,
            s.size,
            s.limblocks,
            s.mapblocks,
            s.limit,
        );
        let want = (
            self.inuse,
            self.calls,
            self.memuse,
            self.maxused,
            self.size,
            self.limblocks,
            self.mapblocks,
            self.limit,
        );
        assert_eq!(
            got, want,
            "type `{ty}': (inuse, calls, memuse, maxused, size, limblocks, mapblocks, limit)"
        );
        assert!(
            s.memuse >= self.requested,
            "type `{ty}': MemUse below the requested bytes"
        );
    }

    fn alloc(&mut self, reserved: usize, requested: usize) {
        self.inuse += 1;
        self.calls += 1;
        self.memuse += reserved;
        self.maxused = self.maxused.max(self.memuse);
        self.size |= 1 << reserved.next_power_of_two().trailing_zeros();
        self.requested += requested;
    }

    fn free(&mut self, reserved: usize, requested: usize) {
        self.inuse -= 1;
        self.memuse -= reserved;
        self.requested -= requested;
    }
}

struct Ctx {
    ps: usize,
    classes: Vec<usize>,
    arena: usize,
    models: [TypeModel; 2],
    live: Vec<Live>,
    /// kmem block start → end of its reserved bytes, of every live block.
    blocks: BTreeMap<usize, usize>,
    serial: u8,
}

#[derive(Clone, Copy, Debug)]
struct Live {
    addr: usize,
    size: usize,
    t: usize,
    fill: u8,
}

impl Ctx {
    /// (offset of the caller's bytes in the kmem block, kmem request,
    /// reserved bytes); `None` for a size that can never be allocated.
    fn layout(&self, size: usize) -> Option<(usize, usize, usize)> {
        let (offset, allocsize) = if size < self.ps {
            (H, H + size)
        } else {
            (self.ps, self.ps.checked_add(size)?)
        };
        let a8 = allocsize.checked_next_multiple_of(8)?;
        let reserved = match self.classes.iter().find(|&&c| c >= a8) {
            Some(&c) => c,
            None => {
                let b = allocsize.checked_next_multiple_of(self.ps)?;
                if b > self.arena {
                    return None;
                }
                b
            }
        };
        Some((offset, allocsize, reserved))
    }

    fn size(&self, s: Size) -> usize {
        let ps = self.ps;
        match s {
            Size::Tiny(v) => v as usize % 65,
            Size::Edge { class, delta } => {
                let c = self.classes[class as usize % self.classes.len()];
                (c as isize - H as isize + (delta % 3) as isize).max(0) as usize
            }
            Size::Pages { n, delta } => {
                ((1 + n as usize % 4) * ps).wrapping_add_signed((delta % 3) as isize)
            }
            Size::Any(v) => v as usize % (4 * ps + ps / 2 + 1),
            Size::Huge(v) => match v % 6 {
                0 => usize::MAX,
                1 => usize::MAX - ps + 1,
                2 => usize::MAX - H,
                3 => isize::MAX as usize,
                // Just past what the kmem arena can hold, with the page
                // before the caller's bytes.
                4 => self.arena - ps + 1,
                _ => self.arena,
            },
        }
    }

    fn fill(&mut self) -> u8 {
        self.serial = self.serial.wrapping_add(1);
        if self.serial == 0 { 0x5a } else { self.serial }
    }

    fn check_fill(&self, b: &Live) {
        // SAFETY: the block's usable bytes, ours.
        let s = unsafe { std::slice::from_raw_parts(b.addr as *const u8, b.size) };
        if let Some(i) = s.iter().position(|&x| x != b.fill) {
            panic!(
                "block {:#x} ({} bytes): byte {i} is {:#04x}, not its fill {:#04x}",
                b.addr, b.size, s[i], b.fill
            );
        }
        // SAFETY: a live block of this type.
        let u = unsafe { malloc_usable_size(NonNull::new(b.addr as *mut u8).unwrap(), TYPES[b.t]) };
        assert_eq!(u, b.size, "usable size of {:#x}", b.addr);
    }

    /// Flags for a call on type `t`: `M_WAITOK` at the limit would sleep
    /// for ever in one thread, so it becomes `M_NOWAIT` there; a size that
    /// can never be allocated needs `M_NOWAIT` or `M_CANFAIL` (plain
    /// `M_WAITOK` panics, by contract).
    fn flags(&self, t: usize, zero: bool, nowait: bool, canfail: bool, fits: bool) -> MFlags {
        let m = &self.models[t];
        let mut nowait = nowait || m.memuse >= m.limit;
        let mut f = MFlags::empty();
        if !fits && !canfail {
            nowait = true;
        }
        if nowait {
            f |= M_NOWAIT;
        } else {
            f |= M_WAITOK;
        }
        if zero {
            f |= M_ZERO;
        }
        if canfail || !fits {
            f |= M_CANFAIL;
        }
        f
    }

    /// Whether the model says a malloc of `size` on type `t` fails.
    fn fails(&self, t: usize, fits: bool) -> bool {
        let m = &self.models[t];
        !fits || m.memuse >= m.limit
    }

    /// Account and check a fresh block; its first `keep` bytes hold
    /// `old_fill` (a realloc's copy), the rest is zero under `M_ZERO`.
    fn take(
        &mut self,
        p: NonNull<u8>,
        size: usize,
        t: usize,
        flags: MFlags,
        keep: usize,
        old_fill: u8,
    ) {
        let (offset, _, reserved) = self.layout(size).unwrap();
        let addr = p.as_ptr() as usize;
        assert_eq!(
            addr % MALLOC_ALIGN,
            0,
            "{size} bytes at {addr:#x}: not {MALLOC_ALIGN}-aligned"
        );
        if size >= self.ps {
            assert_eq!(
                addr % self.ps,
                0,
                "{size} bytes at {addr:#x}: not page aligned"
            );
        }
        let block = addr - offset;
        if let Some((&a, &e)) = self.blocks.range(..block + reserved).next_back() {
            assert!(
                e <= block,
                "block {block:#x}..{:#x} ({size} bytes) overlaps a live one at {a:#x}..{e:#x}",
                block + reserved
            );
        }
        self.blocks.insert(block, block + reserved);
        // SAFETY: `size` bytes, ours now.
        let s = unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), size) };
        if let Some(i) = s[..keep].iter().position(|&x| x != old_fill) {
            panic!(
                "realloc to {size} at {addr:#x}: copied byte {i} is {:#04x}, not {old_fill:#04x}",
                s[i]
            );
        }
        if flags.contains(M_ZERO) {
            if let Some(i) = s[keep..].iter().position(|&x| x != 0) {
                panic!(
                    "M_ZERO block of {size} at {addr:#x}: byte {} is {:#04x}",
                    keep + i,
                    s[keep + i]
                );
            }
        }
        let fill = self.fill();
        s.fill(fill);
        self.models[t].alloc(reserved, H + size);
        self.live.push(Live {
            addr,
            size,
            t,
            fill,
        });
        // SAFETY: a live block of this type.
        assert_eq!(unsafe { malloc_usable_size(p, TYPES[t]) }, size);
    }

    /// Free a live block (already out of `live`) the way `how` says.
    fn release(&mut self, b: Live, realloc_zero: bool) {
        self.check_fill(&b);
        let (offset, _, reserved) = self.layout(b.size).unwrap();
        self.blocks
            .remove(&(b.addr - offset))
            .expect("live block not in the block map");
        if realloc_zero {
            // SAFETY: a live block of this type, not used again.
            let r = unsafe { realloc(b.addr as *mut u8, 0, TYPES[b.t], M_WAITOK) };
            assert!(r.is_none(), "realloc(p, 0) returned a block");
        } else {
            // SAFETY: as above.
            unsafe { free(b.addr as *mut u8, TYPES[b.t]) };
        }
        self.models[b.t].free(reserved, H + b.size);
    }

    fn check_models(&self) {
        for (m, ty) in self.models.iter().zip(TYPES) {
            m.check(ty);
        }
    }
}

fn limit_of(v: u16) -> usize {
    // 1 byte to 64 KiB: a few blocks of any size reach it.
    1 + v as usize
}

fuzz_target!(|input: Input| {
    INIT.call_once(|| {
        K.bootstrap(KmemConfig::new().va_size(256 << 20))
            .expect("kmem bootstrap");
        malloc_init(&K).expect("malloc_init");
        for ty in TYPES {
            malloc_type_attach(ty);
        }
        // The limits attach sets: the defined one, and NetBSD's default of
        // 60 % of the kmem arena.
        let arena = K.map().kmem_arena().size(bsdalloc_vmem::SizeType::ALL);
        assert_eq!(M_FZLIM.limit(), 16384);
        assert_eq!(M_FZ.limit(), arena / 10 * 6);
    });
    for ty in TYPES {
        assert_eq!(
            malloc_types().filter(|t| std::ptr::eq(*t, ty)).count(),
            1,
            "`{ty}' listed once"
        );
    }
    malloc_type_setlimit(&M_FZLIM, limit_of(input.limit));
    let ps = K.page_size();
    let mut cx = Ctx {
        ps,
        classes: model_classes(ps, K.size_classes().coherency_unit()),
        arena: K.map().kmem_arena().size(bsdalloc_vmem::SizeType::ALL),
        models: [TypeModel::of(&M_FZ), TypeModel::of(&M_FZLIM)],
        live: Vec::new(),
        blocks: BTreeMap::new(),
        serial: 0,
    };
    for m in &cx.models {
        assert_eq!((m.inuse, m.memuse), (0, 0), "a type starts an input empty");
    }
    let mut checks = 0;
    for op in input.ops.into_iter().take(300) {
        match op {
            Op::Malloc {
                limited,
                size,
                zero,
                nowait,
                canfail,
            } => {
                let t = limited as usize;
                let size = cx.size(size);
                let l = cx.layout(size);
                if let Some((_, allocsize, reserved)) = l {
                    assert_eq!(
                        K.allocated_size(allocsize),
                        Some(reserved),
                        "kmem's reservation for {allocsize}"
                    );
                }
                let flags = cx.flags(t, zero, nowait, canfail, l.is_some());
                let fails = cx.fails(t, l.is_some());
                match malloc(size, TYPES[t], flags) {
                    Some(p) => {
                        assert!(
                            !fails,
                            "malloc({size}, `{}', {flags:?}) succeeded; the model says it fails",
                            TYPES[t]
                        );
                        cx.take(p, size, t, flags, 0, 0);
                    }
                    None => assert!(
                        fails,
                        "malloc({size}, `{}', {flags:?}) failed; the model says it succeeds",
                        TYPES[t]
                    ),
                }
            }
            Op::Free { pick } => {
                if cx.live.is_empty() {
                    continue;
                }
                let b = cx.live.swap_remove(pick as usize % cx.live.len());
                cx.release(b, false);
            }
            Op::ReallocZero { pick } => {
                if cx.live.is_empty() {
                    continue;
                }
                let b = cx.live.swap_remove(pick as usize % cx.live.len());
                cx.release(b, true);
            }
            Op::Realloc {
                pick,
                limited,
                size,
                zero,
                nowait,
                canfail,
            } => {
                let size = cx.size(size);
                let old = match pick {
                    Some(i) if !cx.live.is_empty() && size != 0 => {
                        Some(cx.live.swap_remove(i as usize % cx.live.len()))
                    }
                    _ => None,
                };
                let t = old.map_or(limited as usize, |b| b.t);
                let l = cx.layout(size);
                let flags = cx.flags(t, zero, nowait, canfail, l.is_some());
                let Some(b) = old else {
                    // realloc(NULL, …) is malloc.
                    let fails = cx.fails(t, l.is_some());
                    // SAFETY: NULL.
                    match unsafe { realloc(std::ptr::null_mut(), size, TYPES[t], flags) } {
                        Some(p) => {
                            assert!(
                                !fails,
                                "realloc(NULL, {size}, {flags:?}) succeeded; the model says it fails"
                            );
                            cx.take(p, size, t, flags, 0, 0);
                        }
                        None => assert!(
                            fails,
                            "realloc(NULL, {size}, {flags:?}) failed; the model says it succeeds"
                        ),
                    }
                    cx.check_models();
                    continue;
                };
                cx.check_fill(&b);
                // SAFETY: a live block of type `t`; not used again when the
                // result is another block.
                let r = unsafe { realloc(b.addr as *mut u8, size, TYPES[t], flags) };
                if size <= b.size {
                    // Never shrinks: the block itself, nothing accounted.
                    assert_eq!(
                        r.map(|p| p.as_ptr() as usize),
                        Some(b.addr),
                        "realloc to a smaller size moved"
                    );
                    cx.live.push(b);
                } else if cx.fails(t, l.is_some()) {
                    assert!(
                        r.is_none(),
                        "realloc({size}, {flags:?}) succeeded; the model says it fails"
                    );
                    // The old block is untouched and still ours.
                    cx.check_fill(&b);
                    cx.live.push(b);
                } else {
                    let p = r.unwrap_or_else(|| {
                        panic!("realloc({size}, {flags:?}) failed; the model says it succeeds")
                    });
                    assert_ne!(p.as_ptr() as usize, b.addr, "realloc grew in place");
                    // The new block was allocated before the old one was
                    // freed: account in that order (HighUse sees both).
                    let (offset, _, reserved) = cx.layout(b.size).unwrap();
                    cx.take(p, size, t, flags, b.size, b.fill);
                    cx.blocks
                        .remove(&(b.addr - offset))
                        .expect("old block not in the block map");
                    cx.models[t].free(reserved, H + b.size);
                }
            }
            Op::SetLimit(v) => {
                let l = limit_of(v);
                malloc_type_setlimit(&M_FZLIM, l);
                cx.models[1].limit = l;
            }
            Op::CheckAll => {
                if checks < 4 {
                    checks += 1;
                    for b in &cx.live {
                        cx.check_fill(b);
                    }
                }
            }
        }
        cx.check_models();
    }
    while let Some(b) = cx.live.pop() {
        cx.release(b, false);
    }
    cx.check_models();
    assert!(cx.blocks.is_empty());
    for ty in TYPES {
        let s = ty.stats();
        assert_eq!(
            (s.inuse, s.memuse),
            (0, 0),
            "type `{ty}' not empty at the end"
        );
    }
    assert_eq!(K.census(), KmemCensus::default(), "kmem census at the end");
});
