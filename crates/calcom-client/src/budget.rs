//! Where a client takes the token for each request: a [`Budget`] for its API key. The
//! default is this process's own [`RateLimiter`]; a service with several processes on one
//! key plugs in a budget they share (phasebook keeps it in its database), so Cal.com sees
//! one caller per key whatever runs.
//!
//! Every request carries a [`Priority`], read from the task it runs in: someone waiting
//! (availability, a hold, a booking answered with `Prefer: wait`) is
//! [`Priority::Interactive`], the default; retries, sweeps and audits run inside
//! [`Priority::scope`] with [`Priority::Background`] and may only use what is left after a
//! share kept for interactive calls.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::limiter::RateLimiter;

/// Who waits for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Priority {
    /// A person or caller waits for the answer.
    Interactive,
    /// Nobody waits: retries, sweeps, audits. Never delays an interactive call.
    Background,
}

tokio::task_local! {
    static PRIORITY: Priority;
}

impl Priority {
    /// Runs `work` with this priority for every Cal.com request made inside it (spawned
    /// tasks start again from the default).
    pub async fn scope<F: Future>(self, work: F) -> F::Output {
        PRIORITY.scope(self, work).await
    }

    /// The priority of the running task: [`Priority::Interactive`] unless set by `scope`.
    pub fn current() -> Self {
        PRIORITY.try_with(|p| *p).unwrap_or(Self::Interactive)
    }
}

/// What Cal.com said about the key's window in its `X-RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowReport {
    /// Requests Cal.com still accepts in its current window.
    pub remaining: u32,
    /// Until Cal.com's window ends.
    pub reset_after: Duration,
}

/// A boxed future, so a budget can be a trait object.
pub type BudgetFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// The request budget of one API key.
pub trait Budget: Send + Sync + fmt::Debug {
    /// Waits until one more request of `priority` may start, and counts it.
    fn acquire(&self, priority: Priority) -> BudgetFuture<'_>;
    /// Cal.com's own count, from a response's headers: the budget only ever tightens on it.
    fn observe(&self, report: WindowReport);
    /// A 429 arrived: no request of this key starts until `reset_after` from now.
    fn pause(&self, reset_after: Duration);
}

/// How many of `requests` per window stay free for interactive calls: a fifth, at least one
/// (none when the whole budget is one request).
pub fn interactive_reserve(requests: u32) -> u32 {
    if requests <= 1 {
        0
    } else {
        (requests / 5).max(1)
    }
}

/// This process's own budget: a sliding window for each priority class (background capped
/// below the limit by [`interactive_reserve`]), a 429 pause for both.
#[derive(Debug)]
pub struct LocalBudget {
    all: RateLimiter,
    background: RateLimiter,
}

impl LocalBudget {
    pub fn new(requests: u32, per: Duration) -> Self {
        let background = requests
            .saturating_sub(interactive_reserve(requests))
            .max(1);
        Self {
            all: RateLimiter::new(requests, per),
            background: RateLimiter::new(background, per),
        }
    }
}

impl Budget for LocalBudget {
    fn acquire(&self, priority: Priority) -> BudgetFuture<'_> {
        Box::pin(async move {
            if priority == Priority::Background {
                self.background.acquire().await;
            }
            self.all.acquire().await;
        })
    }

    fn observe(&self, _report: WindowReport) {}

    fn pause(&self, reset_after: Duration) {
        self.all.pause_for(reset_after);
        self.background.pause_for(reset_after);
    }
}

/// Requests a client sent, for reports such as `doctor`'s "budget used".
#[derive(Debug, Default)]
pub(crate) struct Usage {
    pub(crate) sent: AtomicU64,
    pub(crate) waited_ms: AtomicU64,
}

impl Usage {
    pub(crate) fn record(&self, waited: Duration) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.waited_ms
            .fetch_add(waited.as_millis() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifth_is_kept_for_interactive_calls() {
        assert_eq!(interactive_reserve(120), 24);
        assert_eq!(interactive_reserve(3), 1);
        assert_eq!(interactive_reserve(1), 0);
    }

    #[tokio::test]
    async fn the_default_priority_is_interactive() {
        assert_eq!(Priority::current(), Priority::Interactive);
        let inner = Priority::Background
            .scope(async { Priority::current() })
            .await;
        assert_eq!(inner, Priority::Background);
    }

    #[tokio::test(start_paused = true)]
    async fn background_leaves_the_reserve_to_interactive_calls() {
        let budget = LocalBudget::new(5, Duration::from_secs(60));
        let start = tokio::time::Instant::now();
        for _ in 0..4 {
            budget.acquire(Priority::Background).await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        // The fifth request of the window is the interactive reserve.
        budget.acquire(Priority::Interactive).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
