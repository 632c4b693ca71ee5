//! Token usage: what one turn spent (added up from the usage its responses reported), what `GET /api/usage/`
//! asks for (parsed once at the edge), its answer priced with `config::Prices`, and the budgets a turn's
//! start is held to.
//!
//! # Layout
//! - [`TurnUsage`]: one turn's tokens, from each response's `usage` object as the provider reported it.
//! - [`UsageQuery`]: the range, the time grouping and the breakdown a usage request asked for, bounded.
//! - [`UsageReport`] / [`UsageRow`]: the answer.
//! - [`Budget`]: a user's budgets with what the day and month have spent, and the refusal.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;
use time::{Date, Duration, Month, OffsetDateTime, Time};
use utoipa::ToSchema;

use super::ids::{AgentId, UserId};
use crate::config::Prices;
use crate::error::{Error, Result};

/// One turn's tokens: the sum over its responses of what each reported (completed, failed, incomplete or cut
/// short by a cancel: whatever usage the provider sent is counted, and a response that sent none adds 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TurnUsage {
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// `input_tokens_details.cached_tokens`: part of `input_tokens`.
    pub cached_tokens: i64,
    /// `output_tokens_details.reasoning_tokens`: part of `output_tokens`.
    pub reasoning_tokens: i64,
}

impl TurnUsage {
    /// Adds one response's `usage` object.
    pub fn add(&mut self, usage: &Value) {
        let n = |pointer: &str| usage.pointer(pointer).and_then(Value::as_i64).unwrap_or(0).max(0);
        self.input_tokens = self.input_tokens.saturating_add(n("/input_tokens"));
        self.output_tokens = self.output_tokens.saturating_add(n("/output_tokens"));
        self.cached_tokens = self.cached_tokens.saturating_add(n("/input_tokens_details/cached_tokens"));
        self.reasoning_tokens = self.reasoning_tokens.saturating_add(n("/output_tokens_details/reasoning_tokens"));
    }
}

/// How finely a usage report splits time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    Hour,
}

impl Period {
    /// The longest range a report over this period may cover (rows = periods x agents x models x providers).
    pub const fn max_days(self) -> i64 {
        match self {
            Self::Day => 366,
            Self::Hour => 31,
        }
    }

    /// Characters of an hour bucket (`2026-12-07T20`) that name this period.
    pub const fn key_chars(self) -> i64 {
        match self {
            Self::Day => 10,
            Self::Hour => 13,
        }
    }
}

/// What a usage report is broken down by besides time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Breakdown {
    Agent,
    Model,
    Provider,
}

/// A usage request, parsed and bounded: `from` and `to` are whole UTC days, both included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    pub from: Date,
    pub to: Date,
    pub group_by: Period,
    pub by: Option<Breakdown>,
    /// `Some(None)`: everyone's (staff only); `Some(Some(id))`: one owner's; the caller's own otherwise.
    pub owner: Option<UserId>,
    pub everyone: bool,
}

/// Days a report covers when the request names no `from`.
pub const DEFAULT_DAYS: i64 = 30;

const DATE: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

impl UsageQuery {
    /// Parses the query string against today (UTC). Unknown parameters are ignored, as DRF does.
    pub fn parse(raw: &str, caller: &crate::domain::Caller, today: Date) -> Result<Self> {
        let params: Vec<(String, String)> = form_urlencoded::parse(raw.as_bytes()).into_owned().collect();
        let get = |key: &str| params.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        let date = |key: &str| {
            get(key)
                .map(|raw| {
                    Date::parse(raw, DATE).map_err(|_| Error::field(key, "Date has wrong format. Use YYYY-MM-DD."))
                })
                .transpose()
        };
        let group_by = match get("group_by") {
            None | Some("day") => Period::Day,
            Some("hour") => Period::Hour,
            Some(other) => return Err(Error::field("group_by", format!("\"{other}\" is not a valid choice."))),
        };
        let by = match get("by") {
            None | Some("") => None,
            Some("agent") => Some(Breakdown::Agent),
            Some("model") => Some(Breakdown::Model),
            Some("provider") => Some(Breakdown::Provider),
            Some(other) => return Err(Error::field("by", format!("\"{other}\" is not a valid choice."))),
        };
        let to = date("to")?.unwrap_or(today);
        let from = date("from")?.unwrap_or_else(|| to - Duration::days(DEFAULT_DAYS - 1));
        if from > to {
            return Err(Error::field("from", "Must not be after `to`."));
        }
        if (to - from).whole_days() >= group_by.max_days() {
            let max = group_by.max_days();
            let period = if group_by == Period::Day { "day" } else { "hour" };
            return Err(Error::field("from", format!("A range grouped by {period} covers at most {max} days.")));
        }
        let (owner, everyone) = match get("owner") {
            None => (caller.owner_for(None), caller.is_staff),
            Some(_) if !caller.is_staff => return Err(Error::Forbidden),
            Some(raw) => {
                let id = raw.parse::<UserId>().map_err(|_| Error::field("owner", "A valid integer is required."))?;
                (Some(id), false)
            }
        };
        Ok(Self { from, to, group_by, by, owner, everyone })
    }

    /// The hour buckets in range, as stored hours compare (`YYYY-MM-DDTHH`).
    pub fn hours(&self) -> HourRange {
        let day = |d: Date| d.format(DATE).unwrap_or_default();
        HourRange { from: day(self.from), until: day(self.to.next_day().unwrap_or(self.to)) }
    }
}

/// Hour buckets from `from` (included) to `until` (excluded), as stored hours compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourRange {
    pub from: String,
    pub until: String,
}

/// The starts of a budget's UTC day and month, as stored hours compare (`YYYY-MM-DD`, `YYYY-MM-01`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetPeriods {
    pub day: String,
    pub month: String,
}

/// One group of a usage report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"period": "2026-12-07", "agent_id": 3, "model": null, "input_tokens": 1200,
    "output_tokens": 300, "cached_tokens": 1024, "reasoning_tokens": 0, "total_tokens": 1500, "turns": 4,
    "failed_turns": 1, "cost": 0.0012}))]
pub struct UsageRow {
    /// The day (`YYYY-MM-DD`) or hour (`YYYY-MM-DDTHH:00:00Z`), UTC; absent in `totals`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    /// With `by=agent`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    pub agent_id: Option<AgentId>,
    /// With `by=model`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// With `by=provider`: the agent's provider when the turn ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_tokens: i64,
    pub reasoning_tokens: i64,
    /// Input plus output: what budgets count.
    pub total_tokens: i64,
    pub turns: i64,
    pub failed_turns: i64,
    /// US dollars, only when `LAMBENT_PRICES` prices every model of the group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
}

/// One stored bucket: (hour or day, agent, model, provider) and its counts, as the store reads them.
#[derive(Debug, Clone)]
pub struct UsageBucket {
    pub period: String,
    pub agent_id: AgentId,
    pub model: String,
    pub provider: String,
    /// input, output, cached, reasoning, turns, failed turns
    pub counts: [i64; 6],
}

impl UsageRow {
    fn add(&mut self, bucket: &UsageBucket, prices: &Prices) {
        let [input, output, cached, reasoning, turns, failed] = bucket.counts;
        self.input_tokens += input;
        self.output_tokens += output;
        self.cached_tokens += cached;
        self.reasoning_tokens += reasoning;
        self.total_tokens += input + output;
        self.turns += turns;
        self.failed_turns += failed;
        if !prices.is_empty() {
            let first = self.turns == turns;
            self.cost = match (first, self.cost, prices.cost(&bucket.model, input, output)) {
                (true, _, cost) => cost,
                (false, Some(sum), Some(cost)) => Some(sum + cost),
                _ => None,
            };
        }
    }
}

/// A report row's group: period, then agent, model and provider (each only when broken down by it).
type GroupKey = (String, Option<AgentId>, Option<String>, Option<String>);

/// The answer of `GET /api/usage/`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct UsageReport {
    /// First day of the range (UTC), included.
    pub from: String,
    /// Last day of the range (UTC), included.
    pub to: String,
    pub group_by: Period,
    pub by: Option<Breakdown>,
    /// The owner reported on; null for everyone's (staff without `?owner=`).
    #[schema(value_type = Option<i64>)]
    pub owner: Option<UserId>,
    /// Groups with any turn, oldest period first.
    pub rows: Vec<UsageRow>,
    pub totals: UsageRow,
}

impl UsageReport {
    /// Groups stored buckets (ordered by period) as the query asked, pricing each model's tokens.
    pub fn build(query: &UsageQuery, buckets: &[UsageBucket], prices: &Prices) -> Self {
        let mut rows: Vec<UsageRow> = Vec::new();
        let mut index: HashMap<GroupKey, usize> = HashMap::new();
        let mut totals = UsageRow::default();
        for bucket in buckets {
            let period = match query.group_by {
                Period::Day => bucket.period.clone(),
                Period::Hour => format!("{}:00:00Z", bucket.period),
            };
            let agent_id = (query.by == Some(Breakdown::Agent)).then_some(bucket.agent_id);
            let model = (query.by == Some(Breakdown::Model)).then(|| bucket.model.clone());
            let provider = (query.by == Some(Breakdown::Provider)).then(|| bucket.provider.clone());
            let key = (period.clone(), agent_id, model.clone(), provider.clone());
            let at = *index.entry(key).or_insert_with(|| {
                rows.push(UsageRow { period: Some(period), agent_id, model, provider, ..UsageRow::default() });
                rows.len() - 1
            });
            rows[at].add(bucket, prices);
            totals.add(bucket, prices);
        }
        let day = |d: Date| d.format(DATE).unwrap_or_default();
        Self {
            from: day(query.from),
            to: day(query.to),
            group_by: query.group_by,
            by: query.by,
            owner: if query.everyone { None } else { query.owner },
            rows,
            totals,
        }
    }
}

/// A user's budgets and what the current day and month have spent (input plus output tokens).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    pub daily: Option<i64>,
    pub monthly: Option<i64>,
    pub day_used: i64,
    pub month_used: i64,
}

impl Budget {
    /// Refuses a turn when a budget is spent (used at or over the limit), with when the later of the spent
    /// periods resets: the next UTC midnight, or the first of next month.
    pub fn check(&self, now: OffsetDateTime) -> Result<()> {
        let next_day = now.date().next_day().map(|d| d.with_time(Time::MIDNIGHT).assume_utc());
        let next_month = {
            let (year, month) = if now.month() == Month::December {
                (now.year() + 1, Month::January)
            } else {
                (now.year(), now.month().next())
            };
            Date::from_calendar_date(year, month, 1).ok().map(|d| d.with_time(Time::MIDNIGHT).assume_utc())
        };
        let monthly = self.monthly.is_some_and(|limit| self.month_used >= limit);
        let daily = self.daily.is_some_and(|limit| self.day_used >= limit);
        let (which, resets) = match (monthly, daily) {
            (true, _) => ("monthly", next_month),
            (false, true) => ("daily", next_day),
            (false, false) => return Ok(()),
        };
        Err(Error::BudgetExceeded {
            detail: format!("Your {which} token budget is spent."),
            resets_at: resets.map(crate::clock::format_timestamp).unwrap_or_default(),
        })
    }
}

/// A token budget in a user write: absent `None`, null `Some(None)` (no limit), else a whole number of
/// tokens, 0 or more.
#[derive(Debug, Clone, Copy)]
pub struct TokenBudget;

impl super::wire::FieldKind for TokenBudget {
    type Out = Option<i64>;

    fn read(
        &self,
        input: &mut crate::domain::Input<'_>,
        field: &str,
        _: bool,
        _: &crate::config::Limits,
    ) -> Option<Option<i64>> {
        let Some(value) = input.nullable_json(field)? else { return Some(None) };
        match value.as_i64() {
            Some(n) if n >= 0 => Some(Some(n)),
            Some(_) => {
                input.error(field, "Ensure this value is greater than or equal to 0.");
                None
            }
            None => {
                input.error(field, "A valid integer is required.");
                None
            }
        }
    }

    fn schema(&self, _: &crate::config::Limits) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, SchemaType, Type};
        ObjectBuilder::new()
            .schema_type(SchemaType::Array(vec![Type::Integer, Type::Null]))
            .format(Some(SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int64)))
            .minimum(Some(0))
            .into()
    }
}

/// The start of the UTC day and month `now` falls in, as hour buckets compare (`YYYY-MM-DD`, `YYYY-MM-01`).
pub fn budget_periods(now: OffsetDateTime) -> BudgetPeriods {
    let day = now.date().format(DATE).unwrap_or_default();
    let month = format!("{}-01", &day[..7.min(day.len())]);
    BudgetPeriods { day, month }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_budget_refuses_exactly_at_its_limit_and_names_the_next_reset() {
        let now = datetime!(2026-12-31 23:59:59 UTC);
        let under = Budget { daily: Some(100), monthly: Some(1000), day_used: 99, month_used: 999 };
        assert!(under.check(now).is_ok());
        let day = Budget { day_used: 100, ..under };
        let Err(Error::BudgetExceeded { resets_at, .. }) = day.check(now) else { panic!("not refused") };
        assert_eq!(resets_at, "2027-01-01T00:00:00.000000Z");
        let month = Budget { month_used: 1000, ..under };
        let Err(Error::BudgetExceeded { resets_at, .. }) = month.check(datetime!(2026-11-05 10:00 UTC)) else {
            panic!("not refused")
        };
        assert_eq!(resets_at, "2026-12-01T00:00:00.000000Z");
        assert!(Budget::default().check(now).is_ok());
        assert_eq!(budget_periods(now), BudgetPeriods { day: "2026-12-31".into(), month: "2026-12-01".into() });
    }
}
