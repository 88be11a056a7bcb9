//! Client-side rate limiting for one API key: a sliding-window log that lets at most
//! `requests` calls start in any window of `per`, plus a pause set by a 429 until Cal.com's
//! reset time. A burst therefore waits here instead of collecting 429s (and the 60 s block
//! that follows them).
//!
//! A sliding window (not a token bucket) because Cal.com counts hits in a fixed window: a
//! bucket that refills continuously lets up to twice the limit through one server window.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Requests are timed here, but Cal.com counts them when they arrive; this margin covers
/// that gap so a request sent right at the window edge is not counted in the old window.
fn edge_margin(per: Duration) -> Duration {
    (per / 50).clamp(Duration::from_millis(20), Duration::from_secs(1))
}

#[derive(Debug)]
struct Window {
    started: VecDeque<Instant>,
    paused_until: Option<Instant>,
}

#[derive(Debug)]
pub(crate) struct RateLimiter {
    requests: usize,
    per: Duration,
    margin: Duration,
    window: Mutex<Window>,
    /// Waiters queue on this (tokio's mutex is FIFO), so a long burst is served in order.
    turn: tokio::sync::Mutex<()>,
}

impl RateLimiter {
    pub(crate) fn new(requests: u32, per: Duration) -> Self {
        Self {
            requests: requests.max(1) as usize,
            per,
            margin: edge_margin(per),
            window: Mutex::new(Window {
                started: VecDeque::new(),
                paused_until: None,
            }),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// Waits until one more request may start, and counts it.
    pub(crate) async fn acquire(&self) {
        let _turn = self.turn.lock().await;
        loop {
            let ready_at = {
                let mut window = self
                    .window
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let now = Instant::now();
                match window.paused_until {
                    Some(until) if until > now => Some(until),
                    _ => {
                        window.paused_until = None;
                        while window
                            .started
                            .front()
                            .is_some_and(|t| *t + self.per + self.margin <= now)
                        {
                            window.started.pop_front();
                        }
                        if window.started.len() < self.requests {
                            window.started.push_back(now);
                            None
                        } else {
                            window.started.front().map(|t| *t + self.per + self.margin)
                        }
                    }
                }
            };
            match ready_at {
                None => return,
                Some(at) => tokio::time::sleep_until(at).await,
            }
        }
    }

    /// Holds every further request until `reset_after` from now (a 429 arrived).
    pub(crate) fn pause_for(&self, reset_after: Duration) {
        let until = Instant::now() + reset_after;
        let mut window = self
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        window.paused_until = Some(window.paused_until.map_or(until, |t| t.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_burst_within_the_limit_is_not_delayed() {
        let limiter = RateLimiter::new(5, Duration::from_secs(60));
        let start = Instant::now();
        for _ in 0..5 {
            limiter.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn the_request_over_the_limit_waits_for_the_window() {
        let limiter = RateLimiter::new(3, Duration::from_secs(60));
        let start = Instant::now();
        for _ in 0..4 {
            limiter.acquire().await;
        }
        let waited = start.elapsed();
        assert!(waited >= Duration::from_secs(60), "{waited:?}");
        assert!(waited <= Duration::from_secs(62), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn no_window_ever_holds_more_than_the_limit() {
        let limiter = Arc::new(RateLimiter::new(4, Duration::from_secs(1)));
        let stamps = Arc::new(Mutex::new(Vec::new()));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let limiter = limiter.clone();
                let stamps = stamps.clone();
                tokio::spawn(async move {
                    limiter.acquire().await;
                    stamps
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(Instant::now());
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap_or_else(|e| panic!("{e}"));
        }
        let mut stamps = stamps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        stamps.sort();
        assert_eq!(stamps.len(), 20);
        for (i, t) in stamps.iter().enumerate() {
            let in_window = stamps[i..]
                .iter()
                .take_while(|u| **u < *t + Duration::from_secs(1))
                .count();
            assert!(in_window <= 4, "{in_window} requests within 1 s");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_requests_until_the_reset() {
        let limiter = RateLimiter::new(100, Duration::from_secs(60));
        limiter.pause_for(Duration::from_secs(7));
        // A shorter pause never shortens a longer one.
        limiter.pause_for(Duration::from_secs(2));
        let start = Instant::now();
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(7));
    }
}
