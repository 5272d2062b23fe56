//! The park word (`sched::park::word`), as it is, inside the park protocol of `sched::park`'s
//! module doc. Steps 2-6 around the word are modelled: the publication (a lock), the task's
//! look before switching (step 3), the scheduler's look after it (step 4), and the domain's
//! handling of a wake-up request (step 6) with the `parked` flag, which only the domain's
//! thread touches (a plain local here). Keep in step with `sched::park` and
//! `sched::domain::Local::{run_task, woken}`.

use loom::sync::{Arc, Mutex};
use loom::thread;

use super::{Parker, model, wait_thread};
use crate::sched::park::{ParkWord, Wake};

/// Exactly one of several wakers (an unparker, a timer, the waiter's own stop) ends a
/// generation, and the word keeps the winner's reason.
#[test]
fn loom_park_word_one_waker_wins() {
    model(|| {
        let word = Arc::new(ParkWord::new());
        let g = word.arm();
        let racers: Vec<_> = [Wake::Unparked, Wake::TimedOut]
            .into_iter()
            .map(|why| {
                let word = word.clone();
                thread::spawn(move || word.wake(g, why).then_some(why))
            })
            .collect();
        let mine = word
            .wake_current(Wake::Interrupted)
            .then_some(Wake::Interrupted);
        let winners: Vec<Wake> = racers
            .into_iter()
            .map(|t| t.join().unwrap())
            .chain([mine])
            .flatten()
            .collect();
        assert_eq!(winners.len(), 1, "exactly one waker wins: {winners:?}");
        assert_eq!(word.outcome(g), Some(winners[0]), "the winner's reason");
        assert!(!word.is_armed());
    });
}

/// The task protocol (steps 1-6) with two wakers on other threads: the task is made runnable
/// exactly once, either by seeing its wake-up itself (step 3 or 4) or by one request in step
/// 6, never twice and never not at all.
#[test]
fn loom_park_word_task_woken_once() {
    model(|| {
        let word = Arc::new(ParkWord::new());
        // The domain's inbox: wake-up requests of the task (step 5's second half).
        let inbox: Arc<Mutex<usize>> = Arc::new(Mutex::new(0));
        // The domain's thread, running the task. Step 1.
        let g = word.arm();
        // Step 2: the unparkers reach the wakers (the spawn publishes them).
        let wakers: Vec<_> = [Wake::Unparked, Wake::TimedOut]
            .into_iter()
            .map(|why| {
                let (word, inbox) = (word.clone(), inbox.clone());
                thread::spawn(move || {
                    // Step 5: the CAS, then (the winner only) a request to the domain.
                    if word.wake(g, why) {
                        *inbox.lock().unwrap() += 1;
                    }
                })
            })
            .collect();
        let mut runnable = 0;
        let mut parked = false;
        // Step 3: woken already?
        if word.outcome(g).is_some() {
            runnable += 1;
        } else if word.is_armed() {
            // Step 4, after the switch: still armed, so parked and off every queue.
            parked = true;
        } else {
            // Step 4: woken between the look and the switch: queued at once.
            runnable += 1;
        }
        for t in wakers {
            t.join().unwrap();
        }
        // Step 6, for every request in the inbox.
        let requests = std::mem::take(&mut *inbox.lock().unwrap());
        assert_eq!(requests, 1, "one waker won, and only it asks");
        for _ in 0..requests {
            if parked && !word.is_armed() {
                parked = false;
                runnable += 1;
            }
        }
        assert_eq!(runnable, 1, "made runnable exactly once");
        assert!(!parked, "no wake-up lost");
        assert!(word.outcome(g).is_some());
    });
}

/// A plain thread's park: the waker's CAS, then `unpark`; the thread's loop around `park`
/// never misses it (a lost wake-up would leave it parked for ever: loom reports a deadlock).
#[test]
fn loom_park_word_thread_wake_never_lost() {
    model(|| {
        let word = Arc::new(ParkWord::new());
        let g = word.arm();
        let me = Parker::new();
        let waker = {
            let (word, me) = (word.clone(), me.clone());
            thread::spawn(move || {
                if word.wake(g, Wake::Unparked) {
                    me.unpark();
                }
            })
        };
        assert_eq!(wait_thread(&word, g, &me), Wake::Unparked);
        waker.join().unwrap();
    });
}

/// An unparker of a superseded park is stale: whatever it does, racing the waiter's new park,
/// it never ends the newer generation.
#[test]
fn loom_park_word_stale_unparker_wakes_nothing() {
    model(|| {
        let word = Arc::new(ParkWord::new());
        let g0 = word.arm();
        let waker = {
            let word = word.clone();
            thread::spawn(move || word.wake(g0, Wake::Unparked))
        };
        // Step 1 again: supersedes g0 if it is still armed.
        let g1 = word.arm();
        let woke_g0 = waker.join().unwrap();
        assert_ne!(g0, g1);
        assert_eq!(word.outcome(g1), None, "the newer park is still armed");
        // Whether the stale wake came before the new arm (and won g0) or after (and did
        // nothing), g0 is over and reads as superseded.
        let _ = woke_g0;
        assert_eq!(word.outcome(g0), Some(Wake::Superseded));
        assert!(word.is_armed());
    });
}
