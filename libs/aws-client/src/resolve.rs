//! Static credentials, region and endpoint from flags, the environment and the AWS shared
//! files, in the AWS CLI's order.

use std::path::{Path, PathBuf};

use crate::ini::{parse_ini, read_ini, Ini, Section};
use crate::AwsClientError;

/// Hestia's HTTP endpoint when neither a flag nor the profile's `endpoint_url` names one.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8080";
pub const DEFAULT_REGION: &str = "us-east-1";
pub const DEFAULT_PROFILE: &str = "default";

/// Static AWS credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Temporary credentials' session token (sent as `x-amz-security-token`).
    pub session_token: Option<String>,
}

/// The process environment that credential, region and endpoint resolution read (empty
/// variables count as unset).
#[derive(Debug, Clone, Default)]
pub struct AwsEnv {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub profile: Option<String>,
    pub region: Option<String>,
    pub default_region: Option<String>,
    pub credentials_file: Option<PathBuf>,
    pub config_file: Option<PathBuf>,
    pub home: Option<PathBuf>,
}

impl AwsEnv {
    pub fn from_process() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Self {
            access_key_id: var("AWS_ACCESS_KEY_ID"),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
            session_token: var("AWS_SESSION_TOKEN"),
            profile: var("AWS_PROFILE"),
            region: var("AWS_REGION"),
            default_region: var("AWS_DEFAULT_REGION"),
            credentials_file: var("AWS_SHARED_CREDENTIALS_FILE").map(PathBuf::from),
            config_file: var("AWS_CONFIG_FILE").map(PathBuf::from),
            home: std::env::home_dir(),
        }
    }

    /// The shared credentials file: AWS_SHARED_CREDENTIALS_FILE, else `~/.aws/credentials`.
    pub fn credentials_path(&self) -> Option<PathBuf> {
        self.aws_file(&self.credentials_file, "credentials")
    }

    /// The config file: AWS_CONFIG_FILE, else `~/.aws/config`.
    pub fn config_path(&self) -> Option<PathBuf> {
        self.aws_file(&self.config_file, "config")
    }

    /// `explicit`, else `~/.aws/<name>`.
    fn aws_file(&self, explicit: &Option<PathBuf>, name: &str) -> Option<PathBuf> {
        explicit
            .clone()
            .or_else(|| self.home.as_ref().map(|h| h.join(".aws").join(name)))
    }
}

/// Where requests go and how they are signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub endpoint: String,
    pub region: String,
    pub credentials: AwsCredentials,
}

/// Endpoint, region and credentials from the flags (`endpoint` includes HESTIA_ENDPOINT), the
/// environment and the AWS shared files, in the AWS CLI's order. An explicit `profile` skips
/// the environment's keys; AWS_PROFILE does not.
pub fn resolve(
    endpoint: Option<&str>,
    profile: Option<&str>,
    region: Option<&str>,
    env: &AwsEnv,
) -> Result<Target, AwsClientError> {
    let name = profile
        .or(env.profile.as_deref())
        .unwrap_or(DEFAULT_PROFILE);
    let credentials_path = env.credentials_path();
    let config_path = env.config_path();
    let credentials_ini = read_ini(credentials_path.as_deref())?;
    let config_ini = read_ini(config_path.as_deref())?;
    let credentials_section = credentials_ini.get(name);
    let (config_label, config_section) = config_section(&config_ini, name);
    let credentials_place = format!("[{name}] in {}", describe(&credentials_path));
    let config_place = format!("{config_label} in {}", describe(&config_path));

    let mut found = match profile {
        None => env_credentials(env)?,
        Some(_) => None,
    };
    if found.is_none() {
        found = section_credentials(credentials_section, &credentials_place)?;
    }
    if found.is_none() {
        found = section_credentials(config_section, &config_place)?;
    }
    let Some(credentials) = found else {
        if let Some(key) = config_section.and_then(unsupported_source) {
            return Err(AwsClientError::UnsupportedSource {
                place: config_place,
                key,
            });
        }
        let env_place = match profile {
            None => "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ",
            Some(_) => "",
        };
        return Err(AwsClientError::NoCredentials {
            places: format!("{env_place}{credentials_place} and {config_place}"),
        });
    };

    let region = region
        .map(str::to_string)
        .or_else(|| env.region.clone())
        .or_else(|| env.default_region.clone())
        .or_else(|| ini_value(config_section, "region"))
        .or_else(|| ini_value(credentials_section, "region"))
        .unwrap_or_else(|| DEFAULT_REGION.to_string());
    let endpoint = endpoint
        .map(str::to_string)
        .or_else(|| ini_value(config_section, "endpoint_url"))
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
    Ok(Target {
        endpoint,
        region,
        credentials,
    })
}

/// The credentials of `profile` in the shared credentials file at `path` alone (no
/// environment, no config file); the file must exist.
pub fn file_credentials(path: &Path, profile: &str) -> Result<AwsCredentials, AwsClientError> {
    let text = std::fs::read_to_string(path).map_err(|error| AwsClientError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let ini = parse_ini(&text);
    let place = format!("[{profile}] in {}", path.display());
    section_credentials(ini.get(profile), &place)?
        .ok_or(AwsClientError::NoCredentials { places: place })
}

fn describe(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => p.display().to_string(),
        None => "~/.aws (no home directory)".to_string(),
    }
}

fn env_credentials(env: &AwsEnv) -> Result<Option<AwsCredentials>, AwsClientError> {
    match (&env.access_key_id, &env.secret_access_key) {
        (Some(id), Some(secret)) => Ok(Some(AwsCredentials {
            access_key_id: id.clone(),
            secret_access_key: secret.clone(),
            session_token: env.session_token.clone(),
        })),
        (None, None) => Ok(None),
        _ => Err(AwsClientError::PartialEnvCredentials),
    }
}

/// The config file's section of `profile`, with its label: `[profile P]`, or `[default]` (or
/// `[profile default]`) for the default profile.
fn config_section<'a>(ini: &'a Ini, profile: &str) -> (String, Option<&'a Section>) {
    let named = ini.get(&format!("profile {profile}"));
    if profile == DEFAULT_PROFILE {
        ("[default]".to_string(), ini.get(DEFAULT_PROFILE).or(named))
    } else {
        (format!("[profile {profile}]"), named)
    }
}

fn ini_value(section: Option<&Section>, key: &str) -> Option<String> {
    section?.get(key).filter(|v| !v.is_empty()).cloned()
}

fn section_credentials(
    section: Option<&Section>,
    place: &str,
) -> Result<Option<AwsCredentials>, AwsClientError> {
    match (
        ini_value(section, "aws_access_key_id"),
        ini_value(section, "aws_secret_access_key"),
    ) {
        (Some(id), Some(secret)) => Ok(Some(AwsCredentials {
            access_key_id: id,
            secret_access_key: secret,
            session_token: ini_value(section, "aws_session_token"),
        })),
        (None, None) => Ok(None),
        _ => Err(AwsClientError::PartialCredentials {
            place: place.to_string(),
        }),
    }
}

/// A credential source of the AWS CLI that this client does not implement.
fn unsupported_source(section: &Section) -> Option<&'static str> {
    [
        "role_arn",
        "credential_process",
        "sso_session",
        "sso_start_url",
    ]
    .into_iter()
    .find(|k| section.contains_key(*k))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An environment whose AWS files are `credentials` and `config` in a temp dir.
    fn files(credentials: &str, config: &str) -> (tempfile::TempDir, AwsEnv) {
        let dir = tempfile::tempdir().unwrap();
        let (c, f) = (dir.path().join("credentials"), dir.path().join("config"));
        std::fs::write(&c, credentials).unwrap();
        std::fs::write(&f, config).unwrap();
        let env = AwsEnv {
            credentials_file: Some(c),
            config_file: Some(f),
            ..AwsEnv::default()
        };
        (dir, env)
    }

    pub(crate) fn creds(id: &str, secret: &str, token: Option<&str>) -> AwsCredentials {
        AwsCredentials {
            access_key_id: id.into(),
            secret_access_key: secret.into(),
            session_token: token.map(str::to_string),
        }
    }

    const CREDENTIALS: &str =
        "[default]\naws_access_key_id = AKDEF\naws_secret_access_key = sdef\n\
        [ops]\naws_access_key_id = AKOPS\naws_secret_access_key = sops\naws_session_token = tops\n\
        region = ap-south-1\n";
    const CONFIG: &str = "[default]\nregion = eu-central-1\n[profile ops]\n\
        endpoint_url = http://ops:9090\n[profile cfg]\naws_access_key_id = AKCFG\n\
        aws_secret_access_key = scfg\n[profile sso]\nsso_session = corp\n";

    #[test]
    fn credentials_come_from_env_then_credentials_then_config() {
        let (_dir, mut env) = files(CREDENTIALS, CONFIG);
        let t = resolve(None, None, None, &env).unwrap();
        assert_eq!(t.credentials, creds("AKDEF", "sdef", None));
        assert_eq!(t.region, "eu-central-1");
        assert_eq!(t.endpoint, DEFAULT_ENDPOINT);

        env.access_key_id = Some("AKENV".into());
        env.secret_access_key = Some("senv".into());
        env.session_token = Some("tenv".into());
        let t = resolve(None, None, None, &env).unwrap();
        assert_eq!(t.credentials, creds("AKENV", "senv", Some("tenv")));

        // --profile skips the environment's keys; AWS_PROFILE does not.
        let t = resolve(None, Some("ops"), None, &env).unwrap();
        assert_eq!(t.credentials, creds("AKOPS", "sops", Some("tops")));
        assert_eq!(t.region, "ap-south-1");
        assert_eq!(t.endpoint, "http://ops:9090");
        env.profile = Some("ops".into());
        let t = resolve(None, None, None, &env).unwrap();
        assert_eq!(t.credentials, creds("AKENV", "senv", Some("tenv")));
        assert_eq!(t.endpoint, "http://ops:9090");

        let t = resolve(Some("http://flag:1"), Some("cfg"), None, &env).unwrap();
        assert_eq!(t.credentials, creds("AKCFG", "scfg", None));
        assert_eq!(t.endpoint, "http://flag:1");

        env.secret_access_key = None;
        let err = resolve(None, None, None, &env).unwrap_err();
        assert!(err.to_string().contains("set both"), "{err}");
    }

    #[test]
    fn region_precedence() {
        let (_dir, mut env) = files(CREDENTIALS, CONFIG);
        let region = |env: &AwsEnv, flag: Option<&str>, profile: Option<&str>| {
            resolve(None, profile, flag, env).unwrap().region
        };
        assert_eq!(region(&env, None, Some("cfg")), DEFAULT_REGION);
        assert_eq!(region(&env, None, Some("ops")), "ap-south-1");
        assert_eq!(region(&env, None, None), "eu-central-1");
        env.default_region = Some("us-west-1".into());
        assert_eq!(region(&env, None, None), "us-west-1");
        env.region = Some("us-west-2".into());
        assert_eq!(region(&env, None, None), "us-west-2");
        assert_eq!(region(&env, Some("sa-east-1"), None), "sa-east-1");
    }

    #[test]
    fn missing_credentials_name_where_they_were_looked_for() {
        let (dir, env) = files(CREDENTIALS, CONFIG);
        let err = resolve(None, Some("nope"), None, &env)
            .unwrap_err()
            .to_string();
        let creds_path = dir.path().join("credentials");
        let config_path = dir.path().join("config");
        assert!(err.contains("no AWS credentials found"), "{err}");
        assert!(
            err.contains(&format!("[nope] in {}", creds_path.display())),
            "{err}"
        );
        assert!(
            err.contains(&format!("[profile nope] in {}", config_path.display())),
            "{err}"
        );
        assert!(!err.contains("AWS_ACCESS_KEY_ID"), "{err}");

        let err = resolve(None, Some("sso"), None, &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("'sso_session'"), "{err}");

        // No files at all (they do not exist under this home).
        let env = AwsEnv {
            home: Some(dir.path().join("home")),
            ..AwsEnv::default()
        };
        let err = resolve(None, None, None, &env).unwrap_err().to_string();
        assert!(
            err.contains("AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"),
            "{err}"
        );
        assert!(err.contains("[default] in "), "{err}");
        assert!(err.contains(".aws/credentials"), "{err}");

        let (_dir, env) = files("[default]\naws_access_key_id = AK\n", "");
        let err = resolve(None, None, None, &env).unwrap_err().to_string();
        assert!(err.contains("needs both"), "{err}");
    }

    #[test]
    fn default_profile_may_be_profile_default_in_config() {
        let (_dir, env) = files(
            "",
            "[profile default]\naws_access_key_id = AK\naws_secret_access_key = s\n",
        );
        let t = resolve(None, None, None, &env).unwrap();
        assert_eq!(t.credentials, creds("AK", "s", None));
    }

    #[test]
    fn file_credentials_read_one_profile_of_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        std::fs::write(
            &path,
            "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s1\n\n\
             # comment\n[load]\naws_access_key_id=AKIDLOAD\naws_secret_access_key=s2\n\
             aws_session_token = tok\n",
        )
        .unwrap();
        let c = file_credentials(&path, "load").unwrap();
        assert_eq!(c, creds("AKIDLOAD", "s2", Some("tok")));
        let c = file_credentials(&path, "default").unwrap();
        assert_eq!(c.secret_access_key, "s1");
        let err = file_credentials(&path, "missing").unwrap_err().to_string();
        assert!(err.contains("[missing] in "), "{err}");
        let err = file_credentials(&dir.path().join("nope"), "default").unwrap_err();
        assert!(err.to_string().starts_with("cannot read "), "{err}");
    }
}
