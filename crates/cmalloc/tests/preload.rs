//! The cdylib preloaded into C programs: the contract, threads, fork,
//! invalid frees, the environment, and real programs (python3, sqlite3,
//! git, gcc) when they are installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// `libbsdalloc_cmalloc.so` as `cargo test` built it: in the test
/// binaries' `deps/` directory, or beside it where a `cargo build` put
/// one — the newer of the two, so that a library left there by an earlier
/// build is never the one tested.
fn cdylib() -> &'static Path {
    static SO: OnceLock<PathBuf> = OnceLock::new();
    SO.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let deps = exe.parent().unwrap();
        [deps, deps.parent().unwrap()]
            .into_iter()
            .map(|dir| dir.join("libbsdalloc_cmalloc.so"))
            .filter_map(|so| Some((so.metadata().ok()?.modified().ok()?, so)))
            .max_by_key(|(t, _)| *t)
            .map(|(_, so)| so)
            .unwrap_or_else(|| panic!("libbsdalloc_cmalloc.so not found beside {}", deps.display()))
    })
}

fn scratch() -> PathBuf {
    let d = std::env::temp_dir().join(format!("bsdalloc-cmalloc-tests-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Compile `tests/c/<name>.c`, or `None` (and say why) without a C compiler.
fn compile(name: &str) -> Option<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/c/{name}.c"));
    // One binary per call: tests run in parallel, and executing a file
    // another test's compiler is writing fails with ETXTBSY.
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out = scratch().join(format!("{name}-{n}"));
    let st = Command::new("cc")
        .args(["-O0", "-fno-builtin", "-w", "-pthread", "-o"])
        .arg(&out)
        .arg(&src)
        .status();
    match st {
        Ok(s) if s.success() => Some(out),
        Ok(s) => panic!("cc {name}.c: {s}"),
        Err(e) => {
            eprintln!("SKIPPED: {name}: no C compiler ({e})");
            None
        }
    }
}

fn preloaded(cmd: &mut Command) -> Output {
    cmd.env("LD_PRELOAD", cdylib())
        .env_remove("BSDALLOC_LIMIT")
        .env_remove("BSDALLOC_SHOW_STATS")
        .output()
        .unwrap()
}

fn expect_ok(what: &str, o: &Output) {
    assert!(
        o.status.success(),
        "{what}: {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn run_c(name: &str, args: &[&str], env: &[(&str, &str)]) -> Option<Output> {
    let mut c = Command::new(compile(name)?);
    c.args(args)
        .env("LD_PRELOAD", cdylib())
        .env_remove("BSDALLOC_LIMIT")
        .env_remove("BSDALLOC_SHOW_STATS")
        .envs(env.iter().copied());
    Some(c.output().unwrap())
}

#[test]
fn cdylib_exports_the_c_abi() {
    let o = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(cdylib())
        .output();
    let Ok(o) = o else {
        eprintln!("SKIPPED: nm is not installed");
        return;
    };
    let syms = String::from_utf8_lossy(&o.stdout);
    for f in [
        "malloc",
        "free",
        "calloc",
        "realloc",
        "reallocarray",
        "posix_memalign",
        "aligned_alloc",
        "memalign",
        "valloc",
        "pvalloc",
        "malloc_usable_size",
    ] {
        assert!(
            syms.lines().any(|l| l.ends_with(&format!(" T {f}"))),
            "{f} is not exported"
        );
    }
}

#[test]
fn c_contract() {
    if let Some(o) = run_c("contract", &[], &[]) {
        expect_ok("contract.c", &o);
    }
}

#[test]
fn c_threads_beyond_cpu_slots_and_frees_from_tls_destructors() {
    if let Some(o) = run_c("threads", &[], &[]) {
        expect_ok("threads.c", &o);
    }
}

#[test]
fn c_fork_from_a_multithreaded_parent() {
    if let Some(o) = run_c("fork", &["300"], &[]) {
        expect_ok("fork.c", &o);
    }
}

#[test]
fn c_invalid_free_aborts_with_glibcs_message() {
    for case in [
        "stack",
        "static",
        "inner-page",
        "inner-coloured",
        "double-large",
    ] {
        let Some(o) = run_c("invalid", &[case], &[]) else {
            return;
        };
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains("free(): invalid pointer"),
            "{case}: {}: {err}",
            o.status
        );
    }
}

#[test]
fn c_budget_from_the_environment() {
    if let Some(o) = run_c("budget", &[], &[("BSDALLOC_LIMIT", "64M")]) {
        expect_ok("budget.c", &o);
    }
}

#[test]
fn bad_environment_values_are_refused_in_one_line() {
    for (k, v) in [
        ("BSDALLOC_LIMIT", "lots"),
        ("BSDALLOC_LIMIT", "12X"),
        ("BSDALLOC_LIMIT", "99999999999999999999999"),
        ("BSDALLOC_SHOW_STATS", "yes"),
    ] {
        let Some(o) = run_c("budget", &[], &[(k, v)]) else {
            return;
        };
        let err = String::from_utf8_lossy(&o.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| l.contains(k)).collect();
        assert_eq!(lines.len(), 1, "{k}={v}: {err}");
        assert!(lines[0].starts_with("bsdalloc: "), "{k}={v}: {err}");
        // No budget then: the 256 MiB request succeeds, budget.c says so.
        assert!(!o.status.success() || k == "BSDALLOC_SHOW_STATS", "{k}={v}");
    }
}

#[test]
fn show_stats_prints_the_report_at_exit() {
    let Some(o) = run_c("contract", &[], &[("BSDALLOC_SHOW_STATS", "1")]) else {
        return;
    };
    expect_ok("contract.c with BSDALLOC_SHOW_STATS=1", &o);
    let err = String::from_utf8_lossy(&o.stderr);
    for part in [
        "Memory resource pool statistics",
        "kmem-00016",
        "Pool cache statistics",
        "Kernel map",
        "Arenas",
        "C allocator (bsdalloc-cmalloc)",
    ] {
        assert!(err.contains(part), "{part} missing from:\n{err}");
    }
}

/// A real program under the allocator, or `None` if it is not installed.
fn program(cmd: &str, args: &[&str]) -> Option<Output> {
    if Command::new(cmd).arg("--version").output().is_err() {
        eprintln!("SKIPPED: {cmd} is not installed");
        return None;
    }
    Some(preloaded(
        Command::new(cmd).args(args).current_dir(scratch()),
    ))
}

#[test]
fn smoke_python3() {
    let script = "import json, re, sqlite3, threading\n\
        d = {str(i): [i] * (i % 7) for i in range(20000)}\n\
        s = json.dumps(d); assert json.loads(s) == d\n\
        ts = [threading.Thread(target=lambda: sum(len(x) for x in re.findall('[0-9]+', s))) for _ in range(8)]\n\
        [t.start() for t in ts]; [t.join() for t in ts]\n\
        c = sqlite3.connect(':memory:'); c.execute('create table t(x)')\n\
        c.executemany('insert into t values(?)', [(i,) for i in range(10000)])\n\
        print(c.execute('select sum(x) from t').fetchone()[0])";
    if let Some(o) = program("python3", &["-c", script]) {
        expect_ok("python3", &o);
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "49995000");
    }
}

#[test]
fn smoke_sqlite3() {
    let sql = "create table t(a integer, b text); \
        with recursive c(x) as (select 1 union all select x + 1 from c where x < 20000) \
        insert into t select x, hex(randomblob(20)) from c; \
        create index ti on t(b); select count(*), sum(a) from t;";
    if let Some(o) = program("sqlite3", &[":memory:", sql]) {
        expect_ok("sqlite3", &o);
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "20000|200010000");
    }
}

#[test]
fn smoke_git_and_gcc() {
    for cmd in ["git", "gcc"] {
        if let Some(o) = program(cmd, &["--version"]) {
            expect_ok(cmd, &o);
            assert!(!o.stdout.is_empty());
        }
    }
}
