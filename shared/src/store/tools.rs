//! Tools.

use libsql::params;

use super::conn::Batch;
use super::messages::returned;
use super::{Row, listed, owner_exists, push_owner_check, vals};

use super::{
    Listed, Slice, Sql, Store, Unique, first, flag, int, json_col, opt_int, opt_json_col, opt_text_value, text,
};
use crate::domain::{Caller, UserId};
use crate::domain::{Executor, Tool, ToolChanges, ToolFields, ToolType};
use crate::error::{Error, Result};

pub(super) const COLUMNS: &str =
    "id, name, owner_id, description, tool_type, parameters, format, is_active, created_at, executor";
/// `agent_tools.name ... UNIQUE`.
const NAME: Unique = Unique::new("agent_tools", &["name"]);

pub(super) fn tool(row: &Row) -> Result<Tool> {
    let kind = text(row, 4)?;
    Ok(Tool {
        id: int(row, 0)?,
        name: text(row, 1)?,
        owner: opt_int(row, 2)?,
        description: text(row, 3)?,
        tool_type: ToolType::parse(&kind).ok_or_else(|| Error::bug(format!("unknown tool_type {kind:?}")))?,
        parameters: json_col(row, 5)?,
        format: opt_json_col(row, 6)?,
        is_active: flag(row, 7)?,
        created_at: text(row, 8)?,
        executor: opt_json_col(row, 9)?
            .map(|value| Executor::parse(&value).map_err(|e| Error::bug(format!("a stored executor: {e}"))))
            .transpose()?,
    })
}

pub(super) async fn find(conn: Sql<'_>, id: i64) -> Result<Option<Tool>> {
    first(conn.query(&format!("SELECT {COLUMNS} FROM agent_tools WHERE id = ?1"), [id]).await?, tool).await
}

fn encode(value: &serde_json::Value) -> String {
    value.to_string()
}

fn encode_executor(executor: &Executor) -> Result<String> {
    serde_json::to_string(executor).map_err(|e| Error::internal("a tool's executor as JSON", e))
}

/// A taken name answers with the field error (in the user's words), not a 500.
fn unique_to_field(name: &str) -> impl Fn(Error) -> Error + '_ {
    move |err| {
        if NAME.violated_by(&err) {
            Error::field("name", format!("A tool named \"{name}\" already exists."))
        } else {
            err
        }
    }
}

impl Store {
    /// The tools the viewer sees: its own and the global ones (staff: all).
    pub async fn list_tools(&self, viewer: &Caller, slice: Slice) -> Result<Listed<Tool>> {
        let conn = self.conn().await;
        let filter = "(?1 OR owner_id = ?2 OR owner_id IS NULL)";
        listed(
            &conn,
            (&format!("SELECT COUNT(*) FROM agent_tools WHERE {filter}"), vals(params![viewer.is_staff, viewer.id])?),
            (
                &format!("SELECT {COLUMNS} FROM agent_tools WHERE {filter} ORDER BY id LIMIT ?3 OFFSET ?4"),
                vals(params![viewer.is_staff, viewer.id, slice.limit, slice.offset])?,
            ),
            |row| Ok(tool(row)?.seen_by(viewer)),
        )
        .await
    }

    pub async fn get_tool(&self, viewer: &Caller, id: i64) -> Result<Tool> {
        let found = find(self.conn().await.sql(), id).await?.filter(|t| viewer.sees(t.owner));
        found.map(|t| t.seen_by(viewer)).ok_or(Error::NotFound)
    }

    pub async fn create_tool(&self, owner: Option<UserId>, changes: ToolChanges) -> Result<Tool> {
        let fields = changes.apply(ToolFields::default())?;
        // One batch: the owner's existence (read for the field error) and the INSERT, whose UNIQUE name index
        // and owner foreign key are the checks.
        let mut batch = Batch::write();
        let owner_found = push_owner_check(&mut batch, owner)?;
        let inserted = batch.push(
            format!(
                "INSERT INTO agent_tools
                     (name, owner_id, description, tool_type, parameters, format, is_active, created_at, executor)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING {COLUMNS}"
            ),
            params![
                fields.name.as_str(),
                owner,
                fields.description,
                fields.tool_type.as_str(),
                encode(&fields.parameters),
                opt_text_value(fields.format.as_ref().map(encode)),
                fields.is_active,
                self.now(),
                opt_text_value(fields.executor.as_ref().map(encode_executor).transpose()?)
            ],
        )?;
        let mut out = self.conn().await.batch(batch).await?;
        owner_exists(&mut out, owner_found, owner)?;
        if let Some(err) = out.first_error() {
            return Err(unique_to_field(&fields.name)(err.into()));
        }
        returned(out.take(inserted)?, tool)
    }

    pub async fn update_tool(&self, viewer: &Caller, id: i64, changes: ToolChanges) -> Result<Tool> {
        let conn = self.conn().await;
        let existing = find(conn.sql(), id).await?.ok_or(Error::NotFound)?;
        viewer.check_change(existing.owner)?;
        let fields = changes.apply(ToolFields::from(&existing))?;
        // Written only if the owner is still the one checked (a concurrent change answers 404, not a write
        // past the permission check); the UNIQUE index guards the name.
        let rows = conn
            .query(
                &format!(
                    "UPDATE agent_tools SET name = ?1, description = ?2, tool_type = ?3, parameters = ?4, format = ?5,
                     is_active = ?6, executor = ?8 WHERE id = ?7 AND owner_id IS ?9 RETURNING {COLUMNS}"
                ),
                params![
                    fields.name.as_str(),
                    fields.description,
                    fields.tool_type.as_str(),
                    encode(&fields.parameters),
                    opt_text_value(fields.format.as_ref().map(encode)),
                    fields.is_active,
                    id,
                    opt_text_value(fields.executor.as_ref().map(encode_executor).transpose()?),
                    super::opt_int_value(existing.owner)
                ],
            )
            .await
            .map_err(unique_to_field(&fields.name))?;
        first(rows, tool).await.map_err(unique_to_field(&fields.name))?.ok_or(Error::NotFound)
    }

    /// Deletes the tool and its agent links.
    pub async fn delete_tool(&self, viewer: &Caller, id: i64) -> Result<()> {
        let conn = self.conn().await;
        let existing = find(conn.sql(), id).await?.ok_or(Error::NotFound)?;
        viewer.check_change(existing.owner)?;
        conn.execute("DELETE FROM agent_tools WHERE id = ?1", [id]).await?;
        Ok(())
    }
}
