//! The typed SecLang syntax tree and its printer.
//!
//! A [`File`] is a list of [`Directive`]s. Rules ([`Rule`]) hold their chained rules, so one
//! `Rule` is one unit of evaluation. Everything a later compiler groups on is an enum or a plain
//! value: [`Variable`]s and their [`Target`] selectors, [`OperatorKind`] and its argument,
//! [`Transformation`]s, [`ActionKind`]s (with structured `setvar`, `ctl:`, `phase`, `severity`),
//! and [`MacroString`]s whose `%{...}` parts are already resolved to variables.
//!
//! `Display` prints SecLang that parses back to an equal tree. [`Span`]s say where a node came
//! from and, like `syn`'s identifiers, do not take part in equality.

use std::fmt::{self, Write as _};
use std::hash::{Hash, Hasher};

use super::lexer::{quotable, write_quoted};

/// A position in a source: byte offset, line and column (both from 1; columns in characters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Position {
    /// Byte offset from the start of the source.
    pub offset: usize,
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, in characters.
    pub column: usize,
}

/// Where a node came from. Spans are metadata: they compare equal and hash alike whatever
/// they hold, so that trees are compared by meaning.
#[derive(Clone, Copy, Debug, Default)]
pub struct Span {
    /// First character.
    pub start: Position,
    /// Just past the last character.
    pub end: Position,
}

impl PartialEq for Span {
    fn eq(&self, _: &Span) -> bool {
        true
    }
}

impl Eq for Span {}

impl Hash for Span {
    fn hash<H: Hasher>(&self, _: &mut H) {}
}

/// Declares an enum of SecLang names: canonical spelling, aliases, case-insensitive lookup.
macro_rules! names {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $var:ident = $s:literal $(| $alias:literal)*,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vm])* #[doc = concat!("`", $s, "`")] $var,)*
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$var,)*];

            /// The canonical SecLang spelling.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$var => $s,)*
                }
            }

            /// Looks up a name, ignoring ASCII case; aliases are accepted.
            pub fn from_name(s: &str) -> Option<$name> {
                $(if s.eq_ignore_ascii_case($s) $(|| s.eq_ignore_ascii_case($alias))* {
                    return Some($name::$var);
                })*
                None
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

names! {
    /// A variable or collection that rules inspect (`ARGS`, `REQUEST_HEADERS`, `TX`, ...).
    pub enum Variable {
        Args = "ARGS",
        ArgsCombinedSize = "ARGS_COMBINED_SIZE",
        ArgsGet = "ARGS_GET",
        ArgsGetNames = "ARGS_GET_NAMES",
        ArgsNames = "ARGS_NAMES",
        ArgsPost = "ARGS_POST",
        ArgsPostNames = "ARGS_POST_NAMES",
        AuthType = "AUTH_TYPE",
        Duration = "DURATION",
        Env = "ENV",
        Files = "FILES",
        FilesCombinedSize = "FILES_COMBINED_SIZE",
        FilesNames = "FILES_NAMES",
        FilesSizes = "FILES_SIZES",
        FilesTmpContent = "FILES_TMP_CONTENT",
        FilesTmpNames = "FILES_TMPNAMES",
        FullRequest = "FULL_REQUEST",
        FullRequestLength = "FULL_REQUEST_LENGTH",
        Geo = "GEO",
        Global = "GLOBAL",
        HighestSeverity = "HIGHEST_SEVERITY",
        InboundDataError = "INBOUND_DATA_ERROR",
        Ip = "IP",
        MatchedVar = "MATCHED_VAR",
        MatchedVarName = "MATCHED_VAR_NAME",
        MatchedVars = "MATCHED_VARS",
        MatchedVarsNames = "MATCHED_VARS_NAMES",
        ModsecBuild = "MODSEC_BUILD",
        MscPcreLimitsExceeded = "MSC_PCRE_LIMITS_EXCEEDED",
        MultipartBoundaryQuoted = "MULTIPART_BOUNDARY_QUOTED",
        MultipartBoundaryWhitespace = "MULTIPART_BOUNDARY_WHITESPACE",
        MultipartCrlfLfLines = "MULTIPART_CRLF_LF_LINES",
        MultipartDataAfter = "MULTIPART_DATA_AFTER",
        MultipartDataBefore = "MULTIPART_DATA_BEFORE",
        MultipartFileLimitExceeded = "MULTIPART_FILE_LIMIT_EXCEEDED",
        MultipartFilename = "MULTIPART_FILENAME",
        MultipartHeaderFolding = "MULTIPART_HEADER_FOLDING",
        MultipartInvalidHeaderFolding = "MULTIPART_INVALID_HEADER_FOLDING",
        MultipartInvalidPart = "MULTIPART_INVALID_PART",
        MultipartInvalidQuoting = "MULTIPART_INVALID_QUOTING",
        MultipartLfLine = "MULTIPART_LF_LINE",
        MultipartMissingSemicolon = "MULTIPART_MISSING_SEMICOLON",
        MultipartName = "MULTIPART_NAME",
        MultipartPartHeaders = "MULTIPART_PART_HEADERS",
        MultipartSemicolonMissing = "MULTIPART_SEMICOLON_MISSING",
        MultipartStrictError = "MULTIPART_STRICT_ERROR",
        MultipartUnmatchedBoundary = "MULTIPART_UNMATCHED_BOUNDARY",
        OutboundDataError = "OUTBOUND_DATA_ERROR",
        PathInfo = "PATH_INFO",
        QueryString = "QUERY_STRING",
        RemoteAddr = "REMOTE_ADDR",
        RemoteHost = "REMOTE_HOST",
        RemotePort = "REMOTE_PORT",
        RemoteUser = "REMOTE_USER",
        ReqbodyError = "REQBODY_ERROR",
        ReqbodyErrorMsg = "REQBODY_ERROR_MSG",
        ReqbodyProcessor = "REQBODY_PROCESSOR",
        ReqbodyProcessorError = "REQBODY_PROCESSOR_ERROR",
        ReqbodyProcessorErrorMsg = "REQBODY_PROCESSOR_ERROR_MSG",
        RequestBasename = "REQUEST_BASENAME",
        RequestBody = "REQUEST_BODY",
        RequestBodyLength = "REQUEST_BODY_LENGTH",
        RequestCookies = "REQUEST_COOKIES",
        RequestCookiesNames = "REQUEST_COOKIES_NAMES",
        RequestFilename = "REQUEST_FILENAME",
        RequestHeaders = "REQUEST_HEADERS",
        RequestHeadersNames = "REQUEST_HEADERS_NAMES",
        RequestLine = "REQUEST_LINE",
        RequestMethod = "REQUEST_METHOD",
        RequestProtocol = "REQUEST_PROTOCOL",
        RequestUri = "REQUEST_URI",
        RequestUriRaw = "REQUEST_URI_RAW",
        Resource = "RESOURCE",
        ResponseBody = "RESPONSE_BODY",
        ResponseContentLength = "RESPONSE_CONTENT_LENGTH",
        ResponseContentType = "RESPONSE_CONTENT_TYPE",
        ResponseHeaders = "RESPONSE_HEADERS",
        ResponseHeadersNames = "RESPONSE_HEADERS_NAMES",
        ResponseProtocol = "RESPONSE_PROTOCOL",
        ResponseStatus = "RESPONSE_STATUS",
        Rule = "RULE",
        ServerAddr = "SERVER_ADDR",
        ServerName = "SERVER_NAME",
        ServerPort = "SERVER_PORT",
        Session = "SESSION",
        SessionId = "SESSIONID",
        StatusLine = "STATUS_LINE",
        Time = "TIME",
        TimeDay = "TIME_DAY",
        TimeEpoch = "TIME_EPOCH",
        TimeHour = "TIME_HOUR",
        TimeMin = "TIME_MIN",
        TimeMon = "TIME_MON",
        TimeSec = "TIME_SEC",
        TimeWday = "TIME_WDAY",
        TimeYear = "TIME_YEAR",
        Tx = "TX",
        UniqueId = "UNIQUE_ID",
        UrlencodedError = "URLENCODED_ERROR",
        User = "USER",
        UserId = "USERID",
        WebAppId = "WEBAPPID",
        WebserverErrorLog = "WEBSERVER_ERROR_LOG",
        Xml = "XML",
    }
}

impl Variable {
    /// Whether the variable is a collection of named values (takes a `:key` selector).
    pub fn is_collection(self) -> bool {
        use Variable::*;
        matches!(
            self,
            Args | ArgsGet
                | ArgsGetNames
                | ArgsNames
                | ArgsPost
                | ArgsPostNames
                | Env
                | Files
                | FilesNames
                | FilesSizes
                | FilesTmpContent
                | FilesTmpNames
                | Geo
                | Global
                | Ip
                | MatchedVars
                | MatchedVarsNames
                | MultipartFilename
                | MultipartName
                | MultipartPartHeaders
                | RequestCookies
                | RequestCookiesNames
                | RequestHeaders
                | RequestHeadersNames
                | Resource
                | ResponseHeaders
                | ResponseHeadersNames
                | Rule
                | Session
                | Tx
                | User
                | Xml
        )
    }

    /// Whether `setvar`, `expirevar` and friends may write to the collection.
    pub fn is_writable(self) -> bool {
        matches!(
            self,
            Variable::Tx | Variable::Ip | Variable::Global | Variable::Session | Variable::User | Variable::Resource
        )
    }
}

names! {
    /// An operator (`@rx`, `@pm`, ...).
    pub enum OperatorKind {
        BeginsWith = "beginsWith",
        Contains = "contains",
        ContainsWord = "containsWord",
        DetectSqli = "detectSQLi",
        DetectXss = "detectXSS",
        EndsWith = "endsWith",
        Eq = "eq",
        FuzzyHash = "fuzzyHash",
        Ge = "ge",
        GeoLookup = "geoLookup",
        GsbLookup = "gsbLookup",
        Gt = "gt",
        InspectFile = "inspectFile",
        IpMatch = "ipMatch",
        IpMatchFromFile = "ipMatchFromFile" | "ipMatchF",
        Le = "le",
        Lt = "lt",
        NoMatch = "noMatch",
        Pm = "pm",
        PmFromFile = "pmFromFile" | "pmf",
        Rbl = "rbl",
        Rsub = "rsub",
        Rx = "rx",
        RxGlobal = "rxGlobal",
        Streq = "streq",
        Strmatch = "strmatch",
        UnconditionalMatch = "unconditionalMatch",
        ValidateByteRange = "validateByteRange",
        ValidateDtd = "validateDTD",
        ValidateHash = "validateHash",
        ValidateSchema = "validateSchema",
        ValidateUrlEncoding = "validateUrlEncoding",
        ValidateUtf8Encoding = "validateUtf8Encoding",
        VerifyCc = "verifyCC",
        VerifyCpf = "verifyCPF",
        VerifySsn = "verifySSN",
        VerifySvnr = "verifySVNR",
        Within = "within",
    }
}

impl OperatorKind {
    /// Whether the operator needs an argument.
    pub fn takes_argument(self) -> bool {
        use OperatorKind::*;
        !matches!(
            self,
            DetectSqli
                | DetectXss
                | GeoLookup
                | NoMatch
                | UnconditionalMatch
                | ValidateUrlEncoding
                | ValidateUtf8Encoding
        )
    }

    /// Whether the argument names data files (read by the loader).
    pub fn reads_files(self) -> bool {
        matches!(self, OperatorKind::PmFromFile | OperatorKind::IpMatchFromFile)
    }
}

names! {
    /// A transformation (`t:` action).
    pub enum Transformation {
        Base64Decode = "base64Decode",
        Base64DecodeExt = "base64DecodeExt",
        Base64Encode = "base64Encode",
        CmdLine = "cmdLine",
        CompressWhitespace = "compressWhitespace",
        CssDecode = "cssDecode",
        EscapeSeqDecode = "escapeSeqDecode",
        HexDecode = "hexDecode",
        HexEncode = "hexEncode",
        HtmlEntityDecode = "htmlEntityDecode",
        JsDecode = "jsDecode",
        Length = "length",
        Lowercase = "lowercase",
        Md5 = "md5",
        None = "none",
        NormalizePath = "normalizePath" | "normalisePath",
        NormalizePathWin = "normalizePathWin" | "normalisePathWin",
        ParityEven7bit = "parityEven7bit",
        ParityOdd7bit = "parityOdd7bit",
        ParityZero7bit = "parityZero7bit",
        RemoveComments = "removeComments",
        RemoveCommentsChar = "removeCommentsChar",
        RemoveNulls = "removeNulls",
        RemoveWhitespace = "removeWhitespace",
        ReplaceComments = "replaceComments",
        ReplaceNulls = "replaceNulls",
        Sha1 = "sha1",
        SqlHexDecode = "sqlHexDecode",
        Trim = "trim",
        TrimLeft = "trimLeft",
        TrimRight = "trimRight",
        Uppercase = "uppercase",
        UrlDecode = "urlDecode",
        UrlDecodeUni = "urlDecodeUni",
        UrlEncode = "urlEncode",
        Utf8ToUnicode = "utf8toUnicode",
    }
}

names! {
    /// An action's name; [`ActionKind`] carries the parsed value.
    pub enum ActionName {
        Accuracy = "accuracy",
        Allow = "allow",
        Append = "append",
        AuditLog = "auditlog",
        Block = "block",
        Capture = "capture",
        Chain = "chain",
        Ctl = "ctl",
        Deny = "deny",
        DeprecateVar = "deprecatevar",
        Drop = "drop",
        Exec = "exec",
        ExpireVar = "expirevar",
        Id = "id",
        InitCol = "initcol",
        Log = "log",
        LogData = "logdata",
        Maturity = "maturity",
        Msg = "msg",
        MultiMatch = "multiMatch",
        NoAuditLog = "noauditlog",
        NoLog = "nolog",
        Pass = "pass",
        Pause = "pause",
        Phase = "phase",
        Prepend = "prepend",
        Proxy = "proxy",
        Redirect = "redirect",
        Rev = "rev",
        SanitiseArg = "sanitiseArg" | "sanitizeArg",
        SanitiseMatched = "sanitiseMatched" | "sanitizeMatched",
        SanitiseMatchedBytes = "sanitiseMatchedBytes" | "sanitizeMatchedBytes",
        SanitiseRequestHeader = "sanitiseRequestHeader" | "sanitizeRequestHeader",
        SanitiseResponseHeader = "sanitiseResponseHeader" | "sanitizeResponseHeader",
        SetEnv = "setenv",
        SetRsc = "setrsc",
        SetSid = "setsid",
        SetUid = "setuid",
        SetVar = "setvar",
        Severity = "severity",
        Skip = "skip",
        SkipAfter = "skipAfter",
        Status = "status",
        T = "t",
        Tag = "tag",
        Ver = "ver",
        Xmlns = "xmlns",
    }
}

names! {
    /// A `ctl:` option's name; [`Ctl`] carries the parsed value.
    pub enum CtlOption {
        AuditEngine = "auditEngine",
        AuditLogParts = "auditLogParts",
        DebugLogLevel = "debugLogLevel",
        ForceRequestBodyVariable = "forceRequestBodyVariable",
        HashEnforcement = "hashEnforcement",
        HashEngine = "hashEngine",
        ParseXmlIntoArgs = "parseXmlIntoArgs",
        RequestBodyAccess = "requestBodyAccess",
        RequestBodyLimit = "requestBodyLimit",
        RequestBodyProcessor = "requestBodyProcessor",
        ResponseBodyAccess = "responseBodyAccess",
        ResponseBodyLimit = "responseBodyLimit",
        RuleEngine = "ruleEngine",
        RuleRemoveById = "ruleRemoveById",
        RuleRemoveByMsg = "ruleRemoveByMsg",
        RuleRemoveByTag = "ruleRemoveByTag",
        RuleRemoveTargetById = "ruleRemoveTargetById",
        RuleRemoveTargetByMsg = "ruleRemoveTargetByMsg",
        RuleRemoveTargetByTag = "ruleRemoveTargetByTag",
    }
}

names! {
    /// Directives whose value is `On` or `Off`.
    pub enum SwitchDirective {
        ConnEngine = "SecConnEngine",
        ContentInjection = "SecContentInjection",
        DisableBackendCompression = "SecDisableBackendCompression",
        HashEngine = "SecHashEngine",
        InterceptOnError = "SecInterceptOnError",
        RequestBodyAccess = "SecRequestBodyAccess",
        ResponseBodyAccess = "SecResponseBodyAccess",
        RuleInheritance = "SecRuleInheritance",
        StatusEngine = "SecStatusEngine",
        StreamInBodyInspection = "SecStreamInBodyInspection",
        StreamOutBodyInspection = "SecStreamOutBodyInspection",
        TmpSaveUploadedFiles = "SecTmpSaveUploadedFiles",
        UploadKeepFiles = "SecUploadKeepFiles",
        XmlExternalEntity = "SecXmlExternalEntity",
    }
}

names! {
    /// Directives whose value is a non-negative number.
    pub enum NumberDirective {
        ArgumentsLimit = "SecArgumentsLimit",
        CollectionTimeout = "SecCollectionTimeout",
        ConnReadStateLimit = "SecConnReadStateLimit",
        ConnWriteStateLimit = "SecConnWriteStateLimit",
        CookieFormat = "SecCookieFormat",
        DebugLogLevel = "SecDebugLogLevel",
        PcreMatchLimit = "SecPcreMatchLimit",
        PcreMatchLimitRecursion = "SecPcreMatchLimitRecursion",
        ReadStateLimit = "SecReadStateLimit",
        RequestBodyInMemoryLimit = "SecRequestBodyInMemoryLimit",
        RequestBodyJsonDepthLimit = "SecRequestBodyJsonDepthLimit",
        RequestBodyLimit = "SecRequestBodyLimit",
        RequestBodyNoFilesLimit = "SecRequestBodyNoFilesLimit",
        ResponseBodyLimit = "SecResponseBodyLimit",
        UploadFileLimit = "SecUploadFileLimit",
        WriteStateLimit = "SecWriteStateLimit",
    }
}

names! {
    /// Directives whose value is one piece of text (a path, a key, a separator, ...).
    pub enum TextDirective {
        ArgumentSeparator = "SecArgumentSeparator",
        AuditLog = "SecAuditLog",
        AuditLog2 = "SecAuditLog2",
        AuditLogDirMode = "SecAuditLogDirMode",
        AuditLogFileMode = "SecAuditLogFileMode",
        AuditLogParts = "SecAuditLogParts",
        AuditLogRelevantStatus = "SecAuditLogRelevantStatus",
        AuditLogStorageDir = "SecAuditLogStorageDir",
        ChrootDir = "SecChrootDir",
        CookieV0Separator = "SecCookieV0Separator",
        DataDir = "SecDataDir",
        DebugLog = "SecDebugLog",
        GeoLookupDb = "SecGeoLookupDb",
        GsbLookupDb = "SecGsbLookupDb",
        GuardianLog = "SecGuardianLog",
        HashKey = "SecHashKey",
        HashParam = "SecHashParam",
        HttpBlKey = "SecHttpBlKey",
        RulePerfTime = "SecRulePerfTime",
        SensorId = "SecSensorId",
        ServerSignature = "SecServerSignature",
        TmpDir = "SecTmpDir",
        UnicodeCodePage = "SecUnicodeCodePage",
        UploadDir = "SecUploadDir",
        UploadFileMode = "SecUploadFileMode",
        WebAppId = "SecWebAppId",
    }
}

names! {
    /// Directives that take several words (`SecResponseBodyMimeType text/plain text/html`).
    pub enum ListDirective {
        CacheTransformations = "SecCacheTransformations",
        HashMethodPm = "SecHashMethodPm",
        HashMethodRx = "SecHashMethodRx",
        RemoteRules = "SecRemoteRules",
        ResponseBodyMimeType = "SecResponseBodyMimeType",
        UnicodeMapFile = "SecUnicodeMapFile",
    }
}

names! {
    /// `SecRuleEngine` and `ctl:ruleEngine`.
    pub enum EngineMode {
        On = "On",
        Off = "Off",
        DetectionOnly = "DetectionOnly",
    }
}

names! {
    /// `SecAuditEngine` and `ctl:auditEngine`.
    pub enum AuditEngineMode {
        On = "On",
        Off = "Off",
        RelevantOnly = "RelevantOnly",
    }
}

names! {
    /// `SecRequestBodyLimitAction`, `SecResponseBodyLimitAction`.
    pub enum LimitAction {
        Reject = "Reject",
        ProcessPartial = "ProcessPartial",
    }
}

names! {
    /// `SecAuditLogType`.
    pub enum AuditLogType {
        Serial = "Serial",
        Concurrent = "Concurrent" | "Parallel",
        Https = "HTTPS",
    }
}

names! {
    /// `SecAuditLogFormat`.
    pub enum AuditLogFormat {
        Json = "JSON",
        Native = "Native",
    }
}

names! {
    /// `SecRemoteRulesFailAction`.
    pub enum FailAction {
        Abort = "Abort",
        Warn = "Warn",
    }
}

names! {
    /// `ctl:requestBodyProcessor`.
    pub enum BodyProcessor {
        Json = "JSON",
        Multipart = "MULTIPART",
        UrlEncoded = "URLENCODED",
        Xml = "XML",
    }
}

names! {
    /// `ctl:parseXmlIntoArgs`.
    pub enum XmlArgsMode {
        On = "On",
        Off = "Off",
        OnlyArgs = "OnlyArgs",
    }
}

names! {
    /// Rule severity, most severe first; `severity:2` and `severity:'CRITICAL'` are the same.
    pub enum Severity {
        Emergency = "EMERGENCY",
        Alert = "ALERT",
        Critical = "CRITICAL",
        Error = "ERROR",
        Warning = "WARNING",
        Notice = "NOTICE",
        Info = "INFO",
        Debug = "DEBUG",
    }
}

impl Severity {
    /// The syslog number, 0 (emergency) to 7 (debug).
    pub fn number(self) -> u8 {
        Severity::ALL.iter().position(|&s| s == self).unwrap_or(0) as u8
    }

    /// The severity of a syslog number.
    pub fn from_number(n: u8) -> Option<Severity> {
        Severity::ALL.get(usize::from(n)).copied()
    }
}

/// The processing phase of a rule, 1 to 5.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Phase {
    /// 1: request headers.
    RequestHeaders = 1,
    /// 2 (`request`): request body.
    RequestBody = 2,
    /// 3: response headers.
    ResponseHeaders = 3,
    /// 4 (`response`): response body.
    ResponseBody = 4,
    /// 5 (`logging`).
    Logging = 5,
}

impl Phase {
    /// All phases in order.
    pub const ALL: [Phase; 5] =
        [Phase::RequestHeaders, Phase::RequestBody, Phase::ResponseHeaders, Phase::ResponseBody, Phase::Logging];

    /// The phase number.
    pub fn number(self) -> u8 {
        self as u8
    }

    /// Reads `1`..`5`, `request`, `response` or `logging`.
    pub fn parse(s: &str) -> Option<Phase> {
        match s.to_ascii_lowercase().as_str() {
            "1" => Some(Phase::RequestHeaders),
            "2" | "request" => Some(Phase::RequestBody),
            "3" => Some(Phase::ResponseHeaders),
            "4" | "response" => Some(Phase::ResponseBody),
            "5" | "logging" => Some(Phase::Logging),
            _ => None,
        }
    }
}

/// A rule id or an inclusive range of them (`942100`, `942100-942999`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IdRange {
    /// First id.
    pub start: u64,
    /// Last id (equal to `start` for a single id).
    pub end: u64,
}

impl IdRange {
    /// Reads `N` or `N-M` with `1 <= N <= M`.
    pub fn parse(s: &str) -> Option<IdRange> {
        let num = |t: &str| -> Option<u64> {
            let t = t.trim();
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            t.parse().ok()
        };
        let (start, end) = match s.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let n = num(s)?;
                (n, n)
            }
        };
        (start <= end).then_some(IdRange { start, end })
    }

    /// Whether `id` is in the range.
    pub fn contains(&self, id: u64) -> bool {
        (self.start..=self.end).contains(&id)
    }
}

impl fmt::Display for IdRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// Text in which `%{collection.key}` macros are expanded at run time (`msg`, `logdata`,
/// `setvar` names and values, operator arguments).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct MacroString {
    /// Literal text and variables in order; adjacent literals are merged.
    pub parts: Vec<MacroPart>,
}

/// A piece of a [`MacroString`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MacroPart {
    /// Text used as is.
    Literal(String),
    /// A `%{...}` macro.
    Var(MacroVar),
}

/// A resolved `%{VARIABLE}` or `%{collection.key}` macro.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MacroVar {
    /// The variable or collection.
    pub variable: Variable,
    /// The key for collections (`anomaly_score` in `%{tx.anomaly_score}`).
    pub key: Option<String>,
    /// For a `TX` key, its number in the compiled rule set (set when compiling), so that
    /// expanding the macro reads a slot instead of looking the name up.
    pub tx_slot: Option<u32>,
}

impl fmt::Display for MacroVar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(k) => write!(f, "%{{{}.{}}}", self.variable, k),
            None => write!(f, "%{{{}}}", self.variable),
        }
    }
}

impl MacroString {
    /// Parses macros in `s`. A `%{name}` or `%{name.key}` whose name is no variable is kept as
    /// literal text when `strict` is false and is returned as `Err(name)` when it is true. Text
    /// that is not macro syntax (`%{2}` in a regex, a lone `%{`) is always literal.
    pub fn parse(s: &str, strict: bool) -> Result<MacroString, String> {
        let mut out = MacroString::default();
        let mut rest = s;
        while let Some(i) = rest.find("%{") {
            out.push_literal(&rest[..i]);
            let after = &rest[i + 2..];
            match macro_body(after) {
                Some((name, key, len)) => match resolve_macro(name, key) {
                    Some(var) => {
                        out.parts.push(MacroPart::Var(var));
                        rest = &after[len..];
                    }
                    None if strict => return Err(name.to_string()),
                    None => {
                        out.push_literal(&rest[i..i + 2 + len]);
                        rest = &after[len..];
                    }
                },
                None => {
                    out.push_literal("%{");
                    rest = after;
                }
            }
        }
        out.push_literal(rest);
        Ok(out)
    }

    /// A macro-free string.
    pub fn literal(s: &str) -> MacroString {
        let mut out = MacroString::default();
        out.push_literal(s);
        out
    }

    fn push_literal(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        if let Some(MacroPart::Literal(l)) = self.parts.last_mut() {
            l.push_str(s);
        } else {
            self.parts.push(MacroPart::Literal(s.to_string()));
        }
    }

    /// The text when it has no macros.
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [MacroPart::Literal(s)] => Some(s),
            _ => None,
        }
    }

    /// Whether any part is a macro.
    pub fn has_macros(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, MacroPart::Var(_)))
    }

    /// The variables the string refers to.
    pub fn vars(&self) -> impl Iterator<Item = &MacroVar> {
        self.parts.iter().filter_map(|p| match p {
            MacroPart::Var(v) => Some(v),
            MacroPart::Literal(_) => None,
        })
    }
}

/// Splits `name[.key]}` at the start of `s`; returns name, key and the length consumed.
fn macro_body(s: &str) -> Option<(&str, Option<&str>, usize)> {
    let b = s.as_bytes();
    if !b.first()?.is_ascii_alphabetic() {
        return None;
    }
    let n = b.iter().position(|&c| !(c.is_ascii_alphanumeric() || c == b'_'))?;
    match b[n] {
        b'}' => Some((&s[..n], None, n + 1)),
        b'.' | b':' => {
            let key_len = s[n + 1..].find(['}', '%', '{'])?;
            if s.as_bytes().get(n + 1 + key_len) != Some(&b'}') || key_len == 0 {
                return None;
            }
            Some((&s[..n], Some(&s[n + 1..n + 1 + key_len]), n + key_len + 2))
        }
        _ => None,
    }
}

fn resolve_macro(name: &str, key: Option<&str>) -> Option<MacroVar> {
    let variable = Variable::from_name(name)?;
    if key.is_some() && !variable.is_collection() {
        return None;
    }
    Some(MacroVar { variable, key: key.map(str::to_string), tx_slot: None })
}

impl fmt::Display for MacroString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.parts {
            match p {
                MacroPart::Literal(s) => f.write_str(s)?,
                MacroPart::Var(v) => write!(f, "{v}")?,
            }
        }
        Ok(())
    }
}

/// A parsed file: its directives in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct File {
    /// The directives; chained rules are inside their [`Rule`].
    pub directives: Vec<Directive>,
}

impl File {
    /// The rules (`SecRule`/`SecAction` groups), in order.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.directives.iter().filter_map(|d| match &d.kind {
            DirectiveKind::Rule(r) => Some(r),
            _ => None,
        })
    }
}

impl fmt::Display for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.directives {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

/// One directive and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directive {
    /// What it says.
    pub kind: DirectiveKind,
    /// From the directive name to the end of its (last chained) line.
    pub span: Span,
}

/// The directives of SecLang.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DirectiveKind {
    /// `SecRule` or `SecAction`, with the rules chained to it.
    Rule(Rule),
    /// `SecDefaultAction "phase:2,log,auditlog,pass"`.
    DefaultAction(Vec<Action>),
    /// `SecMarker NAME`: a target for `skipAfter`.
    Marker(String),
    /// `SecComponentSignature "OWASP_CRS/4.28.0"`.
    ComponentSignature(String),
    /// `Include PATTERN` / `IncludeOptional PATTERN` (the loader expands them).
    Include {
        /// The path or glob, as written.
        path: String,
        /// `IncludeOptional`: no error when nothing matches.
        optional: bool,
    },
    /// `SecRuleRemoveById 1 2-5`.
    RemoveById(Vec<IdRange>),
    /// `SecRuleRemoveByTag REGEX`.
    RemoveByTag(String),
    /// `SecRuleRemoveByMsg REGEX`.
    RemoveByMsg(String),
    /// `SecRuleUpdateTargetById`, `...ByTag`, `...ByMsg`.
    UpdateTarget {
        /// Which rules.
        selector: RuleSelector,
        /// Targets to add (or, with `!`, to exclude).
        targets: Vec<Target>,
        /// The ModSecurity 2 third argument: targets to replace.
        replaced: Option<Vec<Target>>,
    },
    /// `SecRuleUpdateActionById ID[:CHAIN_OFFSET] "actions"`.
    UpdateActionById {
        /// The rule.
        id: u64,
        /// Which rule of the chain (ModSecurity 2).
        chain_offset: Option<u32>,
        /// The actions that replace or add to the rule's.
        actions: Vec<Action>,
    },
    /// An engine setting.
    Setting(Setting),
}

impl DirectiveKind {
    /// The directive's canonical name (`SecRule` or `SecAction` for rules: the head's).
    pub fn name(&self) -> &'static str {
        match self {
            DirectiveKind::Rule(r) => r.head.kind.name(),
            DirectiveKind::DefaultAction(_) => "SecDefaultAction",
            DirectiveKind::Marker(_) => "SecMarker",
            DirectiveKind::ComponentSignature(_) => "SecComponentSignature",
            DirectiveKind::Include { optional: false, .. } => "Include",
            DirectiveKind::Include { optional: true, .. } => "IncludeOptional",
            DirectiveKind::RemoveById(_) => "SecRuleRemoveById",
            DirectiveKind::RemoveByTag(_) => "SecRuleRemoveByTag",
            DirectiveKind::RemoveByMsg(_) => "SecRuleRemoveByMsg",
            DirectiveKind::UpdateTarget { selector: RuleSelector::Ids(_), .. } => "SecRuleUpdateTargetById",
            DirectiveKind::UpdateTarget { selector: RuleSelector::Tag(_), .. } => "SecRuleUpdateTargetByTag",
            DirectiveKind::UpdateTarget { selector: RuleSelector::Msg(_), .. } => "SecRuleUpdateTargetByMsg",
            DirectiveKind::UpdateActionById { .. } => "SecRuleUpdateActionById",
            DirectiveKind::Setting(s) => s.name(),
        }
    }
}

impl RuleKind {
    /// `SecRule` or `SecAction`.
    pub fn name(&self) -> &'static str {
        match self {
            RuleKind::SecRule { .. } => "SecRule",
            RuleKind::SecAction => "SecAction",
        }
    }
}

impl Setting {
    /// The directive's canonical name.
    pub fn name(&self) -> &'static str {
        match self {
            Setting::RuleEngine(_) => "SecRuleEngine",
            Setting::AuditEngine(_) => "SecAuditEngine",
            Setting::RequestBodyLimitAction(_) => "SecRequestBodyLimitAction",
            Setting::ResponseBodyLimitAction(_) => "SecResponseBodyLimitAction",
            Setting::AuditLogType(_) => "SecAuditLogType",
            Setting::AuditLogFormat(_) => "SecAuditLogFormat",
            Setting::RemoteRulesFailAction(_) => "SecRemoteRulesFailAction",
            Setting::ResponseBodyMimeTypesClear => "SecResponseBodyMimeTypesClear",
            Setting::Switch(d, _) => d.name(),
            Setting::Number(d, _) => d.name(),
            Setting::Text(d, _) => d.name(),
            Setting::List(d, _) => d.name(),
        }
    }
}

/// Every directive name the parser knows, canonical spelling.
pub fn directive_names() -> Vec<&'static str> {
    let mut names = vec![
        "Include",
        "IncludeOptional",
        "SecAction",
        "SecAuditEngine",
        "SecAuditLogFormat",
        "SecAuditLogType",
        "SecComponentSignature",
        "SecDefaultAction",
        "SecMarker",
        "SecRemoteRulesFailAction",
        "SecRequestBodyLimitAction",
        "SecResponseBodyLimitAction",
        "SecResponseBodyMimeTypesClear",
        "SecRule",
        "SecRuleEngine",
        "SecRuleRemoveById",
        "SecRuleRemoveByMsg",
        "SecRuleRemoveByTag",
        "SecRuleUpdateActionById",
        "SecRuleUpdateTargetById",
        "SecRuleUpdateTargetByMsg",
        "SecRuleUpdateTargetByTag",
    ];
    names.extend(SwitchDirective::ALL.iter().map(|d| d.name()));
    names.extend(NumberDirective::ALL.iter().map(|d| d.name()));
    names.extend(TextDirective::ALL.iter().map(|d| d.name()));
    names.extend(ListDirective::ALL.iter().map(|d| d.name()));
    names.sort_unstable();
    names
}

/// How `SecRuleUpdateTarget*` picks rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleSelector {
    /// By ids and ranges.
    Ids(Vec<IdRange>),
    /// By tag.
    Tag(String),
    /// By message.
    Msg(String),
}

/// Engine settings (`SecRuleEngine On`, `SecRequestBodyLimit 13107200`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Setting {
    /// `SecRuleEngine`.
    RuleEngine(EngineMode),
    /// `SecAuditEngine`.
    AuditEngine(AuditEngineMode),
    /// `SecRequestBodyLimitAction`.
    RequestBodyLimitAction(LimitAction),
    /// `SecResponseBodyLimitAction`.
    ResponseBodyLimitAction(LimitAction),
    /// `SecAuditLogType`.
    AuditLogType(AuditLogType),
    /// `SecAuditLogFormat`.
    AuditLogFormat(AuditLogFormat),
    /// `SecRemoteRulesFailAction`.
    RemoteRulesFailAction(FailAction),
    /// `SecResponseBodyMimeTypesClear`.
    ResponseBodyMimeTypesClear,
    /// On/Off settings.
    Switch(SwitchDirective, bool),
    /// Numeric settings.
    Number(NumberDirective, u64),
    /// One-word (or quoted) text settings.
    Text(TextDirective, String),
    /// Several-word settings.
    List(ListDirective, Vec<String>),
}

/// `SecRule` or `SecAction` with its chain: one unit of evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The first rule, which carries id, phase and the disruptive action.
    pub head: RulePart,
    /// The rules chained after it, in order; all must match for the head's action to run.
    pub chain: Vec<RulePart>,
}

impl Rule {
    /// The head's `id`.
    pub fn id(&self) -> Option<u64> {
        self.head.id()
    }

    /// The head's `phase`.
    pub fn phase(&self) -> Option<Phase> {
        self.head.actions.iter().find_map(|a| match a.kind {
            ActionKind::Phase(p) => Some(p),
            _ => None,
        })
    }

    /// The head's tags.
    pub fn tags(&self) -> impl Iterator<Item = &MacroString> {
        self.head.actions.iter().filter_map(|a| match &a.kind {
            ActionKind::Tag(t) => Some(t),
            _ => None,
        })
    }

    /// The head followed by its chained rules.
    pub fn parts(&self) -> impl Iterator<Item = &RulePart> {
        std::iter::once(&self.head).chain(&self.chain)
    }
}

/// One `SecRule` or `SecAction` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulePart {
    /// What it tests.
    pub kind: RuleKind,
    /// Its actions, in order.
    pub actions: Vec<Action>,
    /// From the directive name to the end of its line.
    pub span: Span,
}

impl RulePart {
    /// The `id` action.
    pub fn id(&self) -> Option<u64> {
        self.actions.iter().find_map(|a| match a.kind {
            ActionKind::Id(id) => Some(id),
            _ => None,
        })
    }

    /// Whether the rule has `chain` (the next rule belongs to it).
    pub fn chains(&self) -> bool {
        self.actions.iter().any(|a| a.kind == ActionKind::Chain)
    }

    /// The transformations, in order (a `t:none` resets those inherited from defaults).
    pub fn transformations(&self) -> impl Iterator<Item = Transformation> + '_ {
        self.actions.iter().filter_map(|a| match a.kind {
            ActionKind::Transformation(t) => Some(t),
            _ => None,
        })
    }
}

/// What a rule part tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleKind {
    /// `SecRule TARGETS OPERATOR`.
    SecRule {
        /// The variables, with exclusions and counts.
        targets: Vec<Target>,
        /// The test.
        operator: Operator,
    },
    /// `SecAction`: always matches.
    SecAction,
}

/// One element of a variable list (`ARGS`, `!ARGS:foo`, `&TX:bar`, `REQUEST_HEADERS:/^x-/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Plain, excluded (`!`) or counted (`&`).
    pub modifier: TargetModifier,
    /// The variable or collection.
    pub variable: Variable,
    /// Which members of a collection.
    pub selector: Option<Selector>,
    /// Where it is written.
    pub span: Span,
}

/// The prefix of a [`Target`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetModifier {
    /// Inspect the values.
    None,
    /// `!`: remove these from the rule's other targets.
    Exclude,
    /// `&`: inspect the number of values.
    Count,
}

/// Which members of a collection a target takes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Selector {
    /// `:name` (matched case-insensitively at run time).
    Key(String),
    /// `:/regex/`.
    Regex(String),
    /// `XML:/xpath`.
    XPath(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.modifier {
            TargetModifier::None => {}
            TargetModifier::Exclude => f.write_char('!')?,
            TargetModifier::Count => f.write_char('&')?,
        }
        f.write_str(self.variable.name())?;
        let bare = |s: &str| !s.is_empty() && !s.contains(['|', '\'', '"', ' ', '\t', '\r', '\x0b', '\x0c']);
        let plain = |s: &str| bare(s) && !s.starts_with('/');
        match &self.selector {
            None => Ok(()),
            Some(Selector::Regex(r)) if (bare(r) || r.is_empty()) && regex_reads_back(r) => write!(f, ":/{r}/"),
            Some(Selector::Regex(r)) => {
                f.write_char(':')?;
                write_quoted(f, &format!("/{r}/"), '\'')
            }
            Some(Selector::Key(k)) if plain(k) => write!(f, ":{k}"),
            Some(Selector::XPath(k)) if bare(k) => write!(f, ":{k}"),
            Some(Selector::Key(k) | Selector::XPath(k)) => {
                f.write_char(':')?;
                write_quoted(f, k, '\'')
            }
        }
    }
}

/// Whether `/r/` written bare reads back as `r`: the parser ends a regex key at the first `/`
/// not escaped by a backslash.
fn regex_reads_back(r: &str) -> bool {
    let b = r.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'/' => return false,
            _ => i += 1,
        }
    }
    i == b.len()
}

/// The test of a `SecRule`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator {
    /// `!@op`: the rule matches when the operator does not.
    pub negated: bool,
    /// Which operator (`@rx` when none is written).
    pub kind: OperatorKind,
    /// The argument as written; `%{...}` macros resolved where they name variables.
    pub argument: MacroString,
    /// Where the operator string is.
    pub span: Span,
}

impl Operator {
    /// The argument when it has no macros (a regex for `@rx`, the phrase list for `@pm`).
    pub fn literal_argument(&self) -> Option<&str> {
        self.argument.as_literal()
    }

    /// The blank-separated words of the argument (`@pm` phrases, data file names).
    pub fn words(&self) -> Vec<String> {
        self.argument.to_string().split_whitespace().map(str::to_string).collect()
    }
}

/// An operator's argument in the shape its operator reads it; see [`Operator::typed`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OperatorArg<'a> {
    /// No argument (`@detectSQLi`, `@unconditionalMatch`, ...).
    None,
    /// A regular expression (`@rx`, `@rxGlobal`, `@verifyCC`, ...).
    Regex(&'a str),
    /// Phrases for `@pm`, matched as a set.
    Phrases(Vec<&'a str>),
    /// Data file names (`@pmFromFile`, `@ipMatchFromFile`); the loader holds their contents.
    Files(Vec<&'a str>),
    /// Addresses and networks for `@ipMatch`.
    Networks(Vec<&'a str>),
    /// Allowed byte ranges for `@validateByteRange`.
    ByteRanges(Vec<std::ops::RangeInclusive<u8>>),
    /// The number compared against by `@eq`, `@ge`, `@gt`, `@le`, `@lt`.
    Integer(i64),
    /// Text, possibly with macros to expand per transaction (`@streq`, `@within`, a `@rx` or
    /// `@eq` whose argument holds `%{...}`, ...).
    Text(&'a MacroString),
}

impl Operator {
    /// The argument read the way the operator reads it, for compilers that group operators
    /// (all literal `@rx` of a phase and variable into one automaton, say).
    pub fn typed(&self) -> OperatorArg<'_> {
        use OperatorKind as O;
        if !self.kind.takes_argument() {
            return OperatorArg::None;
        }
        let Some(lit) = self.argument.as_literal() else { return OperatorArg::Text(&self.argument) };
        match self.kind {
            O::Rx | O::RxGlobal | O::VerifyCc | O::VerifyCpf | O::VerifySsn | O::VerifySvnr => OperatorArg::Regex(lit),
            O::Pm => OperatorArg::Phrases(lit.split_whitespace().collect()),
            O::PmFromFile | O::IpMatchFromFile => OperatorArg::Files(lit.split_whitespace().collect()),
            O::IpMatch => OperatorArg::Networks(
                lit.split(|c: char| c == ',' || c.is_whitespace()).filter(|w| !w.is_empty()).collect(),
            ),
            O::ValidateByteRange => OperatorArg::ByteRanges(
                lit.split(',')
                    .filter_map(|item| {
                        let byte = |s: &str| s.trim().parse::<u8>().ok();
                        match item.split_once('-') {
                            Some((a, b)) => Some(byte(a)?..=byte(b)?),
                            None => byte(item).map(|b| b..=b),
                        }
                    })
                    .collect(),
            ),
            O::Eq | O::Ge | O::Gt | O::Le | O::Lt => match lit.trim().parse() {
                Ok(n) => OperatorArg::Integer(n),
                Err(_) => OperatorArg::Text(&self.argument),
            },
            _ => OperatorArg::Text(&self.argument),
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negated {
            f.write_char('!')?;
        }
        write!(f, "@{}", self.kind)?;
        let arg = self.argument.to_string();
        if self.kind.takes_argument() || !arg.is_empty() {
            write!(f, " {arg}")?;
        }
        Ok(())
    }
}

/// One action and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    /// The action and its value.
    pub kind: ActionKind,
    /// Where it is written.
    pub span: Span,
}

impl Action {
    /// An action without a known location.
    pub fn new(kind: ActionKind) -> Action {
        Action { kind, span: Span::default() }
    }
}

/// `allow`'s scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AllowScope {
    /// `allow`: the rest of the transaction.
    All,
    /// `allow:phase`: the rest of the phase.
    Phase,
    /// `allow:request`: the request phases.
    Request,
}

/// A persistent or transaction variable: `tx.anomaly_score`, `ip.%{tx.ua_hash}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VarRef {
    /// The collection (`TX`, `IP`, `GLOBAL`, `SESSION`, `USER`, `RESOURCE`).
    pub collection: Variable,
    /// The key, which may contain macros.
    pub name: MacroString,
}

impl fmt::Display for VarRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.collection.name().to_ascii_lowercase(), self.name)
    }
}

/// `setvar:`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SetVar {
    /// The variable written.
    pub var: VarRef,
    /// What is done to it.
    pub op: SetVarOp,
}

/// The operation of a `setvar`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SetVarOp {
    /// `tx.x=value`.
    Set(MacroString),
    /// `tx.x=+value`.
    Add(MacroString),
    /// `tx.x=-value`.
    Sub(MacroString),
    /// `!tx.x`.
    Delete,
    /// `tx.x` with no value: create it (with an empty value).
    Define,
}

/// A parsed `ctl:option=value`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ctl {
    /// `auditEngine=On|Off|RelevantOnly`.
    AuditEngine(AuditEngineMode),
    /// `auditLogParts=+E` (the value as written).
    AuditLogParts(String),
    /// `debugLogLevel=N`.
    DebugLogLevel(u32),
    /// `forceRequestBodyVariable=On|Off`.
    ForceRequestBodyVariable(bool),
    /// `hashEnforcement=On|Off`.
    HashEnforcement(bool),
    /// `hashEngine=On|Off`.
    HashEngine(bool),
    /// `parseXmlIntoArgs=On|Off|OnlyArgs`.
    ParseXmlIntoArgs(XmlArgsMode),
    /// `requestBodyAccess=On|Off`.
    RequestBodyAccess(bool),
    /// `requestBodyLimit=N`.
    RequestBodyLimit(u64),
    /// `requestBodyProcessor=XML|JSON|URLENCODED|MULTIPART`.
    RequestBodyProcessor(BodyProcessor),
    /// `responseBodyAccess=On|Off`.
    ResponseBodyAccess(bool),
    /// `responseBodyLimit=N`.
    ResponseBodyLimit(u64),
    /// `ruleEngine=On|Off|DetectionOnly`.
    RuleEngine(EngineMode),
    /// `ruleRemoveById=ID|RANGE ...`.
    RuleRemoveById(Vec<IdRange>),
    /// `ruleRemoveByMsg=MSG`.
    RuleRemoveByMsg(String),
    /// `ruleRemoveByTag=TAG`.
    RuleRemoveByTag(String),
    /// `ruleRemoveTargetById=ID;TARGETS`.
    RuleRemoveTargetById(Vec<IdRange>, Vec<Target>),
    /// `ruleRemoveTargetByMsg=MSG;TARGETS`.
    RuleRemoveTargetByMsg(String, Vec<Target>),
    /// `ruleRemoveTargetByTag=TAG;TARGETS`.
    RuleRemoveTargetByTag(String, Vec<Target>),
}

impl Ctl {
    /// The option's name.
    pub fn option(&self) -> CtlOption {
        match self {
            Ctl::AuditEngine(_) => CtlOption::AuditEngine,
            Ctl::AuditLogParts(_) => CtlOption::AuditLogParts,
            Ctl::DebugLogLevel(_) => CtlOption::DebugLogLevel,
            Ctl::ForceRequestBodyVariable(_) => CtlOption::ForceRequestBodyVariable,
            Ctl::HashEnforcement(_) => CtlOption::HashEnforcement,
            Ctl::HashEngine(_) => CtlOption::HashEngine,
            Ctl::ParseXmlIntoArgs(_) => CtlOption::ParseXmlIntoArgs,
            Ctl::RequestBodyAccess(_) => CtlOption::RequestBodyAccess,
            Ctl::RequestBodyLimit(_) => CtlOption::RequestBodyLimit,
            Ctl::RequestBodyProcessor(_) => CtlOption::RequestBodyProcessor,
            Ctl::ResponseBodyAccess(_) => CtlOption::ResponseBodyAccess,
            Ctl::ResponseBodyLimit(_) => CtlOption::ResponseBodyLimit,
            Ctl::RuleEngine(_) => CtlOption::RuleEngine,
            Ctl::RuleRemoveById(_) => CtlOption::RuleRemoveById,
            Ctl::RuleRemoveByMsg(_) => CtlOption::RuleRemoveByMsg,
            Ctl::RuleRemoveByTag(_) => CtlOption::RuleRemoveByTag,
            Ctl::RuleRemoveTargetById(..) => CtlOption::RuleRemoveTargetById,
            Ctl::RuleRemoveTargetByMsg(..) => CtlOption::RuleRemoveTargetByMsg,
            Ctl::RuleRemoveTargetByTag(..) => CtlOption::RuleRemoveTargetByTag,
        }
    }
}

fn on_off(b: bool) -> &'static str {
    if b {
        "On"
    } else {
        "Off"
    }
}

fn join<T: fmt::Display>(items: &[T], sep: &str) -> String {
    let mut s = String::new();
    for (i, t) in items.iter().enumerate() {
        if i > 0 {
            s.push_str(sep);
        }
        let _ = write!(s, "{t}");
    }
    s
}

impl fmt::Display for Ctl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=", self.option())?;
        match self {
            Ctl::AuditEngine(m) => write!(f, "{m}"),
            Ctl::AuditLogParts(s) | Ctl::RuleRemoveByMsg(s) | Ctl::RuleRemoveByTag(s) => f.write_str(s),
            Ctl::DebugLogLevel(n) => write!(f, "{n}"),
            Ctl::ForceRequestBodyVariable(b)
            | Ctl::HashEnforcement(b)
            | Ctl::HashEngine(b)
            | Ctl::RequestBodyAccess(b)
            | Ctl::ResponseBodyAccess(b) => f.write_str(on_off(*b)),
            Ctl::ParseXmlIntoArgs(m) => write!(f, "{m}"),
            Ctl::RequestBodyLimit(n) | Ctl::ResponseBodyLimit(n) => write!(f, "{n}"),
            Ctl::RequestBodyProcessor(p) => write!(f, "{p}"),
            Ctl::RuleEngine(m) => write!(f, "{m}"),
            Ctl::RuleRemoveById(ids) => f.write_str(&join(ids, " ")),
            Ctl::RuleRemoveTargetById(ids, t) => write!(f, "{};{}", join(ids, ","), join(t, "|")),
            Ctl::RuleRemoveTargetByMsg(s, t) | Ctl::RuleRemoveTargetByTag(s, t) => write!(f, "{s};{}", join(t, "|")),
        }
    }
}

/// An action with its parsed value.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ActionKind {
    /// `accuracy:N` (0-9).
    Accuracy(u8),
    /// `allow`, `allow:phase`, `allow:request` (disruptive).
    Allow(AllowScope),
    /// `append:TEXT`.
    Append(MacroString),
    /// `auditlog`.
    AuditLog,
    /// `block`: the default disruptive action (disruptive).
    Block,
    /// `capture`: fill `TX:0`..`TX:9` from `@rx` groups.
    Capture,
    /// `chain`: the next rule belongs to this one.
    Chain,
    /// `ctl:option=value`.
    Ctl(Ctl),
    /// `deny` (disruptive).
    Deny,
    /// `deprecatevar:ip.x=N/M`.
    DeprecateVar(VarRef, String),
    /// `drop` (disruptive).
    Drop,
    /// `exec:PATH`.
    Exec(String),
    /// `expirevar:ip.x=SECONDS`.
    ExpireVar(VarRef, MacroString),
    /// `id:N`.
    Id(u64),
    /// `initcol:ip=KEY`.
    InitCol(Variable, MacroString),
    /// `log`.
    Log,
    /// `logdata:TEXT`.
    LogData(MacroString),
    /// `maturity:N` (0-9).
    Maturity(u8),
    /// `msg:TEXT`.
    Msg(MacroString),
    /// `multiMatch`: run the operator after every transformation.
    MultiMatch,
    /// `noauditlog`.
    NoAuditLog,
    /// `nolog`.
    NoLog,
    /// `pass` (disruptive).
    Pass,
    /// `pause:MS`.
    Pause(u64),
    /// `phase:N`.
    Phase(Phase),
    /// `prepend:TEXT`.
    Prepend(MacroString),
    /// `proxy:URL` (disruptive).
    Proxy(MacroString),
    /// `redirect:URL` (disruptive).
    Redirect(MacroString),
    /// `rev:TEXT`.
    Rev(String),
    /// `sanitiseArg:NAME`.
    SanitiseArg(String),
    /// `sanitiseMatched`.
    SanitiseMatched,
    /// `sanitiseMatchedBytes[:N/M]`.
    SanitiseMatchedBytes(Option<String>),
    /// `sanitiseRequestHeader:NAME`.
    SanitiseRequestHeader(String),
    /// `sanitiseResponseHeader:NAME`.
    SanitiseResponseHeader(String),
    /// `setenv:NAME=VALUE`.
    SetEnv(String, MacroString),
    /// `setrsc:KEY`.
    SetRsc(MacroString),
    /// `setsid:KEY`.
    SetSid(MacroString),
    /// `setuid:KEY`.
    SetUid(MacroString),
    /// `setvar:...`.
    SetVar(SetVar),
    /// `severity:N` or `severity:'NAME'`.
    Severity(Severity),
    /// `skip:N`.
    Skip(u32),
    /// `skipAfter:MARKER`.
    SkipAfter(String),
    /// `status:N`.
    Status(u16),
    /// `tag:TEXT`.
    Tag(MacroString),
    /// `t:NAME`.
    Transformation(Transformation),
    /// `ver:TEXT`.
    Ver(String),
    /// `xmlns:PREFIX=URL`.
    Xmlns(String, String),
}

impl ActionKind {
    /// The action's name.
    pub fn name(&self) -> ActionName {
        use ActionKind as K;
        use ActionName as N;
        match self {
            K::Accuracy(_) => N::Accuracy,
            K::Allow(_) => N::Allow,
            K::Append(_) => N::Append,
            K::AuditLog => N::AuditLog,
            K::Block => N::Block,
            K::Capture => N::Capture,
            K::Chain => N::Chain,
            K::Ctl(_) => N::Ctl,
            K::Deny => N::Deny,
            K::DeprecateVar(..) => N::DeprecateVar,
            K::Drop => N::Drop,
            K::Exec(_) => N::Exec,
            K::ExpireVar(..) => N::ExpireVar,
            K::Id(_) => N::Id,
            K::InitCol(..) => N::InitCol,
            K::Log => N::Log,
            K::LogData(_) => N::LogData,
            K::Maturity(_) => N::Maturity,
            K::Msg(_) => N::Msg,
            K::MultiMatch => N::MultiMatch,
            K::NoAuditLog => N::NoAuditLog,
            K::NoLog => N::NoLog,
            K::Pass => N::Pass,
            K::Pause(_) => N::Pause,
            K::Phase(_) => N::Phase,
            K::Prepend(_) => N::Prepend,
            K::Proxy(_) => N::Proxy,
            K::Redirect(_) => N::Redirect,
            K::Rev(_) => N::Rev,
            K::SanitiseArg(_) => N::SanitiseArg,
            K::SanitiseMatched => N::SanitiseMatched,
            K::SanitiseMatchedBytes(_) => N::SanitiseMatchedBytes,
            K::SanitiseRequestHeader(_) => N::SanitiseRequestHeader,
            K::SanitiseResponseHeader(_) => N::SanitiseResponseHeader,
            K::SetEnv(..) => N::SetEnv,
            K::SetRsc(_) => N::SetRsc,
            K::SetSid(_) => N::SetSid,
            K::SetUid(_) => N::SetUid,
            K::SetVar(_) => N::SetVar,
            K::Severity(_) => N::Severity,
            K::Skip(_) => N::Skip,
            K::SkipAfter(_) => N::SkipAfter,
            K::Status(_) => N::Status,
            K::Tag(_) => N::Tag,
            K::Transformation(_) => N::T,
            K::Ver(_) => N::Ver,
            K::Xmlns(..) => N::Xmlns,
        }
    }

    /// Whether the action decides the transaction's fate (allow, block, deny, drop, pass,
    /// proxy, redirect).
    pub fn is_disruptive(&self) -> bool {
        matches!(
            self,
            ActionKind::Allow(_)
                | ActionKind::Block
                | ActionKind::Deny
                | ActionKind::Drop
                | ActionKind::Pass
                | ActionKind::Proxy(_)
                | ActionKind::Redirect(_)
        )
    }

    /// The value as written after `name:`, or `None` for flag actions.
    pub fn value(&self) -> Option<String> {
        use ActionKind as K;
        Some(match self {
            K::Accuracy(n) | K::Maturity(n) => n.to_string(),
            K::Allow(AllowScope::All) => return None,
            K::Allow(AllowScope::Phase) => "phase".into(),
            K::Allow(AllowScope::Request) => "request".into(),
            K::Append(s)
            | K::LogData(s)
            | K::Msg(s)
            | K::Prepend(s)
            | K::Proxy(s)
            | K::Redirect(s)
            | K::SetRsc(s)
            | K::SetSid(s)
            | K::SetUid(s)
            | K::Tag(s) => s.to_string(),
            K::Ctl(c) => c.to_string(),
            K::DeprecateVar(v, s) => format!("{v}={s}"),
            K::Exec(s)
            | K::Rev(s)
            | K::SanitiseArg(s)
            | K::SanitiseRequestHeader(s)
            | K::SanitiseResponseHeader(s)
            | K::SkipAfter(s)
            | K::Ver(s) => s.clone(),
            K::ExpireVar(v, s) => format!("{v}={s}"),
            K::Id(n) => n.to_string(),
            K::InitCol(c, s) => format!("{}={s}", c.name().to_ascii_lowercase()),
            K::Pause(n) => n.to_string(),
            K::Phase(p) => p.number().to_string(),
            K::SanitiseMatchedBytes(s) => return s.clone(),
            K::SetEnv(n, v) => format!("{n}={v}"),
            K::SetVar(sv) => match &sv.op {
                SetVarOp::Set(v) => format!("{}={v}", sv.var),
                SetVarOp::Add(v) => format!("{}=+{v}", sv.var),
                SetVarOp::Sub(v) => format!("{}=-{v}", sv.var),
                SetVarOp::Delete => format!("!{}", sv.var),
                SetVarOp::Define => sv.var.to_string(),
            },
            K::Severity(s) => s.name().into(),
            K::Skip(n) => n.to_string(),
            K::Status(n) => n.to_string(),
            K::Transformation(t) => t.name().into(),
            K::Xmlns(p, u) => format!("{p}={u}"),
            K::AuditLog
            | K::Block
            | K::Capture
            | K::Chain
            | K::Deny
            | K::Drop
            | K::Log
            | K::MultiMatch
            | K::NoAuditLog
            | K::NoLog
            | K::Pass
            | K::SanitiseMatched => return None,
        })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.name().name())?;
        let Some(v) = self.kind.value() else { return Ok(()) };
        f.write_char(':')?;
        // Simple values go bare; others are quoted unless only the bare form reads back the
        // same (an odd run of backslashes at the end, see lexer::quotable).
        let simple = !v.contains(|c: char| c.is_whitespace() || matches!(c, ',' | '\'' | '"'));
        let bare = !v.is_empty() && !v.starts_with('\'') && !v.contains(',') && v.trim() == v;
        if bare && (simple || !quotable(&v, '\'')) {
            f.write_str(&v)
        } else {
            write_quoted(f, &v, '\'')
        }
    }
}

fn write_actions(f: &mut fmt::Formatter<'_>, actions: &[Action]) -> fmt::Result {
    write_quoted(f, &join(actions, ","), '"')
}

fn write_arg(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_char(' ')?;
    write_quoted(f, s, '"')
}

impl fmt::Display for RulePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            RuleKind::SecRule { targets, operator } => {
                write!(f, "SecRule {}", join(targets, "|"))?;
                write_arg(f, &operator.to_string())?;
                if !self.actions.is_empty() {
                    f.write_char(' ')?;
                    write_actions(f, &self.actions)?;
                }
                Ok(())
            }
            RuleKind::SecAction => {
                f.write_str("SecAction ")?;
                write_actions(f, &self.actions)
            }
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.head)?;
        for part in &self.chain {
            write!(f, "\n    {part}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Directive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            DirectiveKind::Rule(r) => write!(f, "{r}"),
            DirectiveKind::DefaultAction(a) => {
                f.write_str("SecDefaultAction ")?;
                write_actions(f, a)
            }
            DirectiveKind::Marker(m) => {
                f.write_str("SecMarker")?;
                write_arg(f, m)
            }
            DirectiveKind::ComponentSignature(s) => {
                f.write_str("SecComponentSignature")?;
                write_arg(f, s)
            }
            DirectiveKind::Include { path, optional } => {
                f.write_str(if *optional { "IncludeOptional" } else { "Include" })?;
                write_arg(f, path)
            }
            DirectiveKind::RemoveById(ids) => write!(f, "SecRuleRemoveById {}", join(ids, " ")),
            DirectiveKind::RemoveByTag(s) => {
                f.write_str("SecRuleRemoveByTag")?;
                write_arg(f, s)
            }
            DirectiveKind::RemoveByMsg(s) => {
                f.write_str("SecRuleRemoveByMsg")?;
                write_arg(f, s)
            }
            DirectiveKind::UpdateTarget { selector, targets, replaced } => {
                match selector {
                    RuleSelector::Ids(ids) => write!(f, "SecRuleUpdateTargetById {}", join(ids, ","))?,
                    RuleSelector::Tag(t) => {
                        f.write_str("SecRuleUpdateTargetByTag")?;
                        write_arg(f, t)?;
                    }
                    RuleSelector::Msg(m) => {
                        f.write_str("SecRuleUpdateTargetByMsg")?;
                        write_arg(f, m)?;
                    }
                }
                write_arg(f, &join(targets, "|"))?;
                if let Some(r) = replaced {
                    write_arg(f, &join(r, "|"))?;
                }
                Ok(())
            }
            DirectiveKind::UpdateActionById { id, chain_offset, actions } => {
                write!(f, "SecRuleUpdateActionById {id}")?;
                if let Some(o) = chain_offset {
                    write!(f, ":{o}")?;
                }
                f.write_char(' ')?;
                write_actions(f, actions)
            }
            DirectiveKind::Setting(s) => write!(f, "{s}"),
        }
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Setting::RuleEngine(m) => write!(f, "SecRuleEngine {m}"),
            Setting::AuditEngine(m) => write!(f, "SecAuditEngine {m}"),
            Setting::RequestBodyLimitAction(a) => write!(f, "SecRequestBodyLimitAction {a}"),
            Setting::ResponseBodyLimitAction(a) => write!(f, "SecResponseBodyLimitAction {a}"),
            Setting::AuditLogType(t) => write!(f, "SecAuditLogType {t}"),
            Setting::AuditLogFormat(t) => write!(f, "SecAuditLogFormat {t}"),
            Setting::RemoteRulesFailAction(a) => write!(f, "SecRemoteRulesFailAction {a}"),
            Setting::ResponseBodyMimeTypesClear => f.write_str("SecResponseBodyMimeTypesClear"),
            Setting::Switch(d, b) => write!(f, "{d} {}", on_off(*b)),
            Setting::Number(d, n) => write!(f, "{d} {n}"),
            Setting::Text(d, s) => {
                write!(f, "{d}")?;
                write_arg(f, s)
            }
            Setting::List(d, words) => {
                write!(f, "{d}")?;
                words.iter().try_for_each(|w| write_arg(f, w))
            }
        }
    }
}
