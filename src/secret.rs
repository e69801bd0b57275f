//! Secrets read from the environment. They print as `<redacted>` everywhere (Debug, Display,
//! serialization), so a secret cannot reach a log or an API answer by accident.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value of environment variable `name`; unset or empty is an error naming the variable.
    pub fn from_env(name: &str) -> Result<Self, String> {
        match std::env::var(name) {
            Ok(value) if !value.is_empty() => Ok(Self(value)),
            Ok(_) => Err(format!("environment variable {name} is empty")),
            Err(_) => Err(format!("environment variable {name} is not set")),
        }
    }

    /// Compares in time independent of where the inputs differ.
    pub fn matches(&self, offered: &[u8]) -> bool {
        let mine = self.0.as_bytes();
        let mut diff = mine.len() ^ offered.len();
        for (i, byte) in offered.iter().enumerate() {
            diff |= usize::from(byte ^ mine.get(i % mine.len().max(1)).copied().unwrap_or(0));
        }
        diff == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_and_never_print() {
        let s = Secret("hunter2".into());
        assert!(s.matches(b"hunter2"));
        assert!(!s.matches(b"hunter3"));
        assert!(!s.matches(b"hunter22"));
        assert!(!s.matches(b""));
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
    }
}
