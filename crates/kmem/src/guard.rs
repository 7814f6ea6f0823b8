//! Guard mode (feature `guard`, NetBSD's `KMEM_GUARD`, spec §4.5 and
//! K11): every allocation gets address space of its own from the kernel
//! map's VA-only region, `round_page(size + header)` mapped pages and one
//! guard page that is never mapped. The object ends as close to the guard
//! page as its class's alignment allows (exactly on it for sizes that are
//! a multiple of the alignment), with the size in the 8 bytes before it.
//!
//! A free checks the header (the `kmem-size` panic), unmaps the pages and
//! parks the address range in a FIFO of `guard_depth` entries; the range
//! it displaces is given back to the map. So an overrun faults at once on
//! the guard page, and a use after free faults while the range waits.
//! The FIFO's storage comes from `vmem-meta`.

use core::ptr::NonNull;

use bsdalloc_platform::sync::atomic::{AtomicUsize, Ordering};
use bsdalloc_platform::{Ipl, SpinMutex};
use bsdalloc_uvm_pages::UvmFlags;
use bsdalloc_vmem::VmFlags;

use crate::flags::{KMEM_ALIGN, KmFlags};
use crate::kmem::{Inner, Kmem};

/// Bytes of the size header before the object.
const HEADER: usize = core::mem::size_of::<usize>();

/// An entry of the quarantine: a range's start and mapped length.
type Entry = [usize; 2];

struct Fifo {
    buf: *mut Entry,
    cap: usize,
    head: usize,
    len: usize,
    storage: usize,
    storage_bytes: usize,
}

// SAFETY: the ring is memory of the meta arena owned by this FIFO, used
// under its lock.
unsafe impl Send for Fifo {}

pub(crate) struct Guard {
    fifo: SpinMutex<Fifo>,
    live: AtomicUsize,
}

impl Guard {
    pub(crate) const fn new() -> Guard {
        Guard {
            fifo: SpinMutex::new(
                Ipl::Vm,
                Fifo {
                    buf: core::ptr::null_mut(),
                    cap: 0,
                    head: 0,
                    len: 0,
                    storage: 0,
                    storage_bytes: 0,
                },
            ),
            live: AtomicUsize::new(0),
        }
    }

    /// The ring, from `vmem-meta` (bootstrap, thread context).
    pub(crate) fn init(&self, k: &Inner) {
        let mut f = self.fifo.lock();
        *f = Fifo {
            buf: core::ptr::null_mut(),
            cap: 0,
            head: 0,
            len: 0,
            storage: 0,
            storage_bytes: 0,
        };
        self.live.store(0, Ordering::Relaxed);
        if k.guard_depth == 0 {
            return;
        }
        drop(f);
        let bytes = (k.guard_depth * core::mem::size_of::<Entry>()).next_multiple_of(k.ps);
        let va = k
            .meta
            .alloc(bytes, VmFlags::SLEEP | VmFlags::INSTANTFIT)
            .expect("kmem: no memory for the guard quarantine");
        let p = Kmem::ptr(k, va);
        let mut f = self.fifo.lock();
        f.buf = p.as_ptr().cast();
        // Exactly the configured depth (NetBSD rounds it up to fill the
        // ring's pages; a depth that means what it says is easier to use).
        f.cap = k.guard_depth;
        f.storage = va;
        f.storage_bytes = bytes;
    }

    /// Give every quarantined range back.
    pub(crate) fn flush(&self, k: &Inner) {
        loop {
            let e = {
                let mut f = self.fifo.lock();
                if f.len == 0 {
                    break;
                }
                // SAFETY: `head < cap` holds a live entry.
                let e = unsafe { f.buf.add(f.head).read() };
                f.head = (f.head + 1) % f.cap;
                f.len -= 1;
                e
            };
            release(k, e);
        }
    }

    /// The ring's storage back to `vmem-meta` (destroy).
    pub(crate) fn fini(&self, k: &Inner) {
        self.flush(k);
        let (va, bytes) = {
            let mut f = self.fifo.lock();
            let r = (f.storage, f.storage_bytes);
            f.buf = core::ptr::null_mut();
            f.cap = 0;
            f.storage = 0;
            f.storage_bytes = 0;
            r
        };
        if bytes != 0 {
            k.meta.free(va, bytes);
        }
    }

    /// Guard allocations live.
    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Ranges waiting in the quarantine.
    pub(crate) fn quarantined(&self) -> usize {
        self.fifo.lock().len
    }
}

fn release(k: &Inner, e: Entry) {
    let va = k
        .map
        .va_ptr(e[0])
        .expect("kmem guard: range outside the map");
    k.map.uvm_km_free_guarded(va, e[1], 1, UvmFlags::VAONLY);
}

/// `(rounded size, alignment, mapped bytes)` for a request, or `None` if
/// it overflows.
fn geometry(k: &Inner, size: usize) -> Option<(usize, usize, usize)> {
    let rsize = size.checked_next_multiple_of(KMEM_ALIGN)?;
    // The alignment the cache path would give (`Kmem::alignment_of`).
    let align = match crate::alloc::route(k, size) {
        crate::alloc::Route::Cache(i, _) => k.classes.classes()[i].align,
        _ => k.ps,
    };
    let bytes = rsize
        .checked_add(HEADER + align - 1)?
        .checked_next_multiple_of(k.ps)?;
    Some((rsize, align, bytes))
}

impl Kmem {
    #[track_caller]
    pub(crate) fn guard_alloc(
        &self,
        k: &Inner,
        size: usize,
        flags: KmFlags,
    ) -> Option<NonNull<u8>> {
        let sleep = flags == KmFlags::SLEEP;
        // The VA-only region is a third of the map's first half.
        let fits = |b: usize| b.checked_add(k.ps).is_some_and(|t| t <= k.arena_size / 3);
        let Some((rsize, align, bytes)) = geometry(k, size).filter(|g| fits(g.2)) else {
            if sleep {
                panic!(
                    "kmem_alloc: {size} bytes can never be allocated in guard mode; KM_SLEEP cannot fail"
                );
            }
            return None;
        };
        let (vaf, pf) = if sleep {
            (UvmFlags::VAONLY | UvmFlags::WAITVA, UvmFlags::empty())
        } else {
            (UvmFlags::VAONLY | UvmFlags::NOWAIT, UvmFlags::NOWAIT)
        };
        let Some(va) = k.map.uvm_km_alloc_guarded(bytes, 1, vaf) else {
            if sleep {
                panic!("kmem_alloc: KM_SLEEP allocation of {size} bytes returned NULL");
            }
            return None;
        };
        if k.map.enter(va, bytes, pf).is_none() {
            k.map.uvm_km_free_guarded(va, bytes, 1, UvmFlags::VAONLY);
            return None;
        }
        let end = va.as_ptr().addr() + bytes;
        let p = va.as_ptr().map_addr(|_| (end - rsize) & !(align - 1));
        // SAFETY: the header lies inside the mapped range (`bytes` leaves
        // room for it below the aligned object).
        unsafe { p.sub(HEADER).cast::<usize>().write(size) };
        self.guard.live.fetch_add(1, Ordering::Relaxed);
        NonNull::new(p)
    }

    /// # Safety
    /// `p` came from `guard_alloc` (with `size`, else the header check
    /// panics), not freed since.
    #[track_caller]
    pub(crate) unsafe fn guard_free(&self, k: &Inner, p: NonNull<u8>, size: usize) {
        // The header is always the 8 bytes before the object, whatever the
        // size: read it before trusting `size` for anything else.
        // SAFETY: the caller's contract: a live guard allocation.
        let hsz = unsafe { p.as_ptr().sub(HEADER).cast::<usize>().read() };
        if hsz != size {
            panic!("kmem_free({p:p}, {size}) != allocated size {hsz}; overwrote?");
        }
        let (rsize, _, bytes) = geometry(k, size).expect("a size that was allocated");
        let end = (p.as_ptr().addr() + rsize).next_multiple_of(k.ps);
        let va =
            NonNull::new(p.as_ptr().map_addr(|_| end - bytes)).expect("kmem guard: null range");
        // Unmapped from here on: a use after free faults.
        k.map.remove(va, bytes);
        self.guard.live.fetch_sub(1, Ordering::Relaxed);
        let e = [va.as_ptr().addr(), bytes];
        let evicted = {
            let mut f = self.guard.fifo.lock();
            if f.cap == 0 {
                Some(e)
            } else {
                let out = if f.len == f.cap {
                    // SAFETY: `head < cap` holds the oldest entry.
                    let old = unsafe { f.buf.add(f.head).read() };
                    f.head = (f.head + 1) % f.cap;
                    f.len -= 1;
                    Some(old)
                } else {
                    None
                };
                let tail = (f.head + f.len) % f.cap;
                // SAFETY: `tail < cap`, a free slot of the ring.
                unsafe { f.buf.add(tail).write(e) };
                f.len += 1;
                out
            }
        };
        if let Some(old) = evicted {
            release(k, old);
        }
    }

    /// Guard mode: address ranges waiting unmapped in the quarantine.
    pub fn guard_quarantined(&self) -> usize {
        self.guard.quarantined()
    }
}
