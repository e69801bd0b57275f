//! Errors of the SecLang front end: where (source, span) and what ([`ErrorKind`]).
//!
//! Shaped like `regex-syntax`'s AST errors: the kind says what is wrong, the span says where,
//! and [`Error`]'s `Display` reads `file:line:col: message`, the form editors jump to.

use std::sync::Arc;

use super::ast::Span;

/// One problem found while reading SecLang: its source, its location and its kind.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{origin}:{}:{}: {kind}", .span.start.line, .span.start.column)]
pub struct Error {
    /// The file (or name given to [`super::parse`]) the error is in.
    pub origin: Arc<str>,
    /// Where in that source; lines and columns count from 1, columns in characters.
    pub span: Span,
    /// What is wrong.
    pub kind: ErrorKind,
}

impl Error {
    /// The line (from 1) the error starts on.
    pub fn line(&self) -> usize {
        self.span.start.line
    }

    /// The column (from 1, in characters) the error starts at.
    pub fn column(&self) -> usize {
        self.span.start.column
    }
}

/// What went wrong. New kinds may be added.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The source is not UTF-8.
    #[error("the file is not valid UTF-8")]
    InvalidUtf8,
    /// A directive name no engine knows.
    #[error("unknown directive `{0}`")]
    UnknownDirective(String),
    /// A directive got too few or too many arguments.
    #[error("`{directive}` takes {expected}, found {found} argument(s)")]
    ArgumentCount {
        /// The directive.
        directive: &'static str,
        /// How many it takes, in words.
        expected: &'static str,
        /// How many it got.
        found: usize,
    },
    /// A quoted argument or value has no closing quote.
    #[error("missing closing {0} quote")]
    UnterminatedQuote(char),
    /// An unquoted argument holds a `"`, which would read differently once printed.
    #[error("a `\"` inside an unquoted argument: quote the whole argument")]
    QuoteInBareArgument,
    /// An unquoted argument or value ends in a lone backslash, which would escape what follows.
    #[error("ends in a lone backslash: double it or quote the value")]
    TrailingBackslash,
    /// Text follows a closing quote without whitespace in between.
    #[error("expected whitespace after the closing quote")]
    TextAfterQuote,
    /// A directive's value is not one it accepts.
    #[error("invalid value `{value}` for `{directive}`: expected {expected}")]
    InvalidDirectiveValue {
        /// The directive.
        directive: &'static str,
        /// The value found.
        value: String,
        /// What would be accepted.
        expected: &'static str,
    },
    /// A rule id or id range that is not a positive number or `a-b` with `a <= b`.
    #[error("invalid rule id or range `{0}`")]
    InvalidId(String),
    /// A variable (collection) name that does not exist.
    #[error("unknown variable `{0}`")]
    UnknownVariable(String),
    /// A variable list is malformed.
    #[error("invalid variable list: {0}")]
    InvalidVariable(String),
    /// An operator name that does not exist.
    #[error("unknown operator `@{0}`")]
    UnknownOperator(String),
    /// An operator's argument is missing or malformed.
    #[error("invalid argument for `@{operator}`: {message}")]
    InvalidOperatorArgument {
        /// The operator.
        operator: &'static str,
        /// What is wrong with the argument.
        message: String,
    },
    /// An action name that does not exist.
    #[error("unknown action `{0}`")]
    UnknownAction(String),
    /// The actions list is malformed (missing name, stray text, trailing comma).
    #[error("invalid action list: {0}")]
    InvalidActionList(String),
    /// An action that needs a value has none.
    #[error("action `{0}` needs a value")]
    MissingActionValue(&'static str),
    /// An action that takes no value has one.
    #[error("action `{0}` takes no value")]
    UnexpectedActionValue(&'static str),
    /// An action's value is malformed.
    #[error("invalid value for `{action}`: {message}")]
    InvalidActionValue {
        /// The action.
        action: &'static str,
        /// What is wrong with the value.
        message: String,
    },
    /// A `t:` name that does not exist.
    #[error("unknown transformation `{0}`")]
    UnknownTransformation(String),
    /// A `ctl:` option that does not exist.
    #[error("unknown ctl option `{0}`")]
    UnknownCtlOption(String),
    /// A `%{...}` macro names no variable.
    #[error("unknown variable `{0}` in macro")]
    UnknownMacroVariable(String),
    /// A rule ends with `chain` and no rule follows it.
    #[error("rule ends with `chain` but no SecRule follows")]
    DanglingChain,
    /// A file (rule, Include or data file) cannot be read.
    #[error("cannot read `{path}`: {message}")]
    Io {
        /// The path that was tried.
        path: String,
        /// The operating system's message.
        message: String,
    },
    /// An `Include` pattern matches no file.
    #[error("`Include {0}` matches no file")]
    IncludeNotFound(String),
    /// An `Include` leads back to a file that is being read.
    #[error("`Include` cycle: {0}")]
    IncludeCycle(String),
    /// Includes nest deeper than the loader allows.
    #[error("`Include` nests deeper than {0} levels")]
    IncludeTooDeep(usize),
    /// Two rules have the same id (libmodsecurity3 refuses this too).
    #[error("rule id {id} is used twice (first at {first})")]
    DuplicateId {
        /// The id.
        id: u64,
        /// `file:line:col` of the first rule with it.
        first: String,
    },
    /// A feature that parses but this engine refuses at load time (remote files).
    #[error("unsupported: {0}")]
    Unsupported(String),
}
