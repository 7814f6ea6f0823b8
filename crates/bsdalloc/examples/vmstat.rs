//! `cargo run --release -p bsdalloc --example vmstat [-- --secs N --threads N --limit-mib N]`
//!
//! Boots the kernel memory system under a memory budget, runs a small
//! network stack on it for a few seconds, and prints what NetBSD's
//! `vmstat -m` and `vmstat -C` would, with malloc(9)'s statistics by type,
//! the kernel map and the arenas.
//!
//! The workload, per worker thread (a CPU):
//! - *connections*: a socket descriptor from a vmem ID arena (`fd`), a
//!   socket and a protocol control block from malloc(9) types (`socket`,
//!   `pcb`), an interface address from `ifaddr`;
//! - *packets*: mbufs (256 bytes, constructed: the header is set up once
//!   per object, not per use) and clusters (2 KiB) from pool caches
//!   `mbufpl` and `mclpl`; the NIC's receive interrupt (`IPL_VM`) takes
//!   mbufs with `PR_NOWAIT` and queues them to the CPU it hit, which the
//!   CPU drains;
//! - *buffers*: kmem allocations of mixed sizes (64 B … 64 KiB) held in a
//!   window, as socket buffers and reassembly queues; now and then a burst
//!   of large ones with `KM_NOSLEEP` that the budget refuses (counted as
//!   drops, as a stack answers `ENOBUFS`), after the pagedaemon has
//!   drained the caches to make room.

use std::io::IsTerminal;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use bsdalloc::kmalloc::{M_NOWAIT, M_PCB, M_WAITOK, M_ZERO, MALLOC_DEFINE, MallocType};
use bsdalloc::kmem::{KM_NOSLEEP, KM_SLEEP, kmem_alloc, kmem_free};
use bsdalloc::platform::{CpuId, Ipl, SpinMutex, curcpu, intr_establish, intr_trigger};
use bsdalloc::pool::PrFlags;
use bsdalloc::pool_cache::{CtorFailed, ObjectCtor, PoolCacheConfig, RawPoolCache};
use bsdalloc::vmem::{IdAllocator, IdPolicy};
use bsdalloc::{Kernel, KernelConfig};

MALLOC_DEFINE!(M_SOCKET, "socket", "socket structures");
MALLOC_DEFINE!(M_IFADDR, "ifaddr", "interface addresses");
MALLOC_DEFINE!(
    M_RXDESC,
    "rxdesc",
    "receive descriptors (interrupt context)"
);

const MSIZE: usize = 256;
const MCLBYTES: usize = 2048;
const MAXWORKERS: usize = 64;

/// The mbuf header the constructor writes once per object.
#[repr(C)]
struct MbufHdr {
    magic: u32,
    len: u32,
    next: usize,
}
const MBUF_MAGIC: u32 = 0x6d62_7566;

struct MbufCtor;
static MBUF_CTORS: AtomicU64 = AtomicU64::new(0);

impl ObjectCtor for MbufCtor {
    fn construct(&self, obj: NonNull<u8>, _flags: PrFlags) -> Result<(), CtorFailed> {
        MBUF_CTORS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: a raw object of `mbufpl`: MSIZE bytes, 64-byte aligned.
        unsafe {
            obj.cast::<MbufHdr>().write(MbufHdr {
                magic: MBUF_MAGIC,
                len: 0,
                next: 0,
            })
        };
        Ok(())
    }
}

static MBUF_CTOR: MbufCtor = MbufCtor;
static MBUFS: RawPoolCache = RawPoolCache::new(
    PoolCacheConfig::new("mbufpl", MSIZE)
        .align(64)
        .ipl(Ipl::Vm)
        .ctor(&MBUF_CTOR),
);
static CLUSTERS: RawPoolCache =
    RawPoolCache::new(PoolCacheConfig::new("mclpl", MCLBYTES).ipl(Ipl::Vm));

/// A CPU's receive queue: filled by the NIC interrupt, drained by the CPU.
struct RxQueue {
    mbufs: [usize; 128],
    n: usize,
}
static RXQ: [SpinMutex<RxQueue>; MAXWORKERS] = [const {
    SpinMutex::new(
        Ipl::Vm,
        RxQueue {
            mbufs: [0; 128],
            n: 0,
        },
    )
}; MAXWORKERS];
/// Worker CPU ids (u32::MAX: not up yet).
static WORKER_CPU: [AtomicUsize; MAXWORKERS] = [const { AtomicUsize::new(usize::MAX) }; MAXWORKERS];

static STOP: AtomicBool = AtomicBool::new(false);
static OPS: AtomicU64 = AtomicU64::new(0);
static DROPS: AtomicU64 = AtomicU64::new(0);
static RX: AtomicU64 = AtomicU64::new(0);
static RX_DROPS: AtomicU64 = AtomicU64::new(0);

/// The NIC's receive interrupt at IPL_VM: mbufs with PR_NOWAIT and an
/// rx descriptor with M_NOWAIT, queued to the interrupted CPU.
fn nic_intr(_: &'static ()) {
    let me = curcpu().index();
    let Some(slot) = (0..MAXWORKERS).find(|&w| WORKER_CPU[w].load(Ordering::Relaxed) == me) else {
        return;
    };
    let desc = bsdalloc::kmalloc::malloc(64, &M_RXDESC, M_NOWAIT);
    let mut q = RXQ[slot].lock();
    for _ in 0..4 {
        if q.n == q.mbufs.len() {
            RX_DROPS.fetch_add(1, Ordering::Relaxed);
            break;
        }
        let Some(m) = MBUFS.get(PrFlags::NOWAIT) else {
            RX_DROPS.fetch_add(1, Ordering::Relaxed);
            break;
        };
        // SAFETY: a constructed mbuf.
        unsafe { (*m.cast::<MbufHdr>().as_ptr()).len = 60 };
        let n = q.n;
        q.mbufs[n] = m.as_ptr().addr();
        q.n += 1;
        RX.fetch_add(1, Ordering::Relaxed);
    }
    drop(q);
    if let Some(d) = desc {
        // SAFETY: allocated above with this type.
        unsafe { bsdalloc::kmalloc::free(d.as_ptr(), &M_RXDESC) };
    }
}

/// Drain this CPU's receive queue: check each mbuf and put it back.
fn drain_rx(slot: usize) {
    let mut batch = [0usize; 128];
    let n = {
        let mut q = RXQ[slot].lock();
        let n = q.n;
        batch[..n].copy_from_slice(&q.mbufs[..n]);
        q.n = 0;
        n
    };
    for &a in &batch[..n] {
        let m = NonNull::new(a as *mut u8).expect("queued mbuf");
        // SAFETY: an mbuf the interrupt took from MBUFS, now ours.
        unsafe {
            assert_eq!((*m.cast::<MbufHdr>().as_ptr()).magic, MBUF_MAGIC);
            MBUFS.put(m);
        }
    }
}

/// A tiny xorshift generator: the workload's sizes and choices.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A kmem buffer size: mostly small, sometimes a few pages.
fn buffer_size(r: &mut Rng) -> usize {
    match r.below(100) {
        0..=59 => 64 + r.below(448) as usize,
        60..=89 => 512 + r.below(3584) as usize,
        _ => 4096 + r.below(60 * 1024) as usize,
    }
}

struct Conn<'a> {
    fd: bsdalloc::vmem::Id<'a>,
    so: NonNull<u8>,
    pcb: NonNull<u8>,
}

fn worker(slot: usize, fds: &IdAllocator) {
    WORKER_CPU[slot].store(curcpu().index(), Ordering::Release);
    let mut r = Rng(0x9e37_79b9_7f4a_7c15 ^ ((slot as u64 + 1) * 0x1000_0000_01b3));
    let mut conns: Vec<Conn<'_>> = Vec::with_capacity(64);
    let mut bufs: Vec<(NonNull<u8>, usize)> = Vec::with_capacity(256);
    let mut ops = 0u64;
    while !STOP.load(Ordering::Relaxed) {
        // Connections come and go.
        if conns.len() < 32 || r.below(4) == 0 {
            let fd = fds.alloc_wait();
            let so = bsdalloc::kmalloc::malloc(192, &M_SOCKET, M_WAITOK | M_ZERO).unwrap();
            let pcb = bsdalloc::kmalloc::malloc(600, &M_PCB, M_WAITOK | M_ZERO).unwrap();
            conns.push(Conn { fd, so, pcb });
        }
        if conns.len() > 48 || (!conns.is_empty() && r.below(4) == 0) {
            let i = r.below(conns.len() as u64) as usize;
            let c = conns.swap_remove(i);
            // SAFETY: allocated above with these types.
            unsafe {
                bsdalloc::kmalloc::free(c.so.as_ptr(), &M_SOCKET);
                bsdalloc::kmalloc::free(c.pcb.as_ptr(), &M_PCB);
            }
            drop(c.fd);
        }
        if r.below(64) == 0 {
            let ifa = bsdalloc::kmalloc::malloc(96, &M_IFADDR, M_WAITOK).unwrap();
            // SAFETY: allocated just above.
            unsafe { bsdalloc::kmalloc::free(ifa.as_ptr(), &M_IFADDR) };
        }
        // Send a packet: an mbuf chain with a cluster.
        let m = MBUFS.get(PrFlags::WAITOK).unwrap();
        let cl = CLUSTERS.get(PrFlags::WAITOK).unwrap();
        // SAFETY: a constructed mbuf and a cluster, ours until put.
        unsafe {
            assert_eq!((*m.cast::<MbufHdr>().as_ptr()).magic, MBUF_MAGIC);
            cl.as_ptr().write_bytes(0x45, 64);
            CLUSTERS.put(cl);
            MBUFS.put(m);
        }
        // Socket buffers: a window of mixed sizes.
        let size = buffer_size(&mut r);
        let p = kmem_alloc(size, KM_SLEEP).unwrap();
        // SAFETY: `size` bytes of ours.
        unsafe { p.as_ptr().write_bytes(slot as u8, size.min(256)) };
        bufs.push((p, size));
        if bufs.len() > 192 {
            let (q, s) = bufs.swap_remove(r.below(bufs.len() as u64) as usize);
            // SAFETY: allocated above with `s`.
            unsafe { kmem_free(q.as_ptr(), s) };
        }
        // Now and then a burst the budget may refuse: dropped, not waited
        // for (the pagedaemon ran first).
        if r.below(2048) == 0 {
            let mut burst: Vec<NonNull<u8>> = Vec::with_capacity(64);
            for _ in 0..64 {
                match kmem_alloc(256 << 10, KM_NOSLEEP) {
                    Some(p) => burst.push(p),
                    None => {
                        DROPS.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
            for p in burst {
                // SAFETY: allocated just above.
                unsafe { kmem_free(p.as_ptr(), 256 << 10) };
            }
        }
        drain_rx(slot);
        ops += 1;
        if ops.is_multiple_of(256) {
            OPS.fetch_add(256, Ordering::Relaxed);
        }
    }
    drain_rx(slot);
    for (q, s) in bufs {
        // SAFETY: ours, with its size.
        unsafe { kmem_free(q.as_ptr(), s) };
    }
    for c in conns {
        // SAFETY: ours, with these types.
        unsafe {
            bsdalloc::kmalloc::free(c.so.as_ptr(), &M_SOCKET);
            bsdalloc::kmalloc::free(c.pcb.as_ptr(), &M_PCB);
        }
    }
    WORKER_CPU[slot].store(usize::MAX, Ordering::Release);
    drain_rx(slot);
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                eprintln!("vmstat: {name} wants a number");
                std::process::exit(2)
            }),
        None => default,
    }
}

fn main() {
    let secs = arg("--secs", 3);
    let ncpu = thread::available_parallelism().map_or(2, |n| n.get());
    let threads = (arg("--threads", (2 * ncpu) as u64) as usize).clamp(1, MAXWORKERS);
    let limit_mib = arg("--limit-mib", 48) as usize;

    let k = Kernel::boot(KernelConfig::new().memory_limit(limit_mib << 20))
        .unwrap_or_else(|e| panic!("vmstat: {e}"));
    let limit_pages = k.map().stats().limit_pages;
    MBUFS.bootstrap();
    CLUSTERS.bootstrap();
    static NIC: () = ();
    let nic = intr_establish(Ipl::Vm, nic_intr, &NIC).expect("a NIC interrupt");
    let fds = IdAllocator::new("fd", 3..65_536, IdPolicy::Reuse).expect("the fd arena");

    eprintln!(
        "bsdalloc: {threads} CPUs (threads), page size {}, memory limit {limit_mib} MiB, {secs} s",
        k.page_size()
    );
    let t0 = Instant::now();
    thread::scope(|s| {
        for slot in 0..threads {
            let fds = &fds;
            s.spawn(move || worker(slot, fds));
        }
        // The NIC: receive interrupts on the worker CPUs, and the progress
        // line.
        let mut r = Rng(42);
        let mut intrs = 0u64;
        let mut next_line = Duration::ZERO;
        let tty = std::io::stderr().is_terminal();
        while t0.elapsed() < Duration::from_secs(secs) {
            let w = r.below(threads as u64) as usize;
            let cpu = WORKER_CPU[w].load(Ordering::Acquire);
            if cpu != usize::MAX {
                intr_trigger(CpuId(cpu as u32), nic);
                intrs += 1;
            }
            thread::sleep(Duration::from_micros(200));
            if t0.elapsed() >= next_line {
                // A line rewritten in place on a terminal, one a second
                // into a pipe or a log.
                next_line += Duration::from_millis(if tty { 250 } else { 1000 });
                let m = k.map().stats();
                eprint!(
                    "{}[{:5.2}s] ops {:>9}  pages {:>6}/{} (cached {:>5})  pagedaemon {:>4}  drops {:>5}  intr {:>7}  rx {:>8} ",
                    if tty { "\r" } else { "\n" },
                    t0.elapsed().as_secs_f64(),
                    OPS.load(Ordering::Relaxed),
                    m.committed_pages,
                    limit_pages,
                    m.cached_pages,
                    m.pagedaemon_runs,
                    DROPS.load(Ordering::Relaxed),
                    intrs,
                    RX.load(Ordering::Relaxed),
                );
            }
        }
        STOP.store(true, Ordering::Relaxed);
    });
    eprintln!();
    eprintln!(
        "done: {} operations, {} mbuf constructions, {} packets received ({} dropped), {} bursts refused at the budget",
        OPS.load(Ordering::Relaxed),
        MBUF_CTORS.load(Ordering::Relaxed),
        RX.load(Ordering::Relaxed),
        RX_DROPS.load(Ordering::Relaxed),
        DROPS.load(Ordering::Relaxed),
    );
    assert_eq!(fds.in_use(), 0, "every descriptor was closed");
    for t in [&M_SOCKET, &M_PCB, &M_IFADDR, &M_RXDESC] as [&MallocType; 4] {
        assert_eq!(t.stats().inuse, 0, "malloc type {} leaks", t.shortdesc());
    }
    let report = k.report().to_string();
    for section in [
        "Memory resource pool statistics",
        "Pool cache statistics.",
        "Memory statistics by type",
        "Memory Totals:",
        "Kernel map",
        "Arenas (vmem_dump summary)",
    ] {
        assert!(report.contains(section), "the report lacks {section:?}");
    }
    for pool in ["mbufpl", "mclpl", "kmem-00256"] {
        assert!(report.lines().any(|l| l.starts_with(pool)), "no {pool} row");
    }
    println!("{report}");
}
