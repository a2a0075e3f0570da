use std::fmt;

/// An API token. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The raw value, for the `Authorization` header only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let token = Token::new("Bearer s3cr3t-value");
        for shown in [
            format!("{token:?}"),
            format!("{token:#?}"),
            format!("{token}"),
        ] {
            assert!(!shown.contains("s3cr3t"), "{shown}");
        }
        assert_eq!(token.expose(), "Bearer s3cr3t-value");
    }

    #[test]
    fn structs_holding_a_token_stay_redacted() {
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Config {
            token: Option<Token>,
        }
        let shown = format!(
            "{:?}",
            Config {
                token: Some(Token::new("s3cr3t"))
            }
        );
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }
}
