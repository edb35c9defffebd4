//! The holder record written into PID files and lock files.
//!
//! ```text
//! 4242                 <- the pid alone on the first line, as classic PID files have it
//! onlyone 1            <- format marker and version
//! start 1234567        <- start time, clock ticks after boot (proc(5) field 22), as the
//!                         writer's time namespace shows it
//! start0 1134567       <- the same on the initial time namespace's clock; written only when
//!                         the two differ (a writer in a time namespace with a boot-time offset)
//! boot 3f9c...-...     <- /proc/sys/kernel/random/boot_id
//! pidns 4026531836     <- PID namespace inode
//! uid 1000
//! job 4243 1234599     <- optional: a child the holder started that keeps the lock with it
//! end                  <- a record without it was cut short
//! ```
//! Only `pid`, the marker and `end` are required; a reader skips keys it does not know.
//!
//! `start0` came with the time-namespace fix: a reader compares it, when present, with start times
//! moved to the initial namespace's clock (right across time namespaces); `start` stays the
//! writer's own view, so that versions before the fix, which know only `start`, still judge a
//! writer in their own time namespace right. A record without `start0` was written in the initial
//! time namespace or by an older version; its `start` is compared both ways.
//! Only `pid`, the marker and `end` are required; a reader skips keys it does not know, so a
//! reader from before the `job` line (0.1) reads such a record as its holder alone.
//!
//! **The `job` line** names a process the holder started (its pid and start token, read on the
//! same machine, in the holder's boot and PID namespace) that holds the lock with it: the lock
//! counts as held while either of them lives. `onlyone run` writes it where the OS cannot kill the
//! job when onlyone dies (macOS, NetBSD, illumos): a PID file has no descriptor for the job to
//! inherit, so without it a killed wrapper's file would be judged stale while its job still runs.

use crate::os::{Liveness, ProcessIdentity};

/// Records longer than this are not onlyone's.
pub const MAX_RECORD_LEN: usize = 4096;

/// A process the holder started that keeps the lock with it: the `job PID START` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Job {
    /// Its process id.
    pub pid: u32,
    /// Its start token (see [`ProcessIdentity::start_ticks`]); `None` where it could not be read.
    pub start_ticks: Option<u64>,
}

/// A whole record: the holder, and the job that holds the lock with it, if one was named.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Record {
    /// The process that took the lock.
    pub holder: ProcessIdentity,
    /// A process the holder started that keeps the lock held while it lives (the `job` line).
    pub job: Option<Job>,
}

impl Record {
    /// A record of `holder` alone.
    pub fn new(holder: ProcessIdentity) -> Record {
        Record { holder, job: None }
    }

    /// The record with `job` named.
    pub fn with_job(self, job: Job) -> Record {
        Record {
            job: Some(job),
            ..self
        }
    }

    /// The job's identity: its pid and start token, with the holder's boot, PID namespace and uid
    /// (the holder started it on the same machine).
    pub fn job_identity(&self) -> Option<ProcessIdentity> {
        self.job.map(|j| ProcessIdentity {
            pid: j.pid,
            start_ticks: j.start_ticks,
            ..self.holder.clone()
        })
    }

    /// Whether the lock this record describes is still held, and by which process: the holder
    /// while it lives, else the job while it lives. Dead only when both are dead; unknown (which
    /// counts as held) when neither is known to live and either cannot be judged.
    pub fn liveness(&self) -> (Liveness, ProcessIdentity) {
        let holder = self.holder.liveness();
        if holder == Liveness::Alive {
            return (holder, self.holder.clone());
        }
        let Some(job) = self.job_identity() else {
            return (holder, self.holder.clone());
        };
        let of_job = job.liveness();
        match (holder, of_job) {
            (_, Liveness::Alive) => (Liveness::Alive, job),
            (h @ Liveness::Unknown(_), _) => (h, self.holder.clone()),
            (_, j @ Liveness::Unknown(_)) => (j, job),
            (h, _) => (h, self.holder.clone()),
        }
    }
}

/// Formats `id` as a record (without a job).
pub fn format(id: &ProcessIdentity) -> String {
    format_record(&Record::new(id.clone()))
}

/// The calling process's record, [`format`] of [`ProcessIdentity::current`], and its pid: formatted
/// once per process (a `fork`ed child formats its own), because formatting it was most of the
/// instructions of a flock acquire + release.
// The Windows backends write their records their own way.
#[cfg_attr(
    any(windows, not(any(feature = "flock", feature = "pidfile"))),
    allow(dead_code)
)]
pub(crate) fn current() -> (u32, std::borrow::Cow<'static, str>) {
    static CACHE: std::sync::OnceLock<(u32, String)> = std::sync::OnceLock::new();
    let pid = std::process::id();
    let (cached, text) = CACHE.get_or_init(|| (pid, format(&ProcessIdentity::current())));
    if *cached == pid {
        (pid, std::borrow::Cow::Borrowed(text))
    } else {
        (
            pid,
            std::borrow::Cow::Owned(format(&ProcessIdentity::current())),
        )
    }
}

/// Formats a whole record.
pub fn format_record(record: &Record) -> String {
    let id = &record.holder;
    let mut s = format!("{}\nonlyone 1\n", id.pid);
    if let Some(t) = id.start_ticks {
        let local = crate::os::as_read_here(t);
        s += &format!("start {local}\n");
        if local != t {
            s += &format!("start0 {t}\n");
        }
    }
    if let Some(b) = &id.boot_id {
        s += &format!("boot {b}\n");
    }
    if let Some(ns) = id.pid_ns {
        s += &format!("pidns {ns}\n");
    }
    s += &format!("uid {}\n", id.uid);
    match record.job {
        Some(Job {
            pid,
            start_ticks: Some(t),
        }) => s += &format!("job {pid} {t}\n"),
        Some(Job {
            pid,
            start_ticks: None,
        }) => s += &format!("job {pid}\n"),
        None => {}
    }
    s += "end\n";
    s
}

/// Parses a record's holder, or says in a few words why `bytes` is not a record. A `job` line is
/// checked but left out: [`parse_record`] returns it.
pub fn parse(bytes: &[u8]) -> Result<ProcessIdentity, String> {
    parse_record(bytes).map(|r| r.holder)
}

/// A pid as a record writes it: positive, within `pid_t`.
fn parse_pid(text: &str) -> Result<u32, String> {
    let pid: i64 = text.parse().map_err(|_| format!("{text:?} is not a pid"))?;
    if pid <= 0 {
        return Err(format!("pid {pid} is not a process id"));
    }
    u32::try_from(pid)
        .ok()
        .filter(|&p| i32::try_from(p).is_ok())
        .ok_or_else(|| format!("pid {pid} is out of range"))
}

/// Parses a whole record, or says in a few words why `bytes` is not one.
pub fn parse_record(bytes: &[u8]) -> Result<Record, String> {
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    if bytes.len() > MAX_RECORD_LEN {
        return Err(format!(
            "the file is {} bytes long, more than a record can be",
            bytes.len()
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "the file is not text".to_owned())?;
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("").trim();
    let pid = parse_pid(first).map_err(|why| match first.parse::<i64>() {
        Ok(_) => why,
        Err(_) => format!("the first line {first:?} is not a pid"),
    })?;
    if lines.next() != Some("onlyone 1") {
        return Err("it was not written by onlyone (no \"onlyone 1\" line)".into());
    }
    let mut id = ProcessIdentity {
        pid,
        start_ticks: None,
        boot_id: None,
        pid_ns: None,
        uid: u32::MAX,
    };
    let mut complete = false;
    let mut uid = None;
    let mut start0: Option<u64> = None;
    let mut job = None;
    for line in lines {
        // A value with a control character would not survive being written back (a boot id
        // ending in `\r`): not a record onlyone wrote.
        if let Some(c) = line.chars().find(|c| c.is_control()) {
            return Err(format!(
                "the line {line:?} contains the control character {c:?}"
            ));
        }
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        let bad = || format!("bad {key:?} line {line:?}");
        match key {
            "start" if start0.is_none() => id.start_ticks = Some(value.parse().map_err(|_| bad())?),
            "start" => {
                let _: u64 = value.parse().map_err(|_| bad())?;
            }
            "start0" => {
                let t = value.parse().map_err(|_| bad())?;
                start0 = Some(t);
                id.start_ticks = Some(t);
            }
            "boot" => id.boot_id = Some(value.to_owned()),
            "pidns" => id.pid_ns = Some(value.parse().map_err(|_| bad())?),
            "uid" => uid = Some(value.parse().map_err(|_| bad())?),
            "job" => {
                let mut words = value.split(' ');
                let pid = parse_pid(words.next().unwrap_or("")).map_err(|_| bad())?;
                let start_ticks = match words.next() {
                    Some(t) => Some(t.parse().map_err(|_| bad())?),
                    None => None,
                };
                if words.next().is_some() {
                    return Err(bad());
                }
                job = Some(Job { pid, start_ticks });
            }
            "end" => {
                complete = true;
                break;
            }
            _ => {}
        }
    }
    if !complete {
        return Err("the record is incomplete (no \"end\" line)".into());
    }
    id.uid = uid.ok_or_else(|| "the record has no uid".to_owned())?;
    Ok(Record { holder: id, job })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let me = ProcessIdentity::current();
        assert_eq!(parse(format(&me).as_bytes()).unwrap(), me);
    }

    /// A record as earlier versions wrote it still parses to the same identity (the format is
    /// unchanged; start times were on the writer's time-namespace clock, the same number in the
    /// initial namespace).
    #[test]
    fn records_of_earlier_versions_parse() {
        let text = "4242\nonlyone 1\nstart 1234567\nboot 3f9c0b55-4d2e-4a8e-9d6a-0c1f2e3d4b5a\n\
                    pidns 4026531836\nuid 1000\nend\n";
        let id = parse(text.as_bytes()).unwrap();
        assert_eq!(
            id,
            ProcessIdentity {
                pid: 4242,
                start_ticks: Some(1_234_567),
                boot_id: Some("3f9c0b55-4d2e-4a8e-9d6a-0c1f2e3d4b5a".into()),
                pid_ns: Some(4_026_531_836),
                uid: 1000,
            }
        );
        assert_eq!(format(&id), text);
    }

    /// A writer in a time namespace with a boot-time offset writes its own view as `start` (what
    /// older readers in that namespace compare) and the initial namespace's as `start0` (what
    /// newer readers compare, in any time namespace).
    #[test]
    fn start0_wins_over_start() {
        let with = "7\nonlyone 1\nstart 10000500\nstart0 500\nuid 0\nend\n";
        assert_eq!(parse(with.as_bytes()).unwrap().start_ticks, Some(500));
        let reversed = "7\nonlyone 1\nstart0 500\nstart 10000500\nuid 0\nend\n";
        assert_eq!(parse(reversed.as_bytes()).unwrap().start_ticks, Some(500));
        let without = "7\nonlyone 1\nstart 10000500\nuid 0\nend\n";
        assert_eq!(
            parse(without.as_bytes()).unwrap().start_ticks,
            Some(10_000_500)
        );
        let bad = "7\nonlyone 1\nstart0 x\nuid 0\nend\n";
        assert!(parse(bad.as_bytes()).unwrap_err().contains("start0"));
    }

    #[test]
    fn bad_records_say_why() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"hello\n", "not a pid"),
            (b"0\nonlyone 1\nuid 0\nend\n", "pid 0"),
            (b"-5\nonlyone 1\nuid 0\nend\n", "pid -5"),
            (b"99999999999\nonlyone 1\nuid 0\nend\n", "out of range"),
            (b"1\n", "not written by onlyone"),
            (b"12\nonlyone 1\nuid 0\n", "incomplete"),
            (b"12\nonlyone 1\nstart x\nend\n", "bad \"start\""),
            (&[0xff, 0xfe], "not text"),
            (
                b"12\nonlyone 1\nboot x\r\r\nuid 0\nend\n",
                "control character",
            ),
        ];
        for (bytes, why) in cases {
            let err = parse(bytes).unwrap_err();
            assert!(err.contains(why), "{bytes:?}: {err}");
        }
        let huge = vec![b'7'; MAX_RECORD_LEN + 1];
        assert!(parse(&huge).unwrap_err().contains("bytes long"));
        for bad_job in [
            "job",
            "job x",
            "job 0 5",
            "job 12 x",
            "job 12 5 6",
            "job -3",
        ] {
            let text = format!("12\nonlyone 1\nuid 0\n{bad_job}\nend\n");
            let err = parse_record(text.as_bytes()).unwrap_err();
            assert!(err.contains("bad \"job\" line"), "{bad_job:?}: {err}");
        }
    }

    /// The format, pinned: a record as 0.1 wrote it still parses (no job), and a record with a
    /// `job` line is read whole by `parse_record` and as its holder alone by `parse`, as a 0.1
    /// reader (which skips unknown keys) reads it.
    #[test]
    fn test_vectors() {
        let holder = ProcessIdentity {
            pid: 4242,
            start_ticks: Some(1234567),
            boot_id: Some("3f9c8d1e-0b6a-4c55-9e21-7d3a5b1f0c42".into()),
            pid_ns: Some(4026531836),
            uid: 1000,
        };
        let old = "4242\nonlyone 1\nstart 1234567\nboot 3f9c8d1e-0b6a-4c55-9e21-7d3a5b1f0c42\n\
                   pidns 4026531836\nuid 1000\nend\n";
        assert_eq!(format(&holder), old);
        assert_eq!(
            parse_record(old.as_bytes()),
            Ok(Record::new(holder.clone()))
        );

        let with_job = "4242\nonlyone 1\nstart 1234567\nboot 3f9c8d1e-0b6a-4c55-9e21-7d3a5b1f0c42\n\
                        pidns 4026531836\nuid 1000\njob 4243 1234599\nend\n";
        let record = Record::new(holder.clone()).with_job(Job {
            pid: 4243,
            start_ticks: Some(1234599),
        });
        assert_eq!(format_record(&record), with_job);
        assert_eq!(parse_record(with_job.as_bytes()), Ok(record.clone()));
        assert_eq!(parse(with_job.as_bytes()), Ok(holder.clone()));
        let job = record.job_identity().unwrap();
        assert_eq!((job.pid, job.start_ticks), (4243, Some(1234599)));
        assert_eq!(
            (job.boot_id, job.pid_ns, job.uid),
            (holder.boot_id.clone(), holder.pid_ns, 1000)
        );

        // A job whose start token could not be read.
        let no_start = "7\nonlyone 1\nuid 0\njob 8\nend\n";
        let parsed = parse_record(no_start.as_bytes()).unwrap();
        assert_eq!(
            parsed.job,
            Some(Job {
                pid: 8,
                start_ticks: None
            })
        );
        assert_eq!(format_record(&parsed), no_start);
    }

    /// A record is held while its holder or its job lives, and names the one that does.
    #[test]
    fn held_while_the_holder_or_the_job_lives() {
        let me = ProcessIdentity::current();
        // A process that exits at once, on every OS: this test binary listing its tests.
        let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .arg("--list")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn a short-lived child");
        let gone_pid = child.id();
        child.wait().expect("reap the child");
        let gone = ProcessIdentity {
            pid: gone_pid,
            ..me.clone()
        };
        let as_job = |id: &ProcessIdentity| Job {
            pid: id.pid,
            start_ticks: id.start_ticks,
        };

        let (l, who) = Record::new(me.clone()).with_job(as_job(&gone)).liveness();
        assert_eq!((l, who.pid), (Liveness::Alive, me.pid), "the holder lives");

        let (l, who) = Record::new(gone.clone()).with_job(as_job(&me)).liveness();
        assert_eq!((l, who.pid), (Liveness::Alive, me.pid), "the job lives on");

        let (l, who) = Record::new(gone.clone()).with_job(as_job(&gone)).liveness();
        assert!(matches!(l, Liveness::Dead(_)), "both gone: {l:?}");
        assert_eq!(who.pid, gone.pid);

        // The job's pid reused by a process started later: dead.
        let reused = Job {
            pid: me.pid,
            start_ticks: me.start_ticks.map(|t| t + 1),
        };
        let (l, _) = Record::new(gone.clone()).with_job(reused).liveness();
        assert!(matches!(l, Liveness::Dead(_)), "{l:?}");

        // Unknown (another PID namespace) is never dead.
        let elsewhere = ProcessIdentity {
            pid_ns: Some(me.pid_ns.unwrap_or(0).wrapping_add(1)),
            ..gone.clone()
        };
        if me.pid_ns.is_some() {
            let (l, _) = Record::new(elsewhere).with_job(as_job(&gone)).liveness();
            assert!(matches!(l, Liveness::Unknown(_)), "{l:?}");
        }
    }
}
