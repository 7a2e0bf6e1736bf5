//! Redis URLs: `redis://[[user]:pass@]host[:port][/db]` and `rediss://` for TLS.
//!
//! Credentials are percent-decoded and kept as bytes; `Debug` never shows the password.

use std::fmt;

use crate::UrlError;

#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub username: Option<Vec<u8>>,
    pub password: Option<Vec<u8>>,
    pub db: u32,
}

impl RedisUrl {
    pub fn parse(s: &str) -> Result<Self, UrlError> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("redis://") {
            (false, r)
        } else if let Some(r) = s.strip_prefix("rediss://") {
            (true, r)
        } else {
            return Err(UrlError::Scheme);
        };
        // The authority ends at the first '/', '?' or '#'; the password may hold '@', so the
        // user-info ends at the LAST '@' of the authority.
        let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(auth_end);
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(ui) => match ui.split_once(':') {
                Some((u, p)) => {
                    let u = percent_decode(u)?;
                    (
                        if u.is_empty() { None } else { Some(u) },
                        Some(percent_decode(p)?),
                    )
                }
                // `redis://secret@host`: a lone user-info is the password, as redis-cli reads it.
                None => (None, Some(percent_decode(ui)?)),
            },
        };
        let (host, port) = split_host_port(hostport)?;
        let path = path.split(['?', '#']).next().unwrap_or("");
        let db = match path.trim_start_matches('/') {
            "" => 0,
            d => d.parse::<u32>().map_err(|_| UrlError::Db)?,
        };
        Ok(RedisUrl {
            host,
            port,
            tls,
            username,
            password,
            db,
        })
    }

    /// `host:port`, for connecting and for messages (never includes credentials).
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// `host:port` or `[v6]:port` (the port 6379 when left out).
pub(crate) fn split_host_port(hp: &str) -> Result<(String, u16), UrlError> {
    if hp.is_empty() {
        return Err(UrlError::NoHost);
    }
    // [v6]:port
    if let Some(rest) = hp.strip_prefix('[') {
        let end = rest.find(']').ok_or(UrlError::NoHost)?;
        let host = &rest[..end];
        let port = match &rest[end + 1..] {
            "" => 6379,
            p => p
                .strip_prefix(':')
                .ok_or(UrlError::Port)?
                .parse()
                .map_err(|_| UrlError::Port)?,
        };
        return Ok((host.to_string(), port));
    }
    match hp.rsplit_once(':') {
        Some((h, p)) => {
            if h.is_empty() {
                return Err(UrlError::NoHost);
            }
            let port: u16 = p.parse().map_err(|_| UrlError::Port)?;
            if port == 0 {
                return Err(UrlError::Port);
            }
            Ok((h.to_string(), port))
        }
        None => Ok((hp.to_string(), 6379)),
    }
}

fn percent_decode(s: &str) -> Result<Vec<u8>, UrlError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or(UrlError::Encoding)?;
            let hi = (hex[0] as char).to_digit(16).ok_or(UrlError::Encoding)?;
            let lo = (hex[1] as char).to_digit(16).ok_or(UrlError::Encoding)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Shows the URL with the password masked.
impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "rediss" } else { "redis" };
        write!(f, "{scheme}://")?;
        match (&self.username, &self.password) {
            (Some(u), Some(_)) => write!(f, "{}:***@", String::from_utf8_lossy(u))?,
            (None, Some(_)) => write!(f, ":***@")?,
            _ => {}
        }
        write!(f, "{}", self.addr())?;
        if self.db != 0 {
            write!(f, "/{}", self.db)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
