//! K7 with mimalloc as the global allocator. See `bsdalloc_benches::k7`.

#[global_allocator]
static A: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    bsdalloc_benches::k7::program_main("mimalloc", None);
}
