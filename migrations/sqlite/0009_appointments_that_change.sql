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
