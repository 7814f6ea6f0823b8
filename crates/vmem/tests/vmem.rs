//! Behaviour of every flag and constraint, import/release, sleeping, the
//! busy hash, private tags, next fit, the quantum-cache hook, debug output,
//! and each bad input.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bsdalloc_platform::Ipl;
use bsdalloc_vmem::{
    Arena, ArenaConfig, BoundaryTag, IdAllocator, IdPolicy, QuantumCache, SizeType, SpanSource,
    VmFlags, VmemError, XallocConstraints, vmem_create, vmem_descriptors_live, vmem_destroy,
    vmem_est_btcount, vmem_init, vmem_rehash_all, vmem_whatis, vmem_xalloc, vmem_xcreate,
};

const NS: VmFlags = VmFlags::NOSLEEP;
const IF: VmFlags = VmFlags::INSTANTFIT;
const BF: VmFlags = VmFlags::BESTFIT;

fn leak<T>(t: T) -> &'static T {
    Box::leak(Box::new(t))
}

#[test]
fn quantum_rounding_and_alignment() {
    let a = Arena::create("q", 0x10000, 0x100000, 4096).unwrap();
    assert_eq!(a.roundup_size(1), 4096);
    assert_eq!(a.roundup_size(4097), 8192);
    let x = a.alloc(1, NS | IF).unwrap();
    assert_eq!(x % 4096, 0);
    assert_eq!(
        a.size(SizeType::ALLOC),
        4096,
        "sizes are rounded up to the quantum"
    );
    a.free(x, 100); // same rounding: accepted
    assert_eq!(a.size(SizeType::ALLOC), 0);
    a.assert_sane();
}

#[test]
fn instantfit_takes_a_list_head_bestfit_the_smallest_class() {
    // Free segments of 3 and 5 quanta (separated by busy ones).
    let a = Arena::create("fits", 0, 64, 1).unwrap();
    let p = |s, z| {
        a.xalloc(XallocConstraints::new(z).min(s).max(s + z - 1), NS | BF)
            .unwrap()
    };
    p(0, 10); // busy [0,10)
    p(13, 7); // busy [13,20) -> free [10,13) = 3
    p(25, 39); // busy [25,64) -> free [20,25) = 5
    a.xfree(0, 10);
    a.xfree(25, 39);
    // re-busy to isolate: [0,10) and [25,64) busy again
    p(0, 10);
    p(25, 39);
    a.assert_sane();
    // instant fit for 3 starts at list ceil(log2 3) = 2 (sizes 4..7): the 5.
    let i = a.alloc(3, NS | IF).unwrap();
    assert_eq!(i, 20);
    a.free(i, 3);
    // best fit starts at floor(log2 3) = 1 (sizes 2..3): the 3.
    let b = a.alloc(3, NS | BF).unwrap();
    assert_eq!(b, 10);
    a.free(b, 3);
    a.assert_sane();
    // Dropping an arena with live segments panics.
    a.xfreeall();
}

#[test]
fn instantfit_falls_back_to_bestfit_before_failing() {
    let a = Arena::create("fallback", 0, 1000, 1).unwrap();
    // Busy everywhere except A = [0,200) and C = [600,800), both on list 7;
    // C, freed last, is the head.
    for (s, z) in [
        (0, 200),
        (200, 100),
        (300, 200),
        (500, 100),
        (600, 200),
        (800, 200),
    ] {
        a.xalloc_addr(s, z, NS).unwrap();
    }
    a.xfree(0, 200);
    a.xfree(600, 200);
    // Only A lies in [0, 199]: instant fit probes the head (C), fails, and
    // falls back to best fit, which scans the list and finds A.
    let before = a.stats().counters.instantfit_fallbacks;
    assert_eq!(
        a.xalloc(XallocConstraints::new(100).max(199), NS | IF),
        Ok(0)
    );
    assert_eq!(a.stats().counters.instantfit_fallbacks, before + 1);
    a.xfree(0, 100);
    a.assert_sane();
    // Dropping an arena with live segments panics.
    a.xfreeall();
}

#[test]
fn xalloc_constraints_hold_for_every_strategy() {
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n) as usize
    };
    for strat in [IF, BF, VmFlags::NEXTFIT] {
        let a = Arena::create("constraints", 0x100000, 16 << 20, 16).unwrap();
        let mut live = vec![];
        for _ in 0..3000 {
            let size = (rnd(64) + 1) * 16;
            let align = 16usize << rnd(10);
            let phase = if rnd(2) == 0 {
                0
            } else {
                (rnd(align as u64 / 16) * 16) % align
            };
            let mut nocross = if rnd(3) == 0 {
                0
            } else {
                (size.next_power_of_two()) << rnd(4)
            };
            if nocross != 0 && (phase ^ (phase + size - 1)) & nocross.wrapping_neg() != 0 {
                nocross = 0;
            }
            let min = 0x100000 + rnd(8 << 20) / 16 * 16;
            let max = min + rnd(8 << 20) + size;
            match a.xalloc(
                XallocConstraints::new(size)
                    .align(align)
                    .phase(phase)
                    .nocross(nocross)
                    .min(min)
                    .max(max),
                NS | strat,
            ) {
                Ok(x) => {
                    assert_eq!(x % align, phase, "phase");
                    assert!(x >= min && x + size - 1 <= max, "window");
                    assert!(
                        nocross == 0 || (x ^ (x + size - 1)) & nocross.wrapping_neg() == 0,
                        "nocross"
                    );
                    live.push((x, size));
                }
                Err(VmemError::NoMemory) => {}
            }
            if live.len() > 200 {
                let (x, s) = live.swap_remove(rnd(live.len() as u64));
                a.xfree(x, s);
            }
        }
        a.assert_sane();
        for (x, s) in live {
            a.xfree(x, s);
        }
        assert_eq!(a.stats().nfree, 1, "{strat:?}: fully coalesced");
    }
}

#[test]
fn alignment_near_the_top_of_the_address_space_never_wraps() {
    // Rounding up to 0x2000 from usize::MAX - 0xfff wraps past zero; the
    // request must fail, not return an address outside the span.
    let a = Arena::create("top", usize::MAX - 0xfff, 0x1000, 0x10).unwrap();
    for fit in [IF, BF, VmFlags::NEXTFIT] {
        assert_eq!(
            a.xalloc(XallocConstraints::new(0x10).align(0x2000), NS | fit),
            Err(VmemError::NoMemory)
        );
        // With phase 0x1000 the span's start is itself ≡ phase (mod 0x2000).
        let p = a
            .xalloc(
                XallocConstraints::new(0x10).align(0x2000).phase(0x1000),
                NS | fit,
            )
            .unwrap();
        assert_eq!(p, usize::MAX - 0xfff);
        a.xfree(p, 0x10);
    }
    let x = a
        .xalloc(
            XallocConstraints::new(0x800).align(0x800).nocross(0x1000),
            NS | BF,
        )
        .unwrap();
    assert_eq!(x, usize::MAX - 0xfff);
    let y = a
        .xalloc(
            XallocConstraints::new(0x800).align(0x800).nocross(0x1000),
            NS | BF,
        )
        .unwrap();
    assert_eq!(
        y,
        usize::MAX - 0x7ff,
        "the last aligned block, ending exactly at the top"
    );
    a.xfree(x, 0x800);
    a.xfree(y, 0x800);
    a.assert_sane();
}

#[test]
fn positional_vmem_xalloc_and_constraints_agree() {
    // The same requests through NetBSD's positional signature and through
    // the value land on the same addresses in twin arenas.
    let a = Arena::create("pos", 0x1000, 0x10000, 0x10).unwrap();
    let b = Arena::create("val", 0x1000, 0x10000, 0x10).unwrap();
    let asks = [
        (0x30, 0, 0, 0, 0, usize::MAX),
        (0x10, 0x100, 0x20, 0, 0, usize::MAX),
        (0x80, 0x80, 0, 0x100, 0x1f80, usize::MAX),
        (0x20, 0, 0, 0, 0x8000, 0x801f),
    ];
    for (size, align, phase, nocross, min, max) in asks {
        let x = vmem_xalloc(&a, size, align, phase, nocross, min, max, NS | BF).unwrap();
        let c = XallocConstraints::new(size)
            .align(align)
            .phase(phase)
            .nocross(nocross)
            .min(min)
            .max(max);
        let seg = b.xalloc_segment(c, NS | BF).unwrap();
        assert_eq!(x, seg.addr(), "{c:?}");
        assert_eq!(seg.size(), size);
        // A constrained segment is an xalloc one: dropping it frees it with
        // vmem_xfree (vmem_free would panic).
        drop(seg);
        a.xfree(x, size);
    }
    assert_eq!(a.stats().inuse, 0);
    assert_eq!(b.stats().inuse, 0);
    a.assert_sane();
    b.assert_sane();
}

#[test]
fn xalloc_addr_takes_exactly_the_range_or_fails() {
    let a = Arena::create("exact", 0, 0x10000, 0x10).unwrap();
    a.xalloc_addr(0x1230, 0x40, NS).unwrap();
    assert!(a.is_allocated(0x1230));
    assert_eq!(
        a.xalloc_addr(0x1240, 0x10, NS),
        Err(VmemError::NoMemory),
        "already taken"
    );
    assert_eq!(
        a.xalloc_addr(0xfff0, 0x20, NS),
        Err(VmemError::NoMemory),
        "beyond the span"
    );
    a.xfree(0x1230, 0x40);
    a.assert_sane();
}

#[test]
fn vmem_size_reports_alloc_free_and_total() {
    let a = Arena::create("sizes", 0, 1000, 1).unwrap();
    a.add(5000, 24, NS).unwrap();
    let x = a.alloc(100, NS | IF).unwrap();
    assert_eq!(a.size(SizeType::ALLOC), 100);
    assert_eq!(a.size(SizeType::FREE), 924);
    assert_eq!(a.size(SizeType::ALL), 1024);
    a.free(x, 100);
}

/// A source of spans at fresh addresses, counting imports and releases.
struct CountingSource {
    next: AtomicUsize,
    attempts: AtomicUsize,
    imports: AtomicUsize,
    releases: AtomicUsize,
    outstanding: AtomicUsize,
    fail_at: AtomicUsize,
    extra: usize,
}

impl CountingSource {
    fn new(extra: usize) -> Self {
        CountingSource {
            next: AtomicUsize::new(1 << 40),
            attempts: AtomicUsize::new(0),
            imports: AtomicUsize::new(0),
            releases: AtomicUsize::new(0),
            outstanding: AtomicUsize::new(0),
            fail_at: AtomicUsize::new(0),
            extra,
        }
    }
}

impl SpanSource for CountingSource {
    fn import(&self, size: usize, _flags: VmFlags) -> Result<(usize, usize), VmemError> {
        let n = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fail_at.load(Ordering::SeqCst) == n {
            return Err(VmemError::NoMemory);
        }
        self.imports.fetch_add(1, Ordering::SeqCst);
        let got = size + self.extra;
        self.outstanding.fetch_add(got, Ordering::SeqCst);
        Ok((
            self.next
                .fetch_add(got.next_multiple_of(1 << 20) + (1 << 20), Ordering::SeqCst),
            got,
        ))
    }
    fn release(&self, _addr: usize, size: usize) {
        self.releases.fetch_add(1, Ordering::SeqCst);
        self.outstanding.fetch_sub(size, Ordering::SeqCst);
    }
}

#[test]
fn import_chain_arena_to_arena_to_source_and_release() {
    let src: &'static CountingSource = leak(CountingSource::new(0));
    let parent: &'static Arena = leak(
        Arena::with_config(
            ArenaConfig {
                source: Some(src),
                ..ArenaConfig::new("parent", 4096)
            },
            0,
            0,
        )
        .unwrap(),
    );
    let child = Arena::with_config(
        ArenaConfig {
            source: Some(parent),
            ..ArenaConfig::new("child", 64)
        },
        0,
        0,
    )
    .unwrap();
    let mut live = vec![];
    for i in 1..50 {
        live.push((child.alloc(i * 64, NS | IF).unwrap(), i * 64));
    }
    assert!(child.stats().counters.imports > 0 && src.imports.load(Ordering::SeqCst) > 0);
    assert!(parent.size(SizeType::ALLOC) > 0);
    child.assert_sane();
    parent.assert_sane();
    for (x, s) in live {
        child.free(x, s);
    }
    // Every imported span went back, all the way down.
    assert_eq!(child.stats().nspans, 0);
    assert_eq!(
        child.stats().counters.releases,
        child.stats().counters.imports
    );
    assert_eq!(parent.size(SizeType::ALLOC), 0);
    assert_eq!(parent.stats().nspans, 0);
    assert_eq!(src.outstanding.load(Ordering::SeqCst), 0);
}

#[test]
fn static_spans_are_never_released() {
    let src: &'static CountingSource = leak(CountingSource::new(0));
    let a = Arena::with_config(
        ArenaConfig {
            source: Some(src),
            ..ArenaConfig::new("static", 16)
        },
        0x1000,
        0x1000,
    )
    .unwrap();
    let x = a.alloc(0x1000, NS | IF).unwrap();
    a.free(x, 0x1000);
    assert_eq!(a.stats().nspans, 1);
    assert_eq!(src.releases.load(Ordering::SeqCst), 0);
    assert_eq!(
        src.imports.load(Ordering::SeqCst),
        0,
        "the static span sufficed"
    );
}

#[test]
fn largeimport_asks_sixteen_times_and_ximport_keeps_the_real_size() {
    let src: &'static CountingSource = leak(CountingSource::new(0));
    let a = Arena::with_config(
        ArenaConfig {
            source: Some(src),
            flags: NS | VmFlags::LARGEIMPORT,
            ..ArenaConfig::new("large", 16)
        },
        0,
        0,
    )
    .unwrap();
    let x = a.alloc(0x100, NS | IF).unwrap();
    assert_eq!(a.size(SizeType::ALL), 0x1000, "16 x 0x100 imported");
    a.free(x, 0x100);

    let bigger: &'static CountingSource = leak(CountingSource::new(0x800));
    let b = vmem_xcreate(ArenaConfig::new("ximport", 16).source(bigger), 0, 0).unwrap();
    assert!(b.flags().contains(VmFlags::XIMPORT));
    let y = b.alloc(0x100, NS | IF).unwrap();
    assert_eq!(
        b.size(SizeType::ALL),
        0x900,
        "the source's real size is used"
    );
    b.free(y, 0x100);
    assert_eq!(bigger.outstanding.load(Ordering::SeqCst), 0);
    // SAFETY: `b` is not used after this.
    unsafe { vmem_destroy(b) };
}

#[test]
fn failed_import_is_a_clean_enomem() {
    let src: &'static CountingSource = leak(CountingSource::new(0));
    src.fail_at.store(2, Ordering::SeqCst);
    let a = Arena::with_config(
        ArenaConfig {
            source: Some(src),
            ..ArenaConfig::new("faulty", 16)
        },
        0,
        0,
    )
    .unwrap();
    let x = a.alloc(0x100, NS | IF).unwrap(); // import 1
    let before = a.stats();
    assert_eq!(a.alloc(0x200, NS | IF), Err(VmemError::NoMemory)); // import 2 fails
    let after = a.stats();
    assert_eq!(after.nspans, before.nspans, "nothing added");
    assert_eq!(after.size, before.size);
    assert_eq!(
        after.counters.import_failures,
        before.counters.import_failures + 1
    );
    a.assert_sane();
    let y = a.alloc(0x200, NS | IF).unwrap(); // import 3 succeeds
    a.free(x, 0x100);
    a.free(y, 0x200);
    assert_eq!(src.outstanding.load(Ordering::SeqCst), 0);
}

#[test]
fn restricted_requests_do_not_import_even_with_sleep() {
    let src: &'static CountingSource = leak(CountingSource::new(0));
    let a = Arena::with_config(
        ArenaConfig {
            source: Some(src),
            ..ArenaConfig::new("restricted", 16)
        },
        0,
        0,
    )
    .unwrap();
    let sleep = VmFlags::SLEEP | BF;
    assert_eq!(
        a.xalloc(XallocConstraints::new(0x100).align(0x1000), sleep),
        Err(VmemError::NoMemory)
    );
    assert_eq!(
        a.xalloc(
            XallocConstraints::new(0x100).align(0x1000).phase(0x10),
            sleep
        ),
        Err(VmemError::NoMemory)
    );
    assert_eq!(
        a.xalloc(XallocConstraints::new(0x100).nocross(0x1000), sleep),
        Err(VmemError::NoMemory)
    );
    assert_eq!(src.imports.load(Ordering::SeqCst), 0);
}

#[test]
fn sleeping_allocation_is_woken_by_a_free_from_another_thread() {
    let a: &'static Arena = leak(Arena::create("sleepy", 0, 0x100, 0x10).unwrap());
    let held = a.alloc(0x100, NS | IF).unwrap();
    assert_eq!(
        a.alloc(0x10, NS | IF),
        Err(VmemError::NoMemory),
        "VM_NOSLEEP fails at once"
    );
    let t = std::thread::spawn(move || a.alloc(0x80, VmFlags::SLEEP | IF).unwrap());
    while a.stats().counters.sleeps == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(!t.is_finished(), "the VM_SLEEP allocation waits");
    a.free(held, 0x100);
    let got = t.join().unwrap();
    assert!(got < 0x100);
    a.free(got, 0x80);
    a.assert_sane();
}

#[test]
fn busy_hash_grows_with_live_segments_and_shrinks_on_rehash() {
    let a = Arena::create("hash", 0, 1 << 30, 1).unwrap();
    assert_eq!(a.hash_size(), 1);
    let mut xs = vec![];
    for _ in 0..10_000 {
        xs.push(a.alloc(1, NS | IF).unwrap());
    }
    let grown = a.hash_size();
    assert!(grown >= 4096 && grown.is_power_of_two(), "hash {grown}");
    assert!(grown <= bsdalloc_vmem::VMEM_HASHSIZE_MAX);
    assert!(
        xs.iter().all(|&x| a.is_allocated(x)),
        "lookups are right at every size"
    );
    a.assert_sane();
    for &x in &xs {
        a.free(x, 1);
    }
    for _ in 0..40 {
        a.rehash();
    }
    assert!(
        a.hash_size() < grown,
        "rehash shrinks from the decayed high-water mark"
    );
    a.assert_sane();
}

#[test]
fn busy_hash_grows_past_netbsds_limit_by_default_and_netbsdhash_keeps_it() {
    let netbsd_cfg = ArenaConfig {
        flags: NS | VmFlags::NETBSDHASH,
        ..ArenaConfig::new("netbsd", 1)
    };
    let netbsd = Arena::with_config(netbsd_cfg, 0, 1 << 30).unwrap();
    assert_eq!(netbsd.hash_max(), bsdalloc_vmem::VMEM_HASHSIZE_MAX);
    // VM_LARGEHASH, once opt-in, is the default now and changes nothing.
    let large_cfg = ArenaConfig {
        flags: NS | VmFlags::LARGEHASH,
        ..ArenaConfig::new("large", 1)
    };
    let large = Arena::with_config(large_cfg, 0, 1 << 30).unwrap();
    assert_eq!(large.hash_max(), bsdalloc_vmem::VMEM_HASHSIZE_MAX_LARGE);
    let a = Arena::create("default", 0, 1 << 30, 1).unwrap();
    assert_eq!(a.hash_max(), bsdalloc_vmem::VMEM_HASHSIZE_MAX_LARGE);
    let mut xs = vec![];
    let mut ys = vec![];
    for _ in 0..300_000 {
        xs.push(a.alloc(1, NS | IF).unwrap());
        ys.push(netbsd.alloc(1, NS | IF).unwrap());
    }
    assert_eq!(xs, ys, "the hash never changes which segment is chosen");
    assert!(
        a.hash_size() > bsdalloc_vmem::VMEM_HASHSIZE_MAX,
        "grew past NetBSD's limit: {}",
        a.hash_size()
    );
    assert_eq!(netbsd.hash_size(), bsdalloc_vmem::VMEM_HASHSIZE_MAX);
    // Grown at a load of 1: a successful lookup looks at fewer than 1.5
    // tags on average, against about 2.8 in NetBSD's capped table here.
    let c = a.hash_chains();
    assert!(c.buckets >= 300_000, "{c:?}");
    assert!(c.mean_probes < 1.5, "{c:?}");
    let n = netbsd.hash_chains();
    assert!(n.mean_probes > 2.0, "{n:?}");
    assert!(xs.iter().step_by(97).all(|&x| a.is_allocated(x)));
    for x in xs {
        a.free(x, 1);
    }
    for y in ys {
        netbsd.free(y, 1);
    }
    a.assert_sane();
    netbsd.assert_sane();
}

#[test]
fn privtags_arena_lives_on_donated_tags_only() {
    const N: usize = vmem_est_btcount(1, 4);
    let tags: &'static mut [BoundaryTag] = Box::leak((0..N).map(|_| BoundaryTag::new()).collect());
    let cfg = ArenaConfig {
        flags: NS | VmFlags::PRIVTAGS,
        ..ArenaConfig::new("isaio", 1)
    };
    let a = Arena::with_config(cfg, 0, 0).unwrap();
    assert_eq!(
        a.add(0, 0x10000, NS),
        Err(VmemError::NoMemory),
        "no tags donated yet"
    );
    a.add_bts(tags);
    a.add(0, 0x10000, NS).unwrap();
    let mut live = vec![];
    while let Ok(x) = a.alloc(0x10, NS | IF) {
        live.push(x);
    }
    assert!(
        !live.is_empty() && live.len() < 100,
        "tags ran out: {}",
        live.len()
    );
    for x in live {
        a.free(x, 0x10);
    }
    assert_eq!(
        a.stats().spare_tags,
        N - 2,
        "donated tags are never trimmed away"
    );
    a.assert_sane();
}

#[test]
fn nextfit_does_not_hand_back_an_id_just_freed_behind_the_rotor() {
    // Freed next to the cursor, 300 coalesces with the free rest of the
    // range; the search must still start after it.
    let ids = IdAllocator::new("pids", 300..400, IdPolicy::Rotate).unwrap();
    let a = ids.alloc_raw().unwrap();
    assert_eq!(a, 300);
    ids.free_raw(a);
    assert_eq!(ids.alloc_raw(), Some(301));
    assert_eq!(ids.alloc_raw(), Some(302));
    // Freeing elsewhere does not move the rotor either.
    ids.free_raw(301);
    assert_eq!(ids.alloc_raw(), Some(303));
    ids.arena().assert_sane();
}

#[test]
fn nextfit_comes_back_to_the_part_before_the_rotor_last() {
    let ids = IdAllocator::new("ring", 0..4, IdPolicy::Rotate).unwrap();
    let got: Vec<usize> = (0..4).map(|_| ids.alloc_raw().unwrap()).collect();
    assert_eq!(got, [0, 1, 2, 3]);
    for &x in &got {
        ids.free_raw(x);
    }
    // Everything is one free segment again, holding the rotor at 4 (the
    // end): the search wraps to 0.
    assert_eq!(ids.arena().stats().nfree, 1);
    assert_eq!(ids.alloc_raw(), Some(0));
    ids.free_raw(0);
    // The rotor is at 1 inside the single free segment [0, 4): 1, 2, 3
    // come before 0.
    let got: Vec<usize> = (0..4).map(|_| ids.alloc_raw().unwrap()).collect();
    assert_eq!(got, [1, 2, 3, 0]);
    ids.arena().assert_sane();
}

#[test]
fn an_imported_span_behind_the_nextfit_cursor_is_still_released() {
    let src: &'static CountingSource = leak(CountingSource::new(0));
    // LARGEIMPORT: one span of 16 × 64 bytes holds both allocations, and
    // the cursor ends up inside it.
    let a = Arena::with_config(
        ArenaConfig::new("rot", 16)
            .source(src)
            .flags(NS | VmFlags::LARGEIMPORT),
        0,
        0,
    )
    .unwrap();
    let nf = NS | VmFlags::NEXTFIT;
    let x = a.alloc(64, nf).unwrap();
    let y = a.alloc(64, nf).unwrap();
    assert_eq!(y, x + 64);
    a.free(y, 64);
    a.assert_sane();
    a.free(x, 64);
    a.assert_sane();
    assert_eq!(src.releases.load(Ordering::SeqCst), 1, "the span went back");
    assert_eq!(src.outstanding.load(Ordering::SeqCst), 0);
    assert_eq!(a.stats().nspans, 0);
}

#[test]
fn nextfit_rotates_through_ids() {
    let ids = IdAllocator::new("ids", 10..20, IdPolicy::Rotate).unwrap();
    let a = ids.alloc_raw().unwrap();
    let b = ids.alloc_raw().unwrap();
    ids.free_raw(a);
    let c = ids.alloc_raw().unwrap();
    assert_eq!((a, b, c), (10, 11, 12));
    let mut got = vec![];
    while let Some(x) = ids.alloc_raw() {
        got.push(x);
    }
    // 13..20 then wraps to reuse 10.
    assert_eq!(got, vec![13, 14, 15, 16, 17, 18, 19, 10]);
    ids.arena().assert_sane();
    for x in got.into_iter().chain([b, c]) {
        ids.free_raw(x);
    }
    assert_eq!(ids.in_use(), 0);
    assert_eq!(
        ids.arena().stats().nfree,
        1,
        "the cursor never blocks coalescing"
    );
    ids.arena().assert_sane();
    let reuse = IdAllocator::new("reuse", 0..4, IdPolicy::Reuse).unwrap();
    let x = reuse.alloc().unwrap().get();
    assert_eq!(
        reuse.alloc().unwrap().get(),
        x,
        "instant fit reuses the freed id"
    );
}

struct CountingCache {
    allocs: AtomicUsize,
    frees: AtomicUsize,
}

impl QuantumCache for CountingCache {
    fn qc_alloc(&self, arena: &Arena, size: usize, flags: VmFlags) -> Result<usize, VmemError> {
        self.allocs.fetch_add(1, Ordering::SeqCst);
        arena.xalloc(XallocConstraints::new(size), flags.sleep_part() | IF)
    }
    fn qc_free(&self, arena: &Arena, addr: usize, size: usize) {
        self.frees.fetch_add(1, Ordering::SeqCst);
        arena.xfree(addr, size);
    }
    // A pass-through cache holds nothing to give back.
    fn qc_reclaim(&self, _arena: &Arena) {}
    fn qc_destroy(&self, _arena: &Arena) {}
}

/// A quantum cache in pool_cache's shape: one slab (an `xalloc` segment of
/// `SLAB_QUANTA` quanta) per size, cut into pieces kept on a free list;
/// `qc_reclaim` gives back the slabs with no piece out, `qc_destroy` all of
/// them. Each call checks that the arena's lock is not held (the arena is
/// at `IPL_VM`, so a held spin mutex makes `arena.stats()` panic with
/// "locking against myself" instead of hanging).
struct SlabCache {
    /// Per size class (quanta 1..=4): the slab's start (0: none), its free
    /// pieces as a bit mask, and how many pieces are out.
    classes: std::sync::Mutex<[(usize, u64, u32); 4]>,
    reclaims: AtomicUsize,
    destroys: AtomicUsize,
}

const SLAB_QUANTA: usize = 16;

impl SlabCache {
    fn new() -> SlabCache {
        SlabCache {
            classes: std::sync::Mutex::new([(0, 0, 0); 4]),
            reclaims: AtomicUsize::new(0),
            destroys: AtomicUsize::new(0),
        }
    }

    /// Give back every slab with nothing out (all of them if `all`).
    fn give_back(&self, arena: &Arena, all: bool) {
        let _ = arena.stats(); // panics if the arena lock is held here
        let q = arena.quantum();
        let mut slabs = vec![];
        {
            let mut c = self.classes.lock().unwrap();
            for (i, (slab, free, out)) in c.iter_mut().enumerate() {
                if *slab != 0 && (all || *out == 0) {
                    slabs.push((*slab, (i + 1) * q * SLAB_QUANTA));
                    (*slab, *free, *out) = (0, 0, 0);
                }
            }
        }
        for (slab, size) in slabs {
            arena.xfree(slab, size);
        }
    }
}

impl QuantumCache for SlabCache {
    fn qc_alloc(&self, arena: &Arena, size: usize, flags: VmFlags) -> Result<usize, VmemError> {
        let _ = arena.stats();
        let q = arena.quantum();
        let i = size / q - 1;
        let mut c = self.classes.lock().unwrap();
        let (slab, free, out) = &mut c[i];
        if *slab == 0 {
            let per = size * SLAB_QUANTA;
            *slab = arena.xalloc(XallocConstraints::new(per), flags.sleep_part() | IF)?;
            *free = (1u64 << SLAB_QUANTA) - 1;
        }
        if *free == 0 {
            return Err(VmemError::NoMemory);
        }
        let k = free.trailing_zeros() as usize;
        *free &= !(1 << k);
        *out += 1;
        Ok(*slab + k * size)
    }

    fn qc_free(&self, arena: &Arena, addr: usize, size: usize) {
        let _ = arena.stats();
        let i = size / arena.quantum() - 1;
        let mut c = self.classes.lock().unwrap();
        let (slab, free, out) = &mut c[i];
        let k = (addr - *slab) / size;
        *free |= 1 << k;
        *out -= 1;
    }

    fn qc_reclaim(&self, arena: &Arena) {
        self.reclaims.fetch_add(1, Ordering::SeqCst);
        self.give_back(arena, false);
    }

    fn qc_destroy(&self, arena: &Arena) {
        self.destroys.fetch_add(1, Ordering::SeqCst);
        self.give_back(arena, true);
    }
}

#[test]
fn reclaim_and_destroy_go_through_the_quantum_cache_unlocked() {
    let q = 0x100;
    let qc: &'static SlabCache = leak(SlabCache::new());
    let cfg = ArenaConfig::new("qc-slabs", q)
        .qcache_max(4 * q)
        .ipl(Ipl::Vm);
    let a = Arena::with_config(cfg, 0x10_0000, 0x10_0000).unwrap();
    a.set_quantum_cache(qc);
    let x = a.alloc(q, NS | IF).unwrap();
    let y = a.alloc(2 * q, NS | IF).unwrap();
    // Two slabs, busy segments of the arena; pieces are not.
    assert_eq!(a.stats().nbusy, 2);
    assert_eq!(a.size(SizeType::ALLOC), 3 * q * SLAB_QUANTA);
    assert!(!a.is_allocated(x + q), "pieces are the cache's own");
    // Reclaim gives back only the slab with nothing out.
    a.free(y, 2 * q);
    a.reclaim();
    assert_eq!(qc.reclaims.load(Ordering::SeqCst), 1);
    assert_eq!(a.stats().nbusy, 1, "the 2-quanta slab went back");
    // Destroy with a piece still out of the cache: the cache gives its
    // slab back (its own leak check would be pool_cache's), then the arena
    // is empty and goes.
    a.destroy();
    assert_eq!(qc.destroys.load(Ordering::SeqCst), 1, "called once");
    assert!(a.is_destroyed());
    assert!(!a.has_quantum_cache(), "detached by destroy");
    let _ = x;
}

#[test]
fn dropping_an_arena_destroys_its_quantum_cache_first() {
    let q = 0x100;
    let qc: &'static SlabCache = leak(SlabCache::new());
    {
        let cfg = ArenaConfig::new("qc-drop", q)
            .qcache_max(4 * q)
            .ipl(Ipl::Vm);
        let a = Arena::with_config(cfg, 0x10_0000, 0x10_0000).unwrap();
        a.set_quantum_cache(qc);
        let x = a.alloc(3 * q, NS | IF).unwrap();
        a.free(x, 3 * q);
        assert_eq!(a.stats().nbusy, 1, "the cache keeps its slab");
        // Dropped here: with the slab still busy, this used to panic
        // "still allocated".
    }
    assert_eq!(qc.destroys.load(Ordering::SeqCst), 1);
    assert_eq!(qc.reclaims.load(Ordering::SeqCst), 0);
}

#[test]
fn a_refused_destroy_leaves_the_cache_detached_and_the_arena_usable() {
    let q = 0x100;
    let qc: &'static SlabCache = leak(SlabCache::new());
    let cfg = ArenaConfig::new("qc-busy", q)
        .qcache_max(4 * q)
        .ipl(Ipl::Vm);
    let a = Arena::with_config(cfg, 0x10_0000, 0x10_0000).unwrap();
    a.set_quantum_cache(qc);
    let small = a.alloc(q, NS | IF).unwrap();
    let big = a.alloc(8 * q, NS | IF).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| a.destroy()));
    assert!(r.is_err(), "a live segment outside the cache refuses it");
    assert_eq!(qc.destroys.load(Ordering::SeqCst), 1);
    assert!(!a.is_destroyed());
    // From now on the arena serves small sizes itself.
    let z = a.alloc(q, NS | IF).unwrap();
    assert!(
        a.is_allocated(z),
        "a busy segment of the arena, not a piece"
    );
    a.free(z, q);
    a.reclaim(); // no cache any more: nothing to call
    assert_eq!(qc.reclaims.load(Ordering::SeqCst), 0);
    a.free(big, 8 * q);
    a.destroy();
    let _ = small;
}

#[test]
fn quantum_cache_hook_takes_small_sizes() {
    let cfg = ArenaConfig {
        qcache_max: 4 * 4096,
        ..ArenaConfig::new("kva", 4096)
    };
    // Without a provider the arena serves small sizes itself.
    let plain = Arena::with_config(cfg, 0x100000, 1 << 24).unwrap();
    let x = plain.alloc(4096, NS | IF).unwrap();
    plain.free(x, 4096);
    assert_eq!(plain.stats().counters.allocs, 1);

    let qc: &'static CountingCache = leak(CountingCache {
        allocs: AtomicUsize::new(0),
        frees: AtomicUsize::new(0),
    });
    let a = Arena::with_config(cfg, 0x100000, 1 << 24).unwrap();
    a.set_quantum_cache(qc);
    let small = a.alloc(3 * 4096, NS | IF).unwrap();
    let large = a.alloc(5 * 4096, NS | IF).unwrap();
    assert_eq!(
        qc.allocs.load(Ordering::SeqCst),
        1,
        "only sizes <= qcache_max"
    );
    a.free(small, 3 * 4096);
    a.free(large, 5 * 4096);
    assert_eq!(qc.frees.load(Ordering::SeqCst), 1);
    // qcache_max is clamped to 16 quanta.
    let big = Arena::new(ArenaConfig {
        qcache_max: 64 * 4096,
        ..ArenaConfig::new("clamp", 4096)
    });
    assert_eq!(big.qcache_max(), 16 * 4096);
}

#[test]
fn created_arenas_come_from_meta_memory_and_go_back() {
    let before = vmem_descriptors_live();
    let a = vmem_create(ArenaConfig::new("created", 16).ipl(Ipl::Vm), 0x1000, 0x1000).unwrap();
    assert_eq!(vmem_descriptors_live(), before + 1);
    assert_eq!(a.ipl(), Ipl::Vm);
    let x = a.alloc(0x40, NS | IF).unwrap();
    let mut out = String::new();
    vmem_whatis(x + 4, &mut out).unwrap();
    assert!(
        out.contains(&format!(
            "{:#x} is {x:#x}+0x4 in VMEM 'created' (allocated)",
            x + 4
        )),
        "{out}"
    );
    a.free(x, 0x40);
    out.clear();
    vmem_whatis(x + 4, &mut out).unwrap();
    assert!(out.contains("in VMEM 'created' (free)"), "{out}");
    // SAFETY: `a` is not used after this.
    unsafe { vmem_destroy(a) };
    assert_eq!(vmem_descriptors_live(), before);
}

#[test]
fn destroy_returns_imported_spans() {
    let src: &'static CountingSource = leak(CountingSource::new(0));
    let a = Arena::with_config(
        ArenaConfig {
            source: Some(src),
            ..ArenaConfig::new("destroyme", 16)
        },
        0,
        0,
    )
    .unwrap();
    let x = a.alloc(0x100, NS | IF).unwrap();
    a.add(0x10, 0x100, NS).unwrap();
    // Keep one imported span busy-free: free, but add another span via a
    // source without release would keep it; here release happens on free.
    a.free(x, 0x100);
    let y = a.alloc(0x1000, NS | IF).unwrap();
    a.free(y, 0x1000);
    a.destroy();
    assert_eq!(src.outstanding.load(Ordering::SeqCst), 0);
}

#[test]
fn names_are_truncated_to_sixteen_bytes() {
    let a = Arena::create("a-very-long-arena-name", 0, 16, 1).unwrap();
    assert_eq!(a.name(), "a-very-long-aren");
    let mut d = String::new();
    a.dump(&mut d).unwrap();
    assert!(d.contains("'a-very-long-aren'"));
    assert!(
        d.contains(": 0x0, 0x10, 2(static span)") && d.contains(": 0x0, 0x10, 3(free)"),
        "{d}"
    );
    assert!(d.contains("freelist[4]"), "{d}");
    let s = a.stats().to_string();
    assert!(s.contains("vmem 'a-very-long-aren'"), "{s}");
}

#[test]
fn vmem_init_on_caller_storage_registers_the_arena() {
    let storage: &'static mut std::mem::MaybeUninit<Arena> =
        Box::leak(Box::new(std::mem::MaybeUninit::uninit()));
    let a = vmem_init(
        storage,
        ArenaConfig::new("static", 0x10).ipl(Ipl::Vm),
        0x4000,
        0x1000,
    )
    .unwrap();
    assert_eq!(a.ipl(), Ipl::Vm);
    let x = a.alloc(0x20, NS | IF).unwrap();
    let mut out = String::new();
    vmem_whatis(x, &mut out).unwrap();
    assert!(out.contains("in VMEM 'static' (allocated)"), "{out}");
    a.free(x, 0x20);
}

#[test]
fn bootstrap_flag_fills_the_tag_reserve_at_creation() {
    let cfg = ArenaConfig {
        flags: NS | VmFlags::BOOTSTRAP,
        ..ArenaConfig::new("boot", 1)
    };
    let a = Arena::with_config(cfg, 0, 0).unwrap();
    assert!(
        a.stats().spare_tags > bsdalloc_vmem::BT_MINRESERVE,
        "reserve filled before any request"
    );
    let plain = Arena::with_config(ArenaConfig::new("noboot", 1), 0, 0).unwrap();
    assert_eq!(plain.stats().spare_tags, 0);
}

#[test]
fn rehash_all_resizes_registered_arenas() {
    let a = vmem_create(ArenaConfig::new("rehash-all", 1), 0, 1 << 20).unwrap();
    let xs: Vec<usize> = (0..5000).map(|_| a.alloc(1, NS | IF).unwrap()).collect();
    let grown = a.hash_size();
    for &x in &xs {
        a.free(x, 1);
    }
    for _ in 0..30 {
        vmem_rehash_all();
    }
    assert!(a.hash_size() < grown, "{} -> {}", grown, a.hash_size());
    // SAFETY: `a` is not used after this.
    unsafe { vmem_destroy(a) };
}

#[test]
fn id_allocator_waits_for_a_free_id() {
    let ids: &'static IdAllocator = leak(IdAllocator::new("one", 7..8, IdPolicy::Reuse).unwrap());
    let only = ids.alloc().unwrap();
    assert!(ids.alloc().is_none());
    let t = std::thread::spawn(move || ids.alloc_wait().into_raw());
    std::thread::sleep(Duration::from_millis(30));
    assert!(
        !t.is_finished(),
        "alloc_wait sleeps while every id is taken"
    );
    drop(only);
    assert_eq!(t.join().unwrap(), 7);
    ids.free_raw(7);
}

// ---- bad input ----

#[test]
#[should_panic(expected = "vmem_init: quantum must be a power of two")]
fn quantum_not_power_of_two() {
    let _ = Arena::create("bad", 0, 100, 3);
}

#[test]
#[should_panic(expected = "vmem_alloc: arena 'z': size 0")]
fn alloc_size_zero() {
    let a = Arena::create("z", 0, 100, 1).unwrap();
    let _ = a.alloc(0, NS | IF);
}

#[test]
#[should_panic(expected = "must contain exactly one of VM_SLEEP and VM_NOSLEEP")]
fn alloc_without_sleep_flag() {
    let a = Arena::create("z", 0, 100, 1).unwrap();
    let _ = a.alloc(1, IF);
}

#[test]
#[should_panic(
    expected = "vmem_alloc: flags VM_NOSLEEP | VM_INSTANTFIT | VM_BESTFIT must contain exactly one of VM_INSTANTFIT, VM_BESTFIT, VM_NEXTFIT"
)]
fn two_strategies_are_named_in_the_panic() {
    let a = Arena::create("z", 0, 100, 1).unwrap();
    let _ = a.alloc(1, NS | IF | BF);
}

#[test]
fn flags_print_netbsd_names() {
    assert_eq!(
        format!("{:?}", VmFlags::SLEEP | BF),
        "VM_SLEEP | VM_BESTFIT"
    );
    assert_eq!(format!("{:?}", VmFlags::NONE), "0");
    assert_eq!(
        format!("{:?}", VmFlags::from_bits_retain(0x8000_0001)),
        "VM_SLEEP | 0x80000000",
        "unknown bits in hex"
    );
    assert_eq!(format!("{:?}", VmFlags::LARGEHASH), "VM_LARGEHASH");
    // NetBSD's values.
    assert_eq!(VmFlags::SLEEP.bits(), 0x1);
    assert_eq!(VmFlags::NOSLEEP.bits(), 0x2);
    assert_eq!(VmFlags::INSTANTFIT.bits(), 0x1000);
    assert_eq!(VmFlags::BESTFIT.bits(), 0x2000);
    assert_eq!(VmFlags::BOOTSTRAP.bits(), 0x1_0000);
    assert_eq!(VmFlags::POPULATING.bits(), 0x4_0000);
    assert_eq!(VmFlags::LARGEIMPORT.bits(), 0x8_0000);
    assert_eq!(VmFlags::XIMPORT.bits(), 0x10_0000);
    assert_eq!(VmFlags::PRIVTAGS.bits(), 0x20_0000);
    assert_eq!((VmFlags::SLEEP | IF).sleep_part(), VmFlags::SLEEP);
}

#[test]
#[should_panic(expected = "must contain exactly one of VM_INSTANTFIT, VM_BESTFIT, VM_NEXTFIT")]
fn alloc_with_two_strategies() {
    let a = Arena::create("z", 0, 100, 1).unwrap();
    let _ = a.alloc(1, NS | IF | BF);
}

#[test]
#[should_panic(expected = "align 0x30 is not a power of two multiple of the quantum")]
fn align_not_power_of_two() {
    let a = Arena::create("z", 0, 0x1000, 0x10).unwrap();
    let _ = a.xalloc(XallocConstraints::new(0x10).align(0x30), NS | BF);
}

#[test]
#[should_panic(expected = "phase 0x40 >= align 0x40")]
fn phase_not_below_align() {
    let a = Arena::create("z", 0, 0x1000, 0x10).unwrap();
    let _ = a.xalloc(
        XallocConstraints::new(0x10).align(0x40).phase(0x40),
        NS | BF,
    );
}

#[test]
#[should_panic(expected = "phase 0x20 without align")]
fn phase_without_align() {
    let a = Arena::create("z", 0, 0x1000, 0x10).unwrap();
    let _ = a.xalloc(XallocConstraints::new(0x10).phase(0x20), NS | BF);
}

#[test]
#[should_panic(expected = "nocross 0x20 < size 0x40")]
fn nocross_smaller_than_size() {
    let a = Arena::create("z", 0, 0x1000, 0x10).unwrap();
    let _ = a.xalloc(XallocConstraints::new(0x40).nocross(0x20), NS | BF);
}

#[test]
#[should_panic(expected = "itself crosses nocross")]
fn phase_range_crosses_nocross() {
    let a = Arena::create("z", 0, 0x1000, 0x10).unwrap();
    let _ = a.xalloc(
        XallocConstraints::new(0x40)
            .align(0x100)
            .phase(0x30)
            .nocross(0x40),
        NS | BF,
    );
}

#[test]
#[should_panic(expected = "minaddr 0x200 > maxaddr 0x100")]
fn min_above_max() {
    let a = Arena::create("z", 0, 0x1000, 0x10).unwrap();
    let _ = a.xalloc(XallocConstraints::new(0x10).min(0x200).max(0x100), NS | BF);
}

#[test]
#[should_panic(expected = "vmem_free: arena 'z': address 0x40 is not allocated")]
fn free_not_busy() {
    let a = Arena::create("z", 0, 0x1000, 0x10).unwrap();
    a.free(0x40, 0x10);
}

#[test]
#[should_panic(expected = "is not allocated (freed twice, or never allocated)")]
fn double_free() {
    let a = Arena::create("z", 0, 0x1000, 0x10).unwrap();
    let x = a.alloc(0x10, NS | IF).unwrap();
    a.free(x, 0x10);
    a.free(x, 0x10);
}

#[test]
#[should_panic(expected = "size mismatch at 0x0: freeing 0x20, allocated 0x10")]
fn free_wrong_size() {
    let a = Arena::create("z", 0, 0x1000, 0x10).unwrap();
    let x = a.alloc(0x10, NS | BF).unwrap();
    a.free(x, 0x20);
}

#[test]
#[should_panic(expected = "was allocated by vmem_xalloc; free it with vmem_xfree")]
fn free_of_xalloc_segment() {
    let a = Arena::create("z", 0, 0x1000, 0x10).unwrap();
    let x = a.xalloc(XallocConstraints::new(0x10), NS | BF).unwrap();
    a.free(x, 0x10);
}

#[test]
#[should_panic(expected = "was allocated by vmem_alloc; free it with vmem_free")]
fn xfree_of_alloc_segment() {
    let a = Arena::create("z", 0, 0x1000, 0x10).unwrap();
    let x = a.alloc(0x10, NS | BF).unwrap();
    a.xfree(x, 0x10);
}

#[test]
#[should_panic(expected = "vmem_xfreeall: arena 'qc' has a quantum cache")]
fn xfreeall_with_quantum_cache() {
    let a = Arena::with_config(
        ArenaConfig {
            qcache_max: 0x40,
            ..ArenaConfig::new("qc", 0x10)
        },
        0,
        0x1000,
    )
    .unwrap();
    a.xfreeall();
}

#[test]
#[should_panic(expected = "vmem_destroy: arena 'busy': 1 allocations (0x10 bytes) still allocated")]
fn destroy_with_live_allocations() {
    let a = Arena::create("busy", 0, 0x1000, 0x10).unwrap();
    let _x = a.alloc(0x10, NS | IF).unwrap();
    a.destroy();
}

#[test]
fn refused_destroy_leaves_the_arena_intact() {
    let a: &'static Arena = leak(Arena::create("kept", 0, 0x1000, 0x10).unwrap());
    a.register();
    let x = a.alloc(0x10, NS | IF).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| a.destroy()));
    assert!(r.is_err(), "destroy with a live allocation panics");
    let mut out = String::new();
    vmem_whatis(x, &mut out).unwrap();
    assert!(
        out.contains("in VMEM 'kept' (allocated)"),
        "still registered and usable: {out}"
    );
    a.free(x, 0x10);
    a.assert_sane();
    a.destroy();
}

#[test]
#[should_panic(expected = "vmem_size: bad type mask 0x4")]
fn size_with_bad_mask() {
    let a = Arena::create("z", 0, 0x1000, 0x10).unwrap();
    let _ = a.size(SizeType(4));
}

#[test]
#[should_panic(expected = "VM_XIMPORT is set by vmem_xcreate only")]
fn create_with_ximport() {
    let _ = Arena::with_config(
        ArenaConfig {
            flags: NS | VmFlags::XIMPORT,
            ..ArenaConfig::new("x", 1)
        },
        0,
        0,
    );
}

#[test]
#[should_panic(expected = "a VM_PRIVTAGS arena must be created without an initial span")]
fn privtags_with_initial_span() {
    let _ = Arena::with_config(
        ArenaConfig {
            flags: NS | VmFlags::PRIVTAGS,
            ..ArenaConfig::new("p", 1)
        },
        0,
        10,
    );
}

#[test]
#[should_panic(expected = "a VM_PRIVTAGS arena must be created without an initial span")]
fn xcreate_privtags_with_initial_span() {
    let _ = vmem_xcreate(
        ArenaConfig::new("px", 1).flags(NS | VmFlags::PRIVTAGS),
        0,
        16,
    );
}

#[test]
#[should_panic(
    expected = "vmem_create: flags 0 must contain exactly one of VM_SLEEP and VM_NOSLEEP"
)]
fn create_without_a_sleep_flag() {
    // Every create path checks the arena's flags, with or without a span.
    let _ = vmem_create(ArenaConfig::new("nosleep", 1).flags(VmFlags::NONE), 0, 0);
}

#[test]
#[should_panic(expected = "VM_XIMPORT is set by vmem_xcreate only")]
fn vmem_create_with_ximport() {
    let _ = vmem_create(ArenaConfig::new("x", 1).flags(NS | VmFlags::XIMPORT), 0, 0);
}

#[test]
#[should_panic(expected = "vmem_xcreate: VM_XIMPORT is set by vmem_xcreate itself")]
fn vmem_xcreate_with_ximport() {
    let _ = vmem_xcreate(ArenaConfig::new("x", 1).flags(NS | VmFlags::XIMPORT), 0, 0);
}

#[test]
#[should_panic(expected = "vmem_add: arena 'z': span 0xfffffffffffffff0+0x20 wraps around")]
fn add_wrapping_span() {
    let a = Arena::create("z", 0, 0x10, 0x10).unwrap();
    let _ = a.add(usize::MAX - 0xf, 0x20, NS);
}

#[test]
#[should_panic(expected = "used after vmem_destroy")]
fn use_after_destroy() {
    let a = Arena::create("gone", 0, 0x10, 0x10).unwrap();
    a.destroy();
    let _ = a.alloc(0x10, NS | IF);
}
