//! Verification keys and the algorithms taskql accepts.
//!
//! Better Auth's `jwt` plugin signs with EdDSA (Ed25519) by default and can be configured
//! for ES256, ES512, RS256 or PS256; secret-mode deployments use HS256. Those six are the
//! whole list. Each key is bound, when it is loaded, to the algorithms its type allows, so a
//! token cannot choose to have an RSA key checked as, say, an HMAC secret.
//!
//! `jsonwebtoken` (with aws-lc-rs) checks every signature except ES512, which it does not
//! implement; ES512 (ECDSA on P-521 with SHA-512) is checked with RustCrypto's `p521`.

use jsonwebtoken::{Algorithm, DecodingKey};
use p521::ecdsa::signature::Verifier as _;
use serde::Deserialize;

use super::AuthError;

/// An accepted JWS algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    HS256,
    EdDSA,
    ES256,
    ES512,
    RS256,
    PS256,
}

impl Alg {
    /// Parses a header's `alg`; `none` and everything unlisted are refused.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "HS256" => Self::HS256,
            "EdDSA" => Self::EdDSA,
            "ES256" => Self::ES256,
            "ES512" => Self::ES512,
            "RS256" => Self::RS256,
            "PS256" => Self::PS256,
            _ => return None,
        })
    }

    pub fn is_asymmetric(self) -> bool {
        self != Self::HS256
    }

    fn jsonwebtoken(self) -> Option<Algorithm> {
        Some(match self {
            Self::HS256 => Algorithm::HS256,
            Self::EdDSA => Algorithm::EdDSA,
            Self::ES256 => Algorithm::ES256,
            Self::RS256 => Algorithm::RS256,
            Self::PS256 => Algorithm::PS256,
            Self::ES512 => return None,
        })
    }
}

/// A key able to check signatures, with the algorithms it may be used with.
pub struct VerifyKey {
    kind: KeyKind,
    /// The algorithms this key may verify; decided by the key's type (and its JWK `alg`).
    algs: &'static [Alg],
}

enum KeyKind {
    Jwt(DecodingKey),
    P521(Box<p521::ecdsa::VerifyingKey>),
}

impl VerifyKey {
    pub fn hs256(secret: &[u8]) -> Self {
        Self {
            kind: KeyKind::Jwt(DecodingKey::from_secret(secret)),
            algs: &[Alg::HS256],
        }
    }

    /// Whether this key may verify tokens signed with `alg`.
    pub fn accepts(&self, alg: Alg) -> bool {
        self.algs.contains(&alg)
    }

    /// Checks `signature` (base64url, as it appears in the token) over `message` for a token
    /// whose header says `alg`.
    pub fn verify(&self, alg: Alg, message: &[u8], signature: &str) -> Result<(), AuthError> {
        if !self.accepts(alg) {
            return Err(AuthError::AlgorithmKeyMismatch);
        }
        match (&self.kind, alg.jsonwebtoken()) {
            (KeyKind::Jwt(key), Some(algorithm)) => {
                match jsonwebtoken::crypto::verify(signature, message, key, algorithm) {
                    Ok(true) => Ok(()),
                    Ok(false) | Err(_) => Err(AuthError::BadSignature),
                }
            }
            (KeyKind::P521(key), None) => {
                use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
                let signature = URL_SAFE_NO_PAD
                    .decode(signature)
                    .map_err(|_| AuthError::Malformed)?;
                // JWS ECDSA signatures are the fixed-size concatenation r || s (RFC 7518 §3.4).
                let signature = p521::ecdsa::Signature::from_slice(&signature)
                    .map_err(|_| AuthError::BadSignature)?;
                key.verify(message, &signature)
                    .map_err(|_| AuthError::BadSignature)
            }
            _ => Err(AuthError::AlgorithmKeyMismatch),
        }
    }
}

/// One JWK as published in a JWKS; only the members we use.
#[derive(Debug, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub alg: Option<String>,
    #[serde(default, rename = "use")]
    pub key_use: Option<String>,
    #[serde(default)]
    pub crv: Option<String>,
    #[serde(default)]
    pub x: Option<String>,
    #[serde(default)]
    pub y: Option<String>,
    #[serde(default)]
    pub n: Option<String>,
    #[serde(default)]
    pub e: Option<String>,
}

/// Why a JWK was skipped; logged, never fatal, since one odd key must not disable the rest.
#[derive(Debug, thiserror::Error)]
pub enum JwkError {
    #[error("not a signature key (use = {0})")]
    NotForSignatures(String),
    #[error("unsupported key type or curve ({0})")]
    Unsupported(String),
    #[error("the key's alg {0} does not fit its type")]
    AlgMismatch(String),
    #[error("missing or invalid key material")]
    Invalid,
}

impl VerifyKey {
    /// Builds a verification key from a JWK, binding it to the algorithms its type allows.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, JwkError> {
        if let Some(key_use) = jwk.key_use.as_deref().filter(|u| *u != "sig") {
            return Err(JwkError::NotForSignatures(key_use.to_owned()));
        }
        // Pitfall seen with Better Auth: RSA keys can be published with a stray `crv`, so the
        // curve is only consulted for the key types that have one.
        let (kind, algs): (KeyKind, &'static [Alg]) = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("OKP", Some("Ed25519")) => {
                let x = jwk.x.as_deref().ok_or(JwkError::Invalid)?;
                let key = DecodingKey::from_ed_components(x).map_err(|_| JwkError::Invalid)?;
                (KeyKind::Jwt(key), &[Alg::EdDSA])
            }
            ("EC", Some("P-256")) => {
                let (x, y) = (jwk.x.as_deref(), jwk.y.as_deref());
                let key = DecodingKey::from_ec_components(
                    x.ok_or(JwkError::Invalid)?,
                    y.ok_or(JwkError::Invalid)?,
                )
                .map_err(|_| JwkError::Invalid)?;
                (KeyKind::Jwt(key), &[Alg::ES256])
            }
            ("EC", Some("P-521")) => (KeyKind::P521(Box::new(p521_key(jwk)?)), &[Alg::ES512]),
            ("RSA", _) => {
                let (n, e) = (jwk.n.as_deref(), jwk.e.as_deref());
                let key = DecodingKey::from_rsa_components(
                    n.ok_or(JwkError::Invalid)?,
                    e.ok_or(JwkError::Invalid)?,
                )
                .map_err(|_| JwkError::Invalid)?;
                (KeyKind::Jwt(key), &[Alg::RS256, Alg::PS256])
            }
            (kty, crv) => {
                return Err(JwkError::Unsupported(format!(
                    "{kty}/{}",
                    crv.unwrap_or("-")
                )));
            }
        };
        // A JWK that names its algorithm is held to it (RFC 7517 §4.4).
        let algs = match jwk.alg.as_deref() {
            None => algs,
            Some(name) => {
                let alg = Alg::parse(name).ok_or_else(|| JwkError::AlgMismatch(name.to_owned()))?;
                let position = algs
                    .iter()
                    .position(|allowed| *allowed == alg)
                    .ok_or_else(|| JwkError::AlgMismatch(name.to_owned()))?;
                &algs[position..=position]
            }
        };
        Ok(Self { kind, algs })
    }
}

fn p521_key(jwk: &Jwk) -> Result<p521::ecdsa::VerifyingKey, JwkError> {
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
    let coordinate = |value: Option<&str>| -> Result<p521::FieldBytes, JwkError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(value.ok_or(JwkError::Invalid)?)
            .map_err(|_| JwkError::Invalid)?;
        // P-521 coordinates are exactly 66 bytes in a JWK (RFC 7518 §6.2.1.2).
        if bytes.len() != 66 {
            return Err(JwkError::Invalid);
        }
        Ok(p521::FieldBytes::clone_from_slice(&bytes))
    };
    let point = p521::EncodedPoint::from_affine_coordinates(
        &coordinate(jwk.x.as_deref())?,
        &coordinate(jwk.y.as_deref())?,
        false,
    );
    p521::ecdsa::VerifyingKey::from_encoded_point(&point).map_err(|_| JwkError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwk(json: serde_json::Value) -> Jwk {
        serde_json::from_value(json).expect("valid jwk json")
    }

    #[test]
    fn none_and_unlisted_algorithms_are_refused() {
        for name in ["none", "None", "HS384", "RS512", "ES384", ""] {
            assert_eq!(Alg::parse(name), None, "{name}");
        }
    }

    #[test]
    fn an_rsa_key_with_a_stray_curve_still_loads() {
        // The modulus is RFC 7517 appendix A.1's example key.
        let key = jwk(serde_json::json!({
            "kty": "RSA", "crv": "Ed25519", "alg": "RS256", "kid": "k",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB"
        }));
        let key = VerifyKey::from_jwk(&key).expect("loads");
        assert_eq!(key.algs, &[Alg::RS256]);
    }

    #[test]
    fn a_key_is_bound_to_its_declared_algorithm() {
        let ed = jwk(serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "alg": "ES256",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        }));
        assert!(matches!(
            VerifyKey::from_jwk(&ed),
            Err(JwkError::AlgMismatch(_))
        ));
        let encryption = jwk(serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "use": "enc",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        }));
        assert!(matches!(
            VerifyKey::from_jwk(&encryption),
            Err(JwkError::NotForSignatures(_))
        ));
    }

    #[test]
    fn an_hs256_secret_refuses_other_algorithms() {
        let key = VerifyKey::hs256(b"0123456789abcdef0123456789abcdef");
        assert_eq!(
            key.verify(Alg::RS256, b"m", "c2ln"),
            Err(AuthError::AlgorithmKeyMismatch)
        );
        assert_eq!(
            key.verify(Alg::HS256, b"m", "c2ln"),
            Err(AuthError::BadSignature)
        );
    }
}
