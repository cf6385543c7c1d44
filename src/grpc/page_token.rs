//! ListContacts page tokens: opaque to clients, keyset-based, bound to the
//! site and filters they were issued for, and signed so they cannot be forged
//! or altered.
//!
//! A token also carries the listing's watch cursor: every page of one
//! listing answers with the first page's, so that a watch started from any
//! of them misses nothing committed while the client was paging.
//!
//! Layout (base64url): version (1) | site (8) | filter fingerprint (8) |
//! last seq (8) | watch cursor (the rest) | HMAC-SHA256 of the above,
//! truncated (16).

use sha2::{Digest, Sha256};

use crate::domain::Invalid;
use crate::sealed;
use crate::storage::sql::ListFilter;

const VERSION: u8 = 2;
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

/// Where a listing stands: the seq to continue after, and the listing's watch cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub after_seq: i64,
    pub watch_cursor: String,
}

pub fn encode(secret: &[u8], site: i64, filter: [u8; 8], page: &Page) -> String {
    let mut token = Vec::with_capacity(BODY + page.watch_cursor.len() + MAC);
    token.push(VERSION);
    token.extend(site.to_be_bytes());
    token.extend(filter);
    token.extend(page.after_seq.to_be_bytes());
    token.extend(page.watch_cursor.as_bytes());
    sealed::seal(secret, token, MAC)
}

/// Where the listing stands, if `token` was issued by this service for this
/// site and these filters.
pub fn decode(secret: &[u8], site: i64, filter: [u8; 8], token: &str) -> Result<Page, Invalid> {
    let forged = || "is not a page token this service issued (it may have been altered)".to_owned();
    let body = sealed::open(secret, token, MAC).ok_or_else(forged)?;
    if body.len() < BODY || body[0] != VERSION {
        return Err(forged());
    }
    let field = |at: usize| i64::from_be_bytes(body[at..at + 8].try_into().expect("8 bytes"));
    if field(1) != site {
        return Err(forged());
    }
    if body[9..17] != filter {
        return Err("was issued for other filters: keep the first page's filters, or list again without a token"
            .into());
    }
    let watch_cursor = String::from_utf8(body[BODY..].to_vec()).map_err(|_| forged())?;
    Ok(Page {
        after_seq: field(17),
        watch_cursor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn a_token_round_trips_only_for_its_site_and_filters() {
        let filter = fingerprint(&ListFilter {
            email: Some("a@b.c".into()),
            ..Default::default()
        });
        let page = Page {
            after_seq: 1234,
            watch_cursor: "cursor".into(),
        };
        let token = encode(SECRET, 7, filter, &page);
        assert_eq!(decode(SECRET, 7, filter, &token), Ok(page));
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
        let page = Page {
            after_seq: 1234,
            watch_cursor: "cursor".into(),
        };
        let token = encode(SECRET, 7, filter, &page);
        for at in [20, 26] {
            // the seq, then the watch cursor
            let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
            bytes[at] ^= 1;
            assert!(decode(SECRET, 7, filter, &URL_SAFE_NO_PAD.encode(&bytes)).is_err());
        }
        for bad in ["", "not base64!", "AAAA", &token[..token.len() - 2]] {
            assert!(decode(SECRET, 7, filter, bad).is_err(), "{bad:?}");
        }
    }
}
