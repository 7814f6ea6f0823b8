//! The synchronisation shim: every atomic, cell and spin hint in bsdalloc comes
//! from here.
//!
//! In a normal build these are `core`'s types. Under `--cfg bsdalloc_loom`
//! they are [loom]'s, so that the model checker sees every access the
//! allocators make. The cfg is project specific so that no dependency ever
//! switches along with us (the trick crossbeam and tokio use).
//!
//! Beside the types, [`interrupt_point`] marks the places where an
//! asynchronous interrupt may be taken. In a real build it compiles to
//! nothing: interrupts arrive whenever the hardware (or, in user space, the
//! signal) says so. Under loom it polls the current model CPU for posted
//! interrupts, so the checker delivers interrupts between every pair of
//! shim operations it explores.
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
    pub use loom::sync::atomic::{
        AtomicBool, AtomicI32, AtomicPtr, AtomicU8, AtomicU16, AtomicU32, AtomicU64, AtomicUsize,
        Ordering, fence,
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
    pub use loom::cell::{MutPtr, UnsafeCell};

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

/// Spin-wait hint. Under loom, a yield so the checker can schedule the thread
/// being waited for.
#[inline(always)]
pub fn spin_loop() {
    #[cfg(not(bsdalloc_loom))]
    core::hint::spin_loop();
    #[cfg(bsdalloc_loom)]
    loom::thread::yield_now();
}

/// A place where an asynchronous interrupt may be taken (see the module docs).
#[inline(always)]
pub fn interrupt_point() {
    #[cfg(bsdalloc_loom)]
    crate::machine::loom_interrupt_point();
}
