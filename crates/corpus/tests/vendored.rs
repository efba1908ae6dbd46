//! The corpora vendored under `bench/corpora/` load with their known counts
//! (no network).

use std::collections::BTreeSet;
use std::path::PathBuf;

use portcullis_corpus::{load_gotestwaf, load_httpparams, load_normal};

fn corpora() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/corpora")
}

#[test]
fn normal_corpus() {
    let samples = load_normal(&corpora().join("normal/requests.jsonl.gz")).expect("load");
    assert_eq!(samples.len(), 57_060);
    assert!(samples.iter().all(|s| !s.attack && s.corpus == "normal"));
    let categories: BTreeSet<&str> = samples.iter().map(|s| s.category.as_str()).collect();
    for c in [
        "analytics-beacon",
        "emoji-i18n",
        "forum-sql",
        "graphql",
        "markdown",
        "miniprogram-json",
        "openapi-example",
        "raw-utf8",
        "review-zh",
        "rich-text-en",
        "rich-text-zh",
        "search-gbk",
        "search-zh",
        "stack-trace",
    ] {
        assert!(categories.contains(c), "missing category {c}");
    }
    let ids: BTreeSet<&str> = samples.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids.len(), samples.len(), "ids are unique");
    // Every body says what it is.
    for s in &samples {
        if !s.request.body.is_empty() {
            assert!(s.request.header("content-type").is_some(), "{}", s.id);
        }
        assert!(s.request.target.starts_with('/'), "{}", s.id);
    }
}

#[test]
fn httpparams() {
    let samples = load_httpparams(&corpora().join("httpparams/payload_train.csv")).expect("load");
    // 12,870 normal values and 7,842 attacks, each placed twice.
    assert_eq!(samples.iter().filter(|s| !s.attack).count(), 2 * 12_870);
    assert_eq!(samples.iter().filter(|s| s.attack).count(), 2 * 7_842);
    let kinds: BTreeSet<&str> = samples.iter().map(|s| s.category.as_str()).collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["cmdi", "norm", "path-traversal", "sqli", "xss"]
    );
}

#[test]
fn gotestwaf() {
    let loaded = load_gotestwaf(&corpora().join("gotestwaf/testcases")).expect("load");
    let attacks = loaded.samples.iter().filter(|s| s.attack).count();
    let texts = loaded.samples.iter().filter(|s| !s.attack).count();
    assert_eq!((attacks, texts), (679, 141));
    // Only the gRPC cases cannot be sent.
    assert!(loaded.unbuildable.iter().all(|s| s.id.ends_with(" gRPC")));
    assert!(!loaded.unbuildable.is_empty());
}
