//! Miou's named errors (rule 10): what a task's outcome is when it did not return a value, and
//! the payload of the panics that rule breaches raise.

use std::any::Any;
use std::fmt;

use crate::{TaskCancelled, TaskDropped};

/// Why a Miou task gave no value, or which rule a caller broke. `Display` prints Miou's name
/// (`Miou.Still_has_children`, ...); the panics that break a rule carry the error itself as
/// payload, so a test can downcast it.
pub enum Error {
    /// The task was cancelled (rule 5), or its run ended before it did.
    Cancelled,
    /// A task returned while it still had children (rule 1): the run is aborted.
    StillHasChildren,
    /// A promise was awaited or cancelled by a task that is not its parent (rule 2).
    NotAChild,
    /// `call` or `parallel` found no worker domain other than the caller's (rule 4).
    NoDomainAvailable,
    /// A task returned while it still owned a resource (rule 8): the run is aborted.
    ResourceLeaked,
    /// An ownership operation by a task that does not own the resource (rule 8).
    NotOwner,
    /// The task panicked: the payload of its panic (Miou: the exception it raised).
    Panic(Box<dyn Any + Send>),
}

impl Error {
    /// Miou's printed name of the error, or the panic's message.
    fn name(&self) -> std::borrow::Cow<'static, str> {
        match self {
            Error::Cancelled => "Miou.Cancelled".into(),
            Error::StillHasChildren => "Miou.Still_has_children".into(),
            Error::NotAChild => "Miou.Not_a_child".into(),
            Error::NoDomainAvailable => "Miou.No_domain_available".into(),
            Error::ResourceLeaked => "Miou.Resource_leaked".into(),
            Error::NotOwner => "Miou.Not_owner".into(),
            Error::Panic(p) => crate::sched::runtime::payload_text(&**p).into(),
        }
    }

    /// What a task's panic payload means for its parent: the runtime's stop is a
    /// cancellation, a Miou error stays itself, anything else is a panic.
    pub(crate) fn from_payload(payload: Box<dyn Any + Send>) -> Error {
        if payload.is::<TaskCancelled>() || payload.is::<TaskDropped>() {
            return Error::Cancelled;
        }
        match payload.downcast::<Error>() {
            Ok(e) => *e,
            Err(other) => Error::Panic(other),
        }
    }

    /// The same error again (the run keeps one, the offending task's outcome the other). A
    /// panic's payload cannot be copied: it becomes an empty panic.
    pub(crate) fn same_rule(&self) -> Error {
        match self {
            Error::Cancelled => Error::Cancelled,
            Error::StillHasChildren => Error::StillHasChildren,
            Error::NotAChild => Error::NotAChild,
            Error::NoDomainAvailable => Error::NoDomainAvailable,
            Error::ResourceLeaked => Error::ResourceLeaked,
            Error::NotOwner => Error::NotOwner,
            Error::Panic(_) => Error::Panic(Box::new(())),
        }
    }

    /// A line for the report printed when the error aborts a run: which rule, and what to do.
    pub(crate) fn advice(&self) -> &'static str {
        match self {
            Error::StillHasChildren => {
                "a task returned while one of its children (orphans included) was neither \
                 awaited nor cancelled (rule 1): await or cancel every child before returning"
            }
            Error::ResourceLeaked => {
                "a task returned while it still owned a resource (rule 8): disown it, transfer \
                 it to the parent, or let a panic run its finaliser"
            }
            _ => "",
        }
    }

    /// Panics in the caller with this error as payload (its report prints Miou's name).
    #[track_caller]
    pub(crate) fn raise(self) -> ! {
        std::panic::panic_any(self)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Panic(_) => write!(f, "Panic({:?})", self.name()),
            _ => f.write_str(&self.name()),
        }
    }
}

impl std::error::Error for Error {}

impl PartialEq for Error {
    /// Errors compare by name; two panics compare equal when their messages do.
    fn eq(&self, other: &Error) -> bool {
        self.name() == other.name()
            && matches!(self, Error::Panic(_)) == matches!(other, Error::Panic(_))
    }
}

/// Names Miou's errors in panic reports (registered with the kernel by every run).
pub(crate) fn payload_text(payload: &(dyn Any + Send)) -> Option<String> {
    payload.downcast_ref::<Error>().map(|e| e.to_string())
}
