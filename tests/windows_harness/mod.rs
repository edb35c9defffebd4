//! The harness of the Windows suites (tests/windows.rs, tests/handoff_windows.rs; both
//! `harness = false`): libtest has no skip. Every test runs in a fresh temporary directory and
//! prints `NAME: ok`, `NAME: FAILED: why` or `NAME: skipped: why`; the run ends with
//! `N passed, N failed, N skipped` and fails if any test failed. Arguments not starting with `-`
//! filter the tests by name.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::process::ExitCode;

/// Why a test could not run here.
pub struct Skip(pub String);

/// What a test gives: done, or skipped with the reason (a failure panics).
pub type Outcome = Result<(), Skip>;

/// A test, given its temporary directory.
pub type TestFn = fn(&Path) -> Outcome;

/// Runs `tests` (those the command line's filters name) and counts them.
pub fn run_all(tests: &[(&str, TestFn)]) -> ExitCode {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for (name, run) in tests {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let dir = tempfile::tempdir().expect("temporary directory");
        match catch_unwind(AssertUnwindSafe(|| run(dir.path()))) {
            Ok(Ok(())) => {
                passed += 1;
                println!("{name}: ok");
            }
            Ok(Err(Skip(why))) => {
                skipped += 1;
                println!("{name}: skipped: {why}");
            }
            Err(panic) => {
                failed += 1;
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                println!("{name}: FAILED: {why}");
            }
        }
    }
    println!("{passed} passed, {failed} failed, {skipped} skipped");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
