//! The top-level `README.md`'s examples as doctests, so that they keep
//! compiling and running as the crates change (`cargo test -p
//! bsdalloc-readme --doc`). Only its `rust` blocks are tests; `toml`, `sh`
//! and `text` blocks are not Rust to rustdoc.
#![no_std]

#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
