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

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::ptr::NonNull;

use bsdalloc_platform::sync::{interrupt_point, model as loom_model};
use bsdalloc_platform::{
    CpuId, CpuState, IntrTable, Ipl, PageError, PageSource, PageStats, PerCpu, Protection,
    SpinMutex, hardintr, model,
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

fn mutex_handler(m: &'static MutexModel) {
    // On CPU 0, `lock` panics with "locking against myself" if the
    // interrupted code holds the lock: the deadlock a late spl raise causes.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.lock.lock())) {
        Ok(mut g) => *g += 1,
        Err(_) => m.failure.store(true, std::sync::atomic::Ordering::SeqCst),
    }
    m.handler_done.store(true, Ordering::Release);
}

fn mutex_model(raise_spl: bool, failure: &'static StdAtomicBool) {
    loom_model(move || {
        let table = Arc::new(IntrTable::new());
        // The handler's argument is `&'static`: each explored execution
        // leaks its own model state (a few bytes).
        let shared: &'static MutexModel = Box::leak(Box::new(MutexModel {
            lock: SpinMutex::new(Ipl::Vm, 0),
            handler_done: AtomicBool::new(false),
            failure,
        }));
        let src = table.establish(Ipl::Vm, mutex_handler, shared).unwrap();
        let cpu0 = Arc::new(CpuState::with_index(0));
        let cpu1 = Arc::new(CpuState::with_index(1));
        // This thread is the device that raises the interrupt, and a CPU
        // of its own for the final check.
        model::enter_cpu(Arc::new(CpuState::with_index(2)), table.clone());

        let t0 = {
            let (table, cpu0) = (table.clone(), cpu0.clone());
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
            let (table, cpu1) = (table.clone(), cpu1.clone());
            loom::thread::spawn(move || {
                model::enter_cpu(cpu1, table);
                *shared.lock.lock() += 1;
            })
        };
        // The device: raise the interrupt on CPU 0.
        cpu0.post(src.number());
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

/// Model (b): a source re-established, with another argument type and
/// level, while CPU 0 takes its interrupt. The two argument types share a
/// prefix (`repr(C)`: magic, failure flag), so that a handler handed the
/// other type's argument reads a wrong magic instead of undefined bytes.
#[repr(C)]
struct VmArg {
    magic: u64,
    failure: &'static StdAtomicBool,
    runs: AtomicU32,
}

#[repr(C)]
struct SchedArg {
    magic: u64,
    failure: &'static StdAtomicBool,
    level: Ipl,
    runs: AtomicU32,
}

const VM_MAGIC: u64 = 0x0056_4d56_4d56_4d56;
const SCHED_MAGIC: u64 = 0x0053_4353_4353_4353;

static REESTABLISH_OK_FAILURE: StdAtomicBool = StdAtomicBool::new(false);
static REESTABLISH_BROKEN_FAILURE: StdAtomicBool = StdAtomicBool::new(false);

fn vm_arg_handler(a: &'static VmArg) {
    if a.magic != VM_MAGIC || bsdalloc_platform::curipl() != Ipl::Vm {
        a.failure.store(true, std::sync::atomic::Ordering::SeqCst);
        return;
    }
    a.runs.fetch_add(1, Ordering::Relaxed);
}

fn sched_arg_handler(a: &'static SchedArg) {
    if a.magic != SCHED_MAGIC || bsdalloc_platform::curipl() != a.level {
        a.failure.store(true, std::sync::atomic::Ordering::SeqCst);
        return;
    }
    a.runs.fetch_add(1, Ordering::Relaxed);
}

fn reestablish_model(ordered: bool, failure: &'static StdAtomicBool) {
    loom_model(move || {
        let table = Arc::new(IntrTable::new());
        let vm: &'static VmArg = Box::leak(Box::new(VmArg {
            magic: VM_MAGIC,
            failure,
            runs: AtomicU32::new(0),
        }));
        let sched: &'static SchedArg = Box::leak(Box::new(SchedArg {
            magic: SCHED_MAGIC,
            failure,
            level: Ipl::Sched,
            runs: AtomicU32::new(0),
        }));
        let src = table.establish(Ipl::Vm, vm_arg_handler, vm).unwrap();
        let cpu0 = Arc::new(CpuState::with_index(0));
        let t0 = {
            let (table, cpu0) = (table.clone(), cpu0.clone());
            loom::thread::spawn(move || {
                model::enter_cpu(cpu0.clone(), table);
                cpu0.post(src.number());
                hardintr();
            })
        };
        // This thread is CPU 1, re-establishing the source meanwhile.
        model::enter_cpu(Arc::new(CpuState::with_index(1)), table.clone());
        table.disestablish(src);
        let again = if ordered {
            table.establish(Ipl::Sched, sched_arg_handler, sched)
        } else {
            table.establish_unordered_for_model(Ipl::Sched, sched_arg_handler, sched)
        }
        .unwrap();
        t0.join().unwrap();
        // The same line, a new establishment; the interrupt ran at most
        // once, with one establishment's handler, argument and level.
        let runs = vm.runs.load(Ordering::Relaxed) + sched.runs.load(Ordering::Relaxed);
        if again.number() != src.number() || again == src || runs > 1 {
            failure.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    });
    assert!(
        !failure.load(std::sync::atomic::Ordering::SeqCst),
        "a handler ran with another establishment's argument or level"
    );
}

#[test]
fn reestablishing_a_source_while_its_interrupt_runs_pairs_handler_and_argument() {
    reestablish_model(true, &REESTABLISH_OK_FAILURE);
}

#[test]
#[should_panic(expected = "another establishment's argument or level")]
fn broken_establish_publishing_ready_first_is_caught() {
    reestablish_model(false, &REESTABLISH_BROKEN_FAILURE);
}

/// Pages for per-CPU storage in the models: zeroed heap memory (the models
/// run on std; the stack's own page sources are not under test here).
struct HeapPages;

// SAFETY: every reservation is a fresh zeroed heap block, freed on release.
unsafe impl PageSource for HeapPages {
    fn page_size(&self) -> usize {
        4096
    }
    fn reserve(&self, len: usize, _align: usize) -> Result<NonNull<u8>, PageError> {
        let layout = std::alloc::Layout::from_size_align(len, 4096).unwrap();
        // SAFETY: non-zero size.
        NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).ok_or(PageError::Injected)
    }
    unsafe fn commit(
        &self,
        _addr: NonNull<u8>,
        _len: usize,
        _wire: bool,
    ) -> Result<bsdalloc_platform::Committed, PageError> {
        Ok(bsdalloc_platform::Committed { wired: false })
    }
    unsafe fn decommit(&self, _addr: NonNull<u8>, _len: usize) {}
    unsafe fn protect(
        &self,
        _addr: NonNull<u8>,
        _len: usize,
        _prot: Protection,
    ) -> Result<(), PageError> {
        Ok(())
    }
    unsafe fn release(&self, addr: NonNull<u8>, len: usize) {
        let layout = std::alloc::Layout::from_size_align(len, 4096).unwrap();
        // SAFETY: allocated by `reserve` with this layout.
        unsafe { std::alloc::dealloc(addr.as_ptr(), layout) }
    }
    fn stats(&self) -> PageStats {
        PageStats::default()
    }
}

static HEAP_PAGES: HeapPages = HeapPages;

/// A CPU-local magazine of up to 4 objects.
#[derive(Clone, Copy, bytemuck::Zeroable)]
struct Magazine {
    objs: [u32; 4],
    n: usize,
}

struct XcallModel {
    mags: PerCpu<Magazine>,
    depot: SpinMutex<([u32; 8], usize)>,
    done: AtomicU32,
}

fn drain(depot: &SpinMutex<([u32; 8], usize)>, m: &mut Magazine) {
    let mut d = depot.lock();
    for &obj in &m.objs[..m.n] {
        let k = d.1;
        d.0[k] = obj;
        d.1 += 1;
    }
    m.n = 0;
}

/// Push on the fast path: inside a CPU-local section (the real code), or,
/// broken, straight into CPU 0's element with no section at all.
fn push(m: &XcallModel, obj: u32, section: bool) {
    let put = |mag: &mut Magazine| {
        let n = mag.n;
        interrupt_point();
        mag.objs[n] = obj;
        interrupt_point();
        mag.n = n + 1;
    };
    if section {
        m.mags.with(put);
    } else {
        // SAFETY: none: this is the bug the model must catch.
        unsafe {
            m.mags
                .__element_for_model(CpuId(0))
                .with_mut(|p| put(&mut *p))
        };
    }
}

/// Model (b): CPU 0 pushes objects into its magazine on the fast path; CPU
/// 1 drains every CPU's magazine into the depot with `PerCpu::with_cpu`,
/// which goes through the real cross-call code: posted to CPU 0 if it is
/// inside a section, run on its behalf (gate plus asymmetric fence) if not.
fn xcall_model(section: bool, failure: &'static StdAtomicBool) {
    loom_model(move || {
        let table = Arc::new(IntrTable::new());
        let shared = Arc::new(XcallModel {
            mags: PerCpu::new(&HEAP_PAGES).unwrap(),
            depot: SpinMutex::new(Ipl::Vm, ([0; 8], 0)),
            done: AtomicU32::new(0),
        });
        let cpu0 = Arc::new(CpuState::with_index(0));

        let t0 = {
            let (table, shared, cpu0) = (table.clone(), shared.clone(), cpu0.clone());
            loom::thread::spawn(move || {
                model::enter_cpu(cpu0, table);
                push(&shared, 1, section);
                push(&shared, 2, section);
                // Stay a CPU, taking interrupts, until the drain is over.
                while shared.done.load(Ordering::Acquire) == 0 {
                    hardintr();
                    loom::thread::yield_now();
                }
                // Whatever arrived after the drain goes to the depot too.
                shared.mags.with(|m| drain(&shared.depot, m));
                model::exit_cpu();
            })
        };
        // CPU 1 (this thread): the cross-call.
        model::enter_cpu(Arc::new(CpuState::with_index(1)), table.clone());
        shared.mags.with_cpu(CpuId(0), |m| drain(&shared.depot, m));
        shared.done.store(1, Ordering::Release);
        t0.join().unwrap();

        let mut got: Vec<u32> = {
            let depot = shared.depot.lock();
            depot.0[..depot.1].to_vec()
        };
        got.sort_unstable();
        if got != [1, 2] {
            failure.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        model::exit_cpu();
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

/// Run the `#[ignore]`d model `child` in a child process and require loom to
/// reject it with `needle`: loom's own panic cannot unwind through a model
/// safely (it aborts), so the broken variants run where that is harmless.
fn expect_rejected(child: &str, needle: &str) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            child,
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ])
        .output()
        .expect("re-run the test binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains(needle),
        "loom accepted the broken model {child} (status {:?}):\n{stderr}",
        out.status
    );
}

#[test]
#[ignore = "a broken model, run by broken_fast_path_without_a_section_is_caught"]
fn broken_fast_path_child() {
    xcall_model(false, &XCALL_BROKEN_FAILURE);
}

#[test]
fn broken_fast_path_without_a_section_is_caught() {
    expect_rejected("broken_fast_path_child", "Causality violation");
}

static GUEST_FAILURE: StdAtomicBool = StdAtomicBool::new(false);

/// Model (c): a thread beyond the exclusive slots counts in its shared
/// slot's element on the locked path, while another CPU drains the shared
/// slot by cross-call (served on the slot's behalf, under the same lock).
#[test]
fn guest_on_a_shared_slot_and_a_cross_call() {
    guest_model(true);
}

#[test]
#[ignore = "a broken model, run by broken_guest_outside_a_section_is_caught"]
fn broken_guest_child() {
    guest_model(false);
}

#[test]
fn broken_guest_outside_a_section_is_caught() {
    expect_rejected("broken_guest_child", "Causality violation");
}

fn guest_model(section: bool) {
    loom_model(move || {
        let table = Arc::new(IntrTable::new());
        let counts: Arc<PerCpu<u64>> = Arc::new(PerCpu::new(&HEAP_PAGES).unwrap());
        let guest = {
            let (table, counts) = (table.clone(), counts.clone());
            loom::thread::spawn(move || {
                model::enter_guest(Arc::new(CpuState::new()), table);
                let inc = |n: &mut u64| {
                    let v = *n;
                    interrupt_point();
                    *n = v + 1;
                };
                if section {
                    counts.with(inc);
                } else {
                    let shared = CpuId(bsdalloc_platform::MAXCPUS as u32 - 1);
                    // SAFETY: none: the unlocked access the model must catch.
                    unsafe {
                        counts
                            .__element_for_model(shared)
                            .with_mut(|p| inc(&mut *p))
                    };
                }
                model::exit_cpu();
            })
        };
        model::enter_cpu(Arc::new(CpuState::with_index(0)), table.clone());
        let shared = CpuId(bsdalloc_platform::MAXCPUS as u32 - 1);
        let drained = AtomicU32::new(0);
        counts.with_cpu(shared, |n| {
            drained.fetch_add(*n as u32, Ordering::Relaxed);
            *n = 0;
        });
        guest.join().unwrap();
        counts.with_cpu(shared, |n| {
            drained.fetch_add(*n as u32, Ordering::Relaxed);
        });
        if drained.load(Ordering::Relaxed) != 1 {
            GUEST_FAILURE.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        model::exit_cpu();
    });
    assert!(
        !GUEST_FAILURE.load(std::sync::atomic::Ordering::SeqCst),
        "an increment on the shared slot was lost or counted twice"
    );
}

static EXIT_FAILURE: StdAtomicBool = StdAtomicBool::new(false);

/// The counters the exit-hook model drains, reachable from its hook.
static EXIT_COUNTS: bsdalloc_platform::sync::atomic::AtomicPtr<PerCpu<u64>> =
    bsdalloc_platform::sync::atomic::AtomicPtr::new(std::ptr::null_mut());
static EXIT_TOTAL: bsdalloc_platform::sync::atomic::AtomicU64 =
    bsdalloc_platform::sync::atomic::AtomicU64::new(0);

struct DrainOnExit;

impl bsdalloc_platform::CpuExitHook for DrainOnExit {
    fn cpu_exit(&self, _cpu: CpuId) {
        let p = EXIT_COUNTS.load(Ordering::Acquire);
        if p.is_null() {
            return;
        }
        // SAFETY: the model keeps the counters alive until every CPU has
        // left.
        let counts = unsafe { &*p };
        // Still this CPU: a section works here, as for a pool cache giving
        // its groups back.
        let n = counts.with(core::mem::take);
        EXIT_TOTAL.fetch_add(n, Ordering::Relaxed);
    }
}

static DRAIN_ON_EXIT: DrainOnExit = DrainOnExit;
static EXIT_HOOK: bsdalloc_platform::ExitHook = bsdalloc_platform::ExitHook::new(&DRAIN_ON_EXIT);

/// Model (e): a CPU counts in per-CPU storage and leaves; its exit hook
/// gives the count back, while another CPU drains every CPU by cross-call.
/// Nothing is lost or counted twice.
#[test]
fn exit_hook_gives_a_leaving_cpus_state_back_racing_a_drain() {
    loom_model(|| {
        let table = Arc::new(IntrTable::new());
        let counts: Arc<PerCpu<u64>> = Arc::new(PerCpu::new(&HEAP_PAGES).unwrap());
        EXIT_COUNTS.store(Arc::as_ptr(&counts).cast_mut(), Ordering::Release);
        model::enter_cpu(Arc::new(CpuState::with_index(1)), table.clone());
        bsdalloc_platform::cpu_exit_hook_register(&EXIT_HOOK);
        let t0 = {
            let (table, counts) = (table.clone(), counts.clone());
            loom::thread::spawn(move || {
                model::enter_cpu(Arc::new(CpuState::with_index(0)), table);
                counts.with(|n| *n += 1);
                counts.with(|n| *n += 2);
                model::exit_cpu();
            })
        };
        let drained = AtomicU32::new(0);
        counts.with_cpu(CpuId(0), |n| {
            drained.fetch_add(core::mem::take(n) as u32, Ordering::Relaxed);
        });
        t0.join().unwrap();
        let total = EXIT_TOTAL.load(Ordering::Relaxed) + u64::from(drained.load(Ordering::Relaxed));
        if total != 3 {
            EXIT_FAILURE.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        bsdalloc_platform::cpu_exit_hook_unregister(&EXIT_HOOK);
        EXIT_COUNTS.store(std::ptr::null_mut(), Ordering::Release);
        model::exit_cpu();
    });
    assert!(
        !EXIT_FAILURE.load(std::sync::atomic::Ordering::SeqCst),
        "a count was lost or given back twice between the exit hook and the drain"
    );
}
