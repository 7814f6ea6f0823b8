//! K7 with the system allocator (glibc malloc) as the global allocator.
//! See `bsdalloc_benches::k7`.

#[global_allocator]
static A: std::alloc::System = std::alloc::System;

fn main() {
    bsdalloc_benches::k7::program_main("system", None);
}
