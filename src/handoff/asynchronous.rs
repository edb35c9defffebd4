//! The tokio flavour of handoff (feature `tokio`): [`Handoff::start_async`], [`AsyncPrimary`].

use std::fmt;

use super::primary::PrimaryCore;
use super::{Activation, Handoff, Message, Outcome, Role};
use crate::error::{Error, ErrorKind};
use crate::lock::Guard;

/// The primary on a tokio runtime (feature `tokio`): [`AsyncPrimary::recv`] awaits the next
/// activation without blocking a worker.
pub struct AsyncPrimary {
    core: PrimaryCore,
    rx: tokio::sync::mpsc::UnboundedReceiver<Activation>,
}

impl fmt::Debug for AsyncPrimary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncPrimary")
            .field("socket", &self.core.path)
            .finish()
    }
}

impl AsyncPrimary {
    /// The next activation; `None` only if the listener stopped.
    pub async fn recv(&mut self) -> Option<Activation> {
        self.rx.recv().await.map(Activation::received)
    }

    /// Starts listening, for a primary built with [`Handoff::listen_later`].
    pub fn listen(&mut self) -> Result<(), Error> {
        self.core.listen()
    }

    /// The lock this primary holds.
    pub fn guard(&self) -> &Guard {
        self.core.guard.as_ref().expect("a primary holds its lock")
    }
}

/// How an application starts on a tokio runtime.
#[derive(Debug)]
pub enum AsyncStart {
    /// This process holds the lock and receives activations.
    Primary(AsyncPrimary),
    /// Another process holds the lock; what became of the handoff.
    Secondary(Outcome),
}

impl Handoff {
    /// [`Handoff::start`] on a tokio runtime. The secondary's connect, send and wait run on a
    /// thread of their own (they are bounded by the timeout) so that no worker blocks.
    pub async fn start_async(&self, message: &Message) -> Result<AsyncStart, Error> {
        let this = self.clone();
        let message = message.clone();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("onlyone-handoff-start".into())
            .spawn(move || {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Activation>();
                let sink: super::Sink = Box::new(move |a| tx.send(a).map_err(|e| e.0));
                let r = this
                    .start_core(&message, Some(sink))
                    .map(|role| match role {
                        Role::Primary(core) => AsyncStart::Primary(AsyncPrimary { core, rx }),
                        Role::Secondary(o) => AsyncStart::Secondary(o),
                    });
                let _ = done_tx.send(r);
            })
            .map_err(|e| Error::new(ErrorKind::Io, "cannot start the handoff", e))?;
        done_rx.await.map_err(|_| {
            Error::msg(
                ErrorKind::Io,
                "handoff",
                "the handoff thread ended without a result",
            )
        })?
    }
}
