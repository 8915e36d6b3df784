//! The audit trail: who read which patient data, and who changed which
//! share or grant, recorded for the hospital that owns the data.
//!
//! Records live in the tenants table under `{hospital}#AUDIT#{yyyymmdd}`,
//! sorted by `{timestamp}#{random}`. They name studies by UID and filters
//! by name only: never a patient name, ID or any filter value.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

use crate::auth::{HospitalPrincipal, Principal};
use crate::context::Context;
use crate::cursor::CursorSigner;
use crate::domain::HospitalId;
use crate::dynamo::{self, store_error};
use crate::error::{ApiError, ApiResult};
use crate::item::{self, Item, get_count, get_string, key, n, s};

/// Longest span one `list_audit` call may cover.
pub const MAX_AUDIT_DAYS: i64 = 366;
/// Largest page of `list_audit`.
pub const MAX_AUDIT_LIMIT: usize = 1000;
/// Most study UIDs one record keeps (a page of the study list).
const MAX_UIDS: usize = 1000;

/// How an audited request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AuditOutcome {
    /// Done as asked.
    Success,
    /// Refused: role, tenant or input.
    Denied,
    /// Nothing the caller may read was found.
    NotFound,
    /// Failed on our side.
    Failed,
}

impl AuditOutcome {
    /// The outcome as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Success => "success",
            AuditOutcome::Denied => "denied",
            AuditOutcome::NotFound => "notFound",
            AuditOutcome::Failed => "failed",
        }
    }

    /// The outcome an HTTP status stands for.
    pub fn from_status(status: http::StatusCode) -> Self {
        match status.as_u16() {
            200..=399 => AuditOutcome::Success,
            404 => AuditOutcome::NotFound,
            400..=499 => AuditOutcome::Denied,
            _ => AuditOutcome::Failed,
        }
    }
}

/// One thing that happened, before it is written.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// The hospital whose data was read or changed.
    pub owner: HospitalId,
    /// What was done, e.g. `studies.query`, `study.read`, `share.create`.
    pub action: String,
    /// What it was done to: a study UID, `studies`, `share:{uid}:{hosp}`.
    pub resource: String,
    /// `success`, `denied`, `notFound` or `failed`.
    pub outcome: AuditOutcome,
    /// Names (never values) of the filters a query used.
    pub filters: Vec<String>,
    /// UIDs of the studies a list returned.
    pub study_uids: Vec<String>,
}

/// The events of one request, written together at its end.
#[derive(Debug)]
pub struct AuditTrail {
    actor_hospital: HospitalId,
    key_id: String,
    username: Option<String>,
    events: Vec<AuditEvent>,
}

impl AuditTrail {
    /// A trail for requests made with `actor`'s key.
    pub fn new(actor: &HospitalPrincipal) -> Self {
        AuditTrail {
            actor_hospital: actor.hospital_id.clone(),
            key_id: actor.key_id.to_string(),
            username: actor.username.clone(),
            events: Vec::new(),
        }
    }

    /// Records `action` on `resource` of `owner`'s data.
    pub fn record(
        &mut self,
        owner: &HospitalId,
        action: &str,
        resource: impl Into<String>,
        outcome: AuditOutcome,
    ) {
        self.push(AuditEvent {
            owner: owner.clone(),
            action: action.into(),
            resource: resource.into(),
            outcome,
            filters: Vec::new(),
            study_uids: Vec::new(),
        });
    }

    /// Records a fully described event.
    pub fn push(&mut self, event: AuditEvent) {
        self.events.push(event);
    }

    /// Records a study list: one event for the caller's own hospital (the
    /// query itself) and one for each other hospital whose studies it
    /// returned, each naming only that hospital's study UIDs.
    pub fn record_list<'a>(
        &mut self,
        action: &str,
        filters: &[String],
        outcome: AuditOutcome,
        studies: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) {
        let mut by_owner: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        by_owner.entry(self.actor_hospital.to_string()).or_default();
        for (hospital, uid) in studies {
            by_owner
                .entry(hospital.to_owned())
                .or_default()
                .push(uid.to_owned());
        }
        for (owner, uids) in by_owner {
            let Ok(owner) = owner.parse() else { continue };
            self.push(AuditEvent {
                owner,
                action: action.into(),
                resource: "studies".into(),
                outcome,
                filters: filters.to_vec(),
                study_uids: uids,
            });
        }
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Writes every event in BatchWriteItem calls of 25. A failure is
    /// logged as an error and does not fail the request whose answer is
    /// already computed.
    pub async fn flush(self, ctx: &Context) {
        if self.events.is_empty() {
            return;
        }
        let now = crate::time::now();
        let at = timestamp(now);
        let day = day_key(now.date());
        let count = self.events.len();
        let items: Vec<Item> = self
            .events
            .into_iter()
            .map(|e| {
                let mut item = key(
                    audit_pk(&e.owner, &day),
                    format!("{at}#{}", hex::encode(rand::random::<[u8; 6]>())),
                );
                item.insert("hospitalId".into(), s(e.owner.as_str()));
                item.insert("actorHospitalId".into(), s(self.actor_hospital.as_str()));
                item.insert("keyId".into(), s(&self.key_id));
                if let Some(u) = &self.username {
                    item.insert("username".into(), s(u));
                }
                item.insert("action".into(), s(e.action));
                item.insert("resource".into(), s(e.resource.clone()));
                item.insert("outcome".into(), s(e.outcome.as_str()));
                item.insert("at".into(), s(&at));
                if !e.filters.is_empty() {
                    item.insert("filters".into(), attrs_list(e.filters));
                }
                if !e.study_uids.is_empty() || e.resource == "studies" {
                    item.insert("count".into(), n(e.study_uids.len()));
                }
                if !e.study_uids.is_empty() {
                    let uids: BTreeSet<String> = e.study_uids.into_iter().take(MAX_UIDS).collect();
                    item.insert("studyUids".into(), attrs_list(uids.into_iter().collect()));
                }
                item
            })
            .collect();
        if let Err(err) = dynamo::batch_put(ctx, &ctx.settings.tenants_table, items).await {
            tracing::error!(
                code = err.code,
                records = count,
                "audit records not written"
            );
        }
    }
}

/// Records a request refused before it reached any data (e.g. an agent
/// key asking for studies) in the caller's own trail; the platform admin
/// has no hospital and is not recorded here.
pub async fn record_refused(ctx: &Context, principal: &Principal, action: &str, err: &ApiError) {
    if let Some(p) = principal.hospital() {
        let mut trail = AuditTrail::new(p);
        trail.record(
            &p.hospital_id,
            action,
            "request",
            AuditOutcome::from_status(err.status),
        );
        trail.flush(ctx).await;
    }
}

fn attrs_list(v: Vec<String>) -> aws_sdk_dynamodb::types::AttributeValue {
    aws_sdk_dynamodb::types::AttributeValue::L(v.into_iter().map(s).collect())
}

fn audit_pk(hospital: &HospitalId, day: &str) -> String {
    format!("{hospital}#AUDIT#{day}")
}

fn day_key(d: Date) -> String {
    format!("{:04}{:02}{:02}", d.year(), u8::from(d.month()), d.day())
}

/// RFC 3339 in UTC with milliseconds, so records sort by time.
fn timestamp(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// One audit record as the admin route shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// When it happened (RFC 3339, milliseconds).
    pub at: String,
    /// The hospital whose data it concerns.
    pub hospital_id: String,
    /// The hospital of the key that acted.
    pub actor_hospital_id: String,
    /// The key that acted.
    pub key_id: String,
    /// The user the key belongs to, if any.
    pub username: Option<String>,
    /// What was done, e.g. `study.read`.
    pub action: String,
    /// What it was done to: `studies`, a study UID or a share.
    pub resource: String,
    /// `success`, `denied`, `notFound` or `failed`.
    pub outcome: String,
    /// Names of the query filters used, never their values.
    pub filters: Vec<String>,
    /// Studies a list returned.
    pub study_uids: Vec<String>,
    /// How many studies a list returned.
    pub count: Option<u64>,
}

impl AuditEntry {
    fn from_item(item: &Item) -> Option<Self> {
        let list = |name: &str| item::get_strings(item, name);
        Some(AuditEntry {
            at: get_string(item, "at")?,
            hospital_id: get_string(item, "hospitalId")?,
            actor_hospital_id: get_string(item, "actorHospitalId")?,
            key_id: get_string(item, "keyId").unwrap_or_default(),
            username: get_string(item, "username"),
            action: get_string(item, "action")?,
            resource: get_string(item, "resource").unwrap_or_default(),
            outcome: get_string(item, "outcome").unwrap_or_default(),
            filters: list("filters"),
            study_uids: list("studyUids"),
            count: item.contains_key("count").then(|| get_count(item, "count")),
        })
    }
}

/// A page of audit records, newest first.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    /// The records of this page, newest first.
    pub records: Vec<AuditEntry>,
    /// Pass back as `cursor` for the next page; `None` at the end.
    pub next_cursor: Option<String>,
}

/// Where the next audit page starts: a day, and the last sort key read in
/// it (none: the day from its newest record).
#[derive(Debug, Serialize, Deserialize)]
struct AuditPosition {
    d: String,
    k: Option<String>,
}

/// Parses the `from` and `to` of `GET /api/audit` (`YYYYMMDD` or
/// `YYYY-MM-DD`, inclusive). Defaults: `to` today, `from` seven days
/// before `to`. 400 naming the parameter when malformed, reversed, or more
/// than [`MAX_AUDIT_DAYS`] apart.
pub fn parse_audit_range(from: Option<&str>, to: Option<&str>) -> ApiResult<(Date, Date)> {
    let parse = |name: &str, v: &str| {
        let compact = v.replace('-', "");
        let format = time::macros::format_description!("[year][month][day]");
        Date::parse(&compact, &format).map_err(|_| {
            ApiError::validation(format!(
                "{name} must be a date such as 20240131 or 2024-01-31"
            ))
        })
    };
    let to = match to {
        Some(v) => parse("to", v)?,
        None => crate::time::now().date(),
    };
    let from = match from {
        Some(v) => parse("from", v)?,
        None => to - time::Duration::days(7),
    };
    if from > to {
        return Err(ApiError::validation("from must not be after to"));
    }
    if (to - from).whole_days() >= MAX_AUDIT_DAYS {
        return Err(ApiError::validation(format!(
            "from and to may be at most {MAX_AUDIT_DAYS} days apart"
        )));
    }
    Ok((from, to))
}

/// The audit records of `hospital` from `from` to `to` (inclusive days,
/// UTC), newest first, at most `limit` (1..=1000), resuming at `cursor`
/// (a `nextCursor` of the same hospital and range; anything else is a 400
/// naming `cursor`). One Query per day visited.
pub async fn list_audit(
    ctx: &Context,
    hospital: &HospitalId,
    from: Date,
    to: Date,
    limit: usize,
    cursor: Option<&str>,
) -> ApiResult<AuditPage> {
    let limit = limit.clamp(1, MAX_AUDIT_LIMIT);
    if from > to || (to - from).whole_days() >= MAX_AUDIT_DAYS {
        return Err(ApiError::validation(format!(
            "from must not be after to, and at most {MAX_AUDIT_DAYS} days before it"
        )));
    }
    let secrets = ctx.secrets_for_route().await?;
    let signer = CursorSigner::new(&secrets.pepper, "audit");
    let binding = format!("{hospital}|{}|{}", day_key(from), day_key(to));
    let start: Option<AuditPosition> = match cursor {
        Some(c) => Some(signer.open("cursor", &binding, c)?),
        None => None,
    };

    let mut day = match &start {
        Some(pos) => {
            let format = time::macros::format_description!("[year][month][day]");
            Date::parse(&pos.d, &format).map_err(|_| ApiError::validation("cursor is not valid"))?
        }
        None => to,
    };
    let mut after = start.and_then(|p| p.k);
    let mut records = Vec::new();
    while day >= from {
        let pk = audit_pk(hospital, &day_key(day));
        loop {
            let resp = ctx
                .clients
                .dynamodb
                .query()
                .table_name(&ctx.settings.tenants_table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(&pk))
                .scan_index_forward(false)
                .limit((limit - records.len()) as i32)
                .set_exclusive_start_key(after.take().map(|sk| key(&pk, sk)))
                .send()
                .await
                .map_err(|e| store_error("query audit", e))?;
            records.extend(
                resp.items
                    .unwrap_or_default()
                    .iter()
                    .filter_map(AuditEntry::from_item),
            );
            let last = resp
                .last_evaluated_key
                .and_then(|k| k.get("sk").and_then(|v| v.as_s().ok()).cloned());
            if records.len() >= limit {
                let next = match last {
                    Some(k) => Some(AuditPosition {
                        d: day_key(day),
                        k: Some(k),
                    }),
                    None => day
                        .previous_day()
                        .filter(|d| *d >= from)
                        .map(|d| AuditPosition {
                            d: day_key(d),
                            k: None,
                        }),
                };
                return Ok(AuditPage {
                    records,
                    next_cursor: next.map(|p| signer.seal(&binding, &p)),
                });
            }
            match last {
                Some(k) => after = Some(k),
                None => break,
            }
        }
        match day.previous_day() {
            Some(d) => day = d,
            None => break,
        }
    }
    Ok(AuditPage {
        records,
        next_cursor: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked() {
        assert!(parse_audit_range(Some("20240101"), Some("2024-01-31")).is_ok());
        assert!(parse_audit_range(Some("20240201"), Some("20240101")).is_err());
        assert!(parse_audit_range(Some("20200101"), Some("20240101")).is_err());
        let err = parse_audit_range(Some("yesterday"), None).unwrap_err();
        assert!(err.message.contains("from"));
        let (f, t) = parse_audit_range(None, None).unwrap();
        assert_eq!((t - f).whole_days(), 7);
    }

    #[test]
    fn timestamps_sort_as_text() {
        let a = timestamp(time::macros::datetime!(2024-01-02 03:04:05.006 UTC));
        assert_eq!(a, "2024-01-02T03:04:05.006Z");
        assert_eq!(day_key(time::macros::date!(2024 - 01 - 02)), "20240102");
    }
}
