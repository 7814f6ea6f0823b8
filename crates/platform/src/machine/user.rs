//! The user-space machine (Linux).
//!
//! **CPUs are threads.** A thread becomes a CPU the first time it asks for
//! its index: it claims a free slot in a static table of [`MAXCPUS`] slots
//! (the slow path, once per thread) and remembers the index in its
//! thread-local [`CpuState`]. From then on a CPU-local access is a
//! thread-local load: no atomic read-modify-write, no fence. At thread exit a
//! `pthread_key` destructor (which runs after Rust's own thread-local
//! destructors and allocates nothing) runs the exit hooks, so caches can give
//! the slot's objects back, drains interrupts still pending, and frees the
//! slot for the next thread.
//!
//! **Interrupts are signals.** Posting source `n` to CPU `i` sets bit `n` in
//! that CPU's pending word (`fetch_or`) and sends it a real-time signal with
//! `tgkill`, under the slot's lock so that the thread cannot exit and its id
//! be reused in between. The signal handler runs `CpuState::dispatch` on the
//! interrupted thread: sources above its current level run at once, the rest
//! stay pending until `splx` lowers the level. Handlers nest
//! (`SA_NODEFER`), and preserve `errno`.
//!
//! **Sleep is a futex** on the wait channel's sequence word.

use core::ffi::{c_int, c_void};
use std::thread_local;

use super::Post;
use crate::ipl::{CpuState, IntrTable, Ipl, Spl};
use crate::mutex::{RawMutex, RawSpinLock};
use crate::sync::atomic::{AtomicI32, AtomicPtr, AtomicU8, AtomicU32, AtomicUsize, Ordering};

/// The most threads that can be CPUs at once.
pub(crate) const MAXCPUS: usize = 512;

thread_local! {
    static CPU: CpuState = const { CpuState::new() };
}

pub(crate) static TABLE: IntrTable = IntrTable::new();

const FREE: u32 = 0;
const ACTIVE: u32 = 1;
const EXITING: u32 = 2;
const BORROWED: u32 = 3;

struct Slot {
    state: AtomicU32,
    lock: RawSpinLock,
    tid: AtomicI32,
    cpu: AtomicPtr<CpuState>,
}

static SLOTS: [Slot; MAXCPUS] = [const {
    Slot {
        state: AtomicU32::new(FREE),
        lock: RawSpinLock::new(),
        tid: AtomicI32::new(0),
        cpu: AtomicPtr::new(core::ptr::null_mut()),
    }
}; MAXCPUS];

static HWM: AtomicUsize = AtomicUsize::new(0);
static ACTIVE_COUNT: AtomicUsize = AtomicUsize::new(0);

#[inline(always)]
pub(crate) fn with_cpu<R>(f: impl FnOnce(&CpuState) -> R) -> R {
    CPU.with(f)
}

#[inline(always)]
pub(crate) fn with_intr_table<R>(f: impl FnOnce(&IntrTable) -> R) -> R {
    f(&TABLE)
}

#[inline]
pub(crate) fn cpu_index() -> u32 {
    CPU.with(|c| match c.index() {
        Some(i) => i,
        None => register(c),
    })
}

pub(crate) fn ncpu() -> usize {
    HWM.load(Ordering::Relaxed).max(1)
}

pub(crate) fn active_cpus() -> usize {
    ACTIVE_COUNT.load(Ordering::Relaxed)
}

fn slot_lock(slot: &Slot) -> Spl {
    // IPL_HIGH: interrupt handlers post interrupts too, and must not find
    // the slot lock held by the code they interrupted.
    let s = CPU.with(|c| c.splraise(Ipl::High));
    slot.lock.lock();
    s
}

fn slot_unlock(slot: &Slot, s: Spl) {
    // SAFETY: paired with `slot_lock` by every caller.
    unsafe { slot.lock.unlock() };
    CPU.with(|c| c.splx(s, &TABLE));
}

#[cold]
#[inline(never)]
fn register(c: &CpuState) -> u32 {
    init_once();
    for (i, slot) in SLOTS.iter().enumerate() {
        if slot.state.load(Ordering::Relaxed) != FREE {
            continue;
        }
        let s = slot_lock(slot);
        let won = slot.state.load(Ordering::Relaxed) == FREE;
        if won {
            slot.state.store(ACTIVE, Ordering::Relaxed);
            // SAFETY: gettid has no preconditions.
            slot.tid.store(unsafe { libc::gettid() }, Ordering::Relaxed);
            slot.cpu
                .store(c as *const CpuState as *mut CpuState, Ordering::Relaxed);
        }
        slot_unlock(slot, s);
        if won {
            let index = i as u32;
            c.set_index(Some(index));
            HWM.fetch_max(i + 1, Ordering::Relaxed);
            ACTIVE_COUNT.fetch_add(1, Ordering::Relaxed);
            // SAFETY: KEY was created by init_once; the value is a non-null
            // integer token, never dereferenced.
            let rc = unsafe {
                libc::pthread_setspecific(KEY.load(Ordering::Acquire), (i + 1) as *const c_void)
            };
            assert_eq!(rc, 0, "pthread_setspecific failed: {rc}");
            return index;
        }
    }
    panic!(
        "bsdalloc-platform: more than {MAXCPUS} threads are CPUs at once; \
         each thread that uses the allocators takes one CPU slot"
    );
}

static INIT: AtomicU8 = AtomicU8::new(0);
static KEY: AtomicU32 = AtomicU32::new(0);

fn init_once() {
    if INIT.load(Ordering::Acquire) == 2 {
        return;
    }
    if INIT
        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: `key` is a valid out-pointer; the destructor has the
        // signature pthread expects.
        let rc = unsafe { libc::pthread_key_create(&mut key, Some(slot_exit)) };
        assert_eq!(rc, 0, "pthread_key_create failed: {rc}");
        KEY.store(key, Ordering::Release);
        install_signal_handler();
        INIT.store(2, Ordering::Release);
    } else {
        while INIT.load(Ordering::Acquire) != 2 {
            core::hint::spin_loop();
        }
    }
}

/// The signal that carries interrupts: `SIGRTMIN + 4`.
pub(crate) fn interrupt_signal() -> c_int {
    libc::SIGRTMIN() + 4
}

fn install_signal_handler() {
    // SAFETY: a zeroed sigaction is a valid starting value; the handler is
    // an `extern "C" fn(c_int)` as sa_sigaction expects without SA_SIGINFO.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = on_interrupt as extern "C" fn(c_int) as usize;
        sa.sa_flags = libc::SA_RESTART | libc::SA_NODEFER;
        libc::sigemptyset(&mut sa.sa_mask);
        let rc = libc::sigaction(interrupt_signal(), &sa, core::ptr::null_mut());
        assert_eq!(rc, 0, "sigaction for the interrupt signal failed");
    }
}

extern "C" fn on_interrupt(_sig: c_int) {
    // SAFETY: __errno_location returns this thread's errno slot.
    let errno = unsafe { *libc::__errno_location() };
    CPU.with(|c| c.dispatch(&TABLE));
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// The pthread-key destructor: the thread is exiting.
unsafe extern "C" fn slot_exit(value: *mut c_void) {
    let i = value as usize - 1;
    crate::cpu::run_exit_hooks(crate::cpu::CpuId(i as u32));
    CPU.with(|c| {
        let slot = &SLOTS[i];
        let s = slot_lock(slot);
        slot.state.store(EXITING, Ordering::Relaxed);
        // SAFETY: taken just above; the level stays at IPL_HIGH.
        unsafe { slot.lock.unlock() };
        // Nothing can be posted any more; run what was, at the level the
        // thread had.
        c.splx(s, &TABLE);
        let s = slot_lock(slot);
        slot.state.store(FREE, Ordering::Relaxed);
        slot.tid.store(0, Ordering::Relaxed);
        slot.cpu.store(core::ptr::null_mut(), Ordering::Relaxed);
        slot_unlock(slot, s);
        c.set_index(None);
        ACTIVE_COUNT.fetch_sub(1, Ordering::Relaxed);
    });
}

pub(crate) fn post_interrupt(cpu: u32, source: usize) -> Post {
    let Some(slot) = SLOTS.get(cpu as usize) else {
        return Post::Absent;
    };
    let s = slot_lock(slot);
    let result = if slot.state.load(Ordering::Relaxed) == ACTIVE {
        let target = slot.cpu.load(Ordering::Relaxed);
        // SAFETY: an ACTIVE slot's CpuState is the owning thread's
        // thread-local, alive until the thread's exit path marks the slot
        // EXITING under this lock.
        let target = unsafe { &*target };
        if target.post(source) {
            let me = CPU.with(|c| core::ptr::eq(c, target));
            if !me {
                // SAFETY: plain syscall; the tid is alive while the slot is
                // ACTIVE and we hold its lock.
                let rc = unsafe {
                    libc::syscall(
                        libc::SYS_tgkill,
                        libc::getpid(),
                        slot.tid.load(Ordering::Relaxed),
                        interrupt_signal(),
                    )
                };
                assert_eq!(rc, 0, "tgkill to CPU {cpu} failed");
            }
            Post::Delivered
        } else {
            Post::Coalesced
        }
    } else {
        Post::Absent
    };
    // Unlocking lowers the level: a self-posted interrupt runs here.
    slot_unlock(slot, s);
    result
}

/// Run `f` on behalf of CPU `cpu`, which no thread owns. Returns `false`
/// (without running `f`) if a thread owns it, so the caller should post.
pub(crate) fn run_on_absent(cpu: u32, f: &mut dyn FnMut()) -> bool {
    let Some(slot) = SLOTS.get(cpu as usize) else {
        f();
        return true;
    };
    loop {
        let s = slot_lock(slot);
        match slot.state.load(Ordering::Relaxed) {
            FREE => {
                slot.state.store(BORROWED, Ordering::Relaxed);
                slot_unlock(slot, s);
                f();
                let s = slot_lock(slot);
                slot.state.store(FREE, Ordering::Relaxed);
                slot_unlock(slot, s);
                return true;
            }
            ACTIVE => {
                slot_unlock(slot, s);
                return false;
            }
            _ => {
                // EXITING or BORROWED: wait for it to settle.
                slot_unlock(slot, s);
                std::thread::yield_now();
            }
        }
    }
}

pub(crate) fn xcall_interrupt() {
    crate::cpu::xcall_interrupt();
}

const FUTEX_WAIT_PRIVATE: c_int = libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG;
const FUTEX_WAKE_PRIVATE: c_int = libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG;

pub(crate) fn sleep(word: &AtomicU32, expected: u32) {
    // SAFETY: the futex word is a live, aligned u32; a null timeout means
    // "no timeout". EINTR and EAGAIN are spurious wakeups for the caller.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            FUTEX_WAIT_PRIVATE,
            expected,
            core::ptr::null::<libc::timespec>(),
        );
    }
}

pub(crate) fn wakeup(word: &AtomicU32, count: u32) {
    let n = count.min(i32::MAX as u32) as c_int;
    // SAFETY: the futex word is a live, aligned u32.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), FUTEX_WAKE_PRIVATE, n);
    }
}
