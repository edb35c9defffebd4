//! The `onlyone` binary against real processes: conflicts, exit statuses, signals, lock lifetime.

mod common;
