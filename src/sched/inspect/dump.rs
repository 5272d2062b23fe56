//! The task dump as the user sees it: its records, its text, its JSON.

use std::fmt::{self, Write as _};
use std::panic::Location;
use std::time::Duration;

/// What a task is doing at the moment of a dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskState {
    /// It runs on its domain right now.
    Running,
    /// It is queued to run (never started yet, woken, or yielded).
    Ready,
    /// It waits in a blocking call (see [`TaskInfo::reason`]).
    Parked,
}

impl TaskState {
    /// `running`, `ready` or `parked`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Running => "running",
            TaskState::Ready => "ready",
            TaskState::Parked => "parked",
        }
    }
}

/// One task, as a dump saw it.
#[derive(Clone, Debug)]
pub struct TaskInfo {
    pub(crate) id: u64,
    pub(crate) name: Option<String>,
    pub(crate) runtime: u64,
    pub(crate) domain: usize,
    pub(crate) state: TaskState,
    pub(crate) reason: Option<&'static str>,
    pub(crate) location: Option<&'static Location<'static>>,
    pub(crate) waiting: Duration,
}

impl TaskInfo {
    /// The task's id: the number of its [`ThreadId`](crate::thread::ThreadId), as panic and
    /// overflow reports print it.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The task's name, if it was given one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The runtime the task belongs to: a number unique in the process, in start order (the
    /// global runtime, used by `spawn` outside any runtime, has its own).
    pub fn runtime(&self) -> u64 {
        self.runtime
    }

    /// The index of the domain that runs it (0 is the thread that called `run`). A task that
    /// has not started yet may still move to another domain.
    pub fn domain(&self) -> usize {
        self.domain
    }

    /// Running, ready or parked.
    pub fn state(&self) -> TaskState {
        self.state
    }

    /// Why a parked task waits (`"mutex"`, `"recv"`, `"sleep"`, `"join"`, ...).
    pub fn reason(&self) -> Option<&'static str> {
        self.reason
    }

    /// Where a parked task made the call it waits in; for a running task, where it last
    /// resumed from (a park or a yield), when known.
    pub fn location(&self) -> Option<&'static Location<'static>> {
        self.location
    }

    /// How long a parked task has waited (measured with its domain's coarse clock, to a few
    /// microseconds on a busy domain); zero for the others.
    pub fn waiting(&self) -> Duration {
        self.waiting
    }
}

/// Every task of every live runtime at one moment ([`crate::diag::dump`]), with notes on what
/// could not be seen (a domain busy in one task cannot describe its others).
///
/// `Display` prints one line per task, grouped by runtime and domain; [`TaskDump::to_json`] gives
/// the same for tools.
#[derive(Clone, Debug)]
pub struct TaskDump {
    pub(crate) tasks: Vec<TaskInfo>,
    pub(crate) notes: Vec<String>,
    /// (runtime, domains) of each runtime looked at.
    pub(crate) runtimes: Vec<(u64, usize)>,
}

impl TaskDump {
    /// The tasks, ordered by runtime, domain and id.
    pub fn tasks(&self) -> &[TaskInfo] {
        &self.tasks
    }

    /// What the dump could not see, one sentence each (empty when it saw everything).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The dump as one JSON object:
    /// `{"runtimes":[{"id":1,"domains":2}],"tasks":[{"id":..,"name":..|null,"runtime":..,
    /// "domain":..,"state":"parked","reason":..|null,"location":"file:line:col"|null,
    /// "waiting_us":..}],"notes":[..]}`.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{\"runtimes\":[");
        for (i, (id, domains)) in self.runtimes.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{{\"id\":{id},\"domains\":{domains}}}");
        }
        out.push_str("],\"tasks\":[");
        for (i, t) in self.tasks.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{{\"id\":{},\"name\":", t.id);
            json_opt_str(&mut out, t.name.as_deref());
            let _ = write!(
                out,
                ",\"runtime\":{},\"domain\":{},\"state\":\"{}\",\"reason\":",
                t.runtime,
                t.domain,
                t.state.as_str()
            );
            json_opt_str(&mut out, t.reason);
            out.push_str(",\"location\":");
            json_opt_str(&mut out, t.location.map(|l| l.to_string()).as_deref());
            let _ = write!(out, ",\"waiting_us\":{}}}", t.waiting.as_micros());
        }
        out.push_str("],\"notes\":[");
        for (i, n) in self.notes.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_str(&mut out, n);
        }
        out.push_str("]}");
        out
    }
}

fn json_opt_str(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => json_str(out, s),
        None => out.push_str("null"),
    }
}

/// A JSON string literal: quotes, backslashes and control characters escaped.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A duration as a person reads it: `850 us`, `12.3 ms`, `4.56 s`.
fn human(d: Duration) -> String {
    let us = d.as_micros();
    if us < 1_000 {
        format!("{us} us")
    } else if us < 1_000_000 {
        format!("{:.1} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

impl fmt::Display for TaskInfo {
    /// `task 'name' (id 7): parked in mutex at src/main.rs:10:5 for 1.20 s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "task '{n}' (id {})", self.id)?,
            None => write!(f, "task <unnamed> (id {})", self.id)?,
        }
        match self.state {
            TaskState::Parked => {
                write!(f, ": parked in {}", self.reason.unwrap_or("?"))?;
                if let Some(l) = self.location {
                    write!(f, " at {l}")?;
                }
                write!(f, " for {}", human(self.waiting))
            }
            TaskState::Ready => {
                f.write_str(": ready")?;
                match self.location {
                    Some(l) => write!(f, " (last switched out at {l})"),
                    None => f.write_str(" (not started yet)"),
                }
            }
            TaskState::Running => {
                f.write_str(": running")?;
                match self.location {
                    Some(l) => write!(f, " (resumed at {l})"),
                    None => Ok(()),
                }
            }
        }
    }
}

impl fmt::Display for TaskDump {
    /// One line per task, grouped by runtime and domain, then the notes; no newline at the end.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        let n = self.tasks.len();
        let r = self.runtimes.len();
        write!(
            f,
            "bobine task dump: {n} task{} in {r} runtime{}",
            plural(n),
            plural(r)
        )?;
        for &(rt, domains) in &self.runtimes {
            write!(f, "\nruntime {rt} ({domains} domain{}):", plural(domains))?;
            for d in 0..domains {
                let mine: Vec<&TaskInfo> = self
                    .tasks
                    .iter()
                    .filter(|t| t.runtime == rt && t.domain == d)
                    .collect();
                write!(
                    f,
                    "\n  domain {d}: {} task{}",
                    mine.len(),
                    plural(mine.len())
                )?;
                for t in mine {
                    write!(f, "\n    {t}")?;
                }
            }
        }
        for note in &self.notes {
            write!(f, "\nnote: {note}")?;
        }
        Ok(())
    }
}
