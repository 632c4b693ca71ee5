//! Field-by-field reading of a JSON request body with Django REST framework's rules and messages, so that
//! every error names its field: `{"name": ["This field is required."]}`.
//!
//! # Layout
//! - [`Input`]: the reader; every text field goes through [`Input::string`], which refuses U+0000 as DRF's
//!   `CharField` does (so nothing stored differs from what was sent), and names through [`Input::name`].
//! - [`check_text`] and [`check_name`]: the two rules, for text that arrives outside a plain field (template
//!   variables, tool outputs).

use serde_json::{Map, Value};

use crate::error::{Error, FieldErrors, Result};

/// What a write may omit: `Create` and `Replace` (PUT) need every required field; `Patch` needs none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Create,
    Replace,
    Patch,
}

/// DRF's name for a JSON value's type, as its messages print it.
fn python_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

pub struct Input<'a> {
    obj: &'a Map<String, Value>,
    mode: Mode,
    errors: FieldErrors,
}

impl<'a> Input<'a> {
    pub fn new(body: &'a Value, mode: Mode) -> Result<Self> {
        match body {
            Value::Object(obj) => Ok(Self { obj, mode, errors: FieldErrors::default() }),
            other => Err(Error::field(
                "non_field_errors",
                format!("Invalid data. Expected a dictionary, but got {}.", python_type(other)),
            )),
        }
    }

    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors.add(field, message);
    }

    pub fn finish(self) -> Result<()> {
        self.errors.into_result()
    }

    /// The raw value of a field the body carries; records "required" when a create/replace omits it.
    fn raw(&mut self, field: &str, required: bool) -> Option<&'a Value> {
        let value = self.obj.get(field);
        if value.is_none() && required && self.mode != Mode::Patch {
            self.error(field, "This field is required.");
        }
        value
    }

    /// A text field. `max_len` counts characters, as Django does.
    pub fn string(&mut self, field: &str, required: bool, max_len: Option<usize>, allow_blank: bool) -> Option<String> {
        let value = match self.raw(field, required)? {
            Value::String(s) => s.clone(),
            // DRF's CharField accepts numbers and renders them as text.
            Value::Number(n) => n.to_string(),
            Value::Null => return self.reject(field, "This field may not be null."),
            _ => return self.reject(field, "Not a valid string."),
        };
        if !allow_blank && value.trim().is_empty() {
            return self.reject(field, "This field may not be blank.");
        }
        // DRF runs every validator and reports each failure.
        let too_long = max_len.filter(|max| value.chars().count() > *max);
        if let Some(max) = too_long {
            self.error(field, format!("Ensure this field has no more than {max} characters."));
        }
        let text = check_text(&value);
        if let Err(message) = text {
            self.error(field, message);
        }
        (too_long.is_none() && text.is_ok()).then_some(value)
    }

    /// A name (of an agent, a template, a token, a model): a non-blank text field of at most `max_len`
    /// characters that passes [`check_name`].
    pub fn name(&mut self, field: &str, required: bool, max_len: usize) -> Option<String> {
        let name = self.string(field, required, Some(max_len), false)?;
        match check_name(&name) {
            Ok(()) => Some(name),
            Err(message) => self.reject(field, message),
        }
    }

    pub fn boolean(&mut self, field: &str) -> Option<bool> {
        match self.raw(field, false)? {
            Value::Bool(b) => Some(*b),
            Value::Number(n) if n.as_i64() == Some(1) => Some(true),
            Value::Number(n) if n.as_i64() == Some(0) => Some(false),
            Value::String(s) => match s.as_str() {
                "true" | "True" | "TRUE" | "t" | "T" | "1" | "yes" | "Yes" | "y" | "Y" | "on" | "On" => Some(true),
                "false" | "False" | "FALSE" | "f" | "F" | "0" | "no" | "No" | "n" | "N" | "off" | "Off" => Some(false),
                _ => self.reject(field, "Must be a valid boolean."),
            },
            Value::Null => self.reject(field, "This field may not be null."),
            _ => self.reject(field, "Must be a valid boolean."),
        }
    }

    /// One of a fixed set of strings.
    pub fn choice(&mut self, field: &str, required: bool, choices: &[&str]) -> Option<String> {
        match self.raw(field, required)? {
            Value::String(s) if choices.contains(&s.as_str()) => Some(s.clone()),
            Value::Null => self.reject(field, "This field may not be null."),
            Value::String(s) => self.reject(field, format!("\"{s}\" is not a valid choice.")),
            other => self.reject(field, format!("\"{other}\" is not a valid choice.")),
        }
    }

    /// A foreign key given as its primary key. `Some(None)` is an explicit null (only when `nullable`).
    /// Whether the row exists is the store's check, in the same transaction as the write.
    pub fn pk(&mut self, field: &str, required: bool, nullable: bool) -> Option<Option<i64>> {
        match self.raw(field, required)? {
            Value::Null if nullable => Some(None),
            Value::Null => self.reject(field, "This field may not be null."),
            Value::Number(n) if n.as_i64().is_some() => Some(n.as_i64()),
            Value::String(s) if s.trim().parse::<i64>().is_ok() => Some(s.trim().parse().ok()),
            other => self.reject(field, format!("Incorrect type. Expected pk value, received {}.", python_type(other))),
        }
    }

    /// Any JSON value except null.
    pub fn json(&mut self, field: &str, required: bool) -> Option<Value> {
        match self.raw(field, required)? {
            Value::Null => self.reject(field, "This field may not be null."),
            value => Some(value.clone()),
        }
    }

    /// Any JSON value; null is kept as an explicit "clear this".
    pub fn nullable_json(&mut self, field: &str) -> Option<Option<Value>> {
        match self.raw(field, false)? {
            Value::Null => Some(None),
            value => Some(Some(value.clone())),
        }
    }

    /// A whole number from 1 to `max`; null is kept as an explicit "none".
    pub fn nullable_count(&mut self, field: &str, max: i64) -> Option<Option<i64>> {
        match self.raw(field, false)? {
            Value::Null => Some(None),
            Value::Number(n) => match n.as_i64() {
                Some(v) if (1..=max).contains(&v) => Some(Some(v)),
                Some(v) if v < 1 => self.reject(field, "Ensure this value is greater than or equal to 1."),
                Some(_) => self.reject(field, format!("Ensure this value is less than or equal to {max}.")),
                None => self.reject(field, "A valid integer is required."),
            },
            _ => self.reject(field, "A valid integer is required."),
        }
    }

    fn reject<T>(&mut self, field: &str, message: impl Into<String>) -> Option<T> {
        self.error(field, message);
        None
    }
}

/// DRF's `ProhibitNullCharactersValidator`, on every text field: SQLite keeps U+0000 but C-string readers (and
/// many clients) stop at it, so the history would differ from what the model was sent.
pub const NULL_CHARACTERS: &str = "Null characters are not allowed.";

/// The rule every text a user sends passes: no U+0000.
pub fn check_text(text: &str) -> Result<(), &'static str> {
    if text.contains('\0') { Err(NULL_CHARACTERS) } else { Ok(()) }
}

/// The rule every name passes (agents, tools, templates, tokens, users, models): none of the characters that
/// hide or forge text ([`crate::telemetry::is_hidden`]: control, bidi-override, zero-width), so a name shows
/// as what it is in a list, a log line or a terminal.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.chars().any(crate::telemetry::is_hidden) {
        Err("Names may not contain control characters, bidirectional overrides or zero-width characters.")
    } else {
        Ok(())
    }
}

/// The message DRF gives for a foreign key that names no row.
pub fn missing_pk(id: impl std::fmt::Display) -> String {
    format!("Invalid pk \"{id}\" - object does not exist.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors_of(body: Value, mode: Mode, read: impl FnOnce(&mut Input<'_>)) -> Value {
        let mut input = Input::new(&body, mode).unwrap();
        read(&mut input);
        match input.finish() {
            Err(Error::Validation(e)) => e.to_json(),
            other => panic!("expected validation errors, got {other:?}"),
        }
    }

    #[test]
    fn a_non_object_body_is_a_non_field_error() {
        let Err(Error::Validation(e)) = Input::new(&json!([1]), Mode::Create) else { panic!() };
        assert_eq!(e.to_json(), json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}));
    }

    #[test]
    fn strings_report_required_blank_null_type_and_length() {
        let e = errors_of(json!({"b": "  ", "c": null, "d": [1], "e": "abcd"}), Mode::Create, |i| {
            i.string("a", true, None, false);
            i.string("b", true, None, false);
            i.string("c", true, None, false);
            i.string("d", true, None, false);
            i.string("e", true, Some(3), false);
        });
        assert_eq!(
            e,
            json!({
                "a": ["This field is required."],
                "b": ["This field may not be blank."],
                "c": ["This field may not be null."],
                "d": ["Not a valid string."],
                "e": ["Ensure this field has no more than 3 characters."],
            })
        );
    }

    #[test]
    fn null_characters_are_refused_in_every_text_field_with_drfs_message() {
        let e = errors_of(json!({"a": "hello\u{0}IGNORE", "b": "x\u{0}y"}), Mode::Create, |i| {
            assert_eq!(i.string("a", true, None, true), None);
            assert_eq!(i.string("b", true, Some(1), false), None);
        });
        assert_eq!(
            e,
            json!({
                "a": ["Null characters are not allowed."],
                "b": ["Ensure this field has no more than 1 characters.", "Null characters are not allowed."],
            })
        );
    }

    #[test]
    fn names_refuse_control_bidi_and_zero_width_characters() {
        for bad in [
            "x\n2026 INFO forged",
            "red\u{1b}[31m",
            "tab\there",
            "del\u{7f}",
            "\u{202E}gnp.exe",
            "a\u{200B}b",
            "\u{2066}x\u{2069}",
            "bom\u{FEFF}",
            "c1\u{85}",
            "line\u{2028}sep",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for good in ["Support Agent", "Agent (v2) — été", "日本語のエージェント", "emoji 🙂", "a-b_c.d"]
        {
            assert_eq!(check_name(good), Ok(()), "{good:?}");
        }
        let e = errors_of(json!({"name": "ok\nforged"}), Mode::Create, |i| assert_eq!(i.name("name", true, 200), None));
        assert_eq!(
            e,
            json!({"name": ["Names may not contain control characters, bidirectional overrides or zero-width characters."]})
        );
    }

    #[test]
    fn patch_needs_no_required_field() {
        let body = json!({});
        let mut input = Input::new(&body, Mode::Patch).unwrap();
        assert_eq!(input.string("name", true, None, false), None);
        input.finish().unwrap();
    }

    #[test]
    fn booleans_choices_and_pks_use_drf_messages() {
        let e = errors_of(json!({"b": "maybe", "c": "x", "p": "abc"}), Mode::Create, |i| {
            i.boolean("b");
            i.choice("c", true, &["function", "custom"]);
            i.pk("p", true, false);
        });
        assert_eq!(
            e,
            json!({
                "b": ["Must be a valid boolean."],
                "c": ["\"x\" is not a valid choice."],
                "p": ["Incorrect type. Expected pk value, received str."],
            })
        );
        let body = json!({"b": "true", "p": "7", "q": null});
        let mut input = Input::new(&body, Mode::Create).unwrap();
        assert_eq!(input.boolean("b"), Some(true));
        assert_eq!(input.pk("p", true, false), Some(Some(7)));
        assert_eq!(input.pk("q", false, true), Some(None));
    }
}
