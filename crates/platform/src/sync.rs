//! The synchronisation shim: every atomic, cell, spin hint and fence in
//! bsdalloc comes from here.
//!
//! In a normal build these are `core`'s types (and crossbeam-utils'
//! [`Backoff`]). Under `--cfg bsdalloc_loom` they are [loom]'s, so that the
//! model checker sees every access the allocators make. The cfg is project
//! specific so that no dependency ever switches along with us (the trick
//! crossbeam and tokio use).
//!
//! ## One const-init strategy
//!
//! Every type here has a `const fn new` in both configurations, so statics
//! and `const fn` constructors compile unchanged under loom. loom's own
//! objects cannot be built in a constant (they belong to one execution of a
//! model), so under loom each shim object holds its initial value and
//! creates the loom object lazily, on first use in each execution:
//!
//! - atomics re-create their loom atomic, with the initial value, the first
//!   time they are touched in a new execution, so even a `static` atomic
//!   starts every execution fresh;
//! - an [`UnsafeCell`](cell::UnsafeCell) keeps its data in a plain cell and
//!   a loom cell of `()` beside it that tracks every access, so loom still
//!   checks that no two accesses conflict. The data of a `static` cell is
//!   *not* reset between executions: models build the objects they check
//!   inside the model.
//!
//! Executions are told apart by a generation counter that `sync::model`
//! bumps at the start of each one: loom models of bsdalloc code run through
//! `sync::model`, not `loom::model` directly.
//!
//! ## Interrupt points and asymmetric fences
//!
//! [`interrupt_point`] marks the places where an asynchronous interrupt may
//! be taken. In a real build it compiles to nothing: interrupts arrive
//! whenever the hardware (or, in user space, the signal) says so. Under loom
//! it polls the current model CPU for posted interrupts, so the checker
//! delivers interrupts between every pair of shim operations it explores.
//!
//! [`light_fence`] and [`heavy_fence`] are an asymmetric fence pair: the
//! light side (a CPU's own fast path) costs a compiler fence, the heavy side
//! (a rare remote operation such as a cross-call) makes every running thread
//! of the process execute a full fence (`membarrier(2)`). Together they
//! order like two `SeqCst` fences; under loom both are `SeqCst` fences, which
//! is exactly the guarantee the pair gives.
//!
//! [loom]: https://docs.rs/loom

/// Atomic integers, pointers, orderings and fences.
pub mod atomic {
    #[cfg(not(bsdalloc_loom))]
    pub use core::sync::atomic::{
        AtomicBool, AtomicI32, AtomicPtr, AtomicU8, AtomicU16, AtomicU32, AtomicU64, AtomicUsize,
        Ordering, fence,
    };
    #[cfg(bsdalloc_loom)]
    pub use loom::sync::atomic::{Ordering, fence};

    #[cfg(bsdalloc_loom)]
    pub use super::loom_shim::{
        AtomicBool, AtomicI32, AtomicPtr, AtomicU8, AtomicU16, AtomicU32, AtomicU64, AtomicUsize,
    };

    /// A compiler-only fence: orders this thread's accesses against its own
    /// interrupt (signal) handlers without any hardware fence.
    #[inline(always)]
    pub fn compiler_fence(order: Ordering) {
        #[cfg(not(bsdalloc_loom))]
        core::sync::atomic::compiler_fence(order);
        #[cfg(bsdalloc_loom)]
        {
            // loom runs handlers only at interrupt points, which are ordinary
            // program order on the same thread.
            let _ = order;
        }
    }
}

/// Interior mutability with a loom-compatible access API.
pub mod cell {
    #[cfg(bsdalloc_loom)]
    pub use super::loom_shim::{MutPtr, UnsafeCell};

    /// `core::cell::UnsafeCell` with loom's `with` / `with_mut` access API, so
    /// that one source compiles against both.
    #[cfg(not(bsdalloc_loom))]
    #[derive(Debug, Default)]
    #[repr(transparent)]
    pub struct UnsafeCell<T: ?Sized>(core::cell::UnsafeCell<T>);

    #[cfg(not(bsdalloc_loom))]
    impl<T> UnsafeCell<T> {
        /// Wrap a value.
        #[inline(always)]
        pub const fn new(data: T) -> Self {
            Self(core::cell::UnsafeCell::new(data))
        }

        /// Unwrap the value.
        #[inline(always)]
        pub fn into_inner(self) -> T {
            self.0.into_inner()
        }
    }

    #[cfg(not(bsdalloc_loom))]
    impl<T: ?Sized> UnsafeCell<T> {
        /// Read access through a raw pointer; the caller guarantees no
        /// concurrent writer.
        #[inline(always)]
        pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }

        /// Write access through a raw pointer; the caller guarantees
        /// exclusive access.
        #[inline(always)]
        pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }

        /// A tracked pointer for access that outlives one closure (a lock
        /// guard). Same API as loom's `UnsafeCell::get_mut`.
        #[inline(always)]
        pub fn get_mut(&self) -> MutPtr<T> {
            MutPtr(self.0.get())
        }
    }

    /// A pointer handed out by [`UnsafeCell::get_mut`] (loom's `MutPtr`).
    #[cfg(not(bsdalloc_loom))]
    #[derive(Debug)]
    pub struct MutPtr<T: ?Sized>(*mut T);

    #[cfg(not(bsdalloc_loom))]
    impl<T: ?Sized> MutPtr<T> {
        /// Dereference.
        ///
        /// # Safety
        /// The caller has exclusive access to the cell for the lifetime of
        /// the returned reference.
        #[inline(always)]
        #[allow(clippy::mut_from_ref)]
        pub unsafe fn deref(&self) -> &mut T {
            // SAFETY: the caller guarantees exclusive access (see above).
            unsafe { &mut *self.0 }
        }
    }
}

/// Exponential backoff for spin loops: crossbeam-utils' `Backoff` in a real
/// build; under loom every step yields, so the checker can schedule the
/// thread being waited for.
#[derive(Debug, Default)]
pub struct Backoff {
    #[cfg(not(bsdalloc_loom))]
    inner: crossbeam_utils::Backoff,
}

impl Backoff {
    /// A fresh backoff.
    #[inline]
    pub fn new() -> Backoff {
        Backoff {
            #[cfg(not(bsdalloc_loom))]
            inner: crossbeam_utils::Backoff::new(),
        }
    }

    /// Back off in a lock-free loop (a failed compare-exchange).
    #[inline]
    pub fn spin(&self) {
        #[cfg(not(bsdalloc_loom))]
        self.inner.spin();
        #[cfg(bsdalloc_loom)]
        loom::thread::yield_now();
    }

    /// Back off while waiting for another thread (a held lock): spins,
    /// then yields the processor in a user-space build with `std`.
    #[inline]
    pub fn snooze(&self) {
        #[cfg(not(bsdalloc_loom))]
        {
            #[cfg(feature = "std")]
            self.inner.snooze();
            #[cfg(not(feature = "std"))]
            self.inner.spin();
        }
        #[cfg(bsdalloc_loom)]
        loom::thread::yield_now();
    }

    /// Whether waiting longer should block instead of spinning.
    #[inline]
    pub fn is_completed(&self) -> bool {
        #[cfg(not(bsdalloc_loom))]
        return self.inner.is_completed();
        #[cfg(bsdalloc_loom)]
        return true;
    }
}

/// Spin-wait hint. Under loom, a yield so the checker can schedule the thread
/// being waited for.
#[inline(always)]
pub fn spin_loop() {
    #[cfg(not(bsdalloc_loom))]
    core::hint::spin_loop();
    #[cfg(bsdalloc_loom)]
    loom::thread::yield_now();
}

/// Start fetching the cache line at `p` without waiting for it: a hint
/// that lets a miss overlap other work (vmem's segment neighbours, a depot
/// group's header before the pop that owns it). Never faults and never
/// changes what the program computes: a null, stale or dangling pointer
/// is harmless. A no-op off x86-64, under Miri and under loom.
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(all(target_arch = "x86_64", not(miri), not(bsdalloc_loom)))]
    // SAFETY: PREFETCHT0 is a hint: it does not access memory in the
    // abstract machine's sense, cannot fault, and SSE is part of x86-64.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri), not(bsdalloc_loom))))]
    let _ = p;
}

/// A place where an asynchronous interrupt may be taken (see the module docs).
#[inline(always)]
pub fn interrupt_point() {
    #[cfg(bsdalloc_loom)]
    crate::machine::loom_interrupt_point();
}

/// The light side of an asymmetric fence pair (see the module docs): a
/// compiler fence in a real build.
#[inline(always)]
pub fn light_fence() {
    #[cfg(not(bsdalloc_loom))]
    core::sync::atomic::compiler_fence(atomic::Ordering::SeqCst);
    #[cfg(bsdalloc_loom)]
    atomic::fence(atomic::Ordering::SeqCst);
}

/// The heavy side of an asymmetric fence pair: every thread of the process
/// that runs now executes a full fence before this returns. Returns `false`
/// (having done nothing) where the machine cannot do it; the caller must then
/// fall back to a protocol that does not need it.
#[inline]
pub fn heavy_fence() -> bool {
    #[cfg(bsdalloc_loom)]
    {
        atomic::fence(atomic::Ordering::SeqCst);
        true
    }
    #[cfg(not(bsdalloc_loom))]
    crate::machine::heavy_fence()
}

/// Run a loom model of bsdalloc code: `loom::model` with the execution
/// generation that the shim's lazily created loom objects key on.
#[cfg(bsdalloc_loom)]
pub fn model<F>(f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut builder = loom::model::Builder::new();
    // The machine's interrupt points and spin loops are branches too.
    builder.max_branches = builder.max_branches.max(100_000);
    builder.check(move || {
        loom_shim::next_execution();
        f()
    });
}

#[cfg(bsdalloc_loom)]
mod loom_shim {
    //! Const-constructible wrappers around loom's objects (module docs of
    //! `sync`).
    //!
    //! Each wrapper creates its loom object on first use in an execution,
    //! through loom's own `lazy_static` machinery, which makes every later
    //! access, from any thread, happen after the creation (as
    //! `std::sync::Once` would): a loom object created by whichever thread
    //! touched it first would otherwise race with every other thread's
    //! access. loom keys a lazy static by its address, so each wrapper gets
    //! a `Lazy` of its own from a pool that is recycled per execution
    //! (never two live wrappers on one `Lazy`, whatever the wrappers'
    //! addresses).

    extern crate std;

    use core::cell::Cell;
    use core::fmt;
    use core::marker::PhantomData;
    use std::boxed::Box;
    use std::cell::RefCell;
    use std::vec::Vec;

    use loom::lazy_static::Lazy as LoomLazy;
    use loom::sync::atomic::Ordering;

    std::thread_local! {
        /// The execution this OS thread runs (loom runs a model's threads
        /// on the OS thread of its test; tests run in parallel).
        static EXECUTION: Cell<u64> = const { Cell::new(1) };
        /// The value the next lazy creation starts from.
        static PENDING: Cell<u64> = const { Cell::new(0) };
    }

    pub(super) fn next_execution() {
        EXECUTION.with(|e| e.set(e.get() + 1));
        LINKS.with(|m| m.borrow_mut().clear());
    }

    fn execution() -> u64 {
        EXECUTION.with(Cell::get)
    }

    /// `Lazy`s of one loom type, handed out in order and recycled when a
    /// new execution starts.
    struct Pool<X: 'static> {
        generation: u64,
        next: usize,
        all: Vec<&'static LoomLazy<X>>,
    }

    impl<X: 'static> Pool<X> {
        const fn new() -> Self {
            Pool {
                generation: 0,
                next: 0,
                all: Vec::new(),
            }
        }

        fn take(&mut self, init: fn() -> X) -> &'static LoomLazy<X> {
            let e = execution();
            if self.generation != e {
                self.generation = e;
                self.next = 0;
            }
            if self.next == self.all.len() {
                self.all.push(Box::leak(Box::new(LoomLazy {
                    init,
                    _p: PhantomData,
                })));
            }
            self.next += 1;
            self.all[self.next - 1]
        }
    }

    std::thread_local! {
        /// Which `Lazy` each live wrapper uses in this OS thread's current
        /// execution, by the address of the wrapper's slot. Statics are
        /// shared by tests that run models in parallel, so the link cannot
        /// live in the wrapper itself.
        static LINKS: RefCell<std::collections::HashMap<usize, usize>> =
            RefCell::new(std::collections::HashMap::new());
    }

    /// A wrapper's key in `LINKS`. Not zero-sized, so that no two wrappers
    /// share an address; all-zero, so that zeroed memory is a valid one.
    struct Slot<X: 'static> {
        _key: u8,
        _p: PhantomData<fn() -> X>,
    }

    impl<X: 'static> Slot<X> {
        const fn new() -> Self {
            Slot {
                _key: 0,
                _p: PhantomData,
            }
        }

        fn key(&self) -> usize {
            (self as *const Self).addr()
        }

        /// The loom object, created from `init_bits` on first use in this
        /// execution. loom runs one thread at a time and nothing here is a
        /// scheduling point before `get`, so the check-and-set is not racy.
        fn get(
            &self,
            pool: &'static std::thread::LocalKey<RefCell<Pool<X>>>,
            init: fn() -> X,
            init_bits: u64,
        ) -> &'static X {
            let key = self.key();
            let linked = LINKS.with(|m| m.borrow().get(&key).copied());
            let lazy: &'static LoomLazy<X> = match linked {
                // SAFETY: linked from a leaked pool entry of this very type
                // (the key is this slot, whose type does not change).
                Some(p) => unsafe { &*core::ptr::with_exposed_provenance::<LoomLazy<X>>(p) },
                None => {
                    let l = pool.with(|p| p.borrow_mut().take(init));
                    let p = (l as *const LoomLazy<X>).expose_provenance();
                    LINKS.with(|m| m.borrow_mut().insert(key, p));
                    l
                }
            };
            PENDING.with(|p| p.set(init_bits));
            lazy.get()
        }
    }

    impl<X: 'static> Drop for Slot<X> {
        fn drop(&mut self) {
            // A wrapper created later at this address must not inherit this
            // one's loom object.
            let key = self.key();
            let _ = LINKS.try_with(|m| m.borrow_mut().remove(&key));
        }
    }

    fn pending() -> u64 {
        PENDING.with(Cell::get)
    }

    macro_rules! atomic_int {
        ($name:ident, $t:ty, $pool:ident) => {
            std::thread_local! {
                static $pool: RefCell<Pool<loom::sync::atomic::$name>> =
                    const { RefCell::new(Pool::new()) };
            }

            /// A loom atomic with a `const fn new` (see the `sync` docs).
            pub struct $name {
                init: $t,
                slot: Slot<loom::sync::atomic::$name>,
            }

            // SAFETY: the loom atomic is Sync; the slot is std atomics.
            unsafe impl Sync for $name {}

            impl fmt::Debug for $name {
                fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    fmt::Debug::fmt(self.a(), f)
                }
            }

            impl Default for $name {
                fn default() -> Self {
                    Self::new(0 as $t)
                }
            }

            #[allow(missing_docs)]
            impl $name {
                pub const fn new(v: $t) -> Self {
                    $name {
                        init: v,
                        slot: Slot::new(),
                    }
                }
                fn a(&self) -> &loom::sync::atomic::$name {
                    fn make() -> loom::sync::atomic::$name {
                        loom::sync::atomic::$name::new(pending() as $t)
                    }
                    self.slot.get(&$pool, make, self.init as u64)
                }
                pub fn load(&self, o: Ordering) -> $t {
                    self.a().load(o)
                }
                pub fn store(&self, v: $t, o: Ordering) {
                    self.a().store(v, o)
                }
                pub fn swap(&self, v: $t, o: Ordering) -> $t {
                    self.a().swap(v, o)
                }
                pub fn compare_exchange(
                    &self,
                    c: $t,
                    n: $t,
                    s: Ordering,
                    f: Ordering,
                ) -> Result<$t, $t> {
                    self.a().compare_exchange(c, n, s, f)
                }
                pub fn compare_exchange_weak(
                    &self,
                    c: $t,
                    n: $t,
                    s: Ordering,
                    f: Ordering,
                ) -> Result<$t, $t> {
                    self.a().compare_exchange_weak(c, n, s, f)
                }
                pub fn fetch_add(&self, v: $t, o: Ordering) -> $t {
                    self.a().fetch_add(v, o)
                }
                pub fn fetch_sub(&self, v: $t, o: Ordering) -> $t {
                    self.a().fetch_sub(v, o)
                }
                pub fn fetch_or(&self, v: $t, o: Ordering) -> $t {
                    self.a().fetch_or(v, o)
                }
                pub fn fetch_and(&self, v: $t, o: Ordering) -> $t {
                    self.a().fetch_and(v, o)
                }
                pub fn fetch_max(&self, v: $t, o: Ordering) -> $t {
                    self.a().fetch_max(v, o)
                }
                pub fn fetch_min(&self, v: $t, o: Ordering) -> $t {
                    self.a().fetch_min(v, o)
                }
                pub fn into_inner(self) -> $t {
                    self.a().load(Ordering::SeqCst)
                }
            }
        };
    }

    atomic_int!(AtomicU8, u8, POOL_U8);
    atomic_int!(AtomicU16, u16, POOL_U16);
    atomic_int!(AtomicU32, u32, POOL_U32);
    atomic_int!(AtomicU64, u64, POOL_U64);
    atomic_int!(AtomicUsize, usize, POOL_USIZE);
    atomic_int!(AtomicI32, i32, POOL_I32);

    std::thread_local! {
        static POOL_BOOL: RefCell<Pool<loom::sync::atomic::AtomicBool>> =
            const { RefCell::new(Pool::new()) };
        static POOL_PTR: RefCell<Pool<loom::sync::atomic::AtomicUsize>> =
            const { RefCell::new(Pool::new()) };
        static POOL_CELL: RefCell<Pool<loom::cell::UnsafeCell<()>>> =
            const { RefCell::new(Pool::new()) };
    }

    /// A loom `AtomicBool` with a `const fn new`.
    pub struct AtomicBool {
        init: bool,
        slot: Slot<loom::sync::atomic::AtomicBool>,
    }

    // SAFETY: as for the integer atomics.
    unsafe impl Sync for AtomicBool {}

    impl fmt::Debug for AtomicBool {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            fmt::Debug::fmt(self.a(), f)
        }
    }

    #[allow(missing_docs)]
    impl AtomicBool {
        pub const fn new(v: bool) -> Self {
            AtomicBool {
                init: v,
                slot: Slot::new(),
            }
        }
        fn a(&self) -> &loom::sync::atomic::AtomicBool {
            fn make() -> loom::sync::atomic::AtomicBool {
                loom::sync::atomic::AtomicBool::new(pending() != 0)
            }
            self.slot.get(&POOL_BOOL, make, self.init as u64)
        }
        pub fn load(&self, o: Ordering) -> bool {
            self.a().load(o)
        }
        pub fn store(&self, v: bool, o: Ordering) {
            self.a().store(v, o)
        }
        pub fn swap(&self, v: bool, o: Ordering) -> bool {
            self.a().swap(v, o)
        }
        pub fn compare_exchange(
            &self,
            c: bool,
            n: bool,
            s: Ordering,
            f: Ordering,
        ) -> Result<bool, bool> {
            self.a().compare_exchange(c, n, s, f)
        }
        pub fn fetch_or(&self, v: bool, o: Ordering) -> bool {
            self.a().fetch_or(v, o)
        }
        pub fn fetch_and(&self, v: bool, o: Ordering) -> bool {
            self.a().fetch_and(v, o)
        }
    }

    /// A loom atomic pointer with a `const fn new`, kept as an address in a
    /// loom `AtomicUsize` (so any `T` works, `'static` or not).
    pub struct AtomicPtr<T> {
        init: *mut T,
        slot: Slot<loom::sync::atomic::AtomicUsize>,
    }

    // SAFETY: as for the integer atomics; the initial pointer is only
    // copied into the loom atomic.
    unsafe impl<T> Sync for AtomicPtr<T> {}
    // SAFETY: as above.
    unsafe impl<T> Send for AtomicPtr<T> {}

    impl<T> fmt::Debug for AtomicPtr<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            fmt::Debug::fmt(self.a(), f)
        }
    }

    fn to_ptr<T>(a: usize) -> *mut T {
        core::ptr::with_exposed_provenance_mut(a)
    }

    fn from_ptr<T>(p: *mut T) -> usize {
        p.expose_provenance()
    }

    #[allow(missing_docs)]
    impl<T> AtomicPtr<T> {
        pub const fn new(v: *mut T) -> Self {
            AtomicPtr {
                init: v,
                slot: Slot::new(),
            }
        }
        fn a(&self) -> &loom::sync::atomic::AtomicUsize {
            fn make() -> loom::sync::atomic::AtomicUsize {
                loom::sync::atomic::AtomicUsize::new(pending() as usize)
            }
            self.slot.get(&POOL_PTR, make, from_ptr(self.init) as u64)
        }
        pub fn load(&self, o: Ordering) -> *mut T {
            to_ptr(self.a().load(o))
        }
        pub fn store(&self, v: *mut T, o: Ordering) {
            self.a().store(from_ptr(v), o)
        }
        pub fn swap(&self, v: *mut T, o: Ordering) -> *mut T {
            to_ptr(self.a().swap(from_ptr(v), o))
        }
        pub fn compare_exchange(
            &self,
            c: *mut T,
            n: *mut T,
            s: Ordering,
            f: Ordering,
        ) -> Result<*mut T, *mut T> {
            self.a()
                .compare_exchange(from_ptr(c), from_ptr(n), s, f)
                .map(to_ptr)
                .map_err(to_ptr)
        }
        pub fn compare_exchange_weak(
            &self,
            c: *mut T,
            n: *mut T,
            s: Ordering,
            f: Ordering,
        ) -> Result<*mut T, *mut T> {
            self.a()
                .compare_exchange_weak(from_ptr(c), from_ptr(n), s, f)
                .map(to_ptr)
                .map_err(to_ptr)
        }
    }

    /// `UnsafeCell` for loom with a `const fn new`: the data lives in a plain
    /// cell, and a loom cell of `()` beside it tracks every access.
    pub struct UnsafeCell<T: ?Sized> {
        track: Slot<loom::cell::UnsafeCell<()>>,
        data: core::cell::UnsafeCell<T>,
    }

    impl<T: ?Sized> fmt::Debug for UnsafeCell<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("UnsafeCell")
        }
    }

    impl<T: Default> Default for UnsafeCell<T> {
        fn default() -> Self {
            Self::new(T::default())
        }
    }

    impl<T> UnsafeCell<T> {
        /// Wrap a value.
        pub const fn new(data: T) -> Self {
            UnsafeCell {
                track: Slot::new(),
                data: core::cell::UnsafeCell::new(data),
            }
        }

        /// Unwrap the value.
        pub fn into_inner(self) -> T {
            self.data.into_inner()
        }
    }

    impl<T: ?Sized> UnsafeCell<T> {
        fn t(&self) -> &'static loom::cell::UnsafeCell<()> {
            fn make() -> loom::cell::UnsafeCell<()> {
                loom::cell::UnsafeCell::new(())
            }
            self.track.get(&POOL_CELL, make, 0)
        }

        /// Tracked read access.
        pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            self.t().with(|_| f(self.data.get()))
        }

        /// Tracked write access.
        pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            self.t().with_mut(|_| f(self.data.get()))
        }

        /// A tracked pointer for access that outlives one closure.
        pub fn get_mut(&self) -> MutPtr<T> {
            MutPtr {
                ptr: self.data.get(),
                _track: self.t().get_mut(),
            }
        }
    }

    /// A tracked pointer handed out by [`UnsafeCell::get_mut`]: the access
    /// lasts until it is dropped.
    pub struct MutPtr<T: ?Sized> {
        ptr: *mut T,
        _track: loom::cell::MutPtr<()>,
    }

    impl<T: ?Sized> fmt::Debug for MutPtr<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("MutPtr")
        }
    }

    impl<T: ?Sized> MutPtr<T> {
        /// Dereference.
        ///
        /// # Safety
        /// The caller has exclusive access for the returned lifetime.
        #[allow(clippy::mut_from_ref)]
        pub unsafe fn deref(&self) -> &mut T {
            // SAFETY: the caller's contract.
            unsafe { &mut *self.ptr }
        }
    }
}
