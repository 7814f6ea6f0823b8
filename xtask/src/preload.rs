//! `cargo xtask preload [--full]`: real programs under the preloaded C
//! allocator (bsdalloc-cmalloc) and again under glibc's malloc, outputs
//! compared, times side by side (TESTING.md check 15).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::{Run, cargo, root};

/// The release cdylib, built into the workspace's target directory.
fn cdylib() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let target = if target.is_absolute() {
        target
    } else {
        root().join(target)
    };
    target.join("release/libbsdalloc_cmalloc.so")
}

/// Whether `tool` runs; if not, try `apt-get install -y pkg` when root
/// with apt (a Debian-like CI), and ask again.
fn have(tool: &str, pkg: &str) -> bool {
    let runs = || {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !runs() {
        apt_install(tool, pkg);
    }
    runs()
}

/// `apt-get install -y pkg` when root with apt (a Debian-like CI).
fn apt_install(what: &str, pkg: &str) {
    let root_user = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if root_user && Path::new("/usr/bin/apt-get").exists() {
        eprintln!("{what} is missing: apt-get install -y {pkg}");
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-q", pkg])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
    }
}

/// The system's mimalloc as a preloadable library (K8's second peer),
/// installed from Debian's `libmimalloc2.0` if missing and possible.
fn libmimalloc() -> Option<PathBuf> {
    let find = || {
        [
            "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2",
            "/usr/lib/aarch64-linux-gnu/libmimalloc.so.2",
            "/usr/local/lib/libmimalloc.so.2",
            "/usr/lib/libmimalloc.so.2",
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
    };
    find().or_else(|| {
        apt_install("libmimalloc.so.2", "libmimalloc2.0");
        find()
    })
}

/// One program run: its combined output and exit status, and its time.
struct Outcome {
    ok: bool,
    out: Vec<u8>,
    secs: f64,
}

fn run_once(dir: &Path, script: &str, preload: Option<&Path>) -> Outcome {
    let mut c = Command::new("sh");
    c.arg("-c").arg(script).current_dir(dir);
    c.env_remove("LD_PRELOAD");
    if let Some(so) = preload {
        c.env("LD_PRELOAD", so);
    }
    // Deterministic git objects.
    for (k, v) in [
        ("GIT_AUTHOR_NAME", "bsdalloc"),
        ("GIT_AUTHOR_EMAIL", "ci@bsdalloc.invalid"),
        ("GIT_COMMITTER_NAME", "bsdalloc"),
        ("GIT_COMMITTER_EMAIL", "ci@bsdalloc.invalid"),
        ("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z"),
        ("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z"),
        ("GIT_CONFIG_NOSYSTEM", "1"),
        ("HOME", "."),
        ("LC_ALL", "C"),
    ] {
        c.env(k, v);
    }
    let t = Instant::now();
    let o = c.output();
    let secs = t.elapsed().as_secs_f64();
    match o {
        Ok(o) => {
            let mut out = o.stdout;
            out.extend_from_slice(&o.stderr);
            Outcome {
                ok: o.status.success(),
                out,
                secs,
            }
        }
        Err(e) => Outcome {
            ok: false,
            out: format!("could not start sh: {e}").into_bytes(),
            secs,
        },
    }
}

/// A workload: `setup` writes its inputs into a fresh directory, `script`
/// runs in it (once per allocator), and its output must be the same.
struct Workload {
    name: &'static str,
    tool: &'static str,
    pkg: &'static str,
    setup: fn(&Path, bool),
    script: &'static str,
    /// Compare exit status only (python's test runner prints timings).
    status_only: bool,
}

fn sqlite_setup(dir: &Path, full: bool) {
    let rows = if full { 300_000 } else { 30_000 };
    let sql = format!(
        "pragma journal_mode = delete;
create table a(id integer primary key, k integer, s text);
create table b(id integer primary key, a_id integer, v real, t text);
with recursive c(x) as (select 1 union all select x + 1 from c where x < {rows})
insert into a select x, (x * 7919) % 1000, printf('name-%08d-%s', x, substr('abcdefghijklmnopqrstuvwxyz', 1 + x % 26)) from c;
with recursive c(x) as (select 1 union all select x + 1 from c where x < {rows})
insert into b select x, 1 + (x * 31) % {rows}, (x % 1000) / 7.0, printf('%x', x * 2654435761 % 4294967296) from c;
create index a_k on a(k);
create index b_a on b(a_id);
create index b_t on b(t);
select count(*), sum(k), max(s) from a;
select a.k, count(*), printf('%.3f', sum(b.v)), min(b.t) from a join b on b.a_id = a.id group by a.k order by a.k limit 40;
select s from a where k = 500 order by s limit 20;
select count(*) from b where t like 'a%';
delete from b where id % 3 = 0;
update a set s = upper(s) where k < 100;
vacuum;
select count(*), printf('%.3f', sum(v)) from b;
select group_concat(s, ',') from (select s from a where k < 2 order by id limit 50);
pragma integrity_check;
"
    );
    std::fs::write(dir.join("work.sql"), sql).unwrap();
}

fn git_setup(dir: &Path, full: bool) {
    let files = if full { 5000 } else { 400 };
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..files {
        let mut s = String::new();
        for l in 0..(20 + i % 50) {
            let _ = writeln!(
                s,
                "line {l} of file {i}: {}",
                (i * 2_654_435_761usize + l) % 1_000_003
            );
        }
        std::fs::write(src.join(format!("f{:05}.txt", i)), s).unwrap();
    }
}

const GIT_SCRIPT: &str = "set -e
git init -q -b main repo && cp -r src repo/ && cd repo
# No automatic gc in the background: with many commits it races the gc below.
git config gc.auto 0
git add -A && git commit -q -m first
for n in 1 2 3 4 5; do
  for f in src/f0*$n.txt; do echo \"change $n\" >> $f; done
  git add -A && git commit -q -m \"change $n\"
done
git gc -q --aggressive
git fsck --full --strict 2>&1
git log --stat --format='%H %s' | head -400
git rev-parse HEAD
git count-objects -v | grep -v size";

fn gcc_setup(dir: &Path, full: bool) {
    let funcs: usize = if full { 8_000 } else { 300 };
    let mut s = String::from("#include <string.h>\nstruct s { int a[8]; double d; };\n");
    for i in 0..funcs {
        let _ = writeln!(
            s,
            "int f{i}(struct s *p, int n) {{ int r = {i}; for (int j = 0; j < n; j++) {{ r = r * 31 + p->a[j & 7] + (int)(p->d * j); if (r & {m}) p->a[(j + {i}) & 7] ^= r; }} return r + (n > {i} ? f{prev}(p, n - 1) : 0); }}",
            m = 1 << (i % 13),
            prev = i.saturating_sub(1)
        );
    }
    std::fs::write(dir.join("big.c"), s).unwrap();
}

const GCC_SCRIPT: &str = "set -e; gcc -O2 -c big.c -o big.o && sha256sum big.o";

fn python_setup(_: &Path, _: bool) {}

fn workloads(full: bool) -> Vec<Workload> {
    let py: &'static str = if full {
        "python3 -m test -q -j0 test_json test_re test_heapq test_bisect test_collections test_dict test_set test_list test_unicode test_sqlite3 test_threading test_pickle test_zlib test_itertools 2>&1 | tail -6"
    } else {
        "python3 -m test -q test_json test_heapq test_bisect 2>&1 | tail -4"
    };
    vec![
        Workload {
            name: "sqlite3",
            tool: "sqlite3",
            pkg: "sqlite3",
            setup: sqlite_setup,
            script: "sqlite3 db.sqlite < work.sql",
            status_only: false,
        },
        Workload {
            name: "git",
            tool: "git",
            pkg: "git",
            setup: git_setup,
            script: GIT_SCRIPT,
            status_only: false,
        },
        Workload {
            name: "gcc -O2",
            tool: "gcc",
            pkg: "gcc",
            setup: gcc_setup,
            script: GCC_SCRIPT,
            status_only: false,
        },
        Workload {
            name: "python3 -m test",
            tool: "python3",
            pkg: "python3",
            setup: python_setup,
            script: py,
            status_only: true,
        },
    ]
}

/// Every workload under glibc, then preloaded; a workload fails if its
/// preloaded run fails where glibc's passes, or its output differs.
pub(crate) fn preload(run: &mut Run, full: bool) {
    if !run.step(
        "build the preloadable malloc (release)",
        cargo().args(["build", "--release", "-p", "bsdalloc-cmalloc"]),
    ) {
        return;
    }
    let so = cdylib();
    let base = root().join("target/preload");
    let _ = std::fs::remove_dir_all(&base);
    // K8's second peer, in the long form only (the short form is a check,
    // not a measurement).
    let mi = if full {
        let mi = libmimalloc();
        if mi.is_none() {
            run.skip(
                "preload: the libmimalloc column",
                "libmimalloc.so.2 is not installed and cannot be (Debian: libmimalloc2.0)",
            );
        }
        mi
    } else {
        None
    };
    let mut table = String::from("| workload | glibc | bsdalloc-cmalloc | ratio |");
    table.push_str(if mi.is_some() {
        " libmimalloc | ratio | output |\n|---|---:|---:|---:|---:|---:|---|\n"
    } else {
        " output |\n|---|---:|---:|---:|---|\n"
    });
    for w in workloads(full) {
        let step = format!("preload: {}", w.name);
        if !have(w.tool, w.pkg) {
            run.skip(&step, &format!("{} is not installed and cannot be", w.tool));
            continue;
        }
        eprintln!("\n==> {step}");
        let mut outcomes = Vec::new();
        let runs = [("glibc", None), ("bsdalloc", Some(so.as_path()))]
            .into_iter()
            .chain(mi.as_deref().map(|m| ("mimalloc", Some(m))));
        for (label, pre) in runs {
            let dir = base.join(format!("{}-{label}", w.name.replace(' ', "_")));
            std::fs::create_dir_all(&dir).unwrap();
            (w.setup)(&dir, full);
            outcomes.push(run_once(&dir, w.script, pre));
        }
        let (g, b) = (&outcomes[0], &outcomes[1]);
        let same = if w.status_only {
            g.ok == b.ok
        } else {
            g.out == b.out && g.ok == b.ok
        };
        let ok = same && (b.ok || !g.ok);
        let _ = write!(
            table,
            "| {} | {:.2} s | {:.2} s | {:.2} |",
            w.name,
            g.secs,
            b.secs,
            b.secs / g.secs.max(1e-9),
        );
        if let Some(m) = outcomes.get(2) {
            let _ = write!(
                table,
                " {:.2} s | {:.2} |",
                m.secs,
                m.secs / g.secs.max(1e-9)
            );
        }
        let _ = writeln!(table, " {} |", if same { "same" } else { "DIFFERENT" });
        run.timings
            .push((step.clone(), outcomes.iter().map(|o| o.secs).sum()));
        if !ok {
            eprintln!(
                "FAILED: {step}: glibc {} / bsdalloc {}\n--- glibc output (tail)\n{}\n--- bsdalloc output (tail)\n{}",
                if g.ok { "ok" } else { "failed" },
                if b.ok { "ok" } else { "failed" },
                tail(&g.out),
                tail(&b.out)
            );
            run.failures.push(step);
        }
    }
    eprintln!(
        "\n==> preload: times (glibc malloc vs LD_PRELOAD={}; ratios to glibc)\n{table}",
        so.display()
    );
}

fn tail(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
