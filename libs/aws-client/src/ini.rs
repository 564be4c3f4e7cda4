//! The AWS shared files' INI dialect.

use std::collections::HashMap;
use std::path::Path;

use crate::AwsClientError;

/// An INI file: section name (inner whitespace collapsed: `[profile  x]` is `profile x`) →
/// key → value.
pub type Ini = HashMap<String, Section>;
pub type Section = HashMap<String, String>;

/// The AWS files' INI dialect: `[section]` headers, `key = value` lines, `#` and `;` comment
/// lines, and indented sub-settings under a key with an empty value (skipped).
pub fn parse_ini(text: &str) -> Ini {
    let mut ini = Ini::new();
    let mut section: Option<String> = None;
    let mut nested = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with(['#', ';']) {
            continue;
        }
        if let Some(inner) = trimmed.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            let name = inner.split_whitespace().collect::<Vec<_>>().join(" ");
            ini.entry(name.clone()).or_default();
            section = Some(name);
            nested = false;
            continue;
        }
        if nested && line.starts_with([' ', '\t']) {
            continue;
        }
        let (Some(s), Some((key, value))) = (&section, trimmed.split_once('=')) else {
            continue;
        };
        let value = value.trim();
        nested = value.is_empty();
        ini.entry(s.clone())
            .or_default()
            .insert(key.trim().to_string(), value.to_string());
    }
    ini
}

/// The INI file at `path`; a missing file (or no path) reads as empty.
pub fn read_ini(path: Option<&Path>) -> Result<Ini, AwsClientError> {
    let Some(path) = path else {
        return Ok(Ini::new());
    };
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(parse_ini(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ini::new()),
        Err(error) => Err(AwsClientError::Read {
            path: path.to_path_buf(),
            error,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_comments_whitespace_and_nested_settings() {
        let ini = parse_ini(
            "# top comment\nstray = ignored\n[default]\naws_access_key_id=AK1\n  ; indented comment\n\
             aws_secret_access_key   =   secret = with equals  \n\
             [profile   ops ]\nregion = eu-west-1\ns3 =\n  region = nested\n  max = 10\n\
             endpoint_url = http://ops:8080\n",
        );
        let d = &ini["default"];
        assert_eq!(d["aws_access_key_id"], "AK1");
        assert_eq!(d["aws_secret_access_key"], "secret = with equals");
        assert_eq!(d.len(), 2);
        let ops = &ini["profile ops"];
        assert_eq!(ops["region"], "eu-west-1");
        assert_eq!(ops["endpoint_url"], "http://ops:8080");
        assert!(!ops.contains_key("max"));
        assert_eq!(ini.len(), 2);
    }
}
