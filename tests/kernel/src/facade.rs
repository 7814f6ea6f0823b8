//! The whole stack through the facade: [`Kernel::boot`] over the test
//! kernel's page source and vmem meta source builds what NetBSD builds at
//! boot — the kernel map, made the pools' map (`uvm_km_bootstrap`,
//! `pool_subsystem_init`); kmem's arenas and size-class caches
//! (`kmem_init`); malloc(9) (`malloc_init`) — and every CPU then uses kmem,
//! malloc(9) and a pool cache with a constructor and a destructor, in
//! thread context and from an `IPL_VM` interrupt handler.
//!
//! It runs after `kernel`'s teardown, in the same measured window: the
//! first kernel map has given its RAM back by then, and this one reserves
//! its own. A booted kernel is never torn down (NetBSD's is not either), so
//! the end is a census instead: every kmem object and large allocation is
//! back, every malloc(9) block of the test's types is freed, the pool
//! cache's constructors and destructors balance, and the pagedaemon gives
//! the cached pages back. The facade's report is formatted inside the
//! window too, into a buffer on the stack: it must not allocate either.
//!
//! As in `kernel`: no printing, no `Box`, and a failed check panics.

use core::fmt;
use core::ptr::{self, NonNull};

use bsdalloc::kmalloc::{M_NOWAIT, M_WAITOK, M_ZERO, MALLOC_DEFINE, MallocTypeStats, free, malloc};
use bsdalloc::kmem::{
    KM_NOSLEEP, KM_SLEEP, KmemCensus, LargeStats, kmem_alloc, kmem_free, kmem_intr_alloc,
    kmem_intr_free, kmem_zalloc,
};
use bsdalloc::pool::{Clock, POOL_INACTIVE_TIME, PrFlags, UPTIME, for_each_pool, pool_count};
use bsdalloc::pool_cache::{CtorFailed, PoolCacheConfig, PoolCacheStats, RawPoolCache};
use bsdalloc::uvm_pages::KmStats;
use bsdalloc::{BootError, Kernel, KernelConfig};
use bsdalloc_platform::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use bsdalloc_platform::{
    CpuId, Delivery, Ipl, PageSource, PageStats, curipl, in_interrupt, intr_disestablish,
    intr_establish, intr_runs, intr_trigger,
};

use crate::kernel::{Rng, check, check_zero, fill};
use crate::machine::{NCPU, idle_until, relax, ring, take_ipi, this_cpu};
use crate::pages::{META, PAGE_SIZE, PAGES};

/// Kernel virtual address space of the facade's map (half of it the
/// `kmem` arena), reserved from RAM.
pub(crate) const VA_BYTES: usize = 16 << 20;
/// The memory budget: the pagedaemon's trigger, `KM_SLEEP`'s wait.
pub(crate) const MEMORY_LIMIT: usize = 8 << 20;
/// Freed pages the map keeps committed for reuse.
const FREE_TARGET: usize = 256 << 10;
/// Rounds per CPU, kmem blocks and malloc(9) blocks live in each, pool
/// cache objects held at once (more than a group of 15: the CPU exchanges
/// groups with the depot), and the largest block (three pages: kmem's
/// large path). Smaller under Miri, same shape.
const ROUNDS: usize = if cfg!(miri) { 3 } else { 60 };
const BLOCKS: usize = if cfg!(miri) { 6 } else { 16 };
const MBLOCKS: usize = if cfg!(miri) { 2 } else { 4 };
const OBJS_HELD: usize = if cfg!(miri) { 4 } else { 20 };
const MAX_BLOCK: usize = 3 * PAGE_SIZE;
/// Sizes every CPU cycles through (every other block is a random size up
/// to [`MAX_BLOCK`]): the smallest class, odd sizes, exact classes, one
/// page, and whole pages above it.
const SIZES: [usize; 14] = [
    8,
    24,
    64,
    100,
    256,
    500,
    1024,
    2000,
    4000,
    PAGE_SIZE,
    PAGE_SIZE + 1,
    5000,
    2 * PAGE_SIZE,
    MAX_BLOCK,
];
/// Handler runs per CPU, and what each allocates with `KM_NOSLEEP`
/// (two pages: the large path from interrupt context).
const INTR_ROUNDS: usize = if cfg!(miri) { 2 } else { 8 };
const INTR_SIZES: [usize; 5] = [8, 64, 200, 1500, 2 * PAGE_SIZE];
const INTR_MALLOC: usize = 300;
/// The block each handler run leaves for its CPU's thread to free.
const HANDOFF_SIZE: usize = 320;

MALLOC_DEFINE!(M_TKWORK, "tk-work", "test kernel: thread-context blocks");
MALLOC_DEFINE!(M_TKINTR, "tk-intr", "test kernel: interrupt-handler blocks");

// ---- a pool cache of constructed objects ----

const OBJ_SIZE: usize = 192;
const OBJ_MAGIC: u64 = 0x7e57_0b1e_c7ed_0001;
/// The constructed state of the bytes after the magic.
const OBJ_FILL: u8 = 0xa5;

static CTORS: AtomicU64 = AtomicU64::new(0);
static DTORS: AtomicU64 = AtomicU64::new(0);

fn obj_ctor(obj: NonNull<u8>, _flags: PrFlags) -> Result<(), CtorFailed> {
    // SAFETY: the cache hands the constructor a raw object of OBJ_SIZE
    // bytes, 64-byte aligned (the cache's alignment), ours until it
    // returns.
    unsafe {
        obj.as_ptr().cast::<u64>().write(OBJ_MAGIC);
        obj.as_ptr().add(8).write_bytes(OBJ_FILL, OBJ_SIZE - 8);
    }
    CTORS.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

fn obj_dtor(obj: NonNull<u8>) {
    check_constructed(obj);
    // SAFETY: a constructed object on its way back to the pool, ours.
    unsafe { obj.as_ptr().cast::<u64>().write(0) };
    DTORS.fetch_add(1, Ordering::Relaxed);
}

type Ctor = fn(NonNull<u8>, PrFlags) -> Result<(), CtorFailed>;
type Dtor = fn(NonNull<u8>);

/// NetBSD style: a cache on static storage, raw objects, a constructor
/// that runs only when an object leaves the pool. `IPL_VM`: the interrupt
/// handler gets and puts too.
static OBJS: RawPoolCache = RawPoolCache::new(
    PoolCacheConfig::new("tk-objs", OBJ_SIZE)
        .align(64)
        .ipl(Ipl::Vm)
        .ctor(&(obj_ctor as Ctor))
        .dtor(&(obj_dtor as Dtor)),
);

/// Panic unless `obj` is in the constructed state.
#[track_caller]
fn check_constructed(obj: NonNull<u8>) {
    // SAFETY: a constructed object of OBJ_SIZE bytes, 64-byte aligned,
    // held by the caller.
    let magic = unsafe { obj.as_ptr().cast::<u64>().read() };
    assert_eq!(magic, OBJ_MAGIC, "tk-objs: {obj:p} is not constructed");
    for k in 8..OBJ_SIZE {
        // SAFETY: as above.
        let b = unsafe { obj.as_ptr().add(k).read() };
        assert_eq!(b, OBJ_FILL, "tk-objs: byte {k} of {obj:p} left modified");
    }
}

/// Use a constructed object (write and check a pattern of our own), then
/// leave it constructed again, as a put requires.
#[track_caller]
fn use_object(obj: NonNull<u8>, seed: u64) {
    check_constructed(obj);
    // SAFETY: bytes 8.. of our own object.
    let body = unsafe { obj.as_ptr().add(8) };
    fill(body, OBJ_SIZE - 8, seed);
    check(body, OBJ_SIZE - 8, seed);
    // SAFETY: as above.
    unsafe { body.write_bytes(OBJ_FILL, OBJ_SIZE - 8) };
}

// ---- boot ----

/// What the harness prints of the facade's kernel.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Report {
    pub(crate) page_size: usize,
    pub(crate) limit_pages: usize,
    pub(crate) pages_booted: PageStats,
    pub(crate) kmem_ops: u64,
    pub(crate) cache_hits: u64,
    pub(crate) cache_requests: u64,
    pub(crate) large: LargeStats,
    pub(crate) census: KmemCensus,
    pub(crate) work_type: Option<MallocTypeStats>,
    pub(crate) intr_type: Option<MallocTypeStats>,
    pub(crate) objs: Option<PoolCacheStats>,
    pub(crate) obj_gets: u64,
    pub(crate) ctors: u64,
    pub(crate) dtors: u64,
    pub(crate) intr_runs: [u64; NCPU],
    pub(crate) handler_runs: u64,
    /// The map's committed pages before the pagedaemon, after a pass at
    /// uptime 0, and after the passes ten seconds later.
    pub(crate) committed: [usize; 3],
    pub(crate) pagedaemon_passes: usize,
    pub(crate) hardclocks: u64,
    pub(crate) map: Option<KmStats>,
    pub(crate) pages_end: PageStats,
    pub(crate) meta_end: usize,
}

/// `Kernel::boot` with this machine's pages and meta source (both required
/// without `std`), a budget and an address space that fit the RAM; then
/// the test's pool cache.
pub(crate) fn boot() -> Report {
    let cfg = KernelConfig::new()
        .pages(&PAGES)
        .meta(&META)
        .memory_limit(MEMORY_LIMIT)
        .va_size(VA_BYTES)
        .free_target(FREE_TARGET);
    let k = Kernel::boot(cfg).expect("bsdalloc::Kernel::boot");
    assert_eq!(k.page_size(), PAGE_SIZE);
    assert!(ptr::eq(k, bsdalloc::kernel()));
    // Once only.
    assert!(matches!(Kernel::boot(cfg), Err(BootError::AlreadyBooted)));
    // One kernel map for the whole stack: kmem's is the pools' map.
    let map = k.map();
    let pool_map = bsdalloc::pool::pool_subsystem_map().expect("the pools' kernel map");
    assert!(ptr::eq(map, pool_map));
    assert!(ptr::eq(map, k.kmem().map()));
    let ms = map.stats();
    assert_eq!(ms.va_reserved, VA_BYTES);
    assert_eq!(ms.limit_pages * PAGE_SIZE, MEMORY_LIMIT);
    OBJS.bootstrap();
    Report {
        page_size: k.page_size(),
        limit_pages: ms.limit_pages,
        pages_booted: PAGES.stats(),
        ..Report::default()
    }
}

// ---- every CPU, thread context ----

static KMEM_OPS: AtomicU64 = AtomicU64::new(0);

/// Every CPU: kmem blocks of mixed sizes (8 B to three pages, some
/// `kmem_zalloc`), each checked for its class's alignment and filled with
/// a pattern of its own; malloc(9) blocks with `M_ZERO`; pool cache
/// objects held across a group boundary; all checked and freed in a
/// shuffled order, with interrupt points between. CPU 0 reads kmem's
/// statistics (a cross-call) half-way, while the others are busy.
pub(crate) fn work(cpu: usize) {
    let k = bsdalloc::kernel().kmem();
    let mut rng = Rng(0x5eed_0f0f_5eed_0f0f ^ (cpu as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut live = [(ptr::null_mut::<u8>(), 0usize, 0u64); BLOCKS];
    let mut mlive = [(ptr::null_mut::<u8>(), 0usize, 0u64); MBLOCKS];
    let mut held: [Option<NonNull<u8>>; OBJS_HELD] = [None; OBJS_HELD];
    for round in 0..ROUNDS {
        let base = ((cpu as u64) << 40) | ((round as u64) << 16);
        for (j, slot) in live.iter_mut().enumerate() {
            let size = if j % 2 == 0 {
                SIZES[(j / 2 + round + cpu) % SIZES.len()]
            } else {
                1 + rng.below(MAX_BLOCK)
            };
            let p = if j % 4 == 1 {
                let p = kmem_zalloc(size, KM_SLEEP).expect("KM_SLEEP cannot fail");
                check_zero(p.as_ptr(), size);
                p
            } else {
                kmem_alloc(size, KM_SLEEP).expect("KM_SLEEP cannot fail")
            };
            let align = k.alignment_of(size).expect("a size kmem serves");
            assert_eq!(
                p.as_ptr().addr() % align,
                0,
                "kmem_alloc({size}) is not {align}-aligned"
            );
            let seed = base | j as u64;
            fill(p.as_ptr(), size, seed);
            *slot = (p.as_ptr(), size, seed);
            take_ipi();
        }
        KMEM_OPS.fetch_add(BLOCKS as u64, Ordering::Relaxed);
        for (j, slot) in mlive.iter_mut().enumerate() {
            let size = 1 + rng.below(MAX_BLOCK);
            let m = malloc(size, &M_TKWORK, M_WAITOK | M_ZERO).expect("M_WAITOK cannot fail");
            check_zero(m.as_ptr(), size);
            let seed = base | 0x8000 | j as u64;
            fill(m.as_ptr(), size, seed);
            *slot = (m.as_ptr(), size, seed);
            take_ipi();
        }
        for (j, slot) in held.iter_mut().enumerate() {
            let o = OBJS.get(PrFlags::WAITOK).expect("PR_WAITOK cannot fail");
            use_object(o, base | 0x4000 | j as u64);
            *slot = Some(o);
        }
        if cpu == 0 && round == ROUNDS / 2 {
            let s = k.stats();
            assert!(s.caches().any(|c| c.nhit_pcpu > 0), "no kmem cache hit");
        }
        for slot in &mut held {
            let o = slot.take().expect("held");
            check_constructed(o);
            // SAFETY: our object from OBJS, constructed, not used again.
            unsafe { OBJS.put(o) };
        }
        for i in 0..BLOCKS {
            let (p, size, seed) = live[(i * 7 + round) % BLOCKS];
            check(p, size, seed);
            // SAFETY: allocated above with exactly `size`, not used again.
            unsafe { kmem_free(p, size) };
            take_ipi();
        }
        for &(m, size, seed) in &mlive {
            check(m, size, seed);
            // SAFETY: from malloc with M_TKWORK, not used again.
            unsafe { free(m, &M_TKWORK) };
        }
        take_ipi();
    }
}

// ---- interrupts that allocate ----

static INTR_RUNS: [AtomicU64; NCPU] = [const { AtomicU64::new(0) }; NCPU];
static INTR_DONE: AtomicBool = AtomicBool::new(false);
/// Per CPU and run, the block that handler run left for the thread.
static HANDOFF: [[AtomicPtr<u8>; INTR_ROUNDS]; NCPU] =
    [const { [const { AtomicPtr::new(ptr::null_mut()) }; INTR_ROUNDS] }; NCPU];

fn handoff_seed(cpu: usize, run: usize) -> u64 {
    0x4a4d_0000 | ((cpu as u64) << 8) | run as u64
}

/// An `IPL_VM` handler on the facade's kernel: `kmem_intr_alloc` with
/// `KM_NOSLEEP` (small classes and whole pages), `malloc(M_NOWAIT |
/// M_ZERO)`, a `PR_NOWAIT` get from the pool cache, each checked and given
/// back; and one kmem block left for the interrupted CPU's thread to free.
fn facade_intr(_arg: &'static ()) {
    assert!(in_interrupt());
    assert_eq!(curipl(), Ipl::Vm);
    let cpu = this_cpu();
    let run = INTR_RUNS[cpu].load(Ordering::Relaxed) as usize;
    for (i, &size) in INTR_SIZES.iter().enumerate() {
        let p = kmem_intr_alloc(size, KM_NOSLEEP)
            .expect("kmem_intr_alloc(KM_NOSLEEP) in an IPL_VM handler");
        let seed = 0x1e7_0000 | ((cpu as u64) << 12) | ((run as u64) << 4) | i as u64;
        fill(p.as_ptr(), size, seed);
        check(p.as_ptr(), size, seed);
        // SAFETY: allocated just above with `size`, not used again.
        unsafe { kmem_intr_free(p.as_ptr(), size) };
    }
    let m = malloc(INTR_MALLOC, &M_TKINTR, M_NOWAIT | M_ZERO)
        .expect("malloc(M_NOWAIT) in an IPL_VM handler");
    check_zero(m.as_ptr(), INTR_MALLOC);
    fill(m.as_ptr(), INTR_MALLOC, run as u64);
    check(m.as_ptr(), INTR_MALLOC, run as u64);
    // SAFETY: from malloc with M_TKINTR, not used again.
    unsafe { free(m.as_ptr(), &M_TKINTR) };
    let o = OBJS
        .get(PrFlags::NOWAIT)
        .expect("pool_cache_get(PR_NOWAIT) in an IPL_VM handler");
    use_object(o, run as u64);
    // SAFETY: our object, constructed again by `use_object`.
    unsafe { OBJS.put(o) };
    let h = kmem_intr_alloc(HANDOFF_SIZE, KM_NOSLEEP).expect("the hand-off block");
    fill(h.as_ptr(), HANDOFF_SIZE, handoff_seed(cpu, run));
    let was = HANDOFF[cpu][run].swap(h.as_ptr(), Ordering::Release);
    assert!(was.is_null(), "handler run {run} on cpu{cpu} twice");
    INTR_RUNS[cpu].fetch_add(1, Ordering::Release);
    ring(0);
}

/// CPU 0 posts the handler to every CPU, itself included, round after
/// round; the other CPUs allocate and free in thread context meanwhile,
/// with interrupt points between a block's allocation and its free, so
/// the handler runs between their own gets and puts. At the end each CPU's
/// thread frees, with `kmem_free`, the blocks its handler runs left.
pub(crate) fn interrupt(cpu: usize) {
    if cpu == 0 {
        let src =
            intr_establish(Ipl::Vm, facade_intr as fn(&'static ()), &()).expect("intr_establish");
        for round in 0..INTR_ROUNDS as u64 {
            for c in 0..NCPU {
                assert_eq!(intr_trigger(CpuId(c as u32), src), Delivery::Delivered);
            }
            idle_until(|| INTR_RUNS.iter().all(|r| r.load(Ordering::Acquire) > round));
        }
        // The platform counts a run when the handler has returned, after
        // the handler's own count: wait for the last one to finish.
        while intr_runs(src) != (INTR_ROUNDS * NCPU) as u64 {
            relax();
        }
        intr_disestablish(src);
        INTR_DONE.store(true, Ordering::Release);
        for c in 1..NCPU {
            ring(c);
        }
    } else {
        let mut rng = Rng(0x1e7_5eed ^ (cpu as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
        let mut n = 0u64;
        while !INTR_DONE.load(Ordering::Acquire) {
            let size = 1 + rng.below(MAX_BLOCK);
            let p = kmem_alloc(size, KM_SLEEP).expect("KM_SLEEP cannot fail");
            fill(p.as_ptr(), size, n);
            relax(); // an interrupt point, the block live
            check(p.as_ptr(), size, n);
            // SAFETY: allocated above with `size`, not used again.
            unsafe { kmem_free(p.as_ptr(), size) };
            n += 1;
        }
        KMEM_OPS.fetch_add(n, Ordering::Relaxed);
    }
    for (run, slot) in HANDOFF[cpu].iter().enumerate() {
        let p = slot.swap(ptr::null_mut(), Ordering::Acquire);
        assert!(!p.is_null(), "handler run {run} on cpu{cpu} left no block");
        check(p, HANDOFF_SIZE, handoff_seed(cpu, run));
        // SAFETY: kmem_intr_alloc'd by the handler with HANDOFF_SIZE; the
        // handler let go of it.
        unsafe { kmem_free(p, HANDOFF_SIZE) };
    }
}

// ---- the census ----

/// Pages all pools hold, in `PAGE_SIZE` pages (the quantum caches' pool
/// pages are 16 of them: segments of the `kva` arena).
fn pool_pages() -> usize {
    let mut bytes = 0;
    for_each_pool(|pp| {
        let s = pp.stats();
        bytes += s.npages as usize * s.pagesize;
    });
    bytes / PAGE_SIZE
}

/// A fixed buffer the facade's report is formatted into, inside the
/// measured window; the harness prints it afterwards.
pub(crate) struct Text {
    bytes: [u8; 128 << 10],
    len: usize,
}

impl Text {
    pub(crate) fn new() -> Text {
        Text {
            bytes: [0; 128 << 10],
            len: 0,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).expect("the report is UTF-8")
    }
}

impl fmt::Write for Text {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        let dst = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// CPU 0, after the phases: exact malloc(9) counts, kmem's statistics and
/// census, the pool cache's constructors against its destructors, the
/// pagedaemon; then the facade's report into `text`.
pub(crate) fn finish(r: &mut Report, text: &mut Text) {
    let k = bsdalloc::kernel();

    let w = M_TKWORK.stats();
    assert_eq!((w.inuse, w.memuse), (0, 0), "tk-work blocks in use");
    assert_eq!(w.calls, (NCPU * ROUNDS * MBLOCKS) as u64);
    assert!(w.maxused > 0);
    let i = M_TKINTR.stats();
    assert_eq!((i.inuse, i.memuse), (0, 0), "tk-intr blocks in use");
    assert_eq!(i.calls, (NCPU * INTR_ROUNDS) as u64);
    r.work_type = Some(w);
    r.intr_type = Some(i);

    let s = k.kmem().stats();
    assert!(s.large.allocs > 0, "no large kmem allocation");
    assert_eq!(s.large.allocs, s.large.frees);
    assert_eq!((s.large.live, s.large.live_bytes), (0, 0));
    r.large = s.large;
    r.cache_hits = s.caches().map(|c| c.nhit_pcpu).sum();
    r.cache_requests = s.caches().map(|c| c.nhit_pcpu + c.nmiss_pcpu).sum();
    assert!(r.cache_hits > 0);
    r.kmem_ops = KMEM_OPS.load(Ordering::Relaxed);
    let census = k.kmem().census();
    assert_eq!(census.outstanding(), 0, "kmem census: {census:?}");
    r.census = census;

    // Every object home; after invalidation every constructed object has
    // been destructed, and each was constructed once, leaving the pool.
    OBJS.invalidate();
    let o = OBJS.stats();
    assert_eq!(o.pool.nout, 0, "tk-objs objects out");
    let (ctors, dtors) = (CTORS.load(Ordering::Relaxed), DTORS.load(Ordering::Relaxed));
    assert_eq!(ctors, dtors, "constructed {ctors}, destructed {dtors}");
    assert_eq!(ctors, o.pool.nget, "a constructor per object from the pool");
    assert_eq!(dtors, o.pool.nput, "a destructor per object to the pool");
    r.obj_gets = (NCPU * (ROUNDS * OBJS_HELD + INTR_ROUNDS)) as u64;
    assert!(ctors < r.obj_gets, "every get constructed: no cache hit");
    r.objs = Some(o);
    (r.ctors, r.dtors) = (ctors, dtors);
    r.intr_runs = core::array::from_fn(|c| INTR_RUNS[c].load(Ordering::Relaxed));
    assert_eq!(r.intr_runs, [INTR_ROUNDS as u64; NCPU]);
    r.handler_runs = r.intr_runs.iter().sum();

    // The pagedaemon gives the map's cached pages back, but no pool page:
    // a pool releases only pages idle for POOL_INACTIVE_TIME, and without
    // `std` time passes only when the kernel says so.
    let map = k.map();
    r.committed = [map.stats().committed_pages, 0, 0];
    let before = pool_pages();
    k.pagedaemon();
    assert_eq!(pool_pages(), before, "pool pages released at uptime 0");
    r.committed[1] = map.stats().committed_pages;
    // hardclock: ten seconds pass (a kernel sets `time_uptime` from its
    // clock interrupt; this one's clock is this call). Now every idle page
    // may go: the pagedaemon drains one pool a pass, round robin, until
    // one releases pages; run it until a pass releases nothing. A page
    // header freed meanwhile leaves its header pool's page idle only from
    // now: ten more seconds for those, until nothing changes.
    let mut held = before;
    for _ in 0..4 {
        let start = held;
        UPTIME.set(UPTIME.uptime() + POOL_INACTIVE_TIME);
        r.hardclocks += 1;
        for _ in 0..=2 * pool_count() {
            k.pagedaemon();
            r.pagedaemon_passes += 1;
            let now = pool_pages();
            if now == held {
                break;
            }
            held = now;
        }
        if held == start {
            break;
        }
    }
    let mut rest = 0;
    for_each_pool(|pp| {
        let s = pp.stats();
        let drained =
            s.name.starts_with("kmem-") || s.name.starts_with("kva-") || s.name == "tk-objs";
        assert!(
            !drained || s.npages == 0,
            "pool {} kept {} pages after the pagedaemon",
            s.name,
            s.npages
        );
        assert_eq!(s.nidle, 0, "pool {} kept idle pages", s.name);
        rest += s.npages as usize * s.pagesize / PAGE_SIZE;
    });
    let m = map.stats();
    r.committed[2] = m.committed_pages;
    // What the map still has committed is exactly the pages of the pools
    // with live items (the pools' own descriptors and headers).
    assert_eq!((m.committed_pages, m.cached_pages), (rest, 0));
    assert_eq!(m.va_in_use[..3], [0, 0, 0], "uvm_km_alloc memory left");
    r.map = Some(m);
    r.pages_end = PAGES.stats();
    r.meta_end = META.held();

    fmt::write(text, format_args!("{}", k.report())).expect("the report fits its buffer");
}
