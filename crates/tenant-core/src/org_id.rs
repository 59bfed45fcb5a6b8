//! [`OrgId`], the id of one organization (tenant), and its parse errors.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// The id of one organization: a UUID that is never nil.
///
/// ```
/// use tenant_core::OrgId;
///
/// let org: OrgId = "0191f5a6-8e1c-7c3a-9d4e-1f2a3b4c5d6e".parse()?;
/// assert_eq!(org.to_string(), "0191f5a6-8e1c-7c3a-9d4e-1f2a3b4c5d6e");
/// assert!("00000000-0000-0000-0000-000000000000".parse::<OrgId>().is_err());
/// assert!("acme".parse::<OrgId>().is_err());
/// # Ok::<(), tenant_core::OrgIdError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrgId(Uuid);

/// Why a value is not an [`OrgId`]. The message never repeats the input, which may be
/// hostile or carry data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrgIdError {
    /// The input was empty or only whitespace.
    #[error(
        "org id is empty: pass the organization's UUID, e.g. 0191f5a6-8e1c-7c3a-9d4e-1f2a3b4c5d6e"
    )]
    Empty,
    /// The input is not a UUID.
    #[error(
        "org id is not a UUID (got {len} characters): pass the organization's UUID in the \
         hyphenated form, e.g. 0191f5a6-8e1c-7c3a-9d4e-1f2a3b4c5d6e"
    )]
    Malformed {
        /// Length of the rejected input, in characters.
        len: usize,
    },
    /// The nil UUID (all zeros), which is never an org: it is what a forgotten default looks like.
    #[error(
        "org id is the nil UUID, which never names an organization: look for an unset or defaulted id"
    )]
    Nil,
}

impl OrgId {
    /// Wraps `uuid`, refusing the nil UUID.
    pub fn new(uuid: Uuid) -> Result<Self, OrgIdError> {
        if uuid.is_nil() {
            Err(OrgIdError::Nil)
        } else {
            Ok(Self(uuid))
        }
    }

    /// A fresh random org id (UUIDv4), for tests and onboarding.
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }

    /// The UUID.
    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// The hyphenated lowercase form, the only form put into SQL text by this crate:
    /// 36 characters of `[0-9a-f-]`, so it cannot break out of a string literal.
    pub(crate) fn sql_literal(&self) -> String {
        self.0.hyphenated().to_string()
    }
}

impl FromStr for OrgId {
    type Err = OrgIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(OrgIdError::Empty);
        }
        let uuid = Uuid::try_parse(s).map_err(|_| OrgIdError::Malformed {
            len: s.chars().count(),
        })?;
        Self::new(uuid)
    }
}

impl TryFrom<Uuid> for OrgId {
    type Error = OrgIdError;

    fn try_from(uuid: Uuid) -> Result<Self, Self::Error> {
        Self::new(uuid)
    }
}

impl From<OrgId> for Uuid {
    fn from(org: OrgId) -> Self {
        org.0
    }
}

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrgId({})", self.0.hyphenated())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_hyphenated_uuid_and_prints_it_back() {
        let text = "0191f5a6-8e1c-7c3a-9d4e-1f2a3b4c5d6e";
        let org: OrgId = text.parse().unwrap();
        assert_eq!(org.to_string(), text);
        assert_eq!(org.sql_literal(), text);
    }

    #[test]
    fn uppercase_and_simple_forms_normalize_to_lowercase_hyphenated() {
        let org: OrgId = "0191F5A68E1C7C3A9D4E1F2A3B4C5D6E".parse().unwrap();
        assert_eq!(org.sql_literal(), "0191f5a6-8e1c-7c3a-9d4e-1f2a3b4c5d6e");
    }

    #[test]
    fn rejects_empty_garbage_and_nil_with_distinct_errors() {
        assert_eq!("".parse::<OrgId>(), Err(OrgIdError::Empty));
        assert_eq!("   ".parse::<OrgId>(), Err(OrgIdError::Empty));
        assert_eq!(
            "acme".parse::<OrgId>(),
            Err(OrgIdError::Malformed { len: 4 })
        );
        assert_eq!(
            "00000000-0000-0000-0000-000000000000".parse::<OrgId>(),
            Err(OrgIdError::Nil)
        );
        assert_eq!(OrgId::new(Uuid::nil()), Err(OrgIdError::Nil));
    }

    #[test]
    fn injection_attempts_are_malformed_and_never_echoed() {
        let hostile = "0191f5a6-8e1c-7c3a-9d4e-1f2a3b4c5d6e', false); DROP TABLE invoices; --";
        let err = hostile.parse::<OrgId>().unwrap_err();
        assert!(matches!(err, OrgIdError::Malformed { .. }));
        assert!(!err.to_string().contains("DROP"), "{err}");
    }
}
