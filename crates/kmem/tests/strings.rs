//! String helpers and temporary buffers (K8, K9): sizes are `strlen + 1`,
//! `kmem_strfree(NULL)` is fine, tmpbuf uses the stack buffer when it is
//! big enough and frees only what it allocated.

use std::ptr::NonNull;

use bsdalloc_kmem::*;

#[test]
fn asprintf_allocates_exactly_len_plus_one() {
    let s = kmem_asprintf(format_args!("{}-{:04}-{}", "sd", 7, 'x'));
    assert_eq!(s.to_str(), Some("sd-0007-x"));
    assert_eq!(s.len(), 9);
    assert_eq!(s.to_bytes_with_nul(), b"sd-0007-x\0");
    assert_eq!(s.to_string(), "sd-0007-x");
    let e = kmem_asprintf(format_args!(""));
    assert!(e.is_empty() && e.to_bytes_with_nul() == b"\0");
    // A long one goes to whole pages.
    let long = kmem_asprintf(format_args!("{:>1$}", "end", 3 * kmem().page_size()));
    assert_eq!(long.len(), 3 * kmem().page_size());
    assert!(long.to_bytes().ends_with(b"end"));
    drop(long);
}

#[test]
fn asprintf_stops_at_an_embedded_nul() {
    let s = kmem_asprintf(format_args!("ab{}cd", '\0'));
    assert_eq!(s.to_bytes(), b"ab");
}

#[test]
fn strdup_strdupsize_strndup() {
    let s = kmem_strdup(c"vnode", KM_SLEEP).unwrap();
    assert_eq!(s.as_c_str(), c"vnode");
    let mut n = 0;
    let t = kmem_strdupsize(c"wd0", Some(&mut n), KM_NOSLEEP).unwrap();
    assert_eq!((t.to_bytes(), n), (&b"wd0"[..], 4));
    let u = kmem_strndup(b"abcdef", 3, KM_SLEEP).unwrap();
    assert_eq!(u.to_bytes_with_nul(), b"abc\0");
    let v = kmem_strndup(b"ab\0cdef", 10, KM_SLEEP).unwrap();
    assert_eq!(v.to_bytes(), b"ab");
    let w = kmem_strndup(b"xyz", 100, KM_SLEEP).unwrap();
    assert_eq!(w.to_bytes(), b"xyz");
}

#[test]
#[should_panic(expected = "kmem_strndup: maxlen 0")]
fn strndup_with_maxlen_zero_panics() {
    kmem_strndup(b"abc", 0, KM_SLEEP);
}

#[test]
fn strfree_of_raw_strings_and_null() {
    // SAFETY: null is allowed.
    unsafe { kmem_strfree(std::ptr::null_mut()) };
    let raw = kmem_strdup(c"raw string", KM_SLEEP).unwrap().into_raw();
    // SAFETY: a NUL-terminated string of this module, length unchanged.
    let back = unsafe { std::ffi::CStr::from_ptr(raw.as_ptr().cast()) };
    assert_eq!(back, c"raw string");
    // SAFETY: as above; not used afterwards.
    unsafe { kmem_strfree(raw.as_ptr()) };
}

#[test]
fn tmpbuf_raw() {
    let mut stack = [0u8; 128];
    let sb = NonNull::new(stack.as_mut_ptr()).unwrap();
    // SAFETY: `stack` is ours, 128 bytes.
    unsafe {
        let a = kmem_tmpbuf_alloc(100, sb, 128, KM_SLEEP).unwrap();
        assert_eq!(a, sb);
        kmem_tmpbuf_free(a, 100, sb); // nothing to free
        let b = kmem_tmpbuf_alloc(129, sb, 128, KM_SLEEP).unwrap();
        assert_ne!(b, sb);
        b.as_ptr().write_bytes(1, 129);
        kmem_tmpbuf_free(b, 129, sb);
    }
}

#[test]
fn tmpbuf_safe() {
    let mut stack = [9u8; 64];
    {
        let mut t = TmpBuf::new(64, &mut stack, KM_SLEEP).unwrap();
        assert!(t.is_stack());
        t[0] = 1;
    }
    assert_eq!(stack[0], 1);
    let mut t = TmpBuf::new(4 * kmem().page_size(), &mut stack, KM_NOSLEEP).unwrap();
    assert!(!t.is_stack());
    assert!(t.iter().all(|&b| b == 0));
    t[5] = 3;
    drop(t);
}
