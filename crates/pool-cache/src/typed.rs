//! The typed, safe layer: `PoolCache<T>` keeps constructed `T`s per CPU
//! and hands out [`CacheBox`]es that go back to the cache (still
//! constructed) when dropped.

use core::fmt;
use core::marker::PhantomData;
use core::mem::{align_of, size_of};
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;

use bsdalloc_platform::Ipl;
use bsdalloc_pool::{POOL_ALLOCATOR_META, PoolConfig, PrFlags, RawPool};

use crate::cache::{CtorFailed, ObjectCtor, ObjectDtor};
use crate::pool_cache::{PoolCacheConfig, RawPoolCache};
use crate::subsys::{pool_cache_destroy, pool_cache_init};

/// How a `T` is made when an object leaves the pool.
#[derive(Clone, Copy)]
enum Make<T> {
    Plain(fn() -> T),
    Flags(fn(PrFlags) -> Option<T>),
}

/// The typed constructor and destructor, in an item of `OPS` (the stack's
/// own memory): what the raw cache calls.
struct TypedOps<T> {
    make: Make<T>,
    dtor: Option<fn(&mut T)>,
}

const OPS_SIZE: usize = 32;

/// Typed constructor/destructor records (fn pointers only: the same size
/// for every `T`).
static OPS: RawPool = RawPool::new(
    PoolConfig::new("pctypedops", OPS_SIZE)
        .align(8)
        .allocator(&POOL_ALLOCATOR_META),
);
static OPS_INIT: bsdalloc_platform::AdaptiveMutex<()> = bsdalloc_platform::AdaptiveMutex::new(());

impl<T: Send + 'static> ObjectCtor for TypedOps<T> {
    fn construct(&self, obj: NonNull<u8>, flags: PrFlags) -> Result<(), CtorFailed> {
        let v = match self.make {
            Make::Plain(f) => f(),
            Make::Flags(f) => f(flags).ok_or(CtorFailed)?,
        };
        // SAFETY: a raw object of the cache: room and alignment for a `T`.
        unsafe { obj.cast::<T>().as_ptr().write(v) };
        Ok(())
    }
}

impl<T: Send + 'static> ObjectDtor for TypedOps<T> {
    fn destruct(&self, obj: NonNull<u8>) {
        let p = obj.cast::<T>().as_ptr();
        // SAFETY: a constructed `T` going back to the pool: nobody else
        // holds it.
        unsafe {
            if let Some(d) = self.dtor {
                d(&mut *p);
            }
            p.drop_in_place();
        }
    }
}

/// A pool cache of `T`s: each object is constructed once, when it leaves
/// the pool, and destroyed when it goes back (reclaim, invalidation,
/// drop of the cache, or a put that finds no room); in between it
/// circulates through the per-CPU groups constructed. Dropping the cache
/// destroys it; its boxes borrow it, so none is out then.
///
/// A [`CacheBox`] gives back the `T` as the last holder left it: the
/// constructor's invariant is the caller's to keep (as in C).
///
/// ```
/// use bsdalloc_platform::Ipl;
/// use bsdalloc_pool_cache::PoolCache;
///
/// struct Conn { buf: Vec<u8>, uses: u32 }
/// let conns: PoolCache<Conn> =
///     PoolCache::new("conns", Ipl::None, || Conn { buf: Vec::with_capacity(4096), uses: 0 });
/// let mut c = conns.get();
/// c.uses += 1;
/// drop(c);                       // back into this CPU's group, constructed
/// let c = conns.get();           // the same Conn: no constructor call
/// assert_eq!(c.uses, 1);
/// assert_eq!(c.buf.capacity(), 4096);
/// ```
pub struct PoolCache<T: Send + 'static> {
    raw: &'static RawPoolCache,
    ops: NonNull<TypedOps<T>>,
    _t: PhantomData<T>,
}

// SAFETY: the cache moves `T`s between threads (as a `Box` would), so
// `T: Send` suffices for both.
unsafe impl<T: Send + 'static> Send for PoolCache<T> {}
// SAFETY: as above.
unsafe impl<T: Send + 'static> Sync for PoolCache<T> {}

impl<T: Send + 'static> fmt::Debug for PoolCache<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolCache").field("raw", &self.raw).finish()
    }
}

impl<T: Send + 'static> PoolCache<T> {
    /// A cache of `T` named `name`, used from interrupts up to `ipl`,
    /// whose objects are made by `ctor`.
    ///
    /// # Panics
    /// From interrupt context; if `T` is too large for the pool.
    pub fn new(name: &'static str, ipl: Ipl, ctor: fn() -> T) -> PoolCache<T> {
        Self::build(
            PoolCacheConfig::new(name, 0).ipl(ipl),
            Make::Plain(ctor),
            None,
        )
    }

    /// A cache with `cfg`'s name, flags, level, allocator and clock (size
    /// and alignment are `T`'s), a constructor that may fail (it gets the
    /// getter's flags) and a destructor that runs before the `T` is dropped.
    pub fn with_ops(
        cfg: PoolCacheConfig,
        ctor: fn(PrFlags) -> Option<T>,
        dtor: Option<fn(&mut T)>,
    ) -> PoolCache<T> {
        Self::build(cfg, Make::Flags(ctor), dtor)
    }

    fn build(cfg: PoolCacheConfig, make: Make<T>, dtor: Option<fn(&mut T)>) -> PoolCache<T> {
        const { assert!(size_of::<TypedOps<T>>() <= OPS_SIZE && align_of::<TypedOps<T>>() <= 8) };
        {
            let _g = OPS_INIT.lock();
            if !OPS.is_initialized() {
                OPS.init();
            }
        }
        let mem = OPS
            .get(PrFlags::WAITOK)
            .expect("PoolCache: PR_WAITOK returned nothing");
        let ops = mem.cast::<TypedOps<T>>();
        // SAFETY: a fresh item of OPS_SIZE bytes, 8-aligned.
        unsafe { ops.as_ptr().write(TypedOps { make, dtor }) };
        // SAFETY: the record lives until `drop`, after the cache is gone.
        let r: &'static TypedOps<T> = unsafe { &*ops.as_ptr() };
        let mut c = cfg;
        c.size = size_of::<T>().max(1);
        c.align = align_of::<T>().max(8);
        let raw = pool_cache_init(c.ctor(r).dtor(r));
        PoolCache {
            raw,
            ops,
            _t: PhantomData,
        }
    }

    /// The raw cache underneath (statistics, tuning, invalidate, reclaim).
    pub fn raw(&self) -> &'static RawPoolCache {
        self.raw
    }

    /// A constructed `T`; waits for memory (`PR_WAITOK`).
    ///
    /// # Panics
    /// If the constructor fails (use [`try_get`](PoolCache::try_get)), or
    /// where sleeping is not allowed.
    #[inline(always)]
    pub fn get(&self) -> CacheBox<'_, T> {
        match self.try_get(PrFlags::WAITOK) {
            Some(b) => b,
            None => ctor_failed(self.raw.name()),
        }
    }

    /// A constructed `T`, or `None` (`PR_NOWAIT` without memory, or the
    /// constructor failed).
    #[inline(always)]
    pub fn try_get(&self, flags: PrFlags) -> Option<CacheBox<'_, T>> {
        let p = self.raw.get(flags)?;
        Some(CacheBox {
            cache: self,
            obj: p.cast(),
        })
    }
}

impl<T: Send + 'static> Drop for PoolCache<T> {
    fn drop(&mut self) {
        // SAFETY: no box is out (they borrow `self`); nobody else holds the
        // raw cache (it was created for `self`).
        unsafe { pool_cache_destroy(self.raw) };
        // SAFETY: an item of OPS, unused now that the cache is gone.
        unsafe { OPS.put(self.ops.cast()) };
    }
}

/// A constructed `T` from a [`PoolCache`]; dropping it puts it back
/// (constructed).
pub struct CacheBox<'a, T: Send + 'static> {
    cache: &'a PoolCache<T>,
    obj: NonNull<T>,
}

impl<T: Send + 'static> CacheBox<'_, T> {
    /// Give the object back to the pool instead of the cache: its
    /// destructor runs now (`pool_cache_destruct_object`).
    pub fn destruct(self) {
        let obj = self.obj;
        let raw = self.cache.raw;
        core::mem::forget(self);
        // SAFETY: a constructed object of this cache, ours.
        unsafe { raw.destruct_object(obj.cast()) };
    }
}

impl<T: Send + 'static> Deref for CacheBox<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a constructed `T` held only by this box.
        unsafe { self.obj.as_ref() }
    }
}

impl<T: Send + 'static> DerefMut for CacheBox<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above.
        unsafe { self.obj.as_mut() }
    }
}

impl<T: Send + fmt::Debug + 'static> fmt::Debug for CacheBox<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl<T: Send + 'static> Drop for CacheBox<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: a constructed object of this cache, no longer used.
        unsafe { self.cache.raw.put(self.obj.cast()) };
    }
}

#[cold]
#[inline(never)]
fn ctor_failed(name: &str) -> ! {
    panic!("PoolCache::get: [{name}] the constructor failed")
}

// SAFETY: the box owns its `T` (as `Box<T>`); putting it back from another
// thread is what the cache is for.
unsafe impl<T: Send + 'static> Send for CacheBox<'_, T> {}
// SAFETY: `&CacheBox` gives `&T` only.
unsafe impl<T: Send + Sync + 'static> Sync for CacheBox<'_, T> {}
