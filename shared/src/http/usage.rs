//! `/api/usage/`: the tokens turns spent, from the hourly aggregate the end of every turn adds to.

use axum::Json;
use axum::extract::{RawQuery, State};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::{ErrorDetail, INVALID_QUERY, ValidationErrors};
use crate::domain::{Caller, UsageQuery, UsageReport};
use crate::error::Result;
use crate::state::AppState;

pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(report))
}

/// Input, output, cached and reasoning tokens, turns and failed turns, per day (or hour) and optionally per
/// agent, model or provider, for a range of whole UTC days: your own; staff see everyone's, or one owner's with
/// `?owner=`. Every turn counts when it ends, with the tokens its responses reported (failed, incomplete and
/// cancelled ones included). `cost` (US dollars) appears only where `LAMBENT_PRICES` prices the models.
#[utoipa::path(operation_id = "usage_report", get, path = "/api/usage/", tag = "usage",
    params(
        ("from" = Option<String>, Query, description = "First day, `YYYY-MM-DD` (UTC); default 29 days before `to`"),
        ("to" = Option<String>, Query, description = "Last day, `YYYY-MM-DD` (UTC), included; default today"),
        ("group_by" = Option<String>, Query, description = "`day` (default; at most 366 days) or `hour` (at most 31 days)"),
        ("by" = Option<String>, Query, description = "Also split by `agent`, `model` or `provider`"),
        ("owner" = Option<i64>, Query, description = "Staff only: one user's usage (default: everyone's)")),
    responses((status = 200, description = "The usage of the range, grouped as asked.", body = UsageReport),
        (status = 400, description = INVALID_QUERY, body = ValidationErrors),
        (status = 403, description = "`owner` given by someone who is not staff.", body = ErrorDetail)))]
async fn report(State(state): State<AppState>, caller: Caller, RawQuery(raw): RawQuery) -> Result<Json<UsageReport>> {
    let query = UsageQuery::parse(raw.as_deref().unwrap_or_default(), &caller, state.clock().now().date())?;
    let buckets = state.store.usage_buckets(&query).await?;
    Ok(Json(UsageReport::build(&query, &buckets, &state.config.prices)))
}
