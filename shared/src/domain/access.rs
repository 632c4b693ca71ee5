//! Who is calling, and the access rules every read and write applies: what a caller sees, and what it may
//! change. The bearer-token extractor that produces a [`Caller`] is HTTP's (`http::extract`).

use super::ids::UserId;
use crate::error::{Error, Result};

/// An authenticated user, as one request sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub id: UserId,
    pub username: String,
    pub is_staff: bool,
    /// The token this request came with (logout revokes it).
    pub token_id: Option<i64>,
}

impl Caller {
    /// Lambent itself (the CLI, migrations, tests): sees and changes everything.
    pub fn system() -> Self {
        Self { id: UserId(0), username: "system".into(), is_staff: true, token_id: None }
    }

    /// Agents, tools and templates: one's own, plus the global ones (no owner).
    pub fn sees(&self, owner: Option<UserId>) -> bool {
        self.is_staff || owner.is_none() || owner == Some(self.id)
    }

    /// Sessions and what hangs off them: one's own only.
    pub fn sees_private(&self, owner: Option<UserId>) -> bool {
        self.is_staff || owner == Some(self.id)
    }

    pub fn may_change(&self, owner: Option<UserId>) -> bool {
        self.is_staff || owner == Some(self.id)
    }

    /// 404 for what the caller cannot see (no existence leak), 403 for what it sees but may not change.
    pub fn check_change(&self, owner: Option<UserId>) -> Result<()> {
        if !self.sees(owner) {
            Err(Error::NotFound)
        } else if !self.may_change(owner) {
            Err(Error::Forbidden)
        } else {
            Ok(())
        }
    }

    /// Who owns what the caller creates: itself, unless staff named an owner (`null` = global).
    pub fn owner_for(&self, requested: Option<Option<UserId>>) -> Option<UserId> {
        match requested {
            Some(owner) if self.is_staff => owner,
            _ => Some(self.id).filter(|_| self.id != UserId(0)),
        }
    }

    pub fn require_staff(&self) -> Result<()> {
        if self.is_staff { Ok(()) } else { Err(Error::Forbidden) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_follows_ownership() {
        let alice = Caller { id: UserId(1), username: "alice".into(), is_staff: false, token_id: None };
        let (one, two) = (Some(UserId(1)), Some(UserId(2)));
        assert!(alice.sees(None) && alice.sees(one) && !alice.sees(two));
        assert!(!alice.sees_private(None));
        assert!(matches!(alice.check_change(None), Err(Error::Forbidden)));
        assert!(matches!(alice.check_change(two), Err(Error::NotFound)));
        assert!(alice.check_change(one).is_ok());
        assert!(Caller::system().check_change(two).is_ok());
    }
}
