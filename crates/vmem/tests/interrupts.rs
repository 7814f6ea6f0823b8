//! vmem from interrupt context: an IPL_VM arena serves VM_NOSLEEP requests
//! from a handler; VM_SLEEP there panics with NetBSD's assertion.

use std::sync::atomic::{AtomicUsize, Ordering};

use bsdalloc_platform::{Delivery, Ipl, curcpu, intr_establish, intr_trigger, splvm, splx};
use bsdalloc_vmem::{Arena, ArenaConfig, VmFlags};

static ARENA: Arena = Arena::new(ArenaConfig {
    ipl: Ipl::Vm,
    ..ArenaConfig::new("intr", 16)
});
static DONE: AtomicUsize = AtomicUsize::new(0);

fn handler(sleep: &'static bool) {
    if *sleep {
        let _ = ARENA.alloc(16, VmFlags::SLEEP | VmFlags::INSTANTFIT);
    }
    let x = ARENA
        .alloc(64, VmFlags::NOSLEEP | VmFlags::INSTANTFIT)
        .unwrap();
    ARENA.free(x, 64);
    DONE.fetch_add(1, Ordering::SeqCst);
}

fn fire(sleep: bool) {
    let src = intr_establish(Ipl::Vm, handler, if sleep { &true } else { &false }).unwrap();
    let s = splvm();
    assert_eq!(intr_trigger(curcpu(), src), Delivery::Delivered);
    splx(s); // the handler runs here
}

#[test]
fn nosleep_allocation_from_an_interrupt_handler() {
    ARENA.add(0x1000, 0x1000, VmFlags::NOSLEEP).ok();
    // The thread holds the arena's lock level while the interrupt arrives;
    // it runs once the level drops.
    let before = DONE.load(Ordering::SeqCst);
    fire(false);
    assert_eq!(DONE.load(Ordering::SeqCst), before + 1);
    ARENA.assert_sane();
}

#[test]
#[should_panic(expected = "vmem_xalloc(VM_SLEEP): sleeping in interrupt context")]
fn sleep_allocation_from_an_interrupt_handler_panics() {
    ARENA.add(0x4000, 0x1000, VmFlags::NOSLEEP).ok();
    fire(true);
}
