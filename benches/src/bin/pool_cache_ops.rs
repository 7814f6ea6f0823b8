//! `pool_cache_ops MODE N`: N get+put pairs of one kind, for instruction
//! counting under callgrind. MODE is `pc` (a 64-byte `RawPoolCache`
//! get+put, `PR_NOWAIT`, hot), `typed` (a `PoolCache<[u8; 64]>` box taken
//! and dropped), `kmem` / `kmem-mi` / `malloc9` (K1's churn through
//! kmem, mimalloc or malloc(9)), `depot` (1000 gets then 1000 puts, as G2), `miss` (a typed get that misses and a `destruct`: the
//! miss path to the pool and back), `qcache` (a 4-quantum `vmem_alloc`+`vmem_free` through a
//! quantum cache), `percpu` (one empty `PerCpu::with` section, for
//! reference), `mimalloc` (malloc+free 64 B), or K7's pair: `global`
//! (`GlobalAlloc::alloc`+`dealloc` of 64 B through `bsdalloc::Global`, the
//! facade's global allocator; kmem's default instance on this small map),
//! `global-mi` (the same through `mimalloc::MiMalloc`) or `global-sys`
//! (through `std::alloc::System`, glibc).
//!
//! ```text
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/pool_cache_ops pc 1000000
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/pool_cache_ops pc 2000000
//! ```
//! The difference of the two totals divided by 1,000,000 is the cost of one
//! pair in instructions.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;

use bsdalloc_platform::{Ipl, OS_PAGES, PerCpu, curcpu};
use bsdalloc_pool::PrFlags;
use bsdalloc_pool_cache::{PoolCache, PoolCacheConfig, RawPoolCache, vmem_qcache_init};
use bsdalloc_vmem::{ArenaConfig, VmFlags, vmem_xcreate};

static PC: RawPoolCache = RawPoolCache::new(PoolCacheConfig::new("ops-64", 64));

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "pc".into());
    let n: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    curcpu();
    // A small kernel map: valgrind cannot reserve the default 64 GiB.
    let map = bsdalloc_uvm_pages::KernelMap::bootstrap(bsdalloc_uvm_pages::KmConfig {
        size: 1 << 30,
        ..bsdalloc_uvm_pages::KmConfig::new()
    })
    .unwrap();
    bsdalloc_pool::pool_subsystem_init(map);
    match mode.as_str() {
        "pc" => {
            PC.bootstrap();
            let warm = PC.get(PrFlags::WAITOK).unwrap();
            // SAFETY: an object of PC.
            unsafe { PC.put(warm) };
            pc_loop(n);
        }
        "typed" => {
            let c: PoolCache<[u8; 64]> = PoolCache::new("ops-typed", Ipl::None, || [0; 64]);
            drop(c.get());
            typed_loop(&c, n);
        }
        "qcache" => {
            let a = vmem_xcreate(
                ArenaConfig::new("ops-qc", 4096).qcache_max(16 * 4096),
                1 << 20,
                1 << 30,
            )
            .unwrap();
            vmem_qcache_init(a);
            let f = VmFlags::NOSLEEP | VmFlags::INSTANTFIT;
            let x = a.alloc(4 * 4096, f).unwrap();
            a.free(x, 4 * 4096);
            for _ in 0..n {
                let x = a.alloc(black_box(4 * 4096), f).unwrap();
                a.free(black_box(x), 4 * 4096);
            }
        }
        "depot" => {
            // G2's pattern: 1000 gets, then 1000 puts; one group in 15
            // goes through the depot. N counts get+put pairs.
            PC.bootstrap();
            let mut v = Vec::with_capacity(1000);
            for _ in 0..n / 1000 {
                for _ in 0..1000 {
                    v.push(PC.get(PrFlags::NOWAIT).unwrap());
                }
                for p in v.drain(..) {
                    // SAFETY: objects of PC.
                    unsafe { PC.put(black_box(p)) };
                }
            }
        }
        "malloc9" => {
            // K6: K1's churn through malloc(9) with M_TEMP.
            use bsdalloc_kmalloc::{M_TEMP, M_WAITOK, free, malloc};
            let mut rng = bsdalloc_benches::Xorshift::new(11);
            let size = |rng: &mut bsdalloc_benches::Xorshift| {
                let base = 1usize << (3 + rng.below(9));
                base + rng.below(base as u64 + 1) as usize
            };
            let mut live: Vec<*mut u8> = (0..10_000)
                .map(|_| malloc(size(&mut rng), &M_TEMP, M_WAITOK).unwrap().as_ptr())
                .collect();
            for _ in 0..n {
                let i = rng.below(10_000) as usize;
                // SAFETY: a live M_TEMP block.
                unsafe { free(live[i], &M_TEMP) };
                live[i] = black_box(malloc(size(&mut rng), &M_TEMP, M_WAITOK).unwrap().as_ptr());
            }
        }
        "kmem" | "kmem-mi" => {
            // K1's churn: a live set of 10k blocks of 8 B-4 KiB, each op
            // frees a random one and allocates a new size. N counts
            // free+alloc pairs.
            let mi = mode == "kmem-mi";
            let mut rng = bsdalloc_benches::Xorshift::new(11);
            let size = |rng: &mut bsdalloc_benches::Xorshift| {
                let base = 1usize << (3 + rng.below(9));
                base + rng.below(base as u64 + 1) as usize
            };
            let alloc = |s: usize| -> *mut u8 {
                if mi {
                    // SAFETY: a valid non-zero layout.
                    unsafe { mimalloc::MiMalloc.alloc(Layout::from_size_align(s, 8).unwrap()) }
                } else {
                    bsdalloc_kmem::kmem_alloc(s, bsdalloc_kmem::KM_SLEEP)
                        .unwrap()
                        .as_ptr()
                }
            };
            let mut live: Vec<(*mut u8, usize)> = (0..10_000)
                .map(|_| {
                    let s = size(&mut rng);
                    (alloc(s), s)
                })
                .collect();
            for _ in 0..n {
                let i = rng.below(10_000) as usize;
                let (p, s) = live[i];
                // SAFETY: a live block with its size (and layout).
                unsafe {
                    if mi {
                        mimalloc::MiMalloc.dealloc(p, Layout::from_size_align(s, 8).unwrap());
                    } else {
                        bsdalloc_kmem::kmem_free(p, s);
                    }
                }
                let s = size(&mut rng);
                live[i] = (black_box(alloc(s)), s);
            }
        }
        "miss" => {
            // G4's miss cycle without the constructor's work: a typed
            // cache whose every get misses (the box goes back to the pool
            // through destruct), so the count is the miss path alone.
            let c: PoolCache<[u64; 8]> = PoolCache::new("ops-miss", Ipl::None, || [1; 8]);
            for _ in 0..n {
                let b = c.get();
                black_box(b[3]);
                b.destruct();
            }
        }
        "percpu" => {
            let p: PerCpu<u64> = PerCpu::new(&OS_PAGES).unwrap();
            for _ in 0..n {
                p.with(|c| {
                    black_box(c);
                });
            }
        }
        "mimalloc" => {
            let mi = mimalloc::MiMalloc;
            let l = Layout::from_size_align(64, 8).unwrap();
            for _ in 0..n {
                // SAFETY: a valid layout, freed once with it.
                unsafe {
                    let p = mi.alloc(black_box(l));
                    mi.dealloc(black_box(p), l);
                }
            }
        }
        "global" => global_loop(&bsdalloc::Global, n),
        "global-mi" => global_loop(&mimalloc::MiMalloc, n),
        "global-sys" => global_loop(&std::alloc::System, n),
        other => panic!("unknown mode {other}"),
    }
    println!("{n}");
}

/// The measured loop, alone in its function (as a caller would have it).
#[inline(never)]
fn pc_loop(n: u64) {
    for _ in 0..n {
        let p = PC.get(PrFlags::NOWAIT).unwrap();
        // SAFETY: an object of PC, given back at once.
        unsafe { PC.put(black_box(p)) };
    }
}

#[inline(never)]
fn typed_loop(c: &PoolCache<[u8; 64]>, n: u64) {
    for _ in 0..n {
        black_box(&*c.get());
    }
}

/// K7's pair: `alloc`+`dealloc` of 64 B through a global allocator, as a
/// `#[global_allocator]` is called (one warm-up pair first).
#[inline(never)]
fn global_loop<A: GlobalAlloc>(a: &A, n: u64) {
    let l = Layout::from_size_align(64, 8).unwrap();
    // SAFETY: a valid nonzero layout; each block is freed once with it.
    unsafe { a.dealloc(a.alloc(l), l) };
    for _ in 0..n {
        // SAFETY: as above.
        unsafe {
            let p = a.alloc(black_box(l));
            a.dealloc(black_box(p), l);
        }
    }
}
