//! Levels, spin mutexes, wait channels and their misuse.
#![cfg(not(bsdalloc_loom))]

use bsdalloc_platform::{
    AdaptiveMutex, Delivery, Ipl, KMutex, LockRank, SpinMutex, WaitChannel, assert_sleepable,
    curcpu, curipl, in_interrupt, intr_establish, intr_trigger, splhigh, splraise, splvm, splx,
};

#[test]
fn splraise_and_splx_nest() {
    assert_eq!(curipl(), Ipl::None);
    let a = splvm();
    assert_eq!(curipl(), Ipl::Vm);
    let b = splraise(Ipl::SoftNet); // lower than current: no change
    assert_eq!(curipl(), Ipl::Vm);
    assert_eq!(b.ipl(), Ipl::Vm);
    let c = splhigh();
    assert_eq!(curipl(), Ipl::High);
    splx(c);
    splx(b);
    assert_eq!(curipl(), Ipl::Vm);
    splx(a);
    assert_eq!(curipl(), Ipl::None);
}

#[test]
#[should_panic(expected = "splx: raising IPL from IPL_NONE to IPL_HIGH")]
fn splx_above_current_level_panics() {
    let s = splhigh();
    let t = splraise(Ipl::High); // saved level IPL_HIGH
    splx(s); // back to NONE
    splx(t); // "restoring" HIGH from NONE is a raise
}

#[test]
fn spin_mutex_raises_and_restores_in_any_order() {
    let a = SpinMutex::<u32>::new(Ipl::Vm, 0);
    let b = SpinMutex::<u32>::new(Ipl::High, 0);
    let ga = a.lock();
    assert_eq!(curipl(), Ipl::Vm);
    assert!(a.owned());
    let gb = b.lock();
    assert_eq!(curipl(), Ipl::High);
    drop(ga); // released out of order: the level stays up while b is held
    assert_eq!(curipl(), Ipl::High);
    assert!(!a.owned());
    drop(gb);
    assert_eq!(curipl(), Ipl::None);
    assert!(a.try_lock().is_some());
    let g = b.lock();
    assert!(b.try_lock().is_none(), "try_lock of a held mutex must fail");
    drop(g);
    assert_eq!(curipl(), Ipl::None);
}

#[test]
#[should_panic(expected = "locking against myself")]
fn recursive_spin_lock_panics() {
    let m = SpinMutex::<()>::new(Ipl::Vm, ());
    let _g = m.lock();
    let _h = m.lock();
}

#[test]
#[should_panic(expected = "spin mutex released at IPL_NONE, below its level IPL_VM")]
fn unlocking_at_the_wrong_level_panics() {
    let m = SpinMutex::<()>::new(Ipl::Vm, ());
    let low = splraise(Ipl::None); // a token for IPL_NONE
    let g = m.lock();
    splx(low); // wrongly lowers the level while the mutex is held
    drop(g);
}

#[test]
#[should_panic(expected = "cv_wait: sleeping on \"test\" with 1 spin mutex(es) held at IPL_VM")]
fn sleeping_with_a_spin_mutex_held_panics() {
    let outer = SpinMutex::<()>::new(Ipl::Vm, ());
    let inner = SpinMutex::<()>::new(Ipl::Vm, ());
    let cv = WaitChannel::new("test");
    let _o = outer.lock();
    let g = inner.lock();
    let _g = cv.wait(g);
}

#[test]
#[should_panic(expected = "cv_wait: sleeping at IPL_SCHED")]
fn sleeping_at_raised_level_panics() {
    let _s = splraise(Ipl::Sched);
    assert_sleepable("cv_wait");
}

#[test]
#[should_panic(expected = "mutex_vector_enter: adaptive mutex acquired with a spin mutex held")]
fn adaptive_mutex_under_spin_mutex_panics() {
    let s = SpinMutex::<()>::new(Ipl::Vm, ());
    let a = AdaptiveMutex::new(());
    let _g = s.lock();
    let _h = a.lock();
}

// Interrupts triggered on the current CPU while its level blocks them run
// from `splx` on this thread's ordinary stack, so a panic inside a handler
// unwinds into the test like any other.

// The kind travels as the handler's argument: the tests run in parallel.
fn forbidden_in_interrupt(kind: &'static u32) {
    assert!(in_interrupt());
    match *kind {
        0 => {
            let cv = WaitChannel::new("intr");
            let m = SpinMutex::<()>::new(Ipl::High, ());
            let g = m.lock();
            let _g = cv.wait(g);
        }
        1 => {
            let m = AdaptiveMutex::new(());
            let _g = m.lock();
        }
        2 => {
            let m = SpinMutex::<()>::new(Ipl::None, ());
            let _g = m.lock();
        }
        _ => assert_sleepable("kmem_alloc(KM_SLEEP)"),
    }
}

fn fire_forbidden(kind: u32) {
    const KINDS: [u32; 4] = [0, 1, 2, 3];
    let src = intr_establish(Ipl::Vm, forbidden_in_interrupt, &KINDS[kind as usize]).unwrap();
    let s = splvm();
    assert_eq!(intr_trigger(curcpu(), src), Delivery::Delivered);
    splx(s); // the handler runs here and panics
}

#[test]
#[should_panic(expected = "cv_wait: sleeping in interrupt context on \"intr\"")]
fn sleeping_in_interrupt_panics() {
    fire_forbidden(0);
}

#[test]
#[should_panic(expected = "adaptive mutex acquired from interrupt context")]
fn adaptive_mutex_in_interrupt_panics() {
    fire_forbidden(1);
}

#[test]
#[should_panic(expected = "IPL_NONE spin mutex acquired from interrupt context")]
fn ipl_none_lock_in_interrupt_panics() {
    fire_forbidden(2);
}

#[test]
#[should_panic(expected = "kmem_alloc(KM_SLEEP): sleeping in interrupt context")]
fn kernel_only_operation_in_interrupt_panics() {
    fire_forbidden(3);
}

#[test]
fn wait_channel_sleeps_until_broadcast() {
    static M: SpinMutex<u32> = SpinMutex::new(Ipl::Vm, 0);
    static CV: WaitChannel = WaitChannel::new("resource");
    let sleepers: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(|| {
                let mut g = M.lock();
                while *g == 0 {
                    g = CV.wait(g);
                }
                *g -= 1;
            })
        })
        .collect();
    while CV.waiters() < 3 {
        std::thread::yield_now();
    }
    *M.lock() += 3;
    CV.broadcast();
    for t in sleepers {
        t.join().unwrap();
    }
    assert_eq!(*M.lock(), 0);
    assert_eq!(CV.waiters(), 0);
}

#[test]
fn wait_channel_signal_wakes_one_at_a_time() {
    static M: AdaptiveMutex<u32> = AdaptiveMutex::new(0);
    static CV: WaitChannel = WaitChannel::new("one");
    let t: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(|| {
                let mut g = M.lock();
                while *g == 0 {
                    g = CV.wait(g);
                }
                *g -= 1;
            })
        })
        .collect();
    for _ in 0..2 {
        while CV.waiters() == 0 && t.iter().any(|h| !h.is_finished()) {
            std::thread::yield_now();
        }
        *M.lock() += 1;
        CV.signal();
    }
    for h in t {
        h.join().unwrap();
    }
    assert_eq!(*M.lock(), 0);
}

#[test]
fn ranked_locks_in_order_are_accepted() {
    let pool = SpinMutex::ranked(Ipl::Vm, LockRank::Pool, 0u32);
    let arena = KMutex::ranked(Ipl::Vm, LockRank::Arena, 0u32);
    let supply = SpinMutex::ranked(Ipl::High, LockRank::Registry, 0u32);
    let _p = pool.lock();
    let _a = arena.lock();
    let _s = supply.lock();
}

#[test]
#[cfg_attr(
    debug_assertions,
    should_panic(
        expected = "lock order violation: taking a pool lock with a vmem arena lock held"
    )
)]
fn ranked_locks_out_of_order_panic_in_debug_builds() {
    let arena = SpinMutex::ranked(Ipl::Vm, LockRank::Arena, 0u32);
    let pool = SpinMutex::ranked(Ipl::Vm, LockRank::Pool, 0u32);
    let _a = arena.lock();
    let _p = pool.lock();
}

#[test]
fn an_interrupt_handler_is_a_lock_order_context_of_its_own() {
    // A handler above the interrupted locks' level may take a lock that
    // ranks before them: they cannot deadlock, the interrupted code is
    // suspended below the handler's level.
    static INNER: SpinMutex<u32> = SpinMutex::ranked(Ipl::SoftNet, LockRank::Registry, 0);
    static OUTER: SpinMutex<u32> = SpinMutex::ranked(Ipl::Vm, LockRank::Pool, 0);
    fn handler(_: &'static ()) {
        *OUTER.lock() += 1;
    }
    let src = intr_establish(Ipl::Vm, handler as fn(&'static ()), &()).unwrap();
    {
        let _g = INNER.lock();
        assert_eq!(intr_trigger(curcpu(), src), Delivery::Delivered);
    }
    assert_eq!(*OUTER.lock(), 1);
}

bsdalloc_platform::cpu_local! { static SECTION_AFTER_LOCK: CpuLocal<u32> = 0; }

#[test]
#[cfg_attr(
    debug_assertions,
    should_panic(
        expected = "lock order violation: a CPU-local section entered with a vmem arena lock held"
    )
)]
fn a_cpu_local_section_under_an_allocator_lock_panics_in_debug_builds() {
    let arena = KMutex::ranked(Ipl::Vm, LockRank::Arena, 0u32);
    let _a = arena.lock();
    SECTION_AFTER_LOCK.with(|n| *n += 1);
}
