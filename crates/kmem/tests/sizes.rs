//! Every size from 1 byte to 3 pages on the default instance (the
//! machine's page size, 64-byte lines): allocated, aligned as its class
//! promises, filled, checked while others are live, freed.

mod common;

use bsdalloc_kmem::kmem;

#[test]
fn every_size_up_to_three_pages() {
    let k = kmem();
    common::every_size(k, 3 * k.page_size());
    assert_eq!(k.stats().large.live, 0);
}
