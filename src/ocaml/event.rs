//! OCaml's `Event` module (Concurrent ML), over [`crate::event`].
//!
//! | OCaml                   | here                         |
//! |-------------------------|------------------------------|
//! | `Event.new_channel ()`  | [`new_channel`]`()`          |
//! | `Event.send c v`        | [`send`]`(&c, v)`            |
//! | `Event.receive c`       | [`receive`]`(&c)`            |
//! | `Event.always v`        | [`always`]`(v)`              |
//! | `Event.choose l`        | [`choose`]`(l)`              |
//! | `Event.wrap e f`        | [`wrap`]`(e, f)`             |
//! | `Event.wrap_abort e f`  | [`wrap_abort`]`(e, f)`       |
//! | `Event.guard f`         | [`guard`]`(f)`               |
//! | `Event.sync e`          | [`sync`]`(e)`                |
//! | `Event.select l`        | [`select`]`(l)`              |
//! | `Event.poll e`          | [`poll`]`(e)`                |
//!
//! `choose []` and `select []` panic with `Invalid_argument("Event.choose")`. An OCaml event
//! can be synced many times; a Rust one is consumed by `sync`: build it again (it is cheap).
//!
//! ```
//! use bobine::ocaml::{event, thread};
//! bobine::run(|| {
//!     let c = event::new_channel();
//!     let c2 = c.clone();
//!     thread::create(move |()| event::sync(event::send(&c2, "hello")), ());
//!     assert_eq!(event::sync(event::receive(&c)), "hello");
//! });
//! ```

/// `'a Event.channel`.
pub type Channel<T> = crate::event::Channel<T>;
/// `'a Event.event`.
pub type Event<T> = crate::event::Event<T>;

/// `Event.new_channel ()`.
pub fn new_channel<T: Send + 'static>() -> Channel<T> {
    Channel::new()
}

/// `Event.send c v`: the event of sending `v` on `c`.
pub fn send<T: Send + 'static>(c: &Channel<T>, v: T) -> Event<()> {
    c.send_evt(v)
}

/// `Event.receive c`: the event of receiving on `c`.
pub fn receive<T: Send + 'static>(c: &Channel<T>) -> Event<T> {
    c.recv_evt()
}

/// `Event.always v`.
pub fn always<T: Send + 'static>(v: T) -> Event<T> {
    Event::always(v)
}

/// `Event.choose l`.
#[track_caller]
pub fn choose<T: 'static>(l: Vec<Event<T>>) -> Event<T> {
    crate::event::choose(l)
}

/// `Event.wrap e f`.
pub fn wrap<A: 'static, B: 'static>(
    e: Event<A>,
    f: impl FnOnce(A) -> B + Send + 'static,
) -> Event<B> {
    e.wrap(f)
}

/// `Event.wrap_abort e f`.
pub fn wrap_abort<T: 'static>(e: Event<T>, f: impl FnOnce() + Send + 'static) -> Event<T> {
    e.wrap_abort(f)
}

/// `Event.guard f`.
pub fn guard<T: 'static>(f: impl FnOnce() -> Event<T> + Send + 'static) -> Event<T> {
    crate::event::guard(f)
}

/// `Event.sync e`.
#[track_caller]
pub fn sync<T: 'static>(e: Event<T>) -> T {
    e.sync()
}

/// `Event.select l`.
#[track_caller]
pub fn select<T: 'static>(l: Vec<Event<T>>) -> T {
    crate::event::select(l)
}

/// `Event.poll e`.
pub fn poll<T: 'static>(e: Event<T>) -> Option<T> {
    e.poll()
}
