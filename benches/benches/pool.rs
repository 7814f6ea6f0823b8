//! P1: pool get+put without a cache, 64 B, one thread, against slab,
//! lockfree-object-pool and mimalloc malloc+free in the same run; plus the
//! memory figures for 1M live 64 B items: pages per item, and resident
//! memory per live byte.

use std::alloc::{GlobalAlloc, Layout};
use std::fmt::Write as _;
use std::hint::black_box;

use bsdalloc_pool::{PoolConfig, PrFlags, RawPool};
use criterion::{Criterion, criterion_group, criterion_main};

static P1: RawPool = RawPool::new(PoolConfig::new("bench-p1", 64));
static P1_VM: RawPool =
    RawPool::new(PoolConfig::new("bench-p1-vm", 64).ipl(bsdalloc_platform::Ipl::Vm));
static MEM: RawPool = RawPool::new(PoolConfig::new("bench-1m", 64));

fn p1(c: &mut Criterion) {
    P1.init();
    P1_VM.init();
    // A live set, as a pool has in use: the measured pair does not empty
    // or fill a page on every iteration.
    let live: Vec<_> = (0..1000)
        .map(|_| P1.get(PrFlags::WAITOK).unwrap())
        .collect();
    let live_vm: Vec<_> = (0..1000)
        .map(|_| P1_VM.get(PrFlags::NOWAIT).unwrap())
        .collect();
    let mut g = c.benchmark_group("P1/get-put-64B");
    g.bench_function("ours", |b| {
        b.iter(|| {
            let p = P1.get(black_box(PrFlags::WAITOK)).unwrap();
            // SAFETY: an item of P1, given back at once.
            unsafe { P1.put(black_box(p)) };
        })
    });
    g.bench_function("ours-ipl-vm-nowait", |b| {
        b.iter(|| {
            let p = P1_VM.get(black_box(PrFlags::NOWAIT)).unwrap();
            // SAFETY: an item of P1_VM, given back at once.
            unsafe { P1_VM.put(black_box(p)) };
        })
    });
    {
        let mut s: slab::Slab<[u8; 64]> = slab::Slab::with_capacity(2048);
        let keys: Vec<_> = (0..1000).map(|_| s.insert([0; 64])).collect();
        g.bench_function("slab", |b| {
            b.iter(|| {
                let k = s.insert(black_box([0; 64]));
                black_box(s.remove(black_box(k)));
            })
        });
        drop(keys);
    }
    {
        let pool = lockfree_object_pool::LinearObjectPool::<[u8; 64]>::new(|| [0; 64], |_| {});
        let keep: Vec<_> = (0..1000).map(|_| pool.pull()).collect();
        g.bench_function("lockfree-object-pool", |b| {
            b.iter(|| {
                let o = pool.pull();
                black_box(&*o);
            })
        });
        drop(keep);
    }
    {
        let mi = mimalloc::MiMalloc;
        let l = Layout::from_size_align(64, 8).unwrap();
        // SAFETY: valid layouts, each freed once with its layout.
        let keep: Vec<_> = (0..1000).map(|_| unsafe { mi.alloc(l) }).collect();
        g.bench_function("mimalloc", |b| {
            b.iter(|| {
                // SAFETY: as above.
                unsafe {
                    let p = mi.alloc(black_box(l));
                    mi.dealloc(black_box(p), l);
                }
            })
        });
        for p in keep {
            // SAFETY: as above.
            unsafe { mi.dealloc(p, l) };
        }
    }
    g.finish();
    for p in live {
        // SAFETY: items of P1.
        unsafe { P1.put(p) };
    }
    for p in live_vm {
        // SAFETY: items of P1_VM.
        unsafe { P1_VM.put(p) };
    }
    memory();
}

/// 1M live 64 B items: pages per item and RSS per live byte.
fn memory() {
    MEM.init();
    let rss = || bsdalloc_platform::resident_bytes().unwrap_or(0);
    // Warm the kernel map and header pools first.
    let w = MEM.get(PrFlags::WAITOK).unwrap();
    // SAFETY: an item of MEM.
    unsafe { MEM.put(w) };
    let before = rss();
    const N: usize = 1 << 20;
    let mut items = Vec::with_capacity(N);
    let vec_bytes = N * std::mem::size_of::<usize>();
    for _ in 0..N {
        let p = MEM.get(PrFlags::WAITOK).unwrap();
        // SAFETY: 64 bytes of a fresh item: touch it as a user would.
        unsafe { p.as_ptr().write_bytes(1, 64) };
        items.push(p);
    }
    let after = rss();
    let s = MEM.stats();
    let live = (N * 64) as f64;
    let grown = after.saturating_sub(before).saturating_sub(vec_bytes) as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### P1 memory: 1M live 64 B items\n\n\
         {} pages of {} bytes for {N} items ({} per page, header on-page: {}): {:.5} pages per item, \
         pool pages / live bytes = {:.3}; resident memory grew {:.1} MiB (less the test's own index): \
         RSS per live byte {:.3} (goal <= 1.1).\n",
        s.npages,
        s.pagesize,
        s.itemsperpage,
        MEM.layout().phinpage(),
        s.npages as f64 / N as f64,
        (s.npages as usize * s.pagesize) as f64 / live,
        grown / (1 << 20) as f64,
        grown / live
    );
    for p in items {
        // SAFETY: items of MEM.
        unsafe { MEM.put(p) };
    }
    bsdalloc_benches::append_extra(&out);
}

criterion_group!(benches, p1);
criterion_main!(benches);
