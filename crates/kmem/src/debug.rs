//! The debug modes of the cache path (spec §4.5), each a feature that
//! compiles to nothing when off:
//!
//! - `kmem-size` (`KMEM_SIZE`): the requested size, as a `usize`, right
//!   after the caller's bytes (unaligned); `kmem_free` compares it with its
//!   `size` argument and overwrites it with 0xFF bytes, so a second free
//!   of the same object fails the comparison too.
//! - `redzone` (`KMEM_REDZONE`): every byte from the end of the caller's
//!   bytes (and the footer) to the end of `allocsz` — at least
//!   [`REDZONE_MIN`] — holds an address-derived pattern, checked at free.
//! - `poison` (`KMEM_POISON`): a freed object is filled with an
//!   address-derived pattern over its whole class size, and checked when it
//!   is handed out again; the caches' constructor poisons objects fresh
//!   from the pool, so every object handed out was poisoned.
//!
//! All of them are raw memory work on objects of the caller's class, in
//! this one module.

use core::ptr::NonNull;

/// The fewest redzone bytes (`KMEM_REDZONE`'s 2).
pub(crate) const REDZONE_MIN: usize = 2;

/// The pattern byte for address `a` (the top byte of the address times a
/// constant, as pool's redzone does).
#[cfg_attr(not(any(feature = "redzone", feature = "poison")), allow(dead_code))]
#[inline]
fn pattern(a: usize) -> u8 {
    #[cfg(target_pointer_width = "64")]
    {
        ((a as u64).wrapping_mul(0x9e37_ffff_fffc_0001) >> 56) as u8
    }
    #[cfg(not(target_pointer_width = "64"))]
    {
        ((a as u32).wrapping_mul(0x9e37_79b1) >> 24) as u8
    }
}

/// The redzone byte expected at `a`; the first one is never 0, so an
/// off-by-one NUL terminator is caught.
#[cfg(feature = "redzone")]
#[inline]
fn redzone_byte(a: usize, first: bool) -> u8 {
    let p = pattern(a);
    if first && p == 0 { 0xFE } else { p }
}

/// The poison byte at `a` (never the redzone's: the top bit flipped).
#[cfg(feature = "poison")]
#[inline]
fn poison_byte(a: usize) -> u8 {
    pattern(a) ^ 0x5a
}

/// Fill `len` bytes at `p` with poison.
///
/// # Safety
/// `len` bytes at `p` are ours.
#[cfg(feature = "poison")]
unsafe fn poison_fill(p: NonNull<u8>, len: usize) {
    for i in 0..len {
        // SAFETY: the caller's contract.
        unsafe {
            let b = p.as_ptr().add(i);
            b.write(poison_byte(b.addr()));
        }
    }
}

/// A cache constructor that poisons objects fresh from the pool.
#[cfg(feature = "poison")]
#[derive(Debug)]
pub(crate) struct PoisonCtor(usize);

#[cfg(feature = "poison")]
impl PoisonCtor {
    pub(crate) const fn all() -> [PoisonCtor; crate::classes::MAX_CLASSES] {
        let mut a = [const { PoisonCtor(0) }; crate::classes::MAX_CLASSES];
        let mut i = 0;
        while i < a.len() {
            a[i] = PoisonCtor(crate::classes::CANDIDATES[i].0);
            i += 1;
        }
        a
    }
}

#[cfg(feature = "poison")]
impl bsdalloc_pool_cache::ObjectCtor for PoisonCtor {
    fn construct(
        &self,
        obj: NonNull<u8>,
        _: bsdalloc_pool::PrFlags,
    ) -> Result<(), bsdalloc_pool_cache::CtorFailed> {
        // SAFETY: a raw object of this class's size.
        unsafe { poison_fill(obj, self.0) };
        Ok(())
    }
}

/// After a cache get: check the poison, write the footer and the redzone.
///
/// # Safety
/// `p` is a fresh object of `class_size ≥ allocsz` bytes, `allocsz` for a
/// request of `size`.
#[inline(always)]
#[allow(unused_variables)]
pub(crate) unsafe fn on_alloc(p: NonNull<u8>, size: usize, allocsz: usize, class_size: usize) {
    #[cfg(feature = "poison")]
    for i in 0..class_size {
        // SAFETY: the caller's contract.
        let (a, got) = unsafe {
            let b = p.as_ptr().add(i);
            (b, b.read())
        };
        let want = poison_byte(a.addr());
        if got != want {
            panic!("kmem_poison_check: {a:p}: 0x{got:02x} != 0x{want:02x}");
        }
    }
    #[cfg(feature = "kmem-size")]
    // SAFETY: `size + SIZE_SIZE ≤ allocsz` bytes are ours.
    unsafe {
        p.as_ptr().add(size).cast::<usize>().write_unaligned(size)
    };
    #[cfg(feature = "redzone")]
    {
        let start = size + crate::SIZE_SIZE;
        for i in start..allocsz {
            // SAFETY: inside `allocsz`.
            unsafe {
                let b = p.as_ptr().add(i);
                b.write(redzone_byte(b.addr(), i == start));
            }
        }
    }
}

/// Before a cache put: check the footer and the redzone, then poison.
///
/// # Safety
/// `p` is an object of `class_size` bytes of this class, handed out for
/// `size` (else the checks panic, or — for a size of another class —
/// read where the wrong class says the footer is).
#[inline(always)]
#[allow(unused_variables)]
#[track_caller]
pub(crate) unsafe fn on_free(p: NonNull<u8>, size: usize, allocsz: usize, class_size: usize) {
    #[cfg(feature = "kmem-size")]
    {
        // SAFETY: the caller's contract: `size + SIZE_SIZE ≤ allocsz` bytes.
        let f = unsafe { p.as_ptr().add(size).cast::<usize>() };
        // SAFETY: as above.
        let hsz = unsafe { f.read_unaligned() };
        if hsz != size {
            panic!("kmem_free({p:p}, {size}) != allocated size {hsz}; overwrote?");
        }
        // SAFETY: as above.
        unsafe { f.write_unaligned(usize::MAX) };
    }
    #[cfg(feature = "redzone")]
    {
        let start = size + crate::SIZE_SIZE;
        for i in start..allocsz {
            // SAFETY: inside `allocsz`.
            let (a, got) = unsafe {
                let b = p.as_ptr().add(i);
                (b, b.read())
            };
            let want = redzone_byte(a.addr(), i == start);
            if got != want {
                panic!("kmem_redzone_check: {a:p}: 0x{got:02x} != 0x{want:02x}");
            }
        }
    }
    #[cfg(feature = "poison")]
    // SAFETY: the whole object is ours until the put.
    unsafe {
        poison_fill(p, class_size)
    };
}
