//! `cargo xtask`: bsdalloc's build, test and benchmark driver.
//!
//! ```text
//! cargo xtask ci [--full]         everything CI checks (--full: the long tier)
//! cargo xtask loom                the loom models, release mode, LOOM_MAX_PREEMPTIONS=2
//! cargo xtask fuzz [SECS] [T..]   fuzz smoke of every target (or the named ones)
//! cargo xtask nostd               build every library crate without std
//! cargo xtask test-kernel         run the test kernel (the platform's kernel backend)
//! cargo xtask package             cargo package of the publishable crates
//! cargo xtask bench [--quick] [FILTER]   criterion suite, writes benches/RESULTS.md and results.svg
//! cargo xtask preload [--full]    python3, sqlite3, git, gcc under the preloaded C malloc vs glibc
//! ```
//!
//! Steps that need a tool which cannot be installed print `SKIPPED: why`
//! and go on; every other failure fails the run.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

mod preload;

/// Library crates, in dependency order.
const LIBRARY_CRATES: &[&str] = &[
    "bsdalloc-platform",
    "bsdalloc-vmem",
    "bsdalloc-uvm-pages",
    "bsdalloc-pool",
    "bsdalloc-pool-cache",
    "bsdalloc-kmem",
    "bsdalloc-kmalloc",
    "bsdalloc",
];
/// Crates with a `debug-all` feature whose tests run a second time with it.
const DEBUG_FEATURE_CRATES: &[&str] = &[
    "bsdalloc-pool",
    "bsdalloc-pool-cache",
    "bsdalloc-kmem",
    "bsdalloc-kmalloc",
    "bsdalloc",
];
/// Debug features that change behaviour (not only add checks): each runs
/// its own test target.
const FEATURE_TESTS: &[(&str, &str, &str)] = &[
    ("bsdalloc-pool", "quarantine", "quarantine"),
    ("bsdalloc-kmem", "guard", "guard"),
    ("bsdalloc", "guard", "contracts"),
];
/// Unpublished members that are not libraries: left out of packaging and
/// of the test runs that cover the libraries.
const NOT_LIBRARIES: &[&str] = &[
    "xtask",
    "bsdalloc-benches",
    "bsdalloc-test-kernel",
    "bsdalloc-readme",
];
/// Crates with loom models, and their model test targets.
const LOOM_TESTS: &[(&str, &str)] = &[
    ("bsdalloc-platform", "loom_platform"),
    ("bsdalloc-pool-cache", "loom_pool_cache"),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

struct Run {
    failures: Vec<String>,
    skipped: Vec<String>,
    timings: Vec<(String, f64)>,
}

impl Run {
    fn new() -> Self {
        Run {
            failures: vec![],
            skipped: vec![],
            timings: vec![],
        }
    }

    /// Run a step; record failure rather than stopping, so one run shows
    /// every problem.
    fn step(&mut self, name: &str, cmd: &mut Command) -> bool {
        eprintln!("\n==> {name}\n    {cmd:?}");
        let t = Instant::now();
        let ok = match cmd.current_dir(root()).status() {
            Ok(s) => s.success(),
            Err(e) => {
                eprintln!("could not start: {e}");
                false
            }
        };
        let secs = t.elapsed().as_secs_f64();
        self.timings.push((name.to_string(), secs));
        if !ok {
            eprintln!("FAILED: {name}");
            self.failures.push(name.to_string());
        }
        ok
    }

    fn skip(&mut self, name: &str, why: &str) {
        eprintln!("\nSKIPPED: {name}: {why}");
        self.skipped.push(format!("{name}: {why}"));
    }

    fn finish(self) -> ExitCode {
        eprintln!("\n==> summary");
        for (n, s) in &self.timings {
            eprintln!("    {s:7.1}s  {n}");
        }
        for s in &self.skipped {
            eprintln!("SKIPPED: {s}");
        }
        let steps = self.timings.len();
        let failed = self.failures.len();
        // The plain closing line CI reads.
        println!(
            "xtask: {} passed, {} failed, {} skipped",
            steps - failed,
            failed,
            self.skipped.len()
        );
        if failed == 0 {
            ExitCode::SUCCESS
        } else {
            for f in &self.failures {
                eprintln!("FAILED: {f}");
            }
            ExitCode::FAILURE
        }
    }
}

fn cargo() -> Command {
    Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// `cargo +nightly …` through rustup (the CARGO variable would pin stable).
fn nightly_cargo() -> Command {
    let mut c = Command::new("cargo");
    c.arg("+nightly");
    // Do not inherit the stable toolchain's choice.
    c.env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .env_remove("RUSTC");
    c
}

fn has_nightly() -> bool {
    nightly_cargo()
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn ensure_cargo_fuzz(run: &mut Run) -> bool {
    let present = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if present {
        return true;
    }
    eprintln!("cargo-fuzz is missing: installing it (cargo install --locked cargo-fuzz)");
    let ok = cargo()
        .args(["install", "--locked", "cargo-fuzz"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        run.skip("fuzz", "cargo-fuzz could not be installed");
    }
    ok
}

fn fuzz_targets() -> Vec<String> {
    let dir = root().join("fuzz/fuzz_targets");
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter_map(|n| n.strip_suffix(".rs").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn fuzz(run: &mut Run, secs: u64, only: &[String]) {
    let targets: Vec<String> = fuzz_targets()
        .into_iter()
        .filter(|t| only.is_empty() || only.contains(t))
        .collect();
    if targets.is_empty() {
        eprintln!("\n==> fuzz: no fuzz targets yet");
        return;
    }
    if !has_nightly() {
        run.skip("fuzz", "the nightly toolchain is not installed");
        return;
    }
    if !ensure_cargo_fuzz(run) {
        return;
    }
    for t in targets {
        let corpus = root().join("fuzz/corpus").join(&t);
        let _ = std::fs::create_dir_all(&corpus);
        // Work on a scratch copy of the corpus so a CI run leaves the
        // committed seeds untouched; the committed seeds are replayed first.
        let scratch = root().join("target/fuzz-corpus").join(&t);
        let _ = std::fs::remove_dir_all(&scratch);
        let _ = std::fs::create_dir_all(&scratch);
        if let Ok(rd) = std::fs::read_dir(&corpus) {
            for e in rd.flatten() {
                let _ = std::fs::copy(e.path(), scratch.join(e.file_name()));
            }
        }
        run.step(
            &format!("fuzz {t} ({secs} s)"),
            nightly_cargo()
                .current_dir(root().join("fuzz"))
                .args(["fuzz", "run", "--fuzz-dir", "fuzz", &t])
                .arg(&scratch)
                .arg("--")
                .arg(format!("-max_total_time={secs}"))
                .arg("-rss_limit_mb=4096"),
        );
    }
}

fn loom(run: &mut Run) {
    for (krate, test) in LOOM_TESTS {
        run.step(
            &format!("loom {krate}::{test}"),
            cargo()
                .args([
                    "test",
                    "--release",
                    "-p",
                    krate,
                    "--test",
                    test,
                    "--target-dir",
                    "target/loom",
                ])
                .env("RUSTFLAGS", "--cfg bsdalloc_loom")
                .env("LOOM_MAX_PREEMPTIONS", "2")
                .env("RUST_BACKTRACE", "0"),
        );
    }
}

/// The features a crate's no_std build turns on: the facade's layers are
/// features (without them it is only the platform).
fn nostd_features(k: &str) -> &'static [&'static str] {
    if k == "bsdalloc" {
        &["--features", "kmalloc"]
    } else {
        &[]
    }
}

fn nostd(run: &mut Run) {
    for k in LIBRARY_CRATES {
        run.step(
            &format!("no_std build {k}"),
            cargo()
                .args([
                    "build",
                    "-p",
                    k,
                    "--no-default-features",
                    "--target-dir",
                    "target/nostd",
                ])
                .args(nostd_features(k)),
        );
    }
    // A real no_std target proves no std symbol sneaks in through a
    // dependency; it needs the target's core library from rustup.
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("x86_64-unknown-none"))
        .unwrap_or(false);
    let have = installed
        || Command::new("rustup")
            .args(["target", "add", "x86_64-unknown-none"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
    if !have {
        run.skip(
            "no_std target build",
            "rustup could not add x86_64-unknown-none",
        );
        return;
    }
    for k in LIBRARY_CRATES {
        run.step(
            &format!("x86_64-unknown-none build {k}"),
            cargo()
                .args([
                    "build",
                    "-p",
                    k,
                    "--no-default-features",
                    "--target",
                    "x86_64-unknown-none",
                    "--target-dir",
                    "target/nostd",
                ])
                .args(nostd_features(k)),
        );
    }
}

/// The test kernel boots vmem and uvm-pages on its own `Machine` and pages,
/// then the whole stack through the `bsdalloc` facade (kmem, pool caches,
/// malloc(9)).
/// It is built and run alone (`-p`): Cargo resolves features only for the
/// packages it builds, so bsdalloc-platform comes without `std` (in
/// `cargo test --workspace` other members turn it on, and the kernel
/// backend is not compiled). It shares `target/nostd` with the no_std
/// builds, which build the libraries with the same features. The binary
/// itself fails unless the platform really calls its machine.
fn test_kernel(run: &mut Run) {
    run.step(
        "test kernel",
        cargo().args([
            "run",
            "-p",
            "bsdalloc-test-kernel",
            "--target-dir",
            "target/nostd",
        ]),
    );
}

/// cargo verifies each packaged crate against its siblings' freshly packaged
/// sources, but caches them under `$CARGO_HOME/registry/` and does not take
/// a crate again while its version stays the same: a second run would verify
/// against the first run's sources. Remove our own crates' stale copies
/// (nothing else ever lives under those names); on a fresh machine there are
/// none.
fn forget_packaged_sources() {
    let home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    let Some(home) = home else {
        return;
    };
    // The extracted sources, and the cached `.crate` files they come from.
    for dir in ["registry/src", "registry/cache"] {
        let Ok(indexes) = std::fs::read_dir(home.join(dir)) else {
            continue;
        };
        for index in indexes.flatten() {
            let Ok(crates) = std::fs::read_dir(index.path()) else {
                continue;
            };
            for c in crates.flatten() {
                let name = c.file_name();
                let name = name.to_string_lossy();
                if LIBRARY_CRATES
                    .iter()
                    .any(|k| name.strip_prefix(k).is_some_and(|v| v.starts_with('-')))
                {
                    let p = c.path();
                    let _ = if p.is_dir() {
                        std::fs::remove_dir_all(p)
                    } else {
                        std::fs::remove_file(p)
                    };
                }
            }
        }
    }
}

fn package(run: &mut Run) {
    forget_packaged_sources();
    // Likewise the verification builds: cargo fingerprints a registry crate
    // by name and version, so it would reuse the last run's artifacts.
    let _ = std::fs::remove_dir_all(root().join("target/package"));
    run.step(
        "cargo package",
        cargo()
            .args(["package", "--workspace"])
            .args(NOT_LIBRARIES.iter().flat_map(|k| ["--exclude", k]))
            .args(["--allow-dirty", "--target-dir", "target/package"]),
    );
}

fn ci(full: bool) -> ExitCode {
    let mut run = Run::new();
    run.step("fmt", cargo().args(["fmt", "--all", "--check"]));
    run.step(
        "clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    );
    run.step(
        "clippy (--cfg bsdalloc_loom)",
        cargo()
            .args(["clippy", "--all-targets", "--target-dir", "target/loom"])
            .args(LIBRARY_CRATES.iter().flat_map(|k| ["-p", k]))
            .args(["--", "-D", "warnings"])
            .env("RUSTFLAGS", "--cfg bsdalloc_loom"),
    );
    run.step("test", cargo().args(["test", "--workspace"]));
    // Overflow checks are off in release: size arithmetic from caller input
    // must be checked by the code itself, and the tests prove it.
    run.step(
        "test (release, overflow checks off)",
        cargo()
            .args(["test", "--release", "--workspace"])
            .args(NOT_LIBRARIES.iter().flat_map(|k| ["--exclude", k]))
            .arg("--tests"),
    );
    for k in DEBUG_FEATURE_CRATES {
        run.step(
            &format!("test {k} --features debug-all"),
            cargo().args(["test", "-p", k, "--features", "debug-all"]),
        );
    }
    for (k, feature, test) in FEATURE_TESTS {
        run.step(
            &format!("test {k} --features {feature} --test {test}"),
            cargo().args(["test", "-p", k, "--features", feature, "--test", test]),
        );
    }
    run.step(
        "doc",
        cargo()
            .args(["doc", "--workspace", "--no-deps"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    );
    // The README's first command, short: the example checks its own
    // report (every section, nothing leaked).
    run.step(
        "example vmstat (the README's first command, 1 s)",
        cargo().args([
            "run",
            "--release",
            "-p",
            "bsdalloc",
            "--example",
            "vmstat",
            "--",
            "--secs",
            "1",
        ]),
    );
    // V1's scaling table (issue 14): instant fit from 100 to a million live
    // segments, with the busy hash's chains and the metadata per segment.
    // About a second; no time is judged here.
    run.step(
        "V1 scaling table (vmem_scale, 100 to 1M live segments)",
        cargo().args([
            "run",
            "--release",
            "-p",
            "bsdalloc-benches",
            "--bin",
            "vmem_scale",
            "--",
            "--live",
            "100,10000,100000,1000000",
            "--reps",
            "1",
            "--ops",
            "200000",
        ]),
    );
    // K7, short: the real programs with bsdalloc, mimalloc and the system
    // allocator as the global allocator (results must agree); the C peers
    // (jemalloc) build only in `cargo xtask bench`. No time is judged here.
    run.step(
        "K7 build (bsdalloc, mimalloc, system)",
        cargo().args([
            "build",
            "--release",
            "-p",
            "bsdalloc-benches",
            "--bin",
            "k7",
            "--bin",
            "k7_bsdalloc",
            "--bin",
            "k7_mimalloc",
            "--bin",
            "k7_system",
        ]),
    );
    run.step(
        "K7 real programs (--quick)",
        Command::new(root().join("target/release/k7")).args(["--quick", "--no-callgrind"]),
    );
    // Check 15, short: real programs under the preloaded C malloc.
    preload::preload(&mut run, full);
    loom(&mut run);
    nostd(&mut run);
    test_kernel(&mut run);
    package(&mut run);
    fuzz(&mut run, if full { 900 } else { 45 }, &[]);
    if full {
        full_tier(&mut run);
    }
    run.finish()
}

fn full_tier(run: &mut Run) {
    // Miri on the library crates' unit tests: pure logic (the fit test,
    // free lists, hash chains, the deferred-interrupt model) and arenas on
    // their static tags. Integration tests call into the OS (signals,
    // membarrier, mmap with PROT_NONE), which Miri cannot run; the unit
    // tests that need OS pages say `#[cfg_attr(miri, ignore)]`.
    let miri = Command::new("rustup")
        .args([
            "component",
            "add",
            "--toolchain",
            "nightly",
            "miri",
            "rust-src",
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if miri {
        run.step(
            "miri",
            nightly_cargo()
                .args(["miri", "test"])
                .args(LIBRARY_CRATES.iter().flat_map(|k| ["-p", k]))
                .args(["--lib", "--target-dir", "target/miri"])
                .env("MIRIFLAGS", "-Zmiri-strict-provenance"),
        );
    } else {
        run.skip("miri", "rustup could not add miri and rust-src for nightly");
    }
    run.step(
        "test (ASan)",
        nightly_cargo()
            .args(["test", "--workspace"])
            .args(NOT_LIBRARIES.iter().flat_map(|k| ["--exclude", k]))
            // Its tests preload the cdylib into C programs, and an
            // instrumented library cannot be preloaded before the ASan
            // runtime; its contract runs in the plain test steps.
            .args(["--exclude", "bsdalloc-cmalloc"])
            .args([
                "--target",
                "x86_64-unknown-linux-gnu",
                "--target-dir",
                "target/asan",
            ])
            // With kmem's tracking hooks: ASan sees inside the slabs.
            .env("RUSTFLAGS", "-Zsanitizer=address --cfg bsdalloc_asan")
            .env("RUSTDOCFLAGS", "-Zsanitizer=address --cfg bsdalloc_asan")
            // The tests' intentional leaks (`&'static` fixtures) are
            // suppressed by name; the names are in frames only the slow
            // unwinder sees.
            .env("ASAN_OPTIONS", "fast_unwind_on_malloc=0")
            .env(
                "LSAN_OPTIONS",
                format!("suppressions={}", root().join("xtask/lsan.supp").display()),
            ),
    );
    let valgrind = Command::new("valgrind").arg("--version").output().is_ok();
    if valgrind {
        run.step(
            "valgrind memcheck (platform tests)",
            Command::new("sh").arg("-c").arg(
                "set -e; cargo test -p bsdalloc-platform --no-run --target-dir target/valgrind --message-format=short 2>&1 | tail -1; \
                 for t in target/valgrind/debug/deps/ipl_mutex-* target/valgrind/debug/deps/pages-*; do \
                   case $t in *.d) continue;; esac; \
                   valgrind --error-exitcode=1 --errors-for-leak-kinds=definite --leak-check=full -q $t --test-threads=1; done",
            ),
        );
        // kmem with its Valgrind tracking hooks (MALLOCLIKE/FREELIKE):
        // tests/valgrind.rs runs each case as a child under memcheck, bad
        // ones must be reported and everyday work must give 0 errors;
        // with debug-all too (footers, redzones, poison, and objects
        // coming back out of their pools through the poison constructor).
        for features in ["", "debug-all"] {
            let mut cmd = cargo();
            cmd.args(["test", "-p", "bsdalloc-kmem", "--test", "valgrind"])
                .args(["--target-dir", "target/valgrind-kmem"])
                .env("RUSTFLAGS", "--cfg bsdalloc_valgrind");
            let mut name = "valgrind memcheck (kmem tracking hooks)".to_string();
            if !features.is_empty() {
                cmd.args(["--features", features]);
                name = format!("valgrind memcheck (kmem tracking hooks, {features})");
            }
            run.step(&name, &mut cmd);
        }
    } else {
        run.skip(
            "valgrind",
            "valgrind is not installed (platform tests, kmem tracking hooks)",
        );
    }
}

fn bench(quick: bool, filter: Option<String>) -> ExitCode {
    let mut run = Run::new();
    let mut cmd = cargo();
    // The C/C++ peers (jemalloc, rpmalloc, snmalloc) build here, slowly:
    // benches only, never in ci's clippy and test runs.
    cmd.args([
        "bench",
        "-p",
        "bsdalloc-benches",
        "--features",
        "c-peers",
        "--benches",
    ]);
    cmd.arg("--");
    if quick {
        cmd.args([
            "--warm-up-time",
            "0.5",
            "--measurement-time",
            "1",
            "--sample-size",
            "10",
        ]);
    }
    if let Some(f) = &filter {
        cmd.arg(f);
    }
    // Benches append counter tables (ops counted by our own statistics) here.
    let _ = std::fs::remove_file(root().join("target/bench-extra.md"));
    cmd.env("BSDALLOC_BENCH_EXTRA", root().join("target/bench-extra.md"));
    run.step("criterion benches", &mut cmd);
    // With a FILTER (`cargo xtask bench --quick V1`), the driver steps run
    // only where the filter names their cases: a vmem run does not wait for
    // the real-program suites.
    let wants = |cases: &[&str]| {
        filter
            .as_deref()
            .is_none_or(|f| cases.iter().any(|c| f.contains(c)))
    };
    if wants(&["G6"]) {
        // G6: G1 and G3 over thread counts. Runs unchanged on a many-core
        // machine (`BSDALLOC_G6_THREADS=1,2,4,8,16`); on two cores, 4 is the 2x
        // oversubscribed run.
        let threads = env::var("BSDALLOC_G6_THREADS").unwrap_or_else(|_| "1,2,4".into());
        run.step(
            "G6 scaling",
            cargo()
                .args([
                    "run",
                    "--release",
                    "-p",
                    "bsdalloc-benches",
                    "--features",
                    "c-peers",
                    "--bin",
                    "g6_scaling",
                    "--",
                    "--threads",
                    &threads,
                    "--ms",
                    if quick { "100" } else { "500" },
                ])
                .env("BSDALLOC_BENCH_EXTRA", root().join("target/bench-extra.md")),
        );
    }
    if wants(&["K7", "K2", "K3", "K4"]) {
        // K7: real programs, one binary per global allocator, each run as a
        // child process by the k7 driver (which finds them beside itself, so
        // every binary is built first).
        run.step(
            "K7 build",
            cargo().args([
                "build",
                "--release",
                "-p",
                "bsdalloc-benches",
                "--features",
                "c-peers",
                "--bins",
            ]),
        );
        let mut k7 = cargo();
        k7.args([
            "run",
            "--release",
            "-p",
            "bsdalloc-benches",
            "--features",
            "c-peers",
            "--bin",
            "k7",
        ]);
        if quick {
            k7.args(["--", "--quick"]);
        }
        run.step(
            "K7 real programs",
            k7.env("BSDALLOC_BENCH_EXTRA", root().join("target/bench-extra.md")),
        );
    }
    if wants(&["K2", "K3", "K4"]) {
        // K2-K4: larson, xmalloc, cache-scratch through each allocator's C
        // malloc/free, one child process per allocator and case (the kmt
        // driver and its children were built by the step above).
        let mut kmt = cargo();
        kmt.args([
            "run",
            "--release",
            "-p",
            "bsdalloc-benches",
            "--features",
            "c-peers",
            "--bin",
            "kmt",
        ]);
        if quick {
            kmt.args(["--", "--quick"]);
        }
        run.step(
            "K2-K4 larson, xmalloc, cache-scratch",
            kmt.env("BSDALLOC_BENCH_EXTRA", root().join("target/bench-extra.md")),
        );
    }
    // The tables, and the same ratios drawn as the chart the README shows.
    run.step(
        "write benches/RESULTS.md and benches/results.svg",
        cargo().args([
            "run",
            "--release",
            "-p",
            "bsdalloc-benches",
            "--bin",
            "report",
            "--",
            "target/criterion",
            "benches/RESULTS.md",
            "benches/results.svg",
        ]),
    );
    run.finish()
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: cargo xtask <ci [--full] | loom | fuzz [SECS] [TARGET..] | nostd | test-kernel | package | preload [--full] | bench [--quick] [FILTER]>"
    );
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(args.iter().any(|a| a == "--full")),
        Some("loom") => {
            let mut r = Run::new();
            loom(&mut r);
            r.finish()
        }
        Some("fuzz") => {
            let mut r = Run::new();
            let secs = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(60);
            let only: Vec<String> = args
                .iter()
                .skip(1)
                .filter(|a| a.parse::<u64>().is_err())
                .cloned()
                .collect();
            fuzz(&mut r, secs, &only);
            r.finish()
        }
        Some("nostd") => {
            let mut r = Run::new();
            nostd(&mut r);
            r.finish()
        }
        Some("test-kernel") => {
            let mut r = Run::new();
            test_kernel(&mut r);
            r.finish()
        }
        Some("package") => {
            let mut r = Run::new();
            package(&mut r);
            r.finish()
        }
        Some("preload") => {
            let mut r = Run::new();
            preload::preload(&mut r, args.iter().any(|a| a == "--full"));
            r.finish()
        }
        Some("bench") => {
            let quick = args.iter().any(|a| a == "--quick");
            let filter = args.iter().skip(1).find(|a| !a.starts_with("--")).cloned();
            bench(quick, filter)
        }
        _ => usage(),
    }
}
