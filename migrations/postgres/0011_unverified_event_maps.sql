-- A map whose segment length or staff member's Cal.com user changed after it was checked is
-- kept but marked: the reason says what changed, and bookings on it are refused until the
-- map is checked again (PUT /event-maps/...), which clears it.
alter table event_maps add column unverified_reason text;
