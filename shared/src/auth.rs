//! API keys and the principal they resolve to.
//!
//! A hospital key reads `phk_<hospital hex>_<key id hex>_<secret>`: the
//! hospital and key id make its record one GetItem away, the secret carries
//! 256 random bits. Only `HMAC-SHA256(pepper, secret)` is stored, and it is
//! compared in constant time. The platform-admin key reads `pha_<secret>`
//! and lives only in Secrets Manager.
//!
//! The authorizer hands the resolved [`Principal`] to the routes as a flat
//! map of strings (API Gateway allows nothing deeper); routes trust only
//! that map.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::domain::{HospitalId, Role};

const HOSPITAL_KEY_PREFIX: &str = "phk_";
const PLATFORM_KEY_PREFIX: &str = "pha_";
const SECRET_BYTES: usize = 32;
const SECRET_CHARS: usize = 43;

/// Identifier of one key of a hospital: `key_` and 16 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyId(String);

impl KeyId {
    /// A fresh random key id.
    pub fn generate() -> Self {
        KeyId(format!("key_{}", hex::encode(rand::random::<[u8; 8]>())))
    }

    /// Parses `key_` + 16 lowercase hex digits.
    pub fn parse(s: &str) -> Option<Self> {
        let hex = s.strip_prefix("key_")?;
        is_lower_hex(hex, 16).then(|| KeyId(s.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn hex(&self) -> &str {
        &self.0[4..]
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A key as presented by a client, parsed but not yet verified.
#[derive(Clone, PartialEq, Eq)]
pub enum PresentedKey {
    /// A hospital's key: look up `(hospital, key_id)`, compare the secret's
    /// hash.
    Hospital {
        hospital: HospitalId,
        key_id: KeyId,
        secret: String,
    },
    /// The platform operator's key.
    Platform { secret: String },
}

// Keys never reach a log, not even through `{:?}`.
impl std::fmt::Debug for PresentedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PresentedKey::Hospital {
                hospital, key_id, ..
            } => f
                .debug_struct("Hospital")
                .field("hospital", hospital)
                .field("key_id", key_id)
                .finish_non_exhaustive(),
            PresentedKey::Platform { .. } => f.write_str("Platform { .. }"),
        }
    }
}

impl PresentedKey {
    /// Parses a key; `None` for anything not shaped like one of ours.
    pub fn parse(token: &str) -> Option<Self> {
        let token = token.trim();
        if let Some(secret) = token.strip_prefix(PLATFORM_KEY_PREFIX) {
            return valid_secret(secret).then(|| PresentedKey::Platform {
                secret: secret.into(),
            });
        }
        let rest = token.strip_prefix(HOSPITAL_KEY_PREFIX)?;
        let mut parts = rest.splitn(3, '_');
        let (hosp, key, secret) = (parts.next()?, parts.next()?, parts.next()?);
        if !is_lower_hex(key, 16) || !valid_secret(secret) {
            return None;
        }
        Some(PresentedKey::Hospital {
            hospital: HospitalId::from_hex(hosp)?,
            key_id: KeyId(format!("key_{key}")),
            secret: secret.into(),
        })
    }

    /// Reads the key from `x-api-key`, or else `Authorization: Bearer`.
    pub fn from_headers(headers: &http::HeaderMap) -> Option<Self> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let token = header("x-api-key").or_else(|| {
            header("authorization").and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(rest)
            })
        })?;
        Self::parse(token)
    }
}

fn valid_secret(s: &str) -> bool {
    s.len() == SECRET_CHARS
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn random_secret() -> String {
    let bytes: [u8; SECRET_BYTES] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A newly issued hospital key: the full token (shown once) and what is
/// stored.
pub struct IssuedKey {
    /// The key id, stored and shown in listings.
    pub key_id: KeyId,
    /// The whole key, returned once to whoever created it.
    pub token: String,
    /// `HMAC-SHA256(pepper, secret)` in hex: the only form stored.
    pub hash: String,
}

/// Issues a new key for `hospital`.
pub fn issue_hospital_key(pepper: &[u8], hospital: &HospitalId) -> IssuedKey {
    let key_id = KeyId::generate();
    let secret = random_secret();
    let token = format!(
        "{HOSPITAL_KEY_PREFIX}{}_{}_{secret}",
        hospital.hex(),
        key_id.hex()
    );
    IssuedKey {
        hash: hash_secret(pepper, &secret),
        key_id,
        token,
    }
}

/// A fresh platform-admin key, for the secret's first value and rotation.
pub fn new_platform_key() -> String {
    format!("{PLATFORM_KEY_PREFIX}{}", random_secret())
}

/// `HMAC-SHA256(pepper, secret)` in lowercase hex.
pub fn hash_secret(pepper: &[u8], secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(pepper).expect("HMAC takes any key length");
    mac.update(secret.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `secret` hashes to `stored_hash`, compared in constant time.
pub fn verify_secret(pepper: &[u8], secret: &str, stored_hash: &str) -> bool {
    let computed = hash_secret(pepper, secret);
    computed.as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

/// Whether a presented platform secret matches the configured platform key.
pub fn verify_platform_key(pepper: &[u8], secret: &str, platform_key: &str) -> bool {
    let Some(expected) = platform_key.trim().strip_prefix(PLATFORM_KEY_PREFIX) else {
        return false;
    };
    let a = hash_secret(pepper, secret);
    let b = hash_secret(pepper, expected);
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Who is calling, as the authorizer resolved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The platform operator: manages hospitals, reads no patient data.
    PlatformAdmin,
    /// A key of one hospital.
    Hospital(HospitalPrincipal),
}

/// A hospital key's identity and reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HospitalPrincipal {
    /// The hospital the key belongs to.
    pub hospital_id: HospitalId,
    /// What the key may do.
    pub role: Role,
    /// The key's id, for audit records.
    pub key_id: KeyId,
    /// The user the key was issued to, if it was issued through `/users`.
    pub username: Option<String>,
    /// Other hospitals whose studies this key may read: those in the user's
    /// `accessibleHospitals` that granted access to this key's hospital.
    pub readable_hospitals: Vec<HospitalId>,
    /// Whether the subscription has ended (writes are refused).
    pub subscription_expired: bool,
}

impl Principal {
    /// The flat string map handed from the authorizer to the routes.
    pub fn to_context(&self) -> HashMap<String, serde_json::Value> {
        let mut ctx = HashMap::new();
        let mut put = |k: &str, v: String| {
            ctx.insert(k.to_owned(), serde_json::Value::String(v));
        };
        match self {
            Principal::PlatformAdmin => put("principalType", "platform-admin".into()),
            Principal::Hospital(p) => {
                put("principalType", "hospital".into());
                put("hospitalId", p.hospital_id.to_string());
                put("role", p.role.as_str().into());
                put("keyId", p.key_id.to_string());
                put("username", p.username.clone().unwrap_or_default());
                let readable: Vec<&str> = p
                    .readable_hospitals
                    .iter()
                    .map(HospitalId::as_str)
                    .collect();
                put("readableHospitals", readable.join(","));
                put("subscriptionExpired", p.subscription_expired.to_string());
            }
        }
        ctx
    }

    /// Reads the map back; `None` when it is not one the authorizer wrote.
    pub fn from_context(ctx: &HashMap<String, serde_json::Value>) -> Option<Self> {
        let get = |k: &str| ctx.get(k).and_then(|v| v.as_str());
        match get("principalType")? {
            "platform-admin" => Some(Principal::PlatformAdmin),
            "hospital" => {
                let readable = get("readableHospitals").unwrap_or("");
                Some(Principal::Hospital(HospitalPrincipal {
                    hospital_id: get("hospitalId")?.parse().ok()?,
                    role: get("role")?.parse().ok()?,
                    key_id: KeyId::parse(get("keyId")?)?,
                    username: get("username").filter(|u| !u.is_empty()).map(str::to_owned),
                    readable_hospitals: readable
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::parse)
                        .collect::<Result<_, _>>()
                        .ok()?,
                    subscription_expired: get("subscriptionExpired") == Some("true"),
                }))
            }
            _ => None,
        }
    }

    /// The hospital principal, or `None` for the platform admin.
    pub fn hospital(&self) -> Option<&HospitalPrincipal> {
        match self {
            Principal::Hospital(p) => Some(p),
            Principal::PlatformAdmin => None,
        }
    }

    /// Whether this principal may manage `hospital`: the platform admin, or
    /// that hospital's own admin key.
    pub fn may_manage(&self, hospital: &HospitalId) -> bool {
        match self {
            Principal::PlatformAdmin => true,
            Principal::Hospital(p) => p.role == Role::Admin && &p.hospital_id == hospital,
        }
    }
}

impl HospitalPrincipal {
    /// Whether this key may read `hospital`'s studies as a whole: its own,
    /// or one that granted access. Single shared studies are checked
    /// separately.
    pub fn may_read_hospital(&self, hospital: &HospitalId) -> bool {
        self.role.can_read()
            && (&self.hospital_id == hospital || self.readable_hospitals.contains(hospital))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_keys_parse_and_verify() {
        let pepper = b"pepper";
        let hosp = HospitalId::generate();
        let issued = issue_hospital_key(pepper, &hosp);
        let Some(PresentedKey::Hospital {
            hospital,
            key_id,
            secret,
        }) = PresentedKey::parse(&issued.token)
        else {
            panic!("issued key does not parse");
        };
        assert_eq!(hospital, hosp);
        assert_eq!(key_id, issued.key_id);
        assert!(verify_secret(pepper, &secret, &issued.hash));
        assert!(!verify_secret(b"other", &secret, &issued.hash));
        assert!(!issued.hash.contains(&secret));
    }

    #[test]
    fn malformed_keys_do_not_parse() {
        for bad in [
            "",
            "phk_",
            "phk_zz_yy_xx",
            "pha_short",
            "Bearer x",
            "phk_0123456789abcdef_0123456789abcdef_!!",
        ] {
            assert!(PresentedKey::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn platform_key_verifies() {
        let key = new_platform_key();
        let Some(PresentedKey::Platform { secret }) = PresentedKey::parse(&key) else {
            panic!("platform key does not parse");
        };
        assert!(verify_platform_key(b"p", &secret, &key));
        assert!(!verify_platform_key(b"p", &secret, &new_platform_key()));
    }

    #[test]
    fn principal_round_trips_through_context() {
        let p = Principal::Hospital(HospitalPrincipal {
            hospital_id: HospitalId::generate(),
            role: Role::Reader,
            key_id: KeyId::generate(),
            username: Some("dr.who".into()),
            readable_hospitals: vec![HospitalId::generate(), HospitalId::generate()],
            subscription_expired: false,
        });
        assert_eq!(Principal::from_context(&p.to_context()), Some(p));
        let admin = Principal::PlatformAdmin;
        assert_eq!(Principal::from_context(&admin.to_context()), Some(admin));
        assert_eq!(Principal::from_context(&HashMap::new()), None);
    }

    #[test]
    fn debug_hides_the_secret() {
        let hosp = HospitalId::generate();
        let issued = issue_hospital_key(b"p", &hosp);
        let parsed = PresentedKey::parse(&issued.token).unwrap();
        let shown = format!("{parsed:?}");
        let secret = issued.token.splitn(4, '_').last().unwrap();
        assert!(!shown.contains(secret), "{shown}");
    }
}
