//! Statistics: the `kern.pool` record of each pool ([`PoolStats`]) and
//! vmstat's "Memory resource pool statistics" table (`vmstat -m`, `-W`
//! wide, `-v` verbose) over every pool in the system.

use core::fmt::{self, Write};

use bsdalloc_platform::Ipl;

use crate::flags::{PrFlags, UNLIMITED};
use crate::pool::RawPool;
use crate::registry::for_each_pool;

/// One pool's counters (`struct pool_sysctl`), exact at the moment of the
/// snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// `pr_wchan`.
    pub name: &'static str,
    /// `pr_roflags | pr_flags`.
    pub flags: PrFlags,
    /// `pr_size`: the rounded item size.
    pub size: usize,
    /// `pr_reqsize`: the size asked for.
    pub reqsize: usize,
    /// `pr_align`.
    pub align: usize,
    /// `pr_itemoffset`.
    pub itemoffset: usize,
    /// The allocator's page size.
    pub pagesize: usize,
    /// `pr_itemsperpage`.
    pub itemsperpage: usize,
    /// `pr_nitems`: free items in the pool's pages.
    pub nitems: u32,
    /// `pr_nout`: items handed out.
    pub nout: u32,
    /// `pr_hardlimit`.
    pub hardlimit: u32,
    /// `pr_npages`.
    pub npages: u32,
    /// `pr_minitems` (low-water mark).
    pub minitems: u32,
    /// `pr_maxitems` (high-water mark, recorded only).
    pub maxitems: u32,
    /// `pr_minpages`.
    pub minpages: u32,
    /// `pr_maxpages` (`UINT_MAX`: inf).
    pub maxpages: u32,
    /// `pr_nget`: successful gets.
    pub nget: u64,
    /// `pr_nfail`: failed gets.
    pub nfail: u64,
    /// `pr_nput`: puts.
    pub nput: u64,
    /// `pr_npagealloc`: pages taken from the allocator.
    pub npagealloc: u64,
    /// `pr_npagefree`: pages given back.
    pub npagefree: u64,
    /// `pr_hiwat`: the most pages ever held.
    pub hiwat: u32,
    /// `pr_nidle`: pages with nothing out.
    pub nidle: u32,
    /// `pr_poolid`.
    pub poolid: u32,
    /// `pr_ipl`.
    pub ipl: Ipl,
    /// Hard-limit warnings logged (after the rate cap).
    pub nwarned: u64,
}

impl RawPool {
    /// A snapshot of the pool's counters.
    pub fn stats(&self) -> PoolStats {
        let g = self.lock.lock();
        PoolStats {
            name: self.name(),
            flags: g.lay.roflags | g.flags,
            size: g.lay.size,
            reqsize: g.lay.reqsize,
            align: g.lay.align,
            itemoffset: g.lay.itemoffset,
            pagesize: g.lay.pagesz,
            itemsperpage: g.lay.itemsperpage,
            nitems: g.nitems,
            nout: g.nout,
            hardlimit: g.hardlimit,
            npages: g.npages,
            minitems: g.minitems,
            maxitems: g.maxitems,
            minpages: g.minpages,
            maxpages: g.maxpages,
            nget: g.nget,
            nfail: g.nfail,
            nput: g.nput,
            npagealloc: g.npagealloc,
            npagefree: g.npagefree,
            hiwat: g.hiwat,
            nidle: g.nidle,
            poolid: g.poolid,
            ipl: self.ipl(),
            nwarned: g.nwarned,
        }
    }

    /// The layout `pool_init` chose.
    pub fn layout(&self) -> crate::PoolLayout {
        self.lock.lock().lay
    }
}

/// `vmstat -m` options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmstatOptions {
    /// `-W`: wide columns (InUse, Avail, PageSz, Flags, Util).
    pub wide: bool,
    /// `-v`: also pools that were never used.
    pub verbose: bool,
}

/// A fixed buffer to measure what a field prints (no allocation).
struct Buf {
    b: [u8; 64],
    n: usize,
}

impl Write for Buf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.n + s.len();
        if end > self.b.len() {
            return Err(fmt::Error);
        }
        self.b[self.n..end].copy_from_slice(s.as_bytes());
        self.n = end;
        Ok(())
    }
}

impl Buf {
    fn new() -> Buf {
        Buf { b: [0; 64], n: 0 }
    }
    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.b[..self.n]).unwrap_or("?")
    }
}

/// vmstat's `PRWORD`: print a field in `width - fixed - overflow` columns
/// (the overflow of earlier fields is absorbed by later ones' padding).
struct Row<'a, 'b> {
    w: &'a mut fmt::Formatter<'b>,
    ovflw: usize,
}

impl Row<'_, '_> {
    fn word(
        &mut self,
        lead: &str,
        width: usize,
        fixed: usize,
        left: bool,
        val: fmt::Arguments<'_>,
    ) -> fmt::Result {
        let mut b = Buf::new();
        b.write_fmt(val)?;
        let field = width.saturating_sub(fixed).saturating_sub(self.ovflw);
        let printed = lead.len() + b.n.max(field);
        if left {
            write!(self.w, "{lead}{:<field$}", b.as_str())?;
        } else {
            write!(self.w, "{lead}{:>field$}", b.as_str())?;
        }
        self.ovflw = (self.ovflw + printed).saturating_sub(width);
        Ok(())
    }
}

#[derive(Default)]
struct Totals {
    nget: u64,
    nfail: u64,
    nput: u64,
    nout: u64,
    nitems: u64,
    npagealloc: u64,
    npagefree: u64,
    npages: u64,
    inuse: u64,
    total: u64,
}

fn header(f: &mut fmt::Formatter<'_>, wide: bool) -> fmt::Result {
    let (nw, sw, rw, pw) = if wide { (16, 6, 12, 7) } else { (11, 5, 9, 6) };
    writeln!(f, "Memory resource pool statistics")?;
    writeln!(
        f,
        "{:<nw$}{:>sw$}{:>rw$}{:>5}{:>rw$}{}{}{:>pw$}{:>pw$}{:>6}{}{:>6}{:>6}{:>6}{:>5}{}{}",
        "Name",
        "Size",
        "Requests",
        "Fail",
        "Releases",
        if wide { "  InUse" } else { "" },
        if wide { " Avail" } else { "" },
        "Pgreq",
        "Pgrel",
        "Npage",
        if wide { " PageSz" } else { "" },
        "Hiwat",
        "Minpg",
        "Maxpg",
        "Idle",
        if wide { " Flags" } else { "" },
        if wide { "   Util" } else { "" },
    )
}

fn row(f: &mut fmt::Formatter<'_>, s: &PoolStats, wide: bool, t: &mut Totals) -> fmt::Result {
    let (nw, sw, rw, pw) = if wide { (16, 6, 12, 7) } else { (11, 5, 9, 6) };
    let mut r = Row { w: f, ovflw: 0 };
    r.word("", nw, 0, true, format_args!("{}", s.name))?;
    r.word(" ", sw, 1, false, format_args!("{}", s.size))?;
    r.word(" ", rw, 1, false, format_args!("{}", s.nget))?;
    r.word(" ", 5, 1, false, format_args!("{}", s.nfail))?;
    r.word(" ", rw, 1, false, format_args!("{}", s.nput))?;
    if wide {
        r.word(" ", 7, 1, false, format_args!("{}", s.nout))?;
        r.word(" ", 6, 1, false, format_args!("{}", s.nitems))?;
    }
    r.word(" ", pw, 1, false, format_args!("{}", s.npagealloc))?;
    r.word(" ", pw, 1, false, format_args!("{}", s.npagefree))?;
    r.word(" ", 6, 1, false, format_args!("{}", s.npages))?;
    if wide {
        r.word(" ", 7, 1, false, format_args!("{}", s.pagesize))?;
    }
    r.word(" ", 6, 1, false, format_args!("{}", s.hiwat))?;
    r.word(" ", 6, 1, false, format_args!("{}", s.minpages))?;
    if s.maxpages == UNLIMITED {
        r.word(" ", 6, 1, false, format_args!("inf"))?;
    } else {
        r.word(" ", 6, 1, false, format_args!("{}", s.maxpages))?;
    }
    r.word(" ", 5, 1, false, format_args!("{}", s.nidle))?;
    if wide {
        // " 0x%0*x" with width 4, fixed 1: zero-padded hex digits.
        let digits = 3usize.saturating_sub(r.ovflw);
        let mut b = Buf::new();
        write!(b, "{:0digits$x}", s.flags.bits())?;
        write!(r.w, " 0x{}", b.as_str())?;
        r.ovflw = (r.ovflw + 3 + b.n).saturating_sub(4);
    }
    let this_inuse = s.nout as u64 * s.size as u64;
    let this_total = s.npages as u64 * s.pagesize as u64;
    if s.flags.contains(PrFlags::RECURSIVE) {
        t.total += this_total.saturating_sub(this_inuse);
    } else {
        t.inuse += this_inuse;
        t.total += this_total;
    }
    if wide {
        if this_total == 0 {
            write!(r.w, "   ---")?;
        } else {
            write!(
                r.w,
                " {:5.1}%",
                100.0 * this_inuse as f64 / this_total as f64
            )?;
        }
    }
    writeln!(r.w)?;
    t.nget += s.nget;
    t.nfail += s.nfail;
    t.nput += s.nput;
    t.nout += s.nout as u64;
    t.nitems += s.nitems as u64;
    t.npagealloc += s.npagealloc;
    t.npagefree += s.npagefree;
    t.npages += s.npages as u64;
    Ok(())
}

fn footer(f: &mut fmt::Formatter<'_>, t: &Totals, wide: bool) -> fmt::Result {
    let (nw, sw, rw, pw) = if wide { (16, 6, 12, 7) } else { (11, 5, 9, 6) };
    write!(
        f,
        "{:<nw$}{:>sw$}{:>rw$}{:>5}{:>rw$}",
        "Totals", "", t.nget, t.nfail, t.nput
    )?;
    if wide {
        write!(f, "{:>7}{:>6}", t.nout, t.nitems)?;
    }
    writeln!(
        f,
        "{:>pw$}{:>pw$}{:>6}",
        t.npagealloc, t.npagefree, t.npages
    )?;
    let (inuse, total) = (t.inuse / 1024, t.total / 1024);
    write!(
        f,
        "\nIn use {inuse}K, total allocated {total}K; utilization "
    )?;
    if total == 0 {
        writeln!(f, "nan%")
    } else {
        writeln!(f, "{:.1}%", 100.0 * inuse as f64 / total as f64)
    }
}

/// Write the `vmstat -m` table for `rows` (hidden: pools never used,
/// unless `verbose`).
pub fn write_vmstat_m(
    f: &mut fmt::Formatter<'_>,
    rows: impl IntoIterator<Item = PoolStats>,
    opts: VmstatOptions,
) -> fmt::Result {
    header(f, opts.wide)?;
    let mut t = Totals::default();
    for s in rows {
        if s.nget == 0 && !opts.verbose {
            continue;
        }
        row(f, &s, opts.wide, &mut t)?;
    }
    footer(f, &t, opts.wide)
}

/// `vmstat -m` over every pool in the system, as `Display`: each pool's
/// counters are snapshotted under its lock and formatted with no lock held.
///
/// ```
/// use bsdalloc_pool::{PoolConfig, PrFlags, RawPool, VmstatOptions, pool_vmstat_m};
///
/// static P: RawPool = RawPool::new(PoolConfig::new("vmstatdoc", 64));
/// P.init();
/// let x = P.get(PrFlags::WAITOK).unwrap();
/// let table = format!("{}", pool_vmstat_m(VmstatOptions { wide: true, verbose: false }));
/// assert!(table.starts_with("Memory resource pool statistics\n"));
/// assert!(table.lines().any(|l| l.starts_with("vmstatdoc")));
/// unsafe { P.put(x) };
/// ```
pub fn pool_vmstat_m(opts: VmstatOptions) -> VmstatM {
    VmstatM { opts }
}

/// See [`pool_vmstat_m`].
#[derive(Clone, Copy, Debug)]
pub struct VmstatM {
    opts: VmstatOptions,
}

impl fmt::Display for VmstatM {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        header(f, self.opts.wide)?;
        let mut t = Totals::default();
        let mut res = Ok(());
        for_each_pool(|pp| {
            if res.is_err() {
                return;
            }
            let s = pp.stats();
            if s.nget == 0 && !self.opts.verbose {
                return;
            }
            res = row(f, &s, self.opts.wide, &mut t);
        });
        res?;
        footer(f, &t, self.opts.wide)
    }
}

/// Format a fixed set of snapshots as `vmstat -m` (for reports that pick
/// their pools).
#[derive(Clone, Copy, Debug)]
pub struct VmstatRows<'a> {
    /// The rows.
    pub rows: &'a [PoolStats],
    /// Options.
    pub opts: VmstatOptions,
}

impl fmt::Display for VmstatRows<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_vmstat_m(f, self.rows.iter().copied(), self.opts)
    }
}
