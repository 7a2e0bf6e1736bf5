//! The proxy's own users: the default user's password (like `requirepass`) and named users.
//! Clients authenticate against these, never against the backend's credentials.

use crate::config::UserConfig;

#[derive(Debug, Clone, Default)]
pub struct Users {
    default_password: Option<Vec<u8>>,
    named: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Users {
    pub fn new(default_password: Option<&str>, named: &[UserConfig]) -> Self {
        Users {
            default_password: default_password.map(|p| p.as_bytes().to_vec()),
            named: named
                .iter()
                .map(|u| (u.name.as_bytes().to_vec(), u.password.as_bytes().to_vec()))
                .collect(),
        }
    }

    /// Whether a new connection must authenticate before running commands.
    pub fn auth_required(&self) -> bool {
        self.default_password.is_some()
    }

    pub fn has_default_password(&self) -> bool {
        self.default_password.is_some()
    }

    /// Checks a user name (None = default) and password, in constant time per candidate.
    pub fn check(&self, user: Option<&[u8]>, password: &[u8]) -> bool {
        match user {
            None | Some(b"default") => match &self.default_password {
                Some(p) => ct_eq(p, password),
                // Redis: the default user without a password accepts any password
                // (only reachable through `AUTH default x` / HELLO AUTH).
                None => true,
            },
            Some(name) => self
                .named
                .iter()
                .any(|(n, p)| n.as_slice() == name && ct_eq(p, password)),
        }
    }
}

/// Compares without returning early on the first differing byte.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_and_named_users() {
        let u = Users::new(
            Some("pw"),
            &[UserConfig {
                name: "app".into(),
                password: "s3".into(),
            }],
        );
        assert!(u.auth_required());
        assert!(u.check(None, b"pw"));
        assert!(u.check(Some(b"default"), b"pw"));
        assert!(!u.check(None, b"pW"));
        assert!(u.check(Some(b"app"), b"s3"));
        assert!(!u.check(Some(b"app"), b"pw"));
        assert!(!u.check(Some(b"nobody"), b"s3"));
    }
}
