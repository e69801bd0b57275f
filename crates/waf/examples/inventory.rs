//! Counts what the OWASP Core Rule Set uses of SecLang and writes `docs/waf-coverage.md`.
//!
//! ```text
//! cargo run -p barbican-waf --example inventory            # writes <workspace>/docs/waf-coverage.md
//! cargo run -p barbican-waf --example inventory -- --check # fails if the committed file is stale
//! cargo run -p barbican-waf --example inventory -- --out FILE
//! ```
//!
//! Both versions Barbican supports are loaded with the real loader: CRS 4.28.0 from
//! `$BARBICAN_CRS_DIR/v4.28.0` (default `<workspace>/../shared/crs`) and Debian's CRS 3.3.4
//! (`apt-get install modsecurity-crs`). Every directive, variable, operator, transformation,
//! action and `ctl:` option is counted per version from the typed tree, so the tables list
//! exactly what the engine has to implement.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use barbican_waf::seclang::ast::{
    directive_names, Action, ActionKind, ActionName, CtlOption, DirectiveKind, MacroString, OperatorKind, RuleKind,
    SetVarOp, Target, TargetModifier, Transformation, Variable,
};
use barbican_waf::seclang::{Loader, RuleSet};

/// Counts of names in one category, for one CRS version.
type Counts = BTreeMap<String, usize>;

/// Reads one category of an [`Inventory`].
type Getter = fn(&Inventory) -> &Counts;

/// Every category counted for one version.
#[derive(Default)]
struct Inventory {
    rules: usize,
    chained: usize,
    directives: Counts,
    variables: Counts,
    macro_variables: Counts,
    operators: Counts,
    transformations: Counts,
    actions: Counts,
    ctl: Counts,
    features: Counts,
}

fn bump(map: &mut Counts, name: &str) {
    *map.entry(name.to_string()).or_default() += 1;
}

impl Inventory {
    fn of(set: &RuleSet) -> Inventory {
        let mut inv = Inventory::default();
        for d in &set.directives {
            let kind = &d.directive.kind;
            match kind {
                DirectiveKind::Rule(rule) => {
                    inv.rules += 1;
                    if !rule.chain.is_empty() {
                        inv.chained += 1;
                        bump(&mut inv.features, "chain (rules with chained rules)");
                    }
                    for part in rule.parts() {
                        bump(&mut inv.directives, part.kind.name());
                        if let RuleKind::SecRule { targets, operator } = &part.kind {
                            inv.targets(targets);
                            let name = format!("@{}", operator.kind);
                            bump(&mut inv.operators, &name);
                            if operator.negated {
                                bump(&mut inv.features, "negated operator (!@op)");
                            }
                            inv.macros(&operator.argument);
                        }
                        inv.actions(&part.actions);
                    }
                }
                DirectiveKind::DefaultAction(actions) | DirectiveKind::UpdateActionById { actions, .. } => {
                    bump(&mut inv.directives, kind.name());
                    inv.actions(actions);
                }
                DirectiveKind::UpdateTarget { targets, replaced, .. } => {
                    bump(&mut inv.directives, kind.name());
                    inv.targets(targets);
                    if let Some(r) = replaced {
                        inv.targets(r);
                    }
                }
                _ => bump(&mut inv.directives, kind.name()),
            }
        }
        inv
    }

    fn targets(&mut self, targets: &[Target]) {
        for t in targets {
            bump(&mut self.variables, t.variable.name());
            match t.modifier {
                TargetModifier::Exclude => bump(&mut self.features, "excluded target (!VAR:key)"),
                TargetModifier::Count => bump(&mut self.features, "counted target (&VAR)"),
                TargetModifier::None => {}
            }
            match &t.selector {
                Some(barbican_waf::seclang::ast::Selector::Regex(_)) => {
                    bump(&mut self.features, "regex key (VAR:/re/)")
                }
                Some(barbican_waf::seclang::ast::Selector::XPath(_)) => bump(&mut self.features, "XPath (XML:/...)"),
                Some(barbican_waf::seclang::ast::Selector::Key(_)) => bump(&mut self.features, "named key (VAR:key)"),
                None => {}
            }
        }
    }

    fn macros(&mut self, m: &MacroString) {
        for v in m.vars() {
            bump(&mut self.macro_variables, v.variable.name());
        }
    }

    fn actions(&mut self, actions: &[Action]) {
        for a in actions {
            bump(&mut self.actions, a.kind.name().name());
            match &a.kind {
                ActionKind::Transformation(t) => bump(&mut self.transformations, t.name()),
                ActionKind::Ctl(c) => {
                    bump(&mut self.ctl, c.option().name());
                    use barbican_waf::seclang::ast::Ctl;
                    if let Ctl::RuleRemoveTargetById(_, t)
                    | Ctl::RuleRemoveTargetByTag(_, t)
                    | Ctl::RuleRemoveTargetByMsg(_, t) = c
                    {
                        self.targets(t);
                    }
                }
                ActionKind::SetVar(sv) => {
                    self.macros(&sv.var.name);
                    let op = match &sv.op {
                        SetVarOp::Set(v) => {
                            self.macros(v);
                            "setvar ="
                        }
                        SetVarOp::Add(v) => {
                            self.macros(v);
                            "setvar =+"
                        }
                        SetVarOp::Sub(v) => {
                            self.macros(v);
                            "setvar =-"
                        }
                        SetVarOp::Delete => "setvar !",
                        SetVarOp::Define => "setvar (no value)",
                    };
                    bump(&mut self.features, op);
                    if sv.var.name.has_macros() {
                        bump(&mut self.features, "setvar with a macro in the name");
                    }
                }
                ActionKind::Msg(m) | ActionKind::LogData(m) | ActionKind::Tag(m) => self.macros(m),
                ActionKind::InitCol(_, m) | ActionKind::SetUid(m) | ActionKind::SetSid(m) => self.macros(m),
                ActionKind::ExpireVar(v, m) => {
                    self.macros(&v.name);
                    self.macros(m);
                }
                _ => {}
            }
        }
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn crs_dir() -> PathBuf {
    match std::env::var_os("BARBICAN_CRS_DIR") {
        Some(d) => PathBuf::from(d),
        None => workspace().join("../shared/crs"),
    }
}

fn conf_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    files.sort();
    Ok(files)
}

fn load(label: &str, setup: PathBuf, rules: &Path, hint: &str) -> Result<(RuleSet, usize), String> {
    if !setup.is_file() || !rules.is_dir() {
        return Err(format!("{label}: {} or {} is missing: {hint}", setup.display(), rules.display()));
    }
    let mut files = vec![setup];
    files.extend(conf_files(rules)?);
    let mut loader = Loader::new();
    for f in &files {
        loader.load_file(f);
    }
    let set = loader.finish().map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        format!("{label}: {} errors\n{}", errors.len(), lines.join("\n"))
    })?;
    Ok((set, files.len()))
}

fn table(out: &mut String, title: &str, known: &[String], v4: &Counts, v3: &Counts, note: &str) {
    let _ = writeln!(out, "## {title}\n");
    if !note.is_empty() {
        let _ = writeln!(out, "{note}\n");
    }
    let _ = writeln!(out, "| name | CRS 4.28.0 | CRS 3.3.4 | implemented |");
    let _ = writeln!(out, "| --- | ---: | ---: | --- |");
    let mut names: Vec<&String> = v4.keys().chain(v3.keys()).collect();
    names.sort_by_key(|n| n.to_ascii_lowercase());
    names.dedup();
    for name in &names {
        let n4 = v4.get(*name).copied().unwrap_or(0);
        let n3 = v3.get(*name).copied().unwrap_or(0);
        let _ = writeln!(out, "| `{name}` | {n4} | {n3} | parsed |");
    }
    let _ = writeln!(out, "| **distinct** | **{}** | **{}** | |", v4.len(), v3.len());
    let unused: Vec<String> = known.iter().filter(|k| !names.contains(k)).map(|k| format!("`{k}`")).collect();
    if !unused.is_empty() {
        let _ = writeln!(out, "\nAlso parsed, used by neither version: {}.", unused.join(", "));
    }
    out.push('\n');
}

fn names<T: Copy>(all: &[T], f: impl Fn(T) -> String) -> Vec<String> {
    all.iter().map(|&t| f(t)).collect()
}

fn render(v4: &Inventory, v3: &Inventory, files: (usize, usize)) -> String {
    let mut out = String::new();
    out.push_str(
        "# WAF coverage: what the OWASP Core Rule Set uses of SecLang\n\n\
         Generated by `cargo run -p barbican-waf --example inventory` (do not edit by hand; \
         `-- --check` tells whether this file is current). Both versions are loaded with Barbican's \
         loader, then every directive, variable, operator, transformation, action and `ctl:` option is \
         counted from the typed syntax tree.\n\n\
         - CRS 4.28.0: `crs-setup.conf.example` + `rules/*.conf` from the coreruleset repository.\n\
         - CRS 3.3.4: Debian's `modsecurity-crs` (`/etc/modsecurity/crs/crs-setup.conf` + \
         `/usr/share/modsecurity-crs/rules/*.conf`).\n\n\
         \"implemented\" says how far Barbican goes with each name: `parsed` means the SecLang front end \
         (`crates/waf/src/seclang`) reads it into a typed tree and reports misuse as `file:line:col`; the \
         evaluation engine that runs rules comes next and will turn these into `evaluated`.\n\n",
    );
    let _ = writeln!(out, "## Totals\n");
    let _ = writeln!(out, "| | CRS 4.28.0 | CRS 3.3.4 |");
    let _ = writeln!(out, "| --- | ---: | ---: |");
    let _ = writeln!(out, "| rule files | {} | {} |", files.0, files.1);
    let _ = writeln!(out, "| rules (SecRule/SecAction with their chains) | {} | {} |", v4.rules, v3.rules);
    let _ = writeln!(out, "| rules with a chain | {} | {} |", v4.chained, v3.chained);
    let rows: [(&str, Getter); 7] = [
        ("distinct directives", |i| &i.directives),
        ("distinct variables", |i| &i.variables),
        ("distinct operators", |i| &i.operators),
        ("distinct transformations", |i| &i.transformations),
        ("distinct actions", |i| &i.actions),
        ("distinct ctl options", |i| &i.ctl),
        ("distinct variables in %{macros}", |i| &i.macro_variables),
    ];
    for (label, get) in rows {
        let _ = writeln!(out, "| {label} | {} | {} |", get(v4).len(), get(v3).len());
    }
    out.push('\n');

    let known_directives: Vec<String> = directive_names().into_iter().map(str::to_string).collect();
    table(
        &mut out,
        "Directives",
        &known_directives,
        &v4.directives,
        &v3.directives,
        "Each chained `SecRule` counts once.",
    );
    let vars = names(Variable::ALL, |v| v.name().to_string());
    let note = "In rule targets, `SecRuleUpdateTarget*` and `ctl:ruleRemoveTarget*`.";
    table(&mut out, "Variables", &vars, &v4.variables, &v3.variables, note);
    table(&mut out, "Operators", &names(OperatorKind::ALL, |o| format!("@{o}")), &v4.operators, &v3.operators, "");
    let t = names(Transformation::ALL, |t| t.name().to_string());
    table(&mut out, "Transformations", &t, &v4.transformations, &v3.transformations, "");
    table(&mut out, "Actions", &names(ActionName::ALL, |a| a.name().to_string()), &v4.actions, &v3.actions, "");
    table(&mut out, "ctl options", &names(CtlOption::ALL, |c| c.name().to_string()), &v4.ctl, &v3.ctl, "");
    let note =
        "Variables read by `%{...}` in operator arguments, `msg`, `logdata`, `tag`, `setvar`, `initcol`, `expirevar`.";
    table(&mut out, "Variables in macros", &[], &v4.macro_variables, &v3.macro_variables, note);
    table(&mut out, "Language features", &[], &v4.features, &v3.features, "");
    out.push_str(
        "## Not parsed\n\n\
         Everything both CRS versions use parses. Outside the CRS, the parser refuses with an error \
         (never silently): `SecRuleScript` (Lua rules), remote `@pmFromFile https://...` data, and \
         unquoted arguments holding a `\"` or ending in a lone backslash (libmodsecurity3 accepts those; \
         Barbican asks for quotes so that every rule prints back to text that reads the same).\n",
    );
    out
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let check = args.iter().any(|a| a == "--check");
    let out_path = match args.iter().position(|a| a == "--out") {
        Some(i) => PathBuf::from(args.get(i + 1).ok_or("--out needs a path")?),
        None => workspace().join("docs/waf-coverage.md"),
    };
    let crs = crs_dir().join("v4.28.0");
    let hint4 = "git clone --branch v4.28.0 https://github.com/coreruleset/coreruleset <dir>/v4.28.0 and set BARBICAN_CRS_DIR=<dir>";
    let (set4, files4) = load("CRS 4.28.0", crs.join("crs-setup.conf.example"), &crs.join("rules"), hint4)?;
    let setup3 = PathBuf::from("/etc/modsecurity/crs/crs-setup.conf");
    let rules3 = Path::new("/usr/share/modsecurity-crs/rules");
    let (set3, files3) = load("CRS 3.3.4", setup3, rules3, "apt-get install modsecurity-crs")?;
    let text = render(&Inventory::of(&set4), &Inventory::of(&set3), (files4, files3));
    if check {
        let current = std::fs::read_to_string(&out_path).unwrap_or_default();
        if current != text {
            return Err(format!(
                "{} is stale: run `cargo run -p barbican-waf --example inventory`",
                out_path.display()
            ));
        }
        println!("{} is current", out_path.display());
        return Ok(());
    }
    std::fs::write(&out_path, &text).map_err(|e| format!("{}: {e}", out_path.display()))?;
    println!("wrote {}", out_path.display());
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("inventory: {e}");
            ExitCode::FAILURE
        }
    }
}
