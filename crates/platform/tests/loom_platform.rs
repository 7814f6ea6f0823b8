//! loom models of the machine (run with `cargo xtask loom`).
//!
//! Interrupts in the model: a posted interrupt is taken at any interrupt
//! point of the target CPU whose level lets it through (every `splraise`,
//! lock acquisition, spin iteration and release, plus the points the model
//! code marks), so loom explores delivery at each of them.
//!
//! Each model has a deliberately broken variant that loom must catch.
#![cfg(bsdalloc_loom)]

use std::sync::atomic::AtomicBool as StdAtomicBool;

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use bsdalloc_platform::sync::interrupt_point;
use bsdalloc_platform::{
    CpuState, IntrTable, Ipl, SpinMutex, XCALL_IPL, hardintr, model, splraise, splx,
};

/// Model (a): an IPL_VM spin mutex used by CPU 0, by an IPL_VM interrupt
/// handler on CPU 0, and by CPU 1.
struct MutexModel {
    lock: SpinMutex<u32>,
    handler_done: AtomicBool,
    failure: &'static StdAtomicBool,
}

/// Set when some explored execution went wrong. Failures are recorded and
/// reported after `loom::model` returns: unwinding through live guards
/// inside a model would touch loom state that is already torn down.
/// One flag per test: the tests run in parallel.
static MUTEX_OK_FAILURE: StdAtomicBool = StdAtomicBool::new(false);
static MUTEX_BROKEN_FAILURE: StdAtomicBool = StdAtomicBool::new(false);
static XCALL_OK_FAILURE: StdAtomicBool = StdAtomicBool::new(false);
static XCALL_BROKEN_FAILURE: StdAtomicBool = StdAtomicBool::new(false);

fn mutex_handler(arg: usize) {
    // SAFETY: `arg` points at the model's shared state, alive until every
    // model thread has been joined.
    let m = unsafe { &*(arg as *const MutexModel) };
    // On CPU 0, `lock` panics with "locking against myself" if the
    // interrupted code holds the lock: the deadlock a late spl raise causes.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.lock.lock())) {
        Ok(mut g) => *g += 1,
        Err(_) => m.failure.store(true, std::sync::atomic::Ordering::SeqCst),
    }
    m.handler_done.store(true, Ordering::Release);
}

fn mutex_model(raise_spl: bool, failure: &'static StdAtomicBool) {
    loom::model(move || {
        let table = Arc::new(IntrTable::new());
        let shared = Arc::new(MutexModel {
            lock: SpinMutex::new(Ipl::Vm, 0),
            handler_done: AtomicBool::new(false),
            failure,
        });
        let src = table
            .establish(Ipl::Vm, mutex_handler, Arc::as_ptr(&shared) as usize)
            .unwrap();
        let cpu0 = Arc::new(CpuState::with_index(0));
        let cpu1 = Arc::new(CpuState::with_index(1));
        // This thread is the device that raises the interrupt, and a CPU
        // of its own for the final check.
        model::enter_cpu(Arc::new(CpuState::with_index(2)), table.clone());

        let t0 = {
            let (table, shared, cpu0) = (table.clone(), shared.clone(), cpu0.clone());
            loom::thread::spawn(move || {
                model::enter_cpu(cpu0, table);
                {
                    let mut g = if raise_spl {
                        shared.lock.lock()
                    } else {
                        shared.lock.lock_raising_late_for_model()
                    };
                    *g += 1;
                    interrupt_point();
                }
                // Idle until the device has raised the interrupt and it ran.
                while !shared.handler_done.load(Ordering::Acquire) {
                    hardintr();
                    loom::thread::yield_now();
                }
            })
        };
        let t1 = {
            let (table, shared, cpu1) = (table.clone(), shared.clone(), cpu1.clone());
            loom::thread::spawn(move || {
                model::enter_cpu(cpu1, table);
                *shared.lock.lock() += 1;
            })
        };
        // The device: raise the interrupt on CPU 0.
        cpu0.post(src);
        t0.join().unwrap();
        t1.join().unwrap();

        let total = *shared.lock.lock();
        let ok = table.runs(src) == 1
            && cpu0.curipl() == Ipl::None
            && cpu0.mutex_count() == 0
            && cpu1.curipl() == Ipl::None
            && (total == 3 || failure.load(std::sync::atomic::Ordering::SeqCst));
        if !ok {
            failure.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    });
    assert!(
        !failure.load(std::sync::atomic::Ordering::SeqCst),
        "locking against myself: an interrupt handler found its CPU holding the lock"
    );
}

#[test]
fn ipl_spin_mutex_with_interrupt_and_second_cpu() {
    mutex_model(true, &MUTEX_OK_FAILURE);
}

#[test]
#[should_panic(expected = "locking against myself")]
fn broken_spin_mutex_raising_spl_late_is_caught() {
    mutex_model(false, &MUTEX_BROKEN_FAILURE);
}

/// Model (b): CPU 0 pushes objects into its CPU-local magazine on the fast
/// path; CPU 1 cross-calls CPU 0 to drain the magazine into a depot.
struct Magazine {
    slots: UnsafeCell<[u32; 4]>,
    count: UnsafeCell<usize>,
}

struct XcallModel {
    mag: Magazine,
    depot: SpinMutex<([u32; 8], usize)>,
    done: AtomicU32,
}

// SAFETY: the magazine is only touched by CPU 0, on its fast path or in its
// own interrupt handler; that is the property the model checks.
unsafe impl Sync for XcallModel {}
// SAFETY: as above.
unsafe impl Send for XcallModel {}

fn drain_handler(arg: usize) {
    // SAFETY: see `mutex_handler`.
    let m = unsafe { &*(arg as *const XcallModel) };
    drain(m);
    m.done.store(1, Ordering::Release);
}

fn drain(m: &XcallModel) {
    let n = m.mag.count.with(|c| unsafe { *c });
    let mut depot = m.depot.lock();
    for i in 0..n {
        let obj = m.mag.slots.with(|s| unsafe { (*s)[i] });
        let k = depot.1;
        depot.0[k] = obj;
        depot.1 += 1;
    }
    m.mag.count.with_mut(|c| unsafe { *c = 0 });
}

fn push(m: &XcallModel, obj: u32, raise_spl: bool) {
    let s = if raise_spl {
        Some(splraise(XCALL_IPL))
    } else {
        None
    };
    let n = m.mag.count.with(|c| unsafe { *c });
    interrupt_point();
    m.mag.slots.with_mut(|sl| unsafe { (*sl)[n] = obj });
    interrupt_point();
    m.mag.count.with_mut(|c| unsafe { *c = n + 1 });
    interrupt_point();
    if let Some(s) = s {
        splx(s);
    }
}

fn xcall_model(raise_spl: bool, failure: &'static StdAtomicBool) {
    loom::model(move || {
        let table = Arc::new(IntrTable::new());
        let shared = Arc::new(XcallModel {
            mag: Magazine {
                slots: UnsafeCell::new([0; 4]),
                count: UnsafeCell::new(0),
            },
            depot: SpinMutex::new(Ipl::Vm, ([0; 8], 0)),
            done: AtomicU32::new(0),
        });
        let src = table
            .establish(XCALL_IPL, drain_handler, Arc::as_ptr(&shared) as usize)
            .unwrap();
        let cpu0 = Arc::new(CpuState::with_index(0));

        let t0 = {
            let (table, shared, cpu0) = (table.clone(), shared.clone(), cpu0.clone());
            loom::thread::spawn(move || {
                model::enter_cpu(cpu0, table);
                push(&shared, 1, raise_spl);
                push(&shared, 2, raise_spl);
                while shared.done.load(Ordering::Acquire) == 0 {
                    hardintr();
                    loom::thread::yield_now();
                }
                // Whatever arrived after the cross-call goes to the depot too.
                let s = splraise(XCALL_IPL);
                drain(&shared);
                splx(s);
            })
        };
        // CPU 1 (this thread): the cross-call.
        model::enter_cpu(Arc::new(CpuState::with_index(1)), table.clone());
        cpu0.post(src);
        while shared.done.load(Ordering::Acquire) == 0 {
            loom::thread::yield_now();
        }
        t0.join().unwrap();

        let mut got: Vec<u32> = {
            let depot = shared.depot.lock();
            depot.0[..depot.1].to_vec()
        };
        got.sort_unstable();
        if got != [1, 2] {
            failure.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    });
    assert!(
        !failure.load(std::sync::atomic::Ordering::SeqCst),
        "every object reaches the depot exactly once: an execution lost or duplicated one"
    );
}

#[test]
fn xcall_drain_racing_cpu_local_fast_path() {
    xcall_model(true, &XCALL_OK_FAILURE);
}

#[test]
#[should_panic(expected = "every object reaches the depot exactly once")]
fn broken_fast_path_without_spl_raise_is_caught() {
    xcall_model(false, &XCALL_BROKEN_FAILURE);
}
