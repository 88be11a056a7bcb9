//! Plain-text renderings of the audit and of a provisioning plan, for `phasebook doctor`
//! and `phasebook provision` on a terminal (`--json` prints the structures instead).

use super::{Audit, ProvisionAction, ProvisionReport};

/// Lays out rows as columns separated by two spaces, each as wide as its widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths[i].saturating_sub(cell.chars().count()) + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// The audit as a table (one line per cell), then each problem's message and fix, then a
/// summary line.
pub fn audit_table(audit: &Audit) -> String {
    if audit.findings.is_empty() {
        return "No services or staff to audit.\n".to_string();
    }
    let rows: Vec<Vec<String>> = audit
        .findings
        .iter()
        .map(|f| {
            vec![
                f.severity.to_uppercase(),
                f.service_id.clone(),
                f.segment_key.clone(),
                f.staff_id.clone(),
                f.event_type_id.map_or("-".into(), |id| id.to_string()),
                f.bookable_event_type_id
                    .map_or("-".into(), |id| id.to_string()),
                f.code.clone(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "SEVERITY",
            "SERVICE",
            "SEGMENT",
            "STAFF",
            "EVENT TYPE",
            "BOOKABLE",
            "FINDING",
        ],
        &rows,
    );
    let problems: Vec<_> = audit
        .findings
        .iter()
        .filter(|f| f.severity != "ok")
        .collect();
    if !problems.is_empty() {
        out.push('\n');
        for f in problems {
            out.push_str(&format!(
                "{} {}/{}/{}: {}\n    fix: {}\n",
                f.severity.to_uppercase(),
                f.service_id,
                f.segment_key,
                f.staff_id,
                f.message,
                f.fix
            ));
        }
    }
    out.push_str(&format!(
        "\n{} checked, {} error(s), {} warning(s)\n",
        audit.findings.len(),
        audit.errors,
        audit.warnings
    ));
    out
}

/// The provisioning plan (dry run) or what was done.
pub fn provision_table(report: &ProvisionReport) -> String {
    let rows: Vec<Vec<String>> = report
        .steps
        .iter()
        .map(|s| {
            let action = match (s.action, report.dry_run) {
                (ProvisionAction::Create, true) => "would create",
                (ProvisionAction::Create, false) => "created",
                (ProvisionAction::Update, true) => "would update",
                (ProvisionAction::Update, false) => "updated",
                (ProvisionAction::Reuse, _) => "exists",
            };
            vec![
                s.segment_key.clone(),
                action.to_string(),
                s.event_type_id.map_or("-".into(), |id| id.to_string()),
                format!("{} min", s.length_in_minutes),
                s.replaces_event_type_id
                    .map_or("-".into(), |id| id.to_string()),
                s.slug.clone(),
                s.title.clone(),
            ]
        })
        .collect();
    let mut out = format!(
        "{} service {} for staff {} in Cal.com team {}:\n",
        if report.dry_run {
            "Plan for"
        } else {
            "Provisioned"
        },
        report.service_id,
        report.staff_id,
        report.team_id
    );
    out.push_str(&table(
        &[
            "SEGMENT",
            "ACTION",
            "EVENT TYPE",
            "LENGTH",
            "REPLACES MAP TO",
            "SLUG",
            "TITLE",
        ],
        &rows,
    ));
    if !report.dry_run {
        out.push_str("Every event type was verified bookable and its event map stored.\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_maps::{Finding, ProvisionStep};

    fn finding(severity: &str, code: &str) -> Finding {
        Finding {
            service_id: "colour".into(),
            segment_key: "A".into(),
            staff_id: "anna".into(),
            event_type_id: Some(100),
            bookable_event_type_id: None,
            resolution: None,
            severity: severity.into(),
            code: code.into(),
            message: "Something is wrong.".into(),
            fix: "Do this.".into(),
        }
    }

    #[test]
    fn audit_table_aligns_columns_and_lists_fixes_of_problems_only() {
        let audit = Audit {
            ok: false,
            errors: 1,
            warnings: 0,
            findings: vec![
                finding("ok", "ok"),
                finding("error", "managed-parent-without-child"),
            ],
        };
        let text = audit_table(&audit);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("SEVERITY  SERVICE"), "{text}");
        let col = lines[0].find("FINDING").expect("header");
        assert_eq!(lines[1].find("ok").map(|_| &lines[1][col..]), Some("ok"));
        assert_eq!(text.matches("fix: Do this.").count(), 1, "{text}");
        assert!(text.ends_with("2 checked, 1 error(s), 0 warning(s)\n"));
    }

    #[test]
    fn provision_table_says_would_on_a_dry_run() {
        let report = ProvisionReport {
            service_id: "colour".into(),
            staff_id: "anna".into(),
            team_id: 7,
            dry_run: true,
            steps: vec![ProvisionStep {
                segment_key: "A".into(),
                title: "Colour: Apply (1 of 2) - Anna".into(),
                slug: "pb-colour-a-anna-00000000".into(),
                length_in_minutes: 30,
                action: ProvisionAction::Create,
                event_type_id: None,
                bookable_event_type_id: None,
                replaces_event_type_id: Some(1002),
            }],
        };
        let text = provision_table(&report);
        assert!(text.starts_with("Plan for service colour"));
        assert!(text.contains("would create"));
        assert!(
            text.contains("REPLACES MAP TO") && text.contains("1002"),
            "{text}"
        );
    }
}
