//! `onlyone compare` measures every local backend with real child processes: its JSON lists each
//! backend with latencies greater than zero and a behaviour matrix whose measured cells hold.
//! (No timing assertions: the numbers only have to exist.)

// The Unix suite: Windows has its own (cli/tests/windows.rs).
#![cfg(unix)]

use std::process::Command;

use onlyone::BackendKind;
use serde_json::Value;

#[test]
fn compare_lists_every_local_backend_with_measured_values() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let svg = scratch.path().join("chart.svg");
    let dir = scratch.path().join("locks");
    std::fs::create_dir(&dir).expect("mkdir");
    let out = Command::new(env!("CARGO_BIN_EXE_onlyone"))
        .args(["compare", "--iterations", "50", "--json", "--svg"])
        .arg(&svg)
        .arg("--dir")
        .arg(&dir)
        .output()
        .expect("run onlyone compare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "onlyone compare failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("bad JSON ({e}): {stdout}"));
    assert_eq!(report["iterations"], 50);

    let backends = report["backends"].as_array().expect("a list of backends");
    let listed: Vec<&str> = backends
        .iter()
        .map(|b| b["backend"].as_str().expect("backend name"))
        .collect();
    let expected: Vec<&str> = BackendKind::available_local()
        .into_iter()
        .map(BackendKind::as_str)
        .collect();
    assert_eq!(listed, expected);

    // Every other strategy is listed as absent, with the reason (PostgreSQL always: it needs a
    // server; abstract sockets off Linux).
    let absent = report["absent"]
        .as_array()
        .expect("a list of absent strategies");
    let absent_names: Vec<&str> = absent
        .iter()
        .map(|a| a["backend"].as_str().expect("backend name"))
        .collect();
    let not_measured: Vec<&str> = BackendKind::ALL
        .into_iter()
        .map(BackendKind::as_str)
        .filter(|b| !expected.contains(b))
        .collect();
    assert_eq!(absent_names, not_measured);
    for a in absent {
        let reason = a["reason"].as_str().unwrap_or("");
        assert!(!reason.is_empty(), "{a}");
        if a["backend"] == "abstract" && !cfg!(target_os = "linux") {
            assert_eq!(reason, "abstract Unix sockets exist only on Linux");
        }
        if a["backend"] == "postgres" {
            assert!(reason.contains("PostgreSQL server"), "{reason}");
        }
    }

    for b in backends {
        let name = b["backend"].as_str().expect("backend name");
        for key in [
            "acquire_release_us",
            "contended_us",
            "sigkill_to_acquire_us",
        ] {
            let l = &b[key];
            let num = |k: &str| {
                l[k].as_f64()
                    .unwrap_or_else(|| panic!("{name} {key}.{k}: {l}"))
            };
            let (median, p99) = (num("median"), num("p99"));
            assert!(median > 0.0, "{name} {key} median {median}");
            assert!(p99 >= median, "{name} {key} p99 {p99} < median {median}");
            assert!(num("samples") >= 3.0, "{name} {key}");
        }
        let cell = |key: &str| {
            let c = &b["behaviour"][key];
            let flag = |k: &str| {
                c[k].as_bool()
                    .unwrap_or_else(|| panic!("{name} {key}.{k}: {c}"))
            };
            (
                flag("value"),
                flag("measured"),
                c["detail"].as_str().unwrap_or("").to_owned(),
            )
        };
        for key in ["released_on_sigkill", "holder_identity"] {
            let (value, measured, detail) = cell(key);
            assert!(value && measured, "{name} {key}: {detail}");
        }
        let (needs_dir, measured, detail) = cell("needs_writable_dir");
        assert!(measured, "{name}: {detail}");
        assert_eq!(needs_dir, name != "abstract", "{name}: {detail}");
        let (survives, _, detail) = cell("survives_lock_file_deletion");
        assert_eq!(survives, name == "abstract", "{name}: {detail}");
        let (safe, measured, detail) = cell("pid_reuse_safe");
        assert!(safe, "{name}: {detail}");
        assert_eq!(measured, name == "pidfile", "{name}: {detail}");
        let (crosses, _, detail) = cell("crosses_network_namespaces");
        assert_eq!(crosses, name != "abstract", "{name}: {detail}");
    }

    let chart = std::fs::read_to_string(&svg).expect("the chart was written");
    assert!(chart.starts_with("<svg") && chart.trim_end().ends_with("</svg>"));
    for name in &expected {
        assert!(
            chart.contains(&format!(">{name}</text>")),
            "{name} in the chart"
        );
    }
    // Nothing is left behind in the directory it measured in.
    let left: Vec<_> = std::fs::read_dir(&dir).expect("read_dir").collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn compare_rejects_zero_iterations() {
    let out = Command::new(env!("CARGO_BIN_EXE_onlyone"))
        .args(["compare", "--iterations", "0"])
        .output()
        .expect("run onlyone compare");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--iterations"));
}
