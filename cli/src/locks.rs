//! Building the lock a subcommand names, with errors a command-line user can act on.

use onlyone::{BackendKind, Builder, DEFAULT_BACKEND, Lock};

use crate::cli::LockArgs;
use crate::exit::{self, Failure};

/// The lock `name` with the backend, scope and directory of `args`.
pub fn build(name: &str, args: &LockArgs) -> Result<Box<dyn Lock>, Failure> {
    let backend = args.backend.unwrap_or(DEFAULT_BACKEND);
    if backend == BackendKind::Postgres {
        if !backend.is_available() {
            return Err(Failure::new(
                exit::UNAVAILABLE,
                "backend postgres is not available in this build of onlyone (cargo feature `postgres`)",
            ));
        }
        if args.database_url.is_none() && std::env::var_os("DATABASE_URL").is_none() {
            return Err(Failure::new(
                exit::USAGE,
                "backend postgres needs a server: give --database-url URL or set DATABASE_URL",
            ));
        }
    }
    let mut builder = Builder::new(name).backend(backend).scope(args.scope);
    if let Some(dir) = &args.lock_dir {
        builder = builder.lock_dir(dir);
    }
    if let Some(url) = &args.database_url {
        builder = builder.database_url(&url.0);
    }
    Ok(builder.build()?)
}
