//! Standard Webhooks signatures: `webhook-signature: v1,<base64>` where the
//! base64 is HMAC-SHA256 over `"{id}.{timestamp}.{body}"` with the sink's
//! key.
//!
//! The key is the Glint secret's bytes; a secret written the way Standard
//! Webhooks libraries hand them out (`whsec_` + base64) is decoded first,
//! so a receiver using such a library verifies with the same string.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit, Mac};

/// The HMAC key for a sink's secret: the base64 after `whsec_`, decoded,
/// when the secret has that form; otherwise the secret's bytes.
pub fn signing_key(secret: &[u8]) -> Vec<u8> {
    if let Some(rest) = secret.strip_prefix(b"whsec_")
        && let Ok(key) = STANDARD.decode(rest)
        && !key.is_empty()
    {
        return key;
    }
    secret.to_vec()
}

/// The `webhook-signature` header's value for message `id` sent at
/// `timestamp` (unix seconds) with `body`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts a key of any length: `new_from_slice` cannot fail for it.
    let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_webhooks_example_signs_as_the_spec_says() {
        // The example of the Standard Webhooks specification (and of its
        // reference libraries).
        let key = signing_key(b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert_eq!(
            sign(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_plain_secret_is_the_key_itself() {
        // python3 -c "import hmac,hashlib,base64; print(base64.b64encode(hmac.new(
        //   b'glint-key', b'msg_1.1700000000.{}', hashlib.sha256).digest()))"
        let key = signing_key(b"glint-key");
        assert_eq!(key, b"glint-key");
        assert_eq!(
            sign(&key, "msg_1", 1_700_000_000, b"{}"),
            "v1,iKR2b6CKR52SPhDVnREYeLM+X4COn09djN9H6/TwWr0="
        );
        // Any change of id, time or body changes the signature.
        assert_ne!(
            sign(&key, "msg_2", 1_700_000_000, b"{}"),
            sign(&key, "msg_1", 1_700_000_000, b"{}")
        );
        assert_ne!(
            sign(&key, "msg_1", 1_700_000_001, b"{}"),
            sign(&key, "msg_1", 1_700_000_000, b"{}")
        );
        assert_ne!(
            sign(&key, "msg_1", 1_700_000_000, b"{ }"),
            sign(&key, "msg_1", 1_700_000_000, b"{}")
        );
    }
}
