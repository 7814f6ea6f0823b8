//! The typed, safe layer: `Pool<T>` hands out [`PoolBox`]es that drop
//! their value and put the item back.

use core::fmt;
use core::marker::PhantomData;
use core::mem::{align_of, size_of};
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;

use bsdalloc_platform::Ipl;

use crate::flags::{ALIGNBYTES, PrFlags};
use crate::pool::{PoolConfig, RawPool};
use crate::registry::{pool_create, pool_destroy};

/// A pool of `T`s over a [`RawPool`] carved from the stack's own memory.
/// Dropping the pool destroys it; its boxes borrow it, so none is out then.
///
/// ```
/// use bsdalloc_pool::Pool;
/// use bsdalloc_platform::Ipl;
///
/// struct Conn { id: u32, buf: [u8; 48] }
/// let conns: Pool<Conn> = Pool::new("conns", Ipl::None);
/// let mut c = conns.get(Conn { id: 7, buf: [0; 48] });
/// c.buf[0] = 1;
/// assert_eq!(c.id, 7);
/// assert_eq!(conns.raw().stats().nout, 1);
/// drop(c); // put back
/// assert_eq!(conns.raw().stats().nout, 0);
/// ```
pub struct Pool<T> {
    raw: &'static RawPool,
    _t: PhantomData<T>,
}

// SAFETY: the pool only moves `T`s in and out (as `Box` would): sending or
// sharing it is fine when `T` may be sent.
unsafe impl<T: Send> Send for Pool<T> {}
// SAFETY: as above; `&Pool<T>` lets other threads create and drop `T`s.
unsafe impl<T: Send> Sync for Pool<T> {}

impl<T> fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool").field("raw", &self.raw).finish()
    }
}

impl<T> Pool<T> {
    /// A pool of `T` named `name`, used from interrupts up to `ipl`.
    ///
    /// # Panics
    /// If `T` does not fit in a page, or from interrupt context.
    pub fn new(name: &'static str, ipl: Ipl) -> Pool<T> {
        Self::with_config(PoolConfig::new(name, 0).ipl(ipl))
    }

    /// A pool of `T` with `cfg`'s flags, level, allocator and clock (its
    /// size and alignment are `T`'s).
    pub fn with_config(cfg: PoolConfig) -> Pool<T> {
        let cfg = cfg
            .align(align_of::<T>().max(ALIGNBYTES))
            .size_of(size_of::<T>().max(1));
        Pool {
            raw: pool_create(cfg),
            _t: PhantomData,
        }
    }

    /// The pool underneath (statistics, tuning).
    pub fn raw(&self) -> &'static RawPool {
        self.raw
    }

    /// A box holding `value`; waits for memory (`PR_WAITOK`).
    ///
    /// # Panics
    /// Where sleeping is not allowed (use [`try_get`](Pool::try_get)).
    pub fn get(&self, value: T) -> PoolBox<'_, T> {
        match self.get_flags(value, PrFlags::WAITOK) {
            Ok(b) => b,
            Err(_) => panic!("pool_get: [{}] PR_WAITOK failed", self.raw.name()),
        }
    }

    /// A box holding `value` without sleeping (`PR_NOWAIT`), or the value
    /// back.
    pub fn try_get(&self, value: T) -> Result<PoolBox<'_, T>, T> {
        self.get_flags(value, PrFlags::NOWAIT)
    }

    fn get_flags(&self, value: T, flags: PrFlags) -> Result<PoolBox<'_, T>, T> {
        let Some(p) = self.raw.get(flags) else {
            return Err(value);
        };
        let p = p.cast::<T>();
        // SAFETY: a fresh item of size_of::<T>() bytes aligned for T.
        unsafe { p.as_ptr().write(value) };
        Ok(PoolBox { pool: self, p })
    }
}

impl<T> Drop for Pool<T> {
    fn drop(&mut self) {
        // SAFETY: the descriptor came from pool_create and is not used
        // again (boxes borrow the pool, so none is alive).
        unsafe { pool_destroy(self.raw) };
    }
}

impl PoolConfig {
    pub(crate) const fn size_of(mut self, size: usize) -> Self {
        self.size = size;
        self
    }
}

/// A `T` in a pool item; dropping it drops the `T` and puts the item back.
pub struct PoolBox<'a, T> {
    pool: &'a Pool<T>,
    p: NonNull<T>,
}

// SAFETY: owns its T like Box<T>.
unsafe impl<T: Send> Send for PoolBox<'_, T> {}
// SAFETY: shared access gives only &T.
unsafe impl<T: Sync> Sync for PoolBox<'_, T> {}

impl<T> PoolBox<'_, T> {
    /// Take the value out, giving the item back.
    pub fn into_inner(self) -> T {
        let me = core::mem::ManuallyDrop::new(self);
        // SAFETY: the value is initialised; the item goes back right after
        // and the box is not dropped.
        unsafe {
            let v = me.p.as_ptr().read();
            me.pool.raw.put(me.p.cast());
            v
        }
    }
}

impl<T> Deref for PoolBox<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: initialised by get, owned by this box.
        unsafe { self.p.as_ref() }
    }
}

impl<T> DerefMut for PoolBox<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above, uniquely.
        unsafe { self.p.as_mut() }
    }
}

impl<T: fmt::Debug> fmt::Debug for PoolBox<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T> Drop for PoolBox<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the value is initialised and owned; the item came from
        // this pool's get.
        unsafe {
            self.p.as_ptr().drop_in_place();
            self.pool.raw.put(self.p.cast());
        }
    }
}
