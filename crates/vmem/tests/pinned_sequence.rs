//! The address sequence of long seeded runs, pinned.
//!
//! Instant fit, best fit, next fit, `xalloc` with every constraint,
//! `xalloc_addr`, frees, and import/release through a child arena, on a
//! few arenas, each driven by a fixed-seed generator. Every returned
//! address, every failure and a few structural counts at checkpoints are
//! folded into a 64-bit FNV-1a digest, compared with a constant recorded
//! from the implementation before the scaling work (issue 14).
//!
//! The point: speed-ups of the free lists, the busy hash or the tag layout
//! must not change which segment NetBSD's algorithm picks. If one of these
//! digests changes, the allocator now returns different addresses (or
//! fails differently) than subr_vmem.c would; that is a behaviour change,
//! not a test to re-record.

use bsdalloc_vmem::{
    Arena, ArenaConfig, VMEM_ADDR_MAX, VmFlags, VmemError, XallocConstraints, vmem_create,
    vmem_destroy,
};

const NS: VmFlags = VmFlags::NOSLEEP;

/// splitmix64: small, fixed, and the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// FNV-1a over 64-bit words.
struct Digest {
    h: u64,
    /// Operations folded (so a shorter run cannot match by accident).
    n: u64,
}

impl Digest {
    fn new() -> Self {
        Digest {
            h: 0xcbf2_9ce4_8422_2325,
            n: 0,
        }
    }

    fn word(&mut self, w: u64) {
        for b in w.to_le_bytes() {
            self.h ^= u64::from(b);
            self.h = self.h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.n += 1;
    }

    fn result(&mut self, tag: u64, r: Result<usize, VmemError>) -> Option<usize> {
        self.word(tag);
        match r {
            Ok(a) => {
                self.word(a as u64);
                Some(a)
            }
            Err(VmemError::NoMemory) => {
                self.word(u64::MAX);
                None
            }
        }
    }

    /// Structure that the algorithm determines: free-segment count, busy
    /// count, bytes in use, spans.
    fn checkpoint(&mut self, a: &Arena) {
        let s = a.stats();
        for w in [s.nfree, s.nbusy, s.inuse, s.size, s.nspans] {
            self.word(w as u64);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Alloc,
    Xalloc,
}

struct Live {
    v: Vec<(usize, usize, Kind)>,
}

impl Live {
    fn free_random(&mut self, a: &Arena, rng: &mut Rng) {
        if self.v.is_empty() {
            return;
        }
        let i = rng.below(self.v.len() as u64) as usize;
        let (addr, size, kind) = self.v.swap_remove(i);
        match kind {
            Kind::Alloc => a.free(addr, size),
            Kind::Xalloc => a.xfree(addr, size),
        }
    }
}

fn fit(rng: &mut Rng, nextfit: bool) -> VmFlags {
    match rng.below(if nextfit { 3 } else { 2 }) {
        0 => VmFlags::INSTANTFIT,
        1 => VmFlags::BESTFIT,
        _ => VmFlags::NEXTFIT,
    }
}

/// A size in quanta, skewed small with a long tail (a few ask for more
/// than the arena has, to pin failures too).
fn quanta(rng: &mut Rng, big: u64) -> usize {
    match rng.below(16) {
        0..=9 => rng.below(8) as usize + 1,
        10..=13 => rng.below(256) as usize + 1,
        14 => rng.below(4096) as usize + 1,
        _ => rng.below(big) as usize + 1,
    }
}

/// Valid constraints (NetBSD's rules) for `size` in an arena with quantum
/// `q` whose spans lie in `[lo, hi)`.
fn constraints(rng: &mut Rng, size: usize, q: usize, lo: usize, hi: usize) -> XallocConstraints {
    let mut c = XallocConstraints::new(size);
    if rng.below(2) == 0 {
        let align = q << rng.below(10);
        c = c.align(align);
        if rng.below(2) == 0 {
            c = c.phase((rng.below((align / q) as u64) as usize) * q);
        }
    }
    if rng.below(3) == 0 {
        let phase = c.phase;
        // A power of two holding [phase, phase + size): never crossed by
        // the request itself.
        let nc = (phase + size).next_power_of_two().max(q) << rng.below(3);
        c = c.nocross(nc);
    }
    if rng.below(3) == 0 {
        let span = (hi - lo) / q;
        let a = lo + (rng.below(span as u64) as usize) * q;
        let b = lo + (rng.below(span as u64) as usize) * q;
        let (mi, ma) = if a <= b { (a, b) } else { (b, a) };
        c = c.min(mi);
        // Inclusive max; sometimes the top of the address type.
        c = c.max(if rng.below(8) == 0 {
            VMEM_ADDR_MAX
        } else {
            ma + q - 1
        });
    }
    c
}

/// One arena, static spans, every kind of request.
fn run_static(seed: u64, q: usize, ops: usize, target_live: usize) -> (u64, u64) {
    let mut rng = Rng(seed);
    let mut d = Digest::new();
    let base = 0x4000_0000usize;
    // Three spans, the middle one not adjacent, added out of address order.
    let spans = [
        (base + 0x100_0000 * q, 0x4_0000 * q),
        (base, 0x8_0000 * q),
        (base + 0x200_0000 * q, 0x1_0000 * q),
    ];
    let a = Arena::create("pin-static", 0, 0, q).unwrap();
    for &(s, z) in &spans {
        a.add(s, z, NS).unwrap();
    }
    let (lo, hi) = (base, base + 0x200_0000 * q + 0x1_0000 * q);
    let mut live = Live { v: vec![] };
    for i in 0..ops {
        let grow = live.v.len() < target_live;
        let r = rng.below(100);
        if !grow && r < 45 || r < 20 {
            live.free_random(&a, &mut rng);
            continue;
        }
        let size = quanta(&mut rng, 0x10_0000) * q;
        match rng.below(10) {
            0..=5 => {
                let f = fit(&mut rng, true);
                if let Some(x) = d.result(1, a.alloc(size, NS | f)) {
                    live.v.push((x, size, Kind::Alloc));
                }
            }
            6..=8 => {
                let c = constraints(&mut rng, size, q, lo, hi);
                let f = fit(&mut rng, true);
                if let Some(x) = d.result(2, a.xalloc(c, NS | f)) {
                    live.v.push((x, size, Kind::Xalloc));
                }
            }
            _ => {
                let at = lo + (rng.below(((hi - lo) / q) as u64) as usize) * q;
                let r = a.xalloc_addr(at, size, NS).map(|()| at);
                if let Some(x) = d.result(3, r) {
                    live.v.push((x, size, Kind::Xalloc));
                }
            }
        }
        if i % 4096 == 0 {
            d.checkpoint(&a);
        }
    }
    d.checkpoint(&a);
    a.assert_sane();
    a.xfreeall();
    d.checkpoint(&a);
    (d.h, d.n)
}

/// A child arena importing from a parent: imports on shortage, releases of
/// whole spans on free, and the parent's own choices.
fn run_import(seed: u64, ops: usize) -> (u64, u64) {
    let mut rng = Rng(seed);
    let mut d = Digest::new();
    let parent = vmem_create(ArenaConfig::new("pin-parent", 4096), 0x10_0000, 64 << 20).unwrap();
    let child = vmem_create(ArenaConfig::new("pin-child", 64).source(parent), 0, 0).unwrap();
    let mut live = Live { v: vec![] };
    for i in 0..ops {
        if rng.below(100) < 48 {
            live.free_random(child, &mut rng);
            continue;
        }
        // Child sizes are multiples of the parent's quantum or not: the
        // import rounds them up in the parent.
        let size = quanta(&mut rng, 1 << 20) * 64;
        let f = fit(&mut rng, false);
        if let Some(x) = d.result(4, child.alloc(size, NS | f)) {
            live.v.push((x, size, Kind::Alloc));
        }
        if i % 1024 == 0 {
            d.checkpoint(child);
            d.checkpoint(parent);
        }
    }
    let s = child.stats().counters;
    d.word(s.imports);
    d.word(s.releases);
    d.word(s.import_failures);
    child.assert_sane();
    parent.assert_sane();
    while !live.v.is_empty() {
        live.free_random(child, &mut rng);
    }
    d.checkpoint(child);
    d.checkpoint(parent);
    // SAFETY: neither arena is used afterwards.
    unsafe {
        vmem_destroy(child);
        vmem_destroy(parent);
    }
    (d.h, d.n)
}

/// Many live segments and only instant fit and plain frees: the shape of
/// the V1 benchmark, where the busy hash grows and the free lists are long.
fn run_churn(seed: u64, live_n: usize, ops: usize) -> (u64, u64) {
    let mut rng = Rng(seed);
    let mut d = Digest::new();
    let q = 16;
    let a = Arena::create("pin-churn", 1 << 40, 64 << 30, q).unwrap();
    let mut live: Vec<(usize, usize)> = (0..live_n)
        .map(|_| {
            let s = (rng.below(256) as usize + 1) * q;
            (
                d.result(5, a.alloc(s, NS | VmFlags::INSTANTFIT)).unwrap(),
                s,
            )
        })
        .collect();
    for i in 0..ops {
        let j = rng.below(live.len() as u64) as usize;
        let (x, s) = live[j];
        a.free(x, s);
        let s = (rng.below(256) as usize + 1) * q;
        let f = if i % 8 == 0 {
            VmFlags::BESTFIT
        } else {
            VmFlags::INSTANTFIT
        };
        live[j] = (d.result(6, a.alloc(s, NS | f)).unwrap(), s);
    }
    d.checkpoint(&a);
    a.assert_sane();
    a.xfreeall();
    (d.h, d.n)
}

#[test]
fn static_spans_quantum_16() {
    assert_eq!(
        run_static(0x5eed_0001, 16, 200_000, 3000),
        (17769564132078510832, 225450),
        "instant/best/next fit, xalloc and xalloc_addr no longer return NetBSD's addresses"
    );
}

#[test]
fn static_spans_quantum_1_ids() {
    assert_eq!(
        run_static(0x5eed_0002, 1, 150_000, 500),
        (6609424455818503046, 166302),
        "an ID arena (quantum 1) no longer returns NetBSD's IDs"
    );
}

#[test]
fn import_and_release_through_a_child() {
    assert_eq!(
        run_import(0x5eed_0003, 100_000),
        (14731225671260340615, 104953),
        "import/release no longer follows NetBSD's sequence"
    );
}

#[test]
fn churn_with_a_large_live_set() {
    assert_eq!(
        run_churn(0x5eed_0004, 50_000, 200_000),
        (6399951882832353159, 500005),
        "instant fit at a large live set no longer returns NetBSD's addresses"
    );
}
