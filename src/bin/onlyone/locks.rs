//! Building the lock a subcommand names, with errors a command-line user can act on.

use onlyone::{BackendKind, Builder, DEFAULT_BACKEND, Lock};

use crate::cli::LockArgs;
use crate::exit::{self, Failure};

/// The lock `name` with the backend, scope and directory of `args`.
pub fn build(name: &str, args: &LockArgs) -> Result<Box<dyn Lock>, Failure> {
    let backend = args.backend.unwrap_or(DEFAULT_BACKEND);
    // The PostgreSQL backend needs a server address: it gets its own options and constructor
    // (issue: PostgreSQL advisory locks); until then it is reported as unavailable here.
    if backend == BackendKind::Postgres {
        return Err(Failure::new(
            exit::UNAVAILABLE,
            "backend postgres is not available in this build of onlyone (cargo feature `postgres`)",
        ));
    }
    let mut builder = Builder::new(name).backend(backend).scope(args.scope);
    if let Some(dir) = &args.lock_dir {
        builder = builder.lock_dir(dir);
    }
    Ok(builder.build()?)
}
