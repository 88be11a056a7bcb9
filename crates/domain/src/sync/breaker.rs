//! A per-tenant circuit breaker over Cal.com being reachable. When every one of the last
//! calls for a tenant found Cal.com unreachable, further work for that tenant waits instead
//! of calling (and of using up its attempts); one probe at a time asks whether Cal.com
//! answers again, and the first answer closes the circuit and lets everything run.

use chrono::{DateTime, TimeDelta, Utc};

use super::CALCOM_UNAVAILABLE_KINDS;

/// When the circuit opens and how often it is probed while open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive calls that found Cal.com unreachable before the circuit opens. High
    /// enough that scattered faults (a 5xx here, a lost answer there) never open it.
    pub failures_to_open: u32,
    /// How long an open circuit waits before the next probe.
    pub probe_every: TimeDelta,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failures_to_open: 12,
            probe_every: TimeDelta::seconds(10),
        }
    }
}

/// What a job for the tenant may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The circuit is closed: call Cal.com.
    Call,
    /// The circuit is open and a probe is due: this caller asks Cal.com once.
    Probe,
    /// The circuit is open: come back at this time without calling.
    Wait(DateTime<Utc>),
}

/// What a recorded outcome changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Unchanged,
    Opened,
    Closed,
}

/// One tenant's circuit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Breaker {
    consecutive_unavailable: u32,
    open_until: Option<DateTime<Utc>>,
    probing: bool,
}

/// True when a call that ended with this error kind says Cal.com could not be reached
/// (no answer, a lost answer, a 5xx). A 429 or an unreadable 2xx is an answer.
pub fn signals_unavailable(kind: &str) -> bool {
    CALCOM_UNAVAILABLE_KINDS.contains(&kind) && kind != "rate_limited" && kind != "decode"
}

impl Breaker {
    pub fn is_open(&self) -> bool {
        self.open_until.is_some()
    }

    /// Asks whether a job may call Cal.com now. A `Probe` answer is given to one caller at
    /// a time; it must report back through [`Breaker::probed`].
    pub fn admit(&mut self, now: DateTime<Utc>, policy: &BreakerPolicy) -> Admission {
        match self.open_until {
            None => Admission::Call,
            Some(until) if now < until => Admission::Wait(until),
            Some(_) if self.probing => Admission::Wait(now + policy.probe_every),
            Some(_) => {
                self.probing = true;
                Admission::Probe
            }
        }
    }

    /// Records the outcome of one call: `unavailable` when it found Cal.com unreachable.
    pub fn record(
        &mut self,
        unavailable: bool,
        now: DateTime<Utc>,
        policy: &BreakerPolicy,
    ) -> Change {
        if !unavailable {
            self.consecutive_unavailable = 0;
            self.probing = false;
            return if self.open_until.take().is_some() {
                Change::Closed
            } else {
                Change::Unchanged
            };
        }
        self.consecutive_unavailable = self.consecutive_unavailable.saturating_add(1);
        if self.open_until.is_none() && self.consecutive_unavailable >= policy.failures_to_open {
            self.open_until = Some(now + policy.probe_every);
            return Change::Opened;
        }
        Change::Unchanged
    }

    /// Records the probe's outcome: an answer closes the circuit, none keeps it open until
    /// the next probe.
    pub fn probed(&mut self, answered: bool, now: DateTime<Utc>, policy: &BreakerPolicy) -> Change {
        self.probing = false;
        if answered {
            return self.record(false, now, policy);
        }
        self.open_until = Some(now + policy.probe_every);
        Change::Unchanged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::seconds(seconds)
    }

    #[test]
    fn an_outage_opens_the_circuit_one_probe_at_a_time_and_an_answer_closes_it() {
        let policy = BreakerPolicy::default();
        let mut breaker = Breaker::default();
        for i in 1..policy.failures_to_open {
            assert_eq!(
                breaker.record(true, at(0), &policy),
                Change::Unchanged,
                "{i}"
            );
            assert_eq!(breaker.admit(at(0), &policy), Admission::Call);
        }
        assert_eq!(breaker.record(true, at(0), &policy), Change::Opened);
        assert_eq!(breaker.admit(at(1), &policy), Admission::Wait(at(10)));
        assert_eq!(breaker.admit(at(10), &policy), Admission::Probe);
        assert_eq!(breaker.admit(at(10), &policy), Admission::Wait(at(20)));
        assert_eq!(breaker.probed(false, at(11), &policy), Change::Unchanged);
        assert_eq!(breaker.admit(at(12), &policy), Admission::Wait(at(21)));
        assert_eq!(breaker.admit(at(21), &policy), Admission::Probe);
        assert_eq!(breaker.probed(true, at(21), &policy), Change::Closed);
        assert_eq!(breaker.admit(at(21), &policy), Admission::Call);
    }

    #[test]
    fn only_unreachable_counts_and_any_answer_resets_the_count() {
        assert!(signals_unavailable("transport"));
        assert!(signals_unavailable("outcome_unknown"));
        assert!(signals_unavailable("server"));
        assert!(!signals_unavailable("rate_limited"));
        assert!(!signals_unavailable("decode"));
        assert!(!signals_unavailable("slot_unavailable"));
        let policy = BreakerPolicy::default();
        let mut breaker = Breaker::default();
        for _ in 0..100 {
            for _ in 1..policy.failures_to_open {
                breaker.record(true, at(0), &policy);
            }
            breaker.record(false, at(0), &policy);
        }
        assert!(!breaker.is_open());
    }

    proptest! {
        /// Whatever the outcomes, the circuit is open exactly when the last
        /// `failures_to_open` outcomes (since the last answer) were all unreachable, and an
        /// open circuit never lets a job call except through one probe.
        #[test]
        fn open_exactly_after_a_run_of_unreachable_outcomes(outcomes in prop::collection::vec(any::<bool>(), 0..200)) {
            let policy = BreakerPolicy { failures_to_open: 5, probe_every: TimeDelta::seconds(10) };
            let mut breaker = Breaker::default();
            let mut run = 0u32;
            for unavailable in outcomes {
                breaker.record(unavailable, at(0), &policy);
                run = if unavailable { run + 1 } else { 0 };
                prop_assert_eq!(breaker.is_open(), run >= policy.failures_to_open);
                if breaker.is_open() {
                    prop_assert_ne!(breaker.admit(at(1), &policy), Admission::Call);
                }
            }
        }
    }
}
