//! uvm_km behaviour: every flag, alignment and zeroing, the budget and the
//! pagedaemon (the rump `uvmwait` shape), drain hooks, arena stacking on
//! `uvm_km_kmem_alloc`, guard pages, and each bad input.

use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::time::Duration;

use bsdalloc_platform::{
    Delivery, Ipl, OS_PAGES, curcpu, intr_establish, intr_trigger, splvm, splx,
};
use bsdalloc_uvm_pages::{DrainHook, KernelMap, KmConfig, KmemSource, UvmFlags};
use bsdalloc_vmem::{Arena, ArenaConfig, SizeType, VmFlags, VmemError};

const W: UvmFlags = UvmFlags::WIRED;
const P: UvmFlags = UvmFlags::PAGEABLE;
const V: UvmFlags = UvmFlags::VAONLY;

fn map(limit_pages: usize, free_target_pages: usize) -> &'static KernelMap {
    KernelMap::bootstrap(KmConfig {
        size: 1 << 30,
        limit_pages,
        free_target_pages,
        pages: &OS_PAGES,
    })
    .unwrap()
}

fn leak<T>(t: T) -> &'static T {
    Box::leak(Box::new(t))
}

#[test]
fn wired_memory_is_resident_aligned_and_zeroed() {
    let m = map(0, 1024);
    let ps = m.page_size();
    for align in [0, ps, 16 * ps, 64 * ps] {
        let p = m
            .uvm_km_alloc(5 * ps + 1, align, W | UvmFlags::ZERO)
            .unwrap();
        let a = p.as_ptr().addr();
        assert_eq!(a % align.max(ps), 0, "aligned to {align:#x}");
        // SAFETY: 6 pages (5*ps+1 rounded up) of wired memory.
        let s = unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), 6 * ps) };
        assert!(s.iter().all(|&b| b == 0));
        s.fill(0x5A);
        assert_eq!(m.stats().wired_pages, 6);
        m.uvm_km_free(p, 5 * ps + 1, W);
    }
    let st = m.stats();
    assert_eq!(st.wired_pages, 0);
    assert_eq!(st.va_in_use, [0; 4]);
}

#[test]
fn reused_pages_make_no_os_call_and_zero_clears_them() {
    let m = map(0, 1024);
    let ps = m.page_size();
    let p = m.uvm_km_alloc(4 * ps, 0, W).unwrap();
    // SAFETY: 4 wired pages.
    unsafe { p.as_ptr().write_bytes(0xEE, 4 * ps) };
    m.uvm_km_free(p, 4 * ps, W);
    assert_eq!(
        m.stats().cached_pages,
        4,
        "freed pages stay committed within the free target"
    );
    let calls = m.stats().os_calls;
    let q = m.uvm_km_alloc(4 * ps, 0, W | UvmFlags::ZERO).unwrap();
    assert_eq!(m.stats().os_calls, calls, "steady state: no OS call");
    assert_eq!(m.stats().cached_pages, 0);
    // SAFETY: 4 wired pages.
    let s = unsafe { std::slice::from_raw_parts(q.as_ptr(), 4 * ps) };
    assert!(
        s.iter().all(|&b| b == 0),
        "UVM_KMF_ZERO clears reused pages"
    );
    m.uvm_km_free(q, 4 * ps, W);
    assert_eq!(m.pagedaemon(), 4, "the pagedaemon gives cached pages back");
    assert_eq!(m.stats().committed_pages, 0);
}

#[test]
fn zero_holds_over_a_fragmented_mix_of_cached_and_fresh_pages() {
    let m = map(0, 4096);
    let ps = m.page_size();
    // Cache every other page of a 64-page range: 32 runs of each kind.
    let big = m.uvm_km_alloc(64 * ps, 0, W).unwrap();
    // SAFETY: 64 wired pages.
    unsafe { big.as_ptr().write_bytes(0xAB, 64 * ps) };
    m.uvm_km_free(big, 64 * ps, W);
    m.pagedaemon(); // all back to the OS
    let singles: Vec<_> = (0..64).map(|_| m.uvm_km_alloc(ps, 0, W).unwrap()).collect();
    for (i, p) in singles.iter().enumerate() {
        // SAFETY: one wired page each.
        unsafe { p.as_ptr().write_bytes(0xCD, ps) };
        if i % 2 == 1 {
            m.uvm_km_free(*p, ps, W); // cached, dirty
        }
    }
    for (i, p) in singles.iter().enumerate() {
        if i % 2 == 0 {
            m.uvm_km_free(*p, ps, W);
        }
    }
    m.pagedaemon();
    let again: Vec<_> = (0..64).map(|_| m.uvm_km_alloc(ps, 0, W).unwrap()).collect();
    for (i, p) in again.iter().enumerate() {
        // SAFETY: one wired page each.
        unsafe { p.as_ptr().write_bytes(0xEF, ps) };
        if i % 2 == 0 {
            m.uvm_km_free(*p, ps, W);
        }
    }
    // Now every other page of the region is cached and dirty; ask for a
    // range spanning both kinds, zeroed.
    let z = m.uvm_km_alloc(32 * ps, 0, W | UvmFlags::ZERO).unwrap();
    // SAFETY: 32 wired pages.
    let s = unsafe { std::slice::from_raw_parts(z.as_ptr(), 32 * ps) };
    assert!(
        s.iter().all(|&b| b == 0),
        "UVM_KMF_ZERO over a fragmented range"
    );
    m.uvm_km_free(z, 32 * ps, W);
    for (i, p) in again.iter().enumerate() {
        if i % 2 == 1 {
            m.uvm_km_free(*p, ps, W);
        }
    }
    assert_eq!(m.stats().wired_pages, 0);
}

#[test]
fn pageable_memory_is_demand_zero() {
    let m = map(0, 1024);
    let ps = m.page_size();
    let p = m.uvm_km_alloc(16 * ps, 0, P).unwrap();
    // SAFETY: 16 pageable pages, readable and writable.
    let s = unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), 16 * ps) };
    assert!(s.iter().all(|&b| b == 0));
    s[3 * ps] = 1;
    assert_eq!(m.stats().pageable_pages, 16);
    m.uvm_km_free(p, 16 * ps, P);
    // Pageable pages never stay cached: the next ones read as zero again.
    assert_eq!(m.stats().cached_pages, 0);
    let q = m.uvm_km_alloc(16 * ps, 0, P).unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { *q.as_ptr().add(3 * ps) }, 0);
    m.uvm_km_free(q, 16 * ps, P);
}

#[test]
fn vaonly_is_address_space_until_entered() {
    let m = map(0, 0);
    let ps = m.page_size();
    let before = m.stats().committed_pages;
    let p = m.uvm_km_alloc(8 * ps, 0, V | UvmFlags::COLORMATCH).unwrap();
    assert_eq!(m.stats().committed_pages, before, "no pages");
    assert_eq!(m.stats().va_in_use[2], 8 * ps);
    let q = NonNull::new(p.as_ptr().wrapping_add(2 * ps)).unwrap();
    m.enter(q, 2 * ps, UvmFlags::empty()).unwrap();
    // SAFETY: two entered pages.
    unsafe { q.as_ptr().add(ps).write(9) };
    assert_eq!(m.stats().committed_pages, before + 2);
    m.remove(q, 2 * ps);
    m.enter(q, ps, UvmFlags::empty()).unwrap(); // left entered: freed with the range
    m.uvm_km_free(p, 8 * ps, V);
    assert_eq!(m.stats().committed_pages, before);
    assert_eq!(m.stats().wired_pages, 0);
}

#[test]
fn exec_trylock_and_waitva_are_accepted() {
    let m = map(0, 0);
    let ps = m.page_size();
    let p = m
        .uvm_km_alloc(
            ps,
            0,
            W | UvmFlags::EXEC | UvmFlags::TRYLOCK | UvmFlags::WAITVA,
        )
        .unwrap();
    m.uvm_km_free(p, ps, W);
}

#[test]
fn address_space_shortage_fails_or_waits_with_waitva() {
    let m = KernelMap::bootstrap(KmConfig {
        size: 96 * 4096,
        limit_pages: 0,
        free_target_pages: 0,
        pages: &OS_PAGES,
    })
    .unwrap();
    let ps = m.page_size();
    // The VA-only region of a 96-page map holds 16 pages.
    let all = m.uvm_km_alloc(16 * ps, 0, V).unwrap();
    assert!(m.uvm_km_alloc(ps, 0, V).is_none(), "no address space: 0");
    let waiter = std::thread::spawn(move || {
        m.uvm_km_alloc(ps, 0, V | UvmFlags::WAITVA)
            .map(|p| p.as_ptr() as usize)
    });
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        !waiter.is_finished(),
        "UVM_KMF_WAITVA sleeps for address space"
    );
    m.uvm_km_free(all, 16 * ps, V);
    let got = waiter.join().unwrap().expect("woken by the free");
    m.uvm_km_free(NonNull::new(got as *mut u8).unwrap(), ps, V);
}

/// The rump `uvmwait` shape at this layer: a 1 MiB budget; hold 32 pages,
/// exhaust the rest with NOWAIT (failing before the limit is passed), then
/// a sleeping allocation blocks until another thread frees the 32 pages.
#[test]
fn budget_sleep_until_memory_comes_back() {
    let m = map(256, 0);
    let ps = m.page_size();
    let held: Vec<usize> = (0..32)
        .map(|_| m.uvm_km_alloc(ps, 0, W).unwrap().as_ptr() as usize)
        .collect();
    let mut rest = vec![];
    while let Some(p) = m.uvm_km_alloc(ps, 0, W | UvmFlags::NOWAIT) {
        rest.push(p);
        assert!(m.stats().committed_pages <= 256, "never past the limit");
    }
    assert_eq!(held.len() + rest.len(), 256);
    assert!(
        m.uvm_km_alloc(ps, 0, W | UvmFlags::CANFAIL).is_none(),
        "CANFAIL fails after a pagedaemon pass"
    );
    let runs = m.stats().pagedaemon_runs;
    assert!(runs >= 1);
    let sleeper =
        std::thread::spawn(move || m.uvm_km_alloc(2 * ps, 0, W).unwrap().as_ptr() as usize);
    while m.stats().sleeps == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        !sleeper.is_finished(),
        "the WAITOK allocation waits for memory"
    );
    let freer = std::thread::spawn(move || {
        for a in held {
            m.uvm_km_free(NonNull::new(a as *mut u8).unwrap(), ps, W);
        }
    });
    freer.join().unwrap();
    let got = sleeper.join().unwrap();
    m.uvm_km_free(NonNull::new(got as *mut u8).unwrap(), 2 * ps, W);
    for p in rest {
        m.uvm_km_free(p, ps, W);
    }
    let st = m.stats();
    assert_eq!((st.wired_pages, st.committed_pages), (0, 0));
}

/// A "pool" that holds pages of its map and gives them back when the
/// pagedaemon asks: its state is the hook's own `self`.
struct HoldingPool {
    map: &'static KernelMap,
    held: AtomicPtr<u8>,
    pages: usize,
    calls: AtomicUsize,
}

impl DrainHook for HoldingPool {
    fn drain(&self, flags: UvmFlags) {
        assert!(flags.contains(UvmFlags::NOWAIT));
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(p) = NonNull::new(self.held.swap(ptr::null_mut(), Ordering::SeqCst)) {
            self.map
                .uvm_km_free(p, self.pages * self.map.page_size(), W);
        }
    }
}

#[test]
fn pagedaemon_runs_drain_hooks_on_shortage() {
    let m = map(16, 16);
    let ps = m.page_size();
    // A pool holds 8 pages it would give back if asked; another, empty,
    // is asked too and sees its own state.
    let pool = leak(HoldingPool {
        map: m,
        held: AtomicPtr::new(m.uvm_km_alloc(8 * ps, 0, W).unwrap().as_ptr()),
        pages: 8,
        calls: AtomicUsize::new(0),
    });
    let empty = leak(HoldingPool {
        map: m,
        held: AtomicPtr::new(ptr::null_mut()),
        pages: 0,
        calls: AtomicUsize::new(0),
    });
    m.register_drain_hook(pool);
    m.register_drain_hook(empty);
    let a = m.uvm_km_alloc(8 * ps, 0, W).unwrap();
    // 16 of 16 pages in use: the next NOWAIT request needs the pool's pages.
    let b = m
        .uvm_km_alloc(4 * ps, 0, W | UvmFlags::NOWAIT)
        .expect("the drain hook freed memory");
    assert_eq!(pool.calls.load(Ordering::SeqCst), 1);
    assert_eq!(empty.calls.load(Ordering::SeqCst), 1);
    assert!(pool.held.load(Ordering::SeqCst).is_null());
    assert!(m.stats().pagedaemon_runs >= 1);
    m.uvm_km_free(a, 8 * ps, W);
    m.uvm_km_free(b, 4 * ps, W);
}

#[test]
fn map_addresses_become_pointers_into_the_reservation() {
    let m = map(0, 0);
    let ps = m.page_size();
    let va = m
        .uvm_km_kmem_alloc(m.kmem_arena(), 2 * ps, VmFlags::SLEEP)
        .unwrap();
    let p = m.va_ptr(va + ps).unwrap();
    assert_eq!(p.as_ptr().addr(), va + ps);
    // SAFETY: the second page of a wired kmem allocation.
    unsafe { p.as_ptr().write_bytes(0x5A, ps) };
    let (base, size) = m.range();
    assert!(m.va_ptr(base).is_some());
    assert!(m.va_ptr(base + size).is_none(), "one past the map");
    assert!(m.va_ptr(base - 1).is_none());
    m.uvm_km_kmem_free(m.kmem_arena(), va, 2 * ps);
}

#[test]
fn arenas_stack_on_kmem_alloc_like_netbsds_kmem_arenas() {
    let m = map(0, 64);
    let ps = m.page_size();
    // kmem_arena → kmem_va_arena ("kva", quantum cache of 16 pages) and
    // vmem-va (16x imports) → vmem-meta (backed through uvm_km_kmem_alloc).
    let kmem: &'static Arena = m.kmem_arena();
    let kva: &'static Arena = leak(
        Arena::with_config(
            ArenaConfig {
                source: Some(kmem),
                qcache_max: 16 * ps,
                ipl: Ipl::Vm,
                ..ArenaConfig::new("kva", ps)
            },
            0,
            0,
        )
        .unwrap(),
    );
    let vmem_va: &'static Arena = leak(
        Arena::with_config(
            ArenaConfig {
                source: Some(kmem),
                flags: VmFlags::NOSLEEP | VmFlags::LARGEIMPORT,
                ipl: Ipl::Vm,
                ..ArenaConfig::new("vmem-va", ps)
            },
            0,
            0,
        )
        .unwrap(),
    );
    let src: &'static KmemSource = leak(KmemSource::new(m, vmem_va));
    let meta = Arena::with_config(
        ArenaConfig {
            source: Some(src),
            ipl: Ipl::Vm,
            ..ArenaConfig::new("vmem-meta", 64)
        },
        0,
        0,
    )
    .unwrap();
    let x = meta
        .alloc(1000, VmFlags::NOSLEEP | VmFlags::INSTANTFIT)
        .unwrap();
    // SAFETY: backed memory from the stack.
    unsafe { (x as *mut u8).write_bytes(0xC3, 1000) };
    assert!(
        vmem_va.size(SizeType::ALL) >= 16 * ps,
        "vmem-va imported 16x"
    );
    assert!(m.stats().wired_pages >= 1);
    let k = m.uvm_km_kmem_alloc(kva, 3 * ps, VmFlags::SLEEP).unwrap();
    // SAFETY: 3 backed pages.
    unsafe { (k as *mut u8).add(2 * ps).write(1) };
    m.uvm_km_kmem_free(kva, k, 3 * ps);
    meta.free(x, 1000);
    assert_eq!(meta.stats().nspans, 0, "vmem-meta released its span");
    assert_eq!(m.stats().wired_pages, 0);
    assert_eq!(m.stats().va_in_use[3], 0);
    kva.assert_sane();
    vmem_va.assert_sane();
    assert!(!m.va_starved());
}

#[test]
fn kmem_alloc_nosleep_fails_cleanly_on_shortage() {
    let m = map(4, 0);
    let ps = m.page_size();
    let kmem = m.kmem_arena();
    let a = m.uvm_km_kmem_alloc(kmem, 4 * ps, VmFlags::NOSLEEP).unwrap();
    let va_before = kmem.size(SizeType::ALLOC);
    assert_eq!(
        m.uvm_km_kmem_alloc(kmem, ps, VmFlags::NOSLEEP),
        Err(VmemError::NoMemory)
    );
    assert_eq!(
        kmem.size(SizeType::ALLOC),
        va_before,
        "the address space went back"
    );
    m.uvm_km_kmem_free(kmem, a, 4 * ps);
}

#[test]
fn stats_display() {
    let m = map(100, 8);
    let s = m.stats().to_string();
    assert!(
        s.contains("kernel VA reserved")
            && s.contains("limit 100")
            && s.contains("pagedaemon runs"),
        "{s}"
    );
}

// ---- guard pages: the page after the object faults ----

#[test]
fn guard_page_faults_on_overrun() {
    if std::env::var_os("BSDALLOC_GUARD_CHILD").is_some() {
        let m = map(0, 64);
        let ps = m.page_size();
        // Leave committed pages cached where the guard will be: a guard
        // over a reused page must still fault.
        let warm = m.uvm_km_alloc(3 * ps, 0, W).unwrap();
        m.uvm_km_free(warm, 3 * ps, W);
        assert!(m.stats().cached_pages >= 3);
        let p = m.uvm_km_alloc_guarded(ps, 1, W).unwrap();
        assert_eq!(p, warm, "instant fit reuses the cached range");
        // SAFETY: the last byte of the object.
        unsafe { p.as_ptr().add(ps - 1).write(1) };
        // SAFETY: not safe, on purpose: one byte past the object, into the
        // guard page; this child process must die of SIGSEGV here.
        unsafe { std::ptr::write_volatile(p.as_ptr().add(ps), 1) };
        std::process::exit(0); // not reached: the write faults
    }
    let m = map(0, 0);
    let ps = m.page_size();
    let p = m.uvm_km_alloc_guarded(2 * ps, 1, W).unwrap();
    // SAFETY: inside the object.
    unsafe { p.as_ptr().add(2 * ps - 1).write(1) };
    m.uvm_km_free_guarded(p, 2 * ps, 1, W);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "guard_page_faults_on_overrun",
            "--test-threads=1",
        ])
        .env("BSDALLOC_GUARD_CHILD", "1")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    // Plainly, the child dies of SIGSEGV; under AddressSanitizer its own
    // handler reports the SEGV and exits non-zero instead.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let segv = out.status.signal() == Some(libc_sigsegv())
        || (!out.status.success() && stderr.contains("SEGV on unknown address"));
    assert!(segv, "the overrun must fault: {:?}\n{stderr}", out.status);
}

fn libc_sigsegv() -> i32 {
    11
}

// ---- bad input ----

#[test]
#[should_panic(expected = "uvm_km_alloc: size 0")]
fn alloc_size_zero() {
    map(0, 0).uvm_km_alloc(0, 0, W);
}

#[test]
#[should_panic(expected = "uvm_km_alloc: unknown flags 0x100")]
fn alloc_unknown_flags_from_a_raw_word() {
    // A caller passing a C flag word keeps its unknown bits (from_bits_retain)
    // and uvm_km_alloc refuses them; from_bits refuses them at once.
    assert_eq!(UvmFlags::from_bits(0x101), None);
    let raw = UvmFlags::from_bits_retain(0x101);
    assert_eq!(raw.unknown(), 0x100);
    assert_eq!(format!("{raw:?}"), "UVM_KMF_WIRED | 0x100");
    map(0, 0).uvm_km_alloc(4096, 0, raw);
}

#[test]
fn flags_print_netbsd_names() {
    assert_eq!(
        format!("{:?}", W | UvmFlags::ZERO),
        "UVM_KMF_WIRED | UVM_KMF_ZERO"
    );
    assert_eq!(format!("{:?}", UvmFlags::empty()), "0");
    assert_eq!(UvmFlags::TYPEMASK.bits(), 0x7);
    assert_eq!((V | UvmFlags::NOWAIT).typ(), V);
    // The mask is no flag of its own: it names nothing when printed.
    assert_eq!(
        format!("{:?}", UvmFlags::TYPEMASK),
        "UVM_KMF_WIRED | UVM_KMF_PAGEABLE | UVM_KMF_VAONLY"
    );
}

#[test]
#[should_panic(
    expected = "uvm_km_alloc: flags UVM_KMF_WIRED | UVM_KMF_PAGEABLE must contain exactly one type (got 0x3)"
)]
fn alloc_two_types_names_them() {
    map(0, 0).uvm_km_alloc(4096, 0, W | P);
}

#[test]
#[should_panic(expected = "alignment 0x3000 is not a power-of-two multiple of the page size")]
fn alloc_bad_alignment() {
    map(0, 0).uvm_km_alloc(4096, 0x3000, W);
}

#[test]
#[should_panic(expected = "UVM_KMF_COLORMATCH is for UVM_KMF_VAONLY only")]
fn colormatch_with_wired() {
    map(0, 0).uvm_km_alloc(4096, 1, W | UvmFlags::COLORMATCH);
}

#[test]
#[should_panic(expected = "is not allocated")]
fn free_not_allocated() {
    let m = map(0, 0);
    let p = m.uvm_km_alloc(4096, 0, W).unwrap();
    m.uvm_km_free(p, 4096, W);
    m.uvm_km_free(p, 4096, W);
}

#[test]
#[should_panic(expected = "size 0x2000 does not match the allocation's 0x1000")]
fn free_wrong_size() {
    let m = map(0, 0);
    let p = m.uvm_km_alloc(4096, 0, W).unwrap();
    m.uvm_km_free(p, 8192, W);
}

#[test]
#[should_panic(expected = "was allocated as UVM_KMF_WIRED, freed as UVM_KMF_PAGEABLE")]
fn free_wrong_type() {
    let m = map(0, 0);
    let p = m.uvm_km_alloc(4096, 0, W).unwrap();
    m.uvm_km_free(p, 4096, P);
}

#[test]
#[should_panic(expected = "is not in the kernel map")]
fn free_foreign_pointer() {
    let m = map(0, 0);
    let mut x = [0u8; 4096];
    let p = NonNull::new(x.as_mut_ptr().map_addr(|a| a & !4095)).unwrap();
    m.uvm_km_free(p, 4096, W);
}

#[test]
#[should_panic(expected = "is already mapped")]
fn enter_twice() {
    let m = map(0, 0);
    let p = m.uvm_km_alloc(4096, 0, V).unwrap();
    m.enter(p, 4096, UvmFlags::empty()).unwrap();
    m.enter(p, 4096, UvmFlags::empty());
}

#[test]
#[should_panic(expected = "is not allocated in arena 'kmem'")]
fn kmem_free_not_allocated() {
    let m = map(0, 0);
    let a = m
        .uvm_km_kmem_alloc(m.kmem_arena(), 4096, VmFlags::NOSLEEP)
        .unwrap();
    m.uvm_km_kmem_free(m.kmem_arena(), a, 4096);
    m.uvm_km_kmem_free(m.kmem_arena(), a, 4096);
}

/// The map travels as the handler's (typed) argument.
fn waitok_in_interrupt(m: &'static KernelMap) {
    m.uvm_km_alloc(4096, 0, W);
}

#[test]
#[should_panic(expected = "uvm_km_alloc (without UVM_KMF_NOWAIT): sleeping in interrupt context")]
fn waitok_from_interrupt_context() {
    let src = intr_establish(Ipl::Vm, waitok_in_interrupt, map(0, 0)).unwrap();
    let s = splvm();
    assert_eq!(intr_trigger(curcpu(), src), Delivery::Delivered);
    splx(s);
}
