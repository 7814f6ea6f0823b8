//! `uvm_km_kmem_alloc` / `uvm_km_kmem_free` as a vmem import/release pair.

use core::fmt;

use bsdalloc_vmem::{Arena, SpanSource, VmFlags, VmemError};

use crate::map::KernelMap;

/// A [`SpanSource`] that imports backed memory: address space from `va`
/// and wired pages from `map` — what NetBSD passes as `importfn =
/// uvm_km_kmem_alloc, releasefn = uvm_km_kmem_free, arg = va arena` when
/// it builds `kmem_meta_arena` and the `kmem_va_arena`'s consumers.
///
/// Each import is rounded up to whole pages, and the real size is returned.
/// An arena created with `vmem_xcreate` keeps all of it; one created with
/// `vmem_create` (or by value) keeps only the bytes it asked for and strands
/// the rest of each page: give such an arena a page quantum, or use
/// `vmem_xcreate` for smaller quanta, as below.
///
/// ```
/// use bsdalloc_uvm_pages::{KernelMap, KmConfig, KmemSource};
/// use bsdalloc_vmem::{ArenaConfig, VmFlags, vmem_xcreate};
///
/// let map = KernelMap::bootstrap(KmConfig { size: 1 << 30, ..KmConfig::new() }).unwrap();
/// // The map's own source over its kmem arena; build a `KmemSource` (kept in
/// // a static) to import from another arena of the map.
/// let src: &'static KmemSource = map.kmem_source();
/// let meta = vmem_xcreate(ArenaConfig::new("vmem-meta", 64).source(src), 0, 0).unwrap();
/// let p = meta.alloc(200, VmFlags::NOSLEEP | VmFlags::INSTANTFIT).unwrap();
/// let ptr = map.va_ptr(p).unwrap(); // a pointer into the map, not an integer cast
/// unsafe { ptr.as_ptr().write_bytes(0xA5, 200) }; // backed memory
/// meta.free(p, 200);
/// ```
pub struct KmemSource {
    map: &'static KernelMap,
    va: &'static Arena,
}

impl fmt::Debug for KmemSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmemSource")
            .field("va", &self.va.name())
            .finish()
    }
}

impl KmemSource {
    /// Import from `va` (an arena of `map`'s kmem addresses), backed by
    /// `map`'s pages.
    pub const fn new(map: &'static KernelMap, va: &'static Arena) -> KmemSource {
        KmemSource { map, va }
    }
}

impl SpanSource for KmemSource {
    fn import(&self, size: usize, flags: VmFlags) -> Result<(usize, usize), VmemError> {
        // An overflowing request is one no arena can satisfy.
        let size = self.map.round(size).ok_or(VmemError::NoMemory)?;
        let va = self.map.uvm_km_kmem_alloc(self.va, size, flags)?;
        Ok((va, size))
    }

    fn release(&self, addr: usize, size: usize) {
        self.map.uvm_km_kmem_free(self.va, addr, size);
    }
}
