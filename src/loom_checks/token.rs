//! The wake-up token (`sched::park::token`), steps 1-5 of its module doc, as a model around
//! the real `ParkWord`: the token's state word and its `waiter` slot (a lock) as the file has
//! them, the owner's park as a plain thread's (the park word, then `Parker` until the
//! generation ends), the unparker's swap, take and wake. Keep in step with
//! `sched::park::token`.

use loom::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

use super::{Parker, model, wait_thread};
use crate::sched::park::{ParkWord, Wake};

const EMPTY: u8 = 0;
const NOTIFIED: u8 = 1;
const PARKED: u8 = 2;

/// One owner's token, its park word and its thread parker.
struct Token {
    state: AtomicU8,
    /// The generation of the owner's armed park (its unparker).
    waiter: Mutex<Option<u64>>,
    word: ParkWord,
    parker: Arc<Parker>,
}

impl Token {
    fn new() -> Arc<Token> {
        Arc::new(Token {
            state: AtomicU8::new(EMPTY),
            waiter: Mutex::new(None),
            word: ParkWord::new(),
            parker: Parker::new(),
        })
    }

    /// `Token::park` with no deadline.
    fn park(&self) {
        assert!(self.park_until(false));
    }

    /// `Token::park`; with `expired`, its deadline has passed already (the owner's own timeout
    /// races the unparker for the park word). True if the token was taken.
    fn park_until(&self, expired: bool) -> bool {
        loop {
            // Step 1.
            if self
                .state
                .compare_exchange(NOTIFIED, EMPTY, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return true;
            }
            // Step 2.
            let g = self.word.arm();
            *self.waiter.lock().unwrap() = Some(g);
            // Step 3.
            if self
                .state
                .compare_exchange(EMPTY, PARKED, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                self.waiter.lock().unwrap().take();
                // The park is dropped: its generation retired.
                self.word.wake(g, Wake::Superseded);
                continue;
            }
            // Step 4.
            let why = if expired {
                self.word.wake(g, Wake::TimedOut);
                self.word.outcome(g).expect("the generation has ended")
            } else {
                wait_thread(&self.word, g, &self.parker)
            };
            // Step 5.
            let was = self.state.swap(EMPTY, Ordering::Acquire);
            self.waiter.lock().unwrap().take();
            if was == NOTIFIED {
                return true;
            }
            if why == Wake::TimedOut {
                return false;
            }
        }
    }

    /// `Token::unpark`.
    fn unpark(&self) {
        if self.state.swap(NOTIFIED, Ordering::AcqRel) == PARKED {
            let waiter = self.waiter.lock().unwrap().take();
            if let Some(g) = waiter {
                if self.word.wake(g, Wake::Unparked) {
                    self.parker.unpark();
                }
            }
        }
    }
}

/// An unpark racing the owner's park is never lost (a lost one leaves the owner parked for
/// ever: loom reports the deadlock), and the owner returns only once it was given.
#[test]
fn loom_token_unpark_never_lost() {
    model(|| {
        let token = Token::new();
        let given = Arc::new(AtomicBool::new(false));
        let unparker = {
            let (token, given) = (token.clone(), given.clone());
            thread::spawn(move || {
                given.store(true, Ordering::SeqCst);
                token.unpark();
            })
        };
        token.park();
        assert!(
            given.load(Ordering::SeqCst),
            "park returned without the token"
        );
        unparker.join().unwrap();
    });
}

/// A slow unparker of the first round may find the owner's second-round park in `waiter` and
/// wake it (the first round ended on its deadline, yet took that unparker's token): the owner
/// must not take that wake for the second token (no spurious return), and the second round's
/// own unpark still reaches it.
#[test]
fn loom_token_stale_wake_is_not_a_token() {
    model(|| {
        let token = Token::new();
        let second_go = Parker::new();
        let second_given = Arc::new(AtomicBool::new(false));
        let first = {
            let token = token.clone();
            thread::spawn(move || token.unpark())
        };
        let second = {
            let (token, go, given) = (token.clone(), second_go.clone(), second_given.clone());
            thread::spawn(move || {
                go.park();
                given.store(true, Ordering::SeqCst);
                token.unpark();
            })
        };
        // The first round, with its deadline passed; if it did not get the first token, a
        // plain park takes it.
        if !token.park_until(true) {
            token.park();
        }
        second_go.unpark();
        token.park();
        assert!(
            second_given.load(Ordering::SeqCst),
            "the second park returned on the first round's wake"
        );
        first.join().unwrap();
        second.join().unwrap();
    });
}
