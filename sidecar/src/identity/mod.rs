//! Who is calling: JWT/JWKS verification and the caller's Unix uid.
