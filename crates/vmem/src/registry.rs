//! The global arena list (NetBSD's `vmem_list`): registration, and
//! [`for_each_arena`], which pins the arenas it visits so that their
//! destroy waits for the walk, with no lock held while the caller's closure
//! runs.

use core::ptr;

use bsdalloc_platform::sync::atomic::Ordering;
use bsdalloc_platform::{Ipl, LockRank, SpinMutex};

use crate::arena::Arena;

/// The global arena list: registered arenas, newest first.
struct List {
    head: *const Arena,
    /// The serial number the next registered arena gets.
    next_serial: u64,
}
// SAFETY: the list holds only `&'static Arena`s, which are Sync.
unsafe impl Send for List {}

static ARENAS: SpinMutex<List> = SpinMutex::ranked(
    Ipl::High,
    LockRank::Registry,
    List {
        head: ptr::null(),
        next_serial: 0,
    },
);

impl Arena {
    /// Put the arena on the global list (for `vmem_whatis`,
    /// `vmem_printall` and `vmem_rehash_all`). Done by `vmem_init` and
    /// `vmem_create`; call it for other `'static` arenas.
    ///
    /// # Panics
    /// On a destroyed arena.
    #[track_caller]
    pub fn register(&'static self) {
        self.assert_alive();
        let mut l = ARENAS.lock();
        if self.registered.swap(true, Ordering::AcqRel) {
            return;
        }
        self.serial.store(l.next_serial, Ordering::Relaxed);
        l.next_serial += 1;
        self.next.store(l.head.cast_mut(), Ordering::Relaxed);
        l.head = self;
    }
}

pub(crate) fn unregister(a: &Arena) {
    let mut l = ARENAS.lock();
    if !a.registered.swap(false, Ordering::AcqRel) {
        return;
    }
    let me = ptr::from_ref(a);
    if l.head == me {
        l.head = a.next.load(Ordering::Relaxed);
        return;
    }
    let mut p = l.head;
    while !p.is_null() {
        // SAFETY: list members are registered arenas, alive while listed.
        let pa = unsafe { &*p };
        let n = pa.next.load(Ordering::Relaxed);
        if core::ptr::eq(n, me) {
            pa.next
                .store(a.next.load(Ordering::Relaxed), Ordering::Relaxed);
            return;
        }
        p = n;
    }
}

/// Arenas of one `for_each_arena` batch, pinned; whatever is still pinned
/// is unpinned on drop, so a panicking callback cannot leave an arena's
/// destroy waiting forever.
struct Pinned {
    arenas: [*const Arena; WALK_BATCH],
    /// `arenas[done..n]` are still pinned.
    done: usize,
    n: usize,
}

const WALK_BATCH: usize = 64;

fn unpin(a: &Arena) {
    // Under the arena lock, so that `destroy`, which checks the count
    // under it before sleeping, cannot miss the wakeup.
    let g = a.lock.lock();
    let left = a.walkers.fetch_sub(1, Ordering::Relaxed) - 1;
    drop(g);
    if left == 0 {
        a.cv.broadcast();
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        while self.done < self.n {
            let a = self.arenas[self.done];
            self.done += 1;
            // SAFETY: still pinned: its destroy waits for us.
            unpin(unsafe { &*a });
        }
    }
}

/// Call `f` on every registered arena.
///
/// Every arena registered for the whole walk is visited exactly once; one
/// registered or destroyed meanwhile may or may not be. `f` runs with no
/// vmem lock held.
///
/// Arenas are pinned in batches of up to 64 while the walk runs over them:
/// a destroy of a pinned arena waits until `f` returned for it. So `f` must
/// not destroy a registered arena (that could wait on its own walk).
pub fn for_each_arena(mut f: impl FnMut(&Arena)) {
    // Collect a batch under the list lock, pinning each arena, then call `f`
    // without it: `f` may take arena locks, which rank below the list, and
    // may run unknown code. The list is in descending serial order, so the
    // next batch starts below the last serial visited, whatever was
    // registered at the head or destroyed meanwhile.
    let mut below = u64::MAX;
    loop {
        let mut pins = Pinned {
            arenas: [ptr::null(); WALK_BATCH],
            done: 0,
            n: 0,
        };
        {
            let l = ARENAS.lock();
            let mut p = l.head;
            while !p.is_null() && pins.n < WALK_BATCH {
                // SAFETY: listed arenas are alive: destroy unregisters (under
                // this lock) before it tears anything down.
                let a = unsafe { &*p };
                let serial = a.serial.load(Ordering::Relaxed);
                if serial < below {
                    a.walkers.fetch_add(1, Ordering::Relaxed);
                    pins.arenas[pins.n] = p;
                    pins.n += 1;
                    below = serial;
                }
                p = a.next.load(Ordering::Relaxed);
            }
        }
        let full = pins.n == WALK_BATCH;
        while pins.done < pins.n {
            let p = pins.arenas[pins.done];
            // SAFETY: pinned: its destroy waits until we unpin.
            let a = unsafe { &*p };
            f(a);
            pins.done += 1;
            unpin(a);
        }
        if !full {
            return;
        }
    }
}

/// `vmem_rehash_start`'s periodic work: resize every registered arena's
/// busy hash. Call it every few seconds from a maintenance thread.
pub fn vmem_rehash_all() {
    for_each_arena(|a| a.rehash());
}
