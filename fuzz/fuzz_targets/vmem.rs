//! vmem against an interval-set model: spans, alloc, xalloc (every
//! constraint, every fit), xalloc_addr, free, xfree, and import/release
//! through a child arena. After each operation: results obey their
//! constraints, never overlap and lie in spans; a failure means the model
//! has no place either (instant fit falls back to best fit, so "no space"
//! is exact); totals agree; the sanity walker passes. At the end everything
//! is freed and every span is one free segment again.
#![no_main]

use arbitrary::Arbitrary;
use bsdalloc_vmem::{Arena, ArenaConfig, SizeType, VMEM_ADDR_MAX, VmFlags, XallocConstraints};
use libfuzzer_sys::fuzz_target;

const Q: usize = 16;
const NS: VmFlags = VmFlags::NOSLEEP;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Fit {
    Instant,
    Best,
    Next,
}

impl Fit {
    fn flag(self) -> VmFlags {
        match self {
            Fit::Instant => VmFlags::INSTANTFIT,
            Fit::Best => VmFlags::BESTFIT,
            Fit::Next => VmFlags::NEXTFIT,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    AddSpan {
        base: u16,
        quanta: u16,
    },
    /// A span that ends at the very top of the address type.
    AddTopSpan {
        quanta: u16,
    },
    Alloc {
        quanta: u8,
        fit: Fit,
    },
    XAlloc {
        quanta: u8,
        align_log: u8,
        phase: u16,
        nocross_log: u8,
        min: u16,
        span: u16,
        fit: Fit,
    },
    XAllocAddr {
        at: u16,
        quanta: u8,
    },
    Free {
        pick: u16,
    },
    ChildAlloc {
        quanta: u8,
    },
    ChildFree {
        pick: u16,
    },
    Rehash,
}

static PARENT: Arena = Arena::new(ArenaConfig::new("parent", Q));

#[derive(Clone, Copy)]
struct Live {
    addr: usize,
    size: usize,
    x: bool,
}

struct Model {
    spans: Vec<(usize, usize)>,
    live: Vec<Live>,
}

impl Model {
    /// Maximal free gaps: spans minus live allocations.
    fn gaps(&self) -> Vec<(usize, usize)> {
        let mut out = vec![];
        for &(s, z) in &self.spans {
            let end = s as u128 + z as u128;
            let mut inside: Vec<(usize, usize)> = self
                .live
                .iter()
                .filter(|l| l.addr >= s && (l.addr as u128) < end)
                .map(|l| (l.addr, l.size))
                .collect();
            inside.sort_unstable();
            let mut at = s as u128;
            for (a, sz) in inside {
                if a as u128 > at {
                    out.push((at as usize, (a as u128 - at) as usize));
                }
                at = a as u128 + sz as u128;
            }
            if at < end {
                out.push((at as usize, (end - at) as usize));
            }
        }
        out
    }

    /// Is there any start satisfying the constraints inside a gap?
    /// (A brute-force walk over candidates, independent of vmem's fit test.)
    fn can_fit(
        &self,
        size: usize,
        align: usize,
        phase: usize,
        nocross: usize,
        min: usize,
        max: usize,
    ) -> bool {
        // In u128, so that nothing wraps at the top of the address type.
        let (size, align, phase, nocross) =
            (size as u128, align as u128, phase as u128, nocross as u128);
        for (s, z) in self.gaps() {
            let lo = (s as u128).max(min as u128);
            let hi = (s as u128 + z as u128 - 1).min(max as u128);
            if lo > hi || hi - lo + 1 < size {
                continue;
            }
            let mut a = lo - lo % align + phase;
            if a < lo {
                a += align;
            }
            while a + size - 1 <= hi {
                if nocross == 0 || a / nocross == (a + size - 1) / nocross {
                    return true;
                }
                a += align;
            }
        }
        false
    }

    fn check(&self, arena: &Arena) {
        arena.assert_sane();
        let total: usize = self.live.iter().map(|l| l.size).sum();
        assert_eq!(arena.size(SizeType::ALLOC), total);
        assert_eq!(
            arena.size(SizeType::ALL),
            self.spans.iter().map(|s| s.1).sum::<usize>()
        );
    }

    fn record(&mut self, addr: usize, size: usize, x: bool) {
        let (a, e) = (addr as u128, addr as u128 + size as u128);
        assert!(
            self.spans
                .iter()
                .any(|&(s, z)| a >= s as u128 && e <= s as u128 + z as u128),
            "outside every span"
        );
        for l in &self.live {
            assert!(
                e <= l.addr as u128 || l.addr as u128 + l.size as u128 <= a,
                "overlap"
            );
        }
        self.live.push(Live { addr, size, x });
    }
}

fuzz_target!(|ops: Vec<Op>| {
    if PARENT.size(SizeType::ALL) == 0 {
        PARENT.add(1 << 32, 1 << 24, NS).unwrap();
    }
    let arena = Arena::create("fuzz", 0, 0, Q).unwrap();
    let child = Arena::with_config(ArenaConfig::new("child", Q).source(&PARENT), 0, 0).unwrap();
    let mut m = Model {
        spans: vec![],
        live: vec![],
    };
    let mut child_live: Vec<(usize, usize)> = vec![];
    for op in ops.into_iter().take(400) {
        match op {
            Op::AddSpan { base, quanta } => {
                let (s, z) = ((base as usize) * Q * 4, (quanta as usize % 512 + 1) * Q);
                if m.spans
                    .iter()
                    .any(|&(a, b)| (s as u128) < a as u128 + b as u128 && a < s + z)
                {
                    continue; // vmem does not check overlapping spans; the model forbids them
                }
                arena.add(s, z, NS).unwrap();
                m.spans.push((s, z));
            }
            Op::AddTopSpan { quanta } => {
                let z = (quanta as usize % 4096 + 1) * Q;
                let s = usize::MAX - z + 1;
                if m.spans.iter().any(|&(a, _)| a == s || a > usize::MAX / 2) {
                    continue;
                }
                arena.add(s, z, NS).unwrap();
                m.spans.push((s, z));
            }
            Op::Alloc { quanta, fit } => {
                let size = (quanta as usize + 1) * Q;
                match arena.alloc(size, NS | fit.flag()) {
                    Ok(a) => {
                        assert_eq!(a % Q, 0);
                        m.record(a, size, false);
                    }
                    Err(_) => assert!(
                        !m.can_fit(size, Q, 0, 0, 0, VMEM_ADDR_MAX),
                        "alloc failed with room"
                    ),
                }
            }
            Op::XAlloc {
                quanta,
                align_log,
                phase,
                nocross_log,
                min,
                span,
                fit,
            } => {
                let size = (quanta as usize % 64 + 1) * Q;
                let align = Q << (align_log % 8);
                let phase = if align > Q {
                    (phase as usize * Q) % align
                } else {
                    0
                };
                let mut nocross = if nocross_log % 3 == 0 {
                    0
                } else {
                    size.next_power_of_two().max(Q) << (nocross_log % 4)
                };
                if nocross != 0 && (phase ^ (phase + size - 1)) & nocross.wrapping_neg() != 0 {
                    nocross = 0;
                }
                // Windows near the bottom, or (top bit of `span`) reaching up
                // to the top of the address type.
                let (min, max) = if span & 0x8000 != 0 {
                    (usize::MAX - (min as usize * Q), usize::MAX)
                } else {
                    (min as usize * Q, min as usize * Q + span as usize * Q)
                };
                let c = XallocConstraints::new(size)
                    .align(align)
                    .phase(phase)
                    .nocross(nocross)
                    .min(min)
                    .max(max);
                match arena.xalloc(c, NS | fit.flag()) {
                    Ok(a) => {
                        assert_eq!(a % align, phase);
                        assert!(a >= min && a as u128 + size as u128 - 1 <= max as u128);
                        assert!(nocross == 0 || a / nocross == (a + (size - 1)) / nocross);
                        m.record(a, size, true);
                    }
                    Err(_) => assert!(
                        !m.can_fit(size, align, phase, nocross, min, max),
                        "xalloc failed with room"
                    ),
                }
            }
            Op::XAllocAddr { at, quanta } => {
                let (a, size) = (at as usize * Q, (quanta as usize % 16 + 1) * Q);
                if a.checked_add(size).is_none() {
                    continue;
                }
                match arena.xalloc_addr(a, size, NS) {
                    Ok(()) => m.record(a, size, true),
                    Err(_) => assert!(!m.can_fit(size, Q, 0, 0, a, a + size - 1)),
                }
            }
            Op::Free { pick } => {
                if !m.live.is_empty() {
                    let l = m.live.swap_remove(pick as usize % m.live.len());
                    if l.x {
                        arena.xfree(l.addr, l.size)
                    } else {
                        arena.free(l.addr, l.size)
                    }
                }
            }
            Op::ChildAlloc { quanta } => {
                let size = (quanta as usize + 1) * Q;
                let a = child.alloc(size, NS | VmFlags::INSTANTFIT).unwrap();
                for &(b, z) in &child_live {
                    assert!(a + size <= b || b + z <= a);
                }
                child_live.push((a, size));
            }
            Op::ChildFree { pick } => {
                if !child_live.is_empty() {
                    let (a, z) = child_live.swap_remove(pick as usize % child_live.len());
                    child.free(a, z);
                }
            }
            Op::Rehash => arena.rehash(),
        }
        m.check(&arena);
        child.assert_sane();
        assert_eq!(
            PARENT.size(SizeType::ALLOC),
            child.size(SizeType::ALL),
            "imported spans = parent's busy bytes"
        );
    }
    for l in m.live.drain(..) {
        if l.x {
            arena.xfree(l.addr, l.size)
        } else {
            arena.free(l.addr, l.size)
        }
    }
    for (a, z) in child_live.drain(..) {
        child.free(a, z);
    }
    arena.assert_sane();
    let st = arena.stats();
    assert_eq!(
        st.nfree,
        m.spans.len(),
        "every span is one free segment again"
    );
    for &(s, z) in &m.spans {
        assert_eq!(arena.lookup(s), Some((s, z, false)));
    }
    assert_eq!(child.stats().nspans, 0, "every imported span went back");
    assert_eq!(PARENT.size(SizeType::ALLOC), 0);
    child.destroy();
    arena.destroy();
});
