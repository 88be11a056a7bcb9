//! The engine's side of the per-tenant circuit breaker: every finished Cal.com call is
//! counted on its tenant's circuit, and a job of a tenant whose Cal.com stopped answering
//! waits for a probe instead of calling. The rules (when to open, probe and close) are the
//! domain's [`phasebook_domain::sync::breaker`]; this keeps one circuit per tenant in memory.

use calcom_client::CalcomClient;
use chrono::{DateTime, Utc};
use phasebook_domain::sync::breaker::{Admission, Breaker, Change, signals_unavailable};
use uuid::Uuid;

use super::{Engine, RunError};
use crate::store::sync::{AppointmentWork, StoreResult};

impl Engine {
    fn breaker<T>(&self, tenant_id: Uuid, f: impl FnOnce(&mut Breaker) -> T) -> T {
        let mut breakers = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        f(breakers.entry(tenant_id).or_default())
    }

    /// Records one finished Cal.com call of the tenant on its circuit.
    pub(super) fn observe_call(&self, tenant_id: Uuid, error_kind: Option<&str>) {
        let Some(policy) = self.breaker_policy else {
            return;
        };
        let unavailable = error_kind.is_some_and(signals_unavailable);
        if self.breaker(tenant_id, |b| b.record(unavailable, Utc::now(), &policy)) == Change::Opened
        {
            tracing::warn!(tenant_id = %tenant_id, "Cal.com stopped answering for this tenant; its jobs wait for a probe instead of calling");
        }
    }

    /// `Some(time)`: the tenant's circuit is open and the job comes back then. A due probe
    /// is made here (`GET /v2/me`); when Cal.com answers, the circuit closes and the
    /// appointments that went to review only because Cal.com was unreachable are queued.
    pub(super) async fn wait_for_calcom(
        &self,
        client: &CalcomClient,
        work: &AppointmentWork,
    ) -> Result<Option<DateTime<Utc>>, RunError> {
        let Some(policy) = self.breaker_policy else {
            return Ok(None);
        };
        let tenant_id = work.tenant.tenant_id;
        match self.breaker(tenant_id, |b| b.admit(Utc::now(), &policy)) {
            Admission::Call => Ok(None),
            Admission::Wait(until) => Ok(Some(until)),
            Admission::Probe => {
                let answered = match client.me().await {
                    Ok(_) => true,
                    Err(err) => !signals_unavailable(err.kind()),
                };
                let change = self.breaker(tenant_id, |b| b.probed(answered, Utc::now(), &policy));
                if change != Change::Closed {
                    let until = Utc::now() + policy.probe_every;
                    return Ok(Some(until));
                }
                let requeued = self.requeue_after_outage(tenant_id, Utc::now()).await?;
                tracing::info!(tenant_id = %tenant_id, requeued, "Cal.com answers again for this tenant");
                Ok(None)
            }
        }
    }

    /// Queues every appointment of the tenant in review only because Cal.com was
    /// unreachable; returns how many.
    pub(crate) async fn requeue_after_outage(
        &self,
        tenant_id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<usize> {
        let waiting = self.store.reviews_waiting_for_calcom(tenant_id).await?;
        for &appointment_id in &waiting {
            tracing::info!(appointment_id = %appointment_id, "Cal.com answers again; retrying an appointment that was in review only for its outage");
            self.store
                .request_sync(tenant_id, appointment_id, now, true)
                .await?;
        }
        Ok(waiting.len())
    }
}
