//! The job path each build takes, with real processes: how onlyone receives the signals it
//! forwards (signalfd on Linux, a self-pipe on the other systems and in the portable build), and
//! what a SIGKILLed wrapper leaves behind where no death signal kills its job (macOS, NetBSD,
//! illumos; on Linux the portable build, `ONLYONE_PORTABLE=1`): the job keeps the lock until it
//! exits itself, for flock (it inherited the descriptor) and the PID file (the record names it).
//!
//! Linux-only: the tests read `/proc` and wait on pidfds. Every process is killed when its guard
//! drops, also when a test fails; the orphaned job is killed by pid.

// The Unix suite: Windows has its own (cli/tests/windows.rs).
#![cfg(unix)]
#![cfg(any(target_os = "linux", target_os = "android"))]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{KillOnDrop, Proc, alive, backends, unique_name};
use nix::sys::signal::Signal;
use onlyone::BackendKind;
use serde_json::Value;

const EXE: &str = env!("CARGO_BIN_EXE_onlyone");

/// Whether the job dies with a SIGKILLed wrapper in this build (mirrors `tether` in
/// `cli/src/job.rs`): always in the normal build; in the portable build only for the abstract
/// socket.
fn job_dies_with_wrapper(backend: BackendKind) -> bool {
    !onlyone::os::PORTABLE_BUILD || backend == BackendKind::AbstractSocket
}

/// `onlyone run -b BACKEND --lock-dir DIR -N NAME -- JOB...`
fn run(backend: BackendKind, dir: &Path, name: &str, job: &[&str]) -> Command {
    let mut cmd = Command::new(EXE);
    common::default_signals(&mut cmd);
    cmd.args(["run", "-b", backend.as_str(), "--lock-dir"])
        .arg(dir)
        .args(["-N", name, "--"])
        .args(job);
    cmd
}

/// The exit code of a second `onlyone run` on the same lock, and its stderr.
fn second_run(backend: BackendKind, dir: &Path, name: &str) -> (i32, String) {
    let out = run(backend, dir, name, &["true"])
        .stdin(Stdio::null())
        .output()
        .expect("run onlyone");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let code = out
        .status
        .code()
        .unwrap_or_else(|| panic!("{backend}: killed: {:?} {stderr}", out.status));
    (code, stderr)
}

/// `onlyone status --json` of the lock.
fn status(backend: BackendKind, dir: &Path, name: &str) -> Value {
    let out = Command::new(EXE)
        .args(["status", "--json", "-b", backend.as_str(), "--lock-dir"])
        .arg(dir)
        .arg(name)
        .output()
        .expect("run onlyone status");
    serde_json::from_str(&String::from_utf8_lossy(&out.stdout))
        .unwrap_or_else(|e| panic!("{backend}: status --json: {e}"))
}

/// The mask of a `Sig...:` line of `/proc/PID/status`.
fn mask(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let line = text
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} line"));
    u64::from_str_radix(line.split_whitespace().nth(1).expect("a mask"), 16).expect("hex")
}

/// While the job runs, onlyone waits for the forwarded signals the way this build says: blocked
/// and read from a signalfd (Linux), or caught by the self-pipe's handler (every other system,
/// and the portable build). Either way a signal sent to onlyone reaches the job and the job's
/// status is onlyone's.
#[test]
fn signals_reach_the_job_on_the_path_the_build_takes() {
    // The signals onlyone forwards, and SIGCHLD, which it watches too.
    let watched = common::FORWARDED.into_iter().chain([Signal::SIGCHLD]);
    let bits: u64 = watched.map(|s| 1u64 << (s as i32 - 1)).sum();
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let name = unique_name(&format!("path-{backend}"));
        let got = dir.path().join("got");
        let script = format!(
            "trap 'echo got-USR1 > {}; exit 3' USR1; echo ready; \
             while kill -0 $PPID 2>/dev/null; do sleep 0.1; done",
            got.display()
        );
        let mut wrapper = Proc::spawn(run(backend, dir.path(), &name, &["sh", "-c", &script]));
        assert_eq!(wrapper.line(), "ready", "{backend}");
        // The job may say `ready` before onlyone has set up its side: wait until onlyone waits.
        common::wait_until_sleeping_in_poll(wrapper.pid());
        let (blocked, caught) = (
            mask(wrapper.pid(), "SigBlk:"),
            mask(wrapper.pid(), "SigCgt:"),
        );
        if onlyone::os::PORTABLE_BUILD {
            assert_eq!(
                caught & bits,
                bits,
                "{backend}: self-pipe handlers: {caught:x}"
            );
            assert_eq!(blocked & bits, 0, "{backend}: unblocked: {blocked:x}");
        } else {
            assert_eq!(
                blocked & bits,
                bits,
                "{backend}: blocked for signalfd: {blocked:x}"
            );
            assert_eq!(caught & bits, 0, "{backend}: no handlers: {caught:x}");
        }
        wrapper.signal(Signal::SIGUSR1);
        let status = wrapper.wait();
        assert_eq!(status.code(), Some(3), "{backend}: {status:?}");
        assert_eq!(
            std::fs::read_to_string(&got).unwrap_or_default(),
            "got-USR1\n",
            "{backend}: the job did not get SIGUSR1"
        );
    }
}

/// Where nothing kills the job with its wrapper, a SIGKILLed wrapper's job keeps the lock: a
/// second `onlyone run` gets the conflict status (75) and names the job while it runs, and gets
/// the lock once the job has exited. The abstract socket (Linux only) and the normal build kill
/// the job instead (`cli.rs`, `sigkilled_wrapper_takes_its_job_along`): skipped here.
#[test]
fn a_sigkilled_wrappers_job_keeps_the_lock_until_it_exits() {
    let mut tested = 0;
    for backend in backends() {
        if job_dies_with_wrapper(backend) {
            eprintln!(
                "SKIPPED for {backend}: in this build the job dies with its wrapper \
                 (PR_SET_PDEATHSIG); cli.rs tests that"
            );
            continue;
        }
        tested += 1;
        let dir = tempfile::tempdir().unwrap();
        let name = unique_name(&format!("orphan-{backend}"));
        // The job ends when it reads a line (or end of file) from the pipe the test holds.
        let mut wrapper = Proc::spawn(run(
            backend,
            dir.path(),
            &name,
            &["sh", "-c", "echo ready $$; read x; exit 7"],
        ));
        let line = wrapper.line();
        let job: u32 = line
            .strip_prefix("ready ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{backend}: {line:?}"));
        let _job_guard = KillOnDrop(job);
        let (code, stderr) = second_run(backend, dir.path(), &name);
        assert_eq!(code, 75, "{backend}: {stderr}");

        wrapper.kill();
        assert_eq!(wrapper.wait().signal(), Some(9), "{backend}");
        assert!(alive(job), "{backend}: the job died with its wrapper");

        let (code, stderr) = second_run(backend, dir.path(), &name);
        assert_eq!(
            code, 75,
            "{backend}: a second job ran while the orphaned one holds the lock: {stderr}"
        );
        assert!(
            stderr.contains(&format!("pid {job} ")),
            "{backend}: the holder named is not the job {job}: {stderr}"
        );
        let st = status(backend, dir.path(), &name);
        assert_eq!(st["held"], true, "{backend}: {st}");
        assert_eq!(st["holder"]["pid"], job, "{backend}: {st}");

        // The job exits: the lock is free (the PID file, naming two dead processes, is stale).
        wrapper.send("done");
        common::wait_gone(job);
        assert_eq!(wrapper.rest(), "", "{backend}");
        let (code, stderr) = second_run(backend, dir.path(), &name);
        assert_eq!(code, 0, "{backend}: the lock outlived the job: {stderr}");
        assert_eq!(
            status(backend, dir.path(), &name)["held"],
            false,
            "{backend}"
        );
    }
    if onlyone::os::PORTABLE_BUILD {
        assert!(tested > 0, "the portable build tested no backend");
    }
}
