//! Event-type fits shared by every process on one database: a fit one process found is
//! trusted by another for the same minute (no second read of Cal.com), not after it, and
//! never after a refused booking made a process forget it. SQLite always, PostgreSQL when
//! `DATABASE_URL` is set.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use phasebook_api::sync::shared_checks::{CheckKey, SharedChecks};
use phasebook_test_support::databases;

#[tokio::test]
async fn a_fit_found_by_one_process_is_trusted_by_another_for_a_minute() {
    for database in databases().await {
        // Two "processes": two pools on the same database.
        let first_db = database.connect().await.expect("connect");
        let second_db = database.connect().await.expect("connect");
        let first = SharedChecks::new(first_db);
        let second = SharedChecks::new(second_db);
        let ttl = Duration::from_secs(60);
        let key = CheckKey {
            key_fingerprint: [7; 32],
            event_type_id: 1001,
            host_user_id: 11,
            length_minutes: 45,
        };
        let now = Utc::now();

        assert!(
            !second.fitted_recently(&key, now, ttl).await,
            "nothing was checked yet"
        );
        first.record_fit(&key, now).await;
        assert!(
            second
                .fitted_recently(&key, now + TimeDelta::seconds(30), ttl)
                .await,
            "the other process trusts the fit within the minute"
        );
        assert!(
            !second
                .fitted_recently(&key, now + TimeDelta::seconds(61), ttl)
                .await,
            "a fit older than a minute is read again"
        );
        for other in [
            CheckKey {
                length_minutes: 60,
                ..key
            },
            CheckKey {
                host_user_id: 12,
                ..key
            },
            CheckKey {
                key_fingerprint: [8; 32],
                ..key
            },
        ] {
            assert!(
                !second.fitted_recently(&other, now, ttl).await,
                "a fit says nothing about another length, host or Cal.com key: {other:?}"
            );
        }

        second.forget(&key.key_fingerprint, key.event_type_id).await;
        assert!(
            !first.fitted_recently(&key, now, ttl).await,
            "a type forgotten by one process is read again by every process"
        );
    }
}
