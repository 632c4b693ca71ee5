//! Request bodies, each declared once: the [`body!`] macro makes from one declaration the struct a handler
//! gets, the reading of a JSON body into it with DRF's rules and messages ([`Input`]), and its OpenAPI schema.
//! A field's kind ([`Text`], [`Bool`], [`Pk`], ...) reads and documents it, so a limit is stated in one place
//! and the document cannot say other than what is checked.
//!
//! Why a declarative macro over `Input`, not serde or a validation crate: DRF reports every invalid field at
//! once (`{"name": [...], "model": [...]}`) and tells a missing field from a null one, a blank one and one of
//! the wrong type, each with its own message; serde's derive stops at the first error and has none of those
//! messages, and `garde`/`validator` check a value serde already built (so a wrong type is still serde's one
//! error) and document nothing for utoipa. A `macro_rules!` over the reader the project already had keeps
//! the messages, the unknown-field handling (ignored, as DRF does) and the `Mode` semantics as they were, and
//! adds no dependency.
//!
//! # Layout
//! - [`FieldKind`]: what a field's kind does — read, document, and name the schemas it refers to.
//! - the kinds: [`Text`], [`Bool`], [`Pk`], [`NullablePk`] (made by [`KeyField`]), [`WholeNumber`], [`NullableCount`], [`Choice`],
//!   [`JsonObject`], [`NullableJson`].
//! - [`Required`]: a field a create or a replace must carry; [`present`] for a create's.
//! - [`body!`]: the declaration.

use std::borrow::Cow;
use std::marker::PhantomData;

use serde_json::Value;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, SchemaType, Type};
use utoipa::openapi::{KnownFormat, Ref, RefOr};

use super::ids::Key;
use super::input::Input;
use crate::config::Limits;

/// A bound, which may be a setting an operator can raise ([`Limits`]): the check reads the running limits,
/// the document the defaults.
pub type Bound = fn(&Limits) -> usize;

/// A field's rule of its own: `Err` is its message.
pub type Rule<T> = fn(&T) -> Result<(), String>;

/// The schemas a body's schema refers to, as `ToSchema::schemas` collects them.
pub type Schemas = Vec<(String, RefOr<Schema>)>;

/// One kind of field: how it is read from a body and how the document shows it.
pub trait FieldKind {
    /// What the field holds once read.
    type Out;

    /// Reads `field` (absent: `None`), recording DRF's errors in `input`; a create or replace that omits a
    /// `required` field gets "This field is required.".
    fn read(&self, input: &mut Input<'_>, field: &str, required: bool, limits: &Limits) -> Option<Self::Out>;

    /// The field's schema, with the bounds of `limits` (the defaults, in the document).
    fn schema(&self, limits: &Limits) -> RefOr<Schema>;

    /// Whether a create or a replace must carry the field.
    fn is_required(&self) -> bool {
        false
    }

    /// The named schemas this one refers to.
    fn schemas(&self, _schemas: &mut Schemas) {}

    /// This kind, required on create and replace, and listed as required in the document.
    fn required(self) -> Required<Self>
    where
        Self: Sized,
    {
        Required { kind: self, documented: true }
    }

    /// This kind, required on create and replace, of a body whose document lists nothing as required (one
    /// schema for a create and a patch: its description says when the field is needed).
    fn required_on_create(self) -> Required<Self>
    where
        Self: Sized,
    {
        Required { kind: self, documented: false }
    }
}

/// A field a create or a replace must carry (a patch never must).
#[derive(Debug, Clone, Copy)]
pub struct Required<K> {
    kind: K,
    documented: bool,
}

impl<K: FieldKind> FieldKind for Required<K> {
    type Out = K::Out;

    fn read(&self, input: &mut Input<'_>, field: &str, _required: bool, limits: &Limits) -> Option<K::Out> {
        self.kind.read(input, field, true, limits)
    }

    fn schema(&self, limits: &Limits) -> RefOr<Schema> {
        self.kind.schema(limits)
    }

    fn is_required(&self) -> bool {
        self.documented
    }

    fn schemas(&self, schemas: &mut Schemas) {
        self.kind.schemas(schemas);
    }
}

/// A field a create must carry, once its body has been read: `parse` has refused a body without it, so this
/// only turns the `Option` into the value (with the same error, were it ever absent).
pub fn present<T>(field: &str, value: Option<T>) -> crate::error::Result<T> {
    value.ok_or_else(|| crate::error::Error::field(field, "This field is required."))
}

/// A text field (DRF's `CharField`): not blank unless [`Text::blank`]; lengths count characters.
#[derive(Clone, Copy)]
pub struct Text {
    max: Option<Bound>,
    /// A name: [`Input::name`]'s rule (no control, bidi-override or zero-width character) besides the bound.
    name: bool,
    min: Option<usize>,
    blank: bool,
    /// A rule of its own, with its message; and the pattern that says it in the document.
    check: Option<Rule<str>>,
    pattern: Option<&'static str>,
}

impl Text {
    pub const fn new() -> Self {
        Self { max: None, name: false, min: None, blank: false, check: None, pattern: None }
    }

    /// At most this many characters.
    pub const fn max(self, max: Bound) -> Self {
        Self { max: Some(max), ..self }
    }

    /// At least this many characters (documented as `minLength`; the message is the check's).
    pub const fn min(self, min: usize, check: Rule<str>) -> Self {
        Self { min: Some(min), check: Some(check), ..self }
    }

    /// A name of at most `max` characters: printable text only.
    pub const fn name(max: Bound) -> Self {
        Self { max: Some(max), name: true, ..Self::new() }
    }

    /// Blank text allowed.
    pub const fn blank(self) -> Self {
        Self { blank: true, ..self }
    }

    /// A rule of its own; `pattern` says it in the document when a regular expression can.
    pub const fn check(self, check: Rule<str>, pattern: Option<&'static str>) -> Self {
        Self { check: Some(check), pattern, ..self }
    }
}

impl Default for Text {
    fn default() -> Self {
        Self::new()
    }
}

impl FieldKind for Text {
    type Out = String;

    fn read(&self, input: &mut Input<'_>, field: &str, required: bool, limits: &Limits) -> Option<String> {
        let max = self.max.map(|max| max(limits));
        let text = match (self.name, max) {
            (true, Some(max)) => input.name(field, required, max)?,
            _ => input.string(field, required, max, self.blank)?,
        };
        match self.check.map_or(Ok(()), |check| check(&text)) {
            Ok(()) => Some(text),
            Err(message) => {
                input.error(field, message);
                None
            }
        }
    }

    fn schema(&self, limits: &Limits) -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(self.max.map(|max| max(limits)))
            .min_length(self.min)
            .pattern(self.pattern)
            .into()
    }
}

/// A boolean, read as DRF's `BooleanField` reads one (`"true"`, `1`, `"off"`, ...).
#[derive(Debug, Clone, Copy)]
pub struct Bool;

impl FieldKind for Bool {
    type Out = bool;

    fn read(&self, input: &mut Input<'_>, field: &str, _: bool, _: &Limits) -> Option<bool> {
        input.boolean(field)
    }

    fn schema(&self, _: &Limits) -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::Boolean).into()
    }
}

/// A whole number within bounds; null or absent is none.
#[derive(Debug, Clone, Copy)]
pub struct WholeNumber {
    pub min: u32,
    pub max: u32,
}

impl FieldKind for WholeNumber {
    type Out = u32;

    fn read(&self, input: &mut Input<'_>, field: &str, required: bool, _: &Limits) -> Option<u32> {
        let value = input.nullable_json(field)?;
        if value.is_none() && required {
            input.error(field, "This field may not be null.");
        }
        let number = value?.as_u64().and_then(|n| u32::try_from(n).ok()).filter(|n| (self.min..=self.max).contains(n));
        if number.is_none() {
            input.error(field, format!("Ensure this value is a whole number from {} to {}.", self.min, self.max));
        }
        number
    }

    fn schema(&self, _: &Limits) -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Array(vec![Type::Integer, Type::Null]))
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
            .minimum(Some(self.min))
            .maximum(Some(self.max))
            .into()
    }
}

/// A whole number from 1 to `max` (an `i64`), or null for "none" (`Some(None)`).
#[derive(Debug, Clone, Copy)]
pub struct NullableCount {
    pub max: i64,
}

impl FieldKind for NullableCount {
    type Out = Option<i64>;

    fn read(&self, input: &mut Input<'_>, field: &str, _: bool, _: &Limits) -> Option<Option<i64>> {
        input.nullable_count(field, self.max)
    }

    fn schema(&self, _: &Limits) -> RefOr<Schema> {
        int64()
            .schema_type(SchemaType::Array(vec![Type::Integer, Type::Null]))
            .minimum(Some(1))
            .maximum(Some(self.max))
            .into()
    }
}

fn int64() -> ObjectBuilder {
    ObjectBuilder::new().format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
}

/// The body-field kinds of a key type: `AgentId::PK`, `UserId::NULLABLE_PK`, `i64::PK`.
pub trait KeyField: Key {
    const PK: Pk<Self> = Pk(PhantomData);
    const NULLABLE_PK: NullablePk<Self> = NullablePk(PhantomData);
}

impl<T: Key> KeyField for T {}

/// A foreign key given as its primary key, read as the id type it names (`AgentId::PK`, `i64::PK` for an
/// object no other id meets). Whether the row exists is the store's check.
#[derive(Debug, Clone, Copy)]
pub struct Pk<T>(PhantomData<T>);

impl<T: Key> FieldKind for Pk<T> {
    type Out = T;

    fn read(&self, input: &mut Input<'_>, field: &str, required: bool, _: &Limits) -> Option<T> {
        input.pk(field, required, false).flatten().map(T::from_pk)
    }

    fn schema(&self, _: &Limits) -> RefOr<Schema> {
        int64().schema_type(Type::Integer).into()
    }
}

/// A foreign key that may be null (`AgentId::NULLABLE_PK`): `Some(None)` is an explicit null.
#[derive(Debug, Clone, Copy)]
pub struct NullablePk<T>(PhantomData<T>);

impl<T: Key> FieldKind for NullablePk<T> {
    type Out = Option<T>;

    fn read(&self, input: &mut Input<'_>, field: &str, required: bool, _: &Limits) -> Option<Option<T>> {
        input.pk(field, required, true).map(|pk| pk.map(T::from_pk))
    }

    fn schema(&self, _: &Limits) -> RefOr<Schema> {
        int64().schema_type(SchemaType::Array(vec![Type::Integer, Type::Null])).into()
    }
}

/// One of an enum's wire names (a `states!` enum or [`super::ToolType`]), documented by reference.
pub struct Choice<T> {
    pub choices: &'static [&'static str],
    pub parse: fn(&str) -> Option<T>,
    pub schema: &'static str,
    pub register: fn(&mut Schemas),
}

impl<T> FieldKind for Choice<T> {
    type Out = T;

    fn read(&self, input: &mut Input<'_>, field: &str, required: bool, _: &Limits) -> Option<T> {
        input.choice(field, required, self.choices).and_then(|s| (self.parse)(&s))
    }

    fn schema(&self, _: &Limits) -> RefOr<Schema> {
        RefOr::Ref(Ref::from_schema_name(self.schema))
    }

    fn schemas(&self, schemas: &mut Schemas) {
        (self.register)(schemas);
    }
}

/// The `Choice` of a `ToSchema` enum with `CHOICES` and `parse`.
macro_rules! choice {
    ($ty:ty) => {
        $crate::domain::wire::Choice::<$ty> {
            choices: &<$ty>::CHOICES,
            parse: <$ty>::parse,
            schema: stringify!($ty),
            register: |schemas| {
                schemas
                    .push((<$ty as utoipa::ToSchema>::name().into_owned(), <$ty as utoipa::PartialSchema>::schema()));
                <$ty as utoipa::ToSchema>::schemas(schemas);
            },
        }
    };
}

/// Any JSON object (a JSON Schema, a format): not null. `check` bounds or shapes it.
#[derive(Clone, Copy)]
pub struct JsonObject {
    pub check: Option<Rule<Value>>,
}

impl FieldKind for JsonObject {
    type Out = Value;

    fn read(&self, input: &mut Input<'_>, field: &str, required: bool, _: &Limits) -> Option<Value> {
        let value = input.json(field, required)?;
        checked(input, field, value, self.check)
    }

    fn schema(&self, _: &Limits) -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::Object).into()
    }
}

fn checked<T>(input: &mut Input<'_>, field: &str, value: T, check: Option<Rule<T>>) -> Option<T> {
    match check.map_or(Ok(()), |check| check(&value)) {
        Ok(()) => Some(value),
        Err(message) => {
            input.error(field, message);
            None
        }
    }
}

/// Any JSON value, or null for "none" (`Some(None)`); `parse` turns it into the field's type, its error
/// message the field's.
pub struct NullableJson<T> {
    pub parse: fn(&Value) -> Result<T, String>,
    /// The schema of a non-null value: a named one (a reference) or an object.
    pub schema: Option<&'static str>,
    pub register: fn(&mut Schemas),
}

impl<T> FieldKind for NullableJson<T> {
    type Out = Option<T>;

    fn read(&self, input: &mut Input<'_>, field: &str, _: bool, _: &Limits) -> Option<Option<T>> {
        match input.nullable_json(field)? {
            None => Some(None),
            Some(value) => match (self.parse)(&value) {
                Ok(parsed) => Some(Some(parsed)),
                Err(message) => {
                    input.error(field, message);
                    None
                }
            },
        }
    }

    fn schema(&self, _: &Limits) -> RefOr<Schema> {
        match self.schema {
            Some(name) => OneOfBuilder::new()
                .item(RefOr::Ref(Ref::from_schema_name(name)))
                .item(ObjectBuilder::new().schema_type(Type::Null))
                .into(),
            None => ObjectBuilder::new().schema_type(SchemaType::Array(vec![Type::Object, Type::Null])).into(),
        }
    }

    fn schemas(&self, schemas: &mut Schemas) {
        (self.register)(schemas);
    }
}

/// A property's schema with its description (its doc comment's lines, as utoipa's derive joins them).
pub fn described(schema: RefOr<Schema>, doc: &[&str]) -> RefOr<Schema> {
    let Some(description) = description(doc) else { return schema };
    match schema {
        RefOr::Ref(mut reference) => {
            reference.description = description;
            RefOr::Ref(reference)
        }
        RefOr::T(Schema::Object(mut object)) => {
            object.description = Some(description);
            RefOr::T(Schema::Object(object))
        }
        RefOr::T(Schema::Array(mut array)) => {
            array.description = Some(description);
            RefOr::T(Schema::Array(array))
        }
        RefOr::T(Schema::OneOf(mut one_of)) => {
            // As utoipa's derive does for an optional reference: the description goes on the reference.
            if let Some(RefOr::Ref(reference)) = one_of.items.first_mut() {
                reference.description = description;
            }
            RefOr::T(Schema::OneOf(one_of))
        }
        other => other,
    }
}

/// Doc comment lines as one description: each line trimmed, joined by newlines; `None` for no lines.
pub fn description(doc: &[&str]) -> Option<String> {
    let lines: Vec<&str> = doc.iter().map(|line| line.trim()).collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// The schema's name for `ToSchema::name`.
pub fn name(name: &'static str) -> Cow<'static, str> {
    Cow::Borrowed(name)
}

/// Declares a request body: the struct (every field an `Option`, absent = not sent), `read`/`parse` with
/// DRF's rules, and its OpenAPI schema named `$schema`. Each field is `name: Type = kind`, where the kind
/// ([`FieldKind`]) reads a `Type` and documents it; its doc comment is its description.
macro_rules! body {
    (
        $(#[doc = $doc:literal])*
        #[schema(name = $schema:literal $(, example = $example:tt)?)]
        $vis:vis struct $ty:ident {
            $(
                $(#[doc = $fdoc:literal])*
                $field:ident: $out:ty = $kind:expr,
            )*
        }
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Default, PartialEq)]
        $vis struct $ty {
            $( $(#[doc = $fdoc])* pub $field: Option<$out>, )*
        }

        impl $ty {
            /// Reads every field, recording each one's errors in `input`.
            pub fn read(input: &mut $crate::domain::Input<'_>, limits: &$crate::config::Limits) -> Self {
                use $crate::domain::wire::FieldKind as _;
                Self { $( $field: ($kind).read(input, stringify!($field), false, limits), )* }
            }

            /// Reads a whole body: the body, or every field's errors at once.
            pub fn parse(
                body: &serde_json::Value,
                mode: $crate::domain::Mode,
                limits: &$crate::config::Limits,
            ) -> $crate::error::Result<Self> {
                let mut input = $crate::domain::Input::new(body, mode)?;
                let read = Self::read(&mut input, limits);
                input.finish()?;
                Ok(read)
            }
        }

        impl utoipa::PartialSchema for $ty {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                use $crate::domain::wire::FieldKind as _;
                let limits = &$crate::config::Limits::default();
                let mut object = utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::Object)
                    .description($crate::domain::wire::description(&[$($doc),*]));
                $(
                    let kind = $kind;
                    object = object.property(
                        stringify!($field),
                        $crate::domain::wire::described(kind.schema(limits), &[$($fdoc),*]),
                    );
                    if kind.is_required() {
                        object = object.required(stringify!($field));
                    }
                )*
                // `example`, as utoipa's derive writes it (3.1 prefers `examples`; the document keeps its shape).
                #[allow(deprecated)]
                {
                    $( object = object.example(Some(serde_json::json!($example))); )?
                }
                object.into()
            }
        }

        impl utoipa::ToSchema for $ty {
            fn name() -> std::borrow::Cow<'static, str> {
                $crate::domain::wire::name($schema)
            }

            fn schemas(schemas: &mut $crate::domain::wire::Schemas) {
                use $crate::domain::wire::FieldKind as _;
                $( ($kind).schemas(schemas); )*
            }
        }
    };
}

pub(crate) use {body, choice};

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use utoipa::PartialSchema;

    use super::*;
    use crate::domain::Mode;
    use crate::error::Error;

    body! {
        /// A body for these tests.
        #[schema(name = "Probe", example = {"name": "abc"})]
        struct Probe {
            /// At most 3 characters.
            name: String = Text::new().max(|_| 3).required(),
            /// At most the message bound.
            note: String = Text::new().blank().max(|limits| limits.message_chars),
            owner: Option<i64> = i64::NULLABLE_PK,
            flag: bool = Bool,
        }
    }

    fn errors(body: Value, mode: Mode) -> Value {
        match Probe::parse(&body, mode, &Limits::default()) {
            Err(Error::Validation(errors)) => errors.to_json(),
            other => panic!("expected field errors, got {other:?}"),
        }
    }

    #[test]
    fn a_declared_body_reports_every_invalid_field_at_once_with_drfs_messages() {
        let e = errors(json!({"note": 5, "owner": "x", "flag": "maybe", "unknown": 1}), Mode::Create);
        assert_eq!(
            e,
            json!({
                "name": ["This field is required."],
                "owner": ["Incorrect type. Expected pk value, received str."],
                "flag": ["Must be a valid boolean."],
            })
        );
        assert_eq!(
            errors(json!({"name": "abcd"}), Mode::Patch),
            json!({"name": ["Ensure this field has no more than 3 characters."]})
        );
        let read = Probe::parse(&json!({"owner": null, "flag": "true"}), Mode::Patch, &Limits::default()).unwrap();
        assert_eq!(read, Probe { name: None, note: None, owner: Some(None), flag: Some(true) });
    }

    #[test]
    fn a_declared_body_documents_the_bounds_it_checks() {
        let schema = serde_json::to_value(Probe::schema()).unwrap();
        assert_eq!(
            schema["properties"]["name"],
            json!({"type": "string", "maxLength": 3, "description": "At most 3 characters."})
        );
        assert_eq!(schema["properties"]["note"]["maxLength"], Limits::default().message_chars);
        assert_eq!(schema["properties"]["owner"]["type"], json!(["integer", "null"]));
        assert_eq!(schema["required"], json!(["name"]));
        assert_eq!(schema["description"], "A body for these tests.");
        assert_eq!(schema["example"], json!({"name": "abc"}));
    }
}
