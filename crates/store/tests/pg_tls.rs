//! PostgreSQL over TLS against a real server started with a certificate of
//! a throwaway CA (rcgen): `sslmode` in the URL decides whether the session
//! is encrypted and how the server is checked. Skipped, saying so, when the
//! server binaries are not installed.

use std::path::PathBuf;
use std::time::Duration;

use portcullis_store::pg::{Notice, TempPostgres, TempPostgresError};
use portcullis_store::{PgConfig, PgPool, PgStore, StoreError};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

/// A CA, and a server certificate it signed for `localhost` only.
struct Pki {
    ca_pem: String,
    server_pem: String,
    server_key: String,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("key");
    let server = CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("server certificate");
    Pki {
        ca_pem: ca.pem(),
        server_pem: server.pem(),
        server_key: key.serialize_pem(),
    }
}

struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("pc-pg-tls-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("write");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Whether the pool's session is encrypted, as the server sees it.
fn encrypted(url: &str) -> Result<bool, StoreError> {
    let pool = PgPool::new(&PgConfig {
        connect_timeout: Duration::from_secs(5),
        ..PgConfig::new(url)
    })?;
    pool.block_on(|| async {
        let client = pool.get().await?;
        let row = client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await?;
        Ok(row.get::<_, bool>(0))
    })
}

#[test]
fn sslmode_in_the_url_encrypts_and_checks_the_server() {
    let certs = pki();
    let pg = match TempPostgres::start_tls(&certs.server_pem, &certs.server_key) {
        Ok(pg) => pg,
        Err(TempPostgresError::NotInstalled) => {
            eprintln!("SKIPPED: PostgreSQL server binaries are not installed");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let ca = TempFile::new("ca.pem", &certs.ca_pem);
    let other_ca = TempFile::new("other-ca.pem", &pki().ca_pem);
    let port = pg.port();
    // The certificate names `localhost`; the server listens on 127.0.0.1.
    let by_name = format!("postgres://postgres@localhost:{port}/postgres?hostaddr=127.0.0.1");
    let by_address = format!("postgres://postgres@127.0.0.1:{port}/postgres?");
    let root = |file: &TempFile| format!("sslrootcert={}", file.0.display());

    assert!(
        !encrypted(&pg.url()).expect("plain"),
        "no sslmode: plain, as before"
    );
    assert!(encrypted(&format!("{by_address}sslmode=require")).expect("require"));
    let full = format!("{by_name}&sslmode=verify-full&{}", root(&ca));
    assert!(encrypted(&full).expect("verify-full by name"));
    let ca_only = format!("{by_address}sslmode=verify-ca&{}", root(&ca));
    assert!(
        encrypted(&ca_only).expect("verify-ca"),
        "verify-ca does not compare the name"
    );

    let wrong_name = format!("{by_address}sslmode=verify-full&{}", root(&ca));
    assert!(
        encrypted(&wrong_name).is_err(),
        "127.0.0.1 is not in the certificate"
    );
    let wrong_ca = format!("{by_name}&sslmode=verify-full&{}", root(&other_ca));
    assert!(encrypted(&wrong_ca).is_err(), "a certificate of another CA");
    let missing = format!("{by_name}&sslmode=verify-full&sslrootcert=/nonexistent/ca.pem");
    assert!(PgPool::new(&PgConfig::new(missing)).is_err());

    // The event store and LISTEN/NOTIFY (the console's policy channel) over
    // a verified session.
    PgStore::open(&PgConfig::new(full.clone())).expect("event store over TLS");
    let pool = PgPool::new(&PgConfig::new(full)).expect("pool");
    let mut notices = pool.listen("pc_tls_test");
    let first = pool
        .block_on(|| async { tokio::time::timeout(Duration::from_secs(10), notices.recv()).await });
    assert_eq!(first, Ok(Some(Notice::Listening)));
}
