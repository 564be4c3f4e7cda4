//! Short-lived bearer tokens for clients without SigV4 (an OAuth2 client-credentials grant
//! exchanges an access key pair for one): `hst1.<base64url(claims JSON)>.<base64url(HMAC)>`,
//! signed with a key derived from the master key, so any node holding it can verify them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::crypto::{constant_time_eq, hmac_sha256};
use crate::secrets::MasterKey;

const PREFIX: &str = "hst1.";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The access key the token was issued for (its user's policies apply).
    pub access_key_id: String,
    pub account: String,
    /// Seconds since the epoch.
    pub issued_at: i64,
    pub expires_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token expired at {0} (seconds since the epoch)")]
    Expired(i64),
}

pub struct TokenIssuer {
    key: [u8; 32],
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenIssuer(redacted)")
    }
}

impl TokenIssuer {
    pub fn new(master: &MasterKey) -> TokenIssuer {
        TokenIssuer {
            key: master.derive("hestia bearer tokens v1"),
        }
    }

    fn mac(&self, signed: &str) -> [u8; 32] {
        hmac_sha256(&self.key, signed.as_bytes())
    }

    pub fn issue(&self, claims: &Claims) -> String {
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
        let signed = format!("{PREFIX}{body}");
        let mac = URL_SAFE_NO_PAD.encode(self.mac(&signed));
        format!("{signed}.{mac}")
    }

    /// The claims of a token this issuer (or one with the same master key) signed, unexpired at
    /// `now_s`.
    pub fn verify(&self, token: &str, now_s: i64) -> Result<Claims, TokenError> {
        let (signed, mac) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let body = signed.strip_prefix(PREFIX).ok_or(TokenError::Malformed)?;
        let mac = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| TokenError::Malformed)?;
        if !constant_time_eq(&mac, &self.mac(signed)) {
            return Err(TokenError::BadSignature);
        }
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(body)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if now_s >= claims.expires_at {
            return Err(TokenError::Expired(claims.expires_at));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            access_key_id: "AKIDEXAMPLE".into(),
            account: "123456789012".into(),
            issued_at: 1_000,
            expires_at: 4_600,
        }
    }

    #[test]
    fn issue_verify_expire_and_refuse_forgeries() {
        let master = MasterKey::generate();
        let issuer = TokenIssuer::new(&master);
        let token = issuer.issue(&claims());
        assert!(token.starts_with("hst1."));
        assert_eq!(issuer.verify(&token, 1_001).unwrap(), claims());
        // Another node with the same master key verifies it too.
        assert!(
            TokenIssuer::new(&MasterKey::parse(&master.to_hex()).unwrap())
                .verify(&token, 1_001)
                .is_ok()
        );
        assert_eq!(
            issuer.verify(&token, 4_600),
            Err(TokenError::Expired(4_600))
        );
        assert_eq!(
            TokenIssuer::new(&MasterKey::generate()).verify(&token, 1_001),
            Err(TokenError::BadSignature)
        );
        // Claims changed without re-signing (a longer expiry).
        let mut longer = claims();
        longer.expires_at = 999_999;
        let forged_body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&longer).unwrap());
        let mac = token.rsplit_once('.').unwrap().1;
        let forged = format!("hst1.{forged_body}.{mac}");
        assert_eq!(issuer.verify(&forged, 1_001), Err(TokenError::BadSignature));
        assert_eq!(issuer.verify("nonsense", 0), Err(TokenError::Malformed));
        assert_eq!(issuer.verify("hst1.e30.", 0), Err(TokenError::BadSignature));
    }
}
