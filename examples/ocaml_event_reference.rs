//! Ports the reference program of OCaml's `Event` module, from the OCaml book's chapter on
//! synchronous communication:
//!
//! ```ocaml
//! let c = Event.new_channel ()
//! let f () =
//!   let id = string_of_int (Thread.id (Thread.self ())) in
//!   print_string ("-------- before -------" ^ id); print_newline ();
//!   let e = Event.receive c in
//!   print_string ("-------- during -------" ^ id); print_newline ();
//!   let v = Event.sync e in
//!   print_string (v ^ " " ^ id ^ " -------- after -------" ^ id); print_newline ()
//! let g () =
//!   let id = string_of_int (Thread.id (Thread.self ())) in
//!   print_string ("Start of " ^ id ^ "\n");
//!   let e2 = Event.send c "hello" in
//!   Event.sync e2;
//!   print_string ("End of " ^ id); print_newline ()
//! let () =
//!   ignore (Thread.create f ()); ignore (Thread.create f ()); ignore (Thread.create g ());
//!   Thread.delay 1.0
//! ```
//!
//! Building `receive c` does not block (`during` is printed before the sync); exactly one `f`
//! receives `hello`; the other stays blocked forever, and the program still ends after the
//! delay. On one domain (as here) the output is deterministic: thread 1 blocked first, so it
//! gets `hello` (first come, first served).
//!
//! Run with `cargo run --example ocaml_event_reference`.

use std::sync::{Arc, Mutex};

use bobine::ocaml::{event, thread};

/// The program's output, shared by its threads: each line is printed (if `echo`) and kept.
#[derive(Clone)]
struct Out {
    lines: Arc<Mutex<Vec<String>>>,
    echo: bool,
}

impl Out {
    fn say(&self, line: String) {
        let mut lines = self.lines.lock().unwrap();
        if self.echo {
            println!("{line}");
        }
        lines.push(line);
    }
}

/// Runs the reference program (call it inside a runtime): two threads run `f`, one runs `g`,
/// and the main thread delays `delay_secs` seconds. Returns the lines printed, in order.
pub fn program(delay_secs: f64, echo: bool) -> Vec<String> {
    let out = Out {
        lines: Arc::new(Mutex::new(Vec::new())),
        echo,
    };
    let c = event::new_channel::<&'static str>();

    let f = |(c, out): (event::Channel<&'static str>, Out)| {
        let id = thread::id(&thread::self_());
        out.say(format!("-------- before -------{id}"));
        let e = event::receive(&c);
        out.say(format!("-------- during -------{id}"));
        let v = event::sync(e);
        out.say(format!("{v} {id} -------- after -------{id}"));
    };
    let g = |(c, out): (event::Channel<&'static str>, Out)| {
        let id = thread::id(&thread::self_());
        out.say(format!("Start of {id}"));
        let e2 = event::send(&c, "hello");
        event::sync(e2);
        out.say(format!("End of {id}"));
    };

    thread::create(f, (c.clone(), out.clone()));
    thread::create(f, (c.clone(), out.clone()));
    thread::create(g, (c, out.clone()));
    thread::delay(delay_secs);
    out.lines.lock().unwrap().clone()
}

fn main() {
    let lines = bobine::Builder::new().domains(1).run(|| program(1.0, true));
    let received = lines.iter().filter(|l| l.contains("-- after --")).count();
    println!("({received} of 2 receivers got the message; the program ended after the delay)");
}
