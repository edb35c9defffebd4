//! Inheritance: what becomes of a held lock when the holder starts a child (exec, with the lock
//! handed over on purpose or not) or forks without exec, and then releases or dies. Each cell
//! of the table is asserted; the README copies the table.

// The Unix suite: Windows has its own (tests/windows.rs).
#![cfg(unix)]

mod common;
mod reliability_common;

use std::path::Path;

use common::{KillOnDrop, Proc, backends, lock, parse_outcome, unique_name};
use onlyone::{BackendKind, Lock};
use reliability_common::figure;

/// Whether the lock is free for a third process (taken and given back at once).
fn free(backend: BackendKind, name: &str, dir: &Path) -> bool {
    lock(backend, name, dir)
        .try_acquire()
        .unwrap()
        .is_acquired()
}

/// The scenarios, and whether the lock is still held at the end of each.
#[derive(Clone, Copy, Debug)]
enum Scenario {
    /// spawn (fork+exec) without handing over, holder SIGKILLed.
    ExecKilled,
    /// spawn with the descriptor handed over on purpose, holder SIGKILLed.
    ExecHandedKilled,
    /// the same, and the child named in the record as the lock's job; holder SIGKILLed.
    ExecJobKilled,
    /// fork without exec, the child keeps its copy of the guard; the parent releases.
    ForkParentReleases,
    /// fork without exec, the child keeps its copy; the parent is SIGKILLed.
    ForkParentKilled,
    /// fork without exec, the child drops its copy; the parent still holds.
    ForkChildDrops,
    /// ... and then the parent releases.
    ForkChildDropsThenRelease,
}

impl Scenario {
    const ALL: [Scenario; 7] = [
        Scenario::ExecKilled,
        Scenario::ExecHandedKilled,
        Scenario::ExecJobKilled,
        Scenario::ForkParentReleases,
        Scenario::ForkParentKilled,
        Scenario::ForkChildDrops,
        Scenario::ForkChildDropsThenRelease,
    ];

    fn describe(self) -> &'static str {
        match self {
            Scenario::ExecKilled => "child started (fork+exec), not handed over; holder killed",
            Scenario::ExecHandedKilled => {
                "child started with the descriptor handed over on purpose; holder killed"
            }
            Scenario::ExecJobKilled => {
                "... and named as the lock's job (`Guard::record_job`); holder killed"
            }
            Scenario::ForkParentReleases => {
                "fork without exec, child keeps its copy; parent calls release()"
            }
            Scenario::ForkParentKilled => "fork without exec, child keeps its copy; parent killed",
            Scenario::ForkChildDrops => {
                "fork without exec, child drops its copy of the guard; parent still holds"
            }
            Scenario::ForkChildDropsThenRelease => "... then the parent calls release()",
        }
    }

    /// Whether the lock is held at the end, per backend: the documented behaviour.
    fn held_after(self, backend: BackendKind) -> bool {
        use BackendKind::*;
        match (self, backend) {
            (Scenario::ExecKilled, _) => false,
            // A PID file names one process: it cannot be handed over.
            (Scenario::ExecHandedKilled, PidFile) => false,
            (Scenario::ExecHandedKilled, _) => true,
            // The record names the child: held while it lives, for the PID file too.
            (Scenario::ExecJobKilled, _) => true,
            // The forked copy of the socket keeps the name bound; flock's LOCK_UN acts on the
            // open file description the child shares; the PID file is removed by its owner.
            (Scenario::ForkParentReleases, AbstractSocket) => true,
            (Scenario::ForkParentReleases, _) => false,
            (Scenario::ForkParentKilled, PidFile) => false,
            (Scenario::ForkParentKilled, _) => true,
            // A forked copy never releases what its parent holds.
            (Scenario::ForkChildDrops, _) => true,
            (Scenario::ForkChildDropsThenRelease, _) => false,
        }
    }
}

/// Reads the two lines of a `fork` order (parent's and child's, in either order); returns the
/// child's pid.
fn forked(p: &mut Proc, how: &str) -> u32 {
    p.send(&format!("fork {how}"));
    let lines = [p.line(), p.line()];
    let child = lines
        .iter()
        .find_map(|l| l.strip_prefix("forked "))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("fork answers {lines:?}"));
    let word = if how == "drop" { "dropped" } else { "kept" };
    assert!(
        lines.contains(&format!("child {child} {word}")),
        "fork answers {lines:?}"
    );
    child
}

fn run(backend: BackendKind, scenario: Scenario) -> Cell {
    let dir = tempfile::tempdir().unwrap();
    let name = unique_name(&format!("inherit-{backend}-{scenario:?}"));
    let mut holder = Proc::holder(backend, &name, dir.path(), None);
    assert!(parse_outcome(&holder.line()).0);
    let mut children = Vec::new();
    let spawned = |answer: String| -> u32 {
        answer
            .strip_prefix("spawned ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("bad answer {answer:?}"))
    };
    match scenario {
        Scenario::ExecKilled | Scenario::ExecHandedKilled | Scenario::ExecJobKilled => {
            let order = match scenario {
                Scenario::ExecKilled => "spawn",
                Scenario::ExecHandedKilled => "inherit",
                _ => "job",
            };
            children.push(KillOnDrop(spawned(holder.ask(order))));
            holder.kill_to_zombie();
        }
        Scenario::ForkParentReleases => {
            children.push(KillOnDrop(forked(&mut holder, "keep")));
            assert_eq!(holder.ask("release"), "released");
        }
        Scenario::ForkParentKilled => {
            children.push(KillOnDrop(forked(&mut holder, "keep")));
            holder.kill_to_zombie();
        }
        Scenario::ForkChildDrops | Scenario::ForkChildDropsThenRelease => {
            children.push(KillOnDrop(forked(&mut holder, "drop")));
            assert_eq!(
                holder.ask("verify"),
                "ok",
                "{backend}: the child's drop broke it"
            );
            if matches!(scenario, Scenario::ForkChildDropsThenRelease) {
                assert_eq!(holder.ask("release"), "released");
            }
        }
    }
    let named = lock(backend, &name, dir.path())
        .holder()
        .unwrap()
        .map(|h| match h.pid {
            Some(p) if p == holder.pid() && !common::alive(p) => "the dead first holder",
            Some(p) if p == holder.pid() => "the first holder",
            Some(p) if children.iter().any(|c| c.0 == p) => "the child",
            Some(_) => "another process",
            None => "no process (held, the holder unidentified)",
        });
    let held = !free(backend, &name, dir.path());
    assert_eq!(
        held,
        named.is_some(),
        "{backend} {scenario:?}: holder() says {named:?}"
    );
    if matches!(scenario, Scenario::ExecJobKilled) {
        // The job ends too: nobody is left, and the lock is free (the PID file is stale).
        for child in &children {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.0 as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            common::wait_gone(child.0);
        }
        assert!(
            free(backend, &name, dir.path()),
            "{backend}: still held after the job died"
        );
    }
    drop(children);
    Cell { held, named }
}

/// One cell of the table: held or not, and whom `holder()` names.
struct Cell {
    held: bool,
    named: Option<&'static str>,
}

#[test]
fn inheritance_table() {
    let backends = backends();
    let mut rows = Vec::new();
    for scenario in Scenario::ALL {
        let cells: Vec<Cell> = backends.iter().map(|&b| run(b, scenario)).collect();
        rows.push((scenario, cells));
    }
    let header: Vec<&str> = backends.iter().map(|b| b.as_str()).collect();
    println!("\n| scenario | {} |", header.join(" | "));
    println!("| --- |{}", " --- |".repeat(backends.len()));
    for (scenario, cells) in &rows {
        let cells: Vec<String> = cells
            .iter()
            .map(|c| match c.named {
                Some(who) => format!("held (`holder()` names {who})"),
                None => "free".to_owned(),
            })
            .collect();
        println!("| {} | {} |", scenario.describe(), cells.join(" | "));
    }
    for (scenario, cells) in &rows {
        for (backend, cell) in backends.iter().zip(cells) {
            assert_eq!(
                cell.held,
                scenario.held_after(*backend),
                "{backend}: {}",
                scenario.describe()
            );
        }
    }
    figure(&format!(
        "inheritance: {} scenarios x {} backends, every cell as documented",
        rows.len(),
        backends.len()
    ));
}
