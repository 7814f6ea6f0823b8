//! Raw pointers in one place: the page header (`struct pool_item_header`)
//! and its fields, the three page lists, the free-item list and bitmap,
//! the splay tree of off-page headers, item arithmetic inside a page, and
//! the redzone bytes.
//!
//! Every pointer here is derived from the allocation it lies in — a page
//! from the back-end allocator, a header item from a header pool — with
//! `add` and `map_addr` (strict provenance), never from an integer, so
//! Miri can check it. A header pointer is only as good as the list or tree
//! it was found on, under the pool lock: every function that follows a
//! pointer its caller passes is `unsafe`, with that membership as its
//! contract.

use core::mem::{offset_of, size_of};
use core::ptr;

use crate::flags::{ALIGNBYTES, PI_MAGIC, POOL_REDZONE_SIZE};

/// `ph_u1`: the splay links of an off-page header, or the pool id of an
/// on-page one.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) union U1 {
    pub(crate) tree: [*mut PageHeader; 2],
    pub(crate) poolid: u32,
}

/// `ph_u2`: the free-item list head, or the first bitmap words (the bitmap
/// goes on past the end of the struct, into the header's spare room).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) union U2 {
    pub(crate) list: *mut u8,
    pub(crate) bitmap: [u32; size_of::<usize>() / 4],
}

/// NetBSD's `struct pool_item_header`, field for field, so that its size
/// (`PHSIZE`) and the room its bitmap has are NetBSD's.
#[repr(C)]
pub(crate) struct PageHeader {
    /// `ph_pagelist`.
    pub(crate) next: *mut PageHeader,
    pub(crate) prev: *mut PageHeader,
    pub(crate) u1: U1,
    /// `ph_page`.
    pub(crate) page: *mut u8,
    /// `ph_time`: uptime seconds when the page last became empty.
    pub(crate) time: u32,
    /// `ph_nmissing`: items of the page that are out.
    pub(crate) nmissing: u16,
    /// `ph_off`: where the page's first item starts (header and colour).
    pub(crate) off: u16,
    pub(crate) u2: U2,
}

/// `PHSIZE`: the header rounded to `ALIGN`.
pub(crate) const PHSIZE: usize = size_of::<PageHeader>().next_multiple_of(ALIGNBYTES);
/// `offsetof(struct pool_item_header, ph_bitmap[0])`.
pub(crate) const PH_BITMAP_OFFSET: usize = offset_of!(PageHeader, u2);
/// `BITMAP_MIN_SIZE`: bits of bitmap the header holds itself.
pub(crate) const BITMAP_MIN_BITS: usize = 8 * size_of::<U2>();

/// NetBSD's `struct pool_item` without the magic: a `LIST_ENTRY`.
#[repr(C)]
struct PoolItem {
    next: *mut u8,
    _le_prev: *mut u8,
}

/// With `POOL_CHECK_MAGIC`: the magic first, then the link.
#[repr(C)]
struct PoolItemMagic {
    magic: u32,
    next: *mut u8,
    _le_prev: *mut u8,
}

/// The smallest item of a pool that writes into free items.
pub(crate) const POOL_ITEM_SIZE: usize = size_of::<PoolItem>();
/// The same with the magic.
pub(crate) const POOL_ITEM_SIZE_MAGIC: usize = size_of::<PoolItemMagic>();

const MAGIC: bool = cfg!(feature = "magic");

impl PageHeader {
    /// A header with every link null (the splay tree's scratch node, and
    /// what `prime` starts from).
    pub(crate) const EMPTY: PageHeader = PageHeader {
        next: ptr::null_mut(),
        prev: ptr::null_mut(),
        u1: U1 {
            tree: [ptr::null_mut(); 2],
        },
        page: ptr::null_mut(),
        time: 0,
        nmissing: 0,
        off: 0,
        u2: U2 {
            list: ptr::null_mut(),
        },
    };
}

// ---- the page lists (`LIST_*` over `ph_pagelist`) ----

/// Push `ph` at the head of the list at `*head`.
///
/// # Safety
/// `head` points at a valid list head; `ph` is a valid header on no list.
pub(crate) unsafe fn list_push(head: *mut *mut PageHeader, ph: *mut PageHeader) {
    // SAFETY: caller's contract.
    unsafe {
        (*ph).prev = ptr::null_mut();
        (*ph).next = *head;
        if !(*head).is_null() {
            (**head).prev = ph;
        }
        *head = ph;
    }
}

/// Unlink `ph` from the list at `*head`.
///
/// # Safety
/// `ph` is on the list whose head `head` points at.
pub(crate) unsafe fn list_remove(head: *mut *mut PageHeader, ph: *mut PageHeader) {
    // SAFETY: caller's contract.
    unsafe {
        let (next, prev) = ((*ph).next, (*ph).prev);
        if prev.is_null() {
            debug_assert!(*head == ph, "pool: page list head mismatch");
            *head = next;
        } else {
            (*prev).next = next;
        }
        if !next.is_null() {
            (*next).prev = prev;
        }
        (*ph).next = ptr::null_mut();
        (*ph).prev = ptr::null_mut();
    }
}

/// Move `ph` from the list at `*from` to the head of the list at `*to`.
///
/// # Safety
/// As [`list_remove`] and [`list_push`].
pub(crate) unsafe fn list_move(
    from: *mut *mut PageHeader,
    to: *mut *mut PageHeader,
    ph: *mut PageHeader,
) {
    // SAFETY: caller's contract.
    unsafe {
        list_remove(from, ph);
        list_push(to, ph);
    }
}

// ---- item arithmetic ----

/// Item `idx` of the page `ph` describes.
///
/// # Safety
/// `ph` is a valid header of a primed page; `idx < itemsperpage`.
#[inline]
pub(crate) unsafe fn item_at(ph: *const PageHeader, size: usize, idx: usize) -> *mut u8 {
    // SAFETY: caller's contract: the item lies inside the page, whose
    // pointer carries the page's provenance.
    unsafe { (*ph).page.add((*ph).off as usize + idx * size) }
}

/// The page an item of an aligned pool lies in (`item & pagemask`), with
/// the item's provenance (which is its page's).
#[inline]
pub(crate) fn page_of(item: *mut u8, pagemask: usize) -> *mut u8 {
    item.map_addr(|a| a & pagemask)
}

/// Item index of `item` in the page `ph` describes (callers check that it
/// is below `itemsperpage`: an item below the item area wraps high).
///
/// # Safety
/// `ph` is a valid header.
#[cfg(test)]
pub(crate) unsafe fn item_index(ph: *const PageHeader, size: usize, item: *const u8) -> usize {
    // SAFETY: caller's contract.
    let base = unsafe { (*ph).page.addr() + (*ph).off as usize };
    item.addr().wrapping_sub(base) / size
}

// ---- free-item list ----

/// Push a free item on the page's list (`pr_item_linkedlist_put`),
/// writing the magic first with the `magic` feature.
///
/// # Safety
/// `ph` is a valid list-managed header; `item` is one of its page's items,
/// not on the list, at least `POOL_ITEM_SIZE[_MAGIC]` bytes, aligned.
#[inline]
pub(crate) unsafe fn freelist_push(ph: *mut PageHeader, item: *mut u8) {
    // SAFETY: caller's contract; the item is pointer-aligned (align ≥ 8)
    // and large enough for the record.
    unsafe {
        let head = (*ph).u2.list;
        if MAGIC {
            let pi = item.cast::<PoolItemMagic>();
            (*pi).magic = PI_MAGIC;
            (*pi).next = head;
        } else {
            (*item.cast::<PoolItem>()).next = head;
        }
        (*ph).u2.list = item;
    }
}

/// Pop a free item (`pr_item_linkedlist_get`): the item and, with the
/// `magic` feature, the magic it held (any other value than
/// [`PI_MAGIC`] means it was written after it was freed).
///
/// # Safety
/// `ph` is a valid list-managed header with a non-empty list.
#[inline]
pub(crate) unsafe fn freelist_pop(ph: *mut PageHeader) -> (*mut u8, u32) {
    // SAFETY: caller's contract; every item on the list was pushed by
    // `freelist_push` or `prime`.
    unsafe {
        let item = (*ph).u2.list;
        if MAGIC {
            let pi = item.cast::<PoolItemMagic>();
            (*ph).u2.list = (*pi).next;
            (item, (*pi).magic)
        } else {
            (*ph).u2.list = (*item.cast::<PoolItem>()).next;
            (item, PI_MAGIC)
        }
    }
}

/// The free items of a list-managed page, for checks: calls `f(item,
/// magic)` for each, at most `limit` of them (a corrupted list may loop).
///
/// # Safety
/// `ph` is a valid list-managed header.
pub(crate) unsafe fn freelist_walk(
    ph: *const PageHeader,
    limit: usize,
    mut f: impl FnMut(*mut u8, u32) -> bool,
) {
    // SAFETY: caller's contract; the walk stops at `limit` or when `f`
    // says so (an item outside the page must not be followed).
    unsafe {
        let mut item = (*ph).u2.list;
        let mut n = 0;
        while !item.is_null() && n < limit {
            let (next, magic) = if MAGIC {
                let pi = item.cast::<PoolItemMagic>();
                ((*pi).next, (*pi).magic)
            } else {
                ((*item.cast::<PoolItem>()).next, PI_MAGIC)
            };
            if !f(item, magic) {
                return;
            }
            item = next;
            n += 1;
        }
    }
}

// ---- bitmap (`PR_USEBMAP`): a set bit is a free item ----

/// # Safety
/// `ph` is a valid bitmap header whose memory holds `ceil(n/32)` words.
#[inline]
unsafe fn bitmap_word(ph: *mut PageHeader, w: usize) -> *mut u32 {
    // SAFETY: caller's contract: the header memory (a header-pool item or
    // the on-page header's rounded room) holds the words.
    unsafe { ph.cast::<u8>().add(PH_BITMAP_OFFSET).cast::<u32>().add(w) }
}

/// Mark every item free (`pr_item_bitmap_init`: whole words of ones).
///
/// # Safety
/// `ph` is a valid bitmap header for `ipp` items.
pub(crate) unsafe fn bitmap_init(ph: *mut PageHeader, ipp: usize) {
    for w in 0..ipp.div_ceil(32) {
        // SAFETY: caller's contract.
        unsafe { bitmap_word(ph, w).write(u32::MAX) };
    }
}

/// Take the lowest free index (`pr_item_bitmap_get`).
///
/// # Safety
/// `ph` is a valid bitmap header with fewer than `ipp` items out.
#[inline]
pub(crate) unsafe fn bitmap_get(ph: *mut PageHeader, ipp: usize) -> usize {
    let mut w = 0;
    loop {
        debug_assert!(w * 32 < ipp, "pool: bitmap page empty");
        // SAFETY: caller's contract: a free bit exists below `ipp`.
        unsafe {
            let p = bitmap_word(ph, w);
            let v = p.read();
            if v != 0 {
                let bit = v.trailing_zeros() as usize;
                p.write(v & !(1 << bit));
                return w * 32 + bit;
            }
        }
        w += 1;
    }
}

/// Mark index `idx` free (`pr_item_bitmap_put`); `false` if it already
/// was (a double free), leaving the bitmap unchanged.
///
/// # Safety
/// `ph` is a valid bitmap header; `idx < ipp`.
#[inline]
pub(crate) unsafe fn bitmap_put(ph: *mut PageHeader, idx: usize) -> bool {
    // SAFETY: caller's contract.
    unsafe {
        let p = bitmap_word(ph, idx / 32);
        let v = p.read();
        let mask = 1u32 << (idx % 32);
        if v & mask != 0 {
            return false;
        }
        p.write(v | mask);
        true
    }
}

/// Whether index `idx` is free.
///
/// # Safety
/// `ph` is a valid bitmap header; `idx < ipp`.
pub(crate) unsafe fn bitmap_is_free(ph: *mut PageHeader, idx: usize) -> bool {
    // SAFETY: caller's contract.
    unsafe { bitmap_word(ph, idx / 32).read() & (1 << (idx % 32)) != 0 }
}

/// Free items below `ipp` (for checks).
///
/// # Safety
/// `ph` is a valid bitmap header for `ipp` items.
pub(crate) unsafe fn bitmap_count_free(ph: *mut PageHeader, ipp: usize) -> usize {
    (0..ipp.div_ceil(32))
        .map(|w| {
            let bits = (ipp - w * 32).min(32);
            let mask = if bits == 32 {
                u32::MAX
            } else {
                (1 << bits) - 1
            };
            // SAFETY: caller's contract.
            (unsafe { bitmap_word(ph, w).read() } & mask).count_ones() as usize
        })
        .sum()
}

// ---- splay tree of off-page headers, keyed by page address ----

#[inline]
fn key(ph: *const PageHeader) -> usize {
    // SAFETY: every node handed to the tree functions is a valid header
    // (their callers' contract).
    unsafe { (*ph).page.addr() }
}

#[inline]
unsafe fn l(ph: *mut PageHeader) -> *mut *mut PageHeader {
    // SAFETY: caller's contract: a valid off-page header (the union holds
    // tree links). The place is derived from `ph`, not read through a
    // reference.
    unsafe { ptr::addr_of_mut!((*ph).u1.tree[0]) }
}

#[inline]
unsafe fn r(ph: *mut PageHeader) -> *mut *mut PageHeader {
    // SAFETY: as `l`.
    unsafe { ptr::addr_of_mut!((*ph).u1.tree[1]) }
}

/// Top-down splay (Sleator and Tarjan): bring the node with key `k`, or
/// the last node on its search path, to the root.
///
/// # Safety
/// `root` is null or the root of a valid tree of off-page headers.
unsafe fn splay(root: *mut PageHeader, k: usize) -> *mut PageHeader {
    if root.is_null() {
        return root;
    }
    let mut scratch = PageHeader::EMPTY;
    let n: *mut PageHeader = &mut scratch;
    let (mut left, mut right, mut t) = (n, n, root);
    // SAFETY: caller's contract: every node reached is a valid header of
    // the tree; `n` is the local scratch node.
    unsafe {
        loop {
            if k < key(t) {
                let mut tl = *l(t);
                if tl.is_null() {
                    break;
                }
                if k < key(tl) {
                    *l(t) = *r(tl);
                    *r(tl) = t;
                    t = tl;
                    tl = *l(t);
                    if tl.is_null() {
                        break;
                    }
                }
                *l(right) = t;
                right = t;
                t = tl;
            } else if k > key(t) {
                let mut tr = *r(t);
                if tr.is_null() {
                    break;
                }
                if k > key(tr) {
                    *r(t) = *l(tr);
                    *l(tr) = t;
                    t = tr;
                    tr = *r(t);
                    if tr.is_null() {
                        break;
                    }
                }
                *r(left) = t;
                left = t;
                t = tr;
            } else {
                break;
            }
        }
        *r(left) = *l(t);
        *l(right) = *r(t);
        *l(t) = *r(n);
        *r(t) = *l(n);
    }
    t
}

/// Insert `ph` (whose `page` is set) into the tree at `*root`; `false` if
/// a header for that page is already there (nothing changes then).
///
/// # Safety
/// `*root` is null or the root of a valid tree; `ph` is a valid header
/// not in it.
pub(crate) unsafe fn tree_insert(root: &mut *mut PageHeader, ph: *mut PageHeader) -> bool {
    let k = key(ph);
    // SAFETY: caller's contract.
    unsafe {
        if root.is_null() {
            *l(ph) = ptr::null_mut();
            *r(ph) = ptr::null_mut();
            *root = ph;
            return true;
        }
        let t = splay(*root, k);
        *root = t;
        if k < key(t) {
            *l(ph) = *l(t);
            *r(ph) = t;
            *l(t) = ptr::null_mut();
        } else if k > key(t) {
            *r(ph) = *r(t);
            *l(ph) = t;
            *r(t) = ptr::null_mut();
        } else {
            return false;
        }
        *root = ph;
    }
    true
}

/// Remove `ph` from the tree at `*root`.
///
/// # Safety
/// `ph` is in the valid tree at `*root`.
pub(crate) unsafe fn tree_remove(root: &mut *mut PageHeader, ph: *mut PageHeader) {
    let k = key(ph);
    // SAFETY: caller's contract.
    unsafe {
        let t = splay(*root, k);
        debug_assert!(t == ph, "pool: header not in the tree");
        *root = if (*l(t)).is_null() {
            *r(t)
        } else {
            let x = splay(*l(t), k);
            *r(x) = *r(t);
            x
        };
        *l(ph) = ptr::null_mut();
        *r(ph) = ptr::null_mut();
    }
}

/// The header of the page at `page` exactly, or null.
///
/// # Safety
/// `*root` is null or the root of a valid tree.
pub(crate) unsafe fn tree_find(root: &mut *mut PageHeader, page: usize) -> *mut PageHeader {
    // SAFETY: caller's contract.
    unsafe {
        *root = splay(*root, page);
        if !root.is_null() && key(*root) == page {
            *root
        } else {
            ptr::null_mut()
        }
    }
}

/// The header with the highest page address ≤ `addr` ("nearest page ≤
/// address", for `PR_NOALIGN`), or null.
///
/// # Safety
/// `*root` is null or the root of a valid tree.
pub(crate) unsafe fn tree_find_le(root: &mut *mut PageHeader, addr: usize) -> *mut PageHeader {
    // SAFETY: caller's contract.
    unsafe {
        *root = splay(*root, addr);
        let t = *root;
        if t.is_null() || key(t) <= addr {
            return t;
        }
        let mut x = *l(t);
        while !x.is_null() && !(*r(x)).is_null() {
            x = *r(x);
        }
        x
    }
}

// ---- redzone (`POOL_REDZONE`) ----

/// `pool_pattern_generate`: the top byte of the address times a constant.
#[inline]
fn pattern(p: *const u8) -> u8 {
    #[cfg(target_pointer_width = "64")]
    {
        ((p.addr() as u64).wrapping_mul(0x9e37_ffff_fffc_0000) >> 56) as u8
    }
    #[cfg(not(target_pointer_width = "64"))]
    {
        ((p.addr() as u32).wrapping_mul(0x9e37_79b1) >> 24) as u8
    }
}

/// The expected redzone byte `i` at `p` (the first one is never 0, so an
/// off-by-one NUL is caught).
#[inline]
fn expected(p: *const u8, i: usize) -> u8 {
    let pat = pattern(p);
    if i == 0 && pat == 0 { 0xFE } else { pat }
}

/// `pool_redzone_fill`.
///
/// # Safety
/// `item` is an item of at least `reqsize + POOL_REDZONE_SIZE` bytes.
pub(crate) unsafe fn redzone_fill(item: *mut u8, reqsize: usize) {
    for i in 0..POOL_REDZONE_SIZE {
        // SAFETY: caller's contract.
        unsafe {
            let p = item.add(reqsize + i);
            p.write(expected(p, i));
        }
    }
}

/// `pool_redzone_check`: `Err((found, expected))` at the first bad byte.
///
/// # Safety
/// As [`redzone_fill`].
pub(crate) unsafe fn redzone_check(item: *mut u8, reqsize: usize) -> Result<(), (u8, u8)> {
    for i in 0..POOL_REDZONE_SIZE {
        // SAFETY: caller's contract.
        let (got, want) = unsafe {
            let p = item.add(reqsize + i);
            (p.read(), expected(p, i))
        };
        if got != want {
            return Err((got, want));
        }
    }
    Ok(())
}

/// Zero `n` bytes at `item` (`PR_ZERO`).
///
/// # Safety
/// `item` is valid for `n` bytes of writes.
#[inline]
pub(crate) unsafe fn zero(item: *mut u8, n: usize) {
    // SAFETY: caller's contract.
    unsafe { item.write_bytes(0, n) };
}

#[cfg(test)]
mod tests {
    //! Pure pointer logic over memory of the test's own: runs under Miri
    //! with strict provenance.
    use super::*;
    extern crate std;
    use std::vec::Vec;

    #[test]
    fn header_is_netbsds_size() {
        #[cfg(target_pointer_width = "64")]
        {
            assert_eq!(size_of::<PageHeader>(), 56);
            assert_eq!(PH_BITMAP_OFFSET, 48);
            assert_eq!(BITMAP_MIN_BITS, 64);
            assert_eq!(POOL_ITEM_SIZE, 16);
            assert_eq!(POOL_ITEM_SIZE_MAGIC, 24);
        }
    }

    #[test]
    fn splay_tree_finds_exact_and_nearest_lower() {
        let mut buf = [0u8; 4096];
        let base = buf.as_mut_ptr();
        let mut hs: Vec<PageHeader> = (0..40).map(|_| PageHeader::EMPTY).collect();
        // One base pointer for every node (indexing the vector again would
        // retag it and invalidate the nodes' pointers).
        let hp = hs.as_mut_ptr();
        // Pages at base + 100*k for a scrambled k, keys out of order.
        let order: Vec<usize> = (0..40).map(|i| (i * 17) % 40).collect();
        let mut root = ptr::null_mut();
        for &k in &order {
            // SAFETY: k < 40.
            let h = unsafe { hp.add(k) };
            // SAFETY: `h` is a header of the local vector, not in the tree.
            unsafe {
                (*h).page = base.add(100 * k);
                assert!(tree_insert(&mut root, h));
            }
        }
        // SAFETY: every node is a header of `hs`.
        unsafe {
            let mut dup_h = PageHeader::EMPTY;
            let dup: *mut PageHeader = &mut dup_h;
            (*dup).page = base.add(300);
            assert!(!tree_insert(&mut root, dup));
            for k in 0..40 {
                let a = base.add(100 * k).addr();
                let f = tree_find(&mut root, a);
                assert_eq!(f, hp.add(k));
                assert_eq!(tree_find_le(&mut root, a + 57), f);
                assert!(tree_find(&mut root, a + 1).is_null());
            }
            assert!(tree_find_le(&mut root, base.addr() - 1).is_null());
            // Remove the even ones; the odd ones are still found.
            for k in (0..40).step_by(2) {
                tree_remove(&mut root, hp.add(k));
            }
            for k in 0..40 {
                let a = base.add(100 * k).addr();
                let f = tree_find_le(&mut root, a + 5);
                let want = if k % 2 == 1 { k } else { k.saturating_sub(1) };
                if k == 0 {
                    assert!(f.is_null());
                } else {
                    assert_eq!(f, hp.add(want), "k {k}");
                }
            }
        }
    }

    #[test]
    fn bitmap_takes_lowest_and_refuses_double_free() {
        // A header followed by 4 words of bitmap room (100 items).
        let mut mem = [0u64; 16];
        let ph = mem.as_mut_ptr().cast::<PageHeader>();
        // SAFETY: `mem` holds the header and 4 words beyond its bitmap
        // offset.
        unsafe {
            bitmap_init(ph, 100);
            assert_eq!(bitmap_count_free(ph, 100), 100);
            for i in 0..100 {
                assert_eq!(bitmap_get(ph, 100), i);
            }
            assert_eq!(bitmap_count_free(ph, 100), 0);
            assert!(bitmap_put(ph, 70));
            assert!(!bitmap_put(ph, 70));
            assert!(bitmap_is_free(ph, 70));
            assert_eq!(bitmap_get(ph, 100), 70);
        }
    }

    #[test]
    fn freelist_and_page_lists() {
        let mut page = [0u64; 64];
        let p = page.as_mut_ptr().cast::<u8>();
        let mut h = PageHeader::EMPTY;
        let ph: *mut PageHeader = &mut h;
        let mut head: *mut PageHeader = ptr::null_mut();
        // SAFETY: items are 32-byte slots of the local page.
        unsafe {
            (*ph).page = p;
            for i in 0..8 {
                freelist_push(ph, item_at(ph, 32, i));
            }
            let mut n = 0;
            freelist_walk(ph, 100, |_, m| {
                assert_eq!(m, PI_MAGIC);
                n += 1;
                true
            });
            assert_eq!(n, 8);
            let (it, magic) = freelist_pop(ph);
            assert_eq!(magic, PI_MAGIC);
            assert_eq!(it, item_at(ph, 32, 7));
            assert_eq!(item_index(ph, 32, it), 7);
            assert_eq!(page_of(it.add(3), !63).addr(), (it.addr() + 3) & !63);
            let mut other = PageHeader::EMPTY;
            let o: *mut PageHeader = &mut other;
            list_push(&mut head, ph);
            list_push(&mut head, o);
            list_remove(&mut head, ph);
            assert_eq!(head, o);
            list_remove(&mut head, o);
            assert!(head.is_null());
        }
    }

    #[test]
    fn redzone_pattern_round_trip() {
        let mut item = [0u8; 16];
        let p = item.as_mut_ptr();
        // SAFETY: 16 bytes, redzone at 10..12.
        unsafe {
            redzone_fill(p, 10);
            assert!(redzone_check(p, 10).is_ok());
            assert_ne!(*p.add(10), 0);
            *p.add(11) ^= 0xff;
            assert!(redzone_check(p, 10).is_err());
        }
    }
}
