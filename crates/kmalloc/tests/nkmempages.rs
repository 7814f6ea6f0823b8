//! NetBSD sizes `nkmempages` from physical memory and gives each malloc
//! type 60 % of it by default; here the kernel map's memory budget is the
//! physical memory.

use bsdalloc_kmalloc::*;
use bsdalloc_kmem::{Kmem, KmemConfig};

MALLOC_DEFINE!(M_BUDGETED, "budgeted", "default limit under a budget");

static K: Kmem = Kmem::new();

#[test]
fn the_default_limit_is_60_percent_of_the_memory_budget() {
    K.bootstrap(KmemConfig::new().limit_pages(1000)).unwrap();
    malloc_init(&K).unwrap();
    let p = malloc(100, &M_BUDGETED, M_WAITOK).unwrap();
    let budget = 1000 * K.page_size();
    assert_eq!(M_BUDGETED.limit(), budget / 10 * 6);
    // The table's Limit column has room for it.
    let row = M_BUDGETED.stats().to_string();
    assert!(
        row.contains(&format!("{}K", budget / 10 * 6 / 1024)),
        "{row}"
    );
    // SAFETY: ours.
    unsafe { free(p.as_ptr(), &M_BUDGETED) };
}
