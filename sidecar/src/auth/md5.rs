//! PostgreSQL's legacy `md5` password authentication (`AuthenticationMD5Password`, code 5).
//!
//! The server stores `"md5" + hex(md5(password ++ user))` and sends a random 4-byte salt; the client
//! answers with `"md5" + hex(md5(hex(md5(password ++ user)) ++ salt))`. The user name is part of the
//! hash (it was PostgreSQL's way of salting the stored value), and it is the *startup* user name,
//! i.e. the role we log in as upstream. md5 is deprecated in PostgreSQL 18; we support it only so a
//! sidecar can sit in front of an older server, and always prefer SCRAM when the server offers it.

use ::md5::{Digest, Md5};

/// The `PasswordMessage` payload (without the trailing NUL) answering an md5 challenge.
pub fn md5_password(user: &str, password: &str, salt: [u8; 4]) -> String {
    let mut inner = Md5::new();
    inner.update(password.as_bytes());
    inner.update(user.as_bytes());
    let inner_hex = crate::hex::encode(&inner.finalize());

    let mut outer = Md5::new();
    outer.update(inner_hex.as_bytes());
    outer.update(salt);
    format!("md5{}", crate::hex::encode(&outer.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector from rust-postgres' `postgres-protocol` (an independent implementation), checked
    /// with coreutils:
    /// `printf "$(printf passwordmd5_user | md5sum | cut -c1-32)\x2a\x3d\x8f\xe0" | md5sum`.
    #[test]
    fn matches_known_answer() {
        assert_eq!(
            md5_password("md5_user", "password", [0x2a, 0x3d, 0x8f, 0xe0]),
            "md562af4dd09bbb41884907a838a3233294"
        );
    }

    /// Built from RFC 1321's test suite: password "ab" ++ user "c" is "abc", whose md5 is
    /// 900150983cd24fb0d6963f7d28e17f72 (RFC 1321 A.5); the outer hash was computed with
    /// `printf '900150983cd24fb0d6963f7d28e17f72\x01\x02\x03\x04' | md5sum`. It pins the order
    /// (password before user) and that the salt is appended as raw bytes, not hex.
    #[test]
    fn hashes_password_then_user_then_raw_salt() {
        assert_eq!(
            md5_password("c", "ab", [1, 2, 3, 4]),
            "md596838e208aad1ff8fc396693d03e488d"
        );
        // Swapping user and password changes the answer.
        assert_ne!(
            md5_password("ab", "c", [1, 2, 3, 4]),
            md5_password("c", "ab", [1, 2, 3, 4])
        );
    }

    #[test]
    fn is_md5_prefixed_lower_hex() {
        let out = md5_password("u", "p", [0, 0, 0, 0]);
        assert_eq!(out.len(), 3 + 32);
        assert!(out.starts_with("md5"));
        assert!(
            out[3..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
    }
}
