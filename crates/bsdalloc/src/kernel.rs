//! Booting the stack: [`Kernel::boot`] and the process-wide default.

use core::fmt;

#[cfg(feature = "kmalloc")]
use bsdalloc_kmalloc::MallocError;
use bsdalloc_kmem::{COHERENCY_UNIT, Kmem, KmemConfig, KmemError, kmem};
use bsdalloc_platform::mutex::LockRank;
use bsdalloc_platform::{AdaptiveMutex, PageSource, assert_not_in_interrupt};
use bsdalloc_uvm_pages::KernelMap;
use bsdalloc_vmem::MetaSource;

use crate::report::Report;

/// How to boot the kernel memory system ([`Kernel::boot`]): the machine's
/// page and cache-line sizes, the kernel map's address space, the memory
/// budget, and — in a kernel of your own — where pages and vmem's boundary
/// tags come from.
///
/// ```
/// use bsdalloc::KernelConfig;
///
/// let cfg = KernelConfig::new()
///     .memory_limit(256 << 20) // the pagedaemon reclaims, KM_SLEEP sleeps, at 256 MiB
///     .va_size(4 << 30);
/// assert_eq!(cfg.memory_limit, 256 << 20);
/// ```
#[derive(Clone, Copy)]
pub struct KernelConfig {
    /// `PAGE_SIZE`: 0 for the page source's; a power-of-two multiple of it
    /// is built from several source pages.
    pub page_size: usize,
    /// `COHERENCY_UNIT`: the cache line the kmem size classes are computed
    /// for.
    pub coherency_unit: usize,
    /// Address space of the kernel map, in bytes (half of it is the kmem
    /// arena).
    pub va_size: usize,
    /// The memory budget in bytes, rounded up to pages (0: none). At the
    /// budget the pagedaemon drains the caches; then `KM_SLEEP` and
    /// `M_WAITOK` sleep until memory is freed and `KM_NOSLEEP`, `M_NOWAIT`
    /// and [`Global`](crate::Global) fail.
    pub memory_limit: usize,
    /// Freed pages kept committed for reuse, in bytes.
    pub free_target: usize,
    /// Where pages come from (`None`: the OS, with `std`).
    pub pages: Option<&'static dyn PageSource>,
    /// Where vmem's boundary tags come from (`None`: vmem's default, the
    /// OS with `std`). Required without `std`.
    pub meta: Option<&'static dyn MetaSource>,
    /// Feature `guard`: freed allocations kept unmapped before their
    /// address space is reused (`kmem_guard_depth`).
    pub guard_depth: usize,
    /// Page tags so that an allocation's size is found from its address
    /// ([`Kmem::lookup_size`]): what a C `free(p)` needs. Off by default
    /// (Rust passes the size).
    pub size_lookup: bool,
    /// kmem's caches of classes up to this many bytes get 63-object groups
    /// (`PR_LARGECACHE`, an extension: [`KmemConfig::large_groups`]); 0,
    /// NetBSD's, by default.
    pub large_groups: usize,
}

impl fmt::Debug for KernelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelConfig")
            .field("page_size", &self.page_size)
            .field("coherency_unit", &self.coherency_unit)
            .field("va_size", &self.va_size)
            .field("memory_limit", &self.memory_limit)
            .field("free_target", &self.free_target)
            .field("own_pages", &self.pages.is_some())
            .field("own_meta", &self.meta.is_some())
            .field("guard_depth", &self.guard_depth)
            .field("size_lookup", &self.size_lookup)
            .field("large_groups", &self.large_groups)
            .finish()
    }
}

impl KernelConfig {
    /// The default machine: the page source's page size, 64-byte lines,
    /// 64 GiB of address space, no budget, 16 MiB of freed pages kept, the
    /// OS's pages, a guard quarantine of 64.
    pub const fn new() -> KernelConfig {
        KernelConfig {
            page_size: 0,
            coherency_unit: COHERENCY_UNIT,
            va_size: 64 << 30,
            memory_limit: 0,
            free_target: 16 << 20,
            pages: None,
            meta: None,
            guard_depth: 64,
            size_lookup: false,
            large_groups: 0,
        }
    }

    /// `PAGE_SIZE` (0: the page source's).
    #[must_use]
    pub const fn page_size(mut self, bytes: usize) -> Self {
        self.page_size = bytes;
        self
    }

    /// `COHERENCY_UNIT`.
    #[must_use]
    pub const fn coherency_unit(mut self, bytes: usize) -> Self {
        self.coherency_unit = bytes;
        self
    }

    /// Address space of the kernel map.
    #[must_use]
    pub const fn va_size(mut self, bytes: usize) -> Self {
        self.va_size = bytes;
        self
    }

    /// The memory budget in bytes (0: none).
    #[must_use]
    pub const fn memory_limit(mut self, bytes: usize) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// Freed pages kept committed, in bytes.
    #[must_use]
    pub const fn free_target(mut self, bytes: usize) -> Self {
        self.free_target = bytes;
        self
    }

    /// The page source.
    #[must_use]
    pub const fn pages(mut self, pages: &'static dyn PageSource) -> Self {
        self.pages = Some(pages);
        self
    }

    /// vmem's boundary-tag source.
    #[must_use]
    pub const fn meta(mut self, meta: &'static dyn MetaSource) -> Self {
        self.meta = Some(meta);
        self
    }

    /// The guard quarantine depth.
    #[must_use]
    pub const fn guard_depth(mut self, depth: usize) -> Self {
        self.guard_depth = depth;
        self
    }

    /// Keep page tags for [`Kmem::lookup_size`].
    #[must_use]
    pub const fn size_lookup(mut self, yes: bool) -> Self {
        self.size_lookup = yes;
        self
    }

    /// 63-object groups for kmem's classes up to `max_size` bytes
    /// ([`large_groups`](KernelConfig::large_groups)).
    #[must_use]
    pub const fn large_groups(mut self, max_size: usize) -> Self {
        self.large_groups = max_size;
        self
    }
}

impl Default for KernelConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// Why [`Kernel::boot`] failed. Nothing was set up, except where said.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootError {
    /// The kernel is up already: booted before, or started by the first
    /// use of one of its layers (kmem, malloc(9), a pool on the standard
    /// map). Boot before anything allocates.
    #[error("bsdalloc: the kernel is booted already (boot before the first allocation)")]
    AlreadyBooted,
    /// The configuration is inconsistent.
    #[error("bsdalloc: {0}")]
    Config(&'static str),
    /// kmem could not be set up (its map, an arena, the configuration).
    #[error(transparent)]
    Kmem(#[from] KmemError),
    /// malloc(9) already runs on another kmem instance. kmem is up then.
    #[cfg(feature = "kmalloc")]
    #[error(transparent)]
    Malloc(#[from] MallocError),
}

/// The kernel memory system: the kernel map and its arenas, the pools and
/// pool caches, kmem and malloc(9), as one booted whole.
///
/// There is one per process (or per kernel): the layers keep their
/// process-wide instances in statics, as NetBSD keeps `kernel_map`,
/// `kmem_arena` and `kmembuckets`. [`Kernel::boot`] sets it up from a
/// [`KernelConfig`]; otherwise [`kernel()`] (and the first allocation
/// through any layer) starts the default one.
pub struct Kernel {
    /// Serialises boot (and so the check that nothing is up yet).
    boot: AdaptiveMutex<()>,
}

static KERNEL: Kernel = Kernel {
    boot: AdaptiveMutex::ranked(LockRank::None, ()),
};

impl fmt::Debug for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kernel")
            .field("up", &kmem().is_ready())
            .finish_non_exhaustive()
    }
}

/// The process-wide kernel, started with [`KernelConfig::new`]'s defaults
/// at first use unless [`Kernel::boot`] came first.
///
/// ```
/// let k = bsdalloc::kernel();
/// assert!(k.page_size().is_power_of_two());
/// let report = k.report().to_string();
/// assert!(report.contains("Memory resource pool statistics"));
/// ```
///
/// # Panics
/// Without `std`, if [`Kernel::boot`] did not run.
pub fn kernel() -> &'static Kernel {
    // kmem's default instance sets itself up (over pool's standard map)
    // at first use: the same default whichever layer is touched first.
    let _ = kmem().map();
    &KERNEL
}

impl Kernel {
    /// Boot the stack as NetBSD does: the kernel map (`uvm_km_bootstrap`)
    /// with its `kmem` arena, made the pools' map (`pool_subsystem_init`:
    /// every pool's pages and page headers, and its pagedaemon); kmem's
    /// arenas (`kva` with quantum caches, `vmem-va`, `vmem-meta`) and its
    /// size-class caches (`kmem_init`); malloc(9) on kmem with its
    /// built-in types (`malloc_init`). Everything lives in static storage;
    /// nothing calls the Rust global allocator, so the result may be the
    /// global allocator itself ([`Global`](crate::Global)).
    ///
    /// ```
    /// use bsdalloc::{Kernel, KernelConfig};
    ///
    /// let k = Kernel::boot(KernelConfig::new().memory_limit(64 << 20)).unwrap();
    /// assert_eq!(k.map().stats().limit_pages * k.page_size(), 64 << 20);
    /// // Once only.
    /// assert!(Kernel::boot(KernelConfig::new()).is_err());
    /// ```
    ///
    /// # Errors
    /// [`BootError::AlreadyBooted`] if it is up already (booted, or
    /// started by a first allocation); [`BootError::Kmem`] for a
    /// configuration kmem refuses or a map that cannot be built.
    ///
    /// # Panics
    /// From interrupt context.
    pub fn boot(cfg: KernelConfig) -> Result<&'static Kernel, BootError> {
        assert_not_in_interrupt("bsdalloc: Kernel::boot");
        let _g = KERNEL.boot.lock();
        if kmem().is_ready() || bsdalloc_pool::pool_subsystem_map().is_some() {
            return Err(BootError::AlreadyBooted);
        }
        let source_ps = match cfg.pages {
            Some(p) => p.page_size(),
            #[cfg(feature = "std")]
            None => bsdalloc_platform::page_size(),
            #[cfg(not(feature = "std"))]
            None => return Err(BootError::Config("no page source (and no std)")),
        };
        #[cfg(not(feature = "std"))]
        if cfg.meta.is_none() {
            return Err(BootError::Config(
                "no boundary-tag source for vmem (and no std)",
            ));
        }
        let ps = if cfg.page_size == 0 {
            source_ps
        } else {
            cfg.page_size
        };
        if !ps.is_power_of_two() {
            return Err(BootError::Config("PAGE_SIZE must be a power of two"));
        }
        let Some(limit_pages) = cfg.memory_limit.checked_next_multiple_of(ps) else {
            return Err(BootError::Config("memory_limit overflows"));
        };
        if let Some(meta) = cfg.meta {
            bsdalloc_vmem::vmem_subsystem_init(meta);
        }
        if let Some(pages) = cfg.pages {
            bsdalloc_pool_cache::pool_cache_subsystem_init(pages);
        }
        let mut kc = KmemConfig::new()
            .page_size(cfg.page_size)
            .coherency_unit(cfg.coherency_unit)
            .va_size(cfg.va_size)
            .limit_pages(limit_pages / ps)
            .free_target_pages(cfg.free_target / ps)
            .guard_depth(cfg.guard_depth)
            .size_lookup(cfg.size_lookup)
            .large_groups(cfg.large_groups)
            .pool_map(true);
        if let Some(p) = cfg.pages {
            kc = kc.pages(p);
        }
        bsdalloc_kmem::kmem_init(kc)?;
        #[cfg(feature = "kmalloc")]
        bsdalloc_kmalloc::malloc_init(kmem())?;
        Ok(&KERNEL)
    }

    /// The kmem instance (`kmem_alloc` and friends, its caches and arenas).
    pub fn kmem(&self) -> &'static Kmem {
        kmem()
    }

    /// The kernel map: its `kmem` arena, the budget, the pagedaemon.
    pub fn map(&self) -> &'static KernelMap {
        kmem().map()
    }

    /// `PAGE_SIZE`.
    pub fn page_size(&self) -> usize {
        kmem().page_size()
    }

    /// One pass of the pagedaemon: cached free pages back to the page
    /// source, every pool and cache drained. Returns the pages given back.
    pub fn pagedaemon(&self) -> usize {
        self.map().pagedaemon()
    }

    /// The whole report: `vmstat -m`, `vmstat -C`, the arenas, the kernel
    /// map and malloc(9)'s "Memory statistics by type", as `Display`.
    pub fn report(&self) -> Report {
        Report::new()
    }
}
