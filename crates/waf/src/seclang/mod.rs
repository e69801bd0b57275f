//! SecLang, ModSecurity's rule language, read the way libmodsecurity3 reads it.
//!
//! Data flows in one direction:
//! - [`lexer`] joins `\`-continued physical lines into logical lines, drops comments and splits
//!   each directive into arguments (double- or single-quoted, or bare), keeping for every byte of
//!   an argument the offset it came from, so that any error inside an argument has an exact
//!   `line:column`;
//! - [`parser`] turns each logical line into a typed [`ast::Directive`] (variables, operators,
//!   actions, transformations, `ctl:` options and engine settings are enums), groups chained rules
//!   and collects every error of a file rather than stopping at the first;
//! - [`loader`] is the only part that touches the file system: it reads rule files, expands
//!   `Include` globs (relative to the including file, with cycle detection) and reads the data
//!   files of `@pmFromFile` / `@ipMatchFromFile` into a side table.
//!
//! Every AST node prints back as SecLang ([`std::fmt::Display`]); the printed text parses to an
//! equal tree (spans do not take part in equality).

pub mod ast;
mod error;
pub mod lexer;
pub mod loader;
pub mod parser;

pub use error::{Error, ErrorKind};
pub use loader::{load, DataFile, FileId, Loader, RuleSet, SourceDirective};

pub use parser::{parse, parse_bytes};

#[cfg(test)]
mod tests;
