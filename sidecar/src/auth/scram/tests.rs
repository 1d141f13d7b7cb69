//! Tests for the SCRAM client: the RFC 7677 vector and every way a server message can be refused.
#![allow(clippy::unwrap_used)]

use super::*;

/// RFC 7677 section 3.
const RFC_CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const RFC_SERVER_FIRST: &[u8] =
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const RFC_CLIENT_FINAL: &[u8] = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
      p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const RFC_SERVER_FINAL: &[u8] = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn rfc_client() -> ScramClient {
    ScramClient::with_nonce("user", "pencil", RFC_CLIENT_NONCE)
}

#[test]
fn rfc7677_vector() {
    let mut client = rfc_client();
    assert_eq!(client.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    assert_eq!(client.server_first(RFC_SERVER_FIRST).unwrap(), RFC_CLIENT_FINAL);
    client.server_final(RFC_SERVER_FINAL).unwrap();
}

#[test]
fn cached_salted_password_gives_the_same_exchange() {
    let cache = SaltedPasswordCache::default();
    for _ in 0..2 {
        let mut client = rfc_client();
        assert_eq!(
            client
                .server_first_cached(RFC_SERVER_FIRST, Some(&cache))
                .unwrap(),
            RFC_CLIENT_FINAL
        );
        client.server_final(RFC_SERVER_FINAL).unwrap();
    }
    // A different salt is derived afresh, not taken from the cache.
    let other_salt = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=QSXCR+Q6sek8bf92,i=4096";
    let mut cached = rfc_client();
    let mut fresh = rfc_client();
    assert_eq!(
        cached.server_first_cached(other_salt, Some(&cache)).unwrap(),
        fresh.server_first(other_salt).unwrap()
    );
    // And back: the cache now holds the other salt's key and must not hand it out for the RFC salt.
    let mut client = rfc_client();
    assert_eq!(
        client
            .server_first_cached(RFC_SERVER_FIRST, Some(&cache))
            .unwrap(),
        RFC_CLIENT_FINAL
    );
}

#[test]
fn postgres_client_first_has_empty_user_and_no_channel_binding() {
    let client = ScramClient::new("secret");
    let first = std::str::from_utf8(client.client_first()).unwrap();
    let nonce = first.strip_prefix("n,,n=,r=").unwrap();
    assert_eq!(nonce.len(), 24, "18 random bytes in base64");
    assert!(nonce.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b','));
    assert_ne!(
        ScramClient::new("secret").client_first(),
        client.client_first(),
        "nonce is random"
    );
}

#[test]
fn user_name_is_escaped() {
    let client = ScramClient::with_nonce("a=b,c", "p", "abc");
    assert_eq!(client.client_first(), b"n,,n=a=3Db=2Cc,r=abc");
}

#[test]
fn selects_plain_scram_even_when_plus_is_offered() {
    assert_eq!(
        select_mechanism(&["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]),
        Some("SCRAM-SHA-256")
    );
    assert_eq!(select_mechanism(&["SCRAM-SHA-256"]), Some("SCRAM-SHA-256"));
    assert_eq!(select_mechanism(&["SCRAM-SHA-256-PLUS"]), None);
    assert_eq!(select_mechanism(&[]), None);
}

#[test]
fn rejects_server_nonce_without_our_prefix() {
    let err = rfc_client()
        .server_first(b"r=XOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaT,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
        .unwrap_err();
    assert!(matches!(err, AuthError::ServerNonceMismatch), "{err}");
    // Echoing our nonce without adding anything is not acceptable either.
    let err = rfc_client().server_first(b"r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
    assert!(matches!(err, Err(AuthError::ServerNonceMismatch)));
}

#[test]
fn rejects_iteration_count_out_of_range() {
    for (count, reported) in [("4095", 4095), ("1", 1), ("0", 0), ("10000001", 10_000_001)] {
        let msg = format!("r={RFC_CLIENT_NONCE}xyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i={count}");
        let err = rfc_client().server_first(msg.as_bytes()).unwrap_err();
        assert!(
            matches!(err, AuthError::IterationCountOutOfRange(n) if n == reported),
            "{count}: {err}"
        );
    }
    let msg = format!("r={RFC_CLIENT_NONCE}xyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=99999999999999999999999");
    let err = rfc_client().server_first(msg.as_bytes()).unwrap_err();
    assert!(
        matches!(err, AuthError::IterationCountOutOfRange(u64::MAX)),
        "{err}"
    );
}

#[test]
fn rejects_malformed_server_first() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "no nonce"),
        (
            b"s=W22ZaJ0SNY7soEsUEjb6gQ==,r=rOprNGfwEbeRWgbNEkqOxyz,i=4096",
            "no nonce",
        ),
        (b"r=rOprNGfwEbeRWgbNEkqOxyz,i=4096", "no salt"),
        (
            b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==",
            "no iteration count",
        ),
        (
            b"r=rOprNGfwEbeRWgbNEkqOxyz,s=not base64!,i=4096",
            "not valid base64",
        ),
        (b"r=rOprNGfwEbeRWgbNEkqOxyz,s=,i=4096", "salt (s=) is empty"),
        (
            b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-1",
            "not a number",
        ),
        (
            b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=",
            "not a number",
        ),
        (
            b"r=rOprNGfwEbeRWgbNEkqO x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "non-printable",
        ),
        (
            b"r=rOprNGfwEbeRWgbNEkqO\xff,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "not UTF-8",
        ),
    ];
    for (msg, expected) in cases {
        let err = rfc_client().server_first(msg).unwrap_err();
        assert!(matches!(err, AuthError::Malformed(_)), "{msg:?}: {err}");
        assert!(err.to_string().contains(expected), "{msg:?}: {err}");
    }
}

#[test]
fn rejects_mandatory_extension() {
    let err = rfc_client()
        .server_first(b"m=ext,r=rOprNGfwEbeRWgbNEkqOxyz,s=AAAA,i=4096")
        .unwrap_err();
    assert!(matches!(err, AuthError::MandatoryExtension), "{err}");
}

#[test]
fn ignores_optional_extensions_after_iteration_count() {
    let mut msg = RFC_SERVER_FIRST.to_vec();
    msg.extend_from_slice(b",x=future");
    // The extension is part of AuthMessage, so the proof differs from the RFC's, but it works.
    let final_msg = rfc_client().server_first(&msg).unwrap();
    assert!(final_msg.starts_with(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p="));
}

#[test]
fn rejects_bad_server_signature() {
    let mut client = rfc_client();
    client.server_first(RFC_SERVER_FIRST).unwrap();
    // First character changed ('6' -> '7'): the first byte differs by one bit.
    let err = client
        .server_final(b"v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
        .unwrap_err();
    assert!(matches!(err, AuthError::BadServerSignature), "{err}");
    // A truncated (but well-formed) signature is rejected the same way, not accepted as a prefix.
    let err = client
        .server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5n")
        .unwrap_err();
    assert!(matches!(err, AuthError::BadServerSignature), "{err}");
    // The correct signature with extra bytes appended is wrong too.
    let err = client
        .server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4AAA==")
        .unwrap_err();
    assert!(matches!(err, AuthError::BadServerSignature), "{err}");
    let err = client.server_final(b"v=@@@").unwrap_err();
    assert!(matches!(err, AuthError::Malformed(_)), "{err}");
    let err = client.server_final(b"x=1").unwrap_err();
    assert!(matches!(err, AuthError::Malformed(_)), "{err}");
}

#[test]
fn a_different_password_yields_a_bad_server_signature() {
    let mut client = ScramClient::with_nonce("user", "pencil2", RFC_CLIENT_NONCE);
    assert_ne!(client.server_first(RFC_SERVER_FIRST).unwrap(), RFC_CLIENT_FINAL);
    assert!(matches!(
        client.server_final(RFC_SERVER_FINAL),
        Err(AuthError::BadServerSignature)
    ));
}

#[test]
fn reports_server_error() {
    let mut client = rfc_client();
    client.server_first(RFC_SERVER_FIRST).unwrap();
    let err = client.server_final(b"e=invalid-proof").unwrap_err();
    assert!(
        matches!(&err, AuthError::ServerError(m) if m == "invalid-proof"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "SCRAM: the server reported an error: invalid-proof"
    );

    let err = rfc_client().server_first(b"e=other-error\n\x1b[31m").unwrap_err();
    assert!(
        matches!(&err, AuthError::ServerError(m) if m == "other-error[31m"),
        "{err}"
    );
}

#[test]
fn enforces_message_order() {
    let client = rfc_client();
    assert!(matches!(
        client.server_final(RFC_SERVER_FINAL),
        Err(AuthError::OutOfOrder(_))
    ));
    let mut client = rfc_client();
    client.server_first(RFC_SERVER_FIRST).unwrap();
    assert!(matches!(
        client.server_first(RFC_SERVER_FIRST),
        Err(AuthError::OutOfOrder(_))
    ));
}

#[test]
fn debug_does_not_show_the_password() {
    let shown = format!("{:?}", ScramClient::new("hunter2"));
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[test]
fn prepares_passwords_like_postgres() {
    // ASCII, including control characters, is used as is.
    assert_eq!(prepare_password(b"pencil"), &b"pencil"[..]);
    assert_eq!(prepare_password(b"a\tb\x07"), &b"a\tb\x07"[..]);
    // Not UTF-8: raw bytes.
    assert_eq!(prepare_password(b"\xff\xfe"), &b"\xff\xfe"[..]);
    // RFC 4013 section 3 examples: soft hyphen maps to nothing, U+2168 (ROMAN NUMERAL NINE) NFKCs
    // to "IX", U+00AA (FEMININE ORDINAL INDICATOR) to "a", NO-BREAK SPACE to a space.
    assert_eq!(prepare_password("I\u{00AD}X".as_bytes()), &b"IX"[..]);
    assert_eq!(prepare_password("\u{2168}".as_bytes()), &b"IX"[..]);
    assert_eq!(prepare_password("\u{00AA}".as_bytes()), &b"a"[..]);
    assert_eq!(prepare_password("a\u{00A0}b".as_bytes()), &b"a b"[..]);
    // Prohibited output (a private-use character): raw bytes.
    assert_eq!(prepare_password("x\u{E000}".as_bytes()), "x\u{E000}".as_bytes());
    // Nothing left after mapping: PostgreSQL calls that prohibited and uses the raw bytes.
    assert_eq!(prepare_password("\u{00AD}".as_bytes()), "\u{00AD}".as_bytes());
    // Already-normal non-ASCII is unchanged.
    assert_eq!(prepare_password("pässwörd".as_bytes()), "pässwörd".as_bytes());
}

#[test]
fn normalized_passwords_derive_the_same_key() {
    // "\u{2168}" prepares to "IX", so both must produce the same proof for the same server-first.
    let mut a = ScramClient::with_nonce("", "\u{2168}", RFC_CLIENT_NONCE);
    let mut b = ScramClient::with_nonce("", "IX", RFC_CLIENT_NONCE);
    assert_eq!(
        a.server_first(RFC_SERVER_FIRST).unwrap(),
        b.server_first(RFC_SERVER_FIRST).unwrap()
    );
}
