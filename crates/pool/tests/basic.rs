//! pool(9) behaviour: layout effects in real pages, get/put and the page
//! lists, exact statistics, colouring, every get flag, watermarks, prime,
//! hard limit, release on put, reclaim, drain, destroy, the allocators.

use std::collections::HashSet;
use std::ptr::NonNull;

use bsdalloc_platform::Ipl;
use bsdalloc_pool::*;

fn ps() -> usize {
    page_size()
}

/// A fresh pool on leaked storage (tests run in parallel; each its own).
fn mkpool(cfg: PoolConfig) -> &'static RawPool {
    let p: &'static RawPool = Box::leak(Box::new(RawPool::new(cfg)));
    p.init();
    p
}

/// Every test puts back only items it got from the same pool.
fn put(pp: &RawPool, p: NonNull<u8>) {
    // SAFETY: the tests give back items of `pp` they no longer use.
    unsafe { pp.put(p) };
}

fn fill(p: NonNull<u8>, n: usize, v: u8) {
    // SAFETY: items of at least n bytes, owned by the test.
    unsafe { p.as_ptr().write_bytes(v, n) };
}

#[test]
fn get_put_exact_statistics_and_lists() {
    let pp = mkpool(PoolConfig::new("t-stats", 64));
    let l = pp.layout();
    assert!(l.phinpage() && l.usebmap());
    let ipp = l.itemsperpage;
    assert_eq!(ipp, (ps() - 56) / l.size);
    let mut items = Vec::new();
    for i in 0..(ipp + 1) {
        let p = pp.get(PrFlags::WAITOK).unwrap();
        fill(p, 64, i as u8);
        items.push(p);
    }
    let s = pp.stats();
    assert_eq!(
        (s.nget, s.nput, s.nfail, s.nout),
        ((ipp + 1) as u64, 0, 0, ipp as u32 + 1)
    );
    assert_eq!((s.npages, s.npagealloc, s.hiwat, s.nidle), (2, 2, 2, 0));
    assert_eq!(s.nitems as usize, 2 * ipp - ipp - 1);
    assert_eq!(pp.chk(None), Ok(()));
    // Distinct, aligned items, each page's items inside its page.
    let set: HashSet<usize> = items.iter().map(|p| p.as_ptr() as usize).collect();
    assert_eq!(set.len(), items.len());
    for (i, p) in items.iter().enumerate() {
        assert_eq!(p.as_ptr() as usize % 8, 0);
        // SAFETY: the test's own items.
        // SAFETY: the test's own items, 64 bytes.
        assert_eq!(unsafe { *p.as_ptr().add(63) }, i as u8);
    }
    // Put one of the full page: it becomes partial and current, so the
    // next get reuses that very item (fragmentation rule).
    let back = items[3];
    put(pp, back);
    let again = pp.get(PrFlags::NOWAIT).unwrap();
    assert_eq!(again, back);
    for p in items.drain(..) {
        put(pp, p);
    }
    let s = pp.stats();
    assert_eq!((s.nout, s.npages, s.nidle, s.npagefree), (0, 2, 2, 0));
    assert_eq!(s.nitems as usize, 2 * ipp);
    assert_eq!(pool_nget_nput(pp), (ipp as u64 + 2, ipp as u64 + 2));
    assert_eq!(pp.chk(Some("stats")), Ok(()));
    pp.destroy();
}

fn listed(name: &str) -> bool {
    let mut found = false;
    for_each_pool(|pp| found |= pp.name() == name);
    found
}

fn pool_nget_nput(pp: &RawPool) -> (u64, u64) {
    (pp.nget(), pp.nput())
}

#[test]
fn current_page_prefers_partial_over_empty() {
    let pp = mkpool(PoolConfig::new("t-curpage", 512));
    let ipp = pp.layout().itemsperpage;
    // Two pages: fill the first, one item from the second.
    let mut a: Vec<_> = (0..ipp + 1)
        .map(|_| pp.get(PrFlags::WAITOK).unwrap())
        .collect();
    let last = a.pop().unwrap();
    let page_of = |p: NonNull<u8>| p.as_ptr() as usize & !(ps() - 1);
    // Empty the first page entirely: it goes to the empty list, the second
    // (partial) stays current.
    for p in a.drain(..) {
        put(pp, p);
    }
    let n = pp.get(PrFlags::WAITOK).unwrap();
    assert_eq!(page_of(n), page_of(last), "partial page first");
    put(pp, n);
    put(pp, last);
    assert_eq!(pp.stats().nidle, 2);
    pp.destroy();
}

#[test]
fn colouring_offsets_successive_pages() {
    // 1000-byte items: 4 per page on-page with 40 bytes of slack, so pages
    // start their items at 56, 64, 72, …, 96, then wrap to 56.
    let pp = mkpool(PoolConfig::new("t-colour", 1000));
    let l = pp.layout();
    let slack = ps() - l.itemoffset - l.itemsperpage * l.size;
    assert_eq!(l.maxcolor, slack - slack % 8);
    let ncolours = l.maxcolor / 8 + 1;
    let mut firsts = Vec::new();
    let mut all = Vec::new();
    for _ in 0..ncolours + 1 {
        let items: Vec<_> = (0..l.itemsperpage)
            .map(|_| pp.get(PrFlags::WAITOK).unwrap())
            .collect();
        let min = items.iter().map(|p| p.as_ptr() as usize).min().unwrap();
        firsts.push(min % ps());
        all.extend(items);
    }
    let want: Vec<usize> = (0..ncolours)
        .map(|c| l.itemoffset + 8 * c)
        .chain([l.itemoffset])
        .collect();
    assert_eq!(firsts, want);
    for p in all {
        put(pp, p);
    }
    pp.destroy();
}

#[test]
fn zero_clears_the_requested_size() {
    let pp = mkpool(PoolConfig::new("t-zero", 100));
    let p = pp.get(PrFlags::WAITOK).unwrap();
    fill(p, 100, 0xAB);
    put(pp, p);
    let q = pp.get(PrFlags::WAITOK | PrFlags::ZERO).unwrap();
    assert_eq!(q, p, "the same item comes back");
    // SAFETY: 100 bytes of the item.
    // SAFETY: 100 bytes of the test's own item.
    let bytes = unsafe { std::slice::from_raw_parts(q.as_ptr(), 100) };
    assert!(bytes.iter().all(|&b| b == 0));
    put(pp, q);
    pp.destroy();
}

#[test]
fn notouch_pools_never_write_into_free_items() {
    let pp = mkpool(PoolConfig::new("t-notouch", 32).flags(PrFlags::NOTOUCH));
    let l = pp.layout();
    assert!(!l.phinpage() && l.usebmap() && l.roflags.contains(PrFlags::NOTOUCH));
    let items: Vec<_> = (0..10).map(|_| pp.get(PrFlags::WAITOK).unwrap()).collect();
    for &p in &items {
        fill(p, 32, 0x5A);
        put(pp, p);
    }
    for &p in &items {
        // SAFETY: free items of a page the pool still holds.
        let b = unsafe { std::slice::from_raw_parts(p.as_ptr(), 32) };
        assert!(b.iter().all(|&x| x == 0x5A), "a free item was written");
    }
    assert_eq!(pp.chk(None), Ok(()));
    pp.destroy();
}

#[test]
fn off_page_headers_and_noalign_big_pages() {
    // 1020 B (1024 with alignment; a redzone fits the padding): headers
    // off-page (phpool-64).
    let pp = mkpool(PoolConfig::new("t-offpage", 1020));
    assert!(!pp.layout().phinpage());
    let items: Vec<_> = (0..50).map(|_| pp.get(PrFlags::WAITOK).unwrap()).collect();
    assert_eq!(pp.stats().npages, 13);
    for p in items {
        put(pp, p);
    }
    assert_eq!(pp.chk(None), Ok(()));
    pp.destroy();
    // 5000 B items on 8 KiB big pages, PR_NOALIGN: nearest-page lookup.
    let big = pool_allocator_big(5000);
    assert_eq!(big.pagesz(), 8192);
    let pb = mkpool(
        PoolConfig::new("t-big", 5000)
            .allocator(big)
            .flags(PrFlags::NOALIGN),
    );
    let items: Vec<_> = (0..9).map(|_| pb.get(PrFlags::WAITOK).unwrap()).collect();
    for &p in &items {
        fill(p, 5000, 1);
    }
    assert_eq!(pb.stats().npages, 9);
    for p in items {
        put(pb, p);
    }
    assert_eq!(pb.chk(None), Ok(()));
    pb.destroy();
}

#[test]
#[should_panic(expected = "pool item size 16777217 too large, use a custom allocator")]
fn big_allocator_above_16m_panics() {
    pool_allocator_big((16 << 20) + 1);
}

#[test]
fn prime_sets_minpages_and_preallocates() {
    let pp = mkpool(PoolConfig::new("t-prime", 256));
    let ipp = pp.layout().itemsperpage as u32;
    pp.prime(3 * ipp + 1);
    let s = pp.stats();
    // maxpages is raised only when it is not above minpages already.
    assert_eq!(
        (s.minpages, s.maxpages, s.npages, s.nget),
        (4, UNLIMITED, 4, 0)
    );
    pp.destroy();
    let pp = mkpool(PoolConfig::new("t-prime2", 256));
    pp.sethardlimit(ipp, None, 0);
    assert_eq!(pp.stats().maxpages, 1);
    pp.prime(3 * ipp + 1);
    let s = pp.stats();
    assert_eq!((s.minpages, s.maxpages, s.npages), (4, 5, 4));
    pp.destroy();
}

#[test]
fn empty_pages_are_released_on_put_only_above_maxpages() {
    let pp = mkpool(PoolConfig::new("t-release", 256));
    let ipp = pp.layout().itemsperpage as u32;
    let items: Vec<_> = (0..4 * ipp)
        .map(|_| pp.get(PrFlags::WAITOK).unwrap())
        .collect();
    let (a, b) = items.split_at(2 * ipp as usize);
    for &p in a {
        put(pp, p);
    }
    // maxpages is inf: empty pages stay, timestamped, on the empty list.
    let s = pp.stats();
    assert_eq!((s.npages, s.nidle, s.npagefree), (4, 2, 0));
    pp.sethardlimit(ipp, None, 0);
    for &p in b {
        put(pp, p);
    }
    let s = pp.stats();
    // Only pages that become empty now, above maxpages, go back: the two
    // that emptied earlier stay until reclaim.
    assert_eq!((s.npages, s.nidle, s.npagefree, s.maxpages), (2, 2, 2, 1));
    pp.destroy();
}

#[test]
fn setlowat_keeps_free_items_and_sethiwat_only_records() {
    let pp = mkpool(PoolConfig::new("t-lowat", 512));
    let ipp = pp.layout().itemsperpage as u32;
    pp.setlowat(2 * ipp + 1);
    let s = pp.stats();
    assert_eq!((s.minitems, s.npages, s.nitems), (2 * ipp + 1, 3, 3 * ipp));
    // Gets below the mark catch up.
    let items: Vec<_> = (0..ipp).map(|_| pp.get(PrFlags::NOWAIT).unwrap()).collect();
    assert!(pp.stats().nitems > 2 * ipp);
    pp.sethiwat(1);
    assert_eq!(pp.stats().maxitems, 1);
    for p in items {
        put(pp, p);
    }
    // maxitems does not release anything by itself (rev 1.284).
    assert_eq!(pp.stats().npagefree, 0);
    pp.destroy();
}

static LIMIT_CLOCK: ManualClock = ManualClock::new();

#[derive(Debug)]
struct Recorder(std::sync::Mutex<Vec<(&'static str, &'static str)>>);
impl LogSink for Recorder {
    fn log_err(&self, w: &'static str, m: &'static str) {
        self.0.lock().unwrap().push((w, m));
    }
}
static RECORDER: Recorder = Recorder(std::sync::Mutex::new(Vec::new()));

fn logged(name: &str) -> usize {
    RECORDER
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(w, _)| *w == name)
        .count()
}

#[test]
fn hard_limit_fails_nowait_and_limitfail_with_rate_limited_warning() {
    pool_set_log_sink(&RECORDER);
    let pp = mkpool(PoolConfig::new("t-hardlimit", 64).clock(&LIMIT_CLOCK));
    let ipp = pp.layout().itemsperpage as u32;
    pp.sethardlimit(3, Some("t-hardlimit: limit reached"), 10);
    assert_eq!(pp.stats().maxpages, 3u32.div_ceil(ipp));
    let items: Vec<_> = (0..3).map(|_| pp.get(PrFlags::NOWAIT).unwrap()).collect();
    assert!(pp.get(PrFlags::NOWAIT).is_none());
    assert!(pp.get(PrFlags::WAITOK | PrFlags::LIMITFAIL).is_none());
    assert_eq!(
        logged("t-hardlimit"),
        1,
        "first hit logs, the second is within the cap"
    );
    LIMIT_CLOCK.advance(10);
    assert!(pp.get(PrFlags::NOWAIT).is_none());
    assert_eq!(logged("t-hardlimit"), 2);
    let s = pp.stats();
    assert_eq!((s.nfail, s.nwarned, s.nout), (3, 2, 3));
    assert_eq!(
        RECORDER
            .0
            .lock()
            .unwrap()
            .iter()
            .find(|(w, _)| *w == "t-hardlimit")
            .unwrap()
            .1,
        "t-hardlimit: limit reached"
    );
    for p in items {
        put(pp, p);
    }
    pp.destroy();
}

#[test]
fn hard_limit_waitok_waits_for_a_put_from_another_thread() {
    let pp = mkpool(PoolConfig::new("t-hlwait", 64));
    pp.sethardlimit(2, None, 0);
    let a = pp.get(PrFlags::WAITOK).unwrap();
    let b = pp.get(PrFlags::WAITOK).unwrap();
    let addr = a.as_ptr() as usize;
    let t = std::thread::spawn(move || {
        let c = pp.get(PrFlags::WAITOK).unwrap(); // sleeps until the put
        c.as_ptr() as usize
    });
    // Wait until the getter is asleep on the pool's channel (PR_WANTED).
    while !pp.stats().flags.contains(PrFlags::WANTED) {
        std::thread::yield_now();
    }
    assert_eq!(pp.stats().nout, 2);
    put(pp, a);
    let c = t.join().unwrap();
    assert_eq!(c, addr, "the freed item went to the waiter");
    let s = pp.stats();
    assert_eq!((s.nout, s.nfail), (2, 0));
    put(pp, b);
    put(pp, NonNull::new(c as *mut u8).unwrap());
    pp.destroy();
}

struct CountHook(
    std::sync::atomic::AtomicUsize,
    &'static std::sync::OnceLock<Vec<usize>>,
);
impl PoolDrainHook for CountHook {
    fn drain(&self, _flags: PrFlags) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}
static HOOK_ITEMS: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();
static HOOK: CountHook = CountHook(std::sync::atomic::AtomicUsize::new(0), &HOOK_ITEMS);

#[test]
fn drain_hook_runs_at_the_limit_and_at_reclaim() {
    let pp = mkpool(PoolConfig::new("t-hook", 64));
    pp.set_drain_hook(&HOOK);
    pp.sethardlimit(1, None, 0);
    let a = pp.get(PrFlags::NOWAIT).unwrap();
    assert!(pp.get(PrFlags::NOWAIT).is_none());
    assert_eq!(HOOK.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    pp.reclaim();
    assert_eq!(HOOK.0.load(std::sync::atomic::Ordering::SeqCst), 2);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pp.set_drain_hook(&HOOK)));
    let msg = *r.unwrap_err().downcast::<String>().unwrap();
    assert_eq!(msg, "pool_set_drain_hook: [t-hook] already set");
    let _ = HOOK.1;
    put(pp, a);
    pp.destroy();
}

static RECLAIM_CLOCK: ManualClock = ManualClock::new();

#[test]
fn reclaim_releases_pages_idle_ten_seconds_down_to_the_minimums() {
    let pp = mkpool(PoolConfig::new("t-reclaim", 512).clock(&RECLAIM_CLOCK));
    let ipp = pp.layout().itemsperpage;
    let items: Vec<_> = (0..4 * ipp)
        .map(|_| pp.get(PrFlags::WAITOK).unwrap())
        .collect();
    pp.setlowat(ipp as u32); // keep one page's worth free
    for p in items {
        put(pp, p);
    }
    // The low-water mark grew a fifth page.
    assert_eq!(pp.stats().npages, 5);
    RECLAIM_CLOCK.advance(9);
    assert!(!pp.reclaim(), "idle 9 s: kept");
    assert_eq!(pp.stats().npages, 5);
    RECLAIM_CLOCK.advance(1);
    assert!(pp.reclaim(), "idle 10 s: released");
    let s = pp.stats();
    assert_eq!(
        (s.npages, s.npagefree, s.nidle),
        (1, 4, 1),
        "minitems keeps one page"
    );
    pp.destroy();
}

static DRAIN_CLOCK: ManualClock = ManualClock::new();

#[test]
fn drain_goes_round_robin_over_pools_with_pages() {
    let a = mkpool(PoolConfig::new("t-drain-a", 256).clock(&DRAIN_CLOCK));
    let b = mkpool(PoolConfig::new("t-drain-b", 256).clock(&DRAIN_CLOCK));
    for pp in [a, b] {
        let p = pp.get(PrFlags::WAITOK).unwrap();
        put(pp, p);
    }
    DRAIN_CLOCK.advance(60);
    let mut seen = HashSet::new();
    for _ in 0..3 * pool_count() {
        if let (Some(pp), _) = pool_drain() {
            seen.insert(pp.name());
        }
        if a.stats().npages == 0 && b.stats().npages == 0 {
            break;
        }
    }
    assert!(seen.contains("t-drain-a") && seen.contains("t-drain-b"));
    assert_eq!((a.stats().npages, b.stats().npages), (0, 0));
    a.destroy();
    b.destroy();
}

#[test]
fn destroy_checks_and_reinit() {
    static P: RawPool = RawPool::new(PoolConfig::new("t-destroy", 48));
    P.init();
    let x = P.get(PrFlags::WAITOK).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| P.destroy()));
    let msg = *r.unwrap_err().downcast::<String>().unwrap();
    assert_eq!(msg, "pool_destroy: [t-destroy] pool busy: still out: 1");
    // Nothing changed: the pool still works.
    put(&P, x);
    assert_eq!(P.chk(None), Ok(()));
    P.destroy();
    assert!(!listed("t-destroy"));
    assert!(!P.is_initialized());
    P.init();
    let y = P.get(PrFlags::WAITOK).unwrap();
    put(&P, y);
    P.destroy();
}

#[test]
fn pool_create_and_typed_pools() {
    let pp = pool_create(PoolConfig::new("t-created", 24));
    assert!(listed("t-created"));
    let p = pp.get(PrFlags::WAITOK).unwrap();
    put(pp, p);
    // SAFETY: `pp` is not used after this.
    unsafe { pool_destroy(pp) };
    assert!(!listed("t-created"));

    #[derive(Debug, PartialEq)]
    struct Obj(u64, String);
    let pool: Pool<Obj> = Pool::new("t-typed", Ipl::None);
    let mut v: Vec<_> = (0..100).map(|i| pool.get(Obj(i, i.to_string()))).collect();
    assert_eq!(pool.raw().stats().nout, 100);
    assert_eq!(v[42].1, "42");
    v[7].0 = 700;
    let o = v.remove(7).into_inner();
    assert_eq!(o, Obj(700, "7".into()));
    drop(v);
    assert_eq!(pool.raw().stats().nout, 0);
    let b = pool.try_get(Obj(1, "x".into())).unwrap();
    assert_eq!(*b, Obj(1, "x".into()));
}

#[test]
fn vmem_arena_as_back_end_for_a_notouch_id_pool() {
    use bsdalloc_vmem::{Arena, ArenaConfig};
    static IDS: Arena = Arena::new(ArenaConfig::new("t-ids", 1));
    static ALLOC: VmemAllocator = VmemAllocator::resource("ids", &IDS, 64);
    IDS.add(1 << 20, 1 << 16, bsdalloc_vmem::VmFlags::NOSLEEP)
        .unwrap();
    let pp = mkpool(
        PoolConfig::new("t-idpool", 1)
            .align(1)
            .allocator(&ALLOC)
            .flags(PrFlags::NOTOUCH | PrFlags::NOALIGN),
    );
    let l = pp.layout();
    assert_eq!((l.itemsperpage, l.pagesz), (64, 64));
    let ids: Vec<usize> = (0..200)
        .map(|_| pp.get(PrFlags::NOWAIT).unwrap().as_ptr() as usize)
        .collect();
    let set: HashSet<_> = ids.iter().copied().collect();
    assert_eq!(set.len(), 200);
    assert!(
        ids.iter()
            .all(|&i| (1 << 20..(1 << 20) + (1 << 16)).contains(&i))
    );
    for i in ids {
        put(
            pp,
            NonNull::new(std::ptr::without_provenance_mut(i)).unwrap(),
        );
    }
    pp.destroy();
    assert_eq!(IDS.stats().inuse, 0);
}

#[test]
#[should_panic(expected = "hands out no memory: the pool needs PR_NOTOUCH")]
fn resource_allocator_without_notouch_panics() {
    use bsdalloc_vmem::{Arena, ArenaConfig};
    static IDS: Arena = Arena::new(ArenaConfig::new("t-ids2", 1));
    static ALLOC: VmemAllocator = VmemAllocator::resource("ids2", &IDS, 64);
    mkpool(PoolConfig::new("t-idpool2", 8).allocator(&ALLOC));
}

#[test]
fn totalpages_counts_pool_pages() {
    let pp = mkpool(PoolConfig::new("t-total", 2048));
    let items: Vec<_> = (0..20).map(|_| pp.get(PrFlags::WAITOK).unwrap()).collect();
    assert!(pool_totalpages() >= 10);
    for p in items {
        put(pp, p);
    }
    pp.destroy();
}

#[test]
fn whatis_and_printit_describe_items() {
    let pp = mkpool(PoolConfig::new("t-whatis", 128));
    let a = pp.get(PrFlags::WAITOK).unwrap();
    let b = pp.get(PrFlags::WAITOK).unwrap();
    put(pp, b);
    let mut out = String::new();
    pool_whatis(a.as_ptr() as usize + 5, &mut out).unwrap();
    assert_eq!(
        out,
        format!(
            "{:#x} is {:#x}+5 in POOL 't-whatis' (allocated)\n",
            a.as_ptr() as usize + 5,
            a.as_ptr() as usize
        )
    );
    let mut out = String::new();
    pool_whatis(b.as_ptr() as usize, &mut out).unwrap();
    assert!(out.ends_with("in POOL 't-whatis' (free)\n"), "{out}");
    let mut out = String::new();
    pp.printit("p", &mut out).unwrap();
    let size = pp.layout().size;
    assert!(out.starts_with(&format!(
        "POOL t-whatis: size {size}, align 8, ioff 56, roflags 0x"
    )));
    assert!(out.contains("\tnget 2, nfail 0, nput 1\n"));
    assert!(out.contains("partial-page list:"));
    let mut out = String::new();
    pp.printit("s", &mut out).unwrap();
    assert!(out.starts_with("POOL t-whatis:0x"));
    put(pp, a);
    pp.destroy();
}

#[test]
fn vmstat_m_table_format() {
    let rows = [
        PoolStats {
            name: "mbpl",
            flags: PrFlags::PHINPAGE | PrFlags::USEBMAP,
            size: 256,
            reqsize: 256,
            align: 8,
            itemoffset: 56,
            pagesize: 4096,
            itemsperpage: 15,
            nitems: 20,
            nout: 10,
            hardlimit: UNLIMITED,
            npages: 2,
            minitems: 0,
            maxitems: UNLIMITED,
            minpages: 0,
            maxpages: UNLIMITED,
            nget: 123456,
            nfail: 0,
            nput: 123446,
            npagealloc: 7,
            npagefree: 5,
            hiwat: 4,
            nidle: 1,
            poolid: 1,
            ipl: Ipl::Vm,
            nwarned: 0,
        },
        PoolStats {
            name: "averyverylongpoolname",
            flags: PrFlags::RECURSIVE | PrFlags::USEBMAP,
            size: 4096,
            nout: 1,
            npages: 1,
            nitems: 0,
            itemsperpage: 1,
            maxpages: 3,
            nget: 1,
            nput: 0,
            npagealloc: 1,
            npagefree: 0,
            hiwat: 1,
            nidle: 0,
            ..rows_default()
        },
        PoolStats {
            name: "unused",
            nget: 0,
            ..rows_default()
        },
    ];
    let t = VmstatRows {
        rows: &rows,
        opts: VmstatOptions::default(),
    }
    .to_string();
    let want = "\
Memory resource pool statistics
Name        Size Requests Fail Releases Pgreq Pgrel Npage Hiwat Minpg Maxpg Idle
mbpl         256   123456    0   123446     7     5     2     4     0   inf    1
averyverylongpoolname 4096 1 0        0     1     0     1     1     0     3    0
Totals             123457    0   123446     8     5     3

In use 2K, total allocated 8K; utilization 25.0%
";
    assert_eq!(t, want);
    let w = VmstatRows {
        rows: &rows[..1],
        opts: VmstatOptions {
            wide: true,
            verbose: true,
        },
    }
    .to_string();
    let want_w = "\
Memory resource pool statistics
Name              Size    Requests Fail    Releases  InUse Avail  Pgreq  Pgrel Npage PageSz Hiwat Minpg Maxpg Idle Flags   Util
mbpl               256      123456    0      123446     10    20      7      5     2   4096     4     0   inf    1 0x10040  31.2%
Totals                      123456    0      123446     10    20      7      5     2

In use 2K, total allocated 8K; utilization 25.0%
";
    assert_eq!(w, want_w);
}

fn rows_default() -> PoolStats {
    PoolStats {
        name: "",
        flags: PrFlags::empty(),
        size: 64,
        reqsize: 64,
        align: 8,
        itemoffset: 0,
        pagesize: 4096,
        itemsperpage: 63,
        nitems: 0,
        nout: 0,
        hardlimit: UNLIMITED,
        npages: 0,
        minitems: 0,
        maxitems: UNLIMITED,
        minpages: 0,
        maxpages: UNLIMITED,
        nget: 0,
        nfail: 0,
        nput: 0,
        npagealloc: 0,
        npagefree: 0,
        hiwat: 0,
        nidle: 0,
        poolid: 0,
        ipl: Ipl::None,
        nwarned: 0,
    }
}

#[test]
fn vmstat_m_over_the_system_shows_a_workload() {
    let a = mkpool(PoolConfig::new("t-vm-knotepl", 136).ipl(Ipl::Vm));
    let b = mkpool(PoolConfig::new("t-vm-namei", 1024));
    let xs: Vec<_> = (0..300).map(|_| a.get(PrFlags::NOWAIT).unwrap()).collect();
    let ys: Vec<_> = (0..40).map(|_| b.get(PrFlags::WAITOK).unwrap()).collect();
    for p in &xs[..100] {
        put(a, *p);
    }
    let table = pool_vmstat_m(VmstatOptions {
        wide: true,
        verbose: false,
    })
    .to_string();
    println!("{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with("t-vm-knotepl"))
        .unwrap();
    let cols: Vec<&str> = row.split_whitespace().collect();
    let size = a.stats().size.to_string();
    assert_eq!(&cols[1..6], [size.as_str(), "300", "0", "100", "200"]);
    assert!(table.lines().any(|l| l.starts_with("t-vm-namei")));
    assert!(table.contains("\nIn use "));
    for p in &xs[100..] {
        put(a, *p);
    }
    for p in ys {
        put(b, p);
    }
    a.destroy();
    b.destroy();
}

/// An allocator that fails while `fail` is set and counts its calls.
struct Flaky {
    inner: &'static KmemAllocator,
    fail: std::sync::atomic::AtomicBool,
    calls: std::sync::atomic::AtomicUsize,
}

// SAFETY: forwards to a standard allocator, or returns None.
unsafe impl PoolAllocator for Flaky {
    fn pagesz(&self) -> usize {
        0
    }
    fn alloc(&self, pagesz: usize, flags: PrFlags) -> Option<NonNull<u8>> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        self.inner.alloc(pagesz, flags)
    }
    unsafe fn free(&self, page: NonNull<u8>, pagesz: usize) {
        // SAFETY: forwarded from the pool.
        unsafe { self.inner.free(page, pagesz) }
    }
    fn name(&self) -> &'static str {
        "flaky"
    }
}

static FLAKY: Flaky = Flaky {
    inner: &POOL_ALLOCATOR_KMEM,
    fail: std::sync::atomic::AtomicBool::new(true),
    calls: std::sync::atomic::AtomicUsize::new(0),
};

/// The drain hook "frees memory": the allocator works again.
struct Unflake;
impl PoolDrainHook for Unflake {
    fn drain(&self, flags: PrFlags) {
        assert!(flags.contains(PrFlags::NOWAIT));
        FLAKY.fail.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}
static UNFLAKE: Unflake = Unflake;

#[test]
fn nowait_page_failure_runs_the_drain_hook_and_retries_once() {
    let pp = mkpool(PoolConfig::new("t-flaky", 64).allocator(&FLAKY));
    assert_eq!(pp.layout().pagesz, ps(), "pa_pagesz 0 is PAGE_SIZE");
    pp.set_drain_hook(&UNFLAKE);
    let p = pp
        .get(PrFlags::NOWAIT)
        .expect("the retry after the hook succeeds");
    assert_eq!(FLAKY.calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    put(pp, p);
    pp.destroy();
}

#[test]
fn pserialize_pools_are_notouch_and_release_pages_after_a_barrier() {
    let pp = mkpool(PoolConfig::new("t-pser", 64).flags(PrFlags::PSERIALIZE));
    let l = pp.layout();
    assert!(l.roflags.contains(PrFlags::NOTOUCH | PrFlags::USEBMAP) && !l.phinpage());
    let ipp = l.itemsperpage as u32;
    let items: Vec<_> = (0..3 * ipp)
        .map(|_| pp.get(PrFlags::WAITOK).unwrap())
        .collect();
    for &p in &items {
        fill(p, 64, 0x77);
    }
    pp.sethardlimit(ipp, None, 0);
    for &p in &items {
        put(pp, p);
    }
    // Two pages went back (after the cross-call barrier); free items of the
    // page that stayed were never written (readers may still look).
    let s = pp.stats();
    assert_eq!((s.npages, s.npagefree), (1, 2));
    assert_eq!(pp.chk(None), Ok(()));
    pp.destroy();
}
