//! Freed pages really leave the process: RSS (from /proc/self/smaps_rollup)
//! drops after free when the free-page target is 0, and after a pagedaemon
//! pass when pages were cached.

use bsdalloc_platform::{OS_PAGES, resident_bytes};
use bsdalloc_uvm_pages::{KernelMap, KmConfig, UvmFlags};

#[test]
fn rss_drops_after_free() {
    const LEN: usize = 64 << 20;
    for target_pages in [0, LEN / 4096] {
        let m = KernelMap::bootstrap(KmConfig {
            size: 1 << 30,
            limit_pages: 0,
            free_target_pages: target_pages,
            pages: &OS_PAGES,
        })
        .unwrap();
        let before = resident_bytes().unwrap();
        let p = m.uvm_km_alloc(LEN, 0, UvmFlags::WIRED).unwrap();
        // SAFETY: LEN bytes of wired memory.
        unsafe { p.as_ptr().write_bytes(0x77, LEN) };
        let touched = resident_bytes().unwrap();
        assert!(
            touched >= before + LEN * 9 / 10,
            "RSS rises: {before} -> {touched}"
        );
        m.uvm_km_free(p, LEN, UvmFlags::WIRED);
        if target_pages != 0 {
            assert_eq!(m.stats().cached_pages, LEN / 4096, "kept for reuse");
            m.pagedaemon();
        }
        let after = resident_bytes().unwrap();
        assert!(
            after + LEN * 9 / 10 <= touched,
            "RSS drops: {touched} -> {after} (target {target_pages})"
        );
        assert_eq!(m.stats().committed_pages, 0);
        // SAFETY: nothing is allocated and the map is not used again.
        unsafe { KernelMap::destroy(core::ptr::NonNull::from(m)) };
    }
}
