//! The frame every console page shares: head (stylesheet and script from `/ops/assets`),
//! skip link, navigation with the current page marked, the logout form, and small pieces
//! used across pages (status badges, the review reason with its fix).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::session::ConsoleUser;

/// The pages in the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Queue,
    Day,
    Health,
    EventMaps,
    /// A page reached from another (an appointment).
    None,
}

const NAV: [(Nav, &str, &str); 4] = [
    (Nav::Queue, "/ops", "Review queue"),
    (Nav::Day, "/ops/day", "Day view"),
    (Nav::Health, "/ops/health", "Sync health"),
    (Nav::EventMaps, "/ops/event-maps", "Event maps"),
];

/// Asset URLs carry the version, so a new binary's stylesheet is never a cached old one.
fn asset(name: &str) -> String {
    format!("/ops/assets/{name}?v={}", env!("CARGO_PKG_VERSION"))
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · phasebook ops" }
            link rel="stylesheet" href=(asset("console.css"));
            script src=(asset("console.js")) defer {}
        }
    }
}

/// A page of the console for a logged-in user.
pub fn page(title: &str, user: &ConsoleUser, current: Nav, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    div.brand {
                        "phasebook ops"
                        span.role title="The role of the key this session was opened with" {
                            (user.caller.role.as_str()) " key"
                            @if !user.can_operate() { " · read only" }
                        }
                    }
                    nav aria-label="Console" {
                        ul {
                            @for (nav, href, label) in NAV {
                                li {
                                    @if nav == current {
                                        a href=(href) aria-current="page" { (label) }
                                    } @else {
                                        a href=(href) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    form.logout method="post" action="/ops/logout" {
                        input type="hidden" name="csrf_token" value=(user.csrf_token);
                        button type="submit" { "Log out" }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    (main)
                }
            }
        }
    }
}

/// A page without navigation: login and errors.
pub fn bare_page(title: &str, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.bare {
                header.top { div.brand { "phasebook ops" } }
                main #main {
                    h1 { (title) }
                    (main)
                }
            }
        }
    }
}

pub fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// A sync status as a badge: the words, and a colour from the stylesheet.
pub fn status_badge(status: &str) -> Markup {
    html! {
        span class={ "badge status-" (status) } { (status.replace('_', " ")) }
    }
}

/// The review reason exactly as the API words it, with each `fix:` set in bold so the eye
/// finds what to do; the text itself is unchanged.
pub fn review_reason(reason: &str) -> Markup {
    let mut parts = reason.split("; fix:");
    let first = parts.next().unwrap_or_default();
    html! {
        (first)
        @for rest in parts {
            "; " strong.fix { "fix:" } (rest)
        }
    }
}

/// A table that scrolls sideways on a narrow screen, reachable by keyboard.
pub fn scroll_table(label: &str, table: Markup) -> Markup {
    html! {
        div.scroll tabindex="0" role="region" aria-label=(label) { (table) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_review_reason_reads_exactly_as_the_api_words_it() {
        let reason = "Event type 9 is a managed parent; fix: assign the host, then resync.";
        let markup = review_reason(reason).into_string();
        assert_eq!(
            markup,
            "Event type 9 is a managed parent; <strong class=\"fix\">fix:</strong> assign the host, then resync."
        );
        let text = markup
            .replace("<strong class=\"fix\">", "")
            .replace("</strong>", "");
        assert_eq!(text, reason);
    }
}
