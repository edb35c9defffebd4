//! SIGKILL at random points. A pool of holder processes races for one lock without pause; at a
//! random moment one of them is frozen (SIGSTOP, confirmed by waitid), the witness is asked what it
//! was doing — acquiring, holding, releasing, or (PID file) inside a stale takeover, read from the
//! descriptors it has open — and it is SIGKILLed. Half the trials then kill a second process at
//! once, while the others rush to take over from the first. After each trial:
//! - no lock lookup names a killed process as the holder;
//! - the test process itself takes the lock (waiting on the release event; a lock that stays
//!   taken is *stuck*), enters its own critical section in the witness, and releases it;
//! - at the end, with every racer killed, the lock is free at once (abstract socket, flock) or
//!   after stale detection (PID file).
//!
//! The witness rules out two holders at once: a frozen process still holds its lock, so the kill
//! line is written while it provably holds nothing it could lose to anyone else.

// The Unix suite: Windows has its own (tests/windows.rs).
#![cfg(unix)]

mod common;
mod reliability_common;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use common::{Proc, backends, unique_name};
use onlyone::{Acquire, BackendKind, Builder, Lock};
use reliability_common::{
    Rng, Verdict, Watchdog, Witness, figure, full_scale, kill_and_wait, scaled, stop,
};

/// Racers alive at any time.
const WORKERS: usize = 6;
/// Longest random hold of a racer, in microseconds.
const HOLD_US: u64 = 200;
/// A lock the test cannot take within this long is stuck (a liveness bound, not a speed test).
const STUCK: Duration = Duration::from_secs(60);

fn spawn_racer(
    backend: BackendKind,
    name: &str,
    dir: &Path,
    witness: &Witness,
    rng: &mut Rng,
) -> Proc {
    let mut p = Proc::holder(backend, name, dir, Some("idle"));
    assert_eq!(p.line(), "ready");
    p.send(&format!(
        "race {} 0 {} {HOLD_US}",
        witness.path.display(),
        rng.next()
    ));
    p
}

/// What a frozen racer was doing, from its last witness line and its open descriptors.
fn phase(pid: u32, witness: &Witness, takeover: Option<&Path>) -> &'static str {
    let last = witness.last_line_of(pid).unwrap_or_default();
    match last.split(' ').next().unwrap_or("") {
        "acq" => {
            let in_takeover = takeover.is_some_and(|t| {
                std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                    fds.filter_map(Result::ok)
                        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == t))
                })
            });
            if in_takeover { "takeover" } else { "acquiring" }
        }
        "start" => "holding",
        // `end` is followed by `verify`, then the release, then `free`.
        "end" | "verify" => "releasing",
        _ => "between",
    }
}

/// Freezes `p`, logs what it was doing, kills it. Returns its pid.
fn freeze_and_kill(p: &Proc, witness: &Witness, takeover: Option<&Path>) -> (u32, &'static str) {
    let pid = p.pid();
    stop(pid);
    let what = phase(pid, witness, takeover);
    witness.note(&format!("kill {pid} {what}"));
    kill_and_wait(pid);
    (pid, what)
}

struct Outcome {
    verdict: Verdict,
    trials: usize,
    stuck: usize,
    named_dead: usize,
    second_kills: usize,
}

fn trials(backend: BackendKind, trials: usize, rng: &mut Rng) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let name = unique_name(&format!("kill-{backend}"));
    let witness = Witness::create(dir.path());
    let lock = Builder::new(&name)
        .backend(backend)
        .lock_dir(dir.path())
        .build()
        .unwrap();
    let takeover =
        (backend == BackendKind::PidFile).then(|| dir.path().join(format!("{name}.pid-takeover")));
    let me = std::process::id();
    let mut racers: HashSet<u32> = HashSet::from([me]);
    let mut pool: Vec<Proc> = (0..WORKERS)
        .map(|_| spawn_racer(backend, &name, dir.path(), &witness, rng))
        .collect();
    racers.extend(pool.iter().map(Proc::pid));
    let (mut stuck, mut named_dead, mut second_kills) = (0, 0, 0);
    for trial in 0..trials {
        // The random moment: how long the racers run before the kill (not a synchronisation).
        std::thread::sleep(Duration::from_micros(rng.below(1500)));
        let first = rng.below(WORKERS as u64) as usize;
        let mut victims = vec![first];
        let mut killed = vec![freeze_and_kill(&pool[first], &witness, takeover.as_deref()).0];
        if rng.below(2) == 0 {
            // A second kill while the others react to the first (a PID-file takeover, a waiter
            // woken by the release...).
            let second = (first + 1 + rng.below(WORKERS as u64 - 1) as usize) % WORKERS;
            let spin = rng.below(300);
            if spin > 0 {
                std::thread::sleep(Duration::from_micros(spin));
            }
            killed.push(freeze_and_kill(&pool[second], &witness, takeover.as_deref()).0);
            victims.push(second);
            second_kills += 1;
        }
        // A dead process is never named as the holder.
        match lock.holder() {
            Ok(Some(h)) if h.pid.is_some_and(|p| killed.contains(&p)) => {
                named_dead += 1;
                eprintln!("{backend} trial {trial}: a killed process is named as holder: {h}");
            }
            Ok(_) => {}
            Err(e) => panic!("{backend} trial {trial}: holder(): {e}"),
        }
        for v in victims {
            // Dropping the old Proc reaps it.
            pool[v] = spawn_racer(backend, &name, dir.path(), &witness, rng);
            racers.insert(pool[v].pid());
        }
        // The lock can be taken: the test process waits for it like any contender.
        match lock.acquire_timeout(Some(STUCK)) {
            Ok(Acquire::Acquired(g)) => {
                witness.note(&format!("start {me} {} ok", inode(&g)));
                witness.note(&format!("end {me}"));
                let ok = if g.verify().is_ok() { "ok" } else { "lost" };
                witness.note(&format!("verify {me} {ok}"));
                g.release().unwrap();
            }
            Ok(Acquire::Held(h)) => {
                stuck += 1;
                eprintln!("{backend} trial {trial}: stuck, held by {h}");
            }
            Err(e) => panic!("{backend} trial {trial}: acquire: {e}"),
        }
    }
    // Everyone dies; the lock must be free.
    let all: Vec<u32> = pool
        .iter()
        .map(|p| freeze_and_kill(p, &witness, takeover.as_deref()).0)
        .collect();
    let holder = lock.holder().unwrap();
    assert!(
        holder.is_none(),
        "{backend}: all racers {all:?} are dead, yet holder() says {holder:?}"
    );
    let final_try = lock.try_acquire().unwrap();
    assert!(
        final_try.is_acquired(),
        "{backend}: all racers are dead, yet the lock is {final_try:?}"
    );
    drop(final_try);
    drop(pool);
    Outcome {
        verdict: Verdict::analyse(&witness.read(), &racers),
        trials,
        stuck,
        named_dead,
        second_kills,
    }
}

fn inode(g: &onlyone::Guard) -> u64 {
    use std::os::unix::fs::MetadataExt;
    match g.as_fd() {
        Some(fd) => nix::sys::stat::fstat(fd).map_or(0, |s| s.st_ino),
        None if g.backend() == BackendKind::AbstractSocket => 0,
        None => std::fs::symlink_metadata(g.resource()).map_or(0, |m| m.ino()),
    }
}

#[test]
fn sigkill_at_random_points_never_double_grants_nor_sticks() {
    let n = scaled(1000, 100);
    let mut rng = Rng::from_env_or_clock("sigkill");
    let mut totals: BTreeMap<&'static str, usize> = BTreeMap::new();
    for backend in backends() {
        let started = std::time::Instant::now();
        let _dog = Watchdog::new(
            &format!("{backend} kills"),
            Duration::from_secs(900),
            vec![],
        );
        let o = trials(backend, n, &mut rng);
        o.verdict.assert_clean(&format!("{backend} kills"));
        assert_eq!(o.stuck, 0, "{backend}: stuck locks");
        assert_eq!(
            o.named_dead, 0,
            "{backend}: dead processes named as holders"
        );
        let kills: usize = o.verdict.kills.values().sum();
        assert_eq!(
            kills,
            o.trials + o.second_kills + WORKERS,
            "{backend}: kills logged"
        );
        let phases: Vec<String> = o
            .verdict
            .kills
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        figure(&format!(
            "sigkill {backend}: {} trials, {kills} processes killed ({}), {} holds, \
             {} double holders, {} stuck, {} dead holders named ({:.1} s)",
            o.trials,
            phases.join(", "),
            o.verdict.holds,
            o.verdict.double_holders.len(),
            o.stuck,
            o.named_dead,
            started.elapsed().as_secs_f64()
        ));
        for phase in ["acquiring", "holding", "releasing"] {
            *totals.entry(phase).or_default() += o.verdict.kills.get(phase).copied().unwrap_or(0);
        }
        if backend == BackendKind::PidFile {
            *totals.entry("takeover").or_default() +=
                o.verdict.kills.get("takeover").copied().unwrap_or(0);
        }
    }
    if full_scale() {
        // At full scale every kind of moment is hit; a run that missed one proves less.
        for (phase, count) in &totals {
            assert!(
                *count > 0,
                "no process was killed while {phase}: {totals:?}"
            );
        }
    }
}
