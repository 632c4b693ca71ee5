//! Ids of the things that meet on a turn's path — users, agents, sessions, messages, turns — one type each,
//! so one cannot be passed where another is meant (`store.get_session(caller, agent.id)` does not compile).
//!
//! On the wire each is what it always was: the number (or, for a turn, the text) itself (`serde(transparent)`);
//! the OpenAPI document keeps declaring it as such (`#[schema(value_type = i64)]` where a type shows one).
//! An id is made from a plain value only at an edge: a path segment (`FromStr`, see `http::extract::Id`), a
//! body field (`wire::Pk`), a stored row (`store`), or a new turn's id (`turn::start`).
//!
//! ```
//! use lambent::domain::{AgentId, SessionId};
//! fn messages_of(session: SessionId) -> i64 { session.0 }
//! assert_eq!(messages_of(SessionId(3)), 3);
//! ```
//! ```compile_fail
//! use lambent::domain::{AgentId, SessionId};
//! fn messages_of(session: SessionId) -> i64 { session.0 }
//! messages_of(AgentId(3)); // an agent's id where a session's is meant
//! ```
//!
//! # Layout
//! - [`Key`]: what a numeric id is made from and gives back.
//! - [`UserId`], [`AgentId`], [`SessionId`], [`MessageId`]: numeric primary keys.
//! - [`TurnId`]: a turn's id (text: a session lease's holder); [`FrameId`]: one of its frames, `<turn_id>:<seq>`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A numeric primary key: plain `i64` (the objects no other id meets) or one of the id types. A body field
/// holding one is `wire::KeyField`'s.
pub trait Key: Copy + fmt::Display + Sized + 'static {
    fn from_pk(pk: i64) -> Self;
    fn pk(self) -> i64;
}

impl Key for i64 {
    fn from_pk(pk: i64) -> Self {
        pk
    }

    fn pk(self) -> i64 {
        self
    }
}

macro_rules! int_id {
    ($($(#[doc = $doc:literal])* $name:ident;)*) => {$(
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl Key for $name {
            fn from_pk(pk: i64) -> Self {
                Self(pk)
            }

            fn pk(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        /// Reads a path segment: a decimal integer, as `i64` reads it.
        impl FromStr for $name {
            type Err = std::num::ParseIntError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map(Self)
            }
        }
    )*};
}

int_id! {
    /// A user (an owner of agents, tools, templates and sessions; who a token belongs to).
    UserId;
    /// An agent.
    AgentId;
    /// A conversation session.
    SessionId;
    /// One stored message of a session.
    MessageId;
}

/// A turn: the holder of its session's lease, and the first half of its frames' ids (`<turn_id>:<seq>`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TurnId(String);

impl TurnId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A new turn's id (`turn::start` makes it), or a stored or received one taken as it is (the store's rows, an
/// event id's first half).
impl From<String> for TurnId {
    fn from(id: String) -> Self {
        Self(id)
    }
}

impl From<&str> for TurnId {
    fn from(id: &str) -> Self {
        Self(id.to_owned())
    }
}

impl fmt::Display for TurnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for TurnId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

/// A frame's id, `<turn_id>:<seq>`: what a client names to resume a turn's events (`Last-Event-ID`, `?after=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameId {
    pub turn_id: TurnId,
    pub seq: i64,
}

impl FromStr for FrameId {
    type Err = crate::error::Error;

    /// Reads a client's cursor; anything else is a 400 on `after`.
    fn from_str(cursor: &str) -> crate::error::Result<Self> {
        cursor
            .rsplit_once(':')
            .and_then(|(turn, seq)| Some(Self { turn_id: turn.into(), seq: seq.parse().ok()? }))
            .ok_or_else(|| crate::error::Error::field("after", "An event id looks like \"<turn_id>:<seq>\"."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_reads_from_a_path_segment_as_its_number_and_nothing_else() {
        assert_eq!("42".parse::<SessionId>(), Ok(SessionId(42)));
        assert!("4x".parse::<SessionId>().is_err());
        assert!("".parse::<AgentId>().is_err());
        assert!("99999999999999999999".parse::<UserId>().is_err());
    }

    #[test]
    fn an_id_is_its_bare_value_on_the_wire() {
        assert_eq!(serde_json::to_string(&SessionId(7)).unwrap(), "7");
        assert_eq!(serde_json::from_str::<MessageId>("12").unwrap(), MessageId(12));
        assert_eq!(serde_json::to_string(&TurnId::from("abc")).unwrap(), "\"abc\"");
        assert_eq!(SessionId(3).to_string(), "3");
    }

    #[test]
    fn a_frame_id_splits_at_its_last_colon() {
        let id: FrameId = "turn_ab:cd:12".parse().unwrap();
        assert_eq!(id, FrameId { turn_id: TurnId::from("turn_ab:cd"), seq: 12 });
        for bad in ["turn_ab", "turn_ab:", "turn_ab:x", ""] {
            assert!(bad.parse::<FrameId>().is_err(), "{bad:?}");
        }
    }
}
