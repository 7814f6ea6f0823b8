//! K7 (BENCHMARKS.md): the driver. Runs `k7_bsdalloc`, `k7_mimalloc`,
//! `k7_system` and (built with `c-peers`) `k7_jemalloc` — one program
//! source, a different `#[global_allocator]` in each — as child processes
//! for each program, so that peak RSS is each process's own, in the same
//! run, interleaved (the allocator order rotates from one repetition to
//! the next), and prints a table of wall time, CPU time and peak RSS with
//! the ratios to bsdalloc (also appended to `BSDALLOC_BENCH_EXTRA` when
//! set, as `cargo xtask bench` does).
//!
//! ```text
//! cargo build --release -p bsdalloc-benches --features c-peers --bins
//! target/release/k7 [--quick] [--reps N] [--threads N] [--programs binary-trees,serde-json,hashmap]
//! ```
//! The children live next to this binary: build them all first (`cargo
//! run --bin k7` builds the driver alone). `--quick`: binary-trees depth
//! 16, 5 MB of JSON, 500k map operations. `--reps` (default 3, 1 with
//! `--quick`): each figure is the median of the repetitions. `--threads`:
//! binary-trees' second thread count (default: the core count).
//!
//! Then, when `valgrind` is on the PATH (and without `--no-callgrind`),
//! the noise-free figure: instructions per `GlobalAlloc::alloc`+`dealloc`
//! pair of 64 B through `bsdalloc::Global`, mimalloc and glibc, from
//! `pool_cache_ops global|global-mi|global-sys` under callgrind at N and 2N
//! pairs (the difference over N).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use bsdalloc_benches::driver::{arg, field, flag, fmt_mib, median};

use bsdalloc_benches::k7::PROGRAMS;

/// One child's line.
#[derive(Debug, Clone, Copy)]
struct Sample {
    wall: f64,
    cpu: f64,
    rss_kib: u64,
    check: u64,
}

fn parse(line: &str) -> Option<Sample> {
    Some(Sample {
        wall: field(line, "wall_s")?.parse().ok()?,
        cpu: field(line, "cpu_s")?.parse().ok()?,
        rss_kib: field(line, "maxrss_kib")?.parse().ok()?,
        check: field(line, "check")?.parse().ok()?,
    })
}

fn run(bin: &Path, program: &str, threads: usize, quick: bool) -> Result<Sample, String> {
    let mut cmd = Command::new(bin);
    cmd.arg(program).arg(threads.to_string());
    if quick {
        cmd.arg("--quick");
    }
    let out = cmd
        .output()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "{} {program} {threads}: {} {}",
            bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    stdout
        .lines()
        .find(|l| l.starts_with("k7 "))
        .and_then(parse)
        .ok_or_else(|| format!("{}: no result line in {stdout:?}", bin.display()))
}

/// Instructions callgrind counts for `pool_cache_ops MODE N`.
fn callgrind(ops: &Path, mode: &str, n: u64) -> Option<u64> {
    let out = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(ops)
        .args([mode, &n.to_string()])
        .output()
        .ok()?;
    let err = String::from_utf8_lossy(&out.stderr);
    let tail = &err[err.find("Collected : ")? + "Collected : ".len()..];
    tail.split_whitespace().next()?.parse().ok()
}

/// K7's instructions per alloc+free pair (64 B) for each global
/// allocator, as a markdown paragraph; empty without valgrind or
/// `pool_cache_ops`.
fn pair_instructions(dir: &Path, quick: bool) -> String {
    let ops = dir.join(format!("pool_cache_ops{}", std::env::consts::EXE_SUFFIX));
    let have_valgrind = Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_valgrind || !ops.exists() {
        eprintln!("k7: no valgrind or pool_cache_ops: instructions per pair skipped");
        return String::new();
    }
    let n: u64 = if quick { 200_000 } else { 1_000_000 };
    let per_pair = |mode: &str| {
        let a = callgrind(&ops, mode, n)?;
        let b = callgrind(&ops, mode, 2 * n)?;
        Some(b.saturating_sub(a) as f64 / n as f64)
    };
    let rows: Vec<(&str, Option<f64>)> = [
        ("bsdalloc (Global)", "global"),
        ("mimalloc", "global-mi"),
        ("system", "global-sys"),
    ]
    .iter()
    .map(|&(name, mode)| (name, per_pair(mode)))
    .collect();
    let mut s = format!(
        "Instructions per GlobalAlloc::alloc+dealloc pair, 64 B, one thread (callgrind, \
         `pool_cache_ops MODE N` at N = {n} and {}, the difference over N):\n\n\
         | allocator | instructions per pair | ratio to bsdalloc |\n|---|---|---|\n",
        2 * n
    );
    let ours = rows[0].1;
    for (name, v) in &rows {
        let _ = writeln!(
            s,
            "| {name} | {} | {} |",
            v.map_or("—".into(), |v| format!("{v:.1}")),
            match (v, ours) {
                (Some(v), Some(o)) => format!("{:.2}", v / o),
                _ => "—".into(),
            }
        );
    }
    s.push('\n');
    s
}

fn fmt_secs(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        format!("{:.0} ms", s * 1e3)
    }
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
    let n_threads: usize = arg("--threads")
        .and_then(|s| s.parse().ok())
        .unwrap_or(cores);
    let programs: Vec<String> = arg("--programs")
        .map(|p| p.split(',').map(str::to_string).collect())
        .unwrap_or_else(|| PROGRAMS.iter().map(|p| p.to_string()).collect());

    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("the driver's directory");
    #[allow(unused_mut)]
    let mut allocs = vec!["bsdalloc", "mimalloc", "system"];
    if cfg!(feature = "c-peers") {
        allocs.push("jemalloc");
    }
    let bins: Vec<PathBuf> = allocs
        .iter()
        .map(|a| dir.join(format!("k7_{a}{}", std::env::consts::EXE_SUFFIX)))
        .collect();
    if let Some(missing) = bins.iter().find(|b| !b.exists()) {
        eprintln!(
            "k7: {} is missing; build the K7 binaries first: \
             cargo build --release -p bsdalloc-benches{} --bins",
            missing.display(),
            if cfg!(feature = "c-peers") {
                " --features c-peers"
            } else {
                ""
            }
        );
        std::process::exit(2);
    }

    // (program, threads)
    let mut cases: Vec<(String, usize)> = vec![];
    for p in &programs {
        cases.push((p.clone(), 1));
        if p == "binary-trees" && n_threads > 1 {
            cases.push((p.clone(), n_threads));
        }
    }
    // samples[case][alloc]
    let mut samples: Vec<Vec<Vec<Sample>>> = vec![vec![vec![]; allocs.len()]; cases.len()];
    let mut errors: Vec<String> = vec![];
    for rep in 0..reps {
        for (ci, (p, t)) in cases.iter().enumerate() {
            for k in 0..allocs.len() {
                let ai = (k + rep + ci) % allocs.len();
                match run(&bins[ai], p, *t, quick) {
                    Ok(s) => {
                        eprintln!(
                            "k7: rep {rep} {p} x{t} {:>8}: wall {:.3} s, cpu {:.3} s, peak RSS {}",
                            allocs[ai],
                            s.wall,
                            s.cpu,
                            fmt_mib(s.rss_kib as f64)
                        );
                        samples[ci][ai].push(s);
                    }
                    Err(e) => {
                        eprintln!("k7: {e}");
                        errors.push(e);
                    }
                }
            }
        }
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n### K7 real programs with each global allocator ({}{})\n\n\
         {}, {}; one child process per allocator and program (peak RSS = getrusage ru_maxrss of that \
         process), allocators interleaved, median of {reps} run{}. Ratios are peer / bsdalloc \
         (above 1: bsdalloc faster or smaller). Goal: bsdalloc wall <= 1.0x mimalloc, peak RSS \
         <= 1.2x mimalloc.\n\n\
         | program | allocator | wall | cpu (user+sys) | peak RSS | wall peer/bsdalloc | RSS peer/bsdalloc |\n\
         |---|---|---|---|---|---|---|",
        if quick { "--quick" } else { "full sizes" },
        if quick {
            ": binary-trees depth 16, 5 MB JSON, 500k map ops"
        } else {
            ": binary-trees depth 21, 50 MB JSON, 10M map ops"
        },
        bsdalloc_benches::machine_description(),
        Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default(),
        if reps == 1 { "" } else { "s" },
    );
    let mut goals = String::new();
    for (ci, (p, t)) in cases.iter().enumerate() {
        let name = if p == "binary-trees" {
            format!("{p} ({t} thread{})", if *t == 1 { "" } else { "s" })
        } else {
            p.clone()
        };
        let med: Vec<Option<(f64, f64, f64)>> = samples[ci]
            .iter()
            .map(|v| {
                (!v.is_empty()).then(|| {
                    (
                        median(v.iter().map(|s| s.wall).collect()),
                        median(v.iter().map(|s| s.cpu).collect()),
                        median(v.iter().map(|s| s.rss_kib as f64).collect()),
                    )
                })
            })
            .collect();
        let checks: Vec<u64> = samples[ci].iter().flatten().map(|s| s.check).collect();
        if checks.windows(2).any(|w| w[0] != w[1]) {
            let e = format!("{name}: the allocators' results differ: {checks:?}");
            eprintln!("k7: {e}");
            errors.push(e);
        }
        let ours = med[0];
        for (ai, a) in allocs.iter().enumerate() {
            let Some((w, c, r)) = med[ai] else {
                let _ = writeln!(out, "| {name} | {a} | failed | — | — | — | — |");
                continue;
            };
            let (wr, rr) = match ours {
                Some((ow, _, or)) if ai != 0 => {
                    (format!("{:.2}", w / ow), format!("{:.2}", r / or))
                }
                _ => ("—".into(), "—".into()),
            };
            let _ = writeln!(
                out,
                "| {name} | {a} | {} | {} | {} | {wr} | {rr} |",
                fmt_secs(w),
                fmt_secs(c),
                fmt_mib(r)
            );
        }
        if let (Some((ow, oc, or)), Some((mw, mc, mr))) = (ours, med[1]) {
            let (wx, rx) = (ow / mw, or / mr);
            let _ = writeln!(
                goals,
                "- {name}: bsdalloc / mimalloc wall {wx:.2}x ({}), peak RSS {rx:.2}x ({}); \
                 CPU time {:.2}x (less sensitive to the machine's other load)",
                if wx <= 1.0 { "met" } else { "missed" },
                if rx <= 1.2 { "met" } else { "missed" },
                oc / mc,
            );
        }
    }
    let _ = writeln!(out, "\nAgainst the goal:\n\n{goals}");
    if !errors.is_empty() {
        let _ = writeln!(out, "Errors:\n");
        for e in &errors {
            let _ = writeln!(out, "- {e}");
        }
        out.push('\n');
    }
    if !flag("--no-callgrind") {
        out.push_str(&pair_instructions(dir, quick));
    }
    print!("{out}");
    if std::env::var("BSDALLOC_BENCH_EXTRA").is_ok() {
        bsdalloc_benches::append_extra(&out);
    }
    if !errors.is_empty() {
        std::process::exit(1);
    }
}
