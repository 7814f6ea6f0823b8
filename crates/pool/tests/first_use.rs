//! The first use of the standard allocators races: threads that each find
//! no kernel map set one up under one lock, and all end up with the same
//! map (before, a thread could set up a second map while the first was
//! being published, and panic "a different kernel map is already in use").
//! Its own test binary, so that nothing has set up the map before.

use std::sync::Barrier;

use bsdalloc_pool::kernel_map;

#[test]
fn first_users_race_for_the_kernel_map() {
    let barrier = Barrier::new(8);
    let maps: Vec<usize> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    std::ptr::from_ref(kernel_map()).addr()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(maps.iter().all(|&m| m == maps[0]), "maps: {maps:x?}");
    assert_eq!(maps[0], std::ptr::from_ref(kernel_map()).addr());
}
