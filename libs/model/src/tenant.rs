use std::fmt;

use crate::ModelError;

/// A workspace id as it appears in public URLs: `ws-` followed by a UUID-like string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkspaceId(String);

impl WorkspaceId {
    /// Validates a workspace id taken from a URL path. Only `ws-` plus 1..=64 of `[a-zA-Z0-9-]`
    /// is accepted, so ids can never contain path separators or dots.
    pub fn parse(s: &str) -> Result<Self, ModelError> {
        let rest = s
            .strip_prefix("ws-")
            .ok_or_else(|| ModelError::InvalidWorkspaceId(s.to_string()))?;
        if rest.is_empty()
            || rest.len() > 64
            || !rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(ModelError::InvalidWorkspaceId(s.to_string()));
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkspaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id every storage key and internal call carries. In AMP terms `<account>_<workspace>`;
/// in dev mode (no control plane) the workspace id alone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    pub const MAX_LEN: usize = 150;

    pub fn parse(s: &str) -> Result<Self, ModelError> {
        if s.is_empty()
            || s.len() > Self::MAX_LEN
            || !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ModelError::InvalidTenantId(s.to_string()));
        }
        Ok(Self(s.to_string()))
    }

    /// The tenant of a workspace owned by `account` (`<account>_<workspace>`).
    pub fn for_workspace(account: Option<&str>, ws: &WorkspaceId) -> Result<Self, ModelError> {
        match account {
            Some(a) => Self::parse(&format!("{a}_{ws}")),
            None => Self::parse(ws.as_str()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_ids() {
        assert!(WorkspaceId::parse("ws-3f1c2a9e-1111-4b2b-9c3d-0123456789ab").is_ok());
        assert!(WorkspaceId::parse("ws-abc").is_ok());
        for bad in [
            "",
            "ws-",
            "abc",
            "ws-../x",
            "ws-a/b",
            "ws-a.b",
            &format!("ws-{}", "a".repeat(65)),
        ] {
            assert!(WorkspaceId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tenant_ids() {
        let ws = WorkspaceId::parse("ws-1").unwrap();
        assert_eq!(
            TenantId::for_workspace(Some("123"), &ws).unwrap().as_str(),
            "123_ws-1"
        );
        assert_eq!(TenantId::for_workspace(None, &ws).unwrap().as_str(), "ws-1");
        assert!(TenantId::parse("a/b").is_err());
        assert!(TenantId::parse("").is_err());
    }
}
