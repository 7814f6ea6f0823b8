//! String helpers (`kmem_asprintf`, `kmem_strdup`, `kmem_strdupsize`,
//! `kmem_strndup`, `kmem_strfree`) and temporary buffers
//! (`kmem_tmpbuf_alloc`, `kmem_tmpbuf_free`), on the default instance.
//!
//! A string is allocated with exactly `strlen + 1` bytes, and freed with
//! `strlen + 1` computed again: [`KmemStr`] owns one and hands out only
//! shared access, so the length cannot change before it frees itself.

use core::ffi::CStr;
use core::fmt::{self, Write};
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;

use crate::api::kmem;
use crate::boxed::KmemSlice;
use crate::flags::{KM_SLEEP, KmFlags};
use crate::kmem::Kmem;

/// A NUL-terminated string in kmem memory, `len + 1` bytes, freed with
/// that size when dropped.
pub struct KmemStr {
    ptr: NonNull<u8>,
    /// Bytes before the NUL.
    len: usize,
    kmem: &'static Kmem,
}

// SAFETY: owns immutable bytes.
unsafe impl Send for KmemStr {}
// SAFETY: as above.
unsafe impl Sync for KmemStr {}

impl KmemStr {
    /// Copy `len` bytes of `src` and a NUL into `len + 1` fresh bytes.
    fn copy(kmem: &'static Kmem, src: &[u8], flags: KmFlags) -> Option<KmemStr> {
        let len = src.len();
        let size = len.checked_add(1)?;
        let p = kmem.alloc(size, flags)?;
        // SAFETY: `size` fresh bytes of ours.
        unsafe {
            p.as_ptr().copy_from_nonoverlapping(src.as_ptr(), len);
            p.as_ptr().add(len).write(0);
        }
        Some(KmemStr { ptr: p, len, kmem })
    }

    /// The string, as a `CStr`.
    pub fn as_c_str(&self) -> &CStr {
        // SAFETY: `len` bytes without a NUL (every constructor copies only
        // up to the first NUL) and a NUL at `len`.
        unsafe {
            CStr::from_bytes_with_nul_unchecked(core::slice::from_raw_parts(
                self.ptr.as_ptr(),
                self.len + 1,
            ))
        }
    }

    /// The bytes before the NUL.
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes we own.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The string as `&str`, if it is UTF-8.
    pub fn to_str(&self) -> Option<&str> {
        core::str::from_utf8(self.as_bytes()).ok()
    }

    /// `strlen`.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The raw NUL-terminated pointer, given up by the handle: free it with
    /// [`kmem_strfree`] (default instance).
    pub fn into_raw(self) -> NonNull<u8> {
        let p = self.ptr;
        core::mem::forget(self);
        p
    }
}

impl Deref for KmemStr {
    type Target = CStr;
    fn deref(&self) -> &CStr {
        self.as_c_str()
    }
}

impl Drop for KmemStr {
    fn drop(&mut self) {
        // SAFETY: our allocation of `len + 1` bytes.
        unsafe { self.kmem.free(self.ptr.as_ptr(), self.len + 1) };
    }
}

impl fmt::Debug for KmemStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_c_str(), f)
    }
}

impl fmt::Display for KmemStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.as_bytes().utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_char(char::REPLACEMENT_CHARACTER)?;
            }
        }
        Ok(())
    }
}

/// Counts what a format writes.
struct Count(usize);

impl Write for Count {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 = self.0.saturating_add(s.len());
        Ok(())
    }
}

/// Writes into a fixed buffer, dropping what does not fit.
struct Fill<'a> {
    buf: &'a mut [u8],
    n: usize,
}

impl Write for Fill<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.n;
        let k = s.len().min(room);
        self.buf[self.n..self.n + k].copy_from_slice(&s.as_bytes()[..k]);
        self.n += k;
        Ok(())
    }
}

/// `kmem_asprintf(fmt, …)`: format into a `KM_SLEEP` buffer of exactly
/// `len + 1` bytes. The arguments are formatted twice (measure, then
/// write); a `Display` that prints more the second time is cut to the
/// measured length, and embedded NULs end the string early (its length,
/// and its free size, are then the part before the first NUL).
///
/// ```
/// use bsdalloc_kmem::kmem_asprintf;
///
/// let s = kmem_asprintf(format_args!("pid {} {}", 42, "init"));
/// assert_eq!(s.to_str(), Some("pid 42 init"));
/// assert_eq!(s.to_bytes_with_nul().len(), 12);
/// ```
///
/// # Panics
/// From interrupt context.
#[track_caller]
pub fn kmem_asprintf(args: fmt::Arguments<'_>) -> KmemStr {
    let k = kmem();
    let mut c = Count(0);
    let _ = c.write_fmt(args);
    let len = c.0;
    let Some(size) = len.checked_add(1) else {
        panic!("kmem_asprintf: output too long");
    };
    let Some(p) = k.alloc(size, KM_SLEEP) else {
        unreachable!("KM_SLEEP never fails");
    };
    // SAFETY: `size` fresh bytes of ours; zeroed first so that all of
    // them are initialised before a slice covers them.
    let buf = unsafe {
        p.as_ptr().write_bytes(0, size);
        core::slice::from_raw_parts_mut(p.as_ptr(), len)
    };
    let mut w = Fill { buf, n: 0 };
    let _ = w.write_fmt(args);
    let written = w.n;
    // The first NUL ends the string; past it, the allocation would be
    // freed with the wrong size: shrink by copying.
    // SAFETY: `size` bytes of ours, initialised.
    let bytes = unsafe { core::slice::from_raw_parts(p.as_ptr(), written) };
    match bytes.iter().position(|&b| b == 0) {
        None if written == len => KmemStr {
            ptr: p,
            len,
            kmem: k,
        },
        end => {
            let end = end.unwrap_or(written);
            let s = KmemStr::copy(k, &bytes[..end], KM_SLEEP).expect("KM_SLEEP never fails");
            // SAFETY: our allocation of `size` bytes, no longer used.
            unsafe { k.free(p.as_ptr(), size) };
            s
        }
    }
}

/// `kmem_strdupsize(str, &len, flags)`: a copy of `s` (with its NUL);
/// `lenp` receives the allocated length, `strlen + 1`. `None` only with
/// `KM_NOSLEEP`.
///
/// # Panics
/// As [`Kmem::alloc`].
#[track_caller]
pub fn kmem_strdupsize(s: &CStr, lenp: Option<&mut usize>, flags: KmFlags) -> Option<KmemStr> {
    let r = KmemStr::copy(kmem(), s.to_bytes(), flags)?;
    if let Some(l) = lenp {
        *l = r.len + 1;
    }
    Some(r)
}

/// `kmem_strdup(str, flags)`.
///
/// ```
/// use bsdalloc_kmem::{KM_SLEEP, kmem_strdup};
///
/// let s = kmem_strdup(c"wd0a", KM_SLEEP).unwrap();
/// assert_eq!(s.as_c_str(), c"wd0a");
/// ```
#[track_caller]
pub fn kmem_strdup(s: &CStr, flags: KmFlags) -> Option<KmemStr> {
    kmem_strdupsize(s, None, flags)
}

/// `kmem_strndup(str, maxlen, flags)`: a copy of the first
/// `strnlen(str, maxlen)` bytes of `s` (which ends at its first NUL, or
/// at the end of the slice) and a NUL.
///
/// # Panics
/// `maxlen` 0 (NetBSD asserts it); as [`Kmem::alloc`].
#[track_caller]
pub fn kmem_strndup(s: &[u8], maxlen: usize, flags: KmFlags) -> Option<KmemStr> {
    if maxlen == 0 {
        panic!("kmem_strndup: maxlen 0 (kernel diagnostic assertion \"maxlen != 0\" failed)");
    }
    let s = &s[..s.len().min(maxlen)];
    let n = s.iter().position(|&b| b == 0).unwrap_or(s.len());
    KmemStr::copy(kmem(), &s[..n], flags)
}

/// `kmem_strfree(str)`: free a string of the default instance with
/// `strlen + 1` bytes; null is allowed (nothing happens).
///
/// # Safety
/// `s` is null, or a NUL-terminated string from this module's functions
/// (via [`KmemStr::into_raw`]) whose length has not changed since, not
/// used afterwards.
#[track_caller]
pub unsafe fn kmem_strfree(s: *mut u8) {
    if s.is_null() {
        return;
    }
    // SAFETY: the caller's contract: a NUL-terminated string of ours.
    let len = unsafe { CStr::from_ptr(s.cast()) }.count_bytes();
    // SAFETY: as above; allocated with `len + 1`.
    unsafe { kmem().free(s, len + 1) };
}

/// `kmem_tmpbuf_alloc(size, stackbuf, stackbufsize, flags)`: `stackbuf`
/// if `size ≤ stackbufsize`, else `kmem_alloc(size, flags)`.
///
/// # Safety
/// `stackbuf` points to `stackbufsize` bytes the caller owns (it is
/// returned, not touched).
#[track_caller]
pub unsafe fn kmem_tmpbuf_alloc(
    size: usize,
    stackbuf: NonNull<u8>,
    stackbufsize: usize,
    flags: KmFlags,
) -> Option<NonNull<u8>> {
    if size <= stackbufsize {
        return Some(stackbuf);
    }
    kmem().alloc(size, flags)
}

/// `kmem_tmpbuf_free(buf, size, stackbuf)`: frees `buf` only if it is not
/// `stackbuf`.
///
/// # Safety
/// `buf` came from [`kmem_tmpbuf_alloc`] with the same `size` and
/// `stackbuf`, and is not used afterwards.
#[track_caller]
pub unsafe fn kmem_tmpbuf_free(buf: NonNull<u8>, size: usize, stackbuf: NonNull<u8>) {
    if buf != stackbuf {
        // SAFETY: the caller's contract: a kmem allocation of `size`.
        unsafe { kmem().free(buf.as_ptr(), size) };
    }
}

/// A temporary buffer of `size` bytes: the caller's stack buffer when it
/// is big enough, else zeroed kmem memory, freed when dropped.
///
/// ```
/// use bsdalloc_kmem::{KM_SLEEP, TmpBuf};
///
/// let mut stack = [0u8; 256];
/// let small = TmpBuf::new(100, &mut stack, KM_SLEEP).unwrap();
/// assert!(small.is_stack());
/// drop(small);
/// let big = TmpBuf::new(1000, &mut stack, KM_SLEEP).unwrap();
/// assert!(!big.is_stack() && big.len() == 1000);
/// ```
#[derive(Debug)]
pub enum TmpBuf<'a> {
    /// The first `size` bytes of the stack buffer.
    Stack(&'a mut [u8]),
    /// Kmem memory.
    Heap(KmemSlice<u8>),
}

impl<'a> TmpBuf<'a> {
    /// `size` bytes: the stack buffer's first bytes, or zeroed kmem memory
    /// (`None` only if `KM_NOSLEEP` found none).
    ///
    /// # Panics
    /// As [`Kmem::alloc`].
    #[track_caller]
    pub fn new(size: usize, stack: &'a mut [u8], flags: KmFlags) -> Option<TmpBuf<'a>> {
        if size <= stack.len() {
            return Some(TmpBuf::Stack(&mut stack[..size]));
        }
        KmemSlice::from_fn_in(kmem(), size, flags, |_| 0u8).map(TmpBuf::Heap)
    }

    /// Whether this is the stack buffer.
    pub fn is_stack(&self) -> bool {
        matches!(self, TmpBuf::Stack(_))
    }
}

impl Deref for TmpBuf<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            TmpBuf::Stack(s) => s,
            TmpBuf::Heap(h) => h,
        }
    }
}

impl DerefMut for TmpBuf<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            TmpBuf::Stack(s) => s,
            TmpBuf::Heap(h) => h,
        }
    }
}
