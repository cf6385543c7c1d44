//! ListContacts page tokens: opaque to clients, keyset-based, bound to the
//! site and filters they were issued for, and signed so they cannot be forged
//! or altered.
//!
//! Layout (base64url): version (1) | site (8) | filter fingerprint (8) |
//! last seq (8) | HMAC-SHA256 of the above, truncated (16).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::domain::Invalid;
use crate::storage::sql::ListFilter;

const VERSION: u8 = 1;
const BODY: usize = 1 + 8 + 8 + 8;
const MAC: usize = 16;

/// Identifies a filter combination; a token only continues the list it began.
pub fn fingerprint(filter: &ListFilter) -> [u8; 8] {
    let mut hash = Sha256::new();
    for part in [
        &filter.email,
        &filter.phone,
        &filter.first_name,
        &filter.last_name,
    ] {
        // Length-prefixed, so ("ab", "") and ("a", "b") differ.
        let part = part.as_deref().unwrap_or("");
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.finalize()[..8].try_into().expect("8 bytes")
}

fn mac(secret: &[u8], body: &[u8]) -> [u8; MAC] {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.finalize().into_bytes()[..MAC]
        .try_into()
        .expect("16 bytes")
}

pub fn encode(secret: &[u8], site: i64, filter: [u8; 8], after_seq: i64) -> String {
    let mut token = Vec::with_capacity(BODY + MAC);
    token.push(VERSION);
    token.extend(site.to_be_bytes());
    token.extend(filter);
    token.extend(after_seq.to_be_bytes());
    let tag = mac(secret, &token);
    token.extend(tag);
    URL_SAFE_NO_PAD.encode(token)
}

/// The seq to continue after, if `token` was issued by this service for this
/// site and these filters.
pub fn decode(secret: &[u8], site: i64, filter: [u8; 8], token: &str) -> Result<i64, Invalid> {
    let forged = || "is not a page token this service issued (it may have been altered)".to_owned();
    let bytes = URL_SAFE_NO_PAD.decode(token.trim()).map_err(|_| forged())?;
    if bytes.len() != BODY + MAC || bytes[0] != VERSION {
        return Err(forged());
    }
    let (body, tag) = bytes.split_at(BODY);
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    // Constant-time comparison with the truncated tag.
    mac.verify_truncated_left(tag).map_err(|_| forged())?;
    let field = |at: usize| i64::from_be_bytes(body[at..at + 8].try_into().expect("8 bytes"));
    if field(1) != site {
        return Err(forged());
    }
    if body[9..17] != filter {
        return Err("was issued for other filters: keep the first page's filters, or list again without a token"
            .into());
    }
    Ok(field(17))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn a_token_round_trips_only_for_its_site_and_filters() {
        let filter = fingerprint(&ListFilter {
            email: Some("a@b.c".into()),
            ..Default::default()
        });
        let token = encode(SECRET, 7, filter, 1234);
        assert_eq!(decode(SECRET, 7, filter, &token), Ok(1234));
        assert!(decode(SECRET, 8, filter, &token).is_err());
        assert!(
            decode(SECRET, 7, fingerprint(&ListFilter::default()), &token)
                .unwrap_err()
                .contains("other filters")
        );
        assert!(decode(b"another secret", 7, filter, &token).is_err());
    }

    #[test]
    fn altered_or_malformed_tokens_are_refused() {
        let filter = fingerprint(&ListFilter::default());
        let token = encode(SECRET, 7, filter, 1234);
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        bytes[20] ^= 1; // the seq
        assert!(decode(SECRET, 7, filter, &URL_SAFE_NO_PAD.encode(&bytes)).is_err());
        for bad in ["", "not base64!", "AAAA", &token[..token.len() - 2]] {
            assert!(decode(SECRET, 7, filter, bad).is_err(), "{bad:?}");
        }
    }
}
