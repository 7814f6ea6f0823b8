//! The machine behind the platform API: one of three backends.
//!
//! - `user` (feature `std`, Linux): threads are CPUs, POSIX real-time
//!   signals are interrupts, futexes are wait channels.
//! - `model` (`--cfg bsdalloc_loom`): loom threads are CPUs; interrupts are
//!   posted bits that the CPU takes at every interrupt point.
//! - `kernel` (no `std`): a kernel supplies its CPUs, IPIs and sleep queues
//!   through [`Machine`](crate::Machine) and [`set_machine!`](crate::set_machine).

#[cfg(bsdalloc_loom)]
pub(crate) mod model;
#[cfg(bsdalloc_loom)]
pub(crate) use model::*;

#[cfg(any(bsdalloc_loom, feature = "std"))]
mod slots;

#[cfg(all(not(bsdalloc_loom), feature = "std"))]
mod user;
#[cfg(all(not(bsdalloc_loom), feature = "std"))]
pub(crate) use user::*;

#[cfg(all(not(bsdalloc_loom), not(feature = "std")))]
mod kernel;
#[cfg(all(not(bsdalloc_loom), not(feature = "std")))]
pub(crate) use kernel::*;

/// What became of an interrupt posted to a CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Post {
    /// Newly pending on the CPU, which was kicked.
    Delivered,
    /// The source was already pending there; the two coalesce into one run.
    Coalesced,
    /// No such CPU is running (an exited thread's slot, an offline CPU).
    Absent,
}

/// How a cross-call reaches a CPU (see `crate::cpu`).
#[cfg_attr(not(any(bsdalloc_loom, feature = "std")), allow(dead_code))]
pub(crate) enum Route {
    /// The function ran here, on the CPU's behalf.
    Ran,
    /// The CPU is inside a section: post it the cross-call interrupt.
    Post,
}
