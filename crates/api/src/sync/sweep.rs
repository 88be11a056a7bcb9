//! The verification sweep: a booking deleted, cancelled or moved in Cal.com without a
//! webhook would leave an appointment `synced` while the calendar says otherwise. On a
//! schedule, each tenant's coming bookings are listed in Cal.com (a few paged reads for the
//! whole window, a small share of the tenant's budget) and compared with what phasebook
//! stores (`phasebook_domain::sync::sweep_findings`); each appointment that no longer
//! matches gets a verifying run of its job, which converges it.

use std::time::Duration;

use calcom_client::{ListBookings, MAX_BOOKINGS_PAGE};
use chrono::{DateTime, TimeDelta, Utc};
use phasebook_domain::sync::sweep_findings;

use super::engine::observe;
use super::worker::Worker;
use crate::store::StoreResult;
use crate::store::sync::TenantConnection;

/// When and how far the sweep looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerificationSettings {
    /// How often a tenant is swept; `None`: never (tests sweep by hand).
    pub every: Option<Duration>,
    /// How many days ahead.
    pub days: u32,
    /// Listing pages (250 bookings each) one sweep reads at most; a tenant with more
    /// bookings in the window is reported and skipped rather than judged on half a list.
    pub max_pages: u32,
}

impl Default for VerificationSettings {
    fn default() -> Self {
        Self {
            every: Some(Duration::from_secs(15 * 60)),
            days: 14,
            max_pages: 8,
        }
    }
}

/// What one sweep found, over every tenant it claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SweepOutcome {
    pub tenants: usize,
    /// Appointments whose job was asked to verify and converge.
    pub appointments_queued: usize,
    /// Appointments in review only because Cal.com was unavailable, retried now that it
    /// answered the sweep.
    pub requeued_after_outage: usize,
}

impl Worker {
    /// Sweeps every tenant not swept within the configured interval (`every: None` sweeps
    /// every tenant now). Each tenant is claimed first, so replicas share the work.
    pub async fn verify_due_tenants(&self) -> StoreResult<SweepOutcome> {
        let settings = self.config().verification;
        let now = Utc::now();
        let since = match settings.every {
            Some(every) => now - TimeDelta::from_std(every).unwrap_or(TimeDelta::MAX),
            None => now,
        };
        let tenants = self.store().claim_verification(since, now).await?;
        let mut outcome = SweepOutcome {
            tenants: tenants.len(),
            ..SweepOutcome::default()
        };
        for tenant in &tenants {
            let (queued, requeued) = self.sweep_tenant(tenant, now, settings).await?;
            outcome.appointments_queued += queued;
            outcome.requeued_after_outage += requeued;
        }
        if outcome.appointments_queued + outcome.requeued_after_outage > 0 {
            self.handle().wake();
        }
        Ok(outcome)
    }

    async fn sweep_tenant(
        &self,
        tenant: &TenantConnection,
        now: DateTime<Utc>,
        settings: VerificationSettings,
    ) -> StoreResult<(usize, usize)> {
        let span = tracing::info_span!("verification_sweep", tenant_id = %tenant.tenant_id);
        let _entered = span.enter();
        let client = match self.clients().get(tenant) {
            Ok(client) => client,
            Err(err) => {
                tracing::warn!(error = %err, "no Cal.com client for the verification sweep");
                return Ok((0, 0));
            }
        };
        let until = now + TimeDelta::days(i64::from(settings.days));
        let stored = self
            .store()
            .synced_bookings_between(tenant.tenant_id, now, until)
            .await?;
        let mut listed = Vec::new();
        let mut complete = false;
        let mut requeued = 0;
        for page in 0..settings.max_pages {
            let query = ListBookings {
                after_start: Some(now),
                // A booking that starts inside the window may end after it.
                before_end: Some(until + TimeDelta::days(1)),
                take: Some(MAX_BOOKINGS_PAGE),
                skip: Some(page * MAX_BOOKINGS_PAGE),
                ..ListBookings::default()
            };
            match client.list_bookings(&query).await {
                Ok(found) => {
                    if page == 0 {
                        // Cal.com answered: what waited only for it is retried (the probe
                        // of a per-tenant circuit that opened when retries ran out).
                        requeued = self.requeue_after_outage(tenant, now).await?;
                    }
                    listed.extend(found.bookings.iter().map(observe));
                    if !found.has_next_page {
                        complete = true;
                        break;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "Cal.com could not be listed; the sweep tries again next time");
                    return Ok((0, requeued));
                }
            }
        }
        if !complete {
            tracing::warn!(
                pages = settings.max_pages,
                "more bookings in the window than one sweep reads; not judged this time"
            );
            return Ok((0, requeued));
        }
        let findings = sweep_findings(tenant.tenant_id, &stored, &listed);
        for &appointment_id in &findings {
            tracing::warn!(appointment_id = %appointment_id, "the calendar no longer matches the appointment; verifying it");
            self.store()
                .request_verification(tenant.tenant_id, appointment_id, now)
                .await?;
        }
        tracing::info!(
            checked = stored.len(),
            listed = listed.len(),
            queued = findings.len(),
            "verification sweep done"
        );
        Ok((findings.len(), requeued))
    }

    async fn requeue_after_outage(
        &self,
        tenant: &TenantConnection,
        now: DateTime<Utc>,
    ) -> StoreResult<usize> {
        self.engine()
            .requeue_after_outage(tenant.tenant_id, now)
            .await
    }

    /// Sweeps tenants on the configured schedule until `stop` is cancelled.
    pub(crate) async fn sweeper(
        self: std::sync::Arc<Self>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let Some(every) = self.config().verification.every else {
            return;
        };
        // Look often enough that a tenant is swept close to its interval.
        let tick = (every / 4).max(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(tick) => {}
            }
            if let Err(err) = self.verify_due_tenants().await {
                tracing::warn!(error = %err, "verification sweep failed on the database");
            }
        }
    }
}
