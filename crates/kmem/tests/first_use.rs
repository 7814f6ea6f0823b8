//! Eight threads race to be the default instance's first user: exactly one
//! instance is set up and published (under one lock), everyone gets it,
//! and it runs over pool's standard kernel map.

use std::sync::{Arc, Barrier};

use bsdalloc_kmem::*;

#[test]
fn racing_first_users_share_one_instance() {
    let go = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let go = go.clone();
            std::thread::spawn(move || {
                go.wait();
                let p = if i % 2 == 0 {
                    kmem_alloc(64 + i, KM_SLEEP)
                } else {
                    kmem_intr_zalloc(5000 + i, KM_NOSLEEP)
                }
                .unwrap();
                let map = kmem().map() as *const _ as usize;
                // SAFETY: ours.
                unsafe {
                    if i % 2 == 0 {
                        kmem_free(p.as_ptr(), 64 + i);
                    } else {
                        kmem_intr_free(p.as_ptr(), 5000 + i);
                    }
                }
                map
            })
        })
        .collect();
    let maps: Vec<usize> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let std_map = bsdalloc_pool::kernel_map() as *const _ as usize;
    assert!(maps.iter().all(|&m| m == std_map));
    assert!(kmem().is_ready());
    assert_eq!(kmem().census().outstanding(), 0);
}
