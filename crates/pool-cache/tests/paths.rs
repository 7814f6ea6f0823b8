//! The get and put paths of spec §3.4–3.5 step by step, with the counters
//! each step must move (C3, C4, C5), the physical address travelling with
//! an object (C9), PR_ZERO without a constructor (C12), the back end chosen
//! at bootstrap (C1), the forwarded setters (C10), and the statistics and
//! `vmstat -C` table (C13).
//!
//! The empty-group stacks are global: the tests of this binary run one at
//! a time (`SERIAL`), each starting from an invalidation, which frees every
//! empty group.

use std::ptr::NonNull;
use std::sync::Mutex;

use bsdalloc_platform::Ipl;
use bsdalloc_pool::{PrFlags, UNLIMITED, page_size};
use bsdalloc_pool_cache::*;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn leak(cfg: PoolCacheConfig) -> &'static RawPoolCache {
    let pc: &'static RawPoolCache = Box::leak(Box::new(RawPoolCache::new(cfg)));
    pc.bootstrap();
    pc
}

fn counters(pc: &RawPoolCache) -> (u64, u64, u64, i64) {
    let s = pc.stats();
    (s.nhit_pcpu, s.nmiss_pcpu, s.nmiss_global, s.nfull)
}

/// Run `f` on a fresh thread (a CPU of its own, with nothing cached), and
/// keep the thread alive until `f` returns: its groups stay where `f`
/// left them.
fn on_fresh_cpu<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| s.spawn(f).join().unwrap())
}

#[test]
fn get_and_put_walk_current_previous_depot_and_pool() {
    let _s = serial();
    let pc = leak(PoolCacheConfig::new("paths-15", 64));
    pc.invalidate();
    assert_eq!(pc.group_size(), PCG_NOBJECTS_NORMAL);
    on_fresh_cpu(|| {
        // 32 gets: nothing cached, every one goes to the pool.
        let objs: Vec<NonNull<u8>> = (0..32).map(|_| pc.get(PrFlags::WAITOK).unwrap()).collect();
        assert_eq!(counters(pc), (0, 32, 32, 0));
        assert_eq!(pc.pool().stats().nout, 32);
        // 32 puts: the 1st allocates a group (previous, swapped in), the
        // 16th another (the dummy previous is replaced), the 31st a third
        // and pushes the full current group to the depot. Every put ends
        // in a group: 32 hits, 3 misses.
        for &o in &objs {
            // SAFETY: objects of this cache, put once.
            unsafe { pc.put(o) };
        }
        assert_eq!(counters(pc), (32, 35, 32, 1));
        assert_eq!(pc.local_stats().cached, 2 + 15);
        assert_eq!(pc.pool().stats().nout, 32, "objects stay out of the pool");
        // 32 gets: 2 from current, 15 from previous (swap), then the
        // depot's full group replaces the empty current one (a miss that
        // the depot serves), 15 more.
        let again: Vec<NonNull<u8>> = (0..32).map(|_| pc.get(PrFlags::NOWAIT).unwrap()).collect();
        assert_eq!(counters(pc), (64, 36, 32, 0));
        assert_eq!(pc.local_stats().cached, 0);
        // LIFO: the last object put is the first one got back.
        assert_eq!(again[0], objs[31]);
        let mut a = again.clone();
        let mut b = objs.clone();
        a.sort();
        b.sort();
        assert_eq!(a, b, "the cache hands back exactly what it was given");
        for &o in &again {
            // SAFETY: as above.
            unsafe { pc.put(o) };
        }
    });
    let s = pc.stats();
    assert_eq!(s.nhit_global, s.nmiss_pcpu - s.nmiss_global);
    // The thread is gone: its groups went to the depot at exit.
    assert_eq!(s.cpu_cached, 0);
    assert_eq!(
        s.nfull, 2,
        "the exit hook gave two full groups to the depot"
    );
    assert_eq!(s.npartial, 1, "and one partial group (2 objects)");
    pc.invalidate();
    let s = pc.stats();
    assert_eq!((s.nfull, s.npartial), (0, 0));
    assert_eq!(
        s.pool.nout, 0,
        "invalidate returns every object to the pool"
    );
    assert!(s.pool.npages > 0, "pages stay (C8)");
}

#[test]
fn large_cache_groups_hold_63() {
    let _s = serial();
    let pc = leak(PoolCacheConfig::new("paths-63", 32).flags(PrFlags::LARGECACHE));
    pc.invalidate();
    assert_eq!(pc.group_size(), PCG_NOBJECTS_LARGE);
    assert_eq!(Group::bytes(PCG_NOBJECTS_LARGE), 1024);
    assert_eq!(Group::bytes(PCG_NOBJECTS_NORMAL), 256);
    on_fresh_cpu(|| {
        let objs: Vec<_> = (0..127).map(|_| pc.get(PrFlags::WAITOK).unwrap()).collect();
        for &o in &objs {
            // SAFETY: objects of this cache.
            unsafe { pc.put(o) };
        }
        // 63 + 63 on the CPU, the 127th put pushed one full group.
        let s = pc.stats();
        assert_eq!((s.nfull, s.cpu_cached), (1, 64));
        pc.invalidate();
    });
    assert_eq!(pc.stats().pool.nout, 0);
}

#[test]
fn address_only_groups_keep_no_paddr_and_share_empty_groups() {
    let _s = serial();
    let va = leak(PoolCacheConfig::new("paths-va", 64).no_paddr());
    let wide = leak(PoolCacheConfig::new("paths-wide", 64));
    assert_eq!((va.group_size(), wide.group_size()), (15, 15));
    on_fresh_cpu(|| {
        // 15 + 15 on the CPU, the 31st put pushes one full group.
        let objs: Vec<NonNull<u8>> = (0..31).map(|_| va.get(PrFlags::WAITOK).unwrap()).collect();
        for (i, &p) in objs.iter().enumerate() {
            // SAFETY: 64-byte objects of this cache, marked and put back.
            unsafe {
                p.as_ptr().write_bytes(i as u8, 64);
                va.put(p);
            }
        }
        let s = va.stats();
        assert_eq!((s.nfull, s.cpu_cached), (1, 16));
        // Every object comes back, with no physical address, unchanged.
        let mut back: Vec<NonNull<u8>> = (0..31)
            .map(|_| {
                let (p, pa) = va.get_paddr(PrFlags::NOWAIT).unwrap();
                assert_eq!(pa, POOL_PADDR_INVALID);
                p
            })
            .collect();
        back.sort();
        let mut want = objs.clone();
        want.sort();
        assert_eq!(back, want);
        for (i, &p) in objs.iter().enumerate() {
            // SAFETY: a live 64-byte object of ours.
            let bytes = unsafe { std::slice::from_raw_parts(p.as_ptr(), 64) };
            assert!(bytes.iter().all(|&b| b == i as u8), "the marks survive");
        }
        // The address-only groups, now empty, went to the shared empty
        // stack; the wide cache takes them over for its puts (16-byte
        // slots in the same memory).
        let w: Vec<NonNull<u8>> = (0..40)
            .map(|_| wide.get(PrFlags::WAITOK).unwrap())
            .collect();
        for (i, &p) in w.iter().enumerate() {
            // SAFETY: objects of the wide cache, put back with an address.
            unsafe { wide.put_paddr(p, 0x1000 * (i + 1)) };
        }
        for _ in 0..40 {
            let (p, pa) = wide.get_paddr(PrFlags::NOWAIT).unwrap();
            let i = w.iter().position(|&q| q == p).unwrap();
            assert_eq!(pa, 0x1000 * (i + 1));
        }
        for &p in &w {
            // SAFETY: as above.
            unsafe { wide.put(p) };
        }
        for &p in &objs {
            // SAFETY: objects of the address-only cache, back once.
            unsafe { va.put(p) };
        }
        wide.invalidate();
        va.invalidate();
    });
    assert_eq!(va.stats().pool.nout, 0);
    assert_eq!(wide.stats().pool.nout, 0);
}

#[test]
#[should_panic(expected = "pool_cache_put_paddr: [paths-va-pa] keeps no physical addresses")]
fn an_address_only_cache_refuses_a_physical_address() {
    let pc = leak(PoolCacheConfig::new("paths-va-pa", 64).no_paddr());
    let p = pc.get(PrFlags::WAITOK).unwrap();
    // SAFETY: an object of this cache; the put panics before it is taken.
    unsafe { pc.put_paddr(p, 0x5000) };
}

#[test]
fn paddr_travels_with_the_object() {
    let _s = serial();
    let pc = leak(PoolCacheConfig::new("paths-pa", 64));
    on_fresh_cpu(|| {
        let (p, pa) = pc.get_paddr(PrFlags::WAITOK).unwrap();
        assert_eq!(
            pa, POOL_PADDR_INVALID,
            "fresh from the pool: no address known"
        );
        // SAFETY: an object of this cache.
        unsafe { pc.put_paddr(p, 0x1234_5000) };
        assert_eq!(pc.get_paddr(PrFlags::NOWAIT), Some((p, 0x1234_5000)));
        // SAFETY: as above; put without an address.
        unsafe { pc.put(p) };
        assert_eq!(pc.get_paddr(PrFlags::NOWAIT), Some((p, POOL_PADDR_INVALID)));
        // SAFETY: as above.
        unsafe { pc.put(p) };
    });
    pc.invalidate();
}

#[test]
fn pr_zero_without_a_constructor_zeroes_hits_too() {
    let _s = serial();
    let pc = leak(PoolCacheConfig::new("paths-zero", 100));
    on_fresh_cpu(|| {
        let p = pc.get(PrFlags::WAITOK).unwrap();
        // SAFETY: the object's 100 bytes.
        unsafe { p.as_ptr().write_bytes(0xff, 100) };
        // SAFETY: an object of this cache.
        unsafe { pc.put(p) };
        let q = pc.get(PrFlags::NOWAIT | PrFlags::ZERO).unwrap();
        assert_eq!(q, p, "a hit");
        // SAFETY: as above.
        let b = unsafe { std::slice::from_raw_parts(q.as_ptr(), 100) };
        assert!(b.iter().all(|&x| x == 0), "a hit with PR_ZERO is zeroed");
        // SAFETY: as above.
        unsafe { pc.put(q) };
    });
    pc.invalidate();
}

#[test]
fn bootstrap_chooses_the_back_end() {
    let _s = serial();
    let ps = page_size();
    // IPL_NONE, no allocator, item up to a page: nointr, PAGE_SIZE pages.
    let small = leak(PoolCacheConfig::new("paths-c1-small", 200));
    let s = small.pool().stats();
    assert_eq!(s.pagesize, ps);
    assert!(!s.flags.contains(PrFlags::NOALIGN));
    // Above a page: the big allocator that holds it, PR_NOALIGN.
    let big = leak(PoolCacheConfig::new("paths-c1-big", 3 * ps));
    let s = big.pool().stats();
    assert_eq!(s.pagesize, (3 * ps).next_power_of_two());
    assert!(s.flags.contains(PrFlags::NOALIGN));
    let p = big.get(PrFlags::WAITOK).unwrap();
    // SAFETY: the object's bytes.
    unsafe { p.as_ptr().add(3 * ps - 1).write(1) };
    // SAFETY: an object of this cache.
    unsafe { big.put(p) };
    big.invalidate();
    // Another IPL: the pool's default (kmem), no PR_NOALIGN.
    let vm = leak(PoolCacheConfig::new("paths-c1-vm", 200).ipl(Ipl::Vm));
    let s = vm.pool().stats();
    assert_eq!((s.pagesize, s.ipl), (ps, Ipl::Vm));
    // A destructor strips PR_PSERIALIZE from the pool (the cache does the
    // barrier); without one the pool keeps it.
    fn dtor(_: NonNull<u8>) {}
    let d = leak(
        PoolCacheConfig::new("paths-c1-pser-d", 64)
            .flags(PrFlags::PSERIALIZE)
            .dtor(&(dtor as fn(NonNull<u8>))),
    );
    assert!(!d.pool().stats().flags.contains(PrFlags::PSERIALIZE));
    let n = leak(PoolCacheConfig::new("paths-c1-pser", 64).flags(PrFlags::PSERIALIZE));
    assert!(n.pool().stats().flags.contains(PrFlags::PSERIALIZE));
}

#[test]
fn setters_forward_to_the_pool() {
    let _s = serial();
    let pc = leak(PoolCacheConfig::new("paths-c10", 64));
    pc.setlowat(10);
    pc.sethiwat(500);
    pc.sethardlimit(1000, Some("paths-c10 limit"), 60);
    pc.prime(200);
    let s = pc.pool().stats();
    assert_eq!(s.minitems, 10);
    assert_eq!(s.maxitems, 500);
    assert_eq!(s.hardlimit, 1000);
    assert_eq!(s.minpages as usize, 200usize.div_ceil(s.itemsperpage));
    assert!(s.nitems >= 200);
    assert_ne!(s.maxpages, UNLIMITED);
    struct Hook;
    impl bsdalloc_pool::PoolDrainHook for Hook {
        fn drain(&self, _: PrFlags) {
            CALLED.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    static CALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    pc.set_drain_hook(&Hook);
    pc.reclaim();
    assert!(CALLED.load(std::sync::atomic::Ordering::SeqCst));
    let p = pc.get(PrFlags::WAITOK).unwrap();
    assert_eq!((pc.nget(), pc.nput()), (1, 0));
    // SAFETY: an object of this cache.
    unsafe { pc.put(p) };
    pc.invalidate();
    assert_eq!((pc.nget(), pc.nput()), (1, 1));
}

#[test]
fn vmstat_c_columns() {
    let _s = serial();
    let pc = leak(PoolCacheConfig::new("paths-c13", 64));
    pc.invalidate();
    on_fresh_cpu(|| {
        let objs: Vec<_> = (0..20).map(|_| pc.get(PrFlags::WAITOK).unwrap()).collect();
        for &o in &objs {
            // SAFETY: objects of this cache.
            unsafe { pc.put(o) };
        }
        for _ in 0..20 {
            let o = pc.get(PrFlags::NOWAIT).unwrap();
            // SAFETY: as above.
            unsafe { pc.put(o) };
        }
    });
    let s = pc.stats();
    // 20 pool misses; puts: 20 hits, 2 misses; 20 get+put hits.
    assert_eq!((s.nmiss_global, s.nmiss_pcpu, s.nhit_pcpu), (20, 22, 60));
    let row = format!(
        "{:<11}{:>6}{:>6}{:>5}{:>5}{:>10}{:>11}{:>6.1}{:>12}{:>6.1}",
        "paths-c13",
        s.ncontended,
        15,
        s.nfull,
        0,
        20,
        22,
        100.0 * 2.0 / 22.0,
        82,
        100.0 * 60.0 / 82.0
    );
    let table = pool_cache_vmstat_c(VmstatCOptions::default()).to_string();
    assert!(table.starts_with(
        "Pool cache statistics.\nName         Spin GrpSz Full Emty PoolLayer CacheLayer  Hit%    CpuLayer  Hit%\n"
    ));
    assert!(
        table.lines().any(|l| l == row),
        "row {row:?} not in\n{table}"
    );
    // Caches that never reached the pool are hidden unless verbose.
    let idle = leak(PoolCacheConfig::new("paths-c13-idle", 64));
    let t = pool_cache_vmstat_c(VmstatCOptions::default()).to_string();
    assert!(!t.contains("paths-c13-idle"));
    let t = pool_cache_vmstat_c(VmstatCOptions { verbose: true }).to_string();
    assert!(t.contains("paths-c13-idle"));
    assert_eq!(idle.stats().meta_size, 15);
    // The rows formatter agrees with the live table.
    let one = VmstatCRows {
        rows: &[pc.stats()],
        opts: VmstatCOptions::default(),
    }
    .to_string();
    assert!(one.lines().any(|l| l == row));
    // A number wider than its column still has a space before it (vmstat's
    // printf): 15 groups of 15 and 26082 full ones, not "1526082".
    let mut wide = pc.stats();
    wide.nfull = 26_082;
    let t = VmstatCRows {
        rows: &[wide],
        opts: VmstatCOptions::default(),
    }
    .to_string();
    assert!(t.contains("    15 26082    0 "), "{t}");
    pc.invalidate();
}

#[test]
fn destroy_and_bootstrap_again() {
    let _s = serial();
    static PC: RawPoolCache = RawPoolCache::new(PoolCacheConfig::new("paths-again", 48));
    for round in 0..3 {
        PC.bootstrap();
        let n = pool_cache_count();
        assert!(
            for_each_names().contains(&"paths-again".to_string()),
            "round {round}"
        );
        let objs: Vec<_> = (0..40).map(|_| PC.get(PrFlags::WAITOK).unwrap()).collect();
        for o in objs {
            // SAFETY: objects of PC.
            unsafe { PC.put(o) };
        }
        // SAFETY: nobody else uses PC.
        unsafe { PC.destroy() };
        assert_eq!(pool_cache_count(), n - 1);
        assert!(!PC.is_ready());
    }
    // A created cache's descriptor goes back to its pool.
    let pc = pool_cache_init(PoolCacheConfig::new("paths-created", 16));
    let x = pc.get(PrFlags::WAITOK).unwrap();
    // SAFETY: an object of pc.
    unsafe { pc.put(x) };
    // SAFETY: not used afterwards.
    unsafe { pool_cache_destroy(pc) };
}

fn for_each_names() -> Vec<String> {
    let mut v = Vec::new();
    for_each_pool_cache(|pc| v.push(pc.name().to_string()));
    v
}

#[test]
fn destroy_with_objects_out_refuses() {
    let _s = serial();
    static PC: RawPoolCache = RawPoolCache::new(PoolCacheConfig::new("paths-busy", 48));
    PC.bootstrap();
    let x = PC.get(PrFlags::WAITOK).unwrap();
    // SAFETY: nobody else uses PC.
    let r = std::panic::catch_unwind(|| unsafe { PC.destroy() });
    let msg = r.unwrap_err().downcast::<String>().unwrap();
    assert_eq!(
        *msg,
        "pool_cache_destroy: [paths-busy] pool busy: still out: 1"
    );
    assert!(PC.is_ready(), "a refused destroy leaves the cache usable");
    // SAFETY: an object of PC.
    unsafe { PC.put(x) };
    // SAFETY: as above.
    unsafe { PC.destroy() };
}

#[test]
#[should_panic(expected = "exactly one of PR_WAITOK and PR_NOWAIT")]
fn wait_flags_are_checked() {
    static PC: RawPoolCache = RawPoolCache::new(PoolCacheConfig::new("paths-flags", 8));
    PC.bootstrap();
    PC.get(PrFlags::WAITOK | PrFlags::NOWAIT);
}

#[test]
#[should_panic(expected = "not bootstrapped")]
fn a_cache_must_be_bootstrapped() {
    static PC: RawPoolCache = RawPoolCache::new(PoolCacheConfig::new("paths-nb", 8));
    PC.get(PrFlags::NOWAIT);
}
