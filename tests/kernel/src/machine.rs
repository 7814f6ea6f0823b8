//! The test kernel's machine: what a kernel's MD code gives the platform
//! through [`Machine`].
//!
//! CPUs are Linux threads, each bound for its whole life to one CPU record
//! in a static array (`cpu_info`); `current_cpu` reads the binding from a
//! thread-local index, as a kernel reads `curcpu()` from a per-CPU
//! register. An IPI sets the target's pending flag and rings its doorbell:
//! the CPU takes it (calls [`bsdalloc_platform::hardintr`]) at its next
//! *interrupt point* — wherever it polls ([`take_ipi`]), in its idle loop,
//! and while it sleeps. That is the one liberty taken with hardware, where
//! an IPI arrives between any two instructions: the platform's own
//! deferral (an interrupt whose level is blocked stays pending until
//! `splx`) is what the test relies on, and it works the same either way.
//!
//! Sleep and wakeup are futexes on the word itself, with a one-tick
//! timeout so that a sleeping CPU still takes IPIs (a real CPU takes them
//! on the idle thread while the sleeper is off it).

use core::cell::Cell;

use bsdalloc_platform::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use bsdalloc_platform::{CpuState, Machine, set_machine};

/// CPUs of the test kernel.
pub(crate) const NCPU: usize = 4;

/// How long a sleeping CPU goes without looking for IPIs (a clock tick).
const TICK_NS: libc::c_long = 1_000_000;

/// The per-CPU records (`cpu_info[i].ci_bsdalloc`).
static CPUS: [CpuState; NCPU] = [
    CpuState::with_index(0),
    CpuState::with_index(1),
    CpuState::with_index(2),
    CpuState::with_index(3),
];

/// CPUs online: they come up in index order, each before it is used.
static ONLINE: AtomicU32 = AtomicU32::new(0);
/// An IPI is pending for the CPU.
static IPI: [AtomicBool; NCPU] = [const { AtomicBool::new(false) }; NCPU];
/// Bumped (and futex-woken) to wake an idle CPU: by IPIs and commands.
static DOORBELL: [AtomicU32; NCPU] = [const { AtomicU32::new(0) }; NCPU];

thread_local! {
    /// The CPU this thread is; `u32::MAX` for a thread that is not a CPU.
    /// A const-initialised `Cell<u32>` lives in the thread's static TLS
    /// block: no allocation, no destructor registration.
    static THIS_CPU: Cell<u32> = const { Cell::new(u32::MAX) };
}

/// Counters of the machine's services: the report, and the proof that the
/// platform really called them (it does only on its kernel backend).
pub(crate) struct MachineStats {
    pub(crate) current_cpu_calls: AtomicU64,
    pub(crate) ipis_sent: AtomicU64,
    pub(crate) ipis_taken: AtomicU64,
    pub(crate) sleeps: [AtomicU64; NCPU],
    pub(crate) wakeups: AtomicU64,
}

pub(crate) static STATS: MachineStats = MachineStats {
    current_cpu_calls: AtomicU64::new(0),
    ipis_sent: AtomicU64::new(0),
    ipis_taken: AtomicU64::new(0),
    sleeps: [const { AtomicU64::new(0) }; NCPU],
    wakeups: AtomicU64::new(0),
};

/// The CPU the calling thread is.
///
/// # Panics
/// On a thread that is not a CPU (a harness bug).
pub(crate) fn this_cpu() -> usize {
    let i = THIS_CPU.get() as usize;
    if i >= NCPU {
        not_a_cpu();
    }
    i
}

/// The CPU the calling thread is, if it is one.
pub(crate) fn try_this_cpu() -> Option<usize> {
    let i = THIS_CPU.get() as usize;
    (i < NCPU).then_some(i)
}

#[cold]
#[inline(never)]
fn not_a_cpu() -> ! {
    panic!("test kernel: a thread that is not a CPU called into the machine")
}

/// Make the calling thread CPU `cpu` and bring that CPU online. CPUs come
/// up in index order: `ncpu` counts them, and cross-calls go to each.
pub(crate) fn cpu_up(cpu: usize) {
    assert!(cpu < NCPU, "test kernel: no CPU {cpu}");
    assert_eq!(
        ONLINE.load(Ordering::Acquire) as usize,
        cpu,
        "test kernel: CPUs come up in order"
    );
    THIS_CPU.set(cpu as u32);
    ONLINE.store(cpu as u32 + 1, Ordering::Release);
}

/// CPUs online now.
pub(crate) fn online() -> usize {
    ONLINE.load(Ordering::Acquire) as usize
}

/// An interrupt point: take a pending IPI.
#[inline]
pub(crate) fn take_ipi() {
    let me = this_cpu();
    if IPI[me].load(Ordering::Relaxed) && IPI[me].swap(false, Ordering::Acquire) {
        STATS.ipis_taken.fetch_add(1, Ordering::Relaxed);
        bsdalloc_platform::hardintr();
    }
}

/// A spin-wait step: an interrupt point, and the host CPU to whoever
/// needs it (the harness runs more CPUs than the host may have).
pub(crate) fn relax() {
    take_ipi();
    std::thread::yield_now();
}

/// Wake CPU `cpu` if it is idle.
pub(crate) fn ring(cpu: usize) {
    DOORBELL[cpu].fetch_add(1, Ordering::Release);
    futex_wake(&DOORBELL[cpu], 1);
}

/// The idle loop: take IPIs until `done()`.
pub(crate) fn idle_until(done: impl Fn() -> bool) {
    let me = this_cpu();
    loop {
        take_ipi();
        if done() {
            return;
        }
        // Read the doorbell before the last look: a ring after this read
        // changes the word, and the futex wait returns at once.
        let bell = DOORBELL[me].load(Ordering::Acquire);
        if IPI[me].load(Ordering::Acquire) || done() {
            continue;
        }
        futex_wait(&DOORBELL[me], bell, Some(100 * TICK_NS));
    }
}

fn futex_wait(word: &AtomicU32, expected: u32, timeout_ns: Option<libc::c_long>) {
    let ts = timeout_ns.map(|ns| libc::timespec {
        tv_sec: 0,
        tv_nsec: ns,
    });
    let tsp = ts
        .as_ref()
        .map_or(core::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: FUTEX_WAIT reads the live word and sleeps while it equals
    // `expected`, at most `ts`; it writes nothing. Any return (woken,
    // timed out, EAGAIN, EINTR) is a legal, possibly spurious, wakeup.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            tsp,
        );
    }
}

fn futex_wake(word: &AtomicU32, count: u32) {
    let n = count.min(i32::MAX as u32) as libc::c_int;
    // SAFETY: FUTEX_WAKE only uses the address as a key; the word is live.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            n,
        );
    }
}

/// The test kernel's machine.
pub(crate) struct TestMachine;

// SAFETY: `current_cpu` returns the record of the CPU the thread is bound
// to, for the thread's whole life (threads never migrate between records);
// `cpu(i)` returns `CPUS[i]`, built `with_index(i)`; `send_ipi` makes the
// target call `hardintr` at its next interrupt point, which every CPU
// reaches promptly (its work polls, its idle loop is woken by the doorbell,
// its sleeps time out each tick); `sleep` is a futex wait on the word while
// it equals `expected`, and `wakeup` a futex wake on it.
unsafe impl Machine for TestMachine {
    fn current_cpu() -> &'static CpuState {
        STATS.current_cpu_calls.fetch_add(1, Ordering::Relaxed);
        &CPUS[this_cpu()]
    }

    fn cpu(index: u32) -> Option<&'static CpuState> {
        let i = index as usize;
        (i < online()).then(|| &CPUS[i])
    }

    fn ncpu() -> u32 {
        ONLINE.load(Ordering::Acquire)
    }

    fn send_ipi(index: u32) {
        let i = index as usize;
        STATS.ipis_sent.fetch_add(1, Ordering::Relaxed);
        IPI[i].store(true, Ordering::Release);
        ring(i);
    }

    fn sleep(word: &AtomicU32, expected: u32) {
        let me = this_cpu();
        STATS.sleeps[me].fetch_add(1, Ordering::Relaxed);
        take_ipi();
        futex_wait(word, expected, Some(TICK_NS));
        take_ipi();
    }

    fn wakeup(word: &AtomicU32, count: u32) {
        STATS.wakeups.fetch_add(1, Ordering::Relaxed);
        futex_wake(word, count);
    }
}

set_machine!(TestMachine);

/// The record of CPU `cpu` (for the report and the interrupt checks).
pub(crate) fn cpu_state(cpu: usize) -> &'static CpuState {
    &CPUS[cpu]
}
