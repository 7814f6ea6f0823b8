//! K5, page-layer part: 16 KiB-4 MiB allocations, every page touched, then
//! freed, through uvm_km_alloc(WIRED) against mimalloc and glibc malloc in
//! the same run; plus our OS calls per operation in steady state (goal:
//! none), from the map's own counters.

use std::alloc::{GlobalAlloc, Layout};
use std::fmt::Write as _;
use std::hint::black_box;

use bsdalloc_benches::Xorshift;
use bsdalloc_uvm_pages::{KernelMap, KmConfig, UvmFlags};
use criterion::{Criterion, criterion_group, criterion_main};

const PS: usize = 4096;

fn size(rng: &mut Xorshift) -> usize {
    // 4 to 1024 pages (16 KiB to 4 MiB), log-uniform.
    let shift = 2 + rng.below(9) as u32;
    let base = 1usize << shift;
    (base + rng.below(base as u64) as usize).min(1024) * PS
}

fn touch(p: *mut u8, len: usize) {
    for off in (0..len).step_by(PS) {
        // SAFETY: p..p+len is a live allocation.
        unsafe { p.add(off).write_volatile(1) };
    }
}

fn k5(c: &mut Criterion) {
    let map = KernelMap::bootstrap(KmConfig::new()).unwrap();
    let mut g = c.benchmark_group("K5/pages-16K-4M-touch");
    {
        let mut rng = Xorshift::new(5);
        g.bench_function("ours", |b| {
            b.iter(|| {
                let len = size(&mut rng);
                let p = map.uvm_km_alloc(len, 0, UvmFlags::WIRED).unwrap();
                touch(p.as_ptr(), len);
                map.uvm_km_free(black_box(p), len, UvmFlags::WIRED);
            })
        });
    }
    {
        let mut rng = Xorshift::new(5);
        let mi = mimalloc::MiMalloc;
        g.bench_function("mimalloc", |b| {
            b.iter(|| {
                let len = size(&mut rng);
                let l = Layout::from_size_align(len, PS).unwrap();
                // SAFETY: a valid non-zero layout, freed with the same.
                unsafe {
                    let p = mi.alloc(l);
                    touch(p, len);
                    mi.dealloc(black_box(p), l);
                }
            })
        });
    }
    {
        let mut rng = Xorshift::new(5);
        g.bench_function("glibc", |b| {
            b.iter(|| {
                let len = size(&mut rng);
                // SAFETY: malloc/free pair.
                unsafe {
                    let p = libc::malloc(len).cast::<u8>();
                    touch(p, len);
                    libc::free(black_box(p).cast());
                }
            })
        });
    }
    g.finish();

    // OS calls per operation in steady state.
    let mut rng = Xorshift::new(6);
    for _ in 0..2000 {
        let len = size(&mut rng);
        let p = map.uvm_km_alloc(len, 0, UvmFlags::WIRED).unwrap();
        map.uvm_km_free(p, len, UvmFlags::WIRED);
    }
    let before = map.stats();
    const N: u64 = 20_000;
    for _ in 0..N {
        let len = size(&mut rng);
        let p = map.uvm_km_alloc(len, 0, UvmFlags::WIRED).unwrap();
        touch(p.as_ptr(), len);
        map.uvm_km_free(p, len, UvmFlags::WIRED);
    }
    let after = map.stats();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### K5 (page layer): OS calls per operation in steady state\n\n\
         uvm_km_alloc(WIRED) + touch + uvm_km_free of 16 KiB-4 MiB, {N} operations after 2000 warm-up ones, \
         16 MiB free-page target: {} page-source calls ({:.4} per operation), {} pages returned to the OS.\n\n{}\n",
        after.os_calls - before.os_calls,
        (after.os_calls - before.os_calls) as f64 / N as f64,
        after.pages_returned - before.pages_returned,
        after
    );
    bsdalloc_benches::append_extra(&out);
}

criterion_group!(benches, k5);
criterion_main!(benches);
