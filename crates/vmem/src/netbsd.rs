//! NetBSD's entry points by name: `vmem_create`, `vmem_xcreate`,
//! `vmem_init`, `vmem_destroy`, and the rest as thin calls on [`Arena`].
//!
//! `vmem_create` takes the arena descriptor from the stack's own memory (a
//! slab of descriptors carved from the meta source), never from the Rust
//! global allocator.

use core::mem::MaybeUninit;
use core::ptr::{self, NonNull};

use bsdalloc_platform::sync::atomic::Ordering;
use bsdalloc_platform::{Ipl, LockRank, SpinMutex, assert_not_in_interrupt};

use crate::arena::{Arena, ArenaConfig};
use crate::bt;
use crate::constraints::XallocConstraints;
use crate::flags::{SizeType, VmFlags, VmemError};
use crate::links::{slots, word_at};

struct Slots {
    free: *mut u8,
    chunks: usize,
    live: usize,
    /// Slots freed by `vmem_destroy` and not yet reusable, oldest first (a
    /// ring of `quarantined` entries starting at `qhead`).
    quarantine: [*mut u8; DESC_QUARANTINE],
    qhead: usize,
    quarantined: usize,
}
// SAFETY: the free list and the quarantine are memory owned by the slab,
// used under its lock.
unsafe impl Send for Slots {}

static DESCRIPTORS: SpinMutex<Slots> = SpinMutex::ranked(
    Ipl::High,
    LockRank::Registry,
    Slots {
        free: ptr::null_mut(),
        chunks: 0,
        live: 0,
        quarantine: [ptr::null_mut(); DESC_QUARANTINE],
        qhead: 0,
        quarantined: 0,
    },
);

const DESC_CHUNK: usize = 64 * 1024;

/// How many destroyed descriptors wait before their slot is reused.
///
/// Using an arena after `vmem_destroy` breaks that function's contract;
/// nothing can make it safe. But the common form of the bug, a stale
/// `&'static Arena` used soon after the destroy, would otherwise act on
/// whichever arena `vmem_create` put in the slot next: it would allocate
/// from a stranger's span. While the slot waits here its destroyed arena
/// stays in place, so the stale use panics with "used after
/// vmem_destroy" instead. Best effort: after `DESC_QUARANTINE` more
/// destroys the slot is reused.
const DESC_QUARANTINE: usize = 16;

/// A slot holds an `Arena` and, after it, the free-list link: a free slot's
/// arena is left intact (destroyed) until the slot is reused, for the
/// quarantine above.
fn slot_size() -> usize {
    (core::mem::size_of::<Arena>() + core::mem::size_of::<*mut u8>())
        .next_multiple_of(core::mem::align_of::<Arena>().max(64))
}

/// The free-list link of slot `p`.
///
/// # Safety
/// `p` is the start of a descriptor slot.
unsafe fn slot_link(p: *mut u8) -> *mut *mut u8 {
    let p = NonNull::new(p).expect("descriptor slots are never null");
    // SAFETY: the link word is the last pointer-sized word of the slot,
    // past the arena; slots are 64-byte aligned, so it is aligned.
    unsafe { word_at::<*mut u8>(p, slot_size() - core::mem::size_of::<*mut u8>()) }.as_ptr()
}

fn alloc_descriptor(flags: VmFlags) -> Option<NonNull<Arena>> {
    loop {
        {
            let mut s = DESCRIPTORS.lock();
            if !s.free.is_null() {
                let p = s.free;
                // SAFETY: free slots store the next free slot in their link.
                s.free = unsafe { slot_link(p).read() };
                s.live += 1;
                return NonNull::new(p.cast());
            }
        }
        let meta = bt::meta_source()?;
        let chunk = meta.alloc_meta(DESC_CHUNK, flags)?;
        let mut s = DESCRIPTORS.lock();
        // SAFETY: the fresh chunk is ours, DESC_CHUNK bytes, 64-byte aligned
        // (the MetaSource contract), as slot_size() is.
        for p in unsafe { slots::<u8>(chunk, DESC_CHUNK, slot_size()) } {
            // SAFETY: the start of a slot of the chunk.
            unsafe { slot_link(p.as_ptr()).write(s.free) };
            s.free = p.as_ptr();
        }
        s.chunks += 1;
    }
}

fn free_descriptor(p: NonNull<Arena>) {
    let mut s = DESCRIPTORS.lock();
    if s.quarantined == DESC_QUARANTINE {
        // The oldest quarantined slot becomes reusable.
        let old = s.quarantine[s.qhead];
        // SAFETY: a quarantined slot is unused; its link word is ours.
        unsafe { slot_link(old).write(s.free) };
        s.free = old;
        s.qhead = (s.qhead + 1) % DESC_QUARANTINE;
        s.quarantined -= 1;
    }
    let tail = (s.qhead + s.quarantined) % DESC_QUARANTINE;
    s.quarantine[tail] = p.as_ptr().cast();
    s.quarantined += 1;
    s.live -= 1;
}

/// Arena descriptors handed out by `vmem_create` and not yet destroyed.
pub fn vmem_descriptors_live() -> usize {
    DESCRIPTORS.lock().live
}

/// `vmem_create` and `vmem_xcreate`: [`Arena::build`], then into a
/// descriptor of the stack's own memory, registered.
fn create(cfg: ArenaConfig, base: usize, size: usize) -> Option<&'static Arena> {
    assert_not_in_interrupt("vmem_create");
    let arena = Arena::build(cfg, base, size).ok()?;
    // A failure here drops `arena`, which gives its tags back.
    let slot = alloc_descriptor(cfg.flags.sleep_part())?;
    // SAFETY: the slot is ours, sized and aligned for an Arena.
    let arena: &'static Arena = unsafe {
        slot.as_ptr().write(arena);
        &*slot.as_ptr()
    };
    arena.descriptor.store(true, Ordering::Relaxed);
    arena.register();
    Some(arena)
}

/// `vmem_create(name, base, size, quantum, importfn, releasefn, arg,
/// qcache_max, flags, ipl)`: an arena configured by `cfg` (which carries
/// everything but the initial span), in a descriptor from the stack's own
/// memory, registered, with the initial static span `[base, base+size)`
/// (`size` 0: none). `None` if memory for the descriptor or the span's tags
/// is not available.
///
/// # Panics
/// From interrupt context, on a bad quantum or `qcache_max`, with
/// `VM_XIMPORT`, `VM_PRIVTAGS` with an initial span, or flags without
/// exactly one of `VM_SLEEP` and `VM_NOSLEEP`.
pub fn vmem_create(cfg: ArenaConfig, base: usize, size: usize) -> Option<&'static Arena> {
    if cfg.flags.contains(VmFlags::XIMPORT) {
        panic!("vmem_create: VM_XIMPORT is set by vmem_xcreate only");
    }
    create(cfg, base, size)
}

/// `vmem_xcreate`: as [`vmem_create`], for a source whose import may return
/// a larger span than asked (the real size is used).
///
/// # Panics
/// As [`vmem_create`]; `VM_XIMPORT` is set here, never by the caller.
pub fn vmem_xcreate(cfg: ArenaConfig, base: usize, size: usize) -> Option<&'static Arena> {
    if cfg.flags.contains(VmFlags::XIMPORT) {
        panic!("vmem_xcreate: VM_XIMPORT is set by vmem_xcreate itself");
    }
    create(cfg.flags(cfg.flags | VmFlags::XIMPORT), base, size)
}

/// `vmem_init`: initialise caller storage (static arenas of early boot),
/// registered, with the initial static span `[base, base+size)` (`size` 0:
/// none). As in NetBSD, `cfg` may carry `VM_XIMPORT`.
///
/// # Panics
/// As [`vmem_create`], except for interrupt context and `VM_XIMPORT`.
pub fn vmem_init(
    storage: &'static mut MaybeUninit<Arena>,
    cfg: ArenaConfig,
    base: usize,
    size: usize,
) -> Option<&'static Arena> {
    let arena = Arena::build(cfg, base, size).ok()?;
    let arena: &'static Arena = storage.write(arena);
    arena.register();
    Some(arena)
}

/// `vmem_destroy`: see [`Arena::destroy`]; a `vmem_create` descriptor goes
/// back to the descriptor slab.
///
/// # Panics
/// As [`Arena::destroy`] (live allocations, or an arena already
/// destroyed); nothing is freed then.
///
/// # Safety
/// As in C, the arena is gone afterwards: no reference to it may be used
/// again, by anyone (`vmem_create` may put another arena at the same
/// address). A reused reference is caught, best effort only, while the
/// descriptor waits in a short quarantine: such a use panics with "used
/// after vmem_destroy" instead of acting on another arena.
#[track_caller]
pub unsafe fn vmem_destroy(arena: &'static Arena) {
    arena.destroy();
    if arena.descriptor.load(Ordering::Relaxed) {
        free_descriptor(NonNull::from(arena));
    }
}

/// `vmem_add`.
pub fn vmem_add(vm: &Arena, addr: usize, size: usize, flags: VmFlags) -> Result<(), VmemError> {
    vm.add(addr, size, flags)
}

/// `vmem_alloc`.
pub fn vmem_alloc(vm: &Arena, size: usize, flags: VmFlags) -> Result<usize, VmemError> {
    vm.alloc(size, flags)
}

/// `vmem_xalloc`, with NetBSD's positional arguments: see
/// [`XallocConstraints`] for their rules and [`Arena::xalloc`] for the
/// rest.
// NetBSD's signature, one to one.
#[allow(clippy::too_many_arguments)]
pub fn vmem_xalloc(
    vm: &Arena,
    size: usize,
    align: usize,
    phase: usize,
    nocross: usize,
    minaddr: usize,
    maxaddr: usize,
    flags: VmFlags,
) -> Result<usize, VmemError> {
    let c = XallocConstraints {
        size,
        align,
        phase,
        nocross,
        minaddr,
        maxaddr,
    };
    vm.xalloc(c, flags)
}

/// `vmem_xalloc_addr`.
pub fn vmem_xalloc_addr(
    vm: &Arena,
    addr: usize,
    size: usize,
    flags: VmFlags,
) -> Result<(), VmemError> {
    vm.xalloc_addr(addr, size, flags)
}

/// `vmem_free`.
pub fn vmem_free(vm: &Arena, addr: usize, size: usize) {
    vm.free(addr, size)
}

/// `vmem_xfree`.
pub fn vmem_xfree(vm: &Arena, addr: usize, size: usize) {
    vm.xfree(addr, size)
}

/// `vmem_xfreeall`.
pub fn vmem_xfreeall(vm: &Arena) {
    vm.xfreeall()
}

/// `vmem_roundup_size`.
///
/// # Panics
/// If the rounded size overflows (see [`Arena::checked_roundup_size`]).
#[track_caller]
pub fn vmem_roundup_size(vm: &Arena, size: usize) -> usize {
    vm.roundup_size(size)
}

/// `vmem_size`.
pub fn vmem_size(vm: &Arena, typemask: SizeType) -> usize {
    vm.size(typemask)
}
