//! The rule loader: the only part of the crate that reads files.
//!
//! It reads rule files, parses them with [`parse_bytes`], replaces each
//! `Include`/`IncludeOptional` by the directives of the files it names (globs, relative to the
//! including file's folder, as libmodsecurity3 resolves them; cycles and runaway nesting are
//! errors) and reads the data files of `@pmFromFile` / `@ipMatchFromFile` (relative to the rule
//! file) into [`RuleSet::data_files`]. Duplicate rule ids are errors, as in libmodsecurity3.
//! It collects every error of every file before giving up.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::ast::{Directive, DirectiveKind, Position, Rule, RuleKind, Span};
use super::error::{Error, ErrorKind};
use super::parser::{check_network, parse_bytes};

/// Index of a file in [`RuleSet::files`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub usize);

/// A directive and the file it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceDirective {
    /// The file.
    pub file: FileId,
    /// The directive (never an `Include`: those are expanded).
    pub directive: Directive,
}

/// The entries of a data file: one per line, without comment (`#`) and blank lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its lines, in order, with line ends removed.
    pub entries: Vec<String>,
}

/// Everything loaded: directives in evaluation order, their files, and data files.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    /// The rule files read, in the order they were first read.
    pub files: Vec<PathBuf>,
    /// All directives, with includes expanded in place.
    pub directives: Vec<SourceDirective>,
    /// Data files by resolved path.
    pub data_files: BTreeMap<PathBuf, DataFile>,
    data_refs: HashMap<(FileId, String), PathBuf>,
}

impl RuleSet {
    /// The path of a file.
    pub fn path(&self, file: FileId) -> Option<&Path> {
        self.files.get(file.0).map(PathBuf::as_path)
    }

    /// The data file that `name` (as written in an operator of `file`) refers to.
    pub fn data_file(&self, file: FileId, name: &str) -> Option<&DataFile> {
        self.data_refs.get(&(file, name.to_string())).and_then(|p| self.data_files.get(p))
    }

    /// The rules, in order, with their files.
    pub fn rules(&self) -> impl Iterator<Item = (FileId, &Rule)> {
        self.directives.iter().filter_map(|d| match &d.directive.kind {
            DirectiveKind::Rule(r) => Some((d.file, r)),
            _ => None,
        })
    }
}

/// Loads rule files into a [`RuleSet`].
///
/// ```no_run
/// let mut loader = barbican_waf::seclang::Loader::new();
/// loader.load_file("crs-setup.conf".as_ref());
/// loader.load_file("rules/*.conf".as_ref());
/// let rules = loader.finish().map_err(|errors| errors.len());
/// ```
#[derive(Debug)]
pub struct Loader {
    set: RuleSet,
    errors: Vec<Error>,
    stack: Vec<PathBuf>,
    ids: HashMap<u64, (Arc<str>, Span)>,
    max_depth: usize,
}

impl Default for Loader {
    fn default() -> Self {
        Loader::new()
    }
}

/// Where errors without a better place (a file that cannot be read at all) point.
fn file_start() -> Span {
    let p = Position { offset: 0, line: 1, column: 1 };
    Span { start: p, end: p }
}

impl Loader {
    /// A loader with nothing loaded; includes nest at most 32 deep.
    pub fn new() -> Loader {
        Loader { set: RuleSet::default(), errors: Vec::new(), stack: Vec::new(), ids: HashMap::new(), max_depth: 32 }
    }

    /// Loads a file, or every file a glob matches (in name order).
    pub fn load_file(&mut self, path: &Path) -> &mut Self {
        let origin: Arc<str> = Arc::from(path.display().to_string());
        match expand(path) {
            Ok(paths) if paths.is_empty() => {
                self.error(&origin, file_start(), ErrorKind::IncludeNotFound(path.display().to_string()))
            }
            Ok(paths) => {
                for p in paths {
                    self.read(&p, &origin, file_start(), false);
                }
            }
            Err(e) => self.error(&origin, file_start(), io_error(path, &e)),
        }
        self
    }

    /// Loads rules given as text; includes and data files resolve against `origin`'s folder.
    pub fn load_str(&mut self, origin: &Path, text: &str) -> &mut Self {
        self.parse_and_add(origin, text.as_bytes());
        self
    }

    /// The rule set, or every error found.
    pub fn finish(self) -> Result<RuleSet, Vec<Error>> {
        if self.errors.is_empty() {
            Ok(self.set)
        } else {
            Err(self.errors)
        }
    }

    fn error(&mut self, origin: &Arc<str>, span: Span, kind: ErrorKind) {
        self.errors.push(Error { origin: origin.clone(), span, kind });
    }

    /// Reads and adds one file; `from`/`at` say which directive asked for it.
    fn read(&mut self, path: &Path, from: &Arc<str>, at: Span, optional: bool) {
        let canonical = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if self.stack.contains(&canonical) {
            let mut chain: Vec<String> = self.stack.iter().map(|p| p.display().to_string()).collect();
            chain.push(canonical.display().to_string());
            self.error(from, at, ErrorKind::IncludeCycle(chain.join(" -> ")));
            return;
        }
        if self.stack.len() >= self.max_depth {
            self.error(from, at, ErrorKind::IncludeTooDeep(self.max_depth));
            return;
        }
        match fs::read(path) {
            Ok(bytes) => {
                self.stack.push(canonical);
                self.parse_and_add(path, &bytes);
                self.stack.pop();
            }
            Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => self.error(from, at, io_error(path, &e)),
        }
    }

    fn parse_and_add(&mut self, path: &Path, bytes: &[u8]) {
        let origin: Arc<str> = Arc::from(path.display().to_string());
        let file = match parse_bytes(bytes, &origin) {
            Ok(f) => f,
            Err(errors) => {
                self.errors.extend(errors);
                return;
            }
        };
        let id = FileId(self.set.files.len());
        self.set.files.push(path.to_path_buf());
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        for directive in file.directives {
            match &directive.kind {
                DirectiveKind::Include { path: pattern, optional } => {
                    let target = dir.join(pattern);
                    match expand(&target) {
                        Ok(paths) if paths.is_empty() && !optional => {
                            self.error(&origin, directive.span, ErrorKind::IncludeNotFound(pattern.clone()))
                        }
                        Ok(paths) => {
                            for p in paths {
                                self.read(&p, &origin, directive.span, *optional);
                            }
                        }
                        Err(e) => self.error(&origin, directive.span, io_error(&target, &e)),
                    }
                }
                DirectiveKind::Rule(rule) => {
                    self.check_id(rule, &origin, directive.span);
                    self.load_data(rule, id, &dir, &origin);
                    self.set.directives.push(SourceDirective { file: id, directive });
                }
                _ => self.set.directives.push(SourceDirective { file: id, directive }),
            }
        }
    }

    fn check_id(&mut self, rule: &Rule, origin: &Arc<str>, span: Span) {
        let Some(id) = rule.id() else { return };
        if let Some((first_origin, first)) = self.ids.get(&id) {
            let first = format!("{first_origin}:{}:{}", first.start.line, first.start.column);
            self.error(origin, span, ErrorKind::DuplicateId { id, first });
        } else {
            self.ids.insert(id, (origin.clone(), span));
        }
    }

    fn load_data(&mut self, rule: &Rule, file: FileId, dir: &Path, origin: &Arc<str>) {
        for part in rule.parts() {
            let RuleKind::SecRule { operator, .. } = &part.kind else { continue };
            if !operator.kind.reads_files() {
                continue;
            }
            for name in operator.words() {
                if name.starts_with("http://") || name.starts_with("https://") {
                    let message = format!("remote data file `{name}`: copy it next to the rules");
                    self.error(origin, operator.span, ErrorKind::Unsupported(message));
                    continue;
                }
                let path = dir.join(&name);
                if !self.set.data_files.contains_key(&path) {
                    let bytes = match fs::read(&path) {
                        Ok(b) => b,
                        Err(e) => {
                            self.error(origin, operator.span, io_error(&path, &e));
                            continue;
                        }
                    };
                    let text = String::from_utf8_lossy(&bytes);
                    let entries: Vec<String> = text
                        .lines()
                        .map(|l| l.strip_suffix('\r').unwrap_or(l))
                        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                        .map(str::to_string)
                        .collect();
                    if operator.kind == super::ast::OperatorKind::IpMatchFromFile {
                        for e in &entries {
                            if let Err(m) = check_network(e.trim()) {
                                let message = format!("{}: {m}", path.display());
                                let kind =
                                    ErrorKind::InvalidOperatorArgument { operator: operator.kind.name(), message };
                                self.error(origin, operator.span, kind);
                            }
                        }
                    }
                    self.set.data_files.insert(path.clone(), DataFile { path: path.clone(), entries });
                }
                self.set.data_refs.insert((file, name), path);
            }
        }
    }
}

/// Loads one file (or glob) with its includes.
pub fn load(path: &Path) -> Result<RuleSet, Vec<Error>> {
    let mut loader = Loader::new();
    loader.load_file(path);
    loader.finish()
}

fn io_error(path: &Path, e: &std::io::Error) -> ErrorKind {
    ErrorKind::Io { path: path.display().to_string(), message: e.to_string() }
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Expands a path whose components may hold `*`, `?` and `[...]`; a path without wildcards is
/// returned as is (existing or not). Matches are sorted by name within each folder.
pub fn expand(pattern: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !has_wildcard(&pattern.to_string_lossy()) {
        return Ok(vec![pattern.to_path_buf()]);
    }
    let mut current = vec![PathBuf::new()];
    for component in pattern.components() {
        match component {
            Component::Normal(part) if has_wildcard(&part.to_string_lossy()) => {
                let pat = part.to_string_lossy().into_owned();
                let mut next = Vec::new();
                for base in &current {
                    let dir = if base.as_os_str().is_empty() { Path::new(".") } else { base.as_path() };
                    let Ok(entries) = fs::read_dir(dir) else { continue };
                    let mut names: Vec<String> =
                        entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
                    names.sort();
                    next.extend(names.into_iter().filter(|n| wildcard(&pat, n)).map(|n| base.join(n)));
                }
                current = next;
            }
            other => {
                for base in &mut current {
                    base.push(other.as_os_str());
                }
            }
        }
    }
    current.retain(|p| p.exists());
    Ok(current)
}

/// Shell-style matching of one name: `*`, `?`, `[abc]`, `[a-z]`, `[!a]`; a leading `.` must be
/// matched literally.
pub fn wildcard(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some('?') => Some(pi + 1),
            Some('[') => class(&p, pi, n[ni]),
            Some(&c) if c == n[ni] => Some(pi + 1),
            _ => None,
        };
        match step {
            Some(next) => {
                pi = next;
                ni += 1;
            }
            None => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches `c` against the class starting at `p[start] == '['`; returns the index after it.
fn class(p: &[char], start: usize, c: char) -> Option<usize> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while let Some(&x) = p.get(i) {
        if x == ']' && !first {
            return (matched != negate).then_some(i + 1);
        }
        first = false;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&y| y != ']') {
            if (x..=p[i + 2]).contains(&c) {
                matched = true;
            }
            i += 3;
        } else {
            matched |= x == c;
            i += 1;
        }
    }
    // No closing bracket: `[` is a literal character.
    (c == '[').then_some(start + 1)
}
