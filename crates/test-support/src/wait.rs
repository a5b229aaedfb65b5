//! Waiting for a condition instead of sleeping a fixed time: poll until it holds (and fail
//! naming what was awaited), or check that it keeps holding over a window.

use std::time::{Duration, Instant};

/// How often to poll within `timeout`: a hundredth of it, between 10 ms and 250 ms.
fn interval(timeout: Duration) -> Duration {
    (timeout / 100).clamp(Duration::from_millis(10), Duration::from_millis(250))
}

/// Polls `probe` until it returns `Some`, and returns that value.
///
/// # Panics
/// After `timeout` without a `Some`, naming `what` was awaited and how long.
pub fn wait_for<T>(timeout: Duration, what: &str, probe: impl FnMut() -> Option<T>) -> T {
    wait_for_or_explain(timeout, what, probe, String::new)
}

/// [`wait_for`] that adds `explain()` (a log, the last state seen) to the failure message.
///
/// # Panics
/// After `timeout` without a `Some`.
pub fn wait_for_or_explain<T>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Option<T>,
    explain: impl FnOnce() -> String,
) -> T {
    let t0 = Instant::now();
    let step = interval(timeout);
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if t0.elapsed() >= timeout {
            let more = explain();
            panic!(
                "timed out after {:.1?} waiting for {what}{}{more}",
                t0.elapsed(),
                if more.is_empty() { "" } else { "\n" }
            );
        }
        std::thread::sleep(step);
    }
}

/// Polls `cond` until it is true.
///
/// # Panics
/// After `timeout` with `cond` still false, naming `what` was awaited.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    wait_for(timeout, what, || cond().then_some(()));
}

/// [`wait_until`] that adds `explain()` to the failure message.
///
/// # Panics
/// After `timeout` with `cond` still false.
pub fn wait_until_or_explain(
    timeout: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
    explain: impl FnOnce() -> String,
) {
    wait_for_or_explain(timeout, what, || cond().then_some(()), explain);
}

/// Checks `cond` over the whole of `window` (polling), for "nothing more happens" claims:
/// make `window` longer than the time in which the thing would happen if it were going to.
///
/// # Panics
/// As soon as `cond` is false, naming `what` should have held and after how long it broke.
pub fn holds_for(window: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    let step = interval(window);
    loop {
        assert!(cond(), "{what} stopped holding after {:.1?}", t0.elapsed());
        if t0.elapsed() >= window {
            return;
        }
        std::thread::sleep(step);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn waits_until_the_condition_holds() {
        let calls = Cell::new(0);
        let t0 = Instant::now();
        let v = wait_for(Duration::from_secs(5), "the third call", || {
            calls.set(calls.get() + 1);
            (calls.get() == 3).then_some(calls.get())
        });
        assert_eq!(v, 3);
        assert!(t0.elapsed() < Duration::from_secs(1));
    }

    #[test]
    #[should_panic(expected = "waiting for the sky to fall")]
    fn a_condition_that_never_holds_fails_naming_it() {
        wait_until(Duration::from_millis(100), "the sky to fall", || false);
    }

    #[test]
    fn the_timeout_is_honoured() {
        let t0 = Instant::now();
        let r = std::panic::catch_unwind(|| {
            wait_until(Duration::from_millis(300), "nothing", || false);
        });
        assert!(r.is_err());
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }

    #[test]
    fn explanations_are_appended() {
        let r = std::panic::catch_unwind(|| {
            wait_until_or_explain(
                Duration::from_millis(50),
                "x",
                || false,
                || "the log".into(),
            );
        });
        let msg = r.unwrap_err().downcast::<String>().unwrap();
        assert!(msg.contains("waiting for x\nthe log"), "{msg}");
    }

    #[test]
    fn holds_for_watches_the_whole_window() {
        let t0 = Instant::now();
        holds_for(Duration::from_millis(200), "always", || true);
        assert!(t0.elapsed() >= Duration::from_millis(200));
        let r = std::panic::catch_unwind(|| {
            let t0 = Instant::now();
            holds_for(Duration::from_secs(5), "the first 100 ms", || {
                t0.elapsed() < Duration::from_millis(100)
            });
        });
        let msg = r.unwrap_err().downcast::<String>().unwrap();
        assert!(msg.contains("the first 100 ms stopped holding"), "{msg}");
    }
}
