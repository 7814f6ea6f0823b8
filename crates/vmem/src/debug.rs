//! Statistics, `vmem_dump`, `vmem_whatis`, `vmem_printall`, and the
//! `VMEM_SANITY` walker.

use core::fmt::{self, Write};
use core::ptr;

use crate::arena::Arena;
use crate::bt::{BT_TYPE_BUSY, BT_TYPE_CURSOR, BT_TYPE_FREE, BT_TYPE_SPAN, BoundaryTag, type_name};
use crate::flags::VMEM_MAXORDER;
use crate::inner::{Counters, Inner};
use crate::registry::for_each_arena;

/// A snapshot of an arena's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArenaStats {
    /// Name.
    pub name: &'static str,
    /// Quantum.
    pub quantum: usize,
    /// Bytes of all spans (`vm_size`).
    pub size: usize,
    /// Bytes in busy segments (`vm_inuse`).
    pub inuse: usize,
    /// Busy segments.
    pub nbusy: usize,
    /// High-water mark of busy segments (decaying).
    pub maxbusy: usize,
    /// Free segments.
    pub nfree: usize,
    /// Spans, and how many of them were imported.
    pub nspans: usize,
    /// Imported spans.
    pub nimported: usize,
    /// Busy-hash buckets.
    pub hash_size: usize,
    /// Spare tags held by the arena.
    pub spare_tags: usize,
    /// Event counters.
    pub counters: Counters,
}

impl fmt::Display for ArenaStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "vmem '{}': quantum {:#x}, size {:#x}, inuse {:#x}, free {:#x}",
            self.name,
            self.quantum,
            self.size,
            self.inuse,
            self.size - self.inuse
        )?;
        writeln!(
            f,
            "  segments: {} busy (max {}), {} free; spans: {} ({} imported); hash {} buckets; {} spare tags",
            self.nbusy,
            self.maxbusy,
            self.nfree,
            self.nspans,
            self.nimported,
            self.hash_size,
            self.spare_tags
        )?;
        let c = &self.counters;
        write!(
            f,
            "  allocs {}, frees {}, failures {}, imports {} ({} refused), releases {}, sleeps {}, rehashes {}, instantfit fallbacks {}",
            c.allocs,
            c.frees,
            c.failures,
            c.imports,
            c.import_failures,
            c.releases,
            c.sleeps,
            c.rehashes,
            c.instantfit_fallbacks
        )
    }
}

/// Why the sanity walker rejected an arena (`VMEM_SANITY`'s "insanity").
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Insanity {
    /// A tag ends before it starts, or has size 0.
    #[error("insanity vmem: tag {start:#x}+{size:#x} is inverted or empty")]
    Inverted {
        /// Start.
        start: usize,
        /// Size.
        size: usize,
    },
    /// Two spans, or two segments, overlap.
    #[error("insanity vmem: [{a:#x}, +{asz:#x}) overlaps [{b:#x}, +{bsz:#x})")]
    Overlap {
        /// First start.
        a: usize,
        /// First size.
        asz: usize,
        /// Second start.
        b: usize,
        /// Second size.
        bsz: usize,
    },
    /// A span's segments do not tile it exactly.
    #[error(
        "insanity vmem: segments of span {span:#x}+{size:#x} do not tile it (gap or overrun at {at:#x})"
    )]
    Tiling {
        /// Span start.
        span: usize,
        /// Span size.
        size: usize,
        /// Where the tiling broke.
        at: usize,
    },
    /// Two free neighbours were not coalesced.
    #[error("insanity vmem: free neighbours at {a:#x} and {b:#x} not coalesced")]
    Uncoalesced {
        /// First.
        a: usize,
        /// Second.
        b: usize,
    },
    /// A free segment is on the wrong free list or on none.
    #[error("insanity vmem: free segment {start:#x}+{size:#x} is not on free list {list}")]
    FreeList {
        /// Start.
        start: usize,
        /// Size.
        size: usize,
        /// The list it belongs on.
        list: usize,
    },
    /// A busy segment is not in the hash.
    #[error("insanity vmem: busy segment {start:#x} is missing from the busy hash")]
    Hash {
        /// Start.
        start: usize,
    },
    /// A total disagrees with the tags.
    #[error("insanity vmem: {what}: counted {counted:#x}, recorded {recorded:#x}")]
    Totals {
        /// Which total.
        what: &'static str,
        /// From the tags.
        counted: usize,
        /// From the arena.
        recorded: usize,
    },
    /// A segment lies outside every span, or before its span's tag.
    #[error("insanity vmem: segment {start:#x} lies outside its span")]
    Orphan {
        /// Start.
        start: usize,
    },
}

impl Arena {
    /// A statistics snapshot.
    pub fn stats(&self) -> ArenaStats {
        let g = self.lock.lock();
        ArenaStats {
            name: self.name(),
            quantum: self.quantum(),
            size: g.size,
            inuse: g.inuse,
            nbusy: g.hash.nbusy,
            maxbusy: g.hash.maxbusy,
            nfree: g.nfree_segs,
            nspans: g.nspans,
            nimported: g.nimported,
            hash_size: g.hash.size,
            spare_tags: g.nspare,
            counters: g.stats,
        }
    }

    /// `vmem_dump`: the arena header, every tag in segment-list order, then
    /// every non-empty free list.
    ///
    /// The writer is unknown code (it may allocate, block, or take this
    /// arena's lock), so it is never called with the arena lock held: tags
    /// are copied in batches of 64 under the lock and written after it is
    /// dropped. Between batches the walk resumes after the last tag copied
    /// if the arena did not change, else by position, after a line saying
    /// that it changed (the dump is then not one consistent snapshot).
    pub fn dump(&self, w: &mut dyn Write) -> fmt::Result {
        writeln!(w, "vmem {:p} '{}'", self, self.name())?;
        self.dump_list(w, None)?;
        for i in 0..VMEM_MAXORDER {
            self.dump_list(w, Some(i))?;
        }
        Ok(())
    }

    /// Dump the segment list (`None`) or free list `i`, batch by batch.
    fn dump_list(&self, w: &mut dyn Write, list: Option<usize>) -> fmt::Result {
        let next_of = |t: &BoundaryTag| match list {
            None => t.seg_next,
            Some(_) => t.link_next,
        };
        let mut batch = [TagSnap::EMPTY; DUMP_BATCH];
        // Where the last batch ended: its last tag, the arena generation
        // then, and how many tags of the list were written.
        let mut last: *mut BoundaryTag = ptr::null_mut();
        let mut seen = 0;
        let mut written = 0usize;
        loop {
            let mut changed = false;
            let mut n = 0;
            {
                let g = self.lock.lock();
                let head = match list {
                    None => g.seg_head,
                    Some(i) => g.freelist[i],
                };
                let mut bt = if written == 0 {
                    head
                } else if g.generation == seen {
                    // SAFETY: unchanged since the last batch: `last` is
                    // still on this list.
                    next_of(unsafe { &*last })
                } else {
                    // O(n), but only after a change.
                    changed = true;
                    let mut p = head;
                    let mut k = 0;
                    while !p.is_null() && k < written {
                        // SAFETY: walking our own list under the lock.
                        p = next_of(unsafe { &*p });
                        k += 1;
                    }
                    p
                };
                while !bt.is_null() && n < DUMP_BATCH {
                    // SAFETY: as above.
                    let t = unsafe { &*bt };
                    batch[n] = TagSnap {
                        ptr: bt,
                        start: t.start,
                        size: t.size,
                        typ: t.typ,
                    };
                    n += 1;
                    last = bt;
                    bt = next_of(t);
                }
                seen = g.generation;
            }
            if changed {
                writeln!(
                    w,
                    "\t(arena changed while being dumped; resuming at tag {written})"
                )?;
            }
            if written == 0
                && n > 0
                && let Some(i) = list
            {
                writeln!(w, "freelist[{i}]")?;
            }
            for s in &batch[..n] {
                write_tag(w, s)?;
            }
            written += n;
            if n < DUMP_BATCH {
                return Ok(());
            }
        }
    }

    /// The segment (not span) containing `addr`: (start, size, busy).
    pub fn lookup(&self, addr: usize) -> Option<(usize, usize, bool)> {
        let g = self.lock.lock();
        let mut bt = g.seg_head;
        while !bt.is_null() {
            // SAFETY: walking our own list under the lock.
            let t = unsafe { &*bt };
            if (t.typ == BT_TYPE_FREE || t.typ == BT_TYPE_BUSY)
                && t.start <= addr
                && addr <= t.end()
            {
                return Some((t.start, t.size, t.typ == BT_TYPE_BUSY));
            }
            bt = t.seg_next;
        }
        None
    }

    /// The `VMEM_SANITY` walker, and more: tags not inverted, spans and
    /// segments never overlapping, each span tiled exactly by its segments,
    /// free neighbours coalesced, every free segment on its proper free list
    /// and every busy one in the hash, totals consistent.
    pub fn check(&self) -> Result<(), Insanity> {
        let mut g = self.lock.lock();
        check_inner(&mut g, self.quantum().trailing_zeros())
    }

    /// [`Arena::check`], panicking with the insanity.
    #[track_caller]
    pub fn assert_sane(&self) {
        if let Err(e) = self.check() {
            panic!("{e} (arena '{}')", self.name());
        }
    }
}

/// Tags `dump` copies per hold of the arena lock.
const DUMP_BATCH: usize = 64;

/// What `dump` prints of a tag, copied under the lock.
#[derive(Clone, Copy)]
struct TagSnap {
    ptr: *const BoundaryTag,
    start: usize,
    size: usize,
    typ: u8,
}

impl TagSnap {
    const EMPTY: TagSnap = TagSnap {
        ptr: ptr::null(),
        start: 0,
        size: 0,
        typ: 0,
    };
}

/// One tag as `vmem_dump` prints it: `<tagptr>: <start>, <size>, <type#>(<name>)`.
fn write_tag(w: &mut dyn Write, t: &TagSnap) -> fmt::Result {
    writeln!(
        w,
        "\t{:p}: {:#x}, {:#x}, {}({})",
        t.ptr,
        t.start,
        t.size,
        t.typ,
        type_name(t.typ)
    )
}

/// Whether `bt` is on the `link_*` list that starts at `head`.
///
/// # Safety
/// `head` is null or the head of a list of this arena's tags (lock held).
unsafe fn on_list(head: *mut BoundaryTag, bt: *const BoundaryTag) -> bool {
    let mut p = head;
    while !p.is_null() {
        if ptr::eq(p, bt) {
            return true;
        }
        // SAFETY: list members are valid (caller's contract).
        p = unsafe { (*p).link_next };
    }
    false
}

/// Every pair of span tags, for overlap: O(spans²) walks of the segment
/// list, no memory. Tags are already known not to be inverted.
fn spans_overlap(g: &Inner) -> Result<(), Insanity> {
    let mut a = g.seg_head;
    while !a.is_null() {
        // SAFETY: walking our own list under the lock.
        let ta = unsafe { &*a };
        if ta.is_span() {
            let mut b = ta.seg_next;
            while !b.is_null() {
                // SAFETY: as above.
                let tb = unsafe { &*b };
                if tb.is_span() && tb.start <= ta.end() && ta.start <= tb.end() {
                    return Err(Insanity::Overlap {
                        a: ta.start,
                        asz: ta.size,
                        b: tb.start,
                        bsz: tb.size,
                    });
                }
                b = tb.seg_next;
            }
        }
        a = ta.seg_next;
    }
    Ok(())
}

fn check_inner(g: &mut Inner, qshift: u32) -> Result<(), Insanity> {
    let (mut size, mut inuse, mut nbusy, mut nfree, mut nspans) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    // Span overlap, without allocating: while spans come in strictly
    // increasing address order (the usual case: added bottom-up), each
    // starting past the previous one's end, none can overlap and this one
    // pass suffices. Otherwise `spans_overlap` compares every pair.
    let mut prev_span_end: Option<usize> = None;
    let mut spans_sorted = true;
    let mut bt = g.seg_head;
    // The current span and where its next segment must start.
    let mut cur: Option<(usize, usize, usize)> = None;
    let mut prev_free: Option<usize> = None;
    while !bt.is_null() {
        // SAFETY: walking our own list under the lock.
        let t = unsafe { &*bt };
        let next = t.seg_next;
        if t.typ == BT_TYPE_CURSOR {
            bt = next;
            continue;
        }
        if t.size == 0 || t.start.checked_add(t.size - 1).is_none() {
            return Err(Insanity::Inverted {
                start: t.start,
                size: t.size,
            });
        }
        if t.is_span() {
            if let Some((s, z, at)) = cur
                && at != s.wrapping_add(z)
            {
                return Err(Insanity::Tiling {
                    span: s,
                    size: z,
                    at,
                });
            }
            nspans += 1;
            size += t.size;
            if prev_span_end.is_some_and(|e| t.start <= e) {
                spans_sorted = false;
            }
            prev_span_end = Some(t.end());
            cur = Some((t.start, t.size, t.start));
            prev_free = None;
        } else {
            let Some((s, z, at)) = cur else {
                return Err(Insanity::Orphan { start: t.start });
            };
            if t.start != at || t.end() > s + (z - 1) {
                return Err(Insanity::Tiling {
                    span: s,
                    size: z,
                    at: t.start,
                });
            }
            cur = Some((s, z, t.start.wrapping_add(t.size)));
            if t.typ == BT_TYPE_FREE {
                if let Some(pf) = prev_free {
                    return Err(Insanity::Uncoalesced { a: pf, b: t.start });
                }
                let list = Inner::list_floor(t.size >> qshift);
                // SAFETY: a free-list head of this arena, under its lock.
                if list >= VMEM_MAXORDER || !unsafe { on_list(g.freelist[list], t) } {
                    return Err(Insanity::FreeList {
                        start: t.start,
                        size: t.size,
                        list,
                    });
                }
                nfree += 1;
                prev_free = Some(t.start);
            } else if t.typ == BT_TYPE_BUSY {
                if !ptr::eq(g.hash.lookup(t.start), t) {
                    return Err(Insanity::Hash { start: t.start });
                }
                nbusy += 1;
                inuse += t.size;
                prev_free = None;
            } else {
                return Err(Insanity::Orphan { start: t.start });
            }
        }
        bt = next;
    }
    if let Some((s, z, at)) = cur
        && at != s.wrapping_add(z)
    {
        return Err(Insanity::Tiling {
            span: s,
            size: z,
            at,
        });
    }
    if !spans_sorted {
        spans_overlap(g)?;
    }
    let checks = [
        ("vm_size", size, g.size),
        ("vm_inuse", inuse, g.inuse),
        ("busy tags", nbusy, g.hash.nbusy),
        ("free segments", nfree, g.nfree_segs),
        ("spans", nspans, g.nspans),
    ];
    for (what, counted, recorded) in checks {
        if counted != recorded {
            return Err(Insanity::Totals {
                what,
                counted,
                recorded,
            });
        }
    }
    let imported = {
        let mut n = 0;
        let mut p = g.seg_head;
        while !p.is_null() {
            // SAFETY: as above.
            unsafe {
                if (*p).typ == BT_TYPE_SPAN {
                    n += 1;
                }
                p = (*p).seg_next;
            }
        }
        n
    };
    if imported != g.nimported {
        return Err(Insanity::Totals {
            what: "imported spans",
            counted: imported,
            recorded: g.nimported,
        });
    }
    Ok(())
}

/// `vmem_whatis`: describe `addr` against every registered arena, as
/// "addr is start+offset in VMEM 'name' (allocated|free)".
pub fn vmem_whatis(addr: usize, w: &mut dyn Write) -> fmt::Result {
    let mut res = Ok(());
    for_each_arena(|a| {
        if let Some((start, _size, busy)) = a.lookup(addr)
            && res.is_ok()
        {
            res = writeln!(
                w,
                "{addr:#x} is {start:#x}+{:#x} in VMEM '{}' ({})",
                addr - start,
                a.name(),
                if busy { "allocated" } else { "free" }
            );
        }
    });
    res
}

/// `vmem_printall`: dump every registered arena.
pub fn vmem_printall(w: &mut dyn Write) -> fmt::Result {
    let mut res = Ok(());
    for_each_arena(|a| {
        if res.is_ok() {
            res = a.dump(w);
        }
    });
    res
}

#[cfg(test)]
mod tests {
    //! The overlap check against spans no public entry point would create
    //! (`vmem_add` does not check for overlap, as in NetBSD, but a test
    //! should not depend on that): a bad span is put in through `Inner`.
    use super::*;
    use crate::bt::BT_TYPE_SPAN_STATIC;
    use crate::flags::VmFlags;

    /// Append span `[addr, addr+size)` with its free segment directly.
    fn inject_span(a: &Arena, addr: usize, size: usize) {
        let g = a.lock.lock();
        let mut g = a.refill(g, VmFlags::NOSLEEP, 2).unwrap();
        g.add_span(
            addr,
            size,
            BT_TYPE_SPAN_STATIC,
            a.quantum().trailing_zeros(),
        );
    }

    #[test]
    fn an_overlap_between_the_first_and_the_seventy_first_span_is_found() {
        let a = Arena::create("overlap", 0, 0x100, 0x10).unwrap();
        for i in 1..70 {
            a.add(i * 0x1000, 0x100, VmFlags::NOSLEEP).unwrap();
        }
        assert_eq!(a.check(), Ok(()), "70 disjoint spans, in order");
        // The 71st span overlaps the 1st only.
        inject_span(&a, 0x80, 0x100);
        assert_eq!(
            a.check(),
            Err(Insanity::Overlap {
                a: 0,
                asz: 0x100,
                b: 0x80,
                bsz: 0x100
            })
        );
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "outgrows the static tags: the default meta source maps OS pages"
    )]
    fn many_disjoint_spans_out_of_order_are_sane() {
        // Decreasing addresses: the pairwise path, with no false positive.
        let a = Arena::create("unordered", 0x100_0000, 0x100, 0x10).unwrap();
        for i in (0..100).rev() {
            a.add(i * 0x1000, 0x100, VmFlags::NOSLEEP).unwrap();
        }
        assert_eq!(a.check(), Ok(()));
        // Adjacent spans touch but do not overlap.
        inject_span(&a, 0x100_0100, 0x100);
        assert_eq!(a.check(), Ok(()));
        inject_span(&a, 0x100_01f0, 0x10);
        assert!(matches!(a.check(), Err(Insanity::Overlap { .. })));
    }

    #[test]
    fn an_overlap_with_the_previous_span_leaves_the_fast_path_and_is_found() {
        let a = Arena::create("inorder", 0, 0x100, 0x10).unwrap();
        inject_span(&a, 0xf0, 0x100);
        assert!(matches!(a.check(), Err(Insanity::Overlap { .. })));
    }
}
