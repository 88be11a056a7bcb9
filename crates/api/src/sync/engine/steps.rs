//! Each action a plan names, performed once. A call the attempt log records (resolve,
//! reconcile, create, cancel of a stray) writes its attempt ahead, calls Cal.com, hands the
//! answer to the domain ([`SegmentBooking::take`]) and saves what comes back with the
//! attempt's outcome; the drift check and the look for our own booking in the way only read.
//! What each returns is the plan's next input.
//!
//! [`SegmentBooking::take`]: phasebook_domain::sync::SegmentBooking::take

use calcom_client::{Booking, CalcomClient};
use chrono::Utc;
use phasebook_domain::EventTypeId;
use phasebook_domain::resolution::{HostIdentity, Refusal};
use phasebook_domain::sync::{
    Answer, BusyCause, CalcomFailure, Created, ObservedBooking, Reconciled, Resolved,
    SegmentSyncStatus, converge,
};

use super::calcom::{self, CreateAnswer, observe};
use super::{Run, RunError, classify, segment_minutes};
use crate::store::sync::{BookableUpdate, SegmentWork};
use crate::sync::drift::DriftAsk;

impl Run<'_> {
    /// Asks whether the bookable event type still fits the segment and its staff member
    /// (see [`crate::sync::drift::EventTypeChecks::drifted`]).
    pub(super) async fn drifted(
        &self,
        client: &CalcomClient,
        segment: &SegmentWork,
        bookable: EventTypeId,
    ) -> Option<Refusal> {
        let ask = DriftAsk {
            tenant: &self.work.tenant,
            host: &host(segment)?,
            bookable,
            minutes: segment_minutes(segment)?,
            fresh: self.job.verify_bookings,
        };
        let refusal = self.engine.event_type_checks.drifted(client, &ask).await;
        if refusal.is_some() {
            tracing::warn!(appointment_id = %self.work.appointment_id, segment = %segment.key, event_type = %bookable, "the bookable event type no longer fits the segment");
        }
        refusal
    }

    /// After a "busy" answer: lists the host's bookings around the segment's time and says
    /// what stands in it: a booking of ours, nothing any more, or something else (also when
    /// the listing fails).
    pub(super) async fn busy_cause(
        &self,
        client: &CalcomClient,
        segment: &SegmentWork,
    ) -> BusyCause {
        let Some(staff) = segment.staff.as_ref() else {
            return BusyCause::Unknown;
        };
        let (start, end) = (segment.starts_at, segment.ends_at);
        let found = calcom::host_bookings_around(client, staff.user_id.0, start, end).await;
        BusyCause::of(self.work.tenant.tenant_id, start, end, found.as_deref())
    }

    /// Drops the remembered drift checks of `event_type`: the next create reads it again.
    pub(super) async fn forget_check(&self, event_type: EventTypeId) {
        let checks = &self.engine.event_type_checks;
        checks.forget(&self.work.tenant, event_type).await;
    }

    /// Asks the event-map resolution (the event-map issue's code) what is bookable now for
    /// this segment's host, and stores a changed answer.
    pub(super) async fn resolve(
        &self,
        client: &CalcomClient,
        segment: &SegmentWork,
        configured: &EventTypeId,
    ) -> Result<Resolved, RunError> {
        let Some(host) = host(segment) else {
            return Ok(Resolved::Unknown);
        };
        let status = segment.booking.status;
        let attempt = self
            .begin(segment, "resolve", Some(configured.0), status)
            .await?;
        let team = self.work.tenant.team_id;
        let minutes = segment_minutes(segment).unwrap_or(0);
        let reply =
            match crate::sync::resolve::resolve(client, team, *configured, &host, minutes).await {
                Ok(Ok(resolution)) => {
                    let bookable = resolution.bookable_event_type_id;
                    if segment.map.as_ref().map(|m| m.bookable_event_type_id) != Some(bookable) {
                        let update = BookableUpdate {
                            service_id: self.work.service_id.clone(),
                            segment_key: segment.key.clone(),
                            staff_id: segment.staff_id.clone(),
                            bookable,
                            resolution: resolution.kind.as_str().to_string(),
                            checked_at: Utc::now(),
                        };
                        let tenant = self.work.tenant.tenant_id;
                        let store = &self.engine.store;
                        store.update_bookable_event_type(tenant, &update).await?;
                    }
                    Ok(Ok(bookable))
                }
                Ok(Err(refusal)) => Ok(Err(refusal)),
                Err(err) => Err(classify(&err)),
            };
        let (resolved, result) = Resolved::from_reply(reply, &self.subject(segment, None));
        self.finish_with(attempt, result, &mut segment.clone())
            .await?;
        Ok(resolved)
    }

    /// Finds every booking carrying the segment's identity (by its stored uid and Cal.com's
    /// reschedule links, and by listing `event_type` around the planned time) and converges:
    /// the one at the planned time is adopted, every other active one of ours is cancelled.
    /// `Missing`: none stands at the planned time (strays are already cancelled, so a create
    /// does not collide with our own moved booking).
    pub(super) async fn reconcile(
        &self,
        client: &CalcomClient,
        segment: &mut SegmentWork,
        event_type: EventTypeId,
        operation: &'static str,
        status: SegmentSyncStatus,
    ) -> Result<Reconciled, RunError> {
        let attempt = self
            .begin(segment, operation, Some(event_type.0), status)
            .await?;
        let stored = segment.booking.calcom_booking_uid.as_deref();
        let found = calcom::find_bookings(client, stored, event_type, segment.starts_at).await;
        let bookings = match found {
            Ok(bookings) => bookings,
            Err(err) => {
                let failure = classify(&err);
                let answer = Answer::LookupFailed(failure.clone());
                self.record(attempt, segment, answer).await?;
                return Ok(Reconciled::Failed(failure));
            }
        };
        let observed: Vec<ObservedBooking> = bookings.iter().map(observe).collect();
        let (start, end) = (segment.starts_at, segment.ends_at);
        let plan = converge(&self.identity(segment), event_type, start, end, &observed);
        let (answer, kept) = match plan.keep.map(|index| &bookings[index]) {
            Some(booking) => {
                if segment.booking.calcom_booking_uid.as_deref() != Some(booking.uid.as_str()) {
                    tracing::info!(appointment_id = %self.work.appointment_id, segment = %segment.key, booking_uid = %booking.uid, "adopted the booking that stands at the planned time");
                }
                let booking = calcom::seen(booking, event_type);
                let verify = operation == "verify";
                (Answer::Found { booking, verify }, Reconciled::Adopted)
            }
            None => (Answer::Missing, Reconciled::Missing),
        };
        self.record(attempt, segment, answer).await?;
        // A stray Cal.com did not cancel must not be left active: the segment is tried
        // again (a move can leave one far from the planned time, where only this finds it).
        for stray in plan.strays {
            if let Some(failure) = self.cancel_stray(client, segment, &bookings[stray]).await? {
                return Ok(Reconciled::Failed(failure));
            }
        }
        Ok(kept)
    }

    /// A booking of ours that does not stand at the planned time (moved in Cal.com, or a
    /// duplicate) is cancelled: the appointment's plan is the truth. `Some`: Cal.com did not.
    pub(super) async fn cancel_stray(
        &self,
        client: &CalcomClient,
        segment: &mut SegmentWork,
        booking: &Booking,
    ) -> Result<Option<CalcomFailure>, RunError> {
        tracing::warn!(appointment_id = %self.work.appointment_id, segment = %segment.key, booking_uid = %booking.uid, "cancelling a booking of ours that is not at the planned time");
        let (uid, status) = (booking.uid.clone(), segment.booking.status);
        let attempt = self
            .begin_on(
                segment,
                "cancel_stray",
                booking.event_type_id,
                status,
                Some(&uid),
                None,
            )
            .await?;
        let reason =
            "phasebook keeps exactly one booking per segment, at the appointment's planned time.";
        let reply = calcom::cancel(client, &uid, reason).await;
        let answer = Answer::StrayCancelled { uid, reply };
        self.record(attempt, segment, answer).await
    }

    pub(super) async fn create(
        &self,
        client: &CalcomClient,
        segment: &mut SegmentWork,
        event_type: EventTypeId,
    ) -> Result<Created, RunError> {
        let identity = self.identity(segment);
        let request = calcom::create_request(self.work, &identity, segment.starts_at, event_type);
        let request = match request {
            Ok(request) => request,
            Err(err) => return Ok(Created::Failed(classify(&err))),
        };
        let status = SegmentSyncStatus::Syncing;
        let attempt = self
            .begin(segment, "create", Some(event_type.0), status)
            .await?;
        let length = segment.ends_at - segment.starts_at;
        match calcom::create(client, &request, length).await {
            CreateAnswer::OtherLength(booking) => {
                // The event type's length changed after the last drift check (a minute may
                // pass between checks): the booking blocks another span than the segment.
                // It is cancelled at once and the segment reviewed.
                let minutes = (booking.end - booking.start).num_minutes();
                tracing::warn!(appointment_id = %self.work.appointment_id, segment = %segment.key, booking_uid = %booking.uid, minutes, "Cal.com booked another length than the segment's; cancelling it");
                let answer = Answer::CreatedOtherLength(calcom::seen(&booking, event_type));
                self.record(attempt, segment, answer).await?;
                self.forget_check(event_type).await;
                self.cancel_stray(client, segment, &booking).await?;
                Ok(Created::OtherLength(minutes))
            }
            CreateAnswer::Booked(booking) => {
                tracing::info!(appointment_id = %self.work.appointment_id, segment = %segment.key, booking_uid = %booking.uid, "segment booked");
                let answer = Answer::Created(calcom::seen(&booking, event_type));
                self.record(attempt, segment, answer).await?;
                Ok(Created::Booked)
            }
            CreateAnswer::Failed(failure) => {
                // The attempt's outcome is recorded now, the segment's new state with the
                // decision: a crash in between still leaves the outcome known.
                let answer = Answer::CreateFailed {
                    failure: failure.clone(),
                    event_type,
                };
                self.record(attempt, segment, answer).await?;
                Ok(Created::Failed(failure))
            }
        }
    }
}

/// The segment's staff member as Cal.com knows them.
fn host(segment: &SegmentWork) -> Option<HostIdentity> {
    let staff = segment.staff.as_ref()?;
    Some(HostIdentity {
        user_id: staff.user_id,
        username: staff.username.clone(),
    })
}
