//! `phasebook doctor` (the event-map audit of every tenant, or one) and `phasebook
//! provision` (single-host team event types for one service and staff member). Both work
//! on the database directly, like the other administrative commands.
//!
//! Both are background work: their Cal.com requests take what the key's shared budget
//! leaves after interactive calls, wait rather than fail when it is spent (a 429 included),
//! and the report says how much of it they used.

use std::io::Write;

use phasebook_domain::{ServiceId, StaffId};
use serde::Serialize;
use uuid::Uuid;

use super::{Audit, EventMapError, ProvisionReport, report};
use crate::store::Database;

/// Arguments of `phasebook doctor`.
#[derive(Debug, Clone, clap::Args)]
pub struct DoctorArgs {
    /// Audit only this tenant (default: every tenant).
    #[arg(long)]
    pub tenant: Option<Uuid>,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `phasebook provision`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProvisionArgs {
    /// The tenant (may be left out when there is only one).
    #[arg(long)]
    pub tenant: Option<Uuid>,
    /// The service whose segments get event types.
    #[arg(long)]
    pub service: String,
    /// The staff member who will be the only host.
    #[arg(long)]
    pub staff: String,
    /// Print the plan; create nothing and store nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct TenantAudit {
    tenant_id: Uuid,
    name: String,
    #[serde(flatten)]
    audit: Audit,
    /// What is wrong with the tenant's Cal.com key without failing the audit, e.g. a key
    /// of a plain team member.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    calcom_key_warnings: Vec<String>,
    calcom_budget: BudgetUsed,
}

/// What a run took from the tenant's Cal.com budget.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BudgetUsed {
    /// Requests sent to Cal.com with the tenant's key.
    pub requests: u64,
    /// Time spent waiting for the budget, in milliseconds.
    pub waited_ms: u64,
}

impl BudgetUsed {
    fn of(client: &calcom_client::CalcomClient) -> Self {
        let usage = client.usage();
        Self {
            requests: usage.requests,
            waited_ms: u64::try_from(usage.waited.as_millis()).unwrap_or(u64::MAX),
        }
    }

    fn line(&self) -> String {
        format!(
            "Cal.com budget used: {} request(s), {:.1} s waiting for it",
            self.requests,
            self.waited_ms as f64 / 1000.0
        )
    }
}

#[derive(Debug, Serialize)]
struct DoctorReport {
    ok: bool,
    tenants: Vec<TenantAudit>,
}

/// Runs the audit and writes it to `out`. Returns whether everything is in order; the
/// binary exits with 1 when it is not.
pub async fn doctor(
    db: &Database,
    args: &DoctorArgs,
    out: &mut dyn Write,
) -> Result<bool, EventMapError> {
    calcom_client::Priority::Background
        .scope(run_doctor(db, args, out))
        .await
}

async fn run_doctor(
    db: &Database,
    args: &DoctorArgs,
    out: &mut dyn Write,
) -> Result<bool, EventMapError> {
    let budgets = crate::budget::Budgets::new(db.clone());
    let store = db.event_maps();
    let tenants: Vec<(Uuid, String)> = store
        .list_tenants()
        .await?
        .into_iter()
        .filter(|(id, _)| args.tenant.is_none_or(|wanted| wanted == *id))
        .collect();
    if let Some(wanted) = args.tenant
        && tenants.is_empty()
    {
        return Err(EventMapError::UnknownSubject {
            what: "tenant",
            detail: format!("no tenant {wanted}"),
        });
    }
    let mut audits = Vec::with_capacity(tenants.len());
    for (tenant_id, name) in tenants {
        let calcom = super::tenant_calcom(store, tenant_id).await?;
        let client = super::shared_client_for(&calcom, Some(&budgets), true)?;
        let audit = super::audit(store, &client, tenant_id).await?;
        let mut warnings = Vec::new();
        if let Some(team_id) = calcom.team_id
            && let Some(warning) = crate::secrets::cli::team_role_warning(&client, team_id).await
        {
            warnings.push(warning);
        }
        audits.push(TenantAudit {
            tenant_id,
            name,
            audit,
            calcom_key_warnings: warnings,
            calcom_budget: BudgetUsed::of(&client),
        });
    }
    let doctor = DoctorReport {
        ok: audits.iter().all(|t| t.audit.ok),
        tenants: audits,
    };
    if args.json {
        writeln!(out, "{}", to_json(&doctor)).map_err(io)?;
    } else {
        for t in &doctor.tenants {
            writeln!(out, "Tenant {} ({})", t.name, t.tenant_id).map_err(io)?;
            write!(out, "{}", report::audit_table(&t.audit)).map_err(io)?;
            for warning in &t.calcom_key_warnings {
                writeln!(out, "warning: {warning}").map_err(io)?;
            }
            writeln!(out, "{}", t.calcom_budget.line()).map_err(io)?;
            writeln!(out).map_err(io)?;
        }
        if doctor.tenants.is_empty() {
            writeln!(out, "No tenants.").map_err(io)?;
        }
    }
    Ok(doctor.ok)
}

/// Runs provisioning (or its dry run) and writes the report to `out`.
pub async fn provision(
    db: &Database,
    args: &ProvisionArgs,
    out: &mut dyn Write,
) -> Result<ProvisionReport, EventMapError> {
    calcom_client::Priority::Background
        .scope(run_provision(db, args, out))
        .await
}

async fn run_provision(
    db: &Database,
    args: &ProvisionArgs,
    out: &mut dyn Write,
) -> Result<ProvisionReport, EventMapError> {
    let store = db.event_maps();
    let tenant_id = match args.tenant {
        Some(id) => id,
        None => {
            let tenants = store.list_tenants().await?;
            match tenants.as_slice() {
                [(only, _)] => *only,
                _ => {
                    return Err(EventMapError::UnknownSubject {
                        what: "tenant",
                        detail: format!(
                            "there are {} tenants; name one with --tenant",
                            tenants.len()
                        ),
                    });
                }
            }
        }
    };
    let service_id =
        ServiceId::parse(&args.service).map_err(|e| EventMapError::UnknownSubject {
            what: "service",
            detail: format!("--service: {}", e.message),
        })?;
    let staff_id = StaffId::parse(&args.staff).map_err(|e| EventMapError::UnknownSubject {
        what: "staff member",
        detail: format!("--staff: {}", e.message),
    })?;
    let calcom = super::tenant_calcom(store, tenant_id).await?;
    let client = super::shared_client_for(
        &calcom,
        Some(&crate::budget::Budgets::new(db.clone())),
        true,
    )?;
    let report = super::provision(
        store,
        &client,
        tenant_id,
        &service_id,
        &staff_id,
        args.dry_run,
    )
    .await?;
    let used = BudgetUsed::of(&client);
    if args.json {
        let mut json = serde_json::to_value(&report).unwrap_or_default();
        if let Some(fields) = json.as_object_mut() {
            fields.insert(
                "calcom_budget".into(),
                serde_json::to_value(used).unwrap_or_default(),
            );
        }
        writeln!(out, "{}", to_json(&json)).map_err(io)?;
    } else {
        write!(out, "{}", report::provision_table(&report)).map_err(io)?;
        writeln!(out, "{}", used.line()).map_err(io)?;
    }
    Ok(report)
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

fn io(err: std::io::Error) -> EventMapError {
    EventMapError::Output(err.to_string())
}
