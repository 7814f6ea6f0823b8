//! pool(9) against a model: random get (every wait flag, PR_ZERO), put,
//! prime, setlowat, sethardlimit, reclaim (with a clock that moves) over
//! pools of several layouts (on-page bitmap, on-page free list, off-page,
//! NOTOUCH). Each live item is filled with a byte derived from its serial
//! and checked at put; the model predicts which gets fail at the hard
//! limit; `pool_chk` (lists, counters, magic) runs after every step. At the
//! end everything goes back and the pools are destroyed with nothing out.
#![no_main]

use std::ptr::NonNull;

use arbitrary::Arbitrary;
use bsdalloc_pool::{ManualClock, PoolConfig, PrFlags, RawPool, UNLIMITED};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Op {
    Get {
        pool: u8,
        nowait: bool,
        zero: bool,
        limitfail: bool,
    },
    Put {
        pick: u16,
    },
    Prime {
        pool: u8,
        n: u8,
    },
    SetLowat {
        pool: u8,
        n: u8,
    },
    SetHardLimit {
        pool: u8,
        n: u16,
    },
    Advance {
        secs: u8,
    },
    Reclaim {
        pool: u8,
    },
}

const SIZES: [(usize, PrFlags); 4] = [
    (64, PrFlags::empty()),   // on-page, bitmap
    (8, PrFlags::empty()),    // on-page, free list with magic
    (1000, PrFlags::NOALIGN), // off-page, nearest-page lookup
    (24, PrFlags::NOTOUCH),   // off-page bitmap, never touched
];

static CLOCK: ManualClock = ManualClock::new();

static POOLS: [RawPool; 4] = [
    RawPool::new(
        PoolConfig::new("fz-bmap", SIZES[0].0)
            .flags(SIZES[0].1)
            .clock(&CLOCK),
    ),
    RawPool::new(
        PoolConfig::new("fz-list", SIZES[1].0)
            .flags(SIZES[1].1)
            .clock(&CLOCK),
    ),
    RawPool::new(
        PoolConfig::new("fz-noalign", SIZES[2].0)
            .flags(SIZES[2].1)
            .clock(&CLOCK),
    ),
    RawPool::new(
        PoolConfig::new("fz-notouch", SIZES[3].0)
            .flags(SIZES[3].1)
            .clock(&CLOCK),
    ),
];

struct Live {
    pool: usize,
    p: NonNull<u8>,
    fill: u8,
}

fn fill_of(serial: u64) -> u8 {
    (serial.wrapping_mul(0x9e37_79b9) >> 24) as u8 | 1
}

fn check(l: &Live, size: usize) {
    // SAFETY: a live item of `size` requested bytes, filled at get.
    let b = unsafe { std::slice::from_raw_parts(l.p.as_ptr(), size) };
    assert!(
        b.iter().all(|&x| x == l.fill),
        "item {:p} changed while out",
        l.p
    );
}

fuzz_target!(|ops: Vec<Op>| {
    // Static pools, initialised for each input and destroyed at its end
    // (the same storage may be initialised again).
    let pools: Vec<&'static RawPool> = POOLS.iter().collect();
    for pp in &pools {
        pp.init();
    }
    let mut live: Vec<Live> = Vec::new();
    let mut limit = [UNLIMITED; 4];
    let mut serial = 0u64;
    for op in ops.into_iter().take(2000) {
        match op {
            Op::Get {
                pool,
                nowait,
                zero,
                limitfail,
            } => {
                let i = pool as usize % pools.len();
                let pp = pools[i];
                let out = live.iter().filter(|l| l.pool == i).count() as u32;
                let mut f = if nowait {
                    PrFlags::NOWAIT
                } else {
                    PrFlags::WAITOK | PrFlags::LIMITFAIL
                };
                if limitfail {
                    f |= PrFlags::LIMITFAIL;
                }
                if zero {
                    f |= PrFlags::ZERO;
                }
                let got = pp.get(f);
                if out >= limit[i] {
                    assert!(got.is_none(), "a get past the hard limit succeeded");
                    continue;
                }
                // Below the limit only a page shortage fails, and the
                // user-space map has memory: every get succeeds.
                let p = got.expect("get below the hard limit failed");
                let size = SIZES[i].0;
                if zero {
                    // SAFETY: a fresh item of `size` bytes.
                    let b = unsafe { std::slice::from_raw_parts(p.as_ptr(), size) };
                    assert!(b.iter().all(|&x| x == 0), "PR_ZERO left data");
                }
                serial += 1;
                let l = Live {
                    pool: i,
                    p,
                    fill: fill_of(serial),
                };
                // SAFETY: the item is ours.
                unsafe { p.as_ptr().write_bytes(l.fill, size) };
                assert!(live.iter().all(|o| o.p != p), "item handed out twice");
                live.push(l);
            }
            Op::Put { pick } => {
                if live.is_empty() {
                    continue;
                }
                let l = live.swap_remove(pick as usize % live.len());
                check(&l, SIZES[l.pool].0);
                // SAFETY: a live item of that pool.
                unsafe { pools[l.pool].put(l.p) };
            }
            Op::Prime { pool, n } => pools[pool as usize % pools.len()].prime(n as u32 % 64),
            Op::SetLowat { pool, n } => pools[pool as usize % pools.len()].setlowat(n as u32 % 64),
            Op::SetHardLimit { pool, n } => {
                let i = pool as usize % pools.len();
                let n = if n == 0 { UNLIMITED } else { n as u32 % 512 };
                limit[i] = n;
                pools[i].sethardlimit(n, None, 0);
            }
            Op::Advance { secs } => CLOCK.advance(secs as u64 % 16),
            Op::Reclaim { pool } => {
                let pp = pools[pool as usize % pools.len()];
                let before = pp.stats();
                pp.reclaim();
                let after = pp.stats();
                assert!(after.npages >= after.minpages.min(before.npages));
                assert_eq!(after.nout, before.nout);
            }
        }
        for (i, pp) in pools.iter().enumerate() {
            assert_eq!(pp.chk(Some("fuzz")), Ok(()));
            let s = pp.stats();
            assert_eq!(s.nout as usize, live.iter().filter(|l| l.pool == i).count());
        }
        for l in &live {
            check(l, SIZES[l.pool].0);
        }
    }
    for l in live.drain(..) {
        check(&l, SIZES[l.pool].0);
        // SAFETY: a live item of that pool.
        unsafe { pools[l.pool].put(l.p) };
    }
    for pp in pools {
        assert_eq!(pp.stats().nout, 0);
        pp.destroy();
        let s = pp.stats();
        assert_eq!(s.npagealloc, s.npagefree, "pages leaked");
    }
});
