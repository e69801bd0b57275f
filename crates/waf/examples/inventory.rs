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

use barbican_waf::engine::support::{self, Support};
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

/// What the engine does with a name of a table.
type Implemented = fn(&str) -> Support;

fn table(out: &mut String, title: &str, known: &[String], v4: &Counts, v3: &Counts, note: &str, imp: Implemented) {
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
        let _ = writeln!(out, "| `{name}` | {n4} | {n3} | {} |", imp(name));
    }
    let _ = writeln!(out, "| **distinct** | **{}** | **{}** | |", v4.len(), v3.len());
    let unused: Vec<String> = known.iter().filter(|k| !names.contains(k)).map(|k| format!("`{k}`")).collect();
    if !unused.is_empty() {
        let _ = writeln!(out, "\nAlso parsed, used by neither version: {}.", unused.join(", "));
        let missing: Vec<String> = known
            .iter()
            .filter(|k| !names.contains(k))
            .filter_map(|k| match imp(k) {
                Support::No(why) => Some(format!("`{k}` ({why})")),
                _ => None,
            })
            .collect();
        if !missing.is_empty() {
            let _ = writeln!(out, "\nOf those, not implemented: {}.", missing.join(", "));
        }
    }
    out.push('\n');
}

fn imp_directive(n: &str) -> Support {
    support::directive(n)
}

fn imp_variable(n: &str) -> Support {
    Variable::from_name(n).map_or(Support::No("unknown"), support::variable)
}

fn imp_operator(n: &str) -> Support {
    OperatorKind::from_name(n.trim_start_matches('@')).map_or(Support::No("unknown"), support::operator)
}

fn imp_transformation(n: &str) -> Support {
    Transformation::from_name(n).map_or(Support::No("unknown"), support::transformation)
}

fn imp_action(n: &str) -> Support {
    ActionName::from_name(n).map_or(Support::No("unknown"), support::action)
}

fn imp_ctl(n: &str) -> Support {
    CtlOption::from_name(n).map_or(Support::No("unknown"), support::ctl)
}

fn imp_feature(_: &str) -> Support {
    Support::Evaluated
}

fn names<T: Copy>(all: &[T], f: impl Fn(T) -> String) -> Vec<String> {
    all.iter().map(|&t| f(t)).collect()
}

/// What compiling a version with the engine gives.
struct EngineReport {
    active: usize,
    fallbacks: Vec<barbican_waf::engine::Fallback>,
    unsupported: Vec<barbican_waf::engine::Unsupported>,
}

impl EngineReport {
    fn of(set: &RuleSet) -> EngineReport {
        let rs = barbican_waf::RuleSet::compile(set);
        EngineReport {
            active: rs.rule_count(),
            fallbacks: rs.fallbacks().to_vec(),
            unsupported: rs.unsupported().to_vec(),
        }
    }

    fn lines(&self, label: &str, out: &mut String) {
        let _ = writeln!(out, "- {label}: {} rules compiled.", self.active);
        if self.fallbacks.is_empty() {
            let _ =
                writeln!(out, "  Every `@rx` runs on the linear-time `regex` crate; none falls back to backtracking.");
        } else {
            let list: Vec<String> = self
                .fallbacks
                .iter()
                .map(|f| format!("{}{}", f.rule_id, if f.prefilter { "" } else { " (no prefilter)" }))
                .collect();
            let _ = writeln!(
                out,
                "  On the backtracking engine (look-around or back-references), each behind a linear-time \
                 prefilter: {}.",
                list.join(", ")
            );
        }
        if self.unsupported.is_empty() {
            let _ = writeln!(out, "  No rule needs something the engine lacks.");
        } else {
            let list: Vec<String> = self.unsupported.iter().map(|u| format!("{} ({})", u.rule_id, u.reason)).collect();
            let _ = writeln!(out, "  Never match, for lack of support: {}.", list.join("; "));
        }
    }
}

/// The `# pass rate:` line of a regression suite's failure list.
fn suite_rate(version: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/crs-{version}-known-failures.txt"));
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("# pass rate: ").map(str::to_string)))
        .unwrap_or_else(|| "unknown".into())
}

fn render(v4: &Inventory, v3: &Inventory, files: (usize, usize), engines: (&EngineReport, &EngineReport)) -> String {
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
         \"implemented\" says what the evaluation engine (`crates/waf/src/engine`) does with each name, \
         as its `engine::support` module states it: `evaluated` (libmodsecurity3's semantics), `partial` \
         (evaluated, with the difference named), `accepted, no effect` (read, no bearing on verdicts), \
         `**no**` (a rule that needs it never matches and is listed at start-up). Everything listed \
         parses: the SecLang front end reports misuse as `file:line:col`.\n\n",
    );
    let _ = writeln!(out, "## Engine\n");
    engines.0.lines("CRS 4.28.0", &mut out);
    engines.1.lines("CRS 3.3.4", &mut out);
    let _ = writeln!(
        out,
        "- The CRS 4.28.0 regression suite (go-ftw YAML, nginx overrides applied, run in-process by \
         `crates/waf/tests/crs_regression.rs`): {}; failures are listed in \
         `crates/waf/tests/crs-4.28.0-known-failures.txt`.",
        suite_rate("4.28.0")
    );
    let _ = writeln!(
        out,
        "- Debian's CRS 3.3.4 against its own regression suite (same runner): {}. The suite was \
         written for Apache and ModSecurity 2 and ships no nginx overrides; its tests that send the \
         same requests as an overridden CRS 4.28.0 test of the same rule (up to the suites' harness \
         defaults: user agent, `Accept*`, HTTP/1.0 or 1.1, 4.28.0's backend paths) take 4.28.0's \
         nginx override, except the two overrides about settings 4.28.0's harness leaves out \
         (920360-1, 920380-1). Each remaining failure is listed with its reason in \
         `crates/waf/tests/crs-3.3.4-known-failures.txt` (nginx's handling of the request, \
         libmodsecurity3's reading of the rules, the suite's own set-up).",
        suite_rate("3.3.4")
    );
    out.push_str(
        "- Against nginx + libmodsecurity3 3.0.9 (Debian 12) on the same requests, set up alike \
         (`differential_crs_4_28_0` and `differential_crs_3_3_4` in `crates/waf/tests/crs_regression.rs`, \
         each starting its own nginx through `crates/waf/tests/differential/run.sh`; they fail below \
         99 % agreement on the rule ids or 99.5 % on the block/pass verdict, which is whether a rule \
         that refuses with `SecRuleEngine On` logged, 949110 for the inbound anomaly score): with CRS \
         4.28.0, 4962 of 4972 test stages log the same rule ids, all 4972 reach the same verdict, and \
         all but those 10 and 8 more (the same 922110 cause) reach the same inbound anomaly score; \
         with Debian's CRS 3.3.4 and its suite, 2402 of 2403 stages log the same ids and all 2403 \
         reach the same verdict. \
         The differences are libmodsecurity3 3.0.9 defects that the CRS suite does not share, where \
         Barbican gives the suite's answer: 3.0.9 keeps the CRLF at the end of \
         `MULTIPART_PART_HEADERS` values, so 922110 fires on legal charsets; its Aho-Corasick misses \
         `.env` in `/.a0proj/secrets.env` (930130).\n\n",
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
    let note = "Each chained `SecRule` counts once.";
    table(&mut out, "Directives", &known_directives, &v4.directives, &v3.directives, note, imp_directive);
    let vars = names(Variable::ALL, |v| v.name().to_string());
    let note = "In rule targets, `SecRuleUpdateTarget*` and `ctl:ruleRemoveTarget*`.";
    table(&mut out, "Variables", &vars, &v4.variables, &v3.variables, note, imp_variable);
    let ops = names(OperatorKind::ALL, |o| format!("@{o}"));
    table(&mut out, "Operators", &ops, &v4.operators, &v3.operators, "", imp_operator);
    let t = names(Transformation::ALL, |t| t.name().to_string());
    table(&mut out, "Transformations", &t, &v4.transformations, &v3.transformations, "", imp_transformation);
    let a = names(ActionName::ALL, |a| a.name().to_string());
    table(&mut out, "Actions", &a, &v4.actions, &v3.actions, "", imp_action);
    let c = names(CtlOption::ALL, |c| c.name().to_string());
    table(&mut out, "ctl options", &c, &v4.ctl, &v3.ctl, "", imp_ctl);
    let note =
        "Variables read by `%{...}` in operator arguments, `msg`, `logdata`, `tag`, `setvar`, `initcol`, `expirevar`.";
    table(&mut out, "Variables in macros", &[], &v4.macro_variables, &v3.macro_variables, note, imp_variable);
    table(&mut out, "Language features", &[], &v4.features, &v3.features, "", imp_feature);
    out.push_str(
        "## Not implemented\n\n\
         Used by CRS 3.3.4 only, and only when configured for it: `@geoLookup` with `GEO` (910100, country \
         blocking, needs a GeoIP database) and `@rbl` (910140, DNS blocklists); persistent collections \
         (`IP`, `GLOBAL`, `initcol`, `expirevar`: CRS 3.3.4's DoS and brute-force rules) live for one \
         transaction only. Used by neither version: `@gsbLookup`, `@inspectFile`, `@fuzzyHash`, \
         `@validateDTD`, `@validateSchema`, `@validateHash`, `@verifyCC`, `@verifyCPF`, `@verifySSN`, \
         `@verifySVNR`, `@rsub`, `t:md5`, `exec`, `ctl:parseXmlIntoArgs`, `SecArgumentsLimit` \
         (read, not enforced), XPath other than `/*` and `//@*`.\n\n\
         ## How rules are evaluated\n\n\
         Every literal `@rx` on the linear engine, and every `@pm` list of up to 300 phrases (as the \
         regex `(?si-u)(?:p1|p2|...)`, the same test), is also compiled into `regex-automata` \
         multi-pattern automata shared by the scopes that rules check with the same patterns \
         (`engine::prescan`); a scope is a variable, or the members of a collection with one key \
         (`REQUEST_HEADERS:User-Agent` is scanned apart from the other headers). Per request, each \
         member of such a scope is transformed once per distinct rest of chain \
         (steps a one-pass byte scan proves idle are skipped; `multiMatch` rules get every variant) and \
         scanned once; a rule part whose pattern's bit stays clear for all its targets cannot match and \
         costs a few bit tests. Set bits fall back to the part's own regex, so verdicts do not change. \
         Patterns that match ordinary values (a corpus of typical headers and bodies) are checked alone \
         behind one joint test, and a request body pattern by pattern, both to keep the overlapping \
         search from reporting the same pattern at every position; the joint automata compute at most \
         512 new transitions per request (random bytes need one at nearly every byte), after which \
         values go pattern by pattern too; a case-insensitive pattern (or short `@pm` list) run alone \
         runs lowercased on the value lowercased when it then starts with fewer literals, which gets it \
         a literal prefilter where its case-insensitive alternatives get none. `@pm` lists are Aho-Corasick \
         automata (longer file lists stay out of the joint automata: joined in, they made them larger \
         and requests slower); `@detectSQLi`/`@detectXSS` run libinjectionrs (vendored with a hash-indexed keyword \
         lookup, `vendor/libinjectionrs/VENDORED.md`). Operators no automaton takes but whose answer \
         depends on the value alone (libinjection, long phrase lists, `@validateByteRange` and the \
         other validations, negated or backtracking `@rx`, `@rx ^$`, comparisons with a literal \
         argument) take part in the prescan as *checks*: a check has a bit like a pattern's, set by \
         running the operator on the member's form through its chain, so a benign request skips \
         those rules with a bit test too. Only parts of rules left in the folded steps (below: the \
         rules most requests run) become checks.\n\n\
         What a scope's member matches (patterns and checks), libinjection's verdict on a value, and \
         whether it holds a phrase of a list too long for the automata depend on the value alone: the rule set \
         remembers them across requests for values of up to 512 bytes \
         (`engine::memo`), since real traffic repeats user agents, header values and most field \
         values. Each memo has a shard per core (up to 8), and each shard keeps at most 512 values \
         in two generations (values in use stay, a flood \
         of new ones ages out the rest), keeps a value the second time it comes (a Bloom filter of \
         first sightings), compares keys whole under a hash seeded at random (foldhash), and never makes a \
         request wait for another's lock. A scope's members are looked up under one lock, and short \
         values and their answers sit inside the table's entries (a member where nothing was found \
         keeps no bitset), so a hit reads one place in memory. A reloaded rule set starts with empty \
         memos. \
         `bench/waf.sh` reports the speed both with repeated values and with none (`GET*`, \
         `POST*`).\n\n\
         Rules whose outcome is the same for every request are run once, when the rule set is \
         compiled, and replaced by what they do (`engine::transaction::fold`): a rule that reads only \
         `TX` variables no earlier rule left to run may have set (and its own match), without \
         `capture` or `multiMatch`, and that, if it matches, neither logs nor has a severity, a \
         disruptive action or `ctl:`. A rule with a check on such variables that misses folds away \
         whatever its `setvar`s read, when the parts before that check only match (no `setvar`, \
         no `capture` of their own); with no response body ever read (`SecResponseBodyAccess Off` \
         and no `ctl:responseBodyAccess=On`), `RESPONSE_BODY` is empty in every transaction and \
         counts as such a variable. A quiet one-part rule whose check always matches is replayed: \
         its `setvar`s run without the check. In CRS these are the initialization (`SecAction`s, \
         `&TX:x \"@eq 0\"` defaults), every file's paranoia-level checks, whose `skipAfter` drops \
         the rules above the configured level, the anomaly sums per level, and at paranoia 1 the \
         response-body rules: a benign GET and its response go through 176 rules instead of 391 \
         (5 more replayed). Where a rule left to run may jump (`skipAfter`, \
         `skip`), the folded steps have a landing, and what they know there is what every path to it brings. A \
         transaction goes on with the rules as written from the first rule that jumps where the \
         folded steps do not come, allows or blocks, removes (`ctl:ruleRemove*`) a rule that was \
         run at compile time, or removes a `TX` (or `RESPONSE_BODY`) target. Phase 5 runs folded only after phases 1 to 4 \
         ran folded to their end (it also runs after an interruption, and when the response phases \
         did not run).\n\n\
         None of these shortcuts (folded steps, prescan gates, memos, chains whose cheap parts run \
         first) may change an answer: a rule set compiled with `RuleSet::without_shortcuts` \
         evaluates every rule as written, and tests hold the two to the same answer (interruption, \
         verdict, scores, and every logged match with its message, in order) on every stage of both \
         CRS regression suites (`crates/waf/tests/crs_regression.rs`) and on requests recombined \
         from attack seeds (`crates/waf/tests/shortcuts.rs`, also the `shortcuts` fuzz target), \
         with CRS 4.28.0 at paranoia level 4 (and, on the recombined requests, at 1, blocking).\n\n\
         ## Not parsed\n\n\
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
    let engines = (EngineReport::of(&set4), EngineReport::of(&set3));
    let text = render(&Inventory::of(&set4), &Inventory::of(&set3), (files4, files3), (&engines.0, &engines.1));
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
