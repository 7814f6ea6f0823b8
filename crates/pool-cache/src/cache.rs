//! The cache engine: per-CPU groups, the depot, and the get, put, transfer
//! and invalidate paths of spec §3.4–3.7, generic over where objects and
//! groups come from ([`Backend`]): a pool for [`RawPoolCache`], a small
//! fixed set in the loom model. One source, so the model checks the code
//! that runs.
//!
//! [`RawPoolCache`]: crate::RawPoolCache

use core::fmt;
use core::mem::MaybeUninit;
use core::ptr::{self, NonNull};

use bsdalloc_platform::sync::atomic::{AtomicU8, Ordering};
use bsdalloc_platform::sync::cell::UnsafeCell;
use bsdalloc_platform::{CpuId, PerCpu, Zeroable};
use bsdalloc_pool::PrFlags;

use crate::group::{Group, POOL_PADDR_INVALID, Slot, Stack};

/// A constructor (`pc_ctor` with `pc_arg`: the argument is `self`). It
/// runs when an object leaves the pool for the cache, never on a hit.
pub trait ObjectCtor: Sync {
    /// Make the raw object at `obj` a constructed one. `flags` are the
    /// getter's (`PR_WAITOK` or `PR_NOWAIT`). On failure the raw object
    /// goes back to the pool and the get returns nothing.
    fn construct(&self, obj: NonNull<u8>, flags: PrFlags) -> Result<(), CtorFailed>;
}

/// A destructor (`pc_dtor` with `pc_arg`). It runs when an object goes
/// back to the pool: invalidation, reclaim, destroy, a put that finds no
/// room, [`destruct_object`](crate::RawPoolCache::destruct_object).
pub trait ObjectDtor: Sync {
    /// Undo the constructor on the object at `obj`.
    fn destruct(&self, obj: NonNull<u8>);
}

/// A constructor said no (NetBSD's non-zero return).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtorFailed;

impl fmt::Display for CtorFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("pool_cache: constructor failed")
    }
}

impl core::error::Error for CtorFailed {}

impl ObjectCtor for fn(NonNull<u8>, PrFlags) -> Result<(), CtorFailed> {
    fn construct(&self, obj: NonNull<u8>, flags: PrFlags) -> Result<(), CtorFailed> {
        self(obj, flags)
    }
}

impl ObjectDtor for fn(NonNull<u8>) {
    fn destruct(&self, obj: NonNull<u8>) {
        self(obj)
    }
}

/// Where a cache's objects and groups come from.
///
/// # Safety
/// `obj_get` hands out each object to one caller until `obj_put` takes it
/// back; `group_alloc` returns memory for a group of the cache's group
/// size, aligned to [`Group::ALIGN`], owned by the caller until
/// `group_free`; `group_alloc` does not sleep. `empty_groups` is the same
/// stack every time, and holds only groups of this backend's group size.
#[cfg_attr(not(bsdalloc_loom), allow(unreachable_pub))]
pub unsafe trait Backend: Sync {
    /// `pool_get` of a raw object.
    fn obj_get(&self, flags: PrFlags) -> Option<NonNull<u8>>;
    /// `pool_put` of a raw object.
    ///
    /// # Safety
    /// `obj` came from `obj_get` and is not used any more.
    unsafe fn obj_put(&self, obj: NonNull<u8>);
    /// `pool_get(pc_pcgpool, PR_NOWAIT)`: memory for an empty group.
    fn group_alloc(&self) -> Option<NonNull<u8>>;
    /// `pool_put(pc_pcgpool, pcg)`.
    ///
    /// # Safety
    /// `g` came from `group_alloc` and is not used any more.
    unsafe fn group_free(&self, g: NonNull<u8>);
    /// The shared stack of empty groups of this group size
    /// (`pcg_normal_cache`, `pcg_large_cache`).
    fn empty_groups(&self) -> &Stack;
    /// Whether putting objects may allocate groups (NetBSD's
    /// `pool_cache_disable` turns it off).
    fn caching_enabled(&self) -> bool {
        true
    }
}

/// One CPU's part of a cache (`pool_cache_cpu_t`). A null group pointer
/// with capacity 0 is NetBSD's shared dummy group: empty for gets, full
/// for puts, never dereferenced. So an all-zero element is a CPU that has
/// cached nothing yet, which is how [`PerCpu`] hands them out.
#[repr(C)]
pub(crate) struct CpuCache {
    cur: *mut Group,
    prev: *mut Group,
    /// Objects in `cur` and its capacity (0 for the dummy).
    cur_avail: u32,
    cur_size: u32,
    prev_avail: u32,
    prev_size: u32,
    hits: u64,
    misses: u64,
    pcmisses: u64,
    contended: u64,
    /// Deltas: only their sum over the CPUs means anything.
    nfull: i64,
    npart: i64,
}

// SAFETY: all-zero is valid: null pointers (the dummy group) and zero
// counts.
unsafe impl Zeroable for CpuCache {}
// SAFETY: the groups it points to belong to whichever CPU context holds
// the element; moving that ownership between threads is what cross-calls
// and exit hooks do, one context at a time.
unsafe impl Send for CpuCache {}

impl CpuCache {
    /// Swap current and previous.
    #[inline(always)]
    fn swap(&mut self) {
        core::mem::swap(&mut self.cur, &mut self.prev);
        core::mem::swap(&mut self.cur_avail, &mut self.prev_avail);
        core::mem::swap(&mut self.cur_size, &mut self.prev_size);
    }

    /// Make `g` (owned, not installed) the current group.
    ///
    /// # Safety
    /// The caller owns `g`.
    #[inline]
    unsafe fn install_cur(&mut self, g: *mut Group) {
        // SAFETY: the caller's contract.
        let (avail, size) = unsafe { Group::counts(g) };
        self.cur = g;
        self.cur_avail = avail;
        self.cur_size = size;
    }
}

/// One CPU's counters (`pool_cache_cpu_t`'s) and what it holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuCacheStats {
    /// `cc_hits`: gets and puts served by the CPU's groups.
    pub hits: u64,
    /// `cc_misses`: gets and puts that had to leave the CPU's groups.
    pub misses: u64,
    /// `cc_pcmisses`: misses that went on to the pool.
    pub pcmisses: u64,
    /// `cc_contended`: waits and retries on the lock-free stacks.
    pub contended: u64,
    /// `cc_nfull`: full groups this CPU put into the depot, less those it
    /// took (a delta).
    pub nfull: i64,
    /// `cc_npart`: partial groups this CPU put into the depot, less those
    /// invalidation freed here (a delta).
    pub npart: i64,
    /// Objects in the current and the previous group now.
    pub cached: u64,
}

impl CpuCacheStats {
    fn of(cc: &CpuCache) -> CpuCacheStats {
        CpuCacheStats {
            hits: cc.hits,
            misses: cc.misses,
            pcmisses: cc.pcmisses,
            contended: cc.contended,
            nfull: cc.nfull,
            npart: cc.npart,
            cached: u64::from(cc.cur_avail) + u64::from(cc.prev_avail),
        }
    }

    fn add(&mut self, o: &CpuCacheStats) {
        self.hits += o.hits;
        self.misses += o.misses;
        self.pcmisses += o.pcmisses;
        self.contended += o.contended;
        self.nfull += o.nfull;
        self.npart += o.npart;
        self.cached += o.cached;
    }
}

/// What the put path found inside the section.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PutStep {
    Done,
    /// No empty group on hand: allocate one outside the section.
    NeedGroup,
    /// DIAGNOSTIC: the object is in this CPU's groups already.
    DoublePut,
}

const UNINIT: u8 = 0;
const READY: u8 = 2;

/// The engine of one cache.
#[cfg_attr(not(bsdalloc_loom), allow(unreachable_pub))]
pub struct Core<B> {
    name: &'static str,
    backend: B,
    state: AtomicU8,
    cpus: UnsafeCell<MaybeUninit<PerCpu<CpuCache>>>,
    /// `pc_fullgroups`.
    full: Stack,
    /// `pc_partgroups`.
    part: Stack,
    group_size: u32,
    /// Groups record each object's physical address (`pcgpair_t`, 16-byte
    /// slots); false for an address-only cache (8-byte slots).
    wide: bool,
    ctor: Option<&'static dyn ObjectCtor>,
    dtor: Option<&'static dyn ObjectDtor>,
    /// `PR_PSERIALIZE`: a cross-CPU barrier before objects are destructed.
    pserialize: bool,
}

// SAFETY: the per-CPU storage is reached through its sections and
// cross-calls; the stacks are lock-free; the rest is immutable after
// `init`, which publishes with `state` (Release) before any use (Acquire).
unsafe impl<B: Sync> Sync for Core<B> {}
// SAFETY: as above.
unsafe impl<B: Send> Send for Core<B> {}

impl<B> fmt::Debug for Core<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("name", &self.name)
            .field("group_size", &self.group_size)
            .finish_non_exhaustive()
    }
}

#[cfg_attr(not(bsdalloc_loom), allow(unreachable_pub))]
impl<B: Backend> Core<B> {
    /// An engine over `backend`, with groups of `group_size` objects that
    /// record physical addresses; not usable before [`Core::init`] (the
    /// loom model's constructor).
    #[cfg_attr(not(bsdalloc_loom), allow(dead_code))]
    pub const fn new(
        name: &'static str,
        backend: B,
        group_size: u32,
        ctor: Option<&'static dyn ObjectCtor>,
        dtor: Option<&'static dyn ObjectDtor>,
        pserialize: bool,
    ) -> Core<B> {
        Self::with_layout(name, backend, group_size, true, ctor, dtor, pserialize)
    }

    /// As [`Core::new`]; `wide` false: address-only groups (8-byte slots,
    /// physical addresses not kept).
    pub const fn with_layout(
        name: &'static str,
        backend: B,
        group_size: u32,
        wide: bool,
        ctor: Option<&'static dyn ObjectCtor>,
        dtor: Option<&'static dyn ObjectDtor>,
        pserialize: bool,
    ) -> Core<B> {
        Core {
            name,
            backend,
            state: AtomicU8::new(UNINIT),
            cpus: UnsafeCell::new(MaybeUninit::uninit()),
            full: Stack::new(),
            part: Stack::new(),
            group_size,
            wide,
            ctor,
            dtor,
            pserialize,
        }
    }

    /// Loom only: make the depot's full list pop without its busy
    /// sentinel (the model's broken variant).
    #[cfg(bsdalloc_loom)]
    pub fn break_full_list_for_model(&mut self) {
        self.full = Stack::broken_for_model();
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Objects per group.
    pub fn group_size(&self) -> u32 {
        self.group_size
    }

    /// Whether a constructor is set.
    pub fn has_ctor(&self) -> bool {
        self.ctor.is_some()
    }

    /// Whether [`Core::init`] has run (and [`Core::fini`] has not).
    pub fn is_ready(&self) -> bool {
        self.state.load(Ordering::Acquire) == READY
    }

    /// Take `cpus` as the per-CPU storage and become usable.
    ///
    /// # Panics
    /// If already initialised.
    pub fn init(&self, cpus: CpuCacheStorage) {
        assert!(
            self.state.load(Ordering::Acquire) == UNINIT,
            "pool_cache_bootstrap: [{}] already initialised",
            self.name
        );
        // SAFETY: not published yet (UNINIT): nobody else reads the cell.
        self.cpus.with_mut(|p| unsafe { (*p).write(cpus.0) });
        self.state.store(READY, Ordering::Release);
    }

    /// Tear the per-CPU storage down; every CPU must hold nothing (after
    /// [`Core::invalidate`] with no concurrent use).
    ///
    /// # Safety
    /// No other thread uses the engine now or later (until `init` again).
    pub unsafe fn fini(&self) {
        let cpus = self.cpus();
        let mut left = 0u64;
        cpus.for_each_cpu(|_, cc| {
            left += u64::from(!cc.cur.is_null()) + u64::from(!cc.prev.is_null())
        });
        assert!(
            left == 0,
            "pool_cache_destroy: [{}] a CPU still holds groups (used during destroy?)",
            self.name
        );
        self.state.store(UNINIT, Ordering::Release);
        // SAFETY: the caller's contract: nobody uses the storage any more;
        // it was written by `init`.
        self.cpus.with_mut(|p| unsafe { (*p).assume_init_drop() });
    }

    #[inline(always)]
    #[track_caller]
    fn cpus(&self) -> &PerCpu<CpuCache> {
        if self.state.load(Ordering::Acquire) != READY {
            not_ready(self.name);
        }
        // SAFETY: READY was published after `init` wrote the cell, and the
        // cell is not written again until `fini`, which the caller of
        // `fini` promises no user overlaps.
        self.cpus.with(|p| unsafe { (*p).assume_init_ref() })
    }

    // ---- get ----

    /// `pool_cache_get_paddr` below the argument checks: an object and its
    /// physical address, or `None` (the pool had none, or the constructor
    /// failed).
    ///
    /// The section's closure holds the hit only: small enough for the
    /// section to be inlined into the caller. A miss opens a second section
    /// for the rest of the loop (previous group, depot); it is rare, and
    /// the CPU's groups are looked at afresh there.
    #[inline(always)]
    pub fn get(&self, flags: PrFlags) -> Option<(NonNull<u8>, usize)> {
        match self.get_hit() {
            Some(s) => Some(s),
            None => self.get_miss(flags),
        }
    }

    /// The hit alone: an object from this CPU's current group, or `None`
    /// with nothing else done.
    #[inline(always)]
    pub fn get_hit(&self) -> Option<(NonNull<u8>, usize)> {
        self.cpus().with(|cc| {
            let n = cc.cur_avail;
            if n == 0 {
                return None;
            }
            let n = n - 1;
            cc.cur_avail = n;
            cc.hits += 1;
            // SAFETY: the current group is this CPU's and its slot `n <
            // avail` holds an object.
            Some(unsafe { take(cc.cur, n, self.wide) })
        })
    }

    /// A get that found the current group empty.
    #[cold]
    #[inline(never)]
    fn get_miss(&self, flags: PrFlags) -> Option<(NonNull<u8>, usize)> {
        match self.cpus().with(|cc| self.get_refill(cc)) {
            Some(s) => Some(s),
            None => self.get_slow(flags),
        }
    }

    /// The rest of the section's get loop: the previous group, then a full
    /// group from the depot. `None`: go to the pool.
    #[inline]
    fn get_refill(&self, cc: &mut CpuCache) -> Option<(NonNull<u8>, usize)> {
        loop {
            if cc.cur_avail > 0 {
                cc.cur_avail -= 1;
                cc.hits += 1;
                // SAFETY: as in `get`.
                return Some(unsafe { take(cc.cur, cc.cur_avail, self.wide) });
            }
            if cc.prev_avail > 0 {
                cc.swap();
                continue;
            }
            cc.misses += 1;
            // SAFETY: inside the CPU's section (IPL_VM).
            let g = unsafe { self.full.pop(&mut cc.contended) };
            if g.is_null() {
                cc.pcmisses += 1;
                return None;
            }
            if !cc.cur.is_null() {
                // SAFETY: the current group is ours and empty; it goes to
                // the shared empty stack.
                unsafe {
                    Group::set_avail(cc.cur, 0);
                    cc.contended += u64::from(self.backend.empty_groups().push(cc.cur));
                }
            }
            cc.nfull -= 1;
            // SAFETY: popped: ours now.
            unsafe { cc.install_cur(g) };
        }
    }

    /// The miss path outside the section: a raw object from the pool,
    /// constructed; nothing is cached.
    #[cold]
    #[inline(never)]
    fn get_slow(&self, flags: PrFlags) -> Option<(NonNull<u8>, usize)> {
        let obj = self.backend.obj_get(flags)?;
        if let Some(c) = self.ctor
            && c.construct(obj, flags).is_err()
        {
            // SAFETY: a raw object of ours, never handed out.
            unsafe { self.backend.obj_put(obj) };
            return None;
        }
        Some((obj, POOL_PADDR_INVALID))
    }

    // ---- put ----

    /// `pool_cache_put_paddr`.
    ///
    /// # Safety
    /// `obj` is a constructed object of this cache, not used any more.
    #[inline(always)]
    pub unsafe fn put(&self, obj: NonNull<u8>, pa: usize) {
        // SAFETY: the caller's contract.
        if !unsafe { self.put_hit(obj, pa) } {
            // SAFETY: the caller's contract.
            unsafe { self.put_miss(obj, pa) };
        }
    }

    /// The hit alone: `obj` into this CPU's current group if it has room
    /// (`true`), or nothing done (`false`; with `diagnostic`, also for an
    /// object already cached here, which the miss path reports).
    ///
    /// # Safety
    /// As [`Core::put`].
    #[inline(always)]
    pub unsafe fn put_hit(&self, obj: NonNull<u8>, pa: usize) -> bool {
        self.cpus().with(|cc| {
            #[cfg(feature = "diagnostic")]
            // SAFETY: the CPU's own groups, inside its section.
            if unsafe { cached_here(cc, obj.as_ptr(), self.wide) } {
                return false;
            }
            let n = cc.cur_avail;
            if n >= cc.cur_size {
                return false;
            }
            // SAFETY: the current group is this CPU's, slot `n` is free.
            unsafe {
                Group::set_slot(
                    cc.cur,
                    n,
                    Slot {
                        va: obj.as_ptr(),
                        pa,
                    },
                    self.wide,
                )
            };
            cc.cur_avail = n + 1;
            cc.hits += 1;
            true
        })
    }

    /// A put that found the current group full (or, DIAGNOSTIC, the object
    /// already cached).
    ///
    /// # Safety
    /// As [`Core::put`].
    #[cold]
    #[inline(never)]
    unsafe fn put_miss(&self, obj: NonNull<u8>, pa: usize) {
        let step = self.cpus().with(|cc| {
            #[cfg(feature = "diagnostic")]
            // SAFETY: the CPU's own groups, inside its section.
            if unsafe { cached_here(cc, obj.as_ptr(), self.wide) } {
                return PutStep::DoublePut;
            }
            self.put_refill(cc, obj, pa, ptr::null_mut(), true)
        });
        if step != PutStep::Done {
            // SAFETY: the caller's contract.
            unsafe { self.put_slow(step, obj, pa) };
        }
    }

    /// The rest of the section's put loop: the previous group, then an
    /// empty group (`spare`, else one from the shared stack).
    #[inline]
    fn put_refill(
        &self,
        cc: &mut CpuCache,
        obj: NonNull<u8>,
        pa: usize,
        mut spare: *mut Group,
        count_miss: bool,
    ) -> PutStep {
        let mut counted = !count_miss;
        loop {
            if cc.cur_avail < cc.cur_size {
                let n = cc.cur_avail;
                // SAFETY: as in `put`.
                unsafe {
                    Group::set_slot(
                        cc.cur,
                        n,
                        Slot {
                            va: obj.as_ptr(),
                            pa,
                        },
                        self.wide,
                    )
                };
                cc.cur_avail = n + 1;
                cc.hits += 1;
                if !spare.is_null() {
                    // Not needed after all (an interrupt or a cross-call
                    // changed the CPU's groups meanwhile).
                    // SAFETY: an empty group of ours.
                    cc.contended += u64::from(unsafe { self.backend.empty_groups().push(spare) });
                }
                return PutStep::Done;
            }
            if cc.prev_size > cc.prev_avail {
                cc.swap();
                continue;
            }
            if !counted {
                cc.misses += 1;
                counted = true;
            }
            let g = if spare.is_null() {
                // SAFETY: inside the CPU's section (IPL_VM).
                unsafe { self.backend.empty_groups().pop(&mut cc.contended) }
            } else {
                core::mem::replace(&mut spare, ptr::null_mut())
            };
            if g.is_null() {
                return PutStep::NeedGroup;
            }
            // Empty groups are shared by caches of both layouts.
            // SAFETY: an empty group, ours.
            unsafe { Group::set_size(g, self.group_size) };
            if cc.prev.is_null() {
                // SAFETY: an empty group, ours.
                let (avail, size) = unsafe { Group::counts(g) };
                cc.prev = g;
                cc.prev_avail = avail;
                cc.prev_size = size;
            } else {
                if !cc.cur.is_null() {
                    // SAFETY: the current group is ours and full.
                    unsafe {
                        Group::set_avail(cc.cur, cc.cur_avail);
                        cc.contended += u64::from(self.full.push(cc.cur));
                    }
                    cc.nfull += 1;
                }
                // SAFETY: an empty group, ours.
                unsafe { cc.install_cur(g) };
            }
        }
    }

    /// The put miss path outside the section: allocate an empty group and
    /// try again, or destruct the object now.
    ///
    /// # Safety
    /// As [`Core::put`].
    #[inline(never)]
    unsafe fn put_slow(&self, step: PutStep, obj: NonNull<u8>, pa: usize) {
        if step == PutStep::DoublePut {
            double_put(self.name, obj);
        }
        if self.backend.caching_enabled()
            && let Some(mem) = self.backend.group_alloc()
        {
            // SAFETY: fresh group memory of our group size.
            let g = unsafe { Group::init(mem, self.group_size) };
            let step = self
                .cpus()
                .with(|cc| self.put_refill(cc, obj, pa, g, false));
            debug_assert!(step == PutStep::Done);
            return;
        }
        self.cpus().with(|cc| cc.pcmisses += 1);
        // SAFETY: the caller's contract.
        unsafe { self.destruct(obj) };
    }

    // ---- destruction, transfer, invalidation ----

    /// `pool_cache_destruct_object`: (barrier,) destructor, `pool_put`.
    ///
    /// # Safety
    /// As [`Core::put`].
    pub unsafe fn destruct(&self, obj: NonNull<u8>) {
        if self.pserialize {
            xc_barrier();
        }
        // SAFETY: the caller's contract.
        unsafe { self.destruct_nobarrier(obj) };
    }

    /// # Safety
    /// As [`Core::put`].
    unsafe fn destruct_nobarrier(&self, obj: NonNull<u8>) {
        if let Some(d) = self.dtor {
            d.destruct(obj);
        }
        // SAFETY: the caller's contract: a raw object of the backend now.
        unsafe { self.backend.obj_put(obj) };
    }

    /// Move a CPU's groups to the depot and leave it the dummies
    /// (`pool_cache_transfer`): full groups to the full list, partial ones
    /// to the partial list, empty ones to the shared empty stack.
    fn transfer(&self, cc: &mut CpuCache) {
        for (g, avail) in [(cc.cur, cc.cur_avail), (cc.prev, cc.prev_avail)] {
            if g.is_null() {
                continue;
            }
            // SAFETY: the CPU's group; given to one stack below.
            let contended = unsafe {
                Group::set_avail(g, avail);
                let (_, size) = Group::counts(g);
                if avail == size {
                    cc.nfull += 1;
                    self.full.push(g)
                } else if avail == 0 {
                    self.backend.empty_groups().push(g)
                } else {
                    cc.npart += 1;
                    self.part.push(g)
                }
            };
            cc.contended += u64::from(contended);
        }
        cc.cur = ptr::null_mut();
        cc.prev = ptr::null_mut();
        cc.cur_avail = 0;
        cc.cur_size = 0;
        cc.prev_avail = 0;
        cc.prev_size = 0;
    }

    /// Give the calling CPU's groups to the depot (a thread's exit).
    pub fn transfer_local(&self) {
        self.cpus().with(|cc| self.transfer(cc));
    }

    /// Give CPU `cpu`'s groups to the depot, by cross-call
    /// (`pool_cache_cpu_init` of a CPU slot that is reused).
    pub fn transfer_cpu(&self, cpu: CpuId) {
        self.cpus().with_cpu(cpu, |cc| self.transfer(cc));
    }

    /// `pool_cache_invalidate`: every CPU's groups to the depot (by
    /// cross-call), then destruct every object in the depot, free its
    /// groups and the shared empty groups. Pool pages stay.
    ///
    /// # Panics
    /// Where a cross-call may not be made (interrupt context, a spin mutex
    /// held).
    pub fn invalidate(&self) {
        let cpus = self.cpus();
        cpus.for_each_cpu(|_, cc| self.transfer(cc));
        let mut g = self.backend.empty_groups().take_all();
        while !g.is_null() {
            // SAFETY: taken: ours; `next` read before the group is freed.
            unsafe {
                let next = Group::next(g);
                self.backend.group_free(NonNull::new_unchecked(g.cast()));
                g = next;
            }
        }
        // SAFETY: whole chains taken from our stacks.
        let nfull = unsafe { self.free_chain(self.full.take_all()) };
        // SAFETY: as above.
        let npart = unsafe { self.free_chain(self.part.take_all()) };
        if nfull != 0 || npart != 0 {
            cpus.with(|cc| {
                cc.nfull -= nfull;
                cc.npart -= npart;
            });
        }
    }

    /// Destruct every object of a chain of groups and free the groups;
    /// the number of groups.
    ///
    /// # Safety
    /// The caller owns the chain.
    unsafe fn free_chain(&self, mut g: *mut Group) -> i64 {
        if g.is_null() {
            return 0;
        }
        if self.pserialize {
            xc_barrier();
        }
        let mut n = 0;
        while !g.is_null() {
            // SAFETY: ours; every slot below `avail` holds a constructed
            // object; `next` is read before the group is freed.
            unsafe {
                let (avail, _) = Group::counts(g);
                for i in 0..avail {
                    let s = Group::slot(g, i, self.wide);
                    self.destruct_nobarrier(NonNull::new_unchecked(s.va));
                }
                let next = Group::next(g);
                self.backend.group_free(NonNull::new_unchecked(g.cast()));
                g = next;
            }
            n += 1;
        }
        n
    }

    // ---- statistics ----

    /// Each CPU's counters, in that CPU's context (cross-calls: thread
    /// context only).
    pub fn cpu_stats(&self, mut f: impl FnMut(CpuId, CpuCacheStats) + Send) {
        self.cpus()
            .for_each_cpu(|c, cc| f(c, CpuCacheStats::of(cc)));
    }

    /// The counters summed over the CPUs.
    pub fn totals(&self) -> CpuCacheStats {
        let mut t = CpuCacheStats::default();
        self.cpu_stats(|_, s| t.add(&s));
        t
    }

    /// The calling CPU's counters (inside its section; any context).
    pub fn local_stats(&self) -> CpuCacheStats {
        self.cpus().with(|cc| CpuCacheStats::of(cc))
    }
}

/// The zeroed per-CPU storage a [`Core`] takes at `init` (the element type
/// stays private).
#[cfg_attr(not(bsdalloc_loom), allow(unreachable_pub))]
pub struct CpuCacheStorage(PerCpu<CpuCache>);

impl fmt::Debug for CpuCacheStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg_attr(not(bsdalloc_loom), allow(unreachable_pub))]
impl CpuCacheStorage {
    /// Carve it from `pages`.
    pub fn new(
        pages: &'static dyn bsdalloc_platform::PageSource,
    ) -> Result<CpuCacheStorage, bsdalloc_platform::PageError> {
        PerCpu::new(pages).map(CpuCacheStorage)
    }
}

/// Take slot `n` of `g`.
///
/// # Safety
/// The caller owns `g` (its CPU's section), `n < avail`.
#[inline(always)]
unsafe fn take(g: *mut Group, n: u32, wide: bool) -> (NonNull<u8>, usize) {
    // SAFETY: the caller's contract; a filled slot holds a non-null object.
    unsafe {
        let s = Group::slot(g, n, wide);
        #[cfg(feature = "diagnostic")]
        Group::clear_slot(g, n, wide);
        (NonNull::new_unchecked(s.va), s.pa)
    }
}

/// DIAGNOSTIC: whether `obj` sits in the CPU's groups.
///
/// # Safety
/// Inside the CPU's section.
#[cfg(feature = "diagnostic")]
unsafe fn cached_here(cc: &CpuCache, obj: *mut u8, wide: bool) -> bool {
    // SAFETY: the CPU's own groups, `avail` slots each.
    unsafe {
        (!cc.cur.is_null() && Group::contains(cc.cur, cc.cur_avail, obj, wide))
            || (!cc.prev.is_null() && Group::contains(cc.prev, cc.prev_avail, obj, wide))
    }
}

/// `xc_barrier(0)`: every CPU has passed a point where it held no reference
/// taken before now (passive serialisation readers).
fn xc_barrier() {
    bsdalloc_platform::xc_broadcast(&|_| {});
}

#[cold]
#[inline(never)]
#[track_caller]
fn not_ready(name: &str) -> ! {
    panic!("pool_cache: [{name}] not bootstrapped (or destroyed)")
}

#[cold]
#[inline(never)]
#[track_caller]
fn double_put(name: &str, obj: NonNull<u8>) -> ! {
    panic!("pool_cache_put_paddr: [{name}] object {obj:p} is already in the cache (double put)")
}
