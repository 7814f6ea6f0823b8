//! What the test kernel does with the stack: boot vmem and the kernel map
//! over its own pages, stack arenas on the map, allocate and check, share
//! the work between CPUs, cross-call them, take an interrupt that
//! allocates, sleep for a resource, and tear everything down to a census.
//!
//! Everything here runs inside the measured window (see `main`): no
//! printing, no `Box`, nothing that could call the Rust global allocator.
//! A failed check panics; the harness's panic hook reports it and exits
//! with a failure status.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::ptr::NonNull;

use bsdalloc_platform::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use bsdalloc_platform::{
    CpuId, Delivery, Ipl, PAGE_FAULTS, PageError, PageSource, PageStats, PerCpu, SpinMutex,
    cpu_local, curcpu, curipl, in_interrupt, intr_disestablish, intr_establish, intr_runs,
    intr_trigger, xc_broadcast,
};
use bsdalloc_uvm_pages::{KernelMap, KmConfig, KmStats, KmemSource, UvmFlags};
use bsdalloc_vmem::{
    Arena, ArenaConfig, ArenaStats, IdAllocator, IdPolicy, SpanSource, VmFlags, XallocConstraints,
    tag_supply_stats, vmem_create, vmem_descriptors_live, vmem_destroy, vmem_subsystem_init,
    vmem_xcreate,
};

use crate::machine::{self, NCPU, STATS, cpu_state, idle_until, ring, take_ipi, this_cpu};
use crate::pages::{self, META, PAGE_SIZE, PAGES, kva};

/// Kernel virtual address space of the map: half `kernel_map`, half
/// `kmem_arena`.
const MAP_BYTES: usize = 16 << 20;
/// The physical-memory budget of the map, in pages (12 MiB).
const LIMIT_PAGES: usize = 3072;
/// Rounds of the shared workload, blocks live per CPU in each, and the
/// largest block. Under Miri, which runs the same code some thousand times
/// slower, a smaller workload with the same shape.
const ROUNDS: usize = if cfg!(miri) { 3 } else { 100 };
const BLOCKS: usize = if cfg!(miri) { 6 } else { 16 };
const MAX_BLOCK: usize = if cfg!(miri) { 600 } else { 8192 };
/// The one ID the sleep test fights over.
const ONE_ID: usize = 7;

/// Storage written once by the boot CPU, read by every CPU afterwards.
pub(crate) struct BootCell<T> {
    state: AtomicU8,
    value: UnsafeCell<MaybeUninit<T>>,
}

const EMPTY: u8 = 0;
const WRITING: u8 = 1;
const READY: u8 = 2;

// SAFETY: the value is written once, before `state` becomes READY with
// Release; readers see READY with Acquire first. `take` requires that no
// reader is left.
unsafe impl<T: Send + Sync> Sync for BootCell<T> {}

impl<T> BootCell<T> {
    pub(crate) const fn new() -> Self {
        BootCell {
            state: AtomicU8::new(EMPTY),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// Store the value.
    ///
    /// # Panics
    /// If a value was stored already.
    pub(crate) fn set(&self, v: T) -> &T {
        let claimed =
            self.state
                .compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Relaxed);
        assert!(claimed.is_ok(), "test kernel: a boot cell set twice");
        // SAFETY: WRITING is ours alone: no reader looks before READY.
        unsafe { (*self.value.get()).write(v) };
        self.state.store(READY, Ordering::Release);
        self.get()
    }

    /// The value.
    ///
    /// # Panics
    /// If it was not stored yet.
    pub(crate) fn get(&self) -> &T {
        assert_eq!(
            self.state.load(Ordering::Acquire),
            READY,
            "test kernel: a boot cell read before it was set"
        );
        // SAFETY: READY: initialised, and never written again until `take`.
        unsafe { (*self.value.get()).assume_init_ref() }
    }

    /// Move the value out.
    ///
    /// # Safety
    /// No reference from [`BootCell::get`] is used afterwards.
    pub(crate) unsafe fn take(&self) -> T {
        let was = self.state.swap(EMPTY, Ordering::AcqRel);
        assert_eq!(was, READY, "test kernel: a boot cell taken while empty");
        // SAFETY: initialised (READY), and the caller guarantees that no
        // reference to it survives; EMPTY keeps `get` from handing out more.
        unsafe { (*self.value.get()).assume_init_read() }
    }
}

/// What the boot CPU builds and every CPU uses.
pub(crate) struct Kernel {
    map: &'static KernelMap,
    /// Kernel VA imported from `kmem_arena` (NetBSD's `kmem_va_arena`).
    kmem_va: &'static Arena,
    /// Backed kernel memory at a 64-byte quantum, imported page by page
    /// through a [`KmemSource`] over `kmem_va`.
    backed: &'static Arena,
    /// Operations done per CPU, carved from the kernel's pages.
    ops: PerCpu<u64>,
    pids: IdAllocator,
    one_id: IdAllocator,
}

static KERNEL: BootCell<Kernel> = BootCell::new();
static KMEM_SRC: BootCell<KmemSource> = BootCell::new();

cpu_local! {
    /// The same count in static per-CPU storage.
    static OPS: CpuLocal<u64> = 0;
}

/// Numbers the harness prints after the window has closed.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Report {
    pub(crate) map: Option<KmStats>,
    pub(crate) backed: Option<ArenaStats>,
    pub(crate) pages_peak: PageStats,
    pub(crate) pages_end: PageStats,
    pub(crate) meta_end: usize,
    pub(crate) ops_per_cpu: [u64; NCPU],
    pub(crate) xcall_ran_on: [usize; NCPU],
    pub(crate) tags_from_pages: usize,
    pub(crate) intr_runs: u64,
    pub(crate) first_pids: [usize; 3],
}

// ---- memory checks ----

fn pattern(seed: u64, k: usize) -> u8 {
    let x = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((k as u64).wrapping_mul(0x0000_0100_0000_01B3));
    (x >> 56) as u8 ^ k as u8
}

pub(crate) fn fill(p: *mut u8, len: usize, seed: u64) {
    for k in 0..len {
        // SAFETY: the caller owns `len` bytes of backed memory at `p`.
        unsafe { p.add(k).write(pattern(seed, k)) };
    }
}

#[track_caller]
pub(crate) fn check(p: *const u8, len: usize, seed: u64) {
    for k in 0..len {
        // SAFETY: as in `fill`.
        let got = unsafe { p.add(k).read() };
        assert_eq!(
            got,
            pattern(seed, k),
            "test kernel: byte {k} of the block at {p:p} (+{len:#x}) was overwritten"
        );
    }
}

#[track_caller]
pub(crate) fn check_zero(p: *const u8, len: usize) {
    for k in 0..len {
        // SAFETY: the caller owns `len` bytes of backed memory at `p`.
        let got = unsafe { p.add(k).read() };
        assert_eq!(got, 0, "test kernel: byte {k} at {p:p} is not zero");
    }
}

/// A small deterministic generator (xorshift64*).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

// ---- boot ----

/// The page source's contract, checked directly before anything stands on
/// it.
fn page_source_contract() {
    let ps = PAGES.page_size();
    let va = PAGES.reserve(4 * ps, 0).expect("reserve");
    // SAFETY: our own fresh reservation, used only here.
    unsafe {
        let c = PAGES.commit(va, 2 * ps, true).expect("commit");
        assert!(c.wired);
        check_zero(va.as_ptr(), 2 * ps);
        fill(va.as_ptr(), 2 * ps, 1);
        PAGES.decommit(va, 2 * ps);
        PAGES.commit(va, 2 * ps, false).expect("commit again");
        check_zero(va.as_ptr(), 2 * ps);
        PAGES.decommit(va, 2 * ps);
        PAGES.release(va, 4 * ps);
    }
    // Aligned reservations are aligned.
    let big = PAGES.reserve(ps, 64 << 10).expect("aligned reserve");
    assert_eq!(big.as_ptr().addr() % (64 << 10), 0);
    // SAFETY: our own reservation.
    unsafe { PAGES.release(big, ps) };
    // Bad ranges are refused, injected faults fail cleanly.
    assert!(matches!(
        PAGES.reserve(ps + 1, 0),
        Err(PageError::BadRange { .. })
    ));
    PAGE_FAULTS.fail_nth(1);
    assert_eq!(PAGES.reserve(ps, 0), Err(PageError::Injected));
    PAGE_FAULTS.off();
    let s = PAGES.stats();
    assert_eq!((s.reserved_bytes, s.committed_pages), (0, 0));
}

/// `uvm_km_alloc` of every type, on one CPU.
fn kernel_map_checks(map: &'static KernelMap) {
    let ps = PAGE_SIZE;
    // A page source failure under NOWAIT is a clean failure: nothing held.
    let before = map.stats();
    let injected = PAGE_FAULTS.injected();
    PAGE_FAULTS.fail_nth(1);
    let r = map.uvm_km_alloc(8 * ps, 0, UvmFlags::WIRED | UvmFlags::NOWAIT);
    PAGE_FAULTS.off();
    assert!(
        r.is_none(),
        "an injected page fault must fail a NOWAIT allocation"
    );
    assert_eq!(PAGE_FAULTS.injected(), injected + 1);
    let after = map.stats();
    assert_eq!(after.va_in_use, before.va_in_use);
    assert_eq!(after.committed_pages, before.committed_pages);

    // A guard page is never committed (with an MMU, touching it faults).
    // Checked while no freed page is cached: a guard laid over a cached,
    // still committed page would be accessible (uvm-pages does not yet
    // decommit cached pages under a new guard).
    let g = map
        .uvm_km_alloc_guarded(2 * ps, 1, UvmFlags::WIRED)
        .expect("guarded");
    // SAFETY: the page after the allocation, its guard, is inside the map.
    let guard = unsafe { g.as_ptr().add(2 * ps) };
    assert!(PAGES.is_committed(g.as_ptr()) && !PAGES.is_committed(guard));
    fill(g.as_ptr(), 2 * ps, 5);
    check(g.as_ptr(), 2 * ps, 5);
    map.uvm_km_free_guarded(g, 2 * ps, 1, UvmFlags::WIRED);
    // Wired and zeroed, also when the pages are reused from the cache.
    for round in 0..2 {
        let p = map
            .uvm_km_alloc(3 * ps, 0, UvmFlags::WIRED | UvmFlags::ZERO)
            .expect("uvm_km_alloc wired");
        check_zero(p.as_ptr(), 3 * ps);
        fill(p.as_ptr(), 3 * ps, round);
        check(p.as_ptr(), 3 * ps, round);
        map.uvm_km_free(p, 3 * ps, UvmFlags::WIRED);
    }
    // Aligned.
    let p = map
        .uvm_km_alloc(ps, 64 << 10, UvmFlags::WIRED)
        .expect("aligned uvm_km_alloc");
    assert_eq!(p.as_ptr().addr() % (64 << 10), 0);
    map.uvm_km_free(p, ps, UvmFlags::WIRED);
    // Pageable: demand zero.
    let p = map
        .uvm_km_alloc(2 * ps, 0, UvmFlags::PAGEABLE)
        .expect("uvm_km_alloc pageable");
    check_zero(p.as_ptr(), 2 * ps);
    fill(p.as_ptr(), 2 * ps, 3);
    check(p.as_ptr(), 2 * ps, 3);
    map.uvm_km_free(p, 2 * ps, UvmFlags::PAGEABLE);
    // VA only, then a page entered and removed.
    let v = map
        .uvm_km_alloc(4 * ps, 0, UvmFlags::VAONLY)
        .expect("uvm_km_alloc vaonly");
    // SAFETY: the second page of our own 4-page VA-only allocation.
    let second = unsafe { NonNull::new_unchecked(v.as_ptr().add(ps)) };
    map.enter(second, ps, UvmFlags::NOWAIT).expect("enter");
    check_zero(second.as_ptr(), ps);
    fill(second.as_ptr(), ps, 4);
    check(second.as_ptr(), ps, 4);
    map.remove(second, ps);
    map.uvm_km_free(v, 4 * ps, UvmFlags::VAONLY);
    let s = map.stats();
    assert!(s.va_in_use.iter().all(|&b| b == 0), "{:?}", s.va_in_use);
    assert_eq!((s.wired_pages, s.pageable_pages), (0, 0));
}

/// Boot: vmem's meta source, the kernel map, the arenas on it.
pub(crate) fn boot() -> Report {
    let mut report = Report::default();
    pages::expose_ram();
    vmem_subsystem_init(&META);
    page_source_contract();
    let map = KernelMap::bootstrap(KmConfig {
        size: MAP_BYTES,
        limit_pages: LIMIT_PAGES,
        free_target_pages: 64,
        pages: &PAGES,
    })
    .expect("uvm_km_bootstrap");
    assert_eq!(map.page_size(), PAGE_SIZE);
    kernel_map_checks(map);

    // Constrained VA straight from kmem_arena.
    let kmem = map.kmem_arena();
    let va = kmem
        .xalloc(
            XallocConstraints::new(8 * PAGE_SIZE)
                .align(64 << 10)
                .nocross(1 << 20),
            VmFlags::NOSLEEP | VmFlags::BESTFIT,
        )
        .expect("xalloc");
    assert_eq!(va % (64 << 10), 0);
    assert_eq!(va >> 20, (va + 8 * PAGE_SIZE - 1) >> 20, "crosses 1 MiB");
    kmem.xfree(va, 8 * PAGE_SIZE);

    // An arena on the map's own source (vmem-meta's shape), by value.
    {
        let meta = Arena::with_config(
            ArenaConfig {
                source: Some(map.kmem_source()),
                ..ArenaConfig::new("vmem-meta", 64)
            },
            0,
            0,
        )
        .expect("vmem-meta");
        let a = meta
            .alloc(200, VmFlags::NOSLEEP | VmFlags::INSTANTFIT)
            .expect("vmem-meta alloc");
        fill(kva(a), 200, 6);
        check(kva(a), 200, 6);
        meta.free(a, 200);
        meta.assert_sane();
    }

    // kmem_va_arena over kmem_arena, and backed memory over kmem_va.
    let parent: &'static dyn SpanSource = map.kmem_arena();
    let kmem_va = vmem_create(
        ArenaConfig::new("kmem-va", PAGE_SIZE)
            .source(parent)
            .flags(VmFlags::SLEEP)
            .ipl(Ipl::Vm),
        0,
        0,
    )
    .expect("vmem_create kmem-va");
    let src: &'static dyn SpanSource = KMEM_SRC.set(KmemSource::new(map, kmem_va));
    // vmem_xcreate: the source imports whole pages and says so; a plain
    // arena would use only the bytes it asked for and strand the rest of
    // each page.
    let backed = vmem_xcreate(
        ArenaConfig::new("kmem-backed", 64)
            .source(src)
            .flags(VmFlags::SLEEP)
            .ipl(Ipl::Vm),
        0,
        0,
    )
    .expect("vmem_xcreate kmem-backed");

    // IDs that rotate before reuse.
    let pids = IdAllocator::new("pids", 300..400, IdPolicy::Rotate).expect("pids");
    let a = pids.alloc().expect("pid");
    let b = pids.alloc().expect("pid");
    let (ra, rb) = (a.get(), b.get());
    drop(a);
    let c = pids.alloc().expect("pid");
    report.first_pids = [ra, rb, c.get()];
    assert_eq!((ra, rb), (300, 301));
    assert_eq!(c.get(), 302, "next fit must not reuse 300 yet");
    drop((b, c));
    assert_eq!(pids.in_use(), 0);
    let one_id = IdAllocator::new("one-id", ONE_ID..ONE_ID + 1, IdPolicy::Reuse).expect("one-id");

    let ops = PerCpu::<u64>::new(&PAGES).expect("PerCpu");
    KERNEL.set(Kernel {
        map,
        kmem_va,
        backed,
        ops,
        pids,
        one_id,
    });
    report
}

// ---- the shared workload ----

static RAN_ON: [AtomicUsize; NCPU] = [const { AtomicUsize::new(usize::MAX) }; NCPU];
static IN_INTR: [AtomicBool; NCPU] = [const { AtomicBool::new(false) }; NCPU];

/// Cross-call every CPU and check each function ran on its own CPU, in
/// interrupt context.
fn xcall_every_cpu() -> [usize; NCPU] {
    for r in &RAN_ON {
        r.store(usize::MAX, Ordering::Relaxed);
    }
    xc_broadcast(&|c: CpuId| {
        assert_eq!(curcpu(), c, "a cross-call ran on the wrong CPU");
        RAN_ON[c.index()].store(this_cpu(), Ordering::Relaxed);
        IN_INTR[c.index()].store(in_interrupt(), Ordering::Relaxed);
    });
    core::array::from_fn(|c| {
        let on = RAN_ON[c].load(Ordering::Relaxed);
        assert_eq!(on, c, "cross-call for cpu{c} ran on cpu{on}");
        assert!(IN_INTR[c].load(Ordering::Relaxed));
        on
    })
}

/// Every CPU: allocate blocks of random sizes from the backed arena, fill
/// them with a pattern of their own, check and free them in a shuffled
/// order; count each operation per CPU; take IPIs in between. CPU 0
/// cross-calls the others half-way, while they are busy.
pub(crate) fn work(cpu: usize) {
    let k = KERNEL.get();
    let mut rng = Rng(0x1234_5678_9ABC_DEF0 ^ (cpu as u64 + 1).wrapping_mul(0x9E37_79B9));
    let mut live = [(0usize, 0usize, 0u64); BLOCKS];
    for round in 0..ROUNDS {
        for (j, slot) in live.iter_mut().enumerate() {
            let size = 1 + rng.below(MAX_BLOCK);
            let fit = if j % 2 == 0 {
                VmFlags::INSTANTFIT
            } else {
                VmFlags::BESTFIT
            };
            let a = k
                .backed
                .alloc(size, VmFlags::SLEEP | fit)
                .expect("VM_SLEEP cannot fail");
            let seed = ((cpu as u64) << 32) | ((round as u64) << 8) | j as u64;
            fill(kva(a), size, seed);
            *slot = (a, size, seed);
            k.ops.with(|n| *n += 1);
            OPS.with(|n| {
                *n += 1;
                // An interrupt point inside a section: a cross-call that
                // arrives now stays pending until the section closes.
                take_ipi();
            });
            take_ipi();
        }
        if cpu % 2 == 1 {
            let n = 1 + round % 3;
            let p = k
                .map
                .uvm_km_alloc(n * PAGE_SIZE, 0, UvmFlags::WIRED | UvmFlags::ZERO)
                .expect("uvm_km_alloc");
            check_zero(p.as_ptr(), n * PAGE_SIZE);
            fill(p.as_ptr(), n * PAGE_SIZE, round as u64);
            check(p.as_ptr(), n * PAGE_SIZE, round as u64);
            k.map.uvm_km_free(p, n * PAGE_SIZE, UvmFlags::WIRED);
        }
        if cpu == 0 && round == ROUNDS / 2 {
            xcall_every_cpu();
        }
        for i in 0..BLOCKS {
            let j = (i * 7 + round) % BLOCKS;
            let (a, size, seed) = live[j];
            check(kva(a), size, seed);
            k.backed.free(a, size);
            take_ipi();
        }
    }
}

/// CPU 0 after the workload: per-CPU counts read in each CPU's context.
pub(crate) fn count(report: &mut Report) {
    let k = KERNEL.get();
    let expected = (ROUNDS * BLOCKS) as u64;
    let mut per = [0u64; NCPU];
    k.ops.for_each_cpu(|c, n| per[c.index()] = *n);
    assert_eq!(per, [expected; NCPU], "PerCpu counts");
    let mut local = [0u64; NCPU];
    OPS.for_each_cpu(|c, n| local[c.index()] = *n);
    assert_eq!(local, [expected; NCPU], "CpuLocal counts");
    k.ops.with_cpu(CpuId(2), |n| *n += 1000);
    k.ops.for_each_cpu(|c, n| per[c.index()] = *n);
    assert_eq!(per[2], expected + 1000);
    report.ops_per_cpu = local;
    report.xcall_ran_on = xcall_every_cpu();
    assert!(STATS.ipis_taken.load(Ordering::Relaxed) > 0);
    let s = k.backed.stats();
    assert_eq!(s.inuse, 0);
    k.backed.assert_sane();
    k.kmem_va.assert_sane();
    report.pages_peak = PAGES.stats();
}

// ---- an interrupt that allocates ----

static HOLD: SpinMutex<u64> = SpinMutex::new(Ipl::Vm, 0);
static HOLDING: AtomicBool = AtomicBool::new(false);
static TRIGGERED: AtomicBool = AtomicBool::new(false);
static HANDLER_RUNS: AtomicU64 = AtomicU64::new(0);
static HANDLER_CPU: AtomicUsize = AtomicUsize::new(usize::MAX);

/// An `IPL_VM` handler: allocates from the `IPL_VM` backed arena without
/// sleeping, and takes the lock the interrupted code held.
fn net_intr(_arg: &'static ()) {
    assert!(in_interrupt());
    assert_eq!(curipl(), Ipl::Vm);
    HANDLER_CPU.store(this_cpu(), Ordering::Relaxed);
    let k = KERNEL.get();
    let a = k
        .backed
        .alloc(200, VmFlags::NOSLEEP | VmFlags::INSTANTFIT)
        .expect("an interrupt-safe allocation");
    fill(kva(a), 200, 7);
    check(kva(a), 200, 7);
    k.backed.free(a, 200);
    *HOLD.lock() += 1;
    HANDLER_RUNS.fetch_add(1, Ordering::Release);
}

/// CPU 0 posts an `IPL_VM` interrupt to CPU 1 while CPU 1 holds an
/// `IPL_VM` spin mutex: CPU 1 takes the IPI, but the handler waits for
/// the release (`splx`) and then runs there, on CPU 1. Returns the
/// handler's run count (on CPU 0).
pub(crate) fn interrupt(cpu: usize) -> u64 {
    match cpu {
        0 => {
            let src =
                intr_establish(Ipl::Vm, net_intr as fn(&'static ()), &()).expect("intr_establish");
            idle_until(|| HOLDING.load(Ordering::Acquire));
            assert_eq!(intr_trigger(CpuId(1), src), Delivery::Delivered);
            TRIGGERED.store(true, Ordering::Release);
            ring(1);
            idle_until(|| HANDLER_RUNS.load(Ordering::Acquire) == 1);
            // The platform counts the run once the handler has returned,
            // after the handler's own count: wait for it (CPU 1 is past
            // the handler's last store, a few instructions from it).
            while intr_runs(src) == 0 {
                machine::relax();
            }
            let runs = intr_runs(src);
            assert_eq!(runs, 1);
            intr_disestablish(src);
            runs
        }
        1 => {
            let g = HOLD.lock();
            HOLDING.store(true, Ordering::Release);
            ring(0);
            // Interrupt points with IPL_VM held: the IPI is taken, the
            // handler only marked pending.
            while !TRIGGERED.load(Ordering::Acquire) || cpu_state(1).pending() == 0 {
                machine::relax();
            }
            take_ipi();
            assert_eq!(HANDLER_RUNS.load(Ordering::Acquire), 0, "ran at IPL_VM");
            assert_eq!(*g, 0);
            drop(g); // splx: the handler runs now
            assert_eq!(HANDLER_RUNS.load(Ordering::Acquire), 1);
            assert_eq!(HANDLER_CPU.load(Ordering::Relaxed), 1);
            assert_eq!(*HOLD.lock(), 1);
            0
        }
        _ => 0,
    }
}

// ---- sleeping for a resource ----

static TAKEN: AtomicBool = AtomicBool::new(false);
static SLEEPS_BEFORE: AtomicU64 = AtomicU64::new(u64::MAX);

/// CPU 1 holds the only ID; CPU 2 waits for it (`VM_SLEEP`) and sleeps
/// through the machine; CPU 1 sees it asleep and frees the ID, which wakes
/// it.
pub(crate) fn sleep_wakeup(cpu: usize) {
    let k = KERNEL.get();
    match cpu {
        1 => {
            let id = k.one_id.alloc().expect("the only ID");
            TAKEN.store(true, Ordering::Release);
            ring(2);
            idle_until(|| SLEEPS_BEFORE.load(Ordering::Acquire) != u64::MAX);
            let base = SLEEPS_BEFORE.load(Ordering::Acquire);
            // CPU 2 does not ring when it falls asleep: watch for it.
            while STATS.sleeps[2].load(Ordering::Relaxed) <= base {
                machine::relax();
            }
            let wakeups = STATS.wakeups.load(Ordering::Relaxed);
            drop(id);
            assert!(STATS.wakeups.load(Ordering::Relaxed) > wakeups);
        }
        2 => {
            idle_until(|| TAKEN.load(Ordering::Acquire));
            SLEEPS_BEFORE.store(STATS.sleeps[2].load(Ordering::Relaxed), Ordering::Release);
            ring(1);
            let id = k.one_id.alloc_wait();
            assert_eq!(id.get(), ONE_ID);
        }
        _ => {}
    }
}

// ---- teardown ----

/// Free everything, destroy the arenas and the map, and count: every page
/// the kernel took is back, except vmem's meta memory.
pub(crate) fn teardown(report: &mut Report) {
    report.backed = Some(KERNEL.get().backed.stats());
    report.map = Some(KERNEL.get().map.stats());
    // SAFETY: every CPU has finished with the kernel (the phase before
    // ended on all of them) and nothing keeps a reference.
    let k = unsafe { KERNEL.take() };
    assert_eq!(k.one_id.in_use(), 0);
    drop(k.pids);
    drop(k.one_id);
    drop(k.ops);
    // SAFETY: nothing uses the arenas afterwards; `backed` first, since it
    // imports from `kmem_va` (through KMEM_SRC, which is not used again).
    unsafe {
        vmem_destroy(k.backed);
        vmem_destroy(k.kmem_va);
    }
    assert_eq!(vmem_descriptors_live(), 0);
    let s = k.map.stats();
    assert!(s.va_in_use.iter().all(|&b| b == 0), "{:?}", s.va_in_use);
    assert_eq!((s.wired_pages, s.pageable_pages), (0, 0));
    // SAFETY: nothing uses the map any more.
    unsafe { KernelMap::destroy(core::ptr::NonNull::from(k.map)) };
    report.tags_from_pages = tag_supply_stats().from_pages;
    let end = PAGES.stats();
    report.pages_end = end;
    report.meta_end = META.held();
    assert_eq!(end.reserved_bytes, META.held(), "pages leaked");
    assert_eq!(end.committed_pages * PAGE_SIZE, META.held(), "pages leaked");
}
