//! What the engine does with each SecLang name: the "implemented" column of
//! `docs/waf-coverage.md` (the inventory example reads it from here).
//!
//! Operators and transformations are checked against the code by this module's tests (an
//! operator said to run must compile, one said not to must be refused); the other tables are
//! kept beside the code that evaluates them.

use std::fmt;

use crate::seclang::ast::{ActionName, CtlOption, OperatorKind, Transformation, Variable};

/// How far the engine goes with a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// Evaluated with libmodsecurity3's semantics.
    Evaluated,
    /// Evaluated, with a difference worth knowing.
    Partial(&'static str),
    /// Read and accepted, without effect on verdicts (logging, storage, tuning knobs).
    Ignored(&'static str),
    /// Not implemented: a rule that needs it never matches and is listed by
    /// [`super::RuleSet::unsupported`], or the directive is refused by the parser.
    No(&'static str),
}

impl fmt::Display for Support {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Support::Evaluated => f.write_str("evaluated"),
            Support::Partial(n) => write!(f, "partial: {n}"),
            Support::Ignored(n) => write!(f, "accepted, no effect: {n}"),
            Support::No(n) => write!(f, "**no**: {n}"),
        }
    }
}

/// A directive, by canonical name.
pub fn directive(name: &str) -> Support {
    use Support::*;
    match name {
        "SecRule"
        | "SecAction"
        | "SecMarker"
        | "SecDefaultAction"
        | "SecRuleRemoveById"
        | "SecRuleRemoveByTag"
        | "SecRuleRemoveByMsg"
        | "SecRuleUpdateTargetById"
        | "SecRuleUpdateTargetByTag"
        | "SecRuleUpdateTargetByMsg"
        | "Include"
        | "IncludeOptional"
        | "SecRuleEngine"
        | "SecRequestBodyAccess"
        | "SecResponseBodyAccess"
        | "SecRequestBodyLimit"
        | "SecRequestBodyLimitAction"
        | "SecResponseBodyLimit"
        | "SecResponseBodyMimeType"
        | "SecResponseBodyMimeTypesClear"
        | "SecArgumentSeparator" => Evaluated,
        "SecRequestBodyJsonDepthLimit" => Partial("capped at 1000 levels whatever the setting"),
        "SecRuleUpdateActionById" => Partial("applied to the chain's first rule; a chain offset is ignored"),
        "SecResponseBodyLimitAction" => Partial("the body is always inspected up to the limit (ProcessPartial)"),
        "SecPcreMatchLimit" => Partial("the backtrack limit of patterns on the backtracking engine"),
        "SecComponentSignature" | "SecWebAppId" | "SecSensorId" | "SecServerSignature" => Ignored("informational"),
        "SecCollectionTimeout" => Ignored("no persistent collections"),
        "SecArgumentsLimit" => No("read, not enforced"),
        "SecRequestBodyNoFilesLimit" | "SecRequestBodyInMemoryLimit" => Ignored("as in libmodsecurity3"),
        "SecXmlExternalEntity" => Ignored("external entities are never resolved"),
        "SecCookieFormat" | "SecCookieV0Separator" => Ignored("cookies are read as version 0"),
        "SecRemoteRules" | "SecRemoteRulesFailAction" => No("refused: rules are read from files"),
        "SecGeoLookupDb" | "SecGsbLookupDb" | "SecHttpBlKey" => No("no lookup databases"),
        "SecHashEngine" | "SecHashKey" | "SecHashParam" | "SecHashMethodPm" | "SecHashMethodRx" => {
            No("no response rewriting")
        }
        "SecContentInjection" | "SecStreamInBodyInspection" | "SecStreamOutBodyInspection" => {
            No("bodies are inspected whole")
        }
        "SecRuleInheritance" => No("one configuration context"),
        "SecUnicodeMapFile" | "SecUnicodeCodePage" => No("urlDecodeUni folds full-width ASCII only"),
        n if n.starts_with("SecAuditLog") || n == "SecAuditEngine" => Ignored("the gateway writes its own audit log"),
        _ => Ignored("engine plumbing of ModSecurity (logs, temp files, uploads, connections)"),
    }
}

/// A variable.
pub fn variable(v: Variable) -> Support {
    use Support::*;
    use Variable as V;
    match v {
        V::Ip | V::Global | V::Session | V::User | V::Resource => {
            Partial("kept for the transaction only: no persistent storage")
        }
        V::Xml => Partial("XPath `/*` (the document's text) and `//@*` (attribute values) only"),
        V::Duration => Partial("always 0"),
        V::ModsecBuild => Partial("reads 030009"),
        V::Geo => No("no geolocation database"),
        V::FilesTmpNames => No("uploads are not written to disk"),
        V::RemoteUser | V::UserId | V::SessionId | V::WebAppId | V::WebserverErrorLog | V::MscPcreLimitsExceeded => {
            No("not provided")
        }
        _ => Evaluated,
    }
}

/// An operator.
pub fn operator(o: OperatorKind) -> Support {
    use OperatorKind as O;
    use Support::*;
    match o {
        O::Rx => Partial(
            "bytes, with PCRE's DOTALL and MULTILINE; the linear-time regex crate, or fancy-regex behind a \
             linear-time prefilter for look-around and back-references",
        ),
        O::RxGlobal => Partial("as @rx; captures the first match only"),
        O::Pm => Partial("Aho-Corasick, case-insensitive"),
        O::PmFromFile => Partial("Aho-Corasick, case-insensitive; remote files are refused"),
        O::DetectSqli | O::DetectXss => Partial("libinjectionrs, a Rust port of libinjection"),
        O::GeoLookup => No("no geolocation database"),
        O::Rbl => No("no DNS lookups in the engine"),
        O::GsbLookup | O::InspectFile | O::FuzzyHash | O::ValidateDtd | O::ValidateSchema | O::ValidateHash => {
            No("not implemented")
        }
        O::Rsub => No("no body rewriting"),
        O::VerifyCc | O::VerifyCpf | O::VerifySsn | O::VerifySvnr => No("not implemented"),
        _ => Evaluated,
    }
}

/// A transformation.
pub fn transformation(t: Transformation) -> Support {
    match t {
        Transformation::Md5 => Support::No("not implemented"),
        _ => Support::Evaluated,
    }
}

/// An action.
pub fn action(a: ActionName) -> Support {
    use ActionName as A;
    use Support::*;
    match a {
        A::Drop => Partial("blocks with status 0: the caller closes the connection"),
        A::Redirect | A::Proxy => Partial("blocks with the rule's status; the URL is not followed"),
        A::InitCol | A::ExpireVar | A::DeprecateVar | A::SetUid | A::SetSid | A::SetRsc => {
            Ignored("no persistent collections")
        }
        A::Exec => No("refused: rules cannot run programs"),
        A::Pause => Ignored("never delays"),
        A::Append | A::Prepend => Ignored("no content injection"),
        A::SanitiseArg
        | A::SanitiseMatched
        | A::SanitiseMatchedBytes
        | A::SanitiseRequestHeader
        | A::SanitiseResponseHeader => Ignored("the gateway's audit log redacts on its own"),
        A::Xmlns => Ignored("XPath namespaces are not used"),
        _ => Evaluated,
    }
}

/// A `ctl:` option.
pub fn ctl(c: CtlOption) -> Support {
    use CtlOption as C;
    use Support::*;
    match c {
        C::ForceRequestBodyVariable => Partial("REQUEST_BODY is always set, as in libmodsecurity3"),
        C::AuditEngine | C::AuditLogParts | C::DebugLogLevel => Ignored("logging"),
        C::HashEngine | C::HashEnforcement => No("no response rewriting"),
        C::ParseXmlIntoArgs => No("XML is read through XML:/* and XML://@* only"),
        _ => Evaluated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::operator;
    use crate::seclang::ast::MacroString;

    #[test]
    fn operator_table_matches_the_code() {
        for &o in OperatorKind::ALL {
            let arg = match o {
                OperatorKind::ValidateByteRange => "1-255",
                OperatorKind::IpMatch => "127.0.0.1",
                _ => "1",
            };
            let compiled = operator::compile(o, &MacroString::literal(arg), &[], 1000).is_ok();
            let runs = !matches!(operator(o), Support::No(_));
            assert_eq!(compiled, runs, "@{o}");
        }
    }

    #[test]
    fn transformation_table_matches_the_code() {
        for &t in Transformation::ALL {
            let runs = !matches!(transformation(t), Support::No(_));
            assert_eq!(crate::engine::transform::supported(t), runs, "t:{t}");
        }
    }
}
