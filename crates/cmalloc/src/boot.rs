//! Booting the kernel at the first allocation, the re-entry guard, the
//! environment, and the report at exit.

use core::cell::Cell;
use core::ffi::{CStr, c_char};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use bsdalloc::{BootError, Kernel, KernelConfig};

use crate::fork::Door;

const DOWN: u8 = 0;
const BOOTING: u8 = 1;
const UP: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(DOWN);
/// kmem classes up to this size get 63-object groups (see [`boot`]).
pub(crate) const LARGE_GROUPS_UPTO: usize = 64;
/// The budget the kernel was booted with (0: none).
static LIMIT: AtomicUsize = AtomicUsize::new(0);

std::thread_local! {
    /// Set while this thread is inside the allocator. `const` and without
    /// `Drop`: a plain TLS slot, no destructor registration (which would
    /// itself allocate), readable at any point of a thread's life.
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// Mark this thread inside the allocator (`true`) or not, returning what
/// it was: the forking thread is, from the prepare handler to the parent's
/// or child's, so that another library's fork handler that allocates then
/// (with the door closed and the platform's slot locks held) is served
/// from the bootstrap arena instead of waiting at the door for ever.
pub(crate) fn set_busy(on: bool) -> bool {
    BUSY.replace(on)
}

/// This thread is inside the allocator while one lives; see [`enter`].
#[derive(Debug)]
pub(crate) struct Busy(#[allow(dead_code)] Door);

impl Drop for Busy {
    #[inline(always)]
    fn drop(&mut self) {
        BUSY.set(false);
    }
}

/// Enter the allocator: `None` if this thread is in it already (the
/// caller serves the request from the bootstrap arena), else the guard,
/// with the kernel up.
#[inline(always)]
pub(crate) fn enter() -> Option<Busy> {
    if BUSY.get() {
        return None;
    }
    BUSY.set(true);
    if STATE.load(Ordering::Acquire) != UP {
        boot();
    }
    Some(Busy(Door::enter()))
}

/// Whether the kernel is up: a pointer that is not the bootstrap arena's
/// can only be ours if it is.
#[inline(always)]
pub(crate) fn is_up() -> bool {
    STATE.load(Ordering::Acquire) == UP
}

/// Boot the kernel with the size lookup that unsized `free` needs, and
/// the environment's budget; once, whichever thread comes first (the
/// others wait). Runs with this thread's guard set: what the boot itself
/// allocates through libc comes from the bootstrap arena.
#[cold]
#[inline(never)]
fn boot() {
    if STATE
        .compare_exchange(DOWN, BOOTING, Ordering::Acquire, Ordering::Acquire)
        .is_err()
    {
        while STATE.load(Ordering::Acquire) != UP {
            // SAFETY: no preconditions.
            unsafe { libc::sched_yield() };
        }
        return;
    }
    let env = Env::read();
    // Large groups for the classes up to 64 bytes: small blocks passed
    // between threads go through the depot a quarter as often (K3 3.6x);
    // larger classes keep NetBSD's 15, for memory (K2's peak RSS grew 4x
    // with every class large).
    let mut cfg = KernelConfig::new()
        .size_lookup(!cfg!(feature = "header"))
        .large_groups(LARGE_GROUPS_UPTO);
    if let Some(limit) = env.limit {
        cfg = cfg.memory_limit(limit);
        LIMIT.store(limit, Ordering::Relaxed);
    }
    // 64 GiB of address space by default; where that cannot be reserved
    // (`ulimit -v`, valgrind) half as much, down to 256 MiB.
    let mut result = Kernel::boot(cfg);
    while let Err(BootError::Kmem(_)) = result
        && cfg.va_size > 256 << 20
    {
        cfg = cfg.va_size(cfg.va_size / 2);
        result = Kernel::boot(cfg);
    }
    match result {
        Ok(_) => {}
        Err(BootError::AlreadyBooted) => {
            // Only this crate boots the process's kernel; something used a
            // layer before the first malloc (a Rust program linking the
            // rlib). Without page tags unsized free cannot work.
            if !cfg!(feature = "header") && !crate::heap::lookup_works() {
                die(format_args!(
                    "bsdalloc: the kernel was started without size lookup before the first malloc"
                ));
            }
        }
        Err(e) => die(format_args!("bsdalloc: cannot boot the kernel: {e}")),
    }
    if env.show_stats {
        // SAFETY: a plain `extern "C" fn()` with static lifetime.
        unsafe { libc::atexit(show_stats) };
    }
    crate::fork::install();
    STATE.store(UP, Ordering::Release);
}

/// What the environment asks for, read without allocating.
struct Env {
    limit: Option<usize>,
    show_stats: bool,
}

impl Env {
    fn read() -> Env {
        let limit = getenv(c"BSDALLOC_LIMIT").and_then(|v| match parse_size(v) {
            Some(0) => None,
            Some(n) => Some(n),
            None => {
                say(format_args!(
                    "bsdalloc: BSDALLOC_LIMIT={}: not a size (bytes, or a number with K, M or G); no budget",
                    Lossy(v)
                ));
                None
            }
        });
        let show_stats = match getenv(c"BSDALLOC_SHOW_STATS") {
            None | Some(b"" | b"0") => false,
            Some(b"1") => true,
            Some(v) => {
                say(format_args!(
                    "bsdalloc: BSDALLOC_SHOW_STATS={}: use 1 or 0; no report",
                    Lossy(v)
                ));
                false
            }
        };
        Env { limit, show_stats }
    }
}

fn getenv(name: &CStr) -> Option<&'static [u8]> {
    // SAFETY: a NUL-terminated name; the value, if any, is a C string in
    // the environment block, which nobody frees while the program runs
    // (setenv leaks the old strings).
    unsafe {
        let v: *const c_char = libc::getenv(name.as_ptr());
        (!v.is_null()).then(|| CStr::from_ptr(v).to_bytes())
    }
}

/// A byte count: decimal digits with an optional `K`, `M` or `G` (powers
/// of 1024, either case), optionally followed by `B` or `iB`.
pub fn parse_size(v: &[u8]) -> Option<usize> {
    let digits = v.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let mut n: usize = 0;
    for &b in &v[..digits] {
        n = n.checked_mul(10)?.checked_add(usize::from(b - b'0'))?;
    }
    let (shift, rest) = match &v[digits..] {
        [] => (0, &[][..]),
        [k, rest @ ..] => match k.to_ascii_uppercase() {
            b'K' => (10, rest),
            b'M' => (20, rest),
            b'G' => (30, rest),
            b'B' if rest.is_empty() => (0, rest),
            _ => return None,
        },
    };
    if !matches!(rest, b"" | b"B" | b"iB") {
        return None;
    }
    n.checked_mul(1 << shift)
}

/// The printable form of an environment value (invalid UTF-8 as `?`).
struct Lossy(&'static [u8]);

impl fmt::Display for Lossy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.0 {
            f.write_char(if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '?'
            })?;
        }
        Ok(())
    }
}

/// Standard error through a buffer on the stack: formatting here never
/// allocates, so it may run anywhere, inside the allocator included.
pub(crate) struct Stderr {
    buf: [u8; 512],
    len: usize,
}

impl Stderr {
    pub(crate) const fn new() -> Stderr {
        Stderr {
            buf: [0; 512],
            len: 0,
        }
    }

    pub(crate) fn flush(&mut self) {
        let mut off = 0;
        while off < self.len {
            // SAFETY: the initialised bytes of our buffer.
            let n =
                unsafe { libc::write(2, self.buf[off..self.len].as_ptr().cast(), self.len - off) };
            if n <= 0 {
                break;
            }
            off += n as usize;
        }
        self.len = 0;
    }
}

impl Write for Stderr {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for chunk in s.as_bytes().chunks(self.buf.len()) {
            if self.len + chunk.len() > self.buf.len() {
                self.flush();
            }
            self.buf[self.len..self.len + chunk.len()].copy_from_slice(chunk);
            self.len += chunk.len();
        }
        Ok(())
    }
}

impl Drop for Stderr {
    fn drop(&mut self) {
        self.flush();
    }
}

/// One line on standard error, without allocating.
pub(crate) fn say(args: fmt::Arguments<'_>) {
    let mut e = Stderr::new();
    let _ = writeln!(e, "{args}");
}

/// One line on standard error, then `abort()`, as glibc's malloc reports
/// corruption.
#[cold]
pub(crate) fn die(args: fmt::Arguments<'_>) -> ! {
    say(args);
    // SAFETY: no preconditions.
    unsafe { libc::abort() }
}

/// `BSDALLOC_SHOW_STATS=1`: the kernel's report and this crate's own
/// counters on standard error at exit. Formatting goes through a buffer
/// on the stack; what the report allocates for itself comes from this
/// allocator as any program allocation does (not inside it: no re-entry).
extern "C" fn show_stats() {
    let mut e = Stderr::new();
    let _ = write!(e, "{}", Stats);
}

/// What `BSDALLOC_SHOW_STATS=1` prints at exit: the facade's report, then this crate's
/// counters.
#[derive(Debug)]
pub struct Stats;

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "bsdalloc: kernel report at exit")?;
        write!(f, "{}", bsdalloc::kernel().report())?;
        let (early, blocks) = crate::early::usage();
        let c = crate::heap::counters();
        writeln!(f)?;
        writeln!(f, "C allocator (bsdalloc-cmalloc)")?;
        writeln!(
            f,
            "budget {}, bootstrap arena {} bytes in {} blocks of {}, {} over-page-aligned blocks live, {} frees leaked in re-entry",
            Budget(LIMIT.load(Ordering::Relaxed)),
            early,
            blocks,
            crate::early::EARLY_BYTES,
            c.big_aligned_live,
            c.leaked,
        )
    }
}

struct Budget(usize);

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            f.write_str("none")
        } else {
            write!(f, "{} bytes", self.0)
        }
    }
}
