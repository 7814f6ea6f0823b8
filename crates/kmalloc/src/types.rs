//! Malloc types (`struct malloc_type`): their counters, their limit and
//! the sleep at it, attach / detach, and the list of attached types.

use core::fmt;
use core::ptr;

use bsdalloc_platform::sync::atomic::{AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use bsdalloc_platform::{Ipl, LockRank, SpinMutex, WaitChannel};

use crate::flags::MFlags;

/// `M_MAGIC`: the magic number every `struct malloc_type` carries.
pub const M_MAGIC: u32 = 877_983_977;

/// Never attached: the first `malloc` attaches it (`MALLOC_DEFINE`), or
/// panics (`MALLOC_JUSTDEFINE`).
const NEW: u8 = 0;
/// On the list of attached types: usable.
const ATTACHED: u8 = 1;
/// Taken off the list by `malloc_type_detach`: unusable until attached
/// again.
const DETACHED: u8 = 2;

/// The counters of a type, on a cache line of their own: every malloc and
/// free of the type updates them with atomic read-modify-writes, and the
/// line should not be shared with anything else.
#[repr(align(128))]
struct Counters {
    /// `ks_inuse`: blocks live.
    inuse: AtomicUsize,
    /// `ks_calls`: blocks ever allocated.
    calls: AtomicU64,
    /// `ks_memuse`: bytes live (what kmem reserved for each block), plus
    /// those of allocations under way.
    memuse: AtomicUsize,
    /// `ks_maxused`: the high-water mark of `memuse`.
    maxused: AtomicUsize,
    /// `ks_limit`: at or above it, `M_WAITOK` sleeps and `M_NOWAIT`
    /// fails.
    limit: AtomicUsize,
    /// `ks_limblocks`: sleeps at the limit.
    limblocks: AtomicU64,
    /// `ks_mapblocks`: `M_WAITOK` allocations the kernel map could not
    /// serve at once (kmem had to wait for memory).
    mapblocks: AtomicU64,
    /// `ks_size`: bit `n` set if a block of a power-of-two size class
    /// `2^n` was ever allocated.
    size: AtomicU64,
}

/// NetBSD's `struct malloc_type`: a kind of allocation, named for
/// statistics, with its own limit.
///
/// Define one with [`MALLOC_DEFINE!`](crate::MALLOC_DEFINE) (attached at
/// its first use), [`MALLOC_DEFINE_LIMIT!`](crate::MALLOC_DEFINE_LIMIT)
/// (with a limit), or [`MALLOC_JUSTDEFINE!`](crate::MALLOC_JUSTDEFINE)
/// (attached only by [`malloc_type_attach`]). Types are `static`: the
/// list of attached types links them in place, and nothing is allocated
/// for them.
///
/// ```
/// use bsdalloc_kmalloc::{M_WAITOK, MALLOC_DEFINE, free, malloc};
///
/// MALLOC_DEFINE!(M_SOFTC, "softc", "driver private state");
///
/// let p = malloc(100, &M_SOFTC, M_WAITOK).unwrap();
/// let s = M_SOFTC.stats();
/// assert_eq!((s.inuse, s.calls), (1, 1));
/// assert_eq!(s.memuse, 128); // kmem's class for 100 bytes + the header
/// unsafe { free(p.as_ptr(), &M_SOFTC) };
/// assert_eq!(M_SOFTC.stats().memuse, 0);
/// ```
pub struct MallocType {
    /// `ks_magic`.
    magic: u32,
    /// `ks_shortdesc`.
    shortdesc: &'static str,
    /// `ks_longdesc`.
    longdesc: &'static str,
    /// The limit it was defined with (0: NetBSD's default, 60 % of the
    /// memory budget or the kmem arena, set at attach).
    define_limit: usize,
    /// `MALLOC_DEFINE`: attached at first use.
    auto_attach: bool,
    state: AtomicU8,
    /// `ks_next`: written under [`REGISTRY`], read without it.
    next: AtomicPtr<MallocType>,
    /// Interlock of the sleep at the limit (`IPL_VM`: frees in interrupt
    /// handlers wake sleepers).
    sleep_lock: SpinMutex<()>,
    /// Where `M_WAITOK` callers sleep at the limit (`tsleep(ksp, …)`).
    sleepers: WaitChannel,
    c: Counters,
}

impl fmt::Debug for MallocType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MallocType")
            .field("shortdesc", &self.shortdesc)
            .field("longdesc", &self.longdesc)
            .field("attached", &self.is_attached())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl fmt::Display for MallocType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.shortdesc)
    }
}

/// A type's counters at one moment ([`MallocType::stats`]): NetBSD's
/// `struct malloc_type` fields. `Display` prints its row of `vmstat -m`'s
/// "Memory statistics by type".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MallocTypeStats {
    /// `ks_shortdesc`: the name in the table.
    pub shortdesc: &'static str,
    /// `ks_longdesc`.
    pub longdesc: &'static str,
    /// `ks_inuse`: blocks live ("InUse").
    pub inuse: usize,
    /// `ks_calls`: blocks ever allocated ("Requests").
    pub calls: u64,
    /// `ks_memuse`: bytes live, each block counted at the size kmem
    /// reserved for it ("MemUse").
    pub memuse: usize,
    /// `ks_maxused`: the most bytes ever live ("HighUse"). A block's bytes
    /// count from the moment its allocation reserved them against the
    /// limit, so an `M_NOWAIT` allocation that kmem then refused may have
    /// been part of a peak another allocation recorded.
    pub maxused: usize,
    /// `ks_limit`: the byte limit ("Limit"; `usize::MAX`: none).
    pub limit: usize,
    /// `ks_limblocks`: sleeps at the limit ("Type Limit" blocks).
    pub limblocks: u64,
    /// `ks_mapblocks`: `M_WAITOK` allocations that had to wait for kmem
    /// ("Kern Limit" blocks).
    pub mapblocks: u64,
    /// `ks_size`: bit `n` set if a block whose reserved size rounds up to
    /// `2^n` was ever allocated ("Size(s)").
    pub size: u64,
}

impl MallocType {
    /// A type named `shortdesc` (the name `vmstat -m` prints) described by
    /// `longdesc`, attached at its first use: what
    /// [`MALLOC_DEFINE!`](crate::MALLOC_DEFINE) expands to.
    pub const fn new(shortdesc: &'static str, longdesc: &'static str) -> MallocType {
        MallocType::build(shortdesc, longdesc, 0, true)
    }

    /// As [`new`](MallocType::new), with a byte limit
    /// ([`MALLOC_DEFINE_LIMIT!`](crate::MALLOC_DEFINE_LIMIT); 0: the
    /// default, 60 % of the memory budget, or of the kmem arena without one).
    pub const fn with_limit(
        shortdesc: &'static str,
        longdesc: &'static str,
        limit: usize,
    ) -> MallocType {
        MallocType::build(shortdesc, longdesc, limit, true)
    }

    /// As [`new`](MallocType::new), but not attached at first use: until
    /// [`malloc_type_attach`], `malloc` with it panics
    /// ([`MALLOC_JUSTDEFINE!`](crate::MALLOC_JUSTDEFINE)).
    pub const fn new_unattached(shortdesc: &'static str, longdesc: &'static str) -> MallocType {
        MallocType::build(shortdesc, longdesc, 0, false)
    }

    const fn build(
        shortdesc: &'static str,
        longdesc: &'static str,
        limit: usize,
        auto_attach: bool,
    ) -> MallocType {
        MallocType {
            magic: M_MAGIC,
            shortdesc,
            longdesc,
            define_limit: limit,
            auto_attach,
            state: AtomicU8::new(NEW),
            next: AtomicPtr::new(ptr::null_mut()),
            sleep_lock: SpinMutex::new(Ipl::Vm, ()),
            sleepers: WaitChannel::new("mallocwait"),
            c: Counters {
                inuse: AtomicUsize::new(0),
                calls: AtomicU64::new(0),
                memuse: AtomicUsize::new(0),
                maxused: AtomicUsize::new(0),
                limit: AtomicUsize::new(usize::MAX),
                limblocks: AtomicU64::new(0),
                mapblocks: AtomicU64::new(0),
                size: AtomicU64::new(0),
            },
        }
    }

    /// `ks_shortdesc`.
    pub fn shortdesc(&self) -> &'static str {
        self.shortdesc
    }

    /// `ks_longdesc`.
    pub fn longdesc(&self) -> &'static str {
        self.longdesc
    }

    /// Whether the type is on the list of attached types.
    pub fn is_attached(&self) -> bool {
        self.state.load(Ordering::Acquire) == ATTACHED
    }

    /// The byte limit (`usize::MAX` before attach, for a type defined
    /// without one).
    pub fn limit(&self) -> usize {
        self.c.limit.load(Ordering::Relaxed)
    }

    /// The type's counters now. Each counter is exact; read while others
    /// allocate, they are read one after another, not at one instant.
    pub fn stats(&self) -> MallocTypeStats {
        MallocTypeStats {
            shortdesc: self.shortdesc,
            longdesc: self.longdesc,
            inuse: self.c.inuse.load(Ordering::Relaxed),
            calls: self.c.calls.load(Ordering::Relaxed),
            memuse: self.c.memuse.load(Ordering::Relaxed),
            maxused: self.c.maxused.load(Ordering::Relaxed),
            limit: self.c.limit.load(Ordering::Relaxed),
            limblocks: self.c.limblocks.load(Ordering::Relaxed),
            mapblocks: self.c.mapblocks.load(Ordering::Relaxed),
            size: self.c.size.load(Ordering::Relaxed),
        }
    }

    /// Panics unless the type may be used now; attaches a
    /// `MALLOC_DEFINE`d type at its first use.
    #[inline(always)]
    #[track_caller]
    pub(crate) fn check_attached(&'static self) {
        if self.state.load(Ordering::Acquire) != ATTACHED {
            self.not_attached();
        }
    }

    #[cold]
    #[inline(never)]
    #[track_caller]
    fn not_attached(&'static self) {
        match self.state.load(Ordering::Acquire) {
            NEW if self.auto_attach => attach(self, false),
            NEW => panic!(
                "malloc: type `{}' is not attached (MALLOC_JUSTDEFINE: call malloc_type_attach first)",
                self.shortdesc
            ),
            DETACHED => panic!(
                "malloc: type `{}' used after malloc_type_detach",
                self.shortdesc
            ),
            _ => {}
        }
    }

    /// Reserve `bytes` of the type's limit (`ks_memuse += bytes`), the way
    /// NetBSD's malloc did under `splvm`: while the type is at or above
    /// its limit, `M_NOWAIT` fails and `M_WAITOK` sleeps until a free
    /// brings it below. Returns `ks_memuse` with the reservation in it.
    ///
    /// The test and the add are one compare-and-swap, so every reservation
    /// saw the type below its limit — the type overshoots its limit by at
    /// most the last reservation, as in NetBSD, and never by several that
    /// raced.
    #[inline]
    #[track_caller]
    pub(crate) fn charge(&self, bytes: usize, flags: MFlags) -> Option<usize> {
        let mut cur = self.c.memuse.load(Ordering::Relaxed);
        loop {
            if cur >= self.c.limit.load(Ordering::Relaxed) {
                if !flags.may_sleep() {
                    return None;
                }
                cur = self.sleep_at_limit();
                continue;
            }
            let new = cur + bytes;
            match self
                .c
                .memuse
                .compare_exchange_weak(cur, new, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => return Some(new),
                Err(c) => cur = c,
            }
        }
    }

    /// `tsleep(ksp, …)` until the type is below its limit; returns
    /// `ks_memuse` then.
    #[cold]
    #[inline(never)]
    #[track_caller]
    fn sleep_at_limit(&self) -> usize {
        let mut g = self.sleep_lock.lock();
        loop {
            // Read under the interlock: a free that brings the type below
            // the limit takes the interlock after its subtraction, so it
            // either shows here or wakes the sleep below.
            let cur = self.c.memuse.load(Ordering::SeqCst);
            if cur < self.c.limit.load(Ordering::SeqCst) {
                return cur;
            }
            self.c.limblocks.fetch_add(1, Ordering::Relaxed);
            g = self.sleepers.wait(g);
        }
    }

    /// Give `bytes` of a reservation back (a free, or an allocation that
    /// failed); wake sleepers when that brings the type below its limit.
    #[inline]
    pub(crate) fn uncharge(&self, bytes: usize) {
        let before = self.c.memuse.fetch_sub(bytes, Ordering::SeqCst);
        let limit = self.c.limit.load(Ordering::SeqCst);
        if before >= limit && before - bytes < limit {
            self.wake_sleepers();
        }
    }

    #[cold]
    #[inline(never)]
    fn wake_sleepers(&self) {
        let _g = self.sleep_lock.lock();
        self.sleepers.broadcast();
    }

    /// Account a block that kmem handed out: `reserved` bytes (already
    /// charged), with `ks_memuse` at `memuse` after the charge.
    #[inline]
    pub(crate) fn account_alloc(&self, reserved: usize, memuse: usize) {
        self.c.inuse.fetch_add(1, Ordering::Relaxed);
        self.c.calls.fetch_add(1, Ordering::Relaxed);
        // Plain loads first: the high-water mark and the size bits rarely
        // change, and a read keeps the line shared between CPUs.
        if memuse > self.c.maxused.load(Ordering::Relaxed) {
            self.c.maxused.fetch_max(memuse, Ordering::Relaxed);
        }
        let bit = 1u64 << reserved.next_power_of_two().trailing_zeros();
        if self.c.size.load(Ordering::Relaxed) & bit == 0 {
            self.c.size.fetch_or(bit, Ordering::Relaxed);
        }
    }

    /// Account a block given back to kmem.
    #[inline]
    pub(crate) fn account_free(&self, reserved: usize) {
        self.c.inuse.fetch_sub(1, Ordering::Relaxed);
        self.uncharge(reserved);
    }

    /// An `M_WAITOK` allocation kmem could not serve without sleeping.
    #[inline]
    pub(crate) fn account_mapblock(&self) {
        self.c.mapblocks.fetch_add(1, Ordering::Relaxed);
    }
}

/// The list of attached types (`kmemstatistics`): its head, behind the
/// lock that serialises attach and detach. `IPL_VM`, because the first
/// `malloc` of a type, which attaches it, may run in an interrupt handler.
static REGISTRY: SpinMutex<()> = SpinMutex::ranked(Ipl::Vm, LockRank::Registry, ());
static HEAD: AtomicPtr<MallocType> = AtomicPtr::new(ptr::null_mut());

/// NetBSD's default `ks_limit`: 60 % of `nkmempages`. NetBSD sizes
/// `nkmempages` from physical memory, capped by the kmem arena; here the
/// memory budget of the kernel map is the physical memory, and the kmem
/// arena the cap when there is no budget.
fn default_limit() -> usize {
    let map = crate::malloc::backend().map();
    let kmemsize = map.kmem_arena().size(bsdalloc_vmem::SizeType::ALL);
    let budget = map.stats().limit_pages.saturating_mul(map.page_size());
    let nkmem = if budget == 0 {
        kmemsize
    } else {
        kmemsize.min(budget)
    };
    nkmem / 10 * 6
}

#[track_caller]
fn attach(ty: &'static MallocType, explicit: bool) {
    if ty.magic != M_MAGIC {
        panic!("malloc_type_attach: bad magic");
    }
    // Outside the list lock: it reads the arena under the arena's lock.
    let limit = match ty.define_limit {
        0 => default_limit(),
        l => l,
    };
    // Panics come after the lock is released: the panic machinery may
    // allocate, and an allocator may not be entered under a spin mutex.
    let g = REGISTRY.lock();
    let state = ty.state.load(Ordering::Acquire);
    if state == NEW || (state == DETACHED && explicit) {
        // A limit set while detached stays; a type's first attach sets it.
        if state == NEW {
            ty.c.limit.store(limit, Ordering::Relaxed);
        }
        ty.next
            .store(HEAD.load(Ordering::Relaxed), Ordering::Release);
        HEAD.store(ptr::from_ref(ty).cast_mut(), Ordering::Release);
        ty.state.store(ATTACHED, Ordering::Release);
    }
    drop(g);
    match state {
        ATTACHED if explicit => panic!("malloc_type_attach: `{}' already on list", ty.shortdesc),
        DETACHED if !explicit => panic!(
            "malloc: type `{}' used after malloc_type_detach",
            ty.shortdesc
        ),
        // Attached now (by us, or by another first user meanwhile).
        _ => {}
    }
}

/// `malloc_type_attach(type)`: put a type on the list of attached types,
/// with its defined limit (or NetBSD's default, 60 % of the memory
/// budget, or of the kmem arena without one).
/// Needed only for [`MALLOC_JUSTDEFINE!`](crate::MALLOC_JUSTDEFINE) types
/// and to use a type again after [`malloc_type_detach`];
/// [`MALLOC_DEFINE!`](crate::MALLOC_DEFINE) types attach themselves at
/// first use.
///
/// # Panics
/// "malloc_type_attach: \`NAME' already on list" if it is attached.
#[track_caller]
pub fn malloc_type_attach(ty: &'static MallocType) {
    attach(ty, true);
}

/// `malloc_type_detach(type)`: take a type off the list; `malloc` with it
/// panics until it is attached again. Its counters stay.
///
/// # Panics
/// "malloc_type_detach: \`NAME' not on list" if it is not attached;
/// "malloc_type_detach: \`NAME' still has N blocks in use" if any of its
/// blocks is live (freeing them later would be accounted to a type
/// nobody lists).
#[track_caller]
pub fn malloc_type_detach(ty: &'static MallocType) {
    if ty.magic != M_MAGIC {
        panic!("malloc_type_detach: bad magic");
    }
    let g = REGISTRY.lock();
    if ty.state.load(Ordering::Acquire) != ATTACHED {
        drop(g);
        panic!("malloc_type_detach: `{}' not on list", ty.shortdesc);
    }
    let live = ty.c.inuse.load(Ordering::Relaxed);
    if live != 0 {
        drop(g);
        panic!(
            "malloc_type_detach: `{}' still has {live} blocks in use",
            ty.shortdesc
        );
    }
    let me = ptr::from_ref(ty).cast_mut();
    let next = ty.next.load(Ordering::Relaxed);
    // The link that points at `ty`: the head, or a predecessor's `next`.
    // A walker standing on `ty` keeps its `next` and walks on.
    let mut link: &AtomicPtr<MallocType> = &HEAD;
    loop {
        let cur = link.load(Ordering::Relaxed);
        if cur == me {
            link.store(next, Ordering::Release);
            break;
        }
        // SAFETY: every pointer on the list is a `&'static MallocType`
        // attached under this lock.
        link = unsafe { &(*cur).next };
    }
    ty.state.store(DETACHED, Ordering::Release);
}

/// `malloc_type_setlimit(type, limit)`: set the type's byte limit
/// (`usize::MAX`: none). Callers asleep at the old limit are woken to
/// look again.
pub fn malloc_type_setlimit(ty: &MallocType, limit: usize) {
    ty.c.limit.store(limit, Ordering::SeqCst);
    ty.wake_sleepers();
}

/// Every attached type, most recently attached first (the list is walked
/// without a lock: a type attached or detached meanwhile may be missed,
/// or seen twice if it is detached and attached again during the walk).
pub fn malloc_types() -> MallocTypes {
    MallocTypes {
        next: HEAD.load(Ordering::Acquire),
    }
}

/// The iterator of [`malloc_types`].
#[derive(Debug)]
pub struct MallocTypes {
    next: *mut MallocType,
}

impl Iterator for MallocTypes {
    type Item = &'static MallocType;

    fn next(&mut self) -> Option<&'static MallocType> {
        // SAFETY: every pointer on the list (or left in a detached type's
        // `next`) is a `&'static MallocType`.
        let t: &'static MallocType = unsafe { self.next.as_ref()? };
        self.next = t.next.load(Ordering::Acquire);
        Some(t)
    }
}

/// Whether `p` is an attached type, to name it in a panic message without
/// reading through a pointer from a corrupt header.
pub(crate) fn find_type(p: *const MallocType) -> Option<&'static MallocType> {
    let _g = REGISTRY.lock();
    malloc_types().find(|t| ptr::eq(*t, p))
}

/// `MALLOC_DEFINE(type, shortdesc, longdesc)`: a `static` [`MallocType`],
/// attached at its first use.
///
/// ```
/// use bsdalloc_kmalloc::{MALLOC_DEFINE, MallocType};
///
/// MALLOC_DEFINE!(pub M_UFSMNT2, "UFS mount", "UFS mount structure");
/// let t: &'static MallocType = &M_UFSMNT2;
/// assert_eq!(t.shortdesc(), "UFS mount");
/// ```
#[macro_export]
macro_rules! MALLOC_DEFINE {
    ($(#[$m:meta])* $vis:vis $name:ident, $short:expr, $long:expr $(,)?) => {
        $(#[$m])*
        $vis static $name: $crate::MallocType = $crate::MallocType::new($short, $long);
    };
}

/// `MALLOC_DEFINE_LIMIT(type, shortdesc, longdesc, limit)`: a `static`
/// [`MallocType`] with a byte limit, attached at its first use. At the
/// limit, `M_WAITOK` sleeps until the type frees and `M_NOWAIT` fails.
///
/// ```
/// use bsdalloc_kmalloc::{M_NOWAIT, MALLOC_DEFINE_LIMIT, free, malloc};
///
/// MALLOC_DEFINE_LIMIT!(M_TINY, "tiny", "a small budget", 4096);
/// let a = malloc(3000, &M_TINY, M_NOWAIT).unwrap(); // 3000 + header: kmem's 4096 class
/// assert!(malloc(10, &M_TINY, M_NOWAIT).is_none()); // at the limit
/// unsafe { free(a.as_ptr(), &M_TINY) };
/// ```
#[macro_export]
macro_rules! MALLOC_DEFINE_LIMIT {
    ($(#[$m:meta])* $vis:vis $name:ident, $short:expr, $long:expr, $limit:expr $(,)?) => {
        $(#[$m])*
        $vis static $name: $crate::MallocType =
            $crate::MallocType::with_limit($short, $long, $limit);
    };
}

/// `MALLOC_JUSTDEFINE(type, shortdesc, longdesc)`: a `static`
/// [`MallocType`] that is not attached at first use: call
/// [`malloc_type_attach`] before using it (and [`malloc_type_detach`]
/// when done, as a module does at unload).
///
/// ```
/// use bsdalloc_kmalloc::*;
///
/// MALLOC_JUSTDEFINE!(M_MODULE, "module", "a loadable module's memory");
/// malloc_type_attach(&M_MODULE);
/// let p = malloc(8, &M_MODULE, M_WAITOK).unwrap();
/// unsafe { free(p.as_ptr(), &M_MODULE) };
/// malloc_type_detach(&M_MODULE);
/// ```
#[macro_export]
macro_rules! MALLOC_JUSTDEFINE {
    ($(#[$m:meta])* $vis:vis $name:ident, $short:expr, $long:expr $(,)?) => {
        $(#[$m])*
        $vis static $name: $crate::MallocType =
            $crate::MallocType::new_unattached($short, $long);
    };
}

/// `MALLOC_DECLARE(type)`: use a type defined elsewhere — the `extern`
/// declaration of C, a `use` of the static in Rust — checked at compile
/// time to be a [`MallocType`].
///
/// ```
/// mod drivers {
///     bsdalloc_kmalloc::MALLOC_DEFINE!(pub M_USBDEV, "USB device", "USB device driver");
/// }
/// mod attach {
///     bsdalloc_kmalloc::MALLOC_DECLARE!(crate::drivers::M_USBDEV);
///     pub fn name() -> &'static str { M_USBDEV.shortdesc() }
/// }
/// fn main() {
///     assert_eq!(attach::name(), "USB device");
/// }
/// ```
#[macro_export]
macro_rules! MALLOC_DECLARE {
    ($vis:vis $path:path) => {
        #[allow(unused_imports)]
        $vis use $path;
        const _: &$crate::MallocType = &$path;
    };
}

// The built-in types of NetBSD's <sys/malloc.h> (and its
// <sys/mallocvar.h> M_FREE), defined here as the kernel defines them.
MALLOC_DEFINE!(
    /// `M_DEVBUF`: device driver memory.
    pub M_DEVBUF, "devbuf", "device driver memory"
);
MALLOC_DEFINE!(
    /// `M_DMAMAP`: bus_dma(9) structures.
    pub M_DMAMAP, "DMA map", "bus_dma(9) structures"
);
MALLOC_DEFINE!(
    /// `M_FREE`: should be on a free list.
    pub M_FREE, "free", "should be on free list"
);
MALLOC_DEFINE!(
    /// `M_PCB`: protocol control blocks.
    pub M_PCB, "pcb", "protocol control block"
);
MALLOC_DEFINE!(
    /// `M_TEMP`: miscellaneous temporary data buffers.
    pub M_TEMP, "temp", "misc. temporary data buffers"
);
MALLOC_DEFINE!(
    /// `M_RTABLE`: routing tables.
    pub M_RTABLE, "routetbl", "routing tables"
);
MALLOC_DEFINE!(
    /// `M_FTABLE`: fragment reassembly headers.
    pub M_FTABLE, "fragtbl", "fragment reassembly header"
);
MALLOC_DEFINE!(
    /// `M_UFSMNT`: UFS mount structures.
    pub M_UFSMNT, "UFS mount", "UFS mount structure"
);
MALLOC_DEFINE!(
    /// `M_NETADDR`: export host address structures.
    pub M_NETADDR, "Export Host", "Export host address structure"
);
MALLOC_DEFINE!(
    /// `M_MRTABLE`: multicast routing tables.
    pub M_MRTABLE, "mrt", "multicast routing tables"
);

/// The built-in types, in `<sys/malloc.h>` order.
pub static BUILTIN_TYPES: [&MallocType; 10] = [
    &M_DEVBUF, &M_DMAMAP, &M_FREE, &M_PCB, &M_TEMP, &M_RTABLE, &M_FTABLE, &M_UFSMNT, &M_NETADDR,
    &M_MRTABLE,
];
