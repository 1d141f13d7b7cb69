//! Upstream authentication (SCRAM-SHA-256, md5, cleartext) and upstream TLS.
