//! Groups (NetBSD's `pcg_t`, the magazines) and the lock-free stacks that
//! hold them: the depot's full and partial lists and the global
//! empty-group stacks. All raw pointer work on groups is here.
//!
//! ## The stacks
//!
//! A stack is one atomic head pointer. Three values are special: null
//! (empty), and [`BUSY`], a sentinel that no group can have as its address.
//!
//! - **push** (`pool_pcg_put`): wait while the head is `BUSY`; write the
//!   group's `next` = head; compare-exchange the head from that value to the
//!   group (`AcqRel`).
//! - **pop** (`pool_pcg_get`): wait while the head is `BUSY`; null means
//!   empty; else compare-exchange the head from the group `o` to `BUSY`
//!   (`Acquire`), read `o.next`, and store it as the head (`Release`).
//!   While the head is `BUSY` nobody else can push or pop, so `o.next` is
//!   read while `o` is still certainly on the stack: there is no ABA
//!   problem, which a plain Treiber pop (read `next`, then compare-exchange
//!   the head to it) has when `o` is popped, reused and pushed back in
//!   between. The loom model's broken variant is exactly that pop.
//! - **take all** (`pool_pcg_trunc`): wait while `BUSY`; compare-exchange
//!   the head to null (`Acquire`); the caller owns the whole chain.
//!
//! "Contended" counts a wait on `BUSY` or a failed compare-exchange.
//!
//! **Memory ordering.** Every write of the head is either an RMW that read
//! the previous value (push, the pop's exchange to `BUSY`, take-all) or the
//! pop's store, which follows its own exchange with nothing in between (the
//! head is `BUSY` meanwhile, and every other writer waits for that). So the
//! head's writes form one chain in which each writer has acquired the value
//! its predecessor released: whoever pops or takes a group happens after
//! the push that put it there, and so after everything its pusher wrote
//! into the group (its objects, `avail`, `next`).
//!
//! **Interrupts.** A pop holds the head at `BUSY` between two instructions;
//! an interrupt handler on the same CPU that popped the same stack then
//! would spin forever. Pops therefore run only at `IPL_VM` or above: inside
//! a CPU-local section or a cross-call (NetBSD: at `splvm`). Push and take
//! all hold nothing and may run anywhere.

use core::mem::{align_of, size_of};
use core::ptr::{self, NonNull};

use bsdalloc_platform::sync::atomic::{AtomicPtr, Ordering};
use bsdalloc_platform::sync::cell::UnsafeCell;
use bsdalloc_platform::sync::{Backoff, prefetch};

/// `POOL_PADDR_INVALID`: the physical address of an object that has none
/// recorded.
pub const POOL_PADDR_INVALID: usize = usize::MAX;

/// `PCG_NOBJECTS_NORMAL`: objects per group (LP64), a 256-byte group.
pub const PCG_NOBJECTS_NORMAL: usize = 15;
/// `PCG_NOBJECTS_LARGE`: objects per group with `PR_LARGECACHE` (LP64), a
/// 1024-byte group.
pub const PCG_NOBJECTS_LARGE: usize = 63;

/// One cached object: its address and physical address (`pcgpair_t`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Slot {
    /// The object.
    pub va: *mut u8,
    /// Its physical address, or [`POOL_PADDR_INVALID`].
    pub pa: usize,
}

/// The group header; `size` slots follow it in the same allocation.
#[repr(C)]
struct Header {
    next: *mut Group,
    /// Objects present. Only meaningful while the group is not installed
    /// on a CPU (a CPU keeps the count of its installed groups in its own
    /// structure, so its fast path touches one line less).
    avail: u32,
    size: u32,
}

/// A group (`pcg_t`): a LIFO array of up to `size` objects with their
/// physical addresses, in memory of a group pool. Only ever used through
/// raw pointers.
#[repr(C)]
pub struct Group {
    /// Header and slots are one unit of ownership: a CPU or the depot owns
    /// the whole group. Under loom every access goes through this cell, so
    /// the model checker sees each one.
    hdr: UnsafeCell<Header>,
}

impl core::fmt::Debug for Group {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The counts are only meaningful to the group's owner.
        f.debug_struct("Group").finish_non_exhaustive()
    }
}

/// Where the slots start: after the header, at the slots' alignment.
const SLOTS_OFFSET: usize = size_of::<Group>().next_multiple_of(align_of::<Slot>());

#[cfg(not(bsdalloc_loom))]
const _: () = {
    // NetBSD's LP64 sizes: a 16-byte header, 256- and 1024-byte groups.
    assert!(SLOTS_OFFSET == 16);
    assert!(Group::bytes(PCG_NOBJECTS_NORMAL) == 256);
    assert!(Group::bytes(PCG_NOBJECTS_LARGE) == 1024);
    // Address-only groups hold as many objects in 8-byte slots, within
    // the same memory.
    assert!(SLOTS_OFFSET + PCG_NOBJECTS_NORMAL * size_of::<usize>() <= 256);
};

impl Group {
    /// Bytes of a group with `size` slots.
    pub const fn bytes(size: usize) -> usize {
        SLOTS_OFFSET + size * size_of::<Slot>()
    }

    /// Alignment a group needs.
    pub const ALIGN: usize = if align_of::<Group>() > align_of::<Slot>() {
        align_of::<Group>()
    } else {
        align_of::<Slot>()
    };

    /// Make `mem` an empty group of `size` slots.
    ///
    /// # Safety
    /// `mem` is at least [`Group::bytes`]`(size)` bytes, aligned to
    /// [`Group::ALIGN`], and the caller owns it.
    pub unsafe fn init(mem: NonNull<u8>, size: u32) -> *mut Group {
        let g = mem.as_ptr().cast::<Group>();
        // SAFETY: the caller's contract.
        unsafe {
            g.write(Group {
                hdr: UnsafeCell::new(Header {
                    next: ptr::null_mut(),
                    avail: 0,
                    size,
                }),
            })
        };
        g
    }

    /// `(avail, size)` of a group that is not installed on a CPU.
    ///
    /// # Safety
    /// The caller owns `g`.
    #[inline]
    pub unsafe fn counts(g: *mut Group) -> (u32, u32) {
        // SAFETY: the caller owns the group.
        unsafe { (*g).hdr.with(|h| ((*h).avail, (*h).size)) }
    }

    /// Record `avail` in a group leaving a CPU.
    ///
    /// # Safety
    /// The caller owns `g`.
    #[inline]
    pub unsafe fn set_avail(g: *mut Group, avail: u32) {
        // SAFETY: the caller owns the group.
        unsafe { (*g).hdr.with_mut(|h| (*h).avail = avail) }
    }

    /// Give an empty group taken from the shared empty stack this cache's
    /// capacity (groups of every cache with the same group memory share
    /// the stack).
    ///
    /// # Safety
    /// The caller owns `g`, which holds no object.
    #[inline]
    pub unsafe fn set_size(g: *mut Group, size: u32) {
        // SAFETY: the caller owns the group.
        unsafe { (*g).hdr.with_mut(|h| (*h).size = size) }
    }

    /// The slot array of a cache that records physical addresses.
    ///
    /// # Safety
    /// `g` is a live group.
    #[inline(always)]
    unsafe fn slots(g: *mut Group) -> *mut Slot {
        // SAFETY: slots follow the header in the group's allocation.
        unsafe { g.cast::<u8>().add(SLOTS_OFFSET).cast::<Slot>() }
    }

    /// The address array of an address-only cache.
    ///
    /// # Safety
    /// `g` is a live group.
    #[inline(always)]
    unsafe fn addrs(g: *mut Group) -> *mut *mut u8 {
        // SAFETY: the addresses follow the header in the group's allocation.
        unsafe { g.cast::<u8>().add(SLOTS_OFFSET).cast::<*mut u8>() }
    }

    /// Slot `i`; `wide`: the cache records physical addresses (16-byte
    /// slots), else addresses only (8 bytes; the physical address reads
    /// as [`POOL_PADDR_INVALID`]).
    ///
    /// # Safety
    /// The caller owns `g`; `i < size`, and the slot holds an object.
    #[inline(always)]
    pub unsafe fn slot(g: *mut Group, i: u32, wide: bool) -> Slot {
        // SAFETY: the caller's contract; the cell marks the access for loom.
        unsafe {
            (*g).hdr.with_mut(|_| {
                if wide {
                    Self::slots(g).add(i as usize).read()
                } else {
                    Slot {
                        va: Self::addrs(g).add(i as usize).read(),
                        pa: POOL_PADDR_INVALID,
                    }
                }
            })
        }
    }

    /// Store an object in slot `i` (`wide` as for [`Group::slot`]; an
    /// address-only cache drops `s.pa`, which its caller has checked).
    ///
    /// # Safety
    /// The caller owns `g`; `i < size`.
    #[inline(always)]
    pub unsafe fn set_slot(g: *mut Group, i: u32, s: Slot, wide: bool) {
        // SAFETY: the caller's contract; the cell marks the access for loom.
        unsafe {
            (*g).hdr.with_mut(|_| {
                if wide {
                    Self::slots(g).add(i as usize).write(s)
                } else {
                    Self::addrs(g).add(i as usize).write(s.va)
                }
            })
        }
    }

    /// Clear slot `i` (DIAGNOSTIC: a taken object leaves no trace).
    ///
    /// # Safety
    /// As [`Group::set_slot`].
    #[inline(always)]
    pub unsafe fn clear_slot(g: *mut Group, i: u32, wide: bool) {
        // SAFETY: the caller's contract.
        unsafe {
            Self::set_slot(
                g,
                i,
                Slot {
                    va: ptr::null_mut(),
                    pa: 0,
                },
                wide,
            )
        }
    }

    /// Whether one of the first `n` slots holds `va`.
    ///
    /// # Safety
    /// The caller owns `g`; `n <= size`.
    pub unsafe fn contains(g: *mut Group, n: u32, va: *mut u8, wide: bool) -> bool {
        // SAFETY: the caller's contract.
        (0..n).any(|i| unsafe { Self::slot(g, i, wide) }.va == va)
    }

    /// The next group in a chain taken from a stack.
    ///
    /// # Safety
    /// The caller owns `g`.
    #[inline]
    pub unsafe fn next(g: *mut Group) -> *mut Group {
        // SAFETY: the caller owns the group.
        unsafe { (*g).hdr.with(|h| (*h).next) }
    }

    #[inline]
    unsafe fn set_next(g: *mut Group, next: *mut Group) {
        // SAFETY: the caller owns the group.
        unsafe { (*g).hdr.with_mut(|h| (*h).next = next) }
    }
}

/// The head value of a stack whose top is being popped: an address no
/// group has (groups are at least 8-aligned; this is 1).
const BUSY: *mut Group = ptr::without_provenance_mut(1);

/// A lock-free stack of groups (see the module docs).
pub struct Stack {
    head: AtomicPtr<Group>,
    /// The loom model's broken variant: a Treiber pop without the busy
    /// sentinel.
    #[cfg(bsdalloc_loom)]
    broken_pop: bool,
}

impl core::fmt::Debug for Stack {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let h = self.head.load(Ordering::Relaxed);
        f.debug_struct("Stack")
            .field("empty", &h.is_null())
            .field("busy", &(h == BUSY))
            .finish()
    }
}

impl Default for Stack {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: the head is atomic; groups on the stack belong to the stack.
unsafe impl Sync for Stack {}
// SAFETY: as above.
unsafe impl Send for Stack {}

impl Stack {
    /// An empty stack.
    pub const fn new() -> Stack {
        Stack {
            head: AtomicPtr::new(ptr::null_mut()),
            #[cfg(bsdalloc_loom)]
            broken_pop: false,
        }
    }

    /// Loom only: a stack whose pop is a plain Treiber pop, with no busy
    /// sentinel (the bug the model must catch).
    #[cfg(bsdalloc_loom)]
    pub const fn broken_for_model() -> Stack {
        Stack {
            head: AtomicPtr::new(ptr::null_mut()),
            broken_pop: true,
        }
    }

    /// Whether the stack is empty right now (a hint).
    pub fn is_empty(&self) -> bool {
        self.head.load(Ordering::Relaxed).is_null()
    }

    /// Push `g`. True if it had to wait or retry (contended).
    ///
    /// # Safety
    /// The caller owns `g` and gives it to the stack.
    pub unsafe fn push(&self, g: *mut Group) -> bool {
        let mut contended = false;
        let backoff = Backoff::new();
        let mut o = self.head.load(Ordering::Relaxed);
        loop {
            if o == BUSY {
                contended = true;
                backoff.snooze();
                o = self.head.load(Ordering::Relaxed);
                continue;
            }
            // SAFETY: the caller owns `g` until the exchange publishes it.
            unsafe { Group::set_next(g, o) };
            match self
                .head
                .compare_exchange(o, g, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return contended,
                Err(h) => {
                    contended = true;
                    backoff.spin();
                    o = h;
                }
            }
        }
    }

    /// Pop the top group, or null if the stack is empty; `contended` counts
    /// the waits on a concurrent pop.
    ///
    /// # Safety
    /// At `IPL_VM` or above on this CPU (inside a CPU-local section or a
    /// cross-call): see the module docs.
    pub unsafe fn pop(&self, contended: &mut u64) -> *mut Group {
        #[cfg(bsdalloc_loom)]
        if self.broken_pop {
            // SAFETY: none; the model's broken variant.
            return unsafe { self.treiber_pop() };
        }
        let backoff = Backoff::new();
        let mut o = self.head.load(Ordering::Relaxed);
        loop {
            if o == BUSY {
                *contended += 1;
                backoff.snooze();
                o = self.head.load(Ordering::Relaxed);
                continue;
            }
            if o.is_null() {
                return o;
            }
            // The group's header, fetched while the exchange below waits
            // for the head's line: the window in which the head is BUSY
            // (and every other CPU waits) then holds no miss of its own.
            // A thread preempted inside that window stalls them all for a
            // time slice; on an oversubscribed machine (K3, 4 threads on 2
            // cores) that was most of the run.
            prefetch(o);
            match self
                .head
                .compare_exchange(o, BUSY, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => {
                    // SAFETY: the head is BUSY: `o` is ours, and its `next`
                    // was written before the push (or pop store) we
                    // acquired.
                    let next = unsafe { Group::next(o) };
                    self.head.store(next, Ordering::Release);
                    return o;
                }
                Err(h) => {
                    backoff.spin();
                    o = h;
                }
            }
        }
    }

    /// The broken pop: `next` is read from a group that another CPU may
    /// have popped and be writing already.
    #[cfg(bsdalloc_loom)]
    unsafe fn treiber_pop(&self) -> *mut Group {
        loop {
            let o = self.head.load(Ordering::Acquire);
            if o.is_null() {
                return o;
            }
            // SAFETY: none (that is the bug).
            let next = unsafe { Group::next(o) };
            if self
                .head
                .compare_exchange(o, next, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return o;
            }
        }
    }

    /// Take every group: the chain's head, linked by [`Group::next`], now
    /// owned by the caller.
    pub fn take_all(&self) -> *mut Group {
        let backoff = Backoff::new();
        let mut o = self.head.load(Ordering::Relaxed);
        loop {
            if o == BUSY {
                backoff.snooze();
                o = self.head.load(Ordering::Relaxed);
                continue;
            }
            if o.is_null() {
                return o;
            }
            match self.head.compare_exchange(
                o,
                ptr::null_mut(),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return o,
                Err(h) => o = h,
            }
        }
    }
}
