//! K2 (larson), K3 (xmalloc) and K4 (cache-scratch), BENCHMARKS.md: the
//! driver. Runs `kmt_bsdalloc` and `kmt_peers ALLOC` (mimalloc, glibc, and
//! jemalloc, snmalloc, rpmalloc when built with `c-peers`) as one child
//! process per allocator and case — peak RSS is each process's own — in the
//! same run, interleaved (the allocator order rotates from one case and
//! repetition to the next), and prints a table of throughput, peak RSS and
//! the ratios to mimalloc (also appended to `BSDALLOC_BENCH_EXTRA` when
//! set, as `cargo xtask bench` does).
//!
//! ```text
//! cargo build --release -p bsdalloc-benches [--features c-peers] --bin kmt --bin kmt_bsdalloc --bin kmt_peers
//! target/release/kmt [--quick] [--reps N] [--threads 2,4] [--workloads K2,K3,K4]
//! ```
//! `--threads`: the thread counts (default: the core count and twice it,
//! oversubscribed; K4 also runs one thread, its baseline). `--reps`
//! (default 3, 1 with `--quick`): each figure is the median. `--quick`:
//! K2 1 s, K3 0.5 s, K4 a tenth of the writes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use bsdalloc_benches::driver::{arg, field, flag, fmt_mib, median};

use bsdalloc_benches::kmt::{Params, WORKLOADS};

#[derive(Debug, Clone, Copy)]
struct Sample {
    ops: f64,
    secs: f64,
    cpu: f64,
    rss_kib: f64,
    shared: u64,
}

fn parse(line: &str) -> Option<Sample> {
    Some(Sample {
        ops: field(line, "ops")?.parse().ok()?,
        secs: field(line, "secs")?.parse().ok()?,
        cpu: field(line, "cpu_s")?.parse().ok()?,
        rss_kib: field(line, "maxrss_kib")?.parse().ok()?,
        shared: field(line, "shared_lines")?.parse().ok()?,
    })
}

/// One child: `kmt_bsdalloc` or `kmt_peers ALLOC`.
fn run(
    dir: &Path,
    alloc: &str,
    workload: &str,
    threads: usize,
    quick: bool,
) -> Result<Sample, String> {
    let exe = |n: &str| dir.join(format!("{n}{}", std::env::consts::EXE_SUFFIX));
    let mut cmd = if alloc == "bsdalloc" {
        Command::new(exe("kmt_bsdalloc"))
    } else {
        let mut c = Command::new(exe("kmt_peers"));
        c.arg(alloc);
        c
    };
    cmd.arg(workload).arg(threads.to_string());
    if quick {
        cmd.arg("--quick");
    }
    let out = cmd.output().map_err(|e| format!("{alloc}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "{alloc} {workload} x{threads}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    stdout
        .lines()
        .find(|l| l.starts_with("kmt "))
        .and_then(parse)
        .ok_or_else(|| format!("{alloc}: no result line in {stdout:?}"))
}

/// A case's medians for one allocator.
#[derive(Debug, Clone, Copy)]
struct Med {
    /// ops per second.
    rate: f64,
    /// ops per CPU second (user + system): what the allocator costs,
    /// less sensitive to a shared machine's load than `rate`.
    cpu_rate: f64,
    secs: f64,
    cpu: f64,
    rss: f64,
    /// the largest count seen.
    shared: u64,
}

fn med(v: &[Sample]) -> Option<Med> {
    (!v.is_empty()).then(|| Med {
        rate: median(v.iter().map(|s| s.ops / s.secs).collect()),
        cpu_rate: median(v.iter().map(|s| s.ops / s.cpu).collect()),
        secs: median(v.iter().map(|s| s.secs).collect()),
        cpu: median(v.iter().map(|s| s.cpu).collect()),
        rss: median(v.iter().map(|s| s.rss_kib).collect()),
        shared: v.iter().map(|s| s.shared).max().unwrap_or(0),
    })
}

fn main() {
    let quick = flag("--quick");
    let reps: usize = arg("--reps")
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 1 } else { 3 })
        .max(1);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let threads: Vec<usize> = arg("--threads")
        .map(|t| t.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![cores, 2 * cores]);
    let workloads: Vec<String> = arg("--workloads")
        .map(|w| w.split(',').map(str::to_string).collect())
        .unwrap_or_else(|| WORKLOADS.iter().map(|w| w.to_string()).collect());

    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("the driver's directory");
    // mimalloc first after us: the ratios are to it.
    #[allow(unused_mut)]
    let mut allocs = vec!["bsdalloc", "mimalloc", "glibc"];
    if cfg!(feature = "c-peers") {
        allocs.extend(["jemalloc", "snmalloc", "rpmalloc"]);
    }
    for b in ["kmt_bsdalloc", "kmt_peers"] {
        let p: PathBuf = dir.join(format!("{b}{}", std::env::consts::EXE_SUFFIX));
        if !p.exists() {
            eprintln!(
                "kmt: {} is missing; build the K2-K4 binaries first: cargo build --release \
                 -p bsdalloc-benches{} --bin kmt --bin kmt_bsdalloc --bin kmt_peers",
                p.display(),
                if cfg!(feature = "c-peers") {
                    " --features c-peers"
                } else {
                    ""
                }
            );
            std::process::exit(2);
        }
    }

    // (workload, threads); K4 has the one-thread baseline too.
    let mut cases: Vec<(String, usize)> = vec![];
    for w in &workloads {
        if w == "K4" && !threads.contains(&1) {
            cases.push((w.clone(), 1));
        }
        for &t in &threads {
            cases.push((w.clone(), t));
        }
    }
    let mut samples: Vec<Vec<Vec<Sample>>> = vec![vec![vec![]; allocs.len()]; cases.len()];
    let mut errors: Vec<String> = vec![];
    for rep in 0..reps {
        for (ci, (w, t)) in cases.iter().enumerate() {
            for k in 0..allocs.len() {
                let ai = (k + rep + ci) % allocs.len();
                match run(dir, allocs[ai], w, *t, quick) {
                    Ok(s) => {
                        eprintln!(
                            "kmt: rep {rep} {w} x{t} {:>8}: {:.3} Mops/s, {:.3} s, cpu {:.3} s, \
                             peak RSS {}, shared lines {}",
                            allocs[ai],
                            s.ops / s.secs / 1e6,
                            s.secs,
                            s.cpu,
                            fmt_mib(s.rss_kib),
                            s.shared
                        );
                        samples[ci][ai].push(s);
                    }
                    Err(e) => {
                        eprintln!("kmt: {e}");
                        errors.push(e);
                    }
                }
            }
        }
    }

    let p = Params::new(quick);
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n### K2 larson, K3 xmalloc, K4 cache-scratch through each allocator's C `malloc`/`free` ({})\n\n\
         {}, {date}; one child process per allocator and case (peak RSS = getrusage ru_maxrss \
         of that process, which includes the harness's own few MiB), allocators interleaved, \
         median of {reps} run{}. bsdalloc is `bsdalloc_cmalloc`'s exported `malloc`/`free` \
         (the process's malloc); every peer is called through its own C entry points, with \
         an unsized free except snmalloc (snmalloc-sys builds only its sized Rust entry \
         points). Ratios are allocator / mimalloc; \
         `Mops per cpu-s` divides by the process's CPU time (user + system), which a \
         loaded machine disturbs less than wall time.\n\n\
         - K2: larson, {} s, {}-{} B, {} chunks per thread, {} rounds, seed {}; ops = one \
         free + one malloc; each thread generation hands its blocks to a new thread.\n\
         - K3: xmalloc, {} s, half the threads allocate 1-{} B and send them in batches of 256 \
         over a channel {} batches deep to a partner that frees them (live set <= {:.0} KiB \
         per pair); ops = blocks allocated and freed.\n\
         - K4: cache-scratch, {} B objects from the main thread freed by the workers, then {} \
         times malloc, {} passes writing and reading each byte, free; `shared lines`: 64 B \
         lines holding objects of more than one thread (0 = no false sharing); `scaling` = \
         time / (time with 1 thread x threads / min(threads, {cores} cores)), 1.0 ideal.\n",
        if quick { "--quick" } else { "full sizes" },
        bsdalloc_benches::machine_description(),
        if reps == 1 { "" } else { "s" },
        p.k2_time.as_secs_f64(),
        p.k2_min,
        p.k2_max,
        p.k2_chunks,
        p.k2_rounds,
        p.seed,
        p.k3_time.as_secs_f64(),
        p.k3_max,
        p.k3_depth,
        ((p.k3_depth + 2) * 256 * p.k3_max) as f64 / 1024.0,
        p.k4_size,
        p.k4_iterations,
        p.k4_repetitions,
    );
    let mut goals = String::new();
    let mimalloc = allocs.iter().position(|&a| a == "mimalloc").unwrap_or(1);
    for w in &workloads {
        let k4 = w == "K4";
        if k4 {
            let _ = writeln!(
                out,
                "\n{w}:\n\n| threads | allocator | wall | cpu | peak RSS | shared lines | scaling | \
                 wall / mimalloc |\n|---|---|---|---|---|---|---|---|"
            );
        } else {
            let _ = writeln!(
                out,
                "\n{w}:\n\n| threads | allocator | Mops/s | cpu | Mops per cpu-s | peak RSS | \
                 throughput / mimalloc | per cpu-s / mimalloc | RSS / mimalloc |\n\
                 |---|---|---|---|---|---|---|---|---|"
            );
        }
        let base1: Vec<Option<Med>> = cases
            .iter()
            .position(|(cw, ct)| cw == w && *ct == 1)
            .map(|ci| samples[ci].iter().map(|v| med(v)).collect())
            .unwrap_or_else(|| vec![None; allocs.len()]);
        for (ci, (cw, t)) in cases.iter().enumerate() {
            if cw != w {
                continue;
            }
            let m: Vec<Option<Med>> = samples[ci].iter().map(|v| med(v)).collect();
            let mi = m[mimalloc];
            for (ai, a) in allocs.iter().enumerate() {
                let Some(x) = m[ai] else {
                    let _ = writeln!(out, "| {t} | {a} | failed | — | — | — | — | — | — |");
                    continue;
                };
                let ratio = |f: fn(&Med) -> f64| {
                    mi.map_or("—".to_string(), |mi| format!("{:.2}", f(&x) / f(&mi)))
                };
                if k4 {
                    let scaling = base1[ai].map_or("—".to_string(), |b| {
                        let ideal = b.secs * *t as f64 / (*t).min(cores) as f64;
                        format!("{:.2}", x.secs / ideal)
                    });
                    let _ = writeln!(
                        out,
                        "| {t} | {a} | {:.3} s | {:.3} s | {} | {} | {scaling} | {} |",
                        x.secs,
                        x.cpu,
                        fmt_mib(x.rss),
                        x.shared,
                        ratio(|m| m.secs),
                    );
                } else {
                    let _ = writeln!(
                        out,
                        "| {t} | {a} | {:.2} | {:.2} s | {:.2} | {} | {} | {} | {} |",
                        x.rate / 1e6,
                        x.cpu,
                        x.cpu_rate / 1e6,
                        fmt_mib(x.rss),
                        ratio(|m| m.rate),
                        ratio(|m| m.cpu_rate),
                        ratio(|m| m.rss),
                    );
                }
            }
            let (Some(o), Some(mi)) = (m[0], mi) else {
                continue;
            };
            let verdict = |ok: bool| if ok { "met" } else { "missed" };
            let line = match w.as_str() {
                "K2" => format!(
                    "throughput {:.2}x mimalloc ({}; per CPU second {:.2}x), peak RSS {:.2}x ({})",
                    o.rate / mi.rate,
                    verdict(o.rate >= mi.rate),
                    o.cpu_rate / mi.cpu_rate,
                    o.rss / mi.rss,
                    verdict(o.rss <= 1.2 * mi.rss)
                ),
                "K3" => format!(
                    "throughput {:.2}x mimalloc ({}; per CPU second {:.2}x), peak RSS {:.2}x \
                     mimalloc, {} (goal: bounded)",
                    o.rate / mi.rate,
                    verdict(o.rate >= mi.rate),
                    o.cpu_rate / mi.cpu_rate,
                    o.rss / mi.rss,
                    fmt_mib(o.rss)
                ),
                _ => format!(
                    "wall {:.2}x mimalloc ({}), shared lines {} ({})",
                    o.secs / mi.secs,
                    verdict(o.secs <= 1.1 * mi.secs),
                    o.shared,
                    verdict(o.shared == 0)
                ),
            };
            let _ = writeln!(goals, "- {w} x{t}: bsdalloc {line}");
        }
    }
    let _ = writeln!(out, "\nAgainst the goals:\n\n{goals}");
    if !errors.is_empty() {
        let _ = writeln!(out, "Errors:\n");
        for e in &errors {
            let _ = writeln!(out, "- {e}");
        }
        out.push('\n');
    }
    print!("{out}");
    if std::env::var("BSDALLOC_BENCH_EXTRA").is_ok() {
        bsdalloc_benches::append_extra(&out);
    }
    if !errors.is_empty() {
        std::process::exit(1);
    }
}
