//! Secrets at rest: AES-256-GCM under a master key read from a file or an environment variable,
//! bound to a context (e.g. the access key id) so a sealed value cannot be moved to another
//! record. Neither the key nor a secret is ever printed by `Debug`.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;

const VERSION: &str = "v1.";
const NONCE_BYTES: usize = 12;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("master key: {0}")]
    MasterKey(String),
    #[error("sealed secret is malformed")]
    Malformed,
    /// Wrong key, wrong context, or a tampered value.
    #[error("sealed secret does not open with this master key")]
    Unopenable,
}

#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(redacted)")
    }
}

impl MasterKey {
    /// 32 bytes as 64 hex digits or as base64 (standard or URL-safe).
    pub fn parse(text: &str) -> Result<MasterKey, SecretError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|e| SecretError::MasterKey(e.to_string()))?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
                .map_err(|_| {
                    SecretError::MasterKey("expected 64 hex digits or base64 of 32 bytes".into())
                })?
        };
        let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            SecretError::MasterKey(format!("expected 32 bytes, got {}", b.len()))
        })?;
        Ok(MasterKey(key))
    }

    /// The key in `file` (which must not be readable by others), else in the environment
    /// variable `env`.
    pub fn load(file: Option<&Path>, env: &str) -> Result<MasterKey, SecretError> {
        if let Some(path) = file {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(path)
                    .map_err(|e| SecretError::MasterKey(format!("{}: {e}", path.display())))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    return Err(SecretError::MasterKey(format!(
                        "{} is readable by others (mode {:o}); chmod 600 it",
                        path.display(),
                        mode & 0o777
                    )));
                }
            }
            let text = std::fs::read_to_string(path)
                .map_err(|e| SecretError::MasterKey(format!("{}: {e}", path.display())))?;
            return Self::parse(&text);
        }
        match std::env::var(env) {
            Ok(v) => Self::parse(&v),
            Err(_) => Err(SecretError::MasterKey(format!(
                "authentication is on but no key is configured: set auth.master_key_file or {env} \
                 (the same key on every node), or auth.enabled = false"
            ))),
        }
    }

    /// The configured key: `file` if set, else the environment variable `env` if set, else
    /// (single-node) `default_file`, created when missing.
    pub fn resolve(
        file: Option<&Path>,
        env: &str,
        default_file: Option<&Path>,
    ) -> Result<MasterKey, SecretError> {
        match (file, std::env::var(env).is_ok(), default_file) {
            (Some(f), _, _) => Self::load(Some(f), env),
            (None, true, _) | (None, false, None) => Self::load(None, env),
            (None, false, Some(d)) => Self::load_or_create(d),
        }
    }

    /// The key in `path`, or a new one written there (mode 0600) when the file does not exist:
    /// a single-node start needs no key management.
    pub fn load_or_create(path: &Path) -> Result<MasterKey, SecretError> {
        if path.exists() {
            return Self::load(Some(path), "");
        }
        let key = Self::generate();
        let io = |e: std::io::Error| SecretError::MasterKey(format!("{}: {e}", path.display()));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(path).map_err(io)?;
        std::io::Write::write_all(&mut f, format!("{}\n", key.to_hex()).as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        Ok(key)
    }

    pub fn generate() -> MasterKey {
        let mut k = [0u8; 32];
        rand::rng().fill_bytes(&mut k);
        MasterKey(k)
    }

    /// Hex, for writing a generated key to a file.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// A key for another purpose derived from this one (HMAC-SHA256 of `purpose`).
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        crate::crypto::hmac_sha256(&self.0, purpose.as_bytes())
    }

    /// `v1.<base64url(nonce ‖ ciphertext ‖ tag)>`, authenticated together with `context`.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> String {
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.0));
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context,
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{VERSION}{}", URL_SAFE_NO_PAD.encode(out))
    }

    pub fn open(&self, sealed: &str, context: &[u8]) -> Result<Vec<u8>, SecretError> {
        let body = sealed.strip_prefix(VERSION).ok_or(SecretError::Malformed)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SecretError::Malformed)?;
        if bytes.len() < NONCE_BYTES + 16 {
            return Err(SecretError::Malformed);
        }
        let (nonce, ct) = bytes.split_at(NONCE_BYTES);
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.0))
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: context,
                },
            )
            .map_err(|_| SecretError::Unopenable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_refusals() {
        let k = MasterKey::generate();
        let sealed = k.seal(b"wJalrXUtnFEMI", b"AKIDEXAMPLE");
        assert!(!sealed.contains("wJalr"));
        assert_ne!(
            sealed,
            k.seal(b"wJalrXUtnFEMI", b"AKIDEXAMPLE"),
            "fresh nonce"
        );
        assert_eq!(k.open(&sealed, b"AKIDEXAMPLE").unwrap(), b"wJalrXUtnFEMI");
        assert_eq!(k.open(&sealed, b"AKIDOTHER"), Err(SecretError::Unopenable));
        assert_eq!(
            MasterKey::generate().open(&sealed, b"AKIDEXAMPLE"),
            Err(SecretError::Unopenable)
        );
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(k.open(&tampered, b"AKIDEXAMPLE").is_err());
        assert_eq!(k.open("v2.abc", b""), Err(SecretError::Malformed));
        assert_eq!(format!("{k:?}"), "MasterKey(redacted)");
    }

    #[test]
    fn master_keys_parse_and_load() {
        let k = MasterKey::generate();
        let again = MasterKey::parse(&k.to_hex()).unwrap();
        let sealed = k.seal(b"x", b"");
        assert_eq!(again.open(&sealed, b"").unwrap(), b"x");
        let b64 = base64::engine::general_purpose::STANDARD.encode(k.0);
        assert!(MasterKey::parse(&b64).is_ok());
        assert!(MasterKey::parse("00ff").is_err());
        assert_ne!(k.derive("tokens"), k.derive("other"));

        let dir = std::env::temp_dir().join(format!("hestia-mk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("master.key");
        std::fs::write(&file, k.to_hex()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = MasterKey::load(Some(&file), "UNSET_VAR")
            .unwrap_err()
            .to_string();
        assert!(e.contains("readable by others"), "{e}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(MasterKey::load(Some(&file), "UNSET_VAR").is_ok());
        let e = MasterKey::load(None, "HESTIA_TEST_SURELY_UNSET").unwrap_err();
        assert!(
            e.to_string()
                .contains("set auth.master_key_file or HESTIA_TEST_SURELY_UNSET"),
            "{e}"
        );
        // A single node creates its key once (0600) and finds the same one again.
        let created = dir.join("created.key");
        let first = MasterKey::load_or_create(&created).unwrap();
        let mode = std::fs::metadata(&created).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = MasterKey::resolve(None, "HESTIA_TEST_SURELY_UNSET", Some(&created)).unwrap();
        assert_eq!(first.to_hex(), again.to_hex());
        assert!(MasterKey::resolve(None, "HESTIA_TEST_SURELY_UNSET", None).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
