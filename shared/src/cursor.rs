//! Opaque, signed paging cursors.
//!
//! A cursor is `base64url(json) . base64url(hmac)`: the JSON says where the
//! next page starts and what it is bound to (the caller's hospital and a
//! hash of the request's filters); the HMAC, keyed by a key derived from
//! the pepper, makes it impossible to forge one or to replay one under
//! another tenant or other filters. Routes turn any failure into a 400 that
//! names the parameter.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// Seals and opens cursors with a key derived from the pepper.
pub struct CursorSigner {
    key: [u8; 32],
}

impl CursorSigner {
    /// A signer whose key is derived from `pepper` for `purpose` (e.g.
    /// `"studies"`), so a cursor of one route never opens on another.
    pub fn new(pepper: &[u8], purpose: &str) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(pepper).expect("HMAC takes any key length");
        mac.update(b"pacs-hub cursor v1\0");
        mac.update(purpose.as_bytes());
        CursorSigner {
            key: mac.finalize().into_bytes().into(),
        }
    }

    /// Seals `state`, bound to `binding` (the caller and its filters).
    pub fn seal<T: Serialize>(&self, binding: &str, state: &T) -> String {
        let json = serde_json::to_vec(state).expect("cursor state serialises");
        let tag = self.tag(binding, &json);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&json),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// Opens a cursor sealed with the same `binding`; a 400 naming
    /// `param` for anything forged, truncated or bound to something else.
    pub fn open<T: DeserializeOwned>(
        &self,
        param: &str,
        binding: &str,
        cursor: &str,
    ) -> Result<T, ApiError> {
        let refuse = || {
            ApiError::validation(format!(
                "{param} is not valid for this request: pass back the nextCursor of the \
                 previous page unchanged, with the same filters, or leave it out"
            ))
        };
        let (body, tag) = cursor.split_once('.').ok_or_else(refuse)?;
        let json = URL_SAFE_NO_PAD.decode(body).map_err(|_| refuse())?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| refuse())?;
        let expected = self.tag(binding, &json);
        if !bool::from(expected.as_slice().ct_eq(&tag)) {
            return Err(refuse());
        }
        serde_json::from_slice(&json).map_err(|_| refuse())
    }

    fn tag(&self, binding: &str, json: &[u8]) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(&(binding.len() as u64).to_be_bytes());
        mac.update(binding.as_bytes());
        mac.update(json);
        mac.finalize().into_bytes().to_vec()
    }
}

/// A short hash of `parts`, for binding a cursor to a request's filters
/// without putting the filter values (which may be patient data) in it.
pub fn binding_hash<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_cursors_open_only_with_their_binding() {
        let signer = CursorSigner::new(b"0123456789abcdef0123456789abcdef", "studies");
        let c = signer.seal("hosp_a|f1", &vec!["x".to_string()]);
        let back: Vec<String> = signer.open("cursor", "hosp_a|f1", &c).unwrap();
        assert_eq!(back, vec!["x"]);
        assert!(
            signer
                .open::<Vec<String>>("cursor", "hosp_b|f1", &c)
                .is_err()
        );
        assert!(
            signer
                .open::<Vec<String>>("cursor", "hosp_a|f2", &c)
                .is_err()
        );
        let other = CursorSigner::new(b"0123456789abcdef0123456789abcdef", "audit");
        assert!(
            other
                .open::<Vec<String>>("cursor", "hosp_a|f1", &c)
                .is_err()
        );
        let mut forged = c.clone();
        forged.replace_range(0..2, "ey");
        assert!(
            signer
                .open::<Vec<String>>("cursor", "hosp_a|f1", &forged)
                .is_err()
        );
        assert!(
            signer
                .open::<Vec<String>>("cursor", "hosp_a|f1", "garbage")
                .is_err()
        );
    }
}
