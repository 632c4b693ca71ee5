//! Hrana's wire format as the store uses it: pure functions from the store's statements and batches to Hrana
//! requests, and from Hrana's answers (results, statement errors, refusals) back to what the store reads. No
//! I/O: the client ([`super::remote`]) sends what these build and hands them what came back.
//!
//! # Layout
//! - values and statements: [`to_hrana`], [`from_hrana`], [`stmt`], [`request`], [`close`], [`encode`];
//! - a whole transaction as one conditional batch: [`transactional`];
//! - results: [`set_of`], [`execute_result`], [`batch_outcomes`] (a batch's step results and errors, in the
//!   store's terms), [`not_begun`] (a transaction refused at its `BEGIN`, so safe to send again);
//! - errors: [`statement_error`] (a statement's error as SQLite's code and message), [`refusal`] (what a
//!   non-success HTTP answer means: a stream the server no longer knows, or a failure).

use libsql::Value;
use libsql::params::IntoParams;
use libsql_hrana::proto;

use super::{Outcome, Outcomes, Set, positional};
use crate::error::{Error, Result};

/// One statement with its parameters bound positionally.
pub(super) fn stmt(sql: &str, params: impl IntoParams, want_rows: bool) -> Result<proto::Stmt> {
    let mut stmt = proto::Stmt::new(sql, want_rows);
    stmt.args = positional(params)?.into_iter().map(to_hrana).collect();
    Ok(stmt)
}

pub(super) fn to_hrana(value: Value) -> proto::Value {
    match value {
        Value::Null => proto::Value::Null,
        Value::Integer(value) => proto::Value::Integer { value },
        Value::Real(value) => proto::Value::Float { value },
        Value::Text(value) => proto::Value::Text { value: value.into() },
        Value::Blob(value) => proto::Value::Blob { value: value.into() },
    }
}

fn from_hrana(value: proto::Value) -> Value {
    match value {
        proto::Value::None | proto::Value::Null => Value::Null,
        proto::Value::Integer { value } => Value::Integer(value),
        proto::Value::Float { value } => Value::Real(value),
        proto::Value::Text { value } => Value::Text(value.to_string()),
        proto::Value::Blob { value } => Value::Blob(value.to_vec()),
    }
}

pub(super) fn request(stmt: proto::Stmt) -> proto::StreamRequest {
    proto::StreamRequest::Execute(proto::ExecuteStreamReq { stmt })
}

pub(super) fn close() -> proto::StreamRequest {
    proto::StreamRequest::Close(proto::CloseStreamReq {})
}

pub(super) fn encode(request: &proto::StreamRequest) -> Result<serde_json::Value> {
    serde_json::to_value(request).map_err(|e| Error::internal("encoding a Hrana request", e))
}

/// `BEGIN IMMEDIATE` (the write lock is taken up front, so two batches never deadlock upgrading a read), each
/// statement conditioned on the one before, `COMMIT` if the last ran, `ROLLBACK` if the commit did not.
pub(super) fn transactional(stmts: impl Iterator<Item = proto::Stmt>) -> proto::Batch {
    let mut steps = vec![proto::BatchStep { condition: None, stmt: proto::Stmt::new("BEGIN IMMEDIATE", false) }];
    for stmt in stmts {
        let step = u32::try_from(steps.len() - 1).unwrap_or(u32::MAX);
        steps.push(proto::BatchStep { condition: Some(proto::BatchCond::Ok { step }), stmt });
    }
    let last = u32::try_from(steps.len() - 1).unwrap_or(u32::MAX);
    steps.push(proto::BatchStep {
        condition: Some(proto::BatchCond::Ok { step: last }),
        stmt: proto::Stmt::new("COMMIT", false),
    });
    steps.push(proto::BatchStep {
        condition: Some(proto::BatchCond::Not { cond: Box::new(proto::BatchCond::Ok { step: last + 1 }) }),
        stmt: proto::Stmt::new("ROLLBACK", false),
    });
    proto::Batch { steps, replication_index: None }
}

/// `batch` with `lead` ahead of it: every step runs only if the lead succeeded (conditions renumbered).
pub(super) fn led(batch: proto::Batch, lead: proto::Stmt) -> proto::Batch {
    fn shift(cond: &mut proto::BatchCond) {
        match cond {
            proto::BatchCond::Ok { step } | proto::BatchCond::Error { step } => *step += 1,
            proto::BatchCond::Not { cond } => shift(cond),
            proto::BatchCond::And(list) | proto::BatchCond::Or(list) => list.conds.iter_mut().for_each(shift),
            proto::BatchCond::None | proto::BatchCond::IsAutocommit {} => {}
        }
    }
    let lead_ok = proto::BatchCond::Ok { step: 0 };
    let mut steps = vec![proto::BatchStep { condition: None, stmt: lead }];
    for mut step in batch.steps {
        step.condition = Some(match step.condition.take() {
            None | Some(proto::BatchCond::None) => lead_ok.clone(),
            Some(mut cond) => {
                shift(&mut cond);
                proto::BatchCond::And(proto::BatchCondList { conds: vec![lead_ok.clone(), cond] })
            }
        });
        steps.push(step);
    }
    proto::Batch { steps, replication_index: batch.replication_index }
}

/// Takes a [`led`] batch's first step out of its answer: the lead's outcome (None when the request itself
/// failed, so the lead did not run).
pub(super) fn split_lead(result: &mut Option<proto::StreamResult>) -> Option<Result<Set>> {
    let Some(proto::StreamResult::Ok { response: proto::StreamResponse::Batch(resp) }) = result else { return None };
    let results = &mut resp.result.step_results;
    let errors = &mut resp.result.step_errors;
    let set = (!results.is_empty()).then(|| results.remove(0)).flatten();
    let error = (!errors.is_empty()).then(|| errors.remove(0)).flatten();
    Some(match (set, error) {
        (_, Some(error)) => Err(Error::Database(statement_error(error))),
        (Some(set), None) => Ok(set_of(set)),
        (None, None) => Err(Error::bug("the request's lead did not run")),
    })
}

/// The rows and changes a statement gave.
pub(super) fn set_of(result: proto::StmtResult) -> Set {
    Set {
        columns: result.cols.into_iter().map(|c| c.name.unwrap_or_default()).collect(),
        rows: result.rows.into_iter().map(|row| row.values.into_iter().map(from_hrana).collect()).collect(),
        affected: result.affected_row_count,
    }
}

/// The answer to one `execute` request.
pub(super) fn execute_result(result: Option<proto::StreamResult>) -> Result<Set> {
    match result {
        Some(proto::StreamResult::Ok { response: proto::StreamResponse::Execute(resp) }) => Ok(set_of(resp.result)),
        Some(proto::StreamResult::Error { error }) => Err(Error::Database(statement_error(error))),
        other => Err(Error::bug(format!("unexpected Hrana result: {other:?}"))),
    }
}

/// A batch of `count` statements as the store reads it, from the answer to its `batch` request (sent
/// [`transactional`] when `atomic`): each statement's rows, error, or that it did not run.
///
/// An atomic batch whose `BEGIN IMMEDIATE` failed (the database was busy) ran nothing: that is the error. One
/// whose statements all ran but whose `COMMIT` failed wrote nothing: that is the error too.
pub(super) fn batch_outcomes(result: Option<proto::StreamResult>, count: usize, atomic: bool) -> Result<Outcomes> {
    let result = match result {
        Some(proto::StreamResult::Ok { response: proto::StreamResponse::Batch(resp) }) => resp.result,
        Some(proto::StreamResult::Error { error }) => return Err(Error::Database(statement_error(error))),
        other => return Err(Error::bug(format!("unexpected Hrana batch result: {other:?}"))),
    };
    let mut results = result.step_results.into_iter();
    let mut errors = result.step_errors.into_iter();
    if atomic {
        results.next();
        if let Some(error) = errors.next().flatten() {
            return Err(Error::Database(statement_error(error)));
        }
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        out.push(match (results.next().flatten(), errors.next().flatten()) {
            (_, Some(error)) => Outcome::Failed(statement_error(error)),
            (Some(set), None) => Outcome::Done(set_of(set)),
            (None, None) => Outcome::Skipped,
        });
    }
    if atomic
        && out.iter().all(|o| matches!(o, Outcome::Done(_)))
        && let Some(error) = errors.next().flatten()
    {
        return Err(Error::Database(statement_error(error)));
    }
    Ok(Outcomes(out))
}

/// Why an atomic batch ran nothing, if its `BEGIN IMMEDIATE` met a busy database (`SQLITE_BUSY`, or
/// `SQLITE_LOCKED`): the batch may be sent again as it is.
pub(super) fn not_begun(result: &Option<proto::StreamResult>, atomic: bool) -> Option<String> {
    let Some(proto::StreamResult::Ok { response: proto::StreamResponse::Batch(resp) }) = result else { return None };
    let error = resp.result.step_errors.first()?.as_ref().filter(|_| atomic)?;
    matches!(error.code.as_str(), "SQLITE_BUSY" | "SQLITE_LOCKED")
        .then(|| format!("the database was busy: {} ({})", error.message, error.code))
}

/// A statement error as the rest of the store reads it, the same as a local one: SQLite's result code and
/// message (e.g. 19, "UNIQUE constraint failed: users.username"). sqld sends the primary code's name
/// (`SQLITE_CONSTRAINT` for every constraint; measured on sqld 0.24) and prefixes the message with
/// "SQLite error: ". A code this does not know stays in the message, with 0 as the code.
pub(super) fn statement_error(error: proto::Error) -> libsql::Error {
    let message = error.message.strip_prefix("SQLite error: ").unwrap_or(&error.message);
    match result_code(&error.code) {
        Some(code) => libsql::Error::SqliteFailure(code, message.to_owned()),
        None => libsql::Error::SqliteFailure(0, format!("{message} ({})", error.code)),
    }
}

/// The SQLite result code a Hrana error code names (sqld: the primary codes; extended ones accepted too).
fn result_code(name: &str) -> Option<std::ffi::c_int> {
    use libsql::ffi;
    Some(match name {
        "SQLITE_ERROR" => ffi::SQLITE_ERROR,
        "SQLITE_BUSY" => ffi::SQLITE_BUSY,
        "SQLITE_LOCKED" => ffi::SQLITE_LOCKED,
        "SQLITE_READONLY" => ffi::SQLITE_READONLY,
        "SQLITE_FULL" => ffi::SQLITE_FULL,
        "SQLITE_TOOBIG" => ffi::SQLITE_TOOBIG,
        "SQLITE_MISMATCH" => ffi::SQLITE_MISMATCH,
        "SQLITE_RANGE" => ffi::SQLITE_RANGE,
        "SQLITE_CONSTRAINT" => ffi::SQLITE_CONSTRAINT,
        "SQLITE_CONSTRAINT_UNIQUE" => ffi::SQLITE_CONSTRAINT_UNIQUE,
        "SQLITE_CONSTRAINT_PRIMARYKEY" => ffi::SQLITE_CONSTRAINT_PRIMARYKEY,
        "SQLITE_CONSTRAINT_CHECK" => ffi::SQLITE_CONSTRAINT_CHECK,
        "SQLITE_CONSTRAINT_NOTNULL" => ffi::SQLITE_CONSTRAINT_NOTNULL,
        "SQLITE_CONSTRAINT_FOREIGNKEY" => ffi::SQLITE_CONSTRAINT_FOREIGNKEY,
        _ => return None,
    })
}

/// Hrana's error codes for a stream the server does not know: it expired (`STREAM_EXPIRED`, sqld and
/// Turso after ~10 s idle) or its baton is not one the server issued or still holds (`BATON_*`: a restarted
/// server, a baton used twice, a closed stream).
const STALE_STREAM_CODES: [&str; 4] = ["STREAM_EXPIRED", "BATON_INVALID", "BATON_REUSED", "BATON_STREAM_CLOSED"];

/// An error object as Hrana answers one over HTTP (`{"message": …, "code": …}`, the code optional).
#[derive(serde::Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Option<String>,
}

/// What a non-success answer to a pipeline request means.
#[derive(Debug)]
pub(super) enum Refusal {
    /// The server did not know the kept stream and ran none of the request; its message.
    StaleStream(String),
    /// Anything else: the answer's status and text.
    Failed(String),
}

/// Reads a 4xx answer to a pipeline request that named a kept stream (`kept`) or opened one.
///
/// The code decides, not the text. sqld answers an expired stream with a Hrana error object whose code is
/// `STREAM_EXPIRED`, and every protocol error — an unknown baton among them ("Received an invalid baton", a
/// restarted server) — as `text/plain` with no code at all (measured on sqld 0.24.32). A request the store
/// builds is well formed (the same request is accepted on a fresh stream), so on a kept stream a 400 that is
/// not a Hrana error object is the baton's refusal: raised while the stream is looked up, before anything ran.
pub(super) fn refusal(status: reqwest::StatusCode, body: &[u8], kept: bool) -> Refusal {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    let stale = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(error) => error.code.as_deref().is_some_and(|code| STALE_STREAM_CODES.contains(&code)),
        Err(_) => status == reqwest::StatusCode::BAD_REQUEST,
    };
    if kept && stale { Refusal::StaleStream(text) } else { Refusal::Failed(format!("status={status}: {text}")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql_of(step: &proto::BatchStep) -> &str {
        step.stmt.sql.as_deref().unwrap_or_default()
    }

    fn ok(columns: &[&str], rows: Vec<Vec<proto::Value>>, affected: u64) -> Option<proto::StmtResult> {
        Some(proto::StmtResult {
            cols: columns.iter().map(|c| proto::Col { name: Some((*c).into()), decltype: None }).collect(),
            rows: rows.into_iter().map(|values| proto::Row { values }).collect(),
            affected_row_count: affected,
            ..Default::default()
        })
    }

    fn error(code: &str, message: &str) -> Option<proto::Error> {
        Some(proto::Error { message: message.into(), code: code.into() })
    }

    fn answer(
        step_results: Vec<Option<proto::StmtResult>>,
        step_errors: Vec<Option<proto::Error>>,
    ) -> Option<proto::StreamResult> {
        Some(proto::StreamResult::Ok {
            response: proto::StreamResponse::Batch(proto::BatchStreamResp {
                result: proto::BatchResult { step_results, step_errors, replication_index: None },
            }),
        })
    }

    #[test]
    fn a_transaction_is_begin_each_statement_on_the_one_before_commit_and_rollback_unless_committed() {
        let batch = transactional(["INSERT a", "INSERT b"].into_iter().map(|sql| proto::Stmt::new(sql, true)));
        let sqls: Vec<&str> = batch.steps.iter().map(sql_of).collect();
        assert_eq!(sqls, ["BEGIN IMMEDIATE", "INSERT a", "INSERT b", "COMMIT", "ROLLBACK"]);
        let conditions: Vec<String> =
            batch.steps.iter().map(|s| serde_json::to_string(&s.condition).unwrap()).collect();
        assert_eq!(
            conditions,
            [
                "null",
                r#"{"type":"ok","step":0}"#,
                r#"{"type":"ok","step":1}"#,
                r#"{"type":"ok","step":2}"#,
                r#"{"type":"not","cond":{"type":"ok","step":3}}"#,
            ]
        );
    }

    #[test]
    fn a_batch_answer_gives_each_statements_rows_error_or_that_it_did_not_run() {
        // BEGIN, three statements (the second fails, so the third and COMMIT are skipped), ROLLBACK.
        let results = vec![
            ok(&[], vec![], 0),
            ok(
                &["id", "name"],
                vec![vec![proto::Value::Integer { value: 7 }, proto::Value::Text { value: "a".into() }]],
                1,
            ),
            None,
            None,
            None,
            ok(&[], vec![], 0),
        ];
        let errors = vec![
            None,
            None,
            error("SQLITE_CONSTRAINT", "SQLite error: UNIQUE constraint failed: t.name"),
            None,
            None,
            None,
        ];
        let mut out = batch_outcomes(answer(results, errors), 3, true).unwrap();
        assert_eq!(out.failed_at(), Some(1));
        let set = out.take(0).unwrap();
        assert_eq!((set.columns.as_slice(), set.affected), (["id".to_owned(), "name".to_owned()].as_slice(), 1));
        assert_eq!(set.rows, vec![vec![Value::Integer(7), Value::Text("a".into())]]);
        let Err(Error::Database(libsql::Error::SqliteFailure(code, message))) = out.take(1) else { panic!() };
        assert_eq!((code, message.as_str()), (libsql::ffi::SQLITE_CONSTRAINT, "UNIQUE constraint failed: t.name"));
        assert!(out.take(2).is_err(), "a statement after the failed one did not run");
    }

    #[test]
    fn a_batch_whose_begin_failed_ran_nothing_and_is_the_busy_error() {
        let errors = vec![error("SQLITE_BUSY", "SQLite error: database is locked"), None, None, None];
        let Err(Error::Database(libsql::Error::SqliteFailure(code, _))) =
            batch_outcomes(answer(vec![None, None, None, None], errors), 1, true)
        else {
            panic!()
        };
        assert_eq!(code, libsql::ffi::SQLITE_BUSY);
    }

    #[test]
    fn only_a_transaction_refused_at_its_begin_is_not_begun() {
        let busy = || vec![error("SQLITE_BUSY", "database is locked"), None, None, None];
        assert!(not_begun(&answer(vec![None; 4], busy()), true).is_some());
        assert!(not_begun(&answer(vec![None; 4], busy()), false).is_none(), "a reading batch has no BEGIN");
        let later = vec![None, error("SQLITE_BUSY", "database is locked"), None, None];
        assert!(not_begun(&answer(vec![ok(&[], vec![], 0), None, None, None], later), true).is_none());
        let constraint = vec![error("SQLITE_CONSTRAINT", "x"), None];
        assert!(not_begun(&answer(vec![None, None], constraint), true).is_none());
    }

    #[test]
    fn a_batch_whose_statements_ran_but_whose_commit_failed_is_an_error() {
        let results = vec![ok(&[], vec![], 0), ok(&[], vec![], 1), None, ok(&[], vec![], 0)];
        let errors = vec![None, None, error("SQLITE_BUSY", "database is locked"), None];
        assert!(batch_outcomes(answer(results, errors), 1, true).is_err());
    }

    #[test]
    fn a_reading_batch_runs_every_statement_whatever_fails() {
        let results = vec![None, ok(&["n"], vec![vec![proto::Value::Null]], 0)];
        let errors = vec![error("SQLITE_ERROR", "no such table: x"), None];
        let mut out = batch_outcomes(answer(results, errors), 2, false).unwrap();
        assert_eq!(out.failed_at(), Some(0));
        assert_eq!(out.take(1).unwrap().rows, vec![vec![Value::Null]]);
    }

    #[test]
    fn a_request_level_error_is_the_statements_error() {
        let busy = || {
            Some(proto::StreamResult::Error { error: proto::Error { message: "x".into(), code: "SQLITE_BUSY".into() } })
        };
        assert!(matches!(batch_outcomes(busy(), 1, true), Err(Error::Database(_))));
        assert!(matches!(execute_result(busy()), Err(Error::Database(_))));
        assert!(matches!(execute_result(None), Err(Error::Internal { .. })));
    }

    #[test]
    fn a_remote_statement_error_keeps_sqlds_result_code() {
        // As sqld 0.24 answers a UNIQUE (or PRIMARY KEY) violation.
        let error = proto::Error {
            message: "SQLite error: UNIQUE constraint failed: users.username".into(),
            code: "SQLITE_CONSTRAINT".into(),
        };
        let libsql::Error::SqliteFailure(code, message) = statement_error(error) else { panic!() };
        assert_eq!(
            (code, message.as_str()),
            (libsql::ffi::SQLITE_CONSTRAINT, "UNIQUE constraint failed: users.username")
        );
        let error = proto::Error { message: "something else".into(), code: "SQLITE_SOMETHING".into() };
        let libsql::Error::SqliteFailure(code, message) = statement_error(error) else { panic!() };
        assert_eq!((code, message.as_str()), (0, "something else (SQLITE_SOMETHING)"));
    }

    #[test]
    fn a_kept_stream_is_stale_by_the_answers_code_not_its_text() {
        use reqwest::StatusCode as S;
        // sqld 0.24.32's answers, byte for byte: an expired stream, an unknown baton (plain text).
        let expired = br#"{"message":"The stream has expired due to inactivity","code":"STREAM_EXPIRED"}"#;
        assert!(matches!(refusal(S::BAD_REQUEST, expired, true), Refusal::StaleStream(_)));
        assert!(matches!(refusal(S::BAD_REQUEST, b"Received an invalid baton", true), Refusal::StaleStream(_)));
        let reused = br#"{"message":"m","code":"BATON_REUSED"}"#;
        assert!(matches!(refusal(S::BAD_REQUEST, reused, true), Refusal::StaleStream(_)));
        // The same words under another code, or any answer on a stream just opened, are failures.
        let other = br#"{"message":"stream expired, baton","code":"SQL_PARSE_ERROR"}"#;
        let Refusal::Failed(text) = refusal(S::BAD_REQUEST, other, true) else { panic!() };
        assert_eq!(text, format!("status=400 Bad Request: {}", std::str::from_utf8(other).unwrap()));
        assert!(matches!(refusal(S::BAD_REQUEST, expired, false), Refusal::Failed(_)));
        assert!(matches!(refusal(S::BAD_REQUEST, b"Received an invalid baton", false), Refusal::Failed(_)));
        assert!(matches!(refusal(S::UNAUTHORIZED, b"Unauthorized", true), Refusal::Failed(_)));
    }
}
