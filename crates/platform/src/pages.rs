//! Raw pages: the bottom of the allocator stack.
//!
//! A [`PageSource`] reserves address space, makes ranges of it accessible
//! and resident, gives pages back so that memory really drops, protects
//! ranges (guard pages), and releases address space. [`OsPages`] is the
//! user-space source (mmap, mprotect, mlock, madvise); a kernel implements
//! the trait over its physical page allocator and page tables.
//!
//! Every request that can fail passes the [`PAGE_FAULTS`] injection point
//! first, so every error path above can be exercised.

use core::fmt;
use core::ptr::NonNull;

use crate::fault::FaultInjector;
#[cfg(feature = "std")]
use crate::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
// CountingPages' counters are plain counters, not a protocol: core's
// atomics in every build, loom's included.
use core::sync::atomic::{AtomicIsize, Ordering as CountOrdering};

/// The fault-injection point of the page source: `reserve` and `commit`
/// requests consult it.
pub static PAGE_FAULTS: FaultInjector = FaultInjector::new();

/// Why a page request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    /// The system refused (ENOMEM and friends).
    #[error("page source: out of memory for {len:#x} bytes (errno {errno})")]
    NoMemory {
        /// Bytes asked for.
        len: usize,
        /// The OS error number.
        errno: i32,
    },
    /// Refused by fault injection.
    #[error("page source: request failed by fault injection")]
    Injected,
    /// Address or length not page aligned, or zero length.
    #[error("page source: range {addr:#x}+{len:#x} is not a non-empty page-aligned range")]
    BadRange {
        /// Start address.
        addr: usize,
        /// Length in bytes.
        len: usize,
    },
}

/// Access to give a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protection {
    /// No access: a guard page.
    None,
    /// Read only.
    Read,
    /// Read and write.
    ReadWrite,
    /// Read, write and execute (`UVM_KMF_EXEC`).
    ReadWriteExec,
}

/// What `commit` achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The pages are locked in memory (`mlock`). False when wiring was not
    /// asked for, or was asked for and not permitted (RLIMIT_MEMLOCK): the
    /// pages are then resident now but could be paged out later.
    pub wired: bool,
}

/// A source of pages.
///
/// The page source is the machine itself (NetBSD's pmap and physical page
/// allocator), below every allocator lock: the layers above call
/// `commit`, `decommit` and `protect` with their IPL spin mutexes held (a
/// kernel map gives cached pages back under its state lock, so no allocation
/// can claim them meanwhile). An implementation therefore must not allocate
/// through the bsdalloc stack, sleep, or take locks the stack takes: the one
/// documented exception to the rule that no unknown code runs under a spin
/// mutex (see [`crate::mutex`]).
///
/// # Safety
/// Implementations must return ranges that nobody else uses: a reserved
/// range belongs to the caller until released; committed memory reads as
/// zero when first committed; after `decommit` the range reads as zero
/// when committed again.
pub unsafe trait PageSource: Sync {
    /// The page size (a power of two).
    fn page_size(&self) -> usize;

    /// Reserve `len` bytes of address space (page multiple), aligned to
    /// `align` (a power of two ≥ the page size, or 0 for page alignment).
    /// The range is inaccessible until committed.
    fn reserve(&self, len: usize, align: usize) -> Result<NonNull<u8>, PageError>;

    /// Make `[addr, addr+len)` readable and writable and resident; lock it
    /// in memory if `wire`.
    ///
    /// # Safety
    /// The range lies within one reservation of this source.
    unsafe fn commit(
        &self,
        addr: NonNull<u8>,
        len: usize,
        wire: bool,
    ) -> Result<Committed, PageError>;

    /// Give the pages of `[addr, addr+len)` back (resident memory drops)
    /// and make the range inaccessible again; the address space stays
    /// reserved.
    ///
    /// # Safety
    /// The range lies within one reservation of this source, and nothing
    /// uses its contents any more.
    unsafe fn decommit(&self, addr: NonNull<u8>, len: usize);

    /// Change the access of a committed range.
    ///
    /// # Safety
    /// The range lies within one reservation of this source.
    unsafe fn protect(
        &self,
        addr: NonNull<u8>,
        len: usize,
        prot: Protection,
    ) -> Result<(), PageError>;

    /// Release a whole reservation.
    ///
    /// # Safety
    /// `[addr, addr+len)` is exactly a range returned by `reserve`, and
    /// nothing uses it any more.
    unsafe fn release(&self, addr: NonNull<u8>, len: usize);

    /// Counters.
    fn stats(&self) -> PageStats;
}

/// A page source that forwards to another and counts the bytes of address
/// space reserved and the bytes committed through it: a census of what an
/// allocator built on it still holds (after a teardown, both are 0).
///
/// ```
/// use bsdalloc_platform::{CountingPages, OS_PAGES, PageSource};
///
/// static PAGES: CountingPages<bsdalloc_platform::OsPages> = CountingPages::new(&OS_PAGES);
/// let va = PAGES.reserve(1 << 16, 4096).unwrap();
/// assert_eq!(PAGES.reserved_bytes(), 1 << 16);
/// unsafe { PAGES.release(va, 1 << 16) };
/// assert_eq!((PAGES.reserved_bytes(), PAGES.committed_bytes()), (0, 0));
/// ```
#[derive(Debug)]
pub struct CountingPages<S: 'static> {
    inner: &'static S,
    reserved: AtomicIsize,
    committed: AtomicIsize,
}

impl<S: PageSource + 'static> CountingPages<S> {
    /// Counting over `inner`, from 0.
    pub const fn new(inner: &'static S) -> Self {
        CountingPages {
            inner,
            reserved: AtomicIsize::new(0),
            committed: AtomicIsize::new(0),
        }
    }

    /// Bytes of address space reserved and not released.
    pub fn reserved_bytes(&self) -> isize {
        self.reserved.load(CountOrdering::Relaxed)
    }

    /// Bytes committed and not decommitted.
    pub fn committed_bytes(&self) -> isize {
        self.committed.load(CountOrdering::Relaxed)
    }
}

// SAFETY: every call forwards to `inner`, which keeps the contract; the
// counters change nothing about the memory.
unsafe impl<S: PageSource + 'static> PageSource for CountingPages<S> {
    fn page_size(&self) -> usize {
        self.inner.page_size()
    }
    fn reserve(&self, len: usize, align: usize) -> Result<NonNull<u8>, PageError> {
        let r = self.inner.reserve(len, align)?;
        self.reserved
            .fetch_add(len as isize, CountOrdering::Relaxed);
        Ok(r)
    }
    unsafe fn commit(
        &self,
        addr: NonNull<u8>,
        len: usize,
        wire: bool,
    ) -> Result<Committed, PageError> {
        // SAFETY: the caller's contract.
        let r = unsafe { self.inner.commit(addr, len, wire) }?;
        self.committed
            .fetch_add(len as isize, CountOrdering::Relaxed);
        Ok(r)
    }
    unsafe fn decommit(&self, addr: NonNull<u8>, len: usize) {
        self.committed
            .fetch_sub(len as isize, CountOrdering::Relaxed);
        // SAFETY: the caller's contract.
        unsafe { self.inner.decommit(addr, len) }
    }
    unsafe fn protect(
        &self,
        addr: NonNull<u8>,
        len: usize,
        prot: Protection,
    ) -> Result<(), PageError> {
        // SAFETY: the caller's contract.
        unsafe { self.inner.protect(addr, len, prot) }
    }
    unsafe fn release(&self, addr: NonNull<u8>, len: usize) {
        self.reserved
            .fetch_sub(len as isize, CountOrdering::Relaxed);
        // SAFETY: the caller's contract.
        unsafe { self.inner.release(addr, len) }
    }
    fn stats(&self) -> PageStats {
        self.inner.stats()
    }
}

/// Counters of a page source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageStats {
    /// Bytes of address space reserved now.
    pub reserved_bytes: usize,
    /// Pages committed now.
    pub committed_pages: usize,
    /// Pages ever wired by `commit` (the count does not drop: a page source
    /// cannot tell which pages of a decommitted range were wired).
    pub wired_pages_total: u64,
    /// Pages ever given back with `decommit`.
    pub decommitted_pages_total: u64,
    /// Requests (`reserve` + `commit`) ever made.
    pub requests: u64,
    /// Requests that failed, injected failures included.
    pub failures: u64,
    /// Wiring asked for and refused.
    pub wire_refusals: u64,
}

impl fmt::Display for PageStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:>12} bytes reserved", self.reserved_bytes)?;
        writeln!(f, "{:>12} pages committed", self.committed_pages)?;
        writeln!(f, "{:>12} pages wired", self.wired_pages_total)?;
        writeln!(f, "{:>12} pages given back", self.decommitted_pages_total)?;
        writeln!(f, "{:>12} page requests", self.requests)?;
        writeln!(f, "{:>12} failed requests", self.failures)?;
        write!(f, "{:>12} wiring refusals", self.wire_refusals)
    }
}

/// The user-space page source: `mmap`, `mprotect`, `mlock`, `madvise`.
///
/// ```
/// use bsdalloc_platform::{OS_PAGES, PageSource};
///
/// let ps = OS_PAGES.page_size();
/// let va = OS_PAGES.reserve(4 * ps, 0).unwrap();
/// unsafe {
///     OS_PAGES.commit(va, ps, false).unwrap();
///     va.as_ptr().write(42);
///     OS_PAGES.decommit(va, ps);
///     OS_PAGES.release(va, 4 * ps);
/// }
/// ```
#[cfg(feature = "std")]
#[derive(Debug)]
pub struct OsPages {
    reserved: AtomicUsize,
    committed: AtomicUsize,
    wired: AtomicU64,
    decommitted: AtomicU64,
    requests: AtomicU64,
    failures: AtomicU64,
    wire_refusals: AtomicU64,
}

/// The process's page source.
#[cfg(feature = "std")]
pub static OS_PAGES: OsPages = OsPages {
    reserved: AtomicUsize::new(0),
    committed: AtomicUsize::new(0),
    wired: AtomicU64::new(0),
    decommitted: AtomicU64::new(0),
    requests: AtomicU64::new(0),
    failures: AtomicU64::new(0),
    wire_refusals: AtomicU64::new(0),
};

#[cfg(feature = "std")]
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

/// The OS page size.
#[cfg(feature = "std")]
#[inline]
pub fn page_size() -> usize {
    let ps = PAGE_SIZE.load(Ordering::Relaxed);
    if ps != 0 {
        return ps;
    }
    // SAFETY: sysconf has no preconditions.
    let ps = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    assert!(ps.is_power_of_two(), "page size {ps} is not a power of two");
    PAGE_SIZE.store(ps, Ordering::Relaxed);
    ps
}

#[cfg(feature = "std")]
fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

#[cfg(feature = "std")]
impl OsPages {
    fn check(&self, addr: usize, len: usize) -> Result<(), PageError> {
        let mask = page_size() - 1;
        if len == 0 || addr & mask != 0 || len & mask != 0 {
            return Err(PageError::BadRange { addr, len });
        }
        Ok(())
    }

    fn fail(&self, e: PageError) -> PageError {
        self.failures.fetch_add(1, Ordering::Relaxed);
        e
    }
}

#[cfg(feature = "std")]
fn to_prot(p: Protection) -> libc::c_int {
    match p {
        Protection::None => libc::PROT_NONE,
        Protection::Read => libc::PROT_READ,
        Protection::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
        Protection::ReadWriteExec => libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
    }
}

// SAFETY: mmap hands out fresh anonymous mappings that nobody else uses;
// anonymous memory reads as zero when first touched and after
// MADV_DONTNEED.
#[cfg(feature = "std")]
unsafe impl PageSource for OsPages {
    fn page_size(&self) -> usize {
        page_size()
    }

    fn reserve(&self, len: usize, align: usize) -> Result<NonNull<u8>, PageError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.check(0, len)?;
        let ps = page_size();
        let align = align.max(ps);
        if !align.is_power_of_two() {
            return Err(self.fail(PageError::BadRange { addr: align, len }));
        }
        if PAGE_FAULTS.should_fail() {
            return Err(self.fail(PageError::Injected));
        }
        let extra = align - ps;
        let Some(total) = len.checked_add(extra) else {
            return Err(self.fail(PageError::NoMemory {
                len,
                errno: libc::ENOMEM,
            }));
        };
        // SAFETY: a fresh anonymous mapping; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                total,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(self.fail(PageError::NoMemory {
                len,
                errno: errno(),
            }));
        }
        let p = p.cast::<u8>();
        let start = p.addr();
        let aligned = (start + align - 1) & !(align - 1);
        let head = aligned - start;
        let tail = extra - head;
        // SAFETY: trimming the unaligned head and tail of our own mapping.
        unsafe {
            if head != 0 {
                libc::munmap(p.cast(), head);
            }
            if tail != 0 {
                libc::munmap(p.add(head + len).cast(), tail);
            }
        }
        self.reserved.fetch_add(len, Ordering::Relaxed);
        // SAFETY: mmap never returns null on success, and `head` keeps it in
        // the mapping.
        Ok(unsafe { NonNull::new_unchecked(p.add(head)) })
    }

    unsafe fn commit(
        &self,
        addr: NonNull<u8>,
        len: usize,
        wire: bool,
    ) -> Result<Committed, PageError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.check(addr.as_ptr().addr(), len)?;
        if PAGE_FAULTS.should_fail() {
            return Err(self.fail(PageError::Injected));
        }
        // SAFETY: the caller guarantees the range is within our reservation.
        let rc = unsafe {
            libc::mprotect(
                addr.as_ptr().cast(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if rc != 0 {
            return Err(self.fail(PageError::NoMemory {
                len,
                errno: errno(),
            }));
        }
        let mut wired = false;
        if wire {
            // SAFETY: as above; mlock faults the pages in and pins them.
            wired = unsafe { libc::mlock(addr.as_ptr().cast(), len) } == 0;
            if !wired {
                self.wire_refusals.fetch_add(1, Ordering::Relaxed);
                // Resident now, if not pinned: fault the pages in.
                // SAFETY: as above.
                unsafe { libc::madvise(addr.as_ptr().cast(), len, libc::MADV_WILLNEED) };
            }
        }
        let pages = len / page_size();
        self.committed.fetch_add(pages, Ordering::Relaxed);
        if wired {
            self.wired.fetch_add(pages as u64, Ordering::Relaxed);
        }
        Ok(Committed { wired })
    }

    unsafe fn decommit(&self, addr: NonNull<u8>, len: usize) {
        if self.check(addr.as_ptr().addr(), len).is_err() {
            panic!("page source: decommit of a bad range {:p}+{len:#x}", addr);
        }
        let p = addr.as_ptr().cast();
        // SAFETY: the caller guarantees the range is ours and unused.
        // munlock of pages that were never locked is harmless;
        // MADV_DONTNEED drops the pages now (RSS falls), unlike MADV_FREE.
        unsafe {
            libc::munlock(p, len);
            libc::madvise(p, len, libc::MADV_DONTNEED);
            libc::mprotect(p, len, libc::PROT_NONE);
        }
        let pages = len / page_size();
        self.committed.fetch_sub(pages, Ordering::Relaxed);
        self.decommitted.fetch_add(pages as u64, Ordering::Relaxed);
    }

    unsafe fn protect(
        &self,
        addr: NonNull<u8>,
        len: usize,
        prot: Protection,
    ) -> Result<(), PageError> {
        self.check(addr.as_ptr().addr(), len)?;
        // SAFETY: the caller guarantees the range is within our reservation.
        let rc = unsafe { libc::mprotect(addr.as_ptr().cast(), len, to_prot(prot)) };
        if rc != 0 {
            return Err(self.fail(PageError::NoMemory {
                len,
                errno: errno(),
            }));
        }
        Ok(())
    }

    unsafe fn release(&self, addr: NonNull<u8>, len: usize) {
        if self.check(addr.as_ptr().addr(), len).is_err() {
            panic!("page source: release of a bad range {:p}+{len:#x}", addr);
        }
        // SAFETY: the caller guarantees this is exactly one reservation.
        let rc = unsafe { libc::munmap(addr.as_ptr().cast(), len) };
        assert_eq!(rc, 0, "munmap failed: errno {}", errno());
        self.reserved.fetch_sub(len, Ordering::Relaxed);
    }

    fn stats(&self) -> PageStats {
        PageStats {
            reserved_bytes: self.reserved.load(Ordering::Relaxed),
            committed_pages: self.committed.load(Ordering::Relaxed),
            wired_pages_total: self.wired.load(Ordering::Relaxed),
            decommitted_pages_total: self.decommitted.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            wire_refusals: self.wire_refusals.load(Ordering::Relaxed),
        }
    }
}

/// Read `Rss` from `/proc/self/smaps_rollup` in bytes (user space, Linux):
/// what tests use to prove pages really went back.
#[cfg(feature = "std")]
pub fn resident_bytes() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Rss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map(|kb| kb * 1024)
}
