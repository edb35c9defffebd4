//! Names: the mapping from a lock name to its kernel resource is injective, fits the kernel's
//! limits, and is stable across releases (two versions of onlyone must find each other's locks).

// The Unix suite: Windows has its own (tests/windows.rs).
#![cfg(unix)]

mod common;
mod reliability_common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use onlyone::name::{ABSTRACT_NAME_MAX, FILE_NAME_MAX};
use onlyone::{LockName, Scope};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use reliability_common::{figure, scaled};

/// The file extensions the file backends use.
const EXTENSIONS: [&str; 3] = ["lock", "pid", "pid-takeover"];

/// Valid lock names of every shape: everyday, `#`-prefixed, that look like the hashed form,
/// around each length limit, any Unicode without control characters.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9._ -]{1,40}",
        "#[a-z0-9~#]{0,40}",
        "#?[a-z]{0,60}~[0-9a-f]{32}",
        "[a-z]{85,100}",
        "[a-z]{180,200}",
        "[a-z]{200,400}",
        "[^\\x00-\\x1f\\x7f-\\x9f/]{1,120}",
    ]
    .prop_filter("valid name", |s| LockName::new(s.clone()).is_ok())
}

/// Every resource `name` maps to, tagged with its kind.
fn resources(name: &LockName) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("abstract-user", name.abstract_socket_name(Scope::User)),
        ("abstract-system", name.abstract_socket_name(Scope::System)),
    ];
    // All file names share one directory: they must differ across extensions too.
    for ext in EXTENSIONS {
        out.push(("file", name.file_name(ext)));
    }
    out
}

fn check_limits(name: &LockName) {
    for scope in [Scope::User, Scope::System] {
        let s = name.abstract_socket_name(scope);
        assert!(
            s.len() <= ABSTRACT_NAME_MAX,
            "{name:?} -> {s:?}: {} bytes",
            s.len()
        );
        assert!(!s.contains('\0'), "{s:?}");
        assert_eq!(s, name.abstract_socket_name(scope), "deterministic");
    }
    for ext in EXTENSIONS {
        let f = name.file_name(ext);
        assert!(
            f.len() <= FILE_NAME_MAX,
            "{name:?} -> {f:?}: {} bytes",
            f.len()
        );
        assert!(!f.contains('/') && !f.contains('\0'), "{f:?}");
        assert!(f.ends_with(&format!(".{ext}")), "{f:?}");
        assert!(f != "." && f != "..");
    }
    // A plain name that fits is used as it is.
    let plain = name.as_str();
    if !plain.starts_with('#') && plain.len() <= 40 {
        assert_eq!(name.file_name("lock"), format!("{plain}.lock"));
        assert!(
            name.abstract_socket_name(Scope::System)
                .ends_with(&format!("/{plain}"))
        );
    }
}

/// Within each batch of random names, distinct names never share a resource, and every
/// resource fits its limit.
#[test]
fn distinct_names_never_share_a_resource() {
    let cases = scaled(2000, 200) as u32;
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let checked = AtomicUsize::new(0);
    runner
        .run(&prop::collection::vec(name(), 1..64), |names| {
            let mut seen: HashMap<(&str, String), String> = HashMap::new();
            for n in &names {
                let lock = LockName::new(n.clone()).unwrap();
                check_limits(&lock);
                for (kind, r) in resources(&lock) {
                    if let Some(other) = seen.insert((kind, r.clone()), n.clone()) {
                        prop_assert_eq!(&other, n, "{} and {} both map to {}", other, n, r);
                    }
                }
            }
            checked.fetch_add(names.len(), Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    figure(&format!(
        "names: {cases} random batches, {} names of every shape, no two sharing a resource, \
         all within 107 bytes (abstract) and 200 bytes (files)",
        checked.load(Ordering::Relaxed)
    ));
}

/// Many names that share everything a truncation would keep: only the hash tells them apart.
#[test]
fn long_names_with_one_prefix_stay_distinct() {
    let n = scaled(100_000, 10_000);
    let prefix = "p".repeat(300);
    let mut seen = HashSet::new();
    for i in 0..n {
        let name = LockName::new(format!("{prefix}{i}")).unwrap();
        for (kind, r) in resources(&name) {
            assert!(seen.insert((kind, r.clone())), "collision on {r}");
        }
        if i % 1000 == 0 {
            check_limits(&name);
        }
    }
    // And names that look like the hashed form of another name map elsewhere.
    for i in 0..1000 {
        let long = LockName::new(format!("{prefix}{i}")).unwrap();
        for scope in [Scope::User, Scope::System] {
            let mapped = long.abstract_socket_name(scope);
            let tail = mapped.rsplit('/').next().unwrap();
            let forged = LockName::new(tail).unwrap();
            assert_ne!(forged.abstract_socket_name(scope), mapped);
        }
        let file = long.file_name("lock");
        let forged = LockName::new(file.trim_end_matches(".lock")).unwrap();
        assert_ne!(forged.file_name("lock"), file);
    }
    figure(&format!(
        "names: {n} names sharing a 300-byte prefix, {} resources, no collision",
        seen.len()
    ));
}

/// Known mappings, pinned: a change here breaks every lock held by an older version.
#[test]
fn known_mappings_are_stable_across_releases() {
    let x = |n: usize| "x".repeat(n);
    let y = |n: usize| "y".repeat(n);
    let z = |n: usize| "z".repeat(n);
    // (name, abstract system name, lock file, pid file, takeover file)
    let table: Vec<(String, String, String, String, String)> = vec![
        (
            "backup".into(),
            "onlyone/system/backup".into(),
            "backup.lock".into(),
            "backup.pid".into(),
            "backup.pid-takeover".into(),
        ),
        (
            "my job".into(),
            "onlyone/system/my job".into(),
            "my job.lock".into(),
            "my job.pid".into(),
            "my job.pid-takeover".into(),
        ),
        (
            "ünïcödé-lock".into(),
            "onlyone/system/ünïcödé-lock".into(),
            "ünïcödé-lock.lock".into(),
            "ünïcödé-lock.pid".into(),
            "ünïcödé-lock.pid-takeover".into(),
        ),
        (
            "a~b".into(),
            "onlyone/system/a~b".into(),
            "a~b.lock".into(),
            "a~b.pid".into(),
            "a~b.pid-takeover".into(),
        ),
        (
            "#".into(),
            "onlyone/system/#~d228cb69311a8caf78912b704e4a3d1a".into(),
            "#~d228cb69311a8caf78912b704e4a3d1a.lock".into(),
            "#~d228cb69311a8caf78912b704e4a3d1a.pid".into(),
            "#~d228cb69311a8caf78912b704e4a3d1a.pid-takeover".into(),
        ),
        (
            "##".into(),
            "onlyone/system/#~088094aca4ab1be95aa0733055595523".into(),
            "#~088094aca4ab1be95aa0733055595523.lock".into(),
            "#~088094aca4ab1be95aa0733055595523.pid".into(),
            "#~088094aca4ab1be95aa0733055595523.pid-takeover".into(),
        ),
        (
            "#hash".into(),
            "onlyone/system/#hash~711f689a2d83d94f70809746c6f2c466".into(),
            "#hash~711f689a2d83d94f70809746c6f2c466.lock".into(),
            "#hash~711f689a2d83d94f70809746c6f2c466.pid".into(),
            "#hash~711f689a2d83d94f70809746c6f2c466.pid-takeover".into(),
        ),
        // The longest name an abstract socket takes as it is in system scope, and one more.
        (
            x(92),
            format!("onlyone/system/{}", x(92)),
            format!("{}.lock", x(92)),
            format!("{}.pid", x(92)),
            format!("{}.pid-takeover", x(92)),
        ),
        (
            x(93),
            format!("onlyone/system/#{}~f746d853fc29cf4f26890949a1628427", x(58)),
            format!("{}.lock", x(93)),
            format!("{}.pid", x(93)),
            format!("{}.pid-takeover", x(93)),
        ),
        // Around the file-name limits (200 bytes with the extension).
        (
            y(188),
            format!("onlyone/system/#{}~632dd6c260e87b5a3e8391940a414ba9", y(58)),
            format!("{}.lock", y(188)),
            format!("{}.pid", y(188)),
            format!("#{}~632dd6c260e87b5a3e8391940a414ba9.pid-takeover", y(153)),
        ),
        (
            y(196),
            format!("onlyone/system/#{}~33241a5e6caabc19bcba42f195b32fa1", y(58)),
            format!("#{}~33241a5e6caabc19bcba42f195b32fa1.lock", y(161)),
            format!("{}.pid", y(196)),
            format!("#{}~33241a5e6caabc19bcba42f195b32fa1.pid-takeover", y(153)),
        ),
        (
            z(300),
            format!("onlyone/system/#{}~615964e06ad6e4a86b379a728302740d", z(58)),
            format!("#{}~615964e06ad6e4a86b379a728302740d.lock", z(161)),
            format!("#{}~615964e06ad6e4a86b379a728302740d.pid", z(162)),
            format!("#{}~615964e06ad6e4a86b379a728302740d.pid-takeover", z(153)),
        ),
        // Multi-byte characters are never cut in the middle.
        (
            "é".repeat(47),
            format!(
                "onlyone/system/#{}~8f758fc9ac2eca8371a1d8757900cf19",
                "é".repeat(29)
            ),
            format!("{}.lock", "é".repeat(47)),
            format!("{}.pid", "é".repeat(47)),
            format!("{}.pid-takeover", "é".repeat(47)),
        ),
    ];
    for (name, abs, lock, pid, takeover) in &table {
        let n = LockName::new(name.clone()).unwrap();
        assert_eq!(&n.abstract_socket_name(Scope::System), abs, "{name:?}");
        assert_eq!(&n.file_name("lock"), lock, "{name:?}");
        assert_eq!(&n.file_name("pid"), pid, "{name:?}");
        assert_eq!(&n.file_name("pid-takeover"), takeover, "{name:?}");
        // User scope differs only in its prefix when the name fits as it is.
        let uid = nix::unistd::geteuid().as_raw();
        let user = n.abstract_socket_name(Scope::User);
        assert!(user.starts_with(&format!("onlyone/u{uid}/")), "{user}");
        check_limits(&n);
    }
    figure(&format!(
        "names: {} pinned mappings (abstract, lock, pid, takeover) unchanged",
        table.len()
    ));
}
