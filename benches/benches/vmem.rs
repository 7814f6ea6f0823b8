//! V1, V2, V3, V5 of BENCHMARKS.md: bsdalloc-vmem against the `vmem`
//! crate, talc, `offset-allocator` and `range-alloc`, in one binary and one
//! run (`cargo xtask bench --quick V1`, or `V2`, `V3`).
//!
//! Where each peer runs, and why (its design, measured rather than assumed):
//! - the `vmem` crate keeps busy segments in a fixed table, so its free is
//!   O(n): L <= 10k (above that one run would take hours); it has both
//!   fits and constrained xalloc (V3).
//! - talc is a memory allocator: it manages a real mmap'ed heap (headers in
//!   the heap itself), one fit policy (bins, first fit in a bin): the
//!   instant-fit group, every L; no phase, nocross or window (not in V3).
//! - `offset-allocator` (O(1) two-level bitmap of 256 bins over u32
//!   offsets, in quanta here): constant time by design but "good fit", not
//!   NetBSD's; the instant-fit group, every L; no constraints at all (not
//!   in V3).
//! - `range-alloc` keeps free ranges in a sorted `Vec` and does a best-fit
//!   scan, so every operation is O(free ranges) with a memmove: the
//!   best-fit group up to L = 100k, V2 up to 10k; only alignment, no phase,
//!   nocross or window (not in V3).
//!
//! Our arenas: the default (`ours`), and with `VM_NETBSDHASH`
//! (`ours-netbsdhash`: NetBSD's 65536-bucket cap, the configuration before
//! issue 14) from 100k live on, where the cap matters.

use std::alloc::Layout as StdLayout;
use std::fmt::Write as _;
use std::hint::black_box;
use std::ptr::NonNull;

use bsdalloc_benches::{TalcHeap, Xorshift};
use bsdalloc_vmem::{Arena, VmFlags, XallocConstraints};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

const Q: usize = 16;
const BASE: usize = 1 << 40;
const SPAN: usize = 64 << 30;
const NS: VmFlags = VmFlags::NOSLEEP;

/// Named arena constructors measured side by side.
type Variants = &'static [(&'static str, fn() -> Arena)];

/// Our arenas for a live-set size: the default, plus NetBSD's hash cap
/// (`VM_NETBSDHASH`) where it matters (100k live and more).
fn variants_for(l: usize) -> Variants {
    if l >= 100_000 {
        &[
            ("ours", ours_arena),
            ("ours-netbsdhash", ours_arena_netbsdhash),
        ]
    } else {
        &[("ours", ours_arena)]
    }
}

/// Boundary tags for the `vmem` crate, from the global allocator (its design).
struct BoxTags;
// SAFETY: hands out fresh, properly laid out allocations and frees them.
unsafe impl vmem::alloc::Allocator for BoxTags {
    fn allocate(&self) -> Option<NonNull<vmem::Bt>> {
        // SAFETY: the layout is non-zero sized.
        NonNull::new(unsafe { std::alloc::alloc(StdLayout::new::<vmem::Bt>()) }.cast())
    }
    unsafe fn deallocate(&self, ptr: NonNull<vmem::Bt>) {
        // SAFETY: allocated above with the same layout.
        unsafe { std::alloc::dealloc(ptr.as_ptr().cast(), StdLayout::new::<vmem::Bt>()) }
    }
}

type PeerArena = vmem::Arena<'static, 'static, BoxTags, std::sync::Mutex<()>>;

fn peer_arena() -> PeerArena {
    let a = PeerArena::create("peer", Q, None, BoxTags).unwrap();
    a.add_span(BASE, SPAN).unwrap();
    a
}

fn ours_arena() -> Arena {
    Arena::create("bench", BASE, SPAN, Q).unwrap()
}

/// With NetBSD's busy-hash cap of 65536 buckets (`VM_NETBSDHASH`).
fn ours_arena_netbsdhash() -> Arena {
    let cfg = bsdalloc_vmem::ArenaConfig::new("bench", Q).flags(NS | VmFlags::NETBSDHASH);
    Arena::with_config(cfg, BASE, SPAN).unwrap()
}

/// `offset-allocator` over the same span in quanta (u32 offsets: the 64 GiB
/// span is 2^32 quanta, one more than it can count; it gets all it can).
/// Its node table is sized for the live set plus free nodes.
fn offset_allocator(l: usize) -> offset_allocator::Allocator<u32> {
    offset_allocator::Allocator::with_max_allocs(u32::MAX, (2 * l + 1024) as u32)
}

/// `range-alloc` over the same span, in bytes.
fn range_allocator() -> range_alloc::RangeAllocator<usize> {
    range_alloc::RangeAllocator::new(BASE..BASE + SPAN)
}

/// A talc heap big enough for L live segments of up to 4 KiB.
fn talc_heap(l: usize) -> TalcHeap {
    TalcHeap::new((l * 8192).max(1 << 30), Q)
}

fn size_of_op(rng: &mut Xorshift) -> usize {
    (rng.below(256) as usize + 1) * Q
}

/// One churn op on a live set: free a random live segment, allocate anew.
macro_rules! churn {
    ($live:expr, $rng:expr, $free:expr, $alloc:expr) => {{
        let i = $rng.below($live.len() as u64) as usize;
        let (a, s) = $live[i];
        $free(a, s);
        let s = size_of_op(&mut $rng);
        $live[i] = ($alloc(s), s);
    }};
}

/// Fill a live set of `l` segments with `alloc`, then measure `churn!` as
/// `name` in `g`.
macro_rules! v1_case {
    ($g:expr, $name:expr, $l:expr, $st:ty, $alloc:expr, $free:expr) => {{
        let mut rng = Xorshift::new(1);
        let mut live: Vec<($st, usize)> = (0..$l)
            .map(|_| {
                let s = size_of_op(&mut rng);
                ($alloc(s), s)
            })
            .collect();
        $g.bench_function($name, |b| b.iter(|| churn!(live, rng, $free, $alloc)));
        live
    }};
}

fn v1(c: &mut Criterion) {
    for (fit_name, fit, peer_policy) in [
        (
            "instantfit",
            VmFlags::INSTANTFIT,
            vmem::AllocPolicy::InstantFit,
        ),
        ("bestfit", VmFlags::BESTFIT, vmem::AllocPolicy::BestFit),
    ] {
        // Best fit is a list scan by NetBSD's definition: 1M would take
        // minutes per sample.
        let sizes: &[usize] = if fit == VmFlags::BESTFIT {
            &[100, 1_000, 10_000, 100_000]
        } else {
            &[100, 1_000, 10_000, 100_000, 1_000_000]
        };
        for &l in sizes {
            let mut g = c.benchmark_group(format!("V1/{fit_name}/L={l}"));
            if l >= 100_000 {
                g.sample_size(10);
            }
            for &(name, make) in variants_for(l) {
                let arena = make();
                let _live = v1_case!(
                    g,
                    name,
                    l,
                    usize,
                    |s| arena.alloc(s, NS | fit).unwrap(),
                    |a, s| arena.free(a, s)
                );
                // Dropping an arena with live segments panics (as vmem_destroy).
                arena.xfreeall();
            }
            if l <= 10_000 {
                let arena = peer_arena();
                let _live = v1_case!(
                    g,
                    "vmem-crate",
                    l,
                    usize,
                    |s| arena.alloc(s, peer_policy).unwrap(),
                    |a, _s| arena.free(a).unwrap()
                );
            }
            if fit == VmFlags::INSTANTFIT {
                let heap = std::cell::RefCell::new(talc_heap(l));
                let _live = v1_case!(
                    g,
                    "talc",
                    l,
                    usize,
                    |s| heap.borrow_mut().alloc(s),
                    |a, s| heap.borrow_mut().free(a, s)
                );
                let oa = std::cell::RefCell::new(offset_allocator(l));
                let _live = v1_case!(
                    g,
                    "offset-allocator",
                    l,
                    offset_allocator::Allocation<u32>,
                    |s: usize| oa.borrow_mut().allocate((s / Q) as u32).unwrap(),
                    |a, _s| oa.borrow_mut().free(a)
                );
            }
            if fit == VmFlags::BESTFIT {
                let ra = std::cell::RefCell::new(range_allocator());
                let _live = v1_case!(
                    g,
                    "range-alloc",
                    l,
                    usize,
                    |s| ra.borrow_mut().allocate_range(s).unwrap().start,
                    |a, s| ra.borrow_mut().free_range(a..a + s)
                );
            }
            g.finish();
        }
    }
}

fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    let mut rng = Xorshift::new(seed);
    for i in (1..n).rev() {
        v.swap(i, rng.below(i as u64 + 1) as usize);
    }
    v
}

fn v2(c: &mut Criterion) {
    for l in [10_000usize, 1_000_000] {
        let order = shuffled(l, 9);
        let mut g = c.benchmark_group(format!("V2/bulk/L={l}"));
        g.sample_size(10);
        let variants = variants_for(l);
        for &(name, make) in variants {
            g.bench_function(name, |b| {
                b.iter_batched(
                    make,
                    |arena| {
                        let v: Vec<usize> = (0..l)
                            .map(|_| arena.alloc(Q, NS | VmFlags::INSTANTFIT).unwrap())
                            .collect();
                        for &i in &order {
                            arena.free(v[i], Q);
                        }
                        arena
                    },
                    BatchSize::PerIteration,
                )
            });
        }
        if l <= 10_000 {
            g.bench_function("vmem-crate", |b| {
                b.iter_batched(
                    peer_arena,
                    |arena| {
                        let v: Vec<usize> = (0..l)
                            .map(|_| arena.alloc(Q, vmem::AllocPolicy::InstantFit).unwrap())
                            .collect();
                        for &i in &order {
                            arena.free(v[i]).unwrap();
                        }
                        arena
                    },
                    BatchSize::PerIteration,
                )
            });
            // O(free ranges) per free: 1M would be hours.
            g.bench_function("range-alloc", |b| {
                b.iter_batched(
                    range_allocator,
                    |mut ra| {
                        let v: Vec<usize> = (0..l)
                            .map(|_| ra.allocate_range(Q).unwrap().start)
                            .collect();
                        for &i in &order {
                            ra.free_range(v[i]..v[i] + Q);
                        }
                        ra
                    },
                    BatchSize::PerIteration,
                )
            });
        }
        g.bench_function("talc", |b| {
            b.iter_batched(
                || TalcHeap::new(256 << 20, Q),
                |mut heap| {
                    let v: Vec<usize> = (0..l).map(|_| heap.alloc(Q)).collect();
                    for &i in &order {
                        heap.free(v[i], Q);
                    }
                    heap
                },
                BatchSize::PerIteration,
            )
        });
        g.bench_function("offset-allocator", |b| {
            b.iter_batched(
                || offset_allocator(l),
                |mut oa| {
                    let v: Vec<_> = (0..l).map(|_| oa.allocate(1).unwrap()).collect();
                    for &i in &order {
                        oa.free(v[i]);
                    }
                    oa
                },
                BatchSize::PerIteration,
            )
        });
        g.finish();
    }
}

/// xalloc parameters drawn per operation: align 4K or 64K, a phase, a 64K
/// nocross, and a window.
fn xparams(rng: &mut Xorshift) -> (usize, usize, usize, usize, usize, usize) {
    let size = (rng.below(64) as usize + 1) * Q;
    let align = if rng.below(2) == 0 { 4096 } else { 65536 };
    let phase = (rng.below(4) as usize) * Q;
    let nocross = 65536;
    let min = BASE + (rng.below(1 << 20) as usize) * 4096;
    let max = min + (1 << 30);
    (size, align, phase, nocross, min, max)
}

fn v3(c: &mut Criterion) {
    const L: usize = 4096;
    let mut g = c.benchmark_group("V3/xalloc-constrained/L=4k");
    {
        let arena = ours_arena();
        let mut rng = Xorshift::new(3);
        let xa = |rng: &mut Xorshift| {
            let (s, al, ph, nc, mi, ma) = xparams(rng);
            (
                arena
                    .xalloc(
                        XallocConstraints::new(s)
                            .align(al)
                            .phase(ph)
                            .nocross(nc)
                            .min(mi)
                            .max(ma),
                        NS | VmFlags::INSTANTFIT,
                    )
                    .unwrap(),
                s,
            )
        };
        let mut live: Vec<(usize, usize)> = (0..L).map(|_| xa(&mut rng)).collect();
        g.bench_function("ours", |b| {
            b.iter(|| {
                let i = rng.below(L as u64) as usize;
                let (a, s) = live[i];
                arena.xfree(a, s);
                live[i] = xa(&mut rng);
            })
        });
        arena.xfreeall();
    }
    {
        let arena = ours_arena();
        let mut rng = Xorshift::new(3);
        let mut live: Vec<(usize, usize)> = (0..L)
            .map(|_| {
                let s = (rng.below(64) as usize + 1) * Q;
                (arena.alloc(s, NS | VmFlags::INSTANTFIT).unwrap(), s)
            })
            .collect();
        g.bench_function("ours-plain-alloc", |b| {
            b.iter(|| {
                let i = rng.below(L as u64) as usize;
                let (a, s) = live[i];
                arena.free(a, s);
                let s = (rng.below(64) as usize + 1) * Q;
                live[i] = (arena.alloc(s, NS | VmFlags::INSTANTFIT).unwrap(), s);
            })
        });
        arena.xfreeall();
    }
    {
        let arena = peer_arena();
        let mut rng = Xorshift::new(3);
        let lay = |rng: &mut Xorshift| {
            let (s, al, ph, nc, mi, ma) = xparams(rng);
            (
                vmem::Layout::from_size_align(s, al)
                    .unwrap()
                    .with_phase(ph)
                    .with_nocross(nc)
                    .unwrap()
                    .with_min(mi)
                    .with_max(ma),
                s,
            )
        };
        // The peer refuses some of these requests ("Empty") where we succeed;
        // a refused request costs what it cost and is counted.
        let mut refused = 0u64;
        let mut tries = 0u64;
        let mut live: Vec<Option<usize>> = (0..L)
            .map(|_| {
                arena
                    .xalloc(lay(&mut rng).0, vmem::AllocPolicy::InstantFit)
                    .ok()
            })
            .collect();
        g.bench_function("vmem-crate-xalloc", |b| {
            b.iter(|| {
                let i = rng.below(L as u64) as usize;
                if let Some(a) = live[i] {
                    arena.free(a).unwrap();
                }
                live[i] = arena
                    .xalloc(lay(&mut rng).0, vmem::AllocPolicy::InstantFit)
                    .ok();
                tries += 1;
                refused += u64::from(live[i].is_none());
            })
        });
        bsdalloc_benches::append_extra(&format!(
            "### V3 peer refusals\n\nThe `vmem` crate's xalloc refused {refused} of {tries} constrained requests \
             (bsdalloc-vmem refused none of the same requests: each fits in the 64 GiB span). \
             talc and `range-alloc` take an alignment but no phase, nocross or address window, and \
             `offset-allocator` takes no constraint at all: their designs leave them out of V3.\n\n"
        ));
    }
    g.finish();
}

/// V5 (not timed): fragmentation after a phase change.
fn v5(_c: &mut Criterion) {
    let mut out = String::new();
    let _ = writeln!(out, "### V5: fragmentation after a phase change\n");
    let _ = writeln!(
        out,
        "Arena of 64 MiB, quantum 16; fill 90% with random 16 B-4 KiB segments, free every other one, \
         then find the largest single allocation that still succeeds.\n"
    );
    let _ = writeln!(
        out,
        "| fill strategy | free bytes | free segments | largest allocatable | largest / free |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for (name, fit) in [
        ("instantfit", VmFlags::INSTANTFIT),
        ("bestfit", VmFlags::BESTFIT),
    ] {
        let span = 64 << 20;
        let arena = Arena::create("v5", BASE, span, Q).unwrap();
        let mut rng = Xorshift::new(5);
        let mut live = vec![];
        let mut used = 0;
        while used < span * 9 / 10 {
            let s = size_of_op(&mut rng);
            match arena.alloc(s, NS | fit) {
                Ok(a) => {
                    live.push((a, s));
                    used += s;
                }
                Err(_) => break,
            }
        }
        for (i, &(a, s)) in live.iter().enumerate() {
            if i % 2 == 0 {
                arena.free(a, s);
            }
        }
        let (mut lo, mut hi) = (0usize, span / Q);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            match arena.xalloc(XallocConstraints::new(mid * Q), NS | VmFlags::BESTFIT) {
                Ok(a) => {
                    arena.xfree(a, mid * Q);
                    lo = mid;
                }
                Err(_) => hi = mid - 1,
            }
        }
        let st = arena.stats();
        let free = st.size - st.inuse;
        let _ = writeln!(
            out,
            "| {name} | {free} | {} | {} | {:.4} |",
            st.nfree,
            lo * Q,
            (lo * Q) as f64 / free as f64
        );
        black_box(&arena);
        arena.xfreeall();
    }
    // Counters from a V1-shaped run at 1M live (ours), for the report.
    let arena = ours_arena();
    let mut rng = Xorshift::new(1);
    let mut live: Vec<(usize, usize)> = (0..1_000_000)
        .map(|_| {
            let s = size_of_op(&mut rng);
            (arena.alloc(s, NS | VmFlags::INSTANTFIT).unwrap(), s)
        })
        .collect();
    for _ in 0..1_000_000 {
        churn!(live, rng, |a, s| arena.free(a, s), |s| arena
            .alloc(s, NS | VmFlags::INSTANTFIT)
            .unwrap());
    }
    let st = arena.stats();
    let tags = bsdalloc_vmem::tag_supply_stats();
    let chains = arena.hash_chains();
    // Metadata of this arena: its tags (busy, free, span, spare) and its
    // busy-hash table.
    let tag_bytes = (st.nbusy + st.nfree + st.nspans + st.spare_tags)
        * std::mem::size_of::<bsdalloc_vmem::BoundaryTag>();
    let hash_bytes = st.hash_size * std::mem::size_of::<usize>();
    let _ = writeln!(
        out,
        "\n### vmem counters after V1 instantfit at L=1M (1M churn ops)\n\n\
         busy {} (max {}), free segments {}, hash buckets {} (mean tags per lookup {:.2}, longest chain {}), \
         rehashes {}, instant-fit fallbacks {}, tag chunks from pages {} ({} tags)\n\n\
         Metadata: {} B of tags ({} B each) + {} B of hash table = {:.1} B per live (busy) segment, \
         {:.1} B per segment (busy or free)\n",
        st.nbusy,
        st.maxbusy,
        st.nfree,
        st.hash_size,
        chains.mean_probes,
        chains.longest,
        st.counters.rehashes,
        st.counters.instantfit_fallbacks,
        tags.chunks,
        tags.from_pages,
        tag_bytes,
        std::mem::size_of::<bsdalloc_vmem::BoundaryTag>(),
        hash_bytes,
        (tag_bytes + hash_bytes) as f64 / st.nbusy as f64,
        (tag_bytes + hash_bytes) as f64 / (st.nbusy + st.nfree) as f64,
    );
    arena.xfreeall();
    bsdalloc_benches::append_extra(&out);
}

criterion_group!(benches, v5, v1, v2, v3);
criterion_main!(benches);
