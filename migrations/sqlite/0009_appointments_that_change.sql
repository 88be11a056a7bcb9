-- Appointments that change: a caller's reason for cancelling (sent to Cal.com, shown in the
-- sync view), and finding a caller's appointments by phone or e-mail. Phones are stored in
-- E.164 already; e-mails get a folded copy so a lookup ignores case on both backends alike.
alter table appointments add column cancellation_reason text;
alter table appointments add column customer_email_normalised text;
update appointments set customer_email_normalised = lower(customer_email)
    where customer_email is not null;
create index appointments_customer_phone
    on appointments (tenant_id, customer_phone, starts_at, appointment_id)
    where customer_phone is not null;
create index appointments_customer_email
    on appointments (tenant_id, customer_email_normalised, starts_at, appointment_id)
    where customer_email_normalised is not null;

-- Reschedule: the appointment's revision counts its moves. A segment whose Cal.com booking
-- still stands at its previous time carries that time and event type in `moving_from…`
-- until the sync engine has moved it (Cal.com's reschedule, or cancel and create).
alter table appointments add column revision integer not null default 0;
alter table appointment_segments add column moving_from integer;
alter table appointment_segments add column moving_from_event_type_id integer;
-- A move's attempt names the booking it moved from as well as the one it made.
alter table sync_attempts add column moved_from_uid text;
