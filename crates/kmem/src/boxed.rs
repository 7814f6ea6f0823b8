//! Safe sized handles: a value or a slice in kmem memory that frees itself
//! with exactly the size it was allocated with.

use core::fmt;
use core::marker::PhantomData;
use core::mem::{align_of, size_of};
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;

use crate::api::kmem;
use crate::flags::{KM_SLEEP, KmFlags};
use crate::kmem::Kmem;

fn request(k: &Kmem, size: usize, align: usize) -> Option<usize> {
    k.layout_size(size, align)
}

impl Kmem {
    /// The size to allocate (and free) so that `size` bytes come
    /// `align`-aligned — what a `Layout` maps to: the size itself if its
    /// class is aligned enough, else the size raised to the cache line,
    /// else to the page. `None` for an alignment above the page (or not a
    /// power of two) or a size that can never be allocated. Size 0 counts
    /// as 1.
    ///
    /// ```
    /// use bsdalloc_kmem::kmem;
    ///
    /// let k = kmem();
    /// assert_eq!(k.layout_size(24, 8), Some(24));
    /// let s = k.layout_size(24, 64).unwrap(); // 64 without debug features
    /// assert!(s >= 24 && k.alignment_of(s).unwrap() >= 64);
    /// assert_eq!(k.layout_size(100, k.page_size()), Some(k.page_size()));
    /// assert_eq!(k.layout_size(8, 2 * k.page_size()), None);
    /// ```
    pub fn layout_size(&self, size: usize, align: usize) -> Option<usize> {
        if !align.is_power_of_two() {
            return None;
        }
        let size = size.max(1);
        let cu = self.size_classes().coherency_unit();
        let ps = self.page_size();
        [size, size.max(cu), size.max(ps)]
            .into_iter()
            .find(|&s| self.alignment_of(s).is_some_and(|a| a >= align))
    }
}

#[cold]
#[track_caller]
fn unsupported(size: usize, align: usize) -> ! {
    panic!("kmem: no allocation of {size} bytes aligned to {align} is possible")
}

/// A `T` in kmem memory (`kmem_alloc(sizeof(T))`), freed with the same size
/// when dropped. Zero-sized types take no memory.
///
/// ```
/// use bsdalloc_kmem::KmemBox;
///
/// #[repr(align(64))]
/// struct Line([u8; 64]);
/// let b = KmemBox::new(Line([3; 64]));
/// assert_eq!(b.0[63], 3);
/// assert_eq!((&*b as *const Line).addr() % 64, 0);
/// ```
pub struct KmemBox<T> {
    ptr: NonNull<T>,
    kmem: &'static Kmem,
    _own: PhantomData<T>,
}

// SAFETY: a unique owner of its T, like Box<T>.
unsafe impl<T: Send> Send for KmemBox<T> {}
// SAFETY: shared access is `&T`.
unsafe impl<T: Sync> Sync for KmemBox<T> {}

impl<T> KmemBox<T> {
    /// `value` in memory of the default instance (`KM_SLEEP`).
    ///
    /// # Panics
    /// From interrupt context; for a type aligned above the page.
    #[track_caller]
    pub fn new(value: T) -> KmemBox<T> {
        match KmemBox::try_new_in(kmem(), value, KM_SLEEP) {
            Ok(b) => b,
            Err(_) => unreachable!("KM_SLEEP never fails"),
        }
    }

    /// `value` in memory of `kmem`; with `KM_NOSLEEP` the value comes back
    /// if there is no memory.
    ///
    /// # Panics
    /// As [`Kmem::alloc`]; for a type aligned above the page.
    #[track_caller]
    pub fn try_new_in(kmem: &'static Kmem, value: T, flags: KmFlags) -> Result<KmemBox<T>, T> {
        if size_of::<T>() == 0 {
            // Nothing to store for a ZST: its dangling pointer is aligned
            // and valid for it.
            let ptr = NonNull::dangling();
            core::mem::forget(value);
            return Ok(KmemBox {
                ptr,
                kmem,
                _own: PhantomData,
            });
        }
        let Some(req) = request(kmem, size_of::<T>(), align_of::<T>()) else {
            unsupported(size_of::<T>(), align_of::<T>());
        };
        let Some(p) = kmem.alloc(req, flags) else {
            return Err(value);
        };
        let ptr = p.cast::<T>();
        // SAFETY: `req ≥ size_of::<T>()` fresh bytes, aligned for T (the
        // class alignment of `req` is at least `align_of::<T>()`).
        unsafe { ptr.as_ptr().write(value) };
        Ok(KmemBox {
            ptr,
            kmem,
            _own: PhantomData,
        })
    }

    /// The value, moved out; the memory is freed.
    pub fn into_inner(self) -> T {
        let b = core::mem::ManuallyDrop::new(self);
        // SAFETY: the box owns an initialised T, read once; the memory is
        // freed right after without dropping it again.
        let v = unsafe { b.ptr.as_ptr().read() };
        // SAFETY: our allocation, with the size it was made with.
        unsafe { free_raw(b.kmem, b.ptr.cast(), size_of::<T>(), align_of::<T>()) };
        v
    }
}

/// Free `size` bytes aligned `align` allocated through `request`.
///
/// # Safety
/// `p` came from `kmem.alloc(request(kmem, size, align))`, unused after.
unsafe fn free_raw(kmem: &Kmem, p: NonNull<u8>, size: usize, align: usize) {
    if size == 0 {
        return;
    }
    let req = request(kmem, size, align).expect("a size that was allocated");
    // SAFETY: the caller's contract.
    unsafe { kmem.free(p.as_ptr(), req) };
}

impl<T> Deref for KmemBox<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: an initialised T we own.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> DerefMut for KmemBox<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: an initialised T we own uniquely.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T> Drop for KmemBox<T> {
    fn drop(&mut self) {
        // SAFETY: an initialised T we own, dropped once; then its memory,
        // with its allocation size.
        unsafe {
            self.ptr.as_ptr().drop_in_place();
            free_raw(self.kmem, self.ptr.cast(), size_of::<T>(), align_of::<T>());
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for KmemBox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// `len` values of `T` in kmem memory, freed with `len × size_of::<T>()`
/// when dropped.
///
/// ```
/// use bsdalloc_kmem::KmemSlice;
///
/// let s = KmemSlice::from_fn(1000, |i| i as u32 * 2);
/// assert_eq!(s[999], 1998);
/// let z = KmemSlice::zeroed_bytes(5000); // two pages from kva
/// assert!(z.iter().all(|&b| b == 0));
/// ```
pub struct KmemSlice<T> {
    ptr: NonNull<T>,
    len: usize,
    kmem: &'static Kmem,
    _own: PhantomData<T>,
}

// SAFETY: a unique owner of its elements, like Box<[T]>.
unsafe impl<T: Send> Send for KmemSlice<T> {}
// SAFETY: shared access is `&[T]`.
unsafe impl<T: Sync> Sync for KmemSlice<T> {}

impl<T> KmemSlice<T> {
    /// `len` elements `f(0)`, `f(1)`, … in memory of the default instance
    /// (`KM_SLEEP`).
    ///
    /// # Panics
    /// If `len × size_of::<T>()` overflows or can never be allocated; as
    /// [`Kmem::alloc`]; if `f` panics (what it made is dropped and freed).
    #[track_caller]
    pub fn from_fn(len: usize, f: impl FnMut(usize) -> T) -> KmemSlice<T> {
        match KmemSlice::from_fn_in(kmem(), len, KM_SLEEP, f) {
            Some(s) => s,
            None => panic!(
                "kmem: a slice of {len} × {} bytes can never be allocated",
                size_of::<T>()
            ),
        }
    }

    /// As [`from_fn`](KmemSlice::from_fn) in `kmem` with `flags`: `None`
    /// if `KM_NOSLEEP` found no memory, or if the size overflows.
    ///
    /// # Panics
    /// As [`Kmem::alloc`], except for sizes that overflow; if `f` panics.
    #[track_caller]
    pub fn from_fn_in(
        kmem: &'static Kmem,
        len: usize,
        flags: KmFlags,
        mut f: impl FnMut(usize) -> T,
    ) -> Option<KmemSlice<T>> {
        let bytes = len.checked_mul(size_of::<T>())?;
        let ptr = if bytes == 0 {
            NonNull::dangling()
        } else {
            let req = request(kmem, bytes, align_of::<T>())?;
            if flags == KM_SLEEP {
                // A KM_SLEEP size beyond the arena fails here rather than
                // in `alloc`'s panic: it is the caller's size, not a bug.
                kmem.allocated_size(req)?;
            }
            kmem.alloc(req, flags)?.cast::<T>()
        };
        /// Drops the elements made so far and frees, if `f` panics.
        struct Partial<'a, T> {
            s: &'a KmemSlice<T>,
            done: usize,
        }
        impl<T> Drop for Partial<'_, T> {
            fn drop(&mut self) {
                // SAFETY: the first `done` elements are initialised and
                // ours; then the allocation, with its size.
                unsafe {
                    core::ptr::slice_from_raw_parts_mut(self.s.ptr.as_ptr(), self.done)
                        .drop_in_place();
                    free_raw(
                        self.s.kmem,
                        self.s.ptr.cast(),
                        self.s.len * size_of::<T>(),
                        align_of::<T>(),
                    );
                }
            }
        }
        let s = core::mem::ManuallyDrop::new(KmemSlice {
            ptr,
            len,
            kmem,
            _own: PhantomData,
        });
        let mut partial = Partial { s: &s, done: 0 };
        for i in 0..len {
            // SAFETY: element `i` of the allocation, not yet written.
            unsafe { ptr.as_ptr().add(i).write(f(i)) };
            partial.done = i + 1;
        }
        core::mem::forget(partial);
        Some(core::mem::ManuallyDrop::into_inner(s))
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<T: Clone> KmemSlice<T> {
    /// A copy of `src` in memory of the default instance (`KM_SLEEP`).
    ///
    /// # Panics
    /// As [`KmemSlice::from_fn`].
    #[track_caller]
    pub fn from_slice(src: &[T]) -> KmemSlice<T> {
        KmemSlice::from_fn(src.len(), |i| src[i].clone())
    }
}

impl KmemSlice<u8> {
    /// `len` zero bytes (`kmem_zalloc`) of the default instance.
    ///
    /// # Panics
    /// As [`KmemSlice::from_fn`].
    #[track_caller]
    pub fn zeroed_bytes(len: usize) -> KmemSlice<u8> {
        let kmem = kmem();
        let ptr = if len == 0 {
            NonNull::dangling()
        } else {
            if kmem.allocated_size(len).is_none() {
                panic!("kmem: a slice of {len} bytes can never be allocated");
            }
            match kmem.zalloc(len, KM_SLEEP) {
                Some(p) => p,
                None => unreachable!("KM_SLEEP never fails"),
            }
        };
        KmemSlice {
            ptr,
            len,
            kmem,
            _own: PhantomData,
        }
    }
}

impl<T> Deref for KmemSlice<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `len` initialised elements we own.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> DerefMut for KmemSlice<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: `len` initialised elements we own uniquely.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> Drop for KmemSlice<T> {
    fn drop(&mut self) {
        // SAFETY: the elements are initialised and ours, dropped once; then
        // the allocation with its size (`len × size` did not overflow when
        // it was made).
        unsafe {
            core::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len).drop_in_place();
            free_raw(
                self.kmem,
                self.ptr.cast(),
                self.len * size_of::<T>(),
                align_of::<T>(),
            );
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for KmemSlice<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
