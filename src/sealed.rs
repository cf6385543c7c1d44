//! Opaque values handed to clients (watch cursors, page tokens): the bytes,
//! an HMAC-SHA256 tag over them truncated to `tag_len`, in base64url. Only
//! this service, holding the secret, can make one that opens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length")
}

pub fn seal(secret: &[u8], mut bytes: Vec<u8>, tag_len: usize) -> String {
    let tag = mac(secret).chain_update(&bytes).finalize().into_bytes();
    bytes.extend(&tag[..tag_len]);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The bytes sealed in `text`, if this service sealed them (compared in
/// constant time).
pub fn open(secret: &[u8], text: &str, tag_len: usize) -> Option<Vec<u8>> {
    let mut bytes = URL_SAFE_NO_PAD.decode(text.trim()).ok()?;
    let body = bytes.len().checked_sub(tag_len)?;
    mac(secret)
        .chain_update(&bytes[..body])
        .verify_truncated_left(&bytes[body..])
        .ok()?;
    bytes.truncate(body);
    Some(bytes)
}
