//! The port of the `UNITTEST` `main()` of NetBSD's subr_vmem.c (spec §1.10):
//! the seven spans, the six directed constraint checks, and the random
//! alloc/xalloc/free loop, for instant fit and for best fit — with the sanity
//! walker after every operation and the checks the test implies.
//!
//! Differences from upstream, all for termination and determinism: requests
//! that are expected to fail, and every request of the random loop, use
//! `VM_NOSLEEP` (upstream's userland build has a no-op condvar and would spin
//! forever where a faithful `VM_SLEEP` sleeps forever); the generator is a
//! seeded xorshift instead of unseeded `rand()`; the loop is capped.

use bsdalloc_vmem::{Arena, ArenaConfig, SizeType, VMEM_ADDR_MAX, VmFlags, vmem_xalloc};

struct Rng(u64);
impl Rng {
    fn rand(&mut self) -> usize {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 33) as usize
    }
}

const SPANS: [(usize, usize); 7] = [
    (0, 50),
    (100, 200),
    (2000, 1),
    (40000, 65536),
    (10000, 10000),
    (500, 1000),
    (0xffff_ff00, 0x100),
];

#[derive(Clone, Copy)]
struct Live {
    addr: usize,
    size: usize,
    constrained: bool,
}

fn in_some_span(addr: usize, size: usize) -> bool {
    SPANS
        .iter()
        .any(|&(s, z)| addr >= s && addr + size <= s + z)
}

fn check_live(arena: &Arena, live: &[Live]) {
    arena.assert_sane();
    let total: usize = live.iter().map(|l| l.size).sum();
    assert_eq!(
        arena.size(SizeType::ALLOC),
        total,
        "vmem_size(VMEM_ALLOC) == live bytes"
    );
    assert_eq!(arena.size(SizeType::ALL), 77_043);
    assert_eq!(arena.size(SizeType::FREE), 77_043 - total);
}

fn run(strategy: VmFlags, seed: u64) -> (usize, usize, usize) {
    // vmem_create("test", 0, 0, 1, NULL, NULL, NULL, 0, VM_SLEEP, 0)
    let cfg = ArenaConfig {
        flags: VmFlags::SLEEP,
        ..ArenaConfig::new("test", 1)
    };
    let arena = Arena::with_config(cfg, 0, 0).unwrap();
    let mut dump = String::new();
    arena.dump(&mut dump).unwrap();
    assert!(dump.starts_with("vmem "), "{dump}");

    for (s, z) in SPANS {
        arena.add(s, z, VmFlags::SLEEP).unwrap();
    }
    check_live(&arena, &[]);
    let fail = strategy | VmFlags::NOSLEEP;
    let ok = strategy | VmFlags::SLEEP;

    // The directed checks.
    assert!(
        vmem_xalloc(&arena, 0x101, 0, 0, 0, 0xffff_ff00, 0xffff_ffff, fail).is_err(),
        "0x101 bytes in a 0x100 span"
    );
    assert_eq!(vmem_xalloc(&arena, 50, 0, 0, 0, 0, 49, ok), Ok(0));
    arena.xfree(0, 50);
    assert_eq!(vmem_xalloc(&arena, 25, 0, 0, 0, 0, 24, ok), Ok(0));
    assert!(vmem_xalloc(&arena, 0x100, 0, 0, 0, 0xffff_ff01, 0xffff_ffff, fail).is_err());
    assert!(
        vmem_xalloc(&arena, 0x100, 0, 0, 0, 0xffff_ff00, 0xffff_fffe, fail).is_err(),
        "maxaddr is inclusive: the span's last byte must be allowed for it to fit"
    );
    assert_eq!(
        vmem_xalloc(&arena, 0x100, 0, 0, 0, 0xffff_ff00, 0xffff_ffff, ok),
        Ok(0xffff_ff00)
    );
    let mut live = vec![
        Live {
            addr: 0,
            size: 25,
            constrained: true,
        },
        Live {
            addr: 0xffff_ff00,
            size: 0x100,
            constrained: true,
        },
    ];
    check_live(&arena, &live);
    dump.clear();
    arena.dump(&mut dump).unwrap();
    assert!(
        dump.contains("busy") && dump.contains("static span") && dump.contains("freelist["),
        "{dump}"
    );

    // The random loop.
    let mut rng = Rng(seed);
    let (mut nalloc, mut nfree) = (0usize, 0usize);
    let mut exhausted_in_loop = false;
    for _ in 0..200_000 {
        let t = rng.rand() % 100;
        if t > 45 {
            let sz = rng.rand() % 500 + 1;
            if t > 70 {
                let align = 1usize << (rng.rand() % 15);
                let mut phase = rng.rand() % 65536;
                let mut nocross = 1usize << (rng.rand() % 15);
                if align <= phase {
                    phase = 0;
                }
                if (phase ^ (phase + sz - 1)) & nocross.wrapping_neg() != 0 {
                    nocross = 0;
                }
                let (minaddr, maxaddr) = loop {
                    let (lo, hi) = (rng.rand() % 50000, rng.rand() % 70000);
                    if lo <= hi {
                        break (lo, hi);
                    }
                };
                match vmem_xalloc(&arena, sz, align, phase, nocross, minaddr, maxaddr, fail) {
                    Ok(a) => {
                        assert_eq!(a % align, phase % align, "a ≡ phase (mod align)");
                        assert!(
                            a >= minaddr && a + sz - 1 <= maxaddr,
                            "inside [minaddr, maxaddr]"
                        );
                        assert!(
                            nocross == 0 || (a ^ (a + sz - 1)) & nocross.wrapping_neg() == 0,
                            "does not cross nocross"
                        );
                        live.push(Live {
                            addr: a,
                            size: sz,
                            constrained: true,
                        });
                        nalloc += 1;
                    }
                    Err(_) => continue, // a constrained request is simply skipped
                }
            } else {
                match arena.alloc(sz, fail) {
                    Ok(a) => {
                        live.push(Live {
                            addr: a,
                            size: sz,
                            constrained: false,
                        });
                        nalloc += 1;
                    }
                    Err(_) => {
                        exhausted_in_loop = true;
                        break;
                    }
                }
            }
            let new = *live.last().unwrap();
            assert!(in_some_span(new.addr, new.size), "inside an added span");
            for l in &live[..live.len() - 1] {
                assert!(
                    new.addr + new.size <= l.addr || l.addr + l.size <= new.addr,
                    "[{:#x}+{}] overlaps [{:#x}+{}]",
                    new.addr,
                    new.size,
                    l.addr,
                    l.size
                );
            }
        } else if !live.is_empty() {
            let i = rng.rand() % live.len();
            let l = live.swap_remove(i);
            if l.constrained {
                arena.xfree(l.addr, l.size);
            } else {
                arena.free(l.addr, l.size);
            }
            nfree += 1;
        }
        check_live(&arena, &live);
    }
    let total: usize = live.iter().map(|l| l.size).sum();

    // Exhaustion: plain allocations until one fails, which with instant fit
    // (falling back to best fit) means no free segment is large enough.
    loop {
        let sz = rng.rand() % 500 + 1;
        match arena.alloc(sz, fail) {
            Ok(a) => {
                for l in &live {
                    assert!(
                        a + sz <= l.addr || l.addr + l.size <= a,
                        "overlap at exhaustion"
                    );
                }
                live.push(Live {
                    addr: a,
                    size: sz,
                    constrained: false,
                });
                check_live(&arena, &live);
            }
            Err(_) => {
                let any = VmFlags::BESTFIT | VmFlags::NOSLEEP;
                assert!(
                    vmem_xalloc(&arena, sz, 0, 0, 0, 0, VMEM_ADDR_MAX, any).is_err(),
                    "ENOMEM only when nothing fits"
                );
                break;
            }
        }
    }

    // Free everything, including the two directed allocations: each span
    // must be one free segment again.
    for l in live.drain(..) {
        if l.constrained {
            arena.xfree(l.addr, l.size);
        } else {
            arena.free(l.addr, l.size);
        }
        arena.assert_sane();
    }
    let st = arena.stats();
    assert_eq!(st.nbusy, 0);
    assert_eq!(
        st.nfree,
        SPANS.len(),
        "full coalescing: one free segment per span"
    );
    assert_eq!(arena.size(SizeType::FREE), 77_043);
    for (s, z) in SPANS {
        assert_eq!(
            arena.lookup(s),
            Some((s, z, false)),
            "span {s:#x} is one free segment"
        );
    }
    // And the whole of each span can be had again.
    for (s, z) in SPANS {
        assert_eq!(vmem_xalloc(&arena, z, 0, 0, 0, s, s + z - 1, fail), Ok(s));
    }
    assert_eq!(arena.size(SizeType::FREE), 0);
    assert!(arena.alloc(1, fail).is_err());
    arena.xfreeall();
    assert_eq!(arena.size(SizeType::ALLOC), 0);
    arena.destroy();
    eprintln!(
        "{strategy:?} seed {seed}: total {total}, nalloc {nalloc}, nfree {nfree}, loop ended by exhaustion: {exhausted_in_loop}"
    );
    assert!(nalloc > 1000 && nfree > 500, "the loop must do real work");
    (total, nalloc, nfree)
}

#[test]
fn unittest_instantfit() {
    for seed in [1, 2, 3] {
        run(VmFlags::INSTANTFIT, seed);
    }
}

#[test]
fn unittest_bestfit() {
    for seed in [1, 2, 3] {
        run(VmFlags::BESTFIT, seed);
    }
}

#[test]
fn unittest_maxaddr_all_ones_is_allowed() {
    let arena = Arena::create("top", usize::MAX - 0xfff, 0x1000, 1).unwrap();
    let a = vmem_xalloc(
        &arena,
        0x1000,
        0,
        0,
        0,
        0,
        VMEM_ADDR_MAX,
        VmFlags::NOSLEEP | VmFlags::BESTFIT,
    )
    .unwrap();
    assert_eq!(a, usize::MAX - 0xfff);
    arena.xfree(a, 0x1000);
    arena.assert_sane();
}
