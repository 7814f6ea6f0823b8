//! Diagnostics: `pool_chk` (with this port's consistency checks of the
//! counters and lists), `pool_whatis`, `pool_printit` / `pool_printall`.
//! Everything is read under the pool lock into a snapshot, and written
//! with no lock held.

use core::fmt::{self, Write};

use crate::flags::{PI_MAGIC, PrFlags};
use crate::pool::{EMPTY, FULL, Inner, PART, RawPool};
use crate::raw::{self, PageHeader};
use crate::registry::for_each_pool;

/// What `pool_chk` found wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolInconsistency {
    /// NetBSD's "page inconsistency": a header or free item not in its page.
    Page {
        /// The header's page.
        page: usize,
        /// The item (or header) address.
        addr: usize,
        /// Item ordinal on the free list (`None`: the header itself).
        ordinal: Option<usize>,
    },
    /// A counter disagrees with the pages (this port's extra checks).
    Count {
        /// Which.
        what: &'static str,
        /// The counter.
        counter: u64,
        /// What the pages say.
        pages: u64,
    },
    /// A page is on the wrong list for its items out, or the current page
    /// breaks its rule.
    List(&'static str),
}

impl fmt::Display for PoolInconsistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PoolInconsistency::Page {
                page,
                addr,
                ordinal: Some(n),
            } => write!(
                f,
                "page inconsistency: page {page:#x}; item ordinal {n}; addr {addr:#x}"
            ),
            PoolInconsistency::Page { page, addr, .. } => write!(
                f,
                "page inconsistency: page {page:#x}; at page head addr {addr:#x}"
            ),
            PoolInconsistency::Count {
                what,
                counter,
                pages,
            } => write!(f, "{what} is {counter} but the pages say {pages}"),
            PoolInconsistency::List(what) => f.write_str(what),
        }
    }
}

/// A corrupted free item found by the walk: reported (with a panic) once
/// the lock is dropped.
struct BadMagic {
    magic: u32,
    page: usize,
    ordinal: usize,
    addr: usize,
}

/// Check one page (`pool_chk_page`).
///
/// # Safety
/// `ph` is a header of `g`'s pool, under its lock.
unsafe fn chk_page(
    g: &Inner,
    ph: *mut PageHeader,
) -> Result<usize, (Option<BadMagic>, Option<PoolInconsistency>)> {
    let lay = &g.lay;
    // SAFETY: caller's contract.
    let (page, off, nmissing) =
        unsafe { ((*ph).page, (*ph).off as usize, (*ph).nmissing as usize) };
    if !lay.roflags.contains(PrFlags::NOALIGN)
        && lay.phinpage()
        && raw::page_of(ph.cast(), g.pagemask) != page
    {
        return Err((
            None,
            Some(PoolInconsistency::Page {
                page: page.addr(),
                addr: ph.addr(),
                ordinal: None,
            }),
        ));
    }
    let ipp = lay.itemsperpage;
    let free = if lay.usebmap() {
        // SAFETY: a bitmap header of this pool.
        unsafe { raw::bitmap_count_free(ph, ipp) }
    } else {
        let mut n = 0;
        let mut bad = None;
        let lo = page.addr() + off;
        let hi = lo + ipp * lay.size;
        // SAFETY: a list header of this pool; the walk stops at an item
        // outside the page before following it.
        unsafe {
            raw::freelist_walk(ph, ipp + 1, |item, magic| {
                if magic != PI_MAGIC {
                    bad = Some((
                        Some(BadMagic {
                            magic,
                            page: page.addr(),
                            ordinal: n,
                            addr: item.addr(),
                        }),
                        None,
                    ));
                    return false;
                }
                let a = item.addr();
                let outside = if lay.roflags.contains(PrFlags::NOALIGN) {
                    a < lo || a >= hi
                } else {
                    raw::page_of(item, g.pagemask) != page
                        || a < lo
                        || a >= hi
                        || (a - lo) % lay.size != 0
                };
                if outside {
                    bad = Some((
                        None,
                        Some(PoolInconsistency::Page {
                            page: page.addr(),
                            addr: a,
                            ordinal: Some(n),
                        }),
                    ));
                    return false;
                }
                n += 1;
                true
            });
        }
        if let Some(b) = bad {
            return Err(b);
        }
        n
    };
    if free + nmissing != ipp {
        return Err((
            None,
            Some(PoolInconsistency::Count {
                what: "ph_nmissing",
                counter: nmissing as u64,
                pages: (ipp - free.min(ipp)) as u64,
            }),
        ));
    }
    Ok(free)
}

fn chk_locked(g: &Inner) -> Result<(), (Option<BadMagic>, Option<PoolInconsistency>)> {
    let ipp = g.lay.itemsperpage;
    let (mut npages, mut nitems, mut nidle) = (0u64, 0u64, 0u64);
    for (k, want) in [(EMPTY, "empty"), (FULL, "full"), (PART, "partial")] {
        let mut ph = g.lists[k];
        while !ph.is_null() {
            // SAFETY: a header on one of the pool's lists, under the lock.
            let free = unsafe { chk_page(g, ph)? };
            // SAFETY: as above.
            let nmissing = unsafe { (*ph).nmissing } as usize;
            let ok = match k {
                EMPTY => nmissing == 0,
                FULL => nmissing == ipp,
                _ => nmissing != 0 && nmissing != ipp,
            };
            if !ok {
                let _ = want;
                return Err((
                    None,
                    Some(PoolInconsistency::List(
                        "a page is on the wrong list for its items out",
                    )),
                ));
            }
            npages += 1;
            nitems += free as u64;
            nidle += u64::from(nmissing == 0);
            // SAFETY: as above.
            ph = unsafe { (*ph).next };
        }
    }
    for (what, counter, pages) in [
        ("pr_npages", g.npages as u64, npages),
        ("pr_nitems", g.nitems as u64, nitems),
        ("pr_nidle", g.nidle as u64, nidle),
        ("pr_nout", g.nout as u64, npages * ipp as u64 - nitems),
    ] {
        if counter != pages {
            return Err((
                None,
                Some(PoolInconsistency::Count {
                    what,
                    counter,
                    pages,
                }),
            ));
        }
    }
    let want = if g.lists[PART].is_null() {
        g.lists[EMPTY]
    } else {
        g.lists[PART]
    };
    if g.curpage != want && !(g.curpage.is_null() && g.nitems == 0) {
        // A put may leave a just-emptied-from-full page current (NetBSD's
        // rule makes it current); any page with free items is allowed.
        // SAFETY: as above.
        let cur_ok = !g.curpage.is_null() && unsafe { (*g.curpage).nmissing as usize } < ipp;
        if !cur_ok {
            return Err((
                None,
                Some(PoolInconsistency::List("the current page has no free item")),
            ));
        }
    }
    if g.curpage.is_null() != (g.nitems == 0) {
        return Err((
            None,
            Some(PoolInconsistency::List(
                "curpage is NULL iff nitems is 0: broken",
            )),
        ));
    }
    Ok(())
}

impl RawPool {
    /// `pool_chk`: every page's header is in its page, every free item
    /// carries the magic (else panic "free list modified", as NetBSD) and
    /// lies at an item of its page; and (this port) every counter agrees
    /// with the pages, every page is on the list its items out say, and
    /// the current page has a free item.
    ///
    /// # Panics
    /// "free list modified", with `label` first if given.
    pub fn chk(&self, label: Option<&str>) -> Result<(), PoolInconsistency> {
        let g = self.lock.lock();
        let r = chk_locked(&g);
        drop(g);
        match r {
            Ok(()) => Ok(()),
            Err((Some(b), _)) => {
                let label = label.unwrap_or("");
                panic!(
                    "{label}{}pool({}): free list modified: magic={:x}; page {:#x}; item ordinal {}; addr {:#x}",
                    if label.is_empty() { "" } else { ": " },
                    self.name(),
                    b.magic,
                    b.page,
                    b.ordinal,
                    b.addr
                );
            }
            Err((None, Some(e))) => Err(e),
            Err((None, None)) => Ok(()),
        }
    }

    /// Where `addr` is in this pool, if it is in one of its pages:
    /// (item start, allocated).
    fn locate(&self, addr: usize) -> Option<(usize, bool)> {
        let mut g = self.lock.lock();
        let lay = g.lay;
        let in_page = |ph: *mut PageHeader| {
            // SAFETY: a header of this pool, under the lock.
            let p = unsafe { (*ph).page.addr() };
            p <= addr && addr < p + lay.pagesz
        };
        let mut found: *mut PageHeader = core::ptr::null_mut();
        if lay.phinpage() {
            'lists: for k in [FULL, PART, EMPTY] {
                let mut ph = g.lists[k];
                while !ph.is_null() {
                    if in_page(ph) {
                        found = ph;
                        break 'lists;
                    }
                    // SAFETY: as above.
                    ph = unsafe { (*ph).next };
                }
            }
        } else {
            // SAFETY: the tree of this pool's headers, under the lock.
            let ph = unsafe { raw::tree_find_le(&mut g.tree, addr) };
            if !ph.is_null() && in_page(ph) {
                found = ph;
            }
        }
        if found.is_null() {
            return None;
        }
        let ph = found;
        // SAFETY: a header of this pool, under the lock.
        unsafe {
            let base = (*ph).page.addr() + (*ph).off as usize;
            if addr < base {
                return Some(((*ph).page.addr(), true));
            }
            let idx = (addr - base) / lay.size;
            let item = base + idx * lay.size;
            if idx >= lay.itemsperpage {
                return Some((item, false));
            }
            let allocated = if lay.usebmap() {
                !raw::bitmap_is_free(ph, idx)
            } else {
                let mut free = false;
                raw::freelist_walk(ph, lay.itemsperpage, |it, _| {
                    if it.addr() == item {
                        free = true;
                    }
                    !free
                });
                !free
            };
            Some((item, allocated))
        }
    }

    /// `pool_printit(pp, modif, pr)`: `s` one summary line, `p` page lists,
    /// `S` nothing for a pool never used.
    pub fn printit(&self, modif: &str, w: &mut dyn Write) -> fmt::Result {
        let s = self.stats();
        if modif.contains('S') && s.nget == 0 {
            return Ok(());
        }
        if modif.contains('s') {
            return writeln!(
                w,
                "POOL {}:{:p}:{}:{}:{}:{}:{}:{}:{}:{}:{}:{}",
                s.name,
                self,
                s.size,
                s.align,
                s.npages,
                s.nitems,
                s.nout,
                s.nget,
                s.nput,
                s.npagealloc,
                s.npagefree,
                s.nidle
            );
        }
        writeln!(
            w,
            "POOL {}: size {}, align {}, ioff {}, roflags 0x{:08x}",
            s.name,
            s.size,
            s.align,
            s.itemoffset,
            s.flags.bits()
        )?;
        writeln!(w, "\tpool {:p}", self)?;
        writeln!(
            w,
            "\tminitems {}, minpages {}, maxpages {}, npages {}",
            s.minitems, s.minpages, s.maxpages, s.npages
        )?;
        writeln!(
            w,
            "\titemsperpage {}, nitems {}, nout {}, hardlimit {}",
            s.itemsperpage, s.nitems, s.nout, s.hardlimit
        )?;
        writeln!(w, "\tnget {}, nfail {}, nput {}", s.nget, s.nfail, s.nput)?;
        writeln!(
            w,
            "\tnpagealloc {}, npagefree {}, hiwat {}, nidle {}",
            s.npagealloc, s.npagefree, s.hiwat, s.nidle
        )?;
        if modif.contains('p') {
            self.print_pagelists(w)?;
        }
        writeln!(w)
    }

    /// The page lists, in batches of up to 32 pages copied under the lock.
    fn print_pagelists(&self, w: &mut dyn Write) -> fmt::Result {
        const BATCH: usize = 32;
        for (k, title) in [
            (EMPTY, "empty page list"),
            (FULL, "full page list"),
            (PART, "partial-page list"),
        ] {
            let mut skip = 0;
            let mut first = true;
            loop {
                let mut snap = [(0usize, 0u16, 0u32); BATCH];
                let mut n = 0;
                {
                    let g = self.lock.lock();
                    let mut ph = g.lists[k];
                    let mut i = 0;
                    while !ph.is_null() && n < BATCH {
                        if i >= skip {
                            // SAFETY: a header on the list, under the lock.
                            snap[n] = unsafe { ((*ph).page.addr(), (*ph).nmissing, (*ph).time) };
                            n += 1;
                        }
                        i += 1;
                        // SAFETY: as above.
                        ph = unsafe { (*ph).next };
                    }
                }
                if n > 0 && first {
                    writeln!(w, "\n\t{title}:")?;
                    first = false;
                }
                for &(page, nmissing, time) in &snap[..n] {
                    writeln!(w, "\t\tpage {page:#x}, nmissing {nmissing}, time {time}")?;
                }
                if n < BATCH {
                    break;
                }
                skip += n;
            }
        }
        let cur = {
            let g = self.lock.lock();
            // SAFETY: the current page is a header of this pool.
            (!g.curpage.is_null()).then(|| unsafe { (*g.curpage).page.addr() })
        };
        match cur {
            None => writeln!(w, "\tno current page"),
            Some(p) => writeln!(w, "\tcurpage {p:#x}"),
        }
    }
}

/// `pool_whatis(addr, pr)`: which pool's item `addr` lies in, as
/// "ADDR is ITEM+OFF in POOL 'NAME' (allocated|free)".
pub fn pool_whatis(addr: usize, w: &mut dyn Write) -> fmt::Result {
    let mut res = Ok(());
    for_each_pool(|pp| {
        if res.is_err() || !pp.is_initialized() {
            return;
        }
        if let Some((item, allocated)) = pp.locate(addr) {
            res = writeln!(
                w,
                "{addr:#x} is {item:#x}+{} in POOL '{}' ({})",
                addr - item,
                pp.name(),
                if allocated { "allocated" } else { "free" }
            );
        }
    });
    res
}

/// `pool_printall(modif, pr)`: [`RawPool::printit`] for every pool.
pub fn pool_printall(modif: &str, w: &mut dyn Write) -> fmt::Result {
    let mut res = Ok(());
    for_each_pool(|pp| {
        if res.is_ok() && pp.is_initialized() {
            res = pp.printit(modif, w);
        }
    });
    res
}
