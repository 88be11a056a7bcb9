//! The ops console in a real browser: headless Chromium driven through chromedriver, the
//! real app with its worker, the Cal.com emulator, on SQLite and PostgreSQL. Each page is
//! saved as a screenshot at desktop and phone width under `target/console-screenshots/`.
//! Without a browser the tests say so and pass, except in CI, where they fail.

mod console_support;

use console_support::webdriver::Browser;
use console_support::{DAY, World, setup};
use serde_json::{Value, json};

const DESKTOP: u32 = 1280;
/// The Enter key, as WebDriver types it.
const ENTER: char = '\u{E007}';
const PHONE: u32 = 375;

/// Opens the login page and logs in with `key` by typing it, as a person would.
async fn log_in(browser: &Browser, world: &World, key: &str) {
    browser.goto(&format!("{}/ops", world.url)).await;
    let field = browser.find("input#api_key").await;
    assert_every_control_is_labelled(browser).await;
    // Typed, and sent with Enter: the login works from the keyboard.
    browser.type_into(&field, &format!("{key}{ENTER}")).await;
    browser.find("header.top form.logout").await;
    assert!(
        !browser.current_url().await.contains(key),
        "the key never appears in a URL"
    );
    let stored = browser
        .execute(
            "return JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie;",
            vec![],
        )
        .await;
    assert!(
        !stored.as_str().unwrap_or_default().contains(key),
        "the key is in no storage a script can read"
    );
}

/// Every input and select has a label, every button and link a name a screen reader reads.
async fn assert_every_control_is_labelled(browser: &Browser) {
    let unlabelled = browser
        .execute(
            "return [...document.querySelectorAll('input:not([type=hidden]), select, button, a[href], textarea')]
                .filter(c => {
                    const named = (c.getAttribute('aria-label') || '').trim() !== '';
                    if (c.matches('input, select, textarea')) return !(named || c.labels.length > 0);
                    return !(named || c.textContent.trim() !== '');
                })
                .map(c => c.outerHTML);",
            vec![],
        )
        .await;
    assert_eq!(unlabelled, json!([]), "controls without a label");
}

fn backend(world: &World) -> &'static str {
    world.db.store().backend()
}

async fn ops_logs_in_sees_the_review_reason_and_a_resync_after_the_fix_turns_the_row_synced(
    world: World,
) {
    let Some(browser) = Browser::start().await else {
        return;
    };
    log_in(&browser, &world, &world.salon.ops_key).await;
    let name = backend(&world);

    // The queue: the appointment in review, with the reason exactly as the API words it.
    let first = browser.find("ol.queue article.row").await;
    assert_eq!(
        browser.attribute(&first, "data-appointment").await,
        Some(world.broken.to_string())
    );
    let api = world.sync_view(world.broken).await;
    let reason = api["review_reason"].as_str().expect("reason").to_string();
    assert!(reason.contains("managed parent"), "{reason}");
    let shown = browser
        .execute(
            "return document.querySelector('[data-role=review-reason]').textContent;",
            vec![],
        )
        .await;
    assert_eq!(shown.as_str(), Some(reason.as_str()));
    assert_every_control_is_labelled(&browser).await;
    browser.screenshot(&format!("{name}-queue"), DESKTOP).await;
    browser.screenshot(&format!("{name}-queue"), PHONE).await;

    // Fix the cause through the API, then Resync from the row: it turns synced in place.
    world.fix_the_event_map().await;
    let resync = browser
        .find(&format!(
            "article[data-appointment='{}'] button[name=resync]",
            world.broken
        ))
        .await;
    // Pressed with Enter, as a keyboard user would.
    browser.type_into(&resync, &ENTER.to_string()).await;
    browser
        .wait_until(
            &format!(
                "const row = document.querySelector(\"article[data-appointment='{}']\");
                 return !!row && row.dataset.syncStatus === 'synced';",
                world.broken
            ),
            "the row to turn synced",
        )
        .await;
    let outcome = browser
        .text(&browser.find("article.row [data-role=outcome]").await)
        .await;
    assert_eq!(outcome, "Resynced: synced.");
    assert!(
        browser.current_url().await.ends_with("/ops"),
        "the outcome is shown in place"
    );
    assert_eq!(world.sync_view(world.broken).await["status"], "synced");
    browser
        .screenshot(&format!("{name}-queue-resynced"), DESKTOP)
        .await;
}

async fn the_day_view_shows_the_gap_between_segments_a_and_b_free_and_a_block_opens_the_appointment(
    world: World,
) {
    let Some(browser) = Browser::start().await else {
        return;
    };
    // A caller is holding 15:00 with stylist-1 while deciding.
    let held = world
        .http
        .post(format!("{}/holds", world.url))
        .bearer_auth(&world.salon.ops_key)
        .json(&json!({
            "service_id": world.salon.service_id.as_str(),
            "staff_id": "stylist-1",
            "start": format!("{DAY}T15:00"),
            "time_zone": "Europe/Berlin",
            "ttl_seconds": 900
        }))
        .send()
        .await
        .expect("hold");
    assert_eq!(held.status(), 201, "{:?}", held.text().await);
    log_in(&browser, &world, &world.salon.ops_key).await;
    let name = backend(&world);
    browser
        .goto(&format!("{}/ops/day?date={DAY}", world.url))
        .await;
    browser.find("table.day").await;
    assert_every_control_is_labelled(&browser).await;
    // The held time is drawn hatched, in stylist-1's column, where the hold starts.
    let hold = browser
        .execute(
            "const cell = document.querySelector('td.block.hold[data-hold=\"true\"]');
             return cell ? { segment: cell.dataset.segment,
                             hatched: getComputedStyle(cell).backgroundImage.includes('gradient') } : null;",
            vec![],
        )
        .await;
    assert_eq!(hold["segment"], "A", "the hold is drawn: {hold}");
    assert_eq!(hold["hatched"], true, "{hold}");

    // What is drawn where a person looks: stylist-1's column, in the middle of the 35 min
    // processing gap after A (10:00–10:30) and before B (11:05–11:20).
    let at = |time: &str| {
        format!(
            "const column = document.querySelector('th[data-staff=\"stylist-1\"]').getBoundingClientRect();
             const row = document.querySelector('tr[data-time=\"{time}\"]');
             row.scrollIntoView({{block: 'center'}});
             const r = row.getBoundingClientRect();
             const c = document.querySelector('th[data-staff=\"stylist-1\"]').getBoundingClientRect();
             const cell = document.elementFromPoint(c.left + c.width / 2, r.top + r.height / 2).closest('td');
             void column;
             return cell ? {{ free: cell.classList.contains('free'), block: cell.classList.contains('block'),
                             segment: cell.dataset.segment || null, status: [...cell.classList].join(' ') }} : null;"
        )
    };
    for time in ["10:35", "10:45", "11:00"] {
        let cell = browser.execute(&at(time), vec![]).await;
        assert_eq!(cell["free"], true, "{time} is free: {cell}");
    }
    let a = browser.execute(&at("10:10"), vec![]).await;
    assert_eq!(a["segment"], "A", "{a}");
    assert!(
        a["status"]
            .as_str()
            .unwrap_or_default()
            .contains("status-synced"),
        "{a}"
    );
    let b = browser.execute(&at("11:10"), vec![]).await;
    assert_eq!(b["segment"], "B", "{b}");
    browser
        .execute(
            "window.scrollTo(0, 0); document.querySelector('.dayview').scrollTop = 0;",
            vec![],
        )
        .await;
    browser.screenshot(&format!("{name}-day"), DESKTOP).await;
    browser.screenshot(&format!("{name}-day"), PHONE).await;

    // A block opens its appointment: segments, Cal.com booking uids, the attempt log.
    let block = browser
        .find(&format!(
            "td.block[data-appointment='{}'][data-segment=A] a",
            world.synced
        ))
        .await;
    browser.click(&block).await;
    browser.find("table#segments").await;
    assert_every_control_is_labelled(&browser).await;
    assert!(
        browser
            .current_url()
            .await
            .ends_with(&format!("/ops/appointments/{}", world.synced))
    );
    let api = world.sync_view(world.synced).await;
    let page = browser
        .execute("return document.querySelector('main').textContent;", vec![])
        .await;
    let page = page.as_str().unwrap_or_default();
    for segment in api["segments"].as_array().expect("segments") {
        let uid = segment["calcom_booking_uid"].as_str().expect("uid");
        assert!(page.contains(uid), "booking uid {uid} shown");
    }
    assert!(page.contains("Processing gap, 35 min"), "the gap is named");
    let attempts = browser.find_all("table#attempts tbody tr").await.len();
    assert_eq!(
        attempts,
        api["attempts"].as_array().expect("attempts").len()
    );
    browser
        .screenshot(&format!("{name}-appointment"), DESKTOP)
        .await;
    browser
        .screenshot(&format!("{name}-appointment"), PHONE)
        .await;

    // The broken one shows Cal.com's refusal in its attempt log.
    browser
        .goto(&format!("{}/ops/appointments/{}", world.url, world.broken))
        .await;
    let log = browser.text(&browser.find("table#attempts").await).await;
    assert!(log.contains("HTTP 400"), "{log}");
    browser
        .screenshot(&format!("{name}-appointment-review"), DESKTOP)
        .await;

    // Sync health and event maps render, with their figures and findings.
    browser.goto(&format!("{}/ops/health", world.url)).await;
    browser.find("svg.chart").await;
    assert_every_control_is_labelled(&browser).await;
    let bars = browser.find_all("svg.chart g.hour").await.len();
    assert_eq!(bars, 24);
    browser.screenshot(&format!("{name}-health"), DESKTOP).await;
    browser.screenshot(&format!("{name}-health"), PHONE).await;

    browser.goto(&format!("{}/ops/event-maps", world.url)).await;
    let broken = browser
        .text(&browser.find("table#audit tr[data-severity=error]").await)
        .await;
    assert!(broken.contains("stylist-2"), "{broken}");
    assert_every_control_is_labelled(&browser).await;
    let service = browser.find("select#service").await;
    browser.click(&service).await;
    browser
        .click(&browser.find("select#service option[value=colour]").await)
        .await;
    browser
        .click(&browser.find("select#staff option[value='stylist-2']").await)
        .await;
    browser
        .click(&browser.find("form.plan button[type=submit]").await)
        .await;
    let plan = browser.text(&browser.find("table#plan").await).await;
    assert!(plan.contains("create"), "{plan}");
    browser
        .screenshot(&format!("{name}-event-maps"), DESKTOP)
        .await;
    browser
        .screenshot(&format!("{name}-event-maps"), PHONE)
        .await;
}

async fn a_viewer_sees_no_buttons(world: World) {
    let Some(browser) = Browser::start().await else {
        return;
    };
    log_in(&browser, &world, &world.viewer_key).await;
    let name = backend(&world);
    let only_logout = "return [...document.querySelectorAll('button, input[type=submit]')]
        .filter(b => !b.closest('form.logout')).map(b => b.textContent);";
    let reason = browser.find("[data-role=review-reason]").await;
    assert!(browser.text(&reason).await.contains("managed parent"));
    assert_eq!(browser.execute(only_logout, vec![]).await, json!([]));
    browser
        .screenshot(&format!("{name}-queue-viewer"), PHONE)
        .await;
    browser
        .goto(&format!("{}/ops/appointments/{}", world.url, world.broken))
        .await;
    browser.find("table#segments").await;
    assert_eq!(browser.execute(only_logout, vec![]).await, json!([]));
    browser.goto(&format!("{}/ops/event-maps", world.url)).await;
    browser.find("main h1").await;
    assert_eq!(browser.execute(only_logout, vec![]).await, json!([]));
}

async fn a_forged_post_without_the_csrf_token_is_refused_and_logout_ends_the_session(world: World) {
    let Some(browser) = Browser::start().await else {
        return;
    };
    log_in(&browser, &world, &world.salon.ops_key).await;
    let before = world.sync_view(world.broken).await["attempts"]
        .as_array()
        .map(Vec::len);
    world.fix_the_event_map().await;
    // The session cookie rides along (same origin); only the token is missing.
    let status = browser
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch(arguments[0], { method: 'POST', credentials: 'same-origin',
                 headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'csrf_token=forged' })
               .then(r => done(r.status), e => done(String(e)));",
            vec![Value::String(format!(
                "/ops/appointments/{}/resync",
                world.broken
            ))],
        )
        .await;
    assert_eq!(status, json!(403));
    let after = world.sync_view(world.broken).await;
    assert_eq!(after["status"], "needs_review", "nothing was resynced");
    assert_eq!(after["attempts"].as_array().map(Vec::len), before);

    browser
        .click(&browser.find("form.logout button").await)
        .await;
    browser.find("form.login").await;
    browser.goto(&format!("{}/ops", world.url)).await;
    browser.find("form.login").await;
    assert!(browser.current_url().await.ends_with("/ops/login"));
}

phasebook_test_support::on_both_backends!(with setup;
    ops_logs_in_sees_the_review_reason_and_a_resync_after_the_fix_turns_the_row_synced,
    the_day_view_shows_the_gap_between_segments_a_and_b_free_and_a_block_opens_the_appointment,
    a_viewer_sees_no_buttons,
    a_forged_post_without_the_csrf_token_is_refused_and_logout_ends_the_session,
);
