//! Census at teardown, on a kmem instance of malloc's own (`malloc_init`)
//! over a counting page source with a memory budget: a threaded workload
//! over several types; `M_WAITOK` waiting for the kernel map once the
//! budget is used up (counted in the type's "Kern Limit" column) and
//! woken by a free; then every type is at zero, kmem's census finds
//! nothing outstanding, and after destroy every page and every byte of
//! address space is back with the page source.

use std::sync::atomic::{AtomicBool, Ordering};

use bsdalloc_kmalloc::*;
use bsdalloc_kmem::{Kmem, KmemCensus, KmemConfig};
use bsdalloc_platform::{CountingPages, OS_PAGES, OsPages};

/// OS pages, counted: after teardown nothing may be left.
static PAGES: CountingPages<OsPages> = CountingPages::new(&OS_PAGES);
static K: Kmem = Kmem::new();
static OTHER: Kmem = Kmem::new();

MALLOC_DEFINE!(M_C0, "census0", "census workload 0");
MALLOC_DEFINE!(M_C1, "census1", "census workload 1");
// Its own limit above the budget: NetBSD's default, 60 % of nkmempages
// (the budget here), would stop it at the type's limit before the map's.
MALLOC_DEFINE_LIMIT!(M_MAPWAIT, "mapwait", "waits for the kernel map", 1 << 40);

static TYPES: [&MallocType; 3] = [&M_C0, &M_C1, &M_TEMP];

fn workload(w: usize) {
    let ps = backend().page_size();
    let mut live: Vec<(usize, usize, usize)> = Vec::new();
    for i in 0..3000usize {
        let t = (i + w) % TYPES.len();
        let size = match (i + w) % 6 {
            0 => i % 64,
            1 => 100 + i % 900,
            2 => 1025 + i % 2000,
            3 => ps + (i * 97) % (2 * ps),
            _ => 8,
        };
        let flags = match i % 3 {
            0 => M_WAITOK,
            1 => M_NOWAIT,
            _ => M_WAITOK | M_ZERO,
        };
        if let Some(p) = malloc(size, TYPES[t], flags) {
            // SAFETY: `size` bytes.
            unsafe { p.as_ptr().write_bytes(i as u8, size) };
            live.push((p.as_ptr().addr(), t, size));
        }
        if (live.len() > 6 || i % 4 == 0) && !live.is_empty() {
            let (p, t, _) = live.swap_remove(i % live.len());
            // SAFETY: ours.
            unsafe { free(p as *mut u8, TYPES[t]) };
        }
    }
    for (p, t, _) in live {
        // SAFETY: ours.
        unsafe { free(p as *mut u8, TYPES[t]) };
    }
}

/// Use the budget up with `M_NOWAIT`, start an `M_WAITOK` allocation and
/// free one block once it had to wait for the kernel map. Returns whether
/// it waited (it may not, if reclaiming the caches freed memory after the
/// fill failed).
fn wait_for_the_map() -> bool {
    let ps = backend().page_size();
    let chunk = 3 * ps; // 4 pages with the header's page
    let mut held = Vec::new();
    while let Some(p) = malloc(chunk, &M_MAPWAIT, M_NOWAIT) {
        held.push(p.as_ptr().addr());
        assert!(held.len() < 10_000, "the budget was passed");
    }
    let before = M_MAPWAIT.stats().mapblocks;
    let done = AtomicBool::new(false);
    let waited = std::thread::scope(|s| {
        let sleeper = s.spawn(|| {
            let p = malloc(chunk, &M_MAPWAIT, M_WAITOK).expect("M_WAITOK never fails");
            done.store(true, Ordering::Release);
            // SAFETY: ours.
            unsafe { free(p.as_ptr(), &M_MAPWAIT) };
        });
        while M_MAPWAIT.stats().mapblocks == before && !done.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        let waited = M_MAPWAIT.stats().mapblocks > before;
        let p = held.pop().unwrap() as *mut u8;
        // SAFETY: ours.
        unsafe { free(p, &M_MAPWAIT) };
        sleeper.join().unwrap();
        waited
    });
    for p in held {
        // SAFETY: ours.
        unsafe { free(p as *mut u8, &M_MAPWAIT) };
    }
    waited
}

#[test]
fn census_at_teardown_on_an_instance_of_its_own() {
    K.bootstrap(
        KmemConfig::new()
            .pages(&PAGES)
            .va_size(128 << 20)
            .limit_pages(512)
            .free_target_pages(0),
    )
    .unwrap();
    malloc_init(&K).unwrap();
    malloc_init(&K).unwrap();
    assert_eq!(malloc_init(&OTHER), Err(MallocError::AlreadyInitialised));
    assert!(std::ptr::eq(backend(), &K));

    std::thread::scope(|s| {
        for w in 0..3 {
            s.spawn(move || workload(w));
        }
    });
    assert!(
        (0..5).any(|_| wait_for_the_map()),
        "an M_WAITOK allocation never had to wait for the kernel map"
    );
    let s = M_MAPWAIT.stats();
    assert!(s.mapblocks >= 1);
    let table = malloc_stats().to_string();
    assert!(table.contains("Memory Totals:  In Use    Free    Requests"));
    let row = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some("mapwait"))
        .unwrap();
    assert!(
        row.contains(&format!("{:>5}{:>6}", s.limblocks, s.mapblocks)),
        "{row}"
    );

    for t in TYPES.iter().chain([&&M_MAPWAIT]) {
        let s = t.stats();
        assert_eq!((s.inuse, s.memuse), (0, 0), "{s:?}");
        assert!(s.calls > 0, "{s:?}");
    }
    assert_eq!(K.census(), KmemCensus::default());
    // SAFETY: nothing is used any more (and nothing allocates after).
    unsafe { K.destroy() };
    assert_eq!(PAGES.committed_bytes(), 0, "pages committed");
    assert_eq!(PAGES.reserved_bytes(), 0, "address space reserved");
}
