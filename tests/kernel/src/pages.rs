//! Physical memory of the test kernel: a static, page-aligned array, and
//! the page source and vmem meta source over it. No OS page is ever asked
//! for: the platform's kernel backend has no `OsPages`, and vmem has no
//! default meta source without `std`.
//!
//! The array stands for the machine's RAM and its page tables at once:
//! `reserve` hands out ranges of it (address space), `commit` marks pages
//! mapped, `decommit` unmaps them and `release` gives the range back. There
//! is no MMU to enforce access, so the bookkeeping enforces what it can:
//! every request must lie within one reservation, a release must be exactly
//! one, and a page reads as zero whenever it is committed afresh (it is
//! cleared on decommit and release, and the array starts zeroed).

use core::cell::UnsafeCell;
use core::ptr::NonNull;

use bsdalloc_platform::sync::atomic::{AtomicUsize, Ordering};
use bsdalloc_platform::{
    Committed, Ipl, PAGE_FAULTS, PageError, PageSource, PageStats, Protection, SpinMutex,
};
use bsdalloc_vmem::{MetaSource, VmFlags};

/// The test kernel's page size.
pub(crate) const PAGE_SIZE: usize = 4096;
/// Bytes of "RAM".
pub(crate) const MEM_BYTES: usize = 32 << 20;
const NPAGES: usize = MEM_BYTES / PAGE_SIZE;
const NWORDS: usize = NPAGES / 64;
const ENOMEM: i32 = 12;

#[repr(C, align(4096))]
struct Memory(UnsafeCell<[u8; MEM_BYTES]>);

// SAFETY: the bytes are handed out in disjoint reservations; who owns a
// reservation decides how its bytes are shared. The page source itself
// writes only pages it is decommitting or releasing, which nobody uses.
unsafe impl Sync for Memory {}

/// Zero-initialised, so it lives in `.bss`: the process's RSS grows only
/// with the pages the kernel touches.
static MEMORY: Memory = Memory(UnsafeCell::new([0; MEM_BYTES]));

/// Expose RAM's provenance. vmem deals in integers, and uvm-pages turns the
/// addresses it hands out into pointers with `as` casts: under Rust's
/// exposed-provenance rules those pointers are valid only for memory whose
/// provenance was exposed — a kernel's direct map, here all of RAM.
pub(crate) fn expose_ram() {
    let _ = ram().expose_provenance();
}

/// The start of RAM, with provenance over all of it.
fn ram() -> *mut u8 {
    MEMORY.0.get().cast::<u8>()
}

/// Page bookkeeping, under the page source's lock.
struct Book {
    reserved: [u64; NWORDS],
    /// The first page of each reservation.
    start: [u64; NWORDS],
    committed: [u64; NWORDS],
    reserved_bytes: usize,
    committed_pages: usize,
    wired_total: u64,
    decommitted_total: u64,
    requests: u64,
    failures: u64,
}

fn bit(bits: &[u64; NWORDS], i: usize) -> bool {
    bits[i / 64] & (1 << (i % 64)) != 0
}

fn set_bit(bits: &mut [u64; NWORDS], i: usize, on: bool) {
    if on {
        bits[i / 64] |= 1 << (i % 64);
    } else {
        bits[i / 64] &= !(1 << (i % 64));
    }
}

impl Book {
    /// Panic unless pages `[first, first+n)` are all in one reservation.
    #[track_caller]
    fn check_within_one(&self, what: &str, first: usize, n: usize) {
        let ok = (first..first + n).all(|p| bit(&self.reserved, p))
            && (first + 1..first + n).all(|p| !bit(&self.start, p));
        assert!(
            ok,
            "test kernel page source: {what} of pages {first}+{n} outside one reservation"
        );
    }

    /// Clear the committed pages of `[first, first+n)`: they read as zero
    /// when committed again. Returns how many there were.
    fn clear(&mut self, first: usize, n: usize) -> usize {
        let mut cleared = 0;
        for p in first..first + n {
            if bit(&self.committed, p) {
                // SAFETY: page `p` lies inside RAM; its owner has given it
                // up (decommit or release), so nothing else accesses it.
                unsafe { ram().add(p * PAGE_SIZE).write_bytes(0, PAGE_SIZE) };
                set_bit(&mut self.committed, p, false);
                cleared += 1;
            }
        }
        self.committed_pages -= cleared;
        cleared
    }
}

/// The page source over RAM.
pub(crate) struct StaticPages {
    /// `IPL_HIGH`: the innermost lock (the kernel map calls in with its own
    /// `IPL_VM` state lock held).
    book: SpinMutex<Book>,
}

/// The kernel's pages.
pub(crate) static PAGES: StaticPages = StaticPages {
    book: SpinMutex::new(
        Ipl::High,
        Book {
            reserved: [0; NWORDS],
            start: [0; NWORDS],
            committed: [0; NWORDS],
            reserved_bytes: 0,
            committed_pages: 0,
            wired_total: 0,
            decommitted_total: 0,
            requests: 0,
            failures: 0,
        },
    ),
};

impl StaticPages {
    /// The page range of `[addr, addr+len)`, or why it is not a non-empty,
    /// page-aligned range of RAM.
    fn pages_of(addr: NonNull<u8>, len: usize) -> Result<(usize, usize), PageError> {
        let a = addr.as_ptr().addr();
        let bad = PageError::BadRange { addr: a, len };
        let off = a.checked_sub(ram().addr()).ok_or(bad)?;
        if len == 0 || !off.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
            return Err(bad);
        }
        if off.checked_add(len).is_none_or(|end| end > MEM_BYTES) {
            return Err(bad);
        }
        Ok((off / PAGE_SIZE, len / PAGE_SIZE))
    }

    /// Whether the page holding `p` is committed.
    pub(crate) fn is_committed(&self, p: *const u8) -> bool {
        let off = p.addr().wrapping_sub(ram().addr());
        off < MEM_BYTES && bit(&self.book.lock().committed, off / PAGE_SIZE)
    }
}

// SAFETY: reservations are disjoint runs of RAM, handed out once until
// released; RAM starts zeroed and every page is cleared before it can be
// committed again (decommit and release clear it), so committed memory
// reads as zero when first committed and after a decommit.
unsafe impl PageSource for StaticPages {
    fn page_size(&self) -> usize {
        PAGE_SIZE
    }

    fn reserve(&self, len: usize, align: usize) -> Result<NonNull<u8>, PageError> {
        let mut b = self.book.lock();
        b.requests += 1;
        let align = align.max(PAGE_SIZE);
        if len == 0 || !len.is_multiple_of(PAGE_SIZE) || !align.is_power_of_two() {
            b.failures += 1;
            return Err(PageError::BadRange { addr: align, len });
        }
        if PAGE_FAULTS.should_fail() {
            b.failures += 1;
            return Err(PageError::Injected);
        }
        let n = len / PAGE_SIZE;
        // First fit: the lowest run of `n` free pages whose address is
        // `align`-aligned.
        let step = align / PAGE_SIZE;
        let mut p = (ram().addr().next_multiple_of(align) - ram().addr()) / PAGE_SIZE;
        while p + n <= NPAGES {
            match (p..p + n).find(|&q| bit(&b.reserved, q)) {
                None => {
                    for q in p..p + n {
                        set_bit(&mut b.reserved, q, true);
                    }
                    set_bit(&mut b.start, p, true);
                    b.reserved_bytes += len;
                    // SAFETY: `p + n <= NPAGES`: the address is inside RAM.
                    let va = unsafe { ram().add(p * PAGE_SIZE) };
                    // SAFETY: derived from a static's address, never null.
                    return Ok(unsafe { NonNull::new_unchecked(va) });
                }
                // Go past the reserved page, to the next aligned start.
                Some(busy) => p = (busy + 1).next_multiple_of(step),
            }
        }
        b.failures += 1;
        Err(PageError::NoMemory { len, errno: ENOMEM })
    }

    unsafe fn commit(
        &self,
        addr: NonNull<u8>,
        len: usize,
        wire: bool,
    ) -> Result<Committed, PageError> {
        let mut b = self.book.lock();
        b.requests += 1;
        let (first, n) = match Self::pages_of(addr, len) {
            Ok(r) => r,
            Err(e) => {
                b.failures += 1;
                return Err(e);
            }
        };
        if PAGE_FAULTS.should_fail() {
            b.failures += 1;
            return Err(PageError::Injected);
        }
        b.check_within_one("commit", first, n);
        let mut fresh = 0;
        for p in first..first + n {
            if !bit(&b.committed, p) {
                set_bit(&mut b.committed, p, true);
                fresh += 1;
            }
        }
        b.committed_pages += fresh;
        if wire {
            b.wired_total += n as u64;
        }
        // Kernel memory is always resident: wiring never fails here.
        Ok(Committed { wired: wire })
    }

    unsafe fn decommit(&self, addr: NonNull<u8>, len: usize) {
        let Ok((first, n)) = Self::pages_of(addr, len) else {
            panic!("test kernel page source: decommit of a bad range {addr:p}+{len:#x}");
        };
        let mut b = self.book.lock();
        b.check_within_one("decommit", first, n);
        let cleared = b.clear(first, n);
        b.decommitted_total += cleared as u64;
    }

    unsafe fn protect(
        &self,
        addr: NonNull<u8>,
        len: usize,
        _prot: Protection,
    ) -> Result<(), PageError> {
        // No MMU: a guard page is only a promise here. The range is still
        // checked, as a pmap would.
        let (first, n) = Self::pages_of(addr, len)?;
        self.book.lock().check_within_one("protect", first, n);
        Ok(())
    }

    unsafe fn release(&self, addr: NonNull<u8>, len: usize) {
        let Ok((first, n)) = Self::pages_of(addr, len) else {
            panic!("test kernel page source: release of a bad range {addr:p}+{len:#x}");
        };
        let mut b = self.book.lock();
        let exact = bit(&b.start, first)
            && (first + n == NPAGES || !bit(&b.reserved, first + n) || bit(&b.start, first + n));
        assert!(
            exact,
            "test kernel page source: release of {addr:p}+{len:#x}, not exactly one reservation"
        );
        b.check_within_one("release", first, n);
        b.clear(first, n);
        for p in first..first + n {
            set_bit(&mut b.reserved, p, false);
        }
        set_bit(&mut b.start, first, false);
        b.reserved_bytes -= len;
    }

    fn stats(&self) -> PageStats {
        let b = self.book.lock();
        PageStats {
            reserved_bytes: b.reserved_bytes,
            committed_pages: b.committed_pages,
            wired_pages_total: b.wired_total,
            decommitted_pages_total: b.decommitted_total,
            requests: b.requests,
            failures: b.failures,
            wire_refusals: 0,
        }
    }
}

/// vmem's meta source (boundary tags, hash tables, `vmem_create`
/// descriptors): whole pages of RAM, as `vmem-meta` is in NetBSD before
/// kmem is up.
pub(crate) struct StaticMeta {
    held: AtomicUsize,
}

pub(crate) static META: StaticMeta = StaticMeta {
    held: AtomicUsize::new(0),
};

impl StaticMeta {
    /// Bytes vmem holds now.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

// SAFETY: each chunk is a fresh reservation of RAM, committed (so zeroed),
// page aligned, and given to vmem alone until `free_meta`.
unsafe impl MetaSource for StaticMeta {
    fn alloc_meta(&self, size: usize, _flags: VmFlags) -> Option<NonNull<u8>> {
        let size = size.checked_next_multiple_of(PAGE_SIZE)?;
        let p = PAGES.reserve(size, 0).ok()?;
        // SAFETY: committing our own fresh reservation.
        if unsafe { PAGES.commit(p, size, true) }.is_err() {
            // SAFETY: the reservation is unused.
            unsafe { PAGES.release(p, size) };
            return None;
        }
        self.held.fetch_add(size, Ordering::Relaxed);
        Some(p)
    }

    unsafe fn free_meta(&self, p: NonNull<u8>, size: usize) {
        let size = size.next_multiple_of(PAGE_SIZE);
        // SAFETY: the caller gives back what `alloc_meta(size)` returned,
        // unused now: exactly one reservation of ours.
        unsafe {
            PAGES.decommit(p, size);
            PAGES.release(p, size);
        }
        self.held.fetch_sub(size, Ordering::Relaxed);
    }
}

/// The pointer for kernel virtual address `a` (vmem hands out integers):
/// RAM's provenance with `a`'s address, as a kernel's direct map would.
///
/// # Panics
/// If `a` is not in RAM.
#[track_caller]
pub(crate) fn kva(a: usize) -> *mut u8 {
    let base = ram().addr();
    assert!(
        a >= base && a - base < MEM_BYTES,
        "test kernel: {a:#x} is not kernel memory"
    );
    ram().with_addr(a)
}
