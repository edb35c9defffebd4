//! `onlyone run --once-per DURATION` and the last run in `status`, on the PostgreSQL backend's
//! runs table (the library's `onlyone::backend::postgres::runs`): the window is claimed after the
//! lock is taken and before the job starts; its end and exit status are recorded after.

use crate::cli::{LockArgs, RunArgs};
use crate::exit::Failure;
#[cfg(feature = "postgres")]
use crate::log::Event;
use crate::log::Log;

/// A claimed window, finished by [`finish`]; `None` without `--once-per`.
#[cfg(feature = "postgres")]
pub type Window = Option<onlyone::backend::postgres::runs::WindowRun>;
#[cfg(not(feature = "postgres"))]
pub type Window = Option<std::convert::Infallible>;

/// The last run of a name, as `status` shows it.
pub struct LastRun {
    /// One line of text.
    pub line: String,
    /// A JSON object.
    pub json: String,
}

/// With `--once-per`: claims the current window. `Ok(Err(code))` when the window's run already
/// happened (the message is printed unless `--quiet`): exit with `code`, the job not started.
#[cfg(feature = "postgres")]
pub fn claim(args: &RunArgs, name: &str, log: &Log) -> Result<Result<Window, u8>, Failure> {
    use onlyone::backend::postgres::runs::Claim;
    let Some(period) = args.once_per else {
        return Ok(Ok(None));
    };
    postgres_only(&args.lock)?;
    let lock = crate::locks::postgres(name, &args.lock, false)?;
    match lock.claim_window(period)? {
        Claim::Claimed(run) => {
            if args.verbose {
                say!(
                    "onlyone: claimed window {} of {} s for {name:?} (server time {})",
                    run.record.window,
                    period.as_secs(),
                    utc(run.record.started)
                );
            }
            Ok(Ok(Some(run)))
        }
        Claim::AlreadyRan(r) => {
            let line = format!(
                "skipped: {name:?} already ran in this {} s window: {}",
                period.as_secs(),
                describe(&r)
            );
            log.event(Event::AlreadyRan, &line, args.quiet, None, None);
            Ok(Err(crate::exit::ALREADY_RAN))
        }
    }
}

#[cfg(not(feature = "postgres"))]
pub fn claim(args: &RunArgs, _name: &str, _log: &Log) -> Result<Result<Window, u8>, Failure> {
    match args.once_per {
        None => Ok(Ok(None)),
        Some(_) => postgres_only(&args.lock).map(|()| Ok(None)),
    }
}

/// Records the end of a claimed window's run (a failure to record is a warning: the job ran).
pub fn finish(window: Window, result: &Result<u8, Failure>) {
    #[cfg(feature = "postgres")]
    if let Some(run) = window {
        let status = match result {
            Ok(code) => *code,
            Err(f) => f.code,
        };
        if let Err(e) = run.finish(i32::from(status)) {
            say!("onlyone: warning: {e}");
        }
    }
    #[cfg(not(feature = "postgres"))]
    let _ = (window, result);
}

/// `--once-per` needs the server's runs table.
fn postgres_only(args: &LockArgs) -> Result<(), Failure> {
    if args.backend == Some(onlyone::BackendKind::Postgres) {
        return Ok(());
    }
    Err(Failure::new(
        crate::exit::USAGE,
        "--once-per needs --backend postgres: the record of runs lives on the database server, \
         shared by every host",
    ))
}

/// The last run of `name` for `status` with the postgres backend; `None` for other backends or
/// when nothing ran.
#[cfg(feature = "postgres")]
pub fn last_run(name: &str, args: &LockArgs) -> Result<Option<LastRun>, Failure> {
    if args.backend != Some(onlyone::BackendKind::Postgres) {
        return Ok(None);
    }
    let lock = crate::locks::postgres(name, args, false)?;
    // The holder is what status is for: a runs table this role may not read is only a warning.
    let run = match lock.last_run() {
        Ok(run) => run,
        Err(e) => {
            say!("onlyone: warning: {e}");
            None
        }
    };
    Ok(run.map(|r| LastRun {
        line: format!("last run: {}", describe(&r)),
        json: format!(
            "{{\"host\":{},\"pid\":{},\"period_secs\":{},\"window\":{},\"started\":{},\
             \"ended\":{},\"exit_status\":{}}}",
            crate::json::string(&r.host),
            r.pid,
            r.period.as_secs(),
            r.window,
            crate::json::string(&utc(r.started)),
            r.ended
                .map_or("null".to_owned(), |e| crate::json::string(&utc(e))),
            r.exit_status.map_or("null".to_owned(), |s| s.to_string()),
        ),
    }))
}

#[cfg(not(feature = "postgres"))]
pub fn last_run(_name: &str, _args: &LockArgs) -> Result<Option<LastRun>, Failure> {
    Ok(None)
}

/// `on HOST (pid P), started 2025-01-01T10:00:00Z, ended ... with exit status 0`.
#[cfg(feature = "postgres")]
fn describe(r: &onlyone::backend::postgres::runs::RunRecord) -> String {
    let end = match (r.ended, r.exit_status) {
        (Some(e), Some(s)) => format!("ended {} with exit status {s}", utc(e)),
        (Some(e), None) => format!("ended {}", utc(e)),
        (None, _) => "no end recorded (still running, or its runner died)".to_owned(),
    };
    format!(
        "on {} (pid {}), started {}, {end}",
        r.host,
        r.pid,
        utc(r.started)
    )
}

/// Epoch seconds (as the server gives them) as `YYYY-MM-DDTHH:MM:SS.mmmZ`, UTC.
#[cfg(any(feature = "postgres", test))]
fn utc(epoch: f64) -> String {
    let millis = (epoch * 1000.0).round().max(0.0) as u64;
    onlyone::format_utc_rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_times() {
        assert_eq!(super::utc(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::utc(951_782_400.25), "2000-02-29T00:00:00.250Z");
        assert_eq!(super::utc(1_767_225_599.999), "2025-12-31T23:59:59.999Z");
    }
}
