//! Other CPUs' groups (C8, C11): invalidate from another thread reaches
//! the groups of idle and sleeping threads (the cross-call runs on their
//! behalf), a thread's exit gives its groups to the depot, a CPU slot that
//! is initialised again holds nothing, and the pool's reclaim — also the
//! pagedaemon's `pool_drain` — invalidates the cache.

use std::ptr::NonNull;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use bsdalloc_platform::{CpuId, curcpu};
use bsdalloc_pool::PrFlags;
use bsdalloc_pool_cache::*;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

struct Count(AtomicU64);

impl ObjectDtor for Count {
    fn destruct(&self, _obj: NonNull<u8>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn cache(name: &'static str) -> (&'static RawPoolCache, &'static Count) {
    let d: &'static Count = Box::leak(Box::new(Count(AtomicU64::new(0))));
    (pool_cache_init(PoolCacheConfig::new(name, 64).dtor(d)), d)
}

/// A thread that caches `n` objects of `pc` on its CPU, reports its CPU,
/// then sleeps until told to go on; it then takes `n` objects again and
/// gives them back.
fn idle_thread(
    pc: &'static RawPoolCache,
    n: usize,
) -> (
    CpuId,
    mpsc::Sender<()>,
    std::thread::JoinHandle<CpuCacheStats>,
) {
    let (cpu_tx, cpu_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        let objs: Vec<_> = (0..n).map(|_| pc.get(PrFlags::WAITOK).unwrap()).collect();
        for o in objs {
            // SAFETY: objects of pc.
            unsafe { pc.put(o) };
        }
        cpu_tx.send(curcpu()).unwrap();
        go_rx.recv().unwrap(); // asleep in a system call
        let again: Vec<_> = (0..n).map(|_| pc.get(PrFlags::WAITOK).unwrap()).collect();
        for o in again {
            // SAFETY: objects of pc.
            unsafe { pc.put(o) };
        }
        pc.local_stats()
    });
    (cpu_rx.recv().unwrap(), go_tx, t)
}

#[test]
fn invalidate_reaches_idle_threads_groups() {
    let _s = serial();
    let (pc, d) = cache("xcpu-idle");
    let threads: Vec<_> = (0..3).map(|_| idle_thread(pc, 20)).collect();
    assert_eq!(pc.stats().cpu_cached, 60);
    assert_eq!(pc.pool().stats().nout, 60);
    pc.invalidate();
    assert_eq!(
        pc.stats().cpu_cached,
        0,
        "every sleeping CPU's groups were taken"
    );
    assert_eq!(pc.pool().stats().nout, 0);
    assert_eq!(d.0.load(Ordering::SeqCst), 60);
    for (_, go, t) in threads {
        go.send(()).unwrap();
        let s = t.join().unwrap();
        // Its groups were gone: the 20 gets went to the pool again.
        assert_eq!(s.pcmisses, 40);
        // (Its exit left its groups in the depot; empty it for the next.)
        pc.invalidate();
    }
    pc.invalidate();
    assert_eq!(pc.pool().stats().nout, 0);
    // SAFETY: not used afterwards.
    unsafe { pool_cache_destroy(pc) };
}

#[test]
fn thread_exit_gives_its_groups_back() {
    let _s = serial();
    let (pc, d) = cache("xcpu-exit");
    std::thread::spawn(move || {
        let objs: Vec<_> = (0..17).map(|_| pc.get(PrFlags::WAITOK).unwrap()).collect();
        for o in objs {
            // SAFETY: objects of pc.
            unsafe { pc.put(o) };
        }
        assert_eq!(pc.local_stats().cached, 17);
    })
    .join()
    .unwrap();
    let s = pc.stats();
    assert_eq!(s.cpu_cached, 0, "no CPU holds the exited thread's objects");
    assert_eq!((s.nfull, s.npartial), (1, 1), "15 + 2 objects in the depot");
    assert_eq!(
        d.0.load(Ordering::SeqCst),
        0,
        "still cached, not destructed"
    );
    // Another thread's gets come from the depot, not the pool.
    std::thread::spawn(move || {
        let o = pc.get(PrFlags::NOWAIT).unwrap();
        // SAFETY: an object of pc.
        unsafe { pc.put(o) };
        let s = pc.local_stats();
        assert_eq!((s.misses, s.pcmisses), (1, 0));
    })
    .join()
    .unwrap();
    pc.invalidate();
    assert_eq!(d.0.load(Ordering::SeqCst), 17);
    // SAFETY: not used afterwards.
    unsafe { pool_cache_destroy(pc) };
}

#[test]
fn cpu_init_clears_a_cpu() {
    let _s = serial();
    let (pc, _d) = cache("xcpu-init");
    let (cpu, go, t) = idle_thread(pc, 5);
    assert_eq!(pc.stats().cpu_cached, 5);
    pool_cache_cpu_init(cpu);
    let s = pc.stats();
    assert_eq!((s.cpu_cached, s.npartial), (0, 1));
    go.send(()).unwrap();
    t.join().unwrap();
    pc.invalidate();
    // SAFETY: not used afterwards.
    unsafe { pool_cache_destroy(pc) };
}

#[test]
fn reclaim_and_the_pagedaemon_invalidate() {
    let _s = serial();
    let (pc, d) = cache("xcpu-reclaim");
    let (_, go, t) = idle_thread(pc, 30);
    pc.reclaim();
    assert_eq!(
        d.0.load(Ordering::SeqCst),
        30,
        "pool_cache_reclaim invalidates"
    );
    go.send(()).unwrap();
    t.join().unwrap();
    // Now through the kernel map's pagedaemon: it drains the pools, and
    // the pool's reclaim invalidates its cache.
    let (_, go, t) = idle_thread(pc, 30);
    let before = d.0.load(Ordering::SeqCst);
    let map = bsdalloc_pool::kernel_map();
    let mut passes = 0;
    while d.0.load(Ordering::SeqCst) == before && passes < 10 * bsdalloc_pool::pool_count() {
        map.pagedaemon();
        passes += 1;
    }
    assert!(
        d.0.load(Ordering::SeqCst) >= before + 30,
        "the pagedaemon reached the cache"
    );
    go.send(()).unwrap();
    t.join().unwrap();
    pc.invalidate();
    // SAFETY: not used afterwards.
    unsafe { pool_cache_destroy(pc) };
}
