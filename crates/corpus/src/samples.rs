//! Labelled requests from every corpus the benchmark replays: the project's
//! normal-traffic corpus, HttpParamsDataset, the mgm payload collection and
//! GoTestWAF, each turned into [`Sample`]s of one shape.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::encode::query_escape;
use crate::{CorpusError, RawRequest, build, cases, load};

/// The parameter name the payload corpora are placed under, as open-appsec's
/// WAF comparison placed the mgm collection.
pub const PAYLOAD_PARAM: &str = "p";

/// One request with its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The corpus it comes from (`normal`, `httpparams`, `mgm`, `gotestwaf`).
    pub corpus: String,
    /// Its category inside the corpus (`graphql`, `sqli`, `XSS`, ...).
    pub category: String,
    /// True when the request carries an attack that should be stopped.
    pub attack: bool,
    /// A stable identifier inside its corpus.
    pub id: String,
    pub request: RawRequest,
}

/// What a loader read: the requests to send and the cases that cannot be
/// built as HTTP requests (e.g. GoTestWAF's gRPC cases), counted as skipped.
#[derive(Debug, Default)]
pub struct Loaded {
    pub samples: Vec<Sample>,
    /// Cases that cannot be sent (their request is empty).
    pub unbuildable: Vec<Sample>,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> CorpusError + '_ {
    move |source| CorpusError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn parse_err(path: &Path, message: impl Into<String>) -> CorpusError {
    CorpusError::Parse {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Opens `path`, decompressing it when its name ends in `.gz`.
fn open(path: &Path) -> Result<Box<dyn Read>, CorpusError> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(flate2::read::GzDecoder::new(file)))
    } else {
        Ok(Box::new(file))
    }
}

/// One line of the normal corpus (`bench/corpora/normal/requests.jsonl.gz`).
#[derive(Deserialize)]
struct NormalLine {
    id: String,
    category: String,
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    #[serde(default)]
    body: String,
}

/// Loads the normal-traffic corpus: JSON lines (gzipped when the name ends
/// in `.gz`), each a whole request with its category. Every one is normal.
pub fn load_normal(path: &Path) -> Result<Vec<Sample>, CorpusError> {
    let reader = BufReader::new(open(path)?);
    let mut out = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(io_err(path))?;
        if line.trim().is_empty() {
            continue;
        }
        let rec: NormalLine = serde_json::from_str(&line)
            .map_err(|e| parse_err(path, format!("line {}: {e}", n + 1)))?;
        out.push(Sample {
            corpus: "normal".into(),
            category: rec.category,
            attack: false,
            id: rec.id,
            request: RawRequest {
                method: rec.method,
                target: rec.target,
                headers: rec.headers,
                body: rec.body.into_bytes(),
            },
        });
    }
    Ok(out)
}

/// A browser's header set for the payload corpora, so that no rule about
/// odd clients fires on them.
fn browser_headers() -> Vec<(String, String)> {
    vec![
        (
            "User-Agent".into(),
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36".into(),
        ),
        ("Accept".into(), "*/*".into()),
        ("Accept-Language".into(), "en-US,en;q=0.9".into()),
    ]
}

/// `GET /?p=<value>` and `POST /` with the form body `p=<value>`, the value
/// already encoded for the wire.
fn placed(value: &str) -> [(&'static str, RawRequest); 2] {
    let get = RawRequest {
        method: "GET".into(),
        target: format!("/?{PAYLOAD_PARAM}={value}"),
        headers: browser_headers(),
        body: Vec::new(),
    };
    let mut form_headers = browser_headers();
    form_headers.push((
        "Content-Type".into(),
        "application/x-www-form-urlencoded".into(),
    ));
    let post = RawRequest {
        method: "POST".into(),
        target: "/".into(),
        headers: form_headers,
        body: format!("{PAYLOAD_PARAM}={value}").into_bytes(),
    };
    [("query", get), ("form", post)]
}

/// Loads HttpParamsDataset (`payload,length,attack_type,label` CSV, gzipped
/// when the name ends in `.gz`): each value URL-encoded into a query
/// parameter and into a form body. `label` `anom` is an attack; the category
/// is the attack type (`norm` for the normal values).
pub fn load_httpparams(path: &Path) -> Result<Vec<Sample>, CorpusError> {
    let mut reader = csv::Reader::from_reader(open(path)?);
    let mut out = Vec::new();
    for (n, row) in reader.records().enumerate() {
        let row = row.map_err(|e| parse_err(path, e.to_string()))?;
        let (Some(payload), Some(kind), Some(label)) = (row.get(0), row.get(2), row.get(3)) else {
            return Err(parse_err(
                path,
                format!("row {}: expected 4 columns", n + 1),
            ));
        };
        let value = query_escape(payload);
        for (place, request) in placed(&value) {
            out.push(Sample {
                corpus: "httpparams".into(),
                category: kind.to_string(),
                attack: label == "anom",
                id: format!("{n} {place}"),
                request,
            });
        }
    }
    Ok(out)
}

/// Python's `urllib.parse.quote(s)` (only `A-Za-z0-9_.-~/` kept) with `%25`
/// turned back into `%`, as open-appsec's comparison placed the mgm
/// payloads: a payload that is already percent-encoded stays as it is.
pub fn mgm_quote(payload: &str) -> String {
    let mut out = String::with_capacity(payload.len() * 3);
    for &b in payload.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' | b'/' => {
                out.push(b as char)
            }
            b'%' => out.push('%'),
            _ => crate::encode::push_pct(&mut out, b),
        }
    }
    out
}

/// Loads the mgm WAF payload collection: `CLASS/true-positives.txt`
/// (attacks) and `CLASS/false-positives.txt` (normal look-alikes), one
/// payload a line, each placed as `GET /?p=` and as a form body `p=`.
pub fn load_mgm(dir: &Path) -> Result<Vec<Sample>, CorpusError> {
    let mut classes: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    classes.sort();
    let mut out = Vec::new();
    for class_dir in &classes {
        let class = class_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        for (file, attack) in [("true-positives.txt", true), ("false-positives.txt", false)] {
            let path = class_dir.join(file);
            if !path.exists() {
                continue;
            }
            let text = std::fs::read(&path).map_err(io_err(&path))?;
            let text = String::from_utf8_lossy(&text);
            for (n, payload) in text.lines().enumerate() {
                if payload.is_empty() {
                    continue;
                }
                for (place, request) in placed(&mgm_quote(payload)) {
                    out.push(Sample {
                        corpus: "mgm".into(),
                        category: class.clone(),
                        attack,
                        id: format!("{class}/{file}:{} {place}", n + 1),
                        request,
                    });
                }
            }
        }
    }
    if out.is_empty() {
        return Err(parse_err(dir, "no CLASS/true-positives.txt found"));
    }
    Ok(out)
}

/// Loads the GoTestWAF test cases and builds each as GoTestWAF sends it; the
/// category is the attack family (or `false-pos` texts, which are normal).
pub fn load_gotestwaf(dir: &Path) -> Result<Loaded, CorpusError> {
    let files = load(dir)?;
    let mut loaded = Loaded::default();
    for case in cases(&files) {
        let built = build(&case);
        let sample = Sample {
            corpus: "gotestwaf".into(),
            category: case.family.clone(),
            attack: !case.is_false_positive,
            id: case.id(),
            request: built.clone().unwrap_or_default(),
        };
        match built {
            Some(_) => loaded.samples.push(sample),
            None => loaded.unbuildable.push(sample),
        }
    }
    Ok(loaded)
}

/// At most `limit` samples, spread evenly over the whole list (every k-th),
/// so that every category keeps its share and a run is reproducible.
pub fn spread(samples: Vec<Sample>, limit: Option<usize>) -> Vec<Sample> {
    match limit {
        Some(limit) if limit < samples.len() => {
            let len = samples.len();
            samples
                .into_iter()
                .enumerate()
                .filter(|(i, _)| (i * limit) % len < limit)
                .map(|(_, s)| s)
                .collect()
        }
        _ => samples,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: usize) -> Sample {
        Sample {
            corpus: "c".into(),
            category: (i % 3).to_string(),
            attack: false,
            id: i.to_string(),
            request: RawRequest {
                method: "GET".into(),
                target: "/".into(),
                headers: Vec::new(),
                body: Vec::new(),
            },
        }
    }

    #[test]
    fn mgm_quote_keeps_existing_escapes() {
        assert_eq!(mgm_quote("a b/c"), "a%20b/c");
        assert_eq!(mgm_quote("%2e%2e/etc"), "%2e%2e/etc");
        assert_eq!(mgm_quote("<x>'\"&="), "%3Cx%3E%27%22%26%3D");
        assert_eq!(mgm_quote("é"), "%C3%A9");
    }

    #[test]
    fn placements_are_query_and_form() {
        let [(q, get), (f, post)] = placed("a%20b");
        assert_eq!((q, f), ("query", "form"));
        assert_eq!(get.target, "/?p=a%20b");
        assert_eq!(post.body, b"p=a%20b");
        assert_eq!(
            post.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
    }

    #[test]
    fn spread_keeps_the_limit_and_the_mix() {
        let all: Vec<Sample> = (0..1000).map(sample).collect();
        let some = spread(all.clone(), Some(100));
        assert_eq!(some.len(), 100);
        for cat in ["0", "1", "2"] {
            let n = some.iter().filter(|s| s.category == cat).count();
            assert!((30..=37).contains(&n), "{cat}: {n}");
        }
        assert_eq!(spread(all.clone(), Some(5000)).len(), 1000);
        assert_eq!(spread(all, None).len(), 1000);
    }

    #[test]
    fn normal_lines_parse_gzipped() {
        use std::io::Write as _;
        let dir = std::env::temp_dir().join(format!("corpus-normal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("n.jsonl.gz");
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).expect("create"),
            flate2::Compression::fast(),
        );
        gz.write_all(
            "{\"id\":\"graphql-0\",\"category\":\"graphql\",\"source\":\"s\",\"method\":\"POST\",\"target\":\"/graphql\",\"headers\":[[\"Content-Type\",\"application/json\"]],\"body\":\"{\\\"query\\\":\\\"{ a }\\\"}\"}\n\n".as_bytes(),
        )
        .expect("write");
        gz.finish().expect("finish");
        let loaded = load_normal(&path).expect("load");
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(loaded.len(), 1);
        let s = &loaded[0];
        assert_eq!((s.category.as_str(), s.attack), ("graphql", false));
        assert_eq!(s.request.header("content-type"), Some("application/json"));
        assert_eq!(s.request.body, b"{\"query\":\"{ a }\"}");
    }
}
