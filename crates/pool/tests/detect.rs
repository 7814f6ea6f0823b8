//! One test per detection class, each with NetBSD's message, each leaving
//! the pool as it was (checked with `pool_chk` and the counters); the
//! checks behind a feature are also shown to miss the bug when off.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::NonNull;

use bsdalloc_pool::*;

fn mkpool(cfg: PoolConfig) -> &'static RawPool {
    let p: &'static RawPool = Box::leak(Box::new(RawPool::new(cfg)));
    p.init();
    p
}

/// Run `f`, which must panic; its message.
fn panics(f: impl FnOnce()) -> String {
    let e = catch_unwind(AssertUnwindSafe(f)).expect_err("no panic");
    match e.downcast::<String>() {
        Ok(s) => *s,
        Err(e) => (*e.downcast::<&str>().unwrap()).to_string(),
    }
}

/// # Safety
/// As `RawPool::put`, except that the tests hand in bad pointers on
/// purpose, ones the checks catch before touching anything but the page
/// header.
unsafe fn put(pp: &RawPool, p: NonNull<u8>) {
    // SAFETY: forwarded.
    unsafe { pp.put(p) }
}

fn unchanged(pp: &RawPool, before: PoolStats) {
    assert_eq!(pp.stats(), before, "the refused call changed the pool");
    assert_eq!(pp.chk(Some("after")), Ok(()));
}

#[test]
fn double_free_on_a_bitmap_pool() {
    let pp = mkpool(PoolConfig::new("d-dfree", 64));
    assert!(pp.layout().usebmap());
    let a = pp.get(PrFlags::WAITOK).unwrap();
    let b = pp.get(PrFlags::WAITOK).unwrap();
    // SAFETY: a's first free is legitimate.
    unsafe { put(pp, a) };
    let before = pp.stats();
    // SAFETY: the second is the bug under test: the bitmap check refuses
    // it before any change.
    let msg = panics(|| unsafe { put(pp, a) });
    assert_eq!(
        msg,
        format!(
            "pr_item_bitmap_put: [d-dfree] {:p} already freed",
            a.as_ptr()
        )
    );
    unchanged(pp, before);
    // SAFETY: b is out.
    unsafe { put(pp, b) };
    pp.destroy();
}

/// A list-managed pool (8-byte items) for the magic tests.
fn list_pool(name: &'static str) -> &'static RawPool {
    let pp = mkpool(PoolConfig::new(name, 8));
    assert!(!pp.layout().usebmap());
    pp
}

#[test]
fn write_after_free_is_caught_by_the_magic() {
    let pp = list_pool("d-waf");
    let a = pp.get(PrFlags::WAITOK).unwrap();
    // SAFETY: a is ours; after the put, the write is the bug under test.
    unsafe {
        put(pp, a);
        a.as_ptr().cast::<u32>().write(0x1234_5678);
    }
    if cfg!(feature = "magic") {
        let before = pp.stats();
        let msg = panics(|| {
            pp.get(PrFlags::WAITOK);
        });
        assert!(
            msg.starts_with(
                "pr_item_linkedlist_get: [d-waf] free list modified: magic=12345678; page 0x"
            ),
            "{msg}"
        );
        assert!(
            msg.ends_with(&format!("item addr {:p}", a.as_ptr())),
            "{msg}"
        );
        assert_eq!(pp.stats(), before);
        // pool_chk finds it too, with its own message.
        let msg = panics(|| {
            let _ = pp.chk(Some("waf"));
        });
        assert!(
            msg.starts_with("waf: pool(d-waf): free list modified: magic=12345678;"),
            "{msg}"
        );
    } else {
        // With the check off the corrupted item is handed out silently.
        let b = pp.get(PrFlags::WAITOK).unwrap();
        assert_eq!(b, a);
        // SAFETY: b is out.
        unsafe { put(pp, b) };
    }
}

#[test]
fn double_free_on_a_list_pool_is_caught_on_reuse() {
    let pp = list_pool("d-dfree-list");
    let a = pp.get(PrFlags::WAITOK).unwrap();
    let _keep = pp.get(PrFlags::WAITOK).unwrap();
    // SAFETY: a is out.
    unsafe { put(pp, a) };
    if cfg!(feature = "redzone") {
        // The free-list link overwrote the redzone: the second put is
        // caught right there (NetBSD checks the redzone first).
        // SAFETY: the bug under test, refused before any change.
        let msg = panics(|| unsafe { put(pp, a) });
        assert!(
            msg.starts_with("pool_redzone_check: [d-dfree-list]"),
            "{msg}"
        );
        return;
    }
    // SAFETY: the bug under test (a list pool cannot see it at put time,
    // as in NetBSD).
    unsafe { put(pp, a) };
    // The item is now on the free list twice: handed out, written, and its
    // second copy is caught with the magic on.
    let x = pp.get(PrFlags::WAITOK).unwrap();
    assert_eq!(x, a);
    // SAFETY: the pool handed x out.
    unsafe { x.as_ptr().write_bytes(0xEE, 8) };
    if cfg!(feature = "magic") {
        let msg = panics(|| {
            pp.get(PrFlags::WAITOK);
        });
        assert!(msg.contains("free list modified: magic=eeeeeeee"), "{msg}");
    } else {
        let y = pp.get(PrFlags::WAITOK).unwrap();
        assert_eq!(y, x, "the same item handed out twice, unnoticed");
    }
}

#[repr(C, align(65536))]
struct Page([u8; 65536]);

#[test]
fn foreign_pointer_on_an_on_page_pool() {
    let pp = mkpool(PoolConfig::new("d-foreign", 64));
    let keep = pp.get(PrFlags::WAITOK).unwrap();
    let before = pp.stats();
    // A zeroed, page-aligned buffer that no pool owns: its "header" does
    // not point back at its page.
    let buf: &'static mut Page = Box::leak(Box::new(Page([0; 65536])));
    let foreign = NonNull::new(buf.0.as_mut_ptr().wrapping_add(128)).unwrap();
    // SAFETY: the bug under test; the check reads only the page start.
    let msg = panics(|| unsafe { put(pp, foreign) });
    if cfg!(feature = "redzone") {
        // The redzone is checked first and a foreign item has none.
        assert!(msg.starts_with("pool_redzone_check: [d-foreign]"), "{msg}");
    } else {
        assert_eq!(
            msg,
            format!(
                "pr_phinpage_check: [d-foreign] item {:p} not part of pool",
                foreign.as_ptr()
            )
        );
    }
    unchanged(pp, before);
    // An address in our own page but below the item area (the header).
    let page = NonNull::new(keep.as_ptr().map_addr(|a| a & !(page_size() - 1))).unwrap();
    // SAFETY: the bug under test.
    let bad = unsafe { page.add(8) };
    // SAFETY: the bug under test, caught before any change.
    let msg = panics(|| unsafe { put(pp, bad) });
    if !cfg!(feature = "redzone") {
        assert!(msg.ends_with("below item space"), "{msg}");
    }
    // An interior pointer of a bitmap pool.
    // SAFETY: the bug under test.
    let inner = unsafe { keep.add(3) };
    // SAFETY: the bug under test, caught before any change.
    let msg = panics(|| unsafe { put(pp, inner) });
    if !cfg!(feature = "redzone") {
        assert!(msg.ends_with("is not the start of an item"), "{msg}");
    }
    unchanged(pp, before);
    // SAFETY: keep is out.
    unsafe { put(pp, keep) };
}

#[test]
fn item_of_another_pool() {
    let a = mkpool(PoolConfig::new("d-pool-a", 96));
    let b = mkpool(PoolConfig::new("d-pool-b", 96));
    let x = a.get(PrFlags::WAITOK).unwrap();
    let y = b.get(PrFlags::WAITOK).unwrap();
    let before = b.stats();
    let (ida, idb) = (a.stats().poolid, before.poolid);
    // SAFETY: the bug under test.
    let msg = panics(|| unsafe { put(b, x) });
    assert_eq!(
        msg,
        format!(
            "pr_phinpage_check: [d-pool-b] item {:p} poolid {ida} != {idb}",
            x.as_ptr()
        )
    );
    unchanged(b, before);
    // Off-page pools: the tree has no header for a foreign page.
    let c = mkpool(PoolConfig::new("d-offpage", 2040));
    assert!(!c.layout().phinpage());
    let z = c.get(PrFlags::WAITOK).unwrap();
    let before = c.stats();
    // SAFETY: the bug under test.
    let msg = panics(|| unsafe { put(c, x) });
    if cfg!(feature = "redzone") {
        assert!(msg.starts_with("pool_redzone_check: [d-offpage]"), "{msg}");
    } else {
        assert_eq!(msg, "pool_do_put: [d-offpage] page header missing");
    }
    unchanged(c, before);
    // SAFETY: each item back to its own pool.
    unsafe {
        put(a, x);
        put(b, y);
        put(c, z);
    }
}

#[test]
fn put_with_none_out() {
    let pp = mkpool(PoolConfig::new("d-noneout", 64));
    let x = pp.get(PrFlags::WAITOK).unwrap();
    // SAFETY: x is out.
    unsafe { put(pp, x) };
    // SAFETY: the bug under test.
    let msg = panics(|| unsafe { put(pp, x) });
    assert_eq!(msg, "pool_do_put: [d-noneout] putting with none out");
}

#[test]
fn redzone_overrun() {
    let pp = mkpool(PoolConfig::new("d-redzone", 60));
    assert_eq!(pp.layout().redzone, cfg!(feature = "redzone"));
    let x = pp.get(PrFlags::WAITOK).unwrap();
    // SAFETY: one byte past the requested size, inside the rounded item.
    unsafe { *x.as_ptr().add(60) ^= 0xFF };
    if cfg!(feature = "redzone") {
        let before = pp.stats();
        // SAFETY: an item of the pool, with its redzone overwritten.
        let msg = panics(|| unsafe { put(pp, x) });
        assert!(
            msg.starts_with("pool_redzone_check: [d-redzone] 0x"),
            "{msg}"
        );
        unchanged(pp, before);
    } else {
        // SAFETY: an item of the pool; without the redzone nothing sees
        // the overrun.
        unsafe { put(pp, x) };
        assert_eq!(pp.stats().nout, 0);
    }
}

#[test]
fn destroy_with_items_out() {
    let pp = mkpool(PoolConfig::new("d-busy", 64));
    let x = pp.get(PrFlags::WAITOK).unwrap();
    let before = pp.stats();
    let msg = panics(|| pp.destroy());
    assert_eq!(msg, "pool_destroy: [d-busy] pool busy: still out: 1");
    unchanged(pp, before);
    // SAFETY: x is out.
    unsafe { put(pp, x) };
    pp.destroy();
}

#[test]
fn bad_input_to_init_and_get() {
    let cases: [(PoolConfig, &str); 5] = [
        (PoolConfig::new("d-size0", 0), "pool_init: [d-size0] size 0"),
        (
            PoolConfig::new("d-align", 8).align(12),
            "pool_init: [d-align] align 12 is not a power of two",
        ),
        (
            PoolConfig::new("d-ioff", 8).align_offset(4),
            "pool_init: [d-ioff] ioff == 0 failed: align_offset 4 (XXX ioff will be removed)",
        ),
        (
            PoolConfig::new("d-large", 8192),
            "pool_init: [d-large] pool item size (8192) larger than page size (4096)",
        ),
        (
            PoolConfig::new("d-bmap", 1)
                .align(1)
                .flags(PrFlags::NOTOUCH)
                .allocator(&POOL_ALLOCATOR_BIG[0]),
            "pool_init: [d-bmap] too large itemsperpage(8192) for PR_USEBMAP",
        ),
    ];
    for (cfg, want) in cases {
        let pp: &'static RawPool = Box::leak(Box::new(RawPool::new(cfg)));
        let msg = panics(|| pp.init());
        let want = want.replace("(4096)", &format!("({})", page_size()));
        assert_eq!(msg, want);
        assert!(!pp.is_initialized(), "a refused init left state behind");
    }
    let pp = mkpool(PoolConfig::new("d-flags", 64));
    let msg = panics(|| {
        pp.get(PrFlags::empty());
    });
    assert_eq!(
        msg,
        "pool_get: [d-flags] exactly one of PR_WAITOK and PR_NOWAIT is required, not 0"
    );
    let msg = panics(|| {
        pp.get(PrFlags::WAITOK | PrFlags::NOWAIT);
    });
    assert!(msg.ends_with("not PR_WAITOK | PR_NOWAIT"), "{msg}");
    let msg = panics(|| pp.init());
    assert_eq!(msg, "pool_init: [d-flags] already initialised");
    let fresh: &'static RawPool = Box::leak(Box::new(RawPool::new(PoolConfig::new("d-uninit", 8))));
    let msg = panics(|| {
        fresh.get(PrFlags::NOWAIT);
    });
    assert_eq!(
        msg,
        "pool_get: [d-uninit] pr_itemsperpage is zero, pool not initialized?"
    );
    assert_eq!(pp.stats().nget, 0);
}
