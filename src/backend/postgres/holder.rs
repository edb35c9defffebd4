//! Holder records of the PostgreSQL backend: what an onlyone holder says of itself in its
//! session's `application_name` (`onlyone <pid> <start> <host> <job>`), and how a contender reads
//! a `pg_locks` row back into a [`Holder`].

use std::time::{Duration, SystemTime};

use crate::lock::{Holder, HolderKind};

/// Longest `application_name` the server keeps (`NAMEDATALEN - 1`).
const APPLICATION_NAME_MAX: usize = 63;
/// Room kept for the host name in `application_name`.
const HOST_MAX: usize = 28;

/// Reads a `pg_locks` row: backend pid, application_name, client address, same role.
pub(super) fn holder_from_row(row: &[String]) -> Holder {
    let get = |i: usize| row.get(i).map(String::as_str).filter(|s| !s.is_empty());
    let same_role = get(3) != Some("f");
    match get(1).and_then(parse_application_name) {
        Some(app) => Holder {
            kind: if same_role {
                HolderKind::SameUser
            } else {
                HolderKind::OtherUser
            },
            pid: Some(app.pid),
            uid: None,
            started: app
                .started
                .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s)),
            command: Some(app.job).filter(|j| !j.is_empty()),
            host: Some(app.host),
            start_ticks: None,
            process: None,
        },
        // Not an onlyone holder: say what the server knows.
        None => Holder {
            host: get(2)
                .map(str::to_owned)
                .or_else(|| get(0).map(|pid| format!("the database server (backend pid {pid})"))),
            command: get(1).map(str::to_owned),
            ..Holder::unidentified()
        },
    }
}

/// The holder's process on this host, pinned, when the server's own view of the holder's
/// connection proves it: `application_name` (which any client can set) only says which local
/// pid to check; the server's `client_addr` and `client_port` for that backend must be the local
/// end of a TCP socket that this pinned process has open. `None` - and `--replace` refuses -
/// when the record names another host, the connection is a Unix socket (the server shows no
/// address), the server hides the address from our role (`pg_stat_activity` shows it only to
/// the same role, superusers and `pg_read_all_stats`), or an address translation stands between
/// the holder and the server.
pub(super) fn prove_local(holder: &Holder, row: &[String]) -> Option<crate::HolderProcess> {
    let get = |i: usize| row.get(i).map(String::as_str).filter(|s| !s.is_empty());
    if holder.host.as_deref() != Some(host_name().as_str()) {
        return None;
    }
    let pid = holder.pid?;
    let addr: std::net::IpAddr = get(2)?.parse().ok()?;
    let port: u16 = get(4)?.parse().ok()?;
    let pinned = crate::HolderProcess::pin(pid)?;
    (crate::os::owns_tcp_endpoint(pid, addr, port) == Some(true)).then_some(pinned)
}

/// What an onlyone holder says of itself in `application_name`.
#[derive(Debug, PartialEq, Eq)]
struct AppName {
    pid: u32,
    started: Option<u64>,
    host: String,
    job: String,
}

/// `onlyone <pid> <start|-> <host> <job>`, ASCII, at most 63 bytes.
pub(super) fn application_name(pid: u32, started: Option<u64>, host: &str, job: &str) -> String {
    let clean = |s: &str, space: char| -> String {
        s.chars()
            .map(|c| match c {
                ' ' => space,
                c if c.is_ascii_graphic() => c,
                _ => '?',
            })
            .collect()
    };
    let mut host = clean(host, '_');
    host.truncate(HOST_MAX);
    if host.is_empty() {
        host.push('-');
    }
    let started = started.map_or("-".to_owned(), |s| s.to_string());
    let mut s = format!("onlyone {pid} {started} {host} {}", clean(job, ' '));
    s.truncate(APPLICATION_NAME_MAX);
    s.trim_end().to_owned()
}

fn parse_application_name(s: &str) -> Option<AppName> {
    let mut parts = s.strip_prefix("onlyone ")?.splitn(4, ' ');
    let pid = parts.next()?.parse().ok()?;
    let started = match parts.next()? {
        "-" => None,
        t => Some(t.parse().ok()?),
    };
    let host = parts.next()?.to_owned();
    let job = parts.next().unwrap_or("").to_owned();
    Some(AppName {
        pid,
        started,
        host,
        job,
    })
}

/// This machine's name (gethostname(2)), or `-`.
pub(super) fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "-".to_owned())
}

/// The program's name: the last component of `argv[0]`.
pub(super) fn default_job() -> String {
    std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_name_round_trips_and_fits() {
        let s = application_name(4242, Some(1_795_595_401), "web-01", "nightly backup");
        assert_eq!(s, "onlyone 4242 1795595401 web-01 nightly backup");
        assert_eq!(
            parse_application_name(&s).unwrap(),
            AppName {
                pid: 4242,
                started: Some(1_795_595_401),
                host: "web-01".into(),
                job: "nightly backup".into()
            }
        );
        let long = application_name(
            4_194_304,
            None,
            &"h".repeat(80),
            "jöb with a very long name that does not fit",
        );
        assert!(long.len() <= APPLICATION_NAME_MAX, "{long}");
        assert!(long.is_ascii());
        let parsed = parse_application_name(&long).unwrap();
        assert_eq!(parsed.pid, 4_194_304);
        assert_eq!(parsed.host, "h".repeat(HOST_MAX));
        assert!(parsed.job.starts_with("j?b"), "{}", parsed.job);
        assert_eq!(parse_application_name("psql"), None);
        assert_eq!(parse_application_name("onlyone x - h j"), None);
    }
}
