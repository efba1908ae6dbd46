//! Loading GoTestWAF test-case YAML files and expanding them into cases.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_norway::Value;

use crate::CorpusError;

/// The set name GoTestWAF uses for texts that must NOT be blocked.
pub const FALSE_POSITIVE_SET: &str = "false-pos";

/// How a payload is encoded before it is placed in the request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Encoder {
    Plain,
    Url,
    Base64,
    Base64Flat,
    JsUnicode,
    XmlEntity,
    /// An encoder name this crate does not know; cases using it are skipped.
    Unknown(String),
}

impl Encoder {
    /// Parses a GoTestWAF encoder name (case-insensitive).
    pub fn parse(name: &str) -> Encoder {
        match name.trim().to_ascii_lowercase().as_str() {
            "plain" => Encoder::Plain,
            "url" => Encoder::Url,
            "base64" => Encoder::Base64,
            "base64flat" => Encoder::Base64Flat,
            "jsunicode" => Encoder::JsUnicode,
            "xmlentity" => Encoder::XmlEntity,
            _ => Encoder::Unknown(name.to_string()),
        }
    }

    /// The GoTestWAF spelling of this encoder.
    pub fn name(&self) -> &str {
        match self {
            Encoder::Plain => "Plain",
            Encoder::Url => "URL",
            Encoder::Base64 => "Base64",
            Encoder::Base64Flat => "Base64Flat",
            Encoder::JsUnicode => "JSUnicode",
            Encoder::XmlEntity => "XMLEntity",
            Encoder::Unknown(n) => n,
        }
    }
}

/// Configuration of a `RawRequest` placeholder: `{{payload}}` in the path,
/// header values and body is replaced by the encoded payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RawRequestConfig {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// Where an encoded payload is placed in the request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Placeholder {
    UrlPath,
    UrlParam,
    Header,
    UserAgent,
    HtmlForm,
    HtmlMultipartForm,
    JsonBody,
    JsonRequest,
    XmlBody,
    SoapBody,
    RequestBody,
    RawRequest(RawRequestConfig),
    /// Needs a gRPC server: never built here (counted as skipped).
    Grpc,
    /// GraphQL request with `method` GET (payload in `?query=`) or POST (payload as body).
    GraphQl {
        method: String,
    },
    /// A placeholder name this crate does not know; cases using it are skipped.
    Unknown(String),
}

impl Placeholder {
    /// The GoTestWAF spelling of this placeholder.
    pub fn name(&self) -> &str {
        match self {
            Placeholder::UrlPath => "URLPath",
            Placeholder::UrlParam => "URLParam",
            Placeholder::Header => "Header",
            Placeholder::UserAgent => "UserAgent",
            Placeholder::HtmlForm => "HTMLForm",
            Placeholder::HtmlMultipartForm => "HTMLMultipartForm",
            Placeholder::JsonBody => "JSONBody",
            Placeholder::JsonRequest => "JSONRequest",
            Placeholder::XmlBody => "XMLBody",
            Placeholder::SoapBody => "SOAPBody",
            Placeholder::RequestBody => "RequestBody",
            Placeholder::RawRequest(_) => "RawRequest",
            Placeholder::Grpc => "gRPC",
            Placeholder::GraphQl { .. } => "GraphQL",
            Placeholder::Unknown(n) => n,
        }
    }

    /// Parses a placeholder given by name only (no configuration).
    fn parse_plain(name: &str) -> Placeholder {
        match name.trim().to_ascii_lowercase().as_str() {
            "urlpath" => Placeholder::UrlPath,
            "urlparam" => Placeholder::UrlParam,
            "header" => Placeholder::Header,
            "useragent" => Placeholder::UserAgent,
            "htmlform" => Placeholder::HtmlForm,
            "htmlmultipartform" => Placeholder::HtmlMultipartForm,
            "jsonbody" => Placeholder::JsonBody,
            "jsonrequest" => Placeholder::JsonRequest,
            "xmlbody" => Placeholder::XmlBody,
            "soapbody" => Placeholder::SoapBody,
            "requestbody" => Placeholder::RequestBody,
            "grpc" => Placeholder::Grpc,
            _ => Placeholder::Unknown(name.to_string()),
        }
    }

    /// Parses a placeholder given as `{Name: {config}}`.
    fn parse_configured(name: &str, conf: &Value) -> Result<Placeholder, String> {
        let get = |key: &str| -> Option<&Value> { conf.as_mapping().and_then(|m| m.get(key)) };
        let get_str = |key: &str| -> Result<Option<String>, String> {
            match get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => scalar_to_string(v)
                    .map(Some)
                    .ok_or_else(|| format!("{name}.{key}: expected a string")),
            }
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "rawrequest" => {
                let method = get_str("method")?
                    .filter(|m| !m.is_empty())
                    .ok_or_else(|| format!("{name}: empty method"))?;
                let path = get_str("path")?
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "/".to_string());
                let mut headers = Vec::new();
                match get("headers") {
                    None | Some(Value::Null) => {}
                    Some(Value::Mapping(m)) => {
                        for (k, v) in m {
                            match (scalar_to_string(k), scalar_to_string(v)) {
                                (Some(k), Some(v)) => headers.push((k, v)),
                                _ => return Err(format!("{name}.headers: expected strings")),
                            }
                        }
                    }
                    Some(_) => return Err(format!("{name}.headers: expected a map")),
                }
                let body = get_str("body")?.unwrap_or_default();
                Ok(Placeholder::RawRequest(RawRequestConfig {
                    method,
                    path,
                    headers,
                    body,
                }))
            }
            "graphql" => {
                let method = get_str("method")?
                    .ok_or_else(|| format!("{name}: empty method"))?
                    .to_ascii_uppercase();
                if method != "GET" && method != "POST" {
                    return Err(format!("{name}: method must be GET or POST, got {method}"));
                }
                Ok(Placeholder::GraphQl { method })
            }
            // Placeholders without configuration ignore a given one, as GoTestWAF does.
            _ => Ok(Placeholder::parse_plain(name)),
        }
    }
}

/// One GoTestWAF test-case file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestFile {
    /// The folder the file is in (`owasp`, `owasp-api`, `community`, `false-pos`).
    pub set: String,
    /// The file name without extension (`sql-injection`).
    pub name: String,
    /// Where the file was read from.
    pub path: PathBuf,
    /// The attack family (`type:`), or the file name when the file has none.
    pub family: String,
    /// True for the `false-pos` set: texts that must pass.
    pub is_false_positive: bool,
    pub payloads: Vec<String>,
    pub encoders: Vec<Encoder>,
    pub placeholders: Vec<Placeholder>,
}

impl TestFile {
    /// Number of cases (payload x encoder x placeholder) this file expands to.
    pub fn case_count(&self) -> usize {
        self.payloads.len() * self.encoders.len() * self.placeholders.len()
    }
}

/// One request to send: a payload, its encoder and its placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub set: String,
    pub file: String,
    pub family: String,
    /// Index of the payload in its file.
    pub index: usize,
    pub payload: String,
    pub encoder: Encoder,
    pub placeholder: Placeholder,
    pub is_false_positive: bool,
}

impl Case {
    /// A short, stable identifier: `set/file#index encoder placeholder`.
    pub fn id(&self) -> String {
        format!(
            "{}/{}#{} {} {}",
            self.set,
            self.file,
            self.index,
            self.encoder.name(),
            self.placeholder.name()
        )
    }
}

/// Expands test files into cases, in GoTestWAF's order
/// (file, then payload, then encoder, then placeholder).
pub fn cases(files: &[TestFile]) -> impl Iterator<Item = Case> + '_ {
    files.iter().flat_map(|f| {
        f.payloads
            .iter()
            .enumerate()
            .flat_map(move |(index, payload)| {
                f.encoders.iter().flat_map(move |encoder| {
                    f.placeholders.iter().map(move |placeholder| Case {
                        set: f.set.clone(),
                        file: f.name.clone(),
                        family: f.family.clone(),
                        index,
                        payload: payload.clone(),
                        encoder: encoder.clone(),
                        placeholder: placeholder.clone(),
                        is_false_positive: f.is_false_positive,
                    })
                })
            })
    })
}

/// Loads every `.yml`/`.yaml` file under `dir` (recursively, sorted by path).
/// The set of a file is the name of the folder it is in.
pub fn load(dir: &Path) -> Result<Vec<TestFile>, CorpusError> {
    let mut paths = Vec::new();
    collect_yaml(dir, &mut paths)?;
    if paths.is_empty() {
        return Err(CorpusError::Empty(dir.to_path_buf()));
    }
    paths.sort();
    paths.iter().map(|p| load_file(p)).collect()
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CorpusError> {
    let io_err = |source| CorpusError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(io_err)?;
        if file_type.is_dir() {
            collect_yaml(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yml" | "yaml")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    payload: Vec<Value>,
    #[serde(default)]
    encoder: Vec<Value>,
    #[serde(default)]
    placeholder: Vec<Value>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

/// Loads one test-case file; its set is its parent folder's name.
pub fn load_file(path: &Path) -> Result<TestFile, CorpusError> {
    let text = std::fs::read_to_string(path).map_err(|source| CorpusError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let parse_err = |message: String| CorpusError::Parse {
        path: path.to_path_buf(),
        message: format!("invalid test case: {message}"),
    };
    let raw: RawFile = match serde_norway::from_str(&text) {
        Ok(raw) => raw,
        // GoTestWAF's YAML parser (a libyaml port) accepts `\'` inside
        // double-quoted scalars, which YAML 1.2 does not: retry with it fixed.
        Err(first) => serde_norway::from_str(&fix_quote_escapes(&text))
            .map_err(|_| parse_err(first.to_string()))?,
    };

    let set = path
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let name = path
        .file_stem()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();

    let payloads = raw
        .payload
        .iter()
        .filter(|v| !v.is_null())
        .map(|v| scalar_to_string(v).ok_or_else(|| parse_err("payload: expected strings".into())))
        .collect::<Result<Vec<_>, _>>()?;
    let encoders = raw
        .encoder
        .iter()
        .map(|v| {
            scalar_to_string(v)
                .map(|s| Encoder::parse(&s))
                .ok_or_else(|| parse_err("encoder: expected names".into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut placeholders = Vec::new();
    for v in &raw.placeholder {
        match v {
            Value::String(s) => placeholders.push(Placeholder::parse_plain(s)),
            Value::Mapping(m) => {
                for (k, conf) in m {
                    let k = scalar_to_string(k)
                        .ok_or_else(|| parse_err("placeholder: expected a name".into()))?;
                    placeholders.push(Placeholder::parse_configured(&k, conf).map_err(parse_err)?);
                }
            }
            _ => return Err(parse_err("placeholder: expected a name or a map".into())),
        }
    }
    let family = raw
        .kind
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| name.clone());
    Ok(TestFile {
        is_false_positive: set == FALSE_POSITIVE_SET,
        set,
        name,
        path: path.to_path_buf(),
        family,
        payloads,
        encoders,
        placeholders,
    })
}

fn scalar_to_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Tagged(t) => scalar_to_string(&t.value),
        _ => None,
    }
}

/// Rewrites `\'` to `'` inside double-quoted scalars (block-style files as
/// GoTestWAF ships them: a double-quoted scalar starts after `- ` or `key: `).
fn fix_quote_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_dq = false;
    for line in text.split_inclusive('\n') {
        let mut chars = line.char_indices().peekable();
        if !in_dq {
            // Find where the scalar of this line starts.
            let trimmed = line.trim_start();
            let mut rest = trimmed;
            loop {
                if let Some(r) = rest.strip_prefix("- ") {
                    rest = r.trim_start();
                } else if let Some(pos) = rest.find(": ") {
                    let key = &rest[..pos];
                    if !key.is_empty() && !key.contains(['"', '\'', ' ']) {
                        rest = rest[pos + 2..].trim_start();
                    } else {
                        break;
                    }
                } else {
                    break;
                }
            }
            if !rest.starts_with('"') {
                out.push_str(line);
                continue;
            }
            let start = line.len() - rest.len();
            out.push_str(&line[..=start]);
            in_dq = true;
            // Skip to just after the opening quote.
            while let Some(&(i, _)) = chars.peek() {
                if i > start {
                    break;
                }
                chars.next();
            }
        }
        while let Some((_, c)) = chars.next() {
            if !in_dq {
                out.push(c);
                continue;
            }
            match c {
                '\\' => match chars.next() {
                    Some((_, '\'')) => out.push('\''),
                    Some((_, n)) => {
                        out.push('\\');
                        out.push(n);
                    }
                    None => out.push('\\'),
                },
                '"' => {
                    out.push('"');
                    in_dq = false;
                }
                _ => out.push(c),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testcases_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/corpora/gotestwaf/testcases")
    }

    #[test]
    fn fixes_single_quote_escape_only_in_double_quotes() {
        let src = "payload:\n  - \"\\'-alert(1)//\"\n  - \\\"plain\\'\n  - 'x\\'\n";
        let fixed = fix_quote_escapes(src);
        assert_eq!(
            fixed,
            "payload:\n  - \"'-alert(1)//\"\n  - \\\"plain\\'\n  - 'x\\'\n"
        );
    }

    #[test]
    fn parses_configured_placeholders() {
        let dir = std::env::temp_dir().join(format!("corpus-load-{}", std::process::id()));
        let set = dir.join("myset");
        std::fs::create_dir_all(&set).expect("mkdir");
        std::fs::write(
            set.join("t.yml"),
            "payload:\n  - \"a\\'b\"\n  - 12\nencoder:\n  - URL\n  - Base64Flat\nplaceholder:\n  - UrlParam\n  - GraphQL:\n      method: \"get\"\n  - RawRequest:\n      method: POST\n      path: /x/{{payload}}\n      headers:\n        A: \"{{payload}}\"\n      body: \"b={{payload}}\"\n  - gRPC\n",
        )
        .expect("write");
        let files = load(&dir).expect("load");
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(files.len(), 1);
        let f = &files[0];
        assert_eq!(f.set, "myset");
        assert_eq!(f.name, "t");
        assert_eq!(f.family, "t");
        assert!(!f.is_false_positive);
        assert_eq!(f.payloads, vec!["a'b".to_string(), "12".to_string()]);
        assert_eq!(f.encoders, vec![Encoder::Url, Encoder::Base64Flat]);
        assert_eq!(
            f.placeholders,
            vec![
                Placeholder::UrlParam,
                Placeholder::GraphQl {
                    method: "GET".into()
                },
                Placeholder::RawRequest(RawRequestConfig {
                    method: "POST".into(),
                    path: "/x/{{payload}}".into(),
                    headers: vec![("A".into(), "{{payload}}".into())],
                    body: "b={{payload}}".into(),
                }),
                Placeholder::Grpc,
            ]
        );
        assert_eq!(f.case_count(), 16);
        let all: Vec<Case> = cases(&files).collect();
        assert_eq!(all.len(), 16);
        assert_eq!(all[0].payload, "a'b");
        assert_eq!(all[0].encoder, Encoder::Url);
        assert_eq!(all[0].placeholder, Placeholder::UrlParam);
        assert_eq!(all[4].encoder, Encoder::Base64Flat);
        assert_eq!(all[8].payload, "12");
        assert_eq!(all[8].index, 1);
    }

    #[test]
    fn empty_dir_is_an_error() {
        let dir = std::env::temp_dir().join(format!("corpus-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let res = load(&dir);
        std::fs::remove_dir_all(&dir).ok();
        assert!(matches!(res, Err(CorpusError::Empty(_))));
    }

    #[test]
    fn loads_real_testcases() {
        let files = load(&testcases_dir()).expect("load real testcases");
        assert!(files.len() >= 40, "{} files", files.len());
        let sets: std::collections::BTreeSet<&str> = files.iter().map(|f| f.set.as_str()).collect();
        for s in ["owasp", "owasp-api", "community", "false-pos"] {
            assert!(sets.contains(s), "missing set {s}");
        }
        for f in &files {
            assert!(!f.payloads.is_empty(), "{} has no payload", f.name);
            assert!(!f.encoders.is_empty(), "{} has no encoder", f.name);
            assert!(!f.placeholders.is_empty(), "{} has no placeholder", f.name);
            for e in &f.encoders {
                assert!(
                    !matches!(e, Encoder::Unknown(_)),
                    "{}: unknown encoder {e:?}",
                    f.name
                );
            }
            for p in &f.placeholders {
                assert!(
                    !matches!(p, Placeholder::Unknown(_)),
                    "{}: unknown placeholder {p:?}",
                    f.name
                );
            }
        }
        let fp = files
            .iter()
            .find(|f| f.set == "false-pos")
            .expect("false-pos file");
        assert!(fp.is_false_positive);
        assert!(fp.payloads.len() > 10);

        let xss = files
            .iter()
            .find(|f| f.set == "owasp" && f.name == "xss-scripting")
            .expect("xss-scripting");
        assert!(xss.payloads.iter().any(|p| p == "'-alert(1)//"));
        assert_eq!(xss.family, "XSS");

        let crlf = files.iter().find(|f| f.name == "crlf").expect("crlf");
        assert_eq!(crlf.family, "CRLF Injection");
        assert_eq!(crlf.payloads[0], "%0d%0aSet-Cookie:crlf=injection");
        assert_eq!(crlf.placeholders, vec![Placeholder::UrlPath]);

        let gql = files.iter().find(|f| f.name == "graphql").expect("graphql");
        assert_eq!(
            gql.placeholders,
            vec![Placeholder::GraphQl {
                method: "GET".into()
            }]
        );

        let raw = files
            .iter()
            .find(|f| f.name == "community-rce-rawrequests")
            .expect("raw");
        let Placeholder::RawRequest(conf) = &raw.placeholders[0] else {
            panic!("expected RawRequest, got {:?}", raw.placeholders[0]);
        };
        assert_eq!(conf.method, "POST");
        assert_eq!(conf.path, "/clam.php");
        assert_eq!(conf.body, "{{payload}}");
        assert!(
            conf.headers
                .iter()
                .any(|(k, v)| k == "Content-Encoding" && v == "gzip")
        );

        let big = files
            .iter()
            .find(|f| f.name == "community-128kb-sqli")
            .expect("128kb");
        assert!(
            big.payloads[0].len() > 128 * 1024,
            "{}",
            big.payloads[0].len()
        );
        assert!(!big.payloads[0].contains('\\'));

        let total: usize = files.iter().map(TestFile::case_count).sum();
        assert_eq!(total, cases(&files).count());
        assert!(total > 500, "{total}");
    }
}
