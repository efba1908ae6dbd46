fn main() {
    for s in std::env::args().skip(1) {
        let r = libinjectionrs::detect_sqli(s.as_bytes());
        let x = libinjectionrs::detect_xss(s.as_bytes());
        println!("{:5} {:?} xss={} | {}", r.is_injection(), r.fingerprint.map(|f| f.to_string()), x.is_injection(), s);
    }
}
