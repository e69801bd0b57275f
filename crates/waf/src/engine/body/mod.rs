//! Request body processors, chosen the way libmodsecurity3 chooses them: `URLENCODED` and
//! `MULTIPART` by the `Content-Type` header, `JSON` and `XML` only when a rule says
//! `ctl:requestBodyProcessor=...` (as the recommended `modsecurity.conf` does).
//!
//! Each processor turns the body bytes into plain data (arguments, files, flags, XML text) and
//! never panics: malformed input becomes an error message, which the transaction exposes as
//! `REQBODY_ERROR` / `REQBODY_ERROR_MSG`, exactly as libmodsecurity3 does.

pub mod json;
pub mod multipart;
pub mod urlencoded;
pub mod xml;

/// A name and a value, both bytes.
pub type Pair = (Vec<u8>, Vec<u8>);

#[cfg(test)]
mod tests;
