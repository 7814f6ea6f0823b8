//! Per-type statistics are exact (M5): four threads malloc, realloc and
//! free over four types with random sizes (small and page-aligned) and
//! flags, a share of the blocks freed by another thread; every thread
//! keeps its own account of what it did, and the types' InUse, MemUse,
//! Requests and Size(s) equal the sum of those accounts — with blocks
//! still live, and again at zero after everything is freed. The table
//! shows the same numbers.

use std::sync::Mutex;

use bsdalloc_kmalloc::*;

MALLOC_DEFINE!(M_S0, "stats0", "statistics test 0");
MALLOC_DEFINE!(M_S1, "stats1", "statistics test 1");
MALLOC_DEFINE!(M_S2, "stats2", "statistics test 2");
MALLOC_DEFINE!(M_S3, "stats3", "statistics test 3");
MALLOC_DEFINE!(M_SEQ, "seq", "sequential high-water mark");

static TYPES: [&MallocType; 4] = [&M_S0, &M_S1, &M_S2, &M_S3];

/// One thread's account, per type.
#[derive(Clone, Copy, Default, Debug)]
struct Account {
    calls: [u64; 4],
    /// Bytes ever reserved (an upper bound of the high-water mark).
    reserved_ever: [usize; 4],
    size_bits: [u64; 4],
}

/// A live block: address, type index, requested size, fill byte.
type Block = (usize, usize, usize, u8);

fn reserved(size: usize) -> usize {
    let k = backend();
    let ps = k.page_size();
    let allocsize = if size < ps {
        MALLOC_HEADER_SIZE + size
    } else {
        ps + size
    };
    k.allocated_size(allocsize).unwrap()
}

fn bit(size: usize) -> u64 {
    1u64 << reserved(size).next_power_of_two().trailing_zeros()
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn check_fill(b: &Block) {
    let &(addr, _, size, fill) = b;
    // SAFETY: a live block of `size` bytes.
    let s = unsafe { std::slice::from_raw_parts(addr as *const u8, size) };
    assert!(s.iter().all(|&x| x == fill), "block {addr:#x} overwritten");
}

fn release(b: Block) {
    check_fill(&b);
    // SAFETY: a live block of that type.
    unsafe { free(b.0 as *mut u8, TYPES[b.1]) };
}

/// Blocks handed to whichever thread takes them next.
static EXCHANGE: Mutex<Vec<Block>> = Mutex::new(Vec::new());

fn worker(seed: u64) -> (Account, Vec<Block>) {
    let ps = backend().page_size();
    let sizes = [
        0,
        8,
        17,
        40,
        100,
        250,
        700,
        1500,
        3000,
        ps - 1,
        ps,
        3 * ps + 9,
    ];
    let mut rng = Lcg(seed);
    let mut acc = Account::default();
    let mut live: Vec<Block> = Vec::new();
    for i in 0..10_000 {
        let r = rng.next();
        match r % 8 {
            0..=3 => {
                let t = (rng.next() % 4) as usize;
                let size = sizes[(rng.next() % sizes.len() as u64) as usize];
                let flags = match r % 3 {
                    0 => M_WAITOK,
                    1 => M_NOWAIT,
                    _ => M_WAITOK | M_ZERO,
                };
                if let Some(p) = malloc(size, TYPES[t], flags) {
                    acc.calls[t] += 1;
                    acc.reserved_ever[t] += reserved(size);
                    acc.size_bits[t] |= bit(size);
                    let fill = (i % 251) as u8;
                    // SAFETY: `size` fresh bytes.
                    unsafe { p.as_ptr().write_bytes(fill, size) };
                    live.push((p.as_ptr().addr(), t, size, fill));
                }
            }
            4 if !live.is_empty() => {
                // realloc: the block moves only when it grows.
                let j = (rng.next() as usize) % live.len();
                let (addr, t, size, fill) = live[j];
                check_fill(&live[j]);
                let n = sizes[(rng.next() % sizes.len() as u64) as usize].max(1);
                // SAFETY: a live block of type `t`.
                let q = unsafe { realloc(addr as *mut u8, n, TYPES[t], M_NOWAIT) }.unwrap();
                if n <= size {
                    assert_eq!(q.as_ptr().addr(), addr);
                } else {
                    acc.calls[t] += 1;
                    acc.reserved_ever[t] += reserved(n);
                    acc.size_bits[t] |= bit(n);
                    // SAFETY: the new block's bytes past the copied ones.
                    unsafe { q.as_ptr().add(size).write_bytes(fill, n - size) };
                    live[j] = (q.as_ptr().addr(), t, n, fill);
                }
            }
            5 if !live.is_empty() => {
                // Hand a block to another thread.
                let b = live.swap_remove((rng.next() as usize) % live.len());
                EXCHANGE.lock().unwrap().push(b);
            }
            6 => {
                let b = EXCHANGE.lock().unwrap().pop();
                if let Some(b) = b {
                    release(b);
                }
            }
            _ if live.len() > 20 => {
                let b = live.swap_remove((rng.next() as usize) % live.len());
                release(b);
            }
            _ => {}
        }
    }
    (acc, live)
}

#[test]
fn statistics_are_exact_after_a_mixed_multithreaded_workload() {
    let results: Vec<(Account, Vec<Block>)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4u64)
            .map(|w| s.spawn(move || worker(0x9e37_79b9 * (w + 1))))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut live: Vec<Block> = results.iter().flat_map(|r| r.1.clone()).collect();
    live.extend(EXCHANGE.lock().unwrap().drain(..));
    for (t, ty) in TYPES.iter().enumerate() {
        let calls: u64 = results.iter().map(|r| r.0.calls[t]).sum();
        let ever: usize = results.iter().map(|r| r.0.reserved_ever[t]).sum();
        let bits = results.iter().fold(0, |b, r| b | r.0.size_bits[t]);
        let mine: Vec<&Block> = live.iter().filter(|b| b.1 == t).collect();
        let memuse: usize = mine.iter().map(|b| reserved(b.2)).sum();
        let s = ty.stats();
        assert_eq!(s.calls, calls, "{}", s.shortdesc);
        assert_eq!(s.inuse, mine.len(), "{}", s.shortdesc);
        assert_eq!(s.memuse, memuse, "{}", s.shortdesc);
        assert_eq!(s.size, bits, "{}", s.shortdesc);
        assert!(s.maxused >= memuse && s.maxused <= ever, "{s:?}");
        assert_eq!((s.limblocks, s.mapblocks), (0, 0));
        // The table shows the same row.
        let table = malloc_stats().to_string();
        let row = table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(s.shortdesc))
            .unwrap_or_else(|| panic!("no row for {}:\n{table}", s.shortdesc));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[1], s.inuse.to_string(), "{row}");
        assert_eq!(cols[2], format!("{}K", memuse.div_ceil(1024)), "{row}");
        // (A large limit runs into the HighUse column, as in vmstat's
        // printf; the whole row is the type's own.)
        assert_eq!(row, s.to_string());
        assert!(row.contains(&format!("{calls:>9}")), "{row}");
    }
    for b in live {
        release(b);
    }
    for t in TYPES {
        let s = t.stats();
        assert_eq!((s.inuse, s.memuse), (0, 0), "{s:?}");
    }
}

#[test]
fn the_high_water_mark_is_exact_in_sequence() {
    let a = malloc(100, &M_SEQ, M_WAITOK).unwrap(); // 128
    let b = malloc(2000, &M_SEQ, M_WAITOK).unwrap(); // 2048
    // SAFETY: ours.
    unsafe { free(a.as_ptr(), &M_SEQ) };
    let c = malloc(40, &M_SEQ, M_WAITOK).unwrap(); // 64
    let s = M_SEQ.stats();
    assert_eq!(s.memuse, reserved(2000) + reserved(40));
    assert_eq!(s.maxused, reserved(100) + reserved(2000));
    assert_eq!(s.size, bit(100) | bit(2000) | bit(40));
    // The row, as vmstat prints it (without kmem's debug footers: sizes
    // 64,128,2K).
    let mut buckets: Vec<usize> = [40, 100, 2000]
        .iter()
        .map(|&n| reserved(n).next_power_of_two())
        .collect();
    buckets.sort();
    buckets.dedup();
    let sizes: Vec<String> = buckets
        .iter()
        .map(|&b| {
            if b < 1024 {
                b.to_string()
            } else {
                format!("{}K", b >> 10)
            }
        })
        .collect();
    assert_eq!(
        s.to_string(),
        format!(
            "{:>13}{:>6}{:>6}K{:>7}K{:>6}K{:>9}{:>5}{:>6}  {}",
            "seq",
            2,
            (reserved(2000) + reserved(40)).div_ceil(1024),
            (reserved(100) + reserved(2000)).div_ceil(1024),
            s.limit.div_ceil(1024),
            3,
            0,
            0,
            sizes.join(",")
        )
    );
    // SAFETY: ours.
    unsafe {
        free(b.as_ptr(), &M_SEQ);
        free(c.as_ptr(), &M_SEQ);
    }
    let s = M_SEQ.stats();
    assert_eq!((s.inuse, s.memuse, s.calls), (0, 0, 3));
}
