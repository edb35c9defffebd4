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
//! end                  <- a record without it was cut short
//! ```
//! Only `pid`, the marker and `end` are required; a reader skips keys it does not know.
//!
//! `start0` came with the time-namespace fix: a reader compares it, when present, with start times
//! moved to the initial namespace's clock (right across time namespaces); `start` stays the
//! writer's own view, so that versions before the fix, which know only `start`, still judge a
//! writer in their own time namespace right. A record without `start0` was written in the initial
//! time namespace or by an older version; its `start` is compared both ways.

use crate::os::ProcessIdentity;

/// Records longer than this are not onlyone's.
pub const MAX_RECORD_LEN: usize = 4096;

/// Formats `id` as a record.
pub fn format(id: &ProcessIdentity) -> String {
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
    s += &format!("uid {}\nend\n", id.uid);
    s
}

/// Parses a record, or says in a few words why `bytes` is not one.
pub fn parse(bytes: &[u8]) -> Result<ProcessIdentity, String> {
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
    let pid: i64 = first
        .parse()
        .map_err(|_| format!("the first line {first:?} is not a pid"))?;
    if pid <= 0 {
        return Err(format!("pid {pid} is not a process id"));
    }
    let pid = u32::try_from(pid)
        .ok()
        .filter(|&p| i32::try_from(p).is_ok())
        .ok_or_else(|| format!("pid {pid} is out of range"))?;
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
    Ok(id)
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
    }
}
