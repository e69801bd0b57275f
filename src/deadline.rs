//! Deadlines kept by a long-lived timer: a connection sets one per request, and the timer moves
//! only when it fires before the deadline. A fresh `tokio::time::timeout` per request registers
//! and removes a timer-wheel entry each time; on the proxy path that was a measurable share of
//! a request's cost, for a timeout that almost never fires.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// A deadline and the timer that watches it (which fires at or before it).
pub struct Deadline {
    sleep: Pin<Box<Sleep>>,
    at: Instant,
}

impl Deadline {
    /// A deadline `after` from now.
    pub fn after(after: Duration) -> Self {
        let at = Instant::now() + after;
        Self { sleep: Box::pin(tokio::time::sleep_until(at)), at }
    }

    /// Sets the deadline to `after` from now. A later deadline leaves the timer where it is.
    pub fn reset(&mut self, after: Duration) {
        self.set(Instant::now() + after);
    }

    /// Moves the deadline to `at`, earlier or later.
    pub fn set(&mut self, at: Instant) {
        self.at = at;
        if at < self.sleep.deadline() {
            self.sleep.as_mut().reset(at);
        }
    }

    pub fn at(&self) -> Instant {
        self.at
    }

    /// Ready once the deadline has passed.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while self.sleep.as_mut().poll(cx).is_ready() {
            if Instant::now() >= self.at {
                return Poll::Ready(());
            }
            self.sleep.as_mut().reset(self.at);
        }
        Poll::Pending
    }

    /// `future`'s output, or `None` when the deadline passes first.
    pub async fn run<F: Future>(&mut self, future: F) -> Option<F::Output> {
        let mut future = pin!(future);
        poll_fn(|cx| match future.as_mut().poll(cx) {
            Poll::Ready(output) => Poll::Ready(Some(output)),
            Poll::Pending => self.poll_expired(cx).map(|()| None),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fires_at_the_deadline_however_it_moved() {
        let mut deadline = Deadline::after(Duration::from_secs(1));
        let started = Instant::now();
        // Moved later before the timer fires: it fires at 1 s, is moved, and the run ends at 3 s.
        deadline.reset(Duration::from_secs(3));
        assert_eq!(deadline.run(std::future::pending::<()>()).await, None);
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        // Moved earlier: fires then.
        deadline.reset(Duration::from_secs(10));
        deadline.set(Instant::now() + Duration::from_millis(500));
        assert_eq!(deadline.run(std::future::pending::<()>()).await, None);
        assert_eq!(started.elapsed(), Duration::from_millis(3500));
        // A future that finishes first wins.
        deadline.reset(Duration::from_secs(1));
        let quick = tokio::time::sleep(Duration::from_millis(10));
        assert_eq!(
            deadline
                .run(async {
                    quick.await;
                    7
                })
                .await,
            Some(7)
        );
    }
}
