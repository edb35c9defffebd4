//! Process identity and liveness: pid, start time, boot id, PID namespace (proc(5)).
//!
//! A pid alone does not name a process: pids are reused. onlyone identifies a process by its pid,
//! its start time (field 22 of `/proc/PID/stat`, clock ticks since boot), the boot id
//! (`/proc/sys/kernel/random/boot_id`) and its PID namespace (`/proc/PID/ns/pid`).

use std::fs;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// Everything needed to recognise one process again later, even after its pid was reused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessIdentity {
    /// The process id.
    pub pid: u32,
    /// Start time in clock ticks after boot (proc(5) `starttime`); `None` where `/proc` is missing.
    pub start_ticks: Option<u64>,
    /// The kernel's boot id; `None` where unavailable.
    pub boot_id: Option<String>,
    /// Inode of the PID namespace the pid belongs to; `None` where unavailable.
    pub pid_ns: Option<u64>,
    /// The effective uid.
    pub uid: u32,
}

impl ProcessIdentity {
    /// The identity of the calling process, read once and cached (a `fork`ed child gets its own).
    pub fn current() -> ProcessIdentity {
        static CACHE: OnceLock<ProcessIdentity> = OnceLock::new();
        let pid = std::process::id();
        let cached = CACHE.get_or_init(|| Self::read_current(pid));
        if cached.pid == pid {
            cached.clone()
        } else {
            Self::read_current(pid)
        }
    }

    fn read_current(pid: u32) -> ProcessIdentity {
        ProcessIdentity {
            pid,
            start_ticks: stat(pid).map(|s| s.start_ticks),
            boot_id: boot_id().map(str::to_owned),
            pid_ns: pid_namespace(pid),
            uid: nix::unistd::geteuid().as_raw(),
        }
    }
}

/// What `/proc/PID/stat` says about a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    /// Single-letter state: `R`, `S`, `D`, `Z` (zombie), `X` (dead), ...
    pub state: char,
    /// Start time in clock ticks after boot.
    pub start_ticks: u64,
}

/// Reads `/proc/PID/stat`; `None` if the process does not exist or `/proc` is not mounted.
pub fn stat(pid: u32) -> Option<ProcStat> {
    let bytes = read_proc(&format!("/proc/{pid}/stat"))?;
    parse_stat(std::str::from_utf8(&bytes).ok()?)
}

/// Parses the text of `/proc/PID/stat`. The command name (field 2) may contain spaces and `)`, so
/// fields are counted from the *last* `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let after = &text[text.rfind(')')? + 1..];
    let mut fields = after.split_ascii_whitespace();
    // Field 3 is the state; starttime is field 22, i.e. 19 fields after the state.
    let state = fields.next()?.chars().next()?;
    let start_ticks = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_ticks })
}

/// Reads a small `/proc` file. These report a size of 0, so `fs::read` starts from a tiny buffer
/// and grows it over several `read(2)` calls; one read into a page-sized buffer usually gets it
/// all (a lookup of a holder reads two of them on every contended try).
pub(crate) fn read_proc(path: &str) -> Option<Vec<u8>> {
    use std::io::Read;
    const PAGE: usize = 4096;
    let mut file = fs::File::open(path).ok()?;
    let mut buf = vec![0; PAGE];
    let n = file.read(&mut buf).ok()?;
    buf.truncate(n);
    // A short first read of a seq_file is the whole file; a full one may have more behind it.
    if n == PAGE {
        file.read_to_end(&mut buf).ok()?;
    }
    Some(buf)
}

/// The boot id, read once.
pub fn boot_id() -> Option<&'static str> {
    static BOOT_ID: OnceLock<Option<String>> = OnceLock::new();
    BOOT_ID
        .get_or_init(|| {
            fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .ok()
                .map(|s| s.trim().to_owned())
        })
        .as_deref()
}

/// Inode number of the PID namespace of `pid` (from the `pid:[N]` link in `/proc/PID/ns/pid`).
pub fn pid_namespace(pid: u32) -> Option<u64> {
    let link = fs::read_link(format!("/proc/{pid}/ns/pid")).ok()?;
    let s = link.to_str()?;
    s.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

/// The command line of `pid`, arguments joined by spaces, or `None` if unreadable or empty (a
/// kernel thread, a zombie).
pub fn command_line(pid: u32) -> Option<String> {
    let raw = read_proc(&format!("/proc/{pid}/cmdline"))?;
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    (!args.is_empty()).then(|| args.join(" "))
}

/// The real uid of `pid`, from `/proc/PID/status`.
pub fn uid_of(pid: u32) -> Option<u32> {
    let status = String::from_utf8(read_proc(&format!("/proc/{pid}/status"))?).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// Converts a start time in clock ticks after boot to wall-clock time.
pub fn start_time(start_ticks: u64) -> Option<SystemTime> {
    static BOOT: OnceLock<Option<(SystemTime, u64)>> = OnceLock::new();
    let (boot, hz) = (*BOOT.get_or_init(|| {
        let stat = fs::read_to_string("/proc/stat").ok()?;
        let btime: u64 = stat
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()?;
        Some((
            SystemTime::UNIX_EPOCH + Duration::from_secs(btime),
            u64::try_from(hz).ok()?,
        ))
    }))?;
    Some(boot + Duration::from_millis(start_ticks.saturating_mul(1000) / hz.max(1)))
}

/// Whether the process a lock record names is still the one that wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// It runs (possibly under another uid: `kill(pid, 0)` gave `EPERM`).
    Alive,
    /// It is gone; the reason says how onlyone knows.
    Dead(&'static str),
    /// onlyone cannot judge from here (another PID namespace); treated as alive.
    Unknown(&'static str),
}

impl ProcessIdentity {
    /// Decides whether this recorded process still runs (kill(2), proc(5)).
    ///
    /// Dead: another boot; `kill(pid, 0)` says `ESRCH`; a zombie; a different start time (the pid
    /// was reused). Alive: `kill` succeeds or says `EPERM` (another user's live process). Unknown:
    /// the record comes from another PID namespace, where its pid means nothing.
    pub fn liveness(&self) -> Liveness {
        let here = ProcessIdentity::current();
        if let (Some(recorded), Some(now)) = (&self.boot_id, &here.boot_id) {
            if recorded != now {
                return Liveness::Dead("recorded before the last reboot");
            }
        }
        if let (Some(recorded), Some(now)) = (self.pid_ns, here.pid_ns) {
            if recorded != now {
                return Liveness::Unknown("recorded in another PID namespace");
            }
        }
        let Ok(raw) = i32::try_from(self.pid) else {
            return Liveness::Dead("pid out of range");
        };
        match kill(Pid::from_raw(raw), None) {
            Err(Errno::ESRCH) => return Liveness::Dead("no process has that pid"),
            Ok(()) | Err(Errno::EPERM) => {}
            Err(_) => return Liveness::Unknown("kill(pid, 0) failed"),
        }
        match stat(self.pid) {
            // The process exited between kill() and the read, or /proc is not mounted.
            None if fs::metadata("/proc/self/stat").is_ok() => {
                Liveness::Dead("no process has that pid")
            }
            None => Liveness::Alive,
            Some(s) if s.state == 'Z' || s.state == 'X' => {
                Liveness::Dead("the process is a zombie")
            }
            Some(s) => match self.start_ticks {
                Some(t) if t != s.start_ticks => {
                    Liveness::Dead("the pid now belongs to a process started later")
                }
                _ => Liveness::Alive,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing_counts_from_the_last_paren() {
        let line = "42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!(s.start_ticks, 987654);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn the_current_process_is_alive() {
        let me = ProcessIdentity::current();
        assert_eq!(me.liveness(), Liveness::Alive);
        let reused = ProcessIdentity {
            start_ticks: me.start_ticks.map(|t| t + 1),
            ..me.clone()
        };
        assert!(matches!(reused.liveness(), Liveness::Dead(_)));
        let old_boot = ProcessIdentity {
            boot_id: Some("00000000-0000-0000-0000-000000000000".into()),
            ..me
        };
        assert!(matches!(old_boot.liveness(), Liveness::Dead(_)));
    }
}
