//! K7 with jemalloc as the global allocator (`c-peers` only: jemalloc's C
//! build is slow). See `bsdalloc_benches::k7`.

#[global_allocator]
static A: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    bsdalloc_benches::k7::program_main("jemalloc", None);
}
