//! pool_cache(9) against a model, across simulated CPUs (worker threads,
//! each a CPU of its own): random get (PR_WAITOK / PR_NOWAIT, PR_ZERO on
//! the cache without a constructor), put from any CPU, invalidate,
//! reclaim, destroy (and bootstrap again), and CPU exit (a worker thread
//! ends and a new one takes its place). Each live object is filled with a
//! byte derived from its serial and checked at put; a constructed object
//! must hold the constructor's pattern when it leaves the cache, and the
//! destructor checks it again. No object is handed out twice. At the end
//! everything goes back: no object out of the pools, constructors and
//! destructors balanced.
#![no_main]

use std::collections::HashSet;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use arbitrary::Arbitrary;
use bsdalloc_pool::PrFlags;
use bsdalloc_pool_cache::{CtorFailed, ObjectCtor, ObjectDtor, PoolCacheConfig, RawPoolCache};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Op {
    Get { cpu: u8, cache: u8, nowait: bool, zero: bool },
    Put { cpu: u8, pick: u16 },
    Invalidate { cache: u8 },
    Reclaim { cache: u8 },
    Destroy { cache: u8 },
    Exit { cpu: u8 },
}

const NCPU: usize = 3;
const PATTERN: u8 = 0xc7;

struct Ops {
    size: usize,
    ctors: AtomicU64,
    dtors: AtomicU64,
}

impl ObjectCtor for Ops {
    fn construct(&self, obj: NonNull<u8>, _: PrFlags) -> Result<(), CtorFailed> {
        // SAFETY: a raw object of `size` bytes.
        unsafe { obj.as_ptr().write_bytes(PATTERN, self.size) };
        self.ctors.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl ObjectDtor for Ops {
    fn destruct(&self, obj: NonNull<u8>) {
        // SAFETY: a constructed object of `size` bytes.
        let b = unsafe { std::slice::from_raw_parts(obj.as_ptr(), self.size) };
        assert!(b.iter().all(|&x| x == PATTERN), "destructed a changed object");
        self.dtors.fetch_add(1, Ordering::Relaxed);
    }
}

static OPS: Ops = Ops {
    size: 64,
    ctors: AtomicU64::new(0),
    dtors: AtomicU64::new(0),
};

static CACHES: [RawPoolCache; 2] = [
    RawPoolCache::new(PoolCacheConfig::new("fz-ctor", 64).ctor(&OPS).dtor(&OPS)),
    RawPoolCache::new(PoolCacheConfig::new("fz-large", 200).flags(PrFlags::LARGECACHE)),
];
const SIZES: [usize; 2] = [64, 200];

type Job = Box<dyn FnOnce() + Send>;

struct Cpu {
    tx: mpsc::Sender<Job>,
    done: mpsc::Receiver<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Cpu {
    fn start() -> Cpu {
        let (tx, rx) = mpsc::channel::<Job>();
        let (dtx, done) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            for job in rx {
                job();
                dtx.send(()).unwrap();
            }
        });
        Cpu { tx, done, thread }
    }

    fn run(&self, f: impl FnOnce() + Send + 'static) {
        self.tx.send(Box::new(f)).unwrap();
        self.done.recv().unwrap();
    }

    fn stop(self) {
        drop(self.tx);
        self.thread.join().unwrap();
    }
}

#[derive(Clone, Copy)]
struct Live {
    cache: usize,
    addr: usize,
    fill: u8,
}

fn put(cpu: &Cpu, o: Live) {
    let size = SIZES[o.cache];
    cpu.run(move || {
        let p = o.addr as *mut u8;
        // SAFETY: the object's bytes, ours.
        let b = unsafe { std::slice::from_raw_parts(p, size) };
        assert!(b.iter().all(|&x| x == o.fill), "object {p:p} overwritten while out");
        if o.cache == 0 {
            // Back to the constructed state before it goes back.
            // SAFETY: as above.
            unsafe { p.write_bytes(PATTERN, size) };
        }
        // SAFETY: an object of this cache, given back once.
        unsafe { CACHES[o.cache].put(NonNull::new(p).unwrap()) };
    });
}

fuzz_target!(|ops: Vec<Op>| {
    for c in &CACHES {
        if !c.is_ready() {
            c.bootstrap();
        }
    }
    let mut cpus: Vec<Cpu> = (0..NCPU).map(|_| Cpu::start()).collect();
    let mut live: Vec<Live> = Vec::new();
    let mut held: HashSet<usize> = HashSet::new();
    let mut serial = 0u8;
    for op in ops.into_iter().take(400) {
        match op {
            Op::Get { cpu, cache, nowait, zero } => {
                let cache = cache as usize % 2;
                let zero = zero && cache == 1;
                let mut flags = if nowait { PrFlags::NOWAIT } else { PrFlags::WAITOK };
                if zero {
                    flags |= PrFlags::ZERO;
                }
                serial = serial.wrapping_add(1) | 1;
                let fill = serial;
                let (tx, rx) = mpsc::channel();
                cpus[cpu as usize % NCPU].run(move || {
                    let r = CACHES[cache].get(flags).map(|p| {
                        let size = SIZES[cache];
                        // SAFETY: the object's bytes, ours now.
                        let b = unsafe { std::slice::from_raw_parts(p.as_ptr(), size) };
                        if cache == 0 {
                            assert!(b.iter().all(|&x| x == PATTERN), "not constructed");
                        }
                        if zero {
                            assert!(b.iter().all(|&x| x == 0), "PR_ZERO not zeroed");
                        }
                        // SAFETY: as above.
                        unsafe { p.as_ptr().write_bytes(fill, size) };
                        p.as_ptr() as usize
                    });
                    tx.send(r).unwrap();
                });
                match rx.recv().unwrap() {
                    Some(addr) => {
                        assert!(held.insert(addr), "object {addr:#x} handed out twice");
                        live.push(Live { cache, addr, fill });
                    }
                    None => assert!(nowait, "a PR_WAITOK get without a constructor failure failed"),
                }
            }
            Op::Put { cpu, pick } => {
                if live.is_empty() {
                    continue;
                }
                let o = live.swap_remove(pick as usize % live.len());
                held.remove(&o.addr);
                put(&cpus[cpu as usize % NCPU], o);
            }
            Op::Invalidate { cache } => CACHES[cache as usize % 2].invalidate(),
            Op::Reclaim { cache } => {
                CACHES[cache as usize % 2].reclaim();
            }
            Op::Destroy { cache } => {
                let cache = cache as usize % 2;
                let mine: Vec<Live> = live.iter().copied().filter(|o| o.cache == cache).collect();
                live.retain(|o| o.cache != cache);
                for o in mine {
                    held.remove(&o.addr);
                    put(&cpus[0], o);
                }
                // SAFETY: the workers are idle; nothing of this cache is out.
                unsafe { CACHES[cache].destroy() };
                CACHES[cache].bootstrap();
            }
            Op::Exit { cpu } => {
                let i = cpu as usize % NCPU;
                let old = std::mem::replace(&mut cpus[i], Cpu::start());
                old.stop();
            }
        }
    }
    for o in live.drain(..) {
        put(&cpus[0], o);
    }
    for c in cpus {
        c.stop();
    }
    for c in &CACHES {
        c.invalidate();
        let s = c.stats();
        assert_eq!(s.pool.nout, 0, "{}: objects lost", s.name);
        assert_eq!(s.cpu_cached, 0);
        assert_eq!(c.pool().chk(Some("fuzz")), Ok(()));
    }
    assert_eq!(
        OPS.ctors.load(Ordering::Relaxed),
        OPS.dtors.load(Ordering::Relaxed),
        "constructors and destructors unbalanced"
    );
});
