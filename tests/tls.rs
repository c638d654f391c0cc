//! The HTTPS listener with real certificates made at test time (Debian's `openssl`) and a real
//! TLS client (rustls): certificates by SNI, HTTP/1.1 and HTTP/2 by ALPN, `https` in the
//! forwarding fields, certificates replaced on reload, bad ones refused with the old ones kept.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use lbhost_e2e::{
    chromium, free_addr, full, headless, make_certificate, make_expired_certificate, Http, Lb,
    RecordingBackend, Scratch,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[path = "tls/renewal.rs"]
mod renewal;

/// Accepts any certificate and keeps the one presented, so a test can see which one the
/// server chose for a name it does not cover too.
#[derive(Debug, Default)]
struct Recorder(Mutex<Option<Vec<u8>>>);

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.0.lock().expect("lock") = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![
            SignatureScheme::ECDSA_NISTP256_SHA256,
            SignatureScheme::RSA_PSS_SHA256,
            SignatureScheme::ED25519,
        ]
    }
}

/// A TLS connection to `addr` with SNI `name` and ALPN `alpn`: the stream and the DER of the
/// certificate the server presented.
async fn connect(
    addr: SocketAddr,
    name: &str,
    alpn: &[u8],
) -> (tokio_rustls::client::TlsStream<TcpStream>, Vec<u8>) {
    try_connect(addr, name, alpn)
        .await
        .expect("a TLS connection")
}

/// [`connect`], or why it failed.
async fn try_connect(
    addr: SocketAddr,
    name: &str,
    alpn: &[u8],
) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, Vec<u8>), String> {
    let recorder = Arc::new(Recorder::default());
    #[allow(deprecated)] // ring, as lbhost uses (see host/src/tls/mod.rs).
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::clone(&recorder) as Arc<dyn ServerCertVerifier>)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to the TLS listener: {e}"))?;
    let server_name = ServerName::try_from(name.to_string()).expect("a DNS name");
    let tls = TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let presented = recorder
        .0
        .lock()
        .expect("lock")
        .clone()
        .ok_or("no certificate")?;
    Ok((tls, presented))
}

/// The DER of the first certificate in PEM file `path`.
fn der(path: &Path) -> Vec<u8> {
    let out = Command::new("openssl")
        .args([
            "x509",
            "-in",
            path.to_str().expect("UTF-8"),
            "-outform",
            "DER",
        ])
        .output()
        .expect("openssl runs");
    out.stdout
}

/// `GET /` over `tls` with HTTP/1.1 or HTTP/2: the status.
async fn get(tls: tokio_rustls::client::TlsStream<TcpStream>, h2: bool) -> u16 {
    try_get(tls, h2).await.expect("a response")
}

/// [`get`], or why it failed.
async fn try_get(tls: tokio_rustls::client::TlsStream<TcpStream>, h2: bool) -> Result<u16, String> {
    let io = TokioIo::new(tls);
    let request = Request::get("https://a.test/")
        .header("host", "a.test")
        .body(Empty::<Bytes>::new())
        .expect("a request");
    let failed = |e: hyper::Error| e.to_string();
    let response = if h2 {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(failed)?;
        tokio::spawn(conn);
        send.send_request(request).await.map_err(failed)?
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(failed)?;
        tokio::spawn(conn);
        send.send_request(request).await.map_err(failed)?
    };
    let status = response.status().as_u16();
    response.into_body().collect().await.map_err(failed)?;
    Ok(status)
}

struct Setup {
    lb: Lb,
    tls: SocketAddr,
    backend: RecordingBackend,
    certs: Scratch,
    /// (chain, key) of: the default certificate, `a.test`, `*.wild.test`.
    files: [(PathBuf, PathBuf); 3],
}

impl Setup {
    /// A folder for renewed certificates, signed by the same CA as the first ones.
    fn renewal_folder(&self) -> PathBuf {
        let renewed = self.certs.path().join("renewed");
        std::fs::create_dir_all(&renewed).expect("a folder");
        for file in ["ca.pem", "ca.key"] {
            std::fs::copy(self.certs.path().join(file), renewed.join(file)).expect("copy");
        }
        renewed
    }

    /// Renews `a.test`'s certificate the way certbot does: a new one (named `name`, from the
    /// same CA) made in the renewal folder and renamed over the old files. Its DER form.
    fn renew_a(&self, name: &str) -> Vec<u8> {
        let [_, a, _] = &self.files;
        let (cert, key) = make_certificate(&self.renewal_folder(), name, &["a.test"]);
        let renewed = der(&cert);
        std::fs::rename(&key, &a.1).expect("rename the key");
        std::fs::rename(&cert, &a.0).expect("rename the chain");
        renewed
    }

    /// `POST /reload`: lbhost's answer.
    async fn reload(&self) -> lbhost_e2e::Reply {
        let reload = Request::post(self.lb.admin_url("/reload"))
            .body(full(""))
            .expect("a request");
        Http::new().send(reload).await
    }

    /// A reload refused for `reason`, with `a.test`'s running certificate (`current`, DER) still
    /// served and answering.
    async fn refused_and_kept(&self, reason: &str, current: &[u8]) {
        let reply = self.reload().await;
        assert_ne!(reply.status, 200, "accepted; {reason} expected");
        assert!(reply.text().contains(reason), "{}", reply.text());
        let (tls, presented) = connect(self.tls, "a.test", b"http/1.1").await;
        assert_eq!(presented, current, "the old certificate keeps serving");
        assert_eq!(get(tls, false).await, 200);
    }
}

async fn start() -> Setup {
    let certs = Scratch::new();
    let files = [
        make_certificate(certs.path(), "default", &["default.test"]),
        make_certificate(certs.path(), "a", &["a.test"]),
        make_certificate(certs.path(), "wild", &["*.wild.test"]),
    ];
    let backend = RecordingBackend::start().await;
    let tls = free_addr();
    let (listen, admin) = (free_addr(), free_addr());
    let config = json!({
        "listen": listen.to_string(),
        "admin": admin.to_string(),
        "strategy": lbhost_e2e::strategy("round_robin"),
        "backends": [{"url": backend.url()}],
        "tls": {
            "listen": tls.to_string(),
            "certificates": files.iter().map(|(cert, key)| json!({"cert": cert, "key": key})).collect::<Vec<_>>(),
        },
    });
    let config_path = certs.write("config.json", config.to_string());
    let lb = Lb::start_from_file(&config_path, listen, admin).await;
    Setup {
        lb,
        tls,
        backend,
        certs,
        files,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_picks_certificates_by_sni_and_serves_http1_and_h2() {
    let s = start().await;
    let [default, a, wild] = &s.files;
    let (tls, presented) = connect(s.tls, "a.test", b"http/1.1").await;
    assert_eq!(presented, der(&a.0), "a.test gets its own certificate");
    assert_eq!(get(tls, false).await, 200);
    let (tls, presented) = connect(s.tls, "x.wild.test", b"h2").await;
    assert_eq!(presented, der(&wild.0), "x.wild.test gets the wildcard");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(get(tls, true).await, 200);
    let (_, presented) = connect(s.tls, "deep.x.wild.test", b"http/1.1").await;
    assert_eq!(
        presented,
        der(&default.0),
        "a wildcard covers one label only"
    );
    let (_, presented) = connect(s.tls, "other.test", b"http/1.1").await;
    assert_eq!(
        presented,
        der(&default.0),
        "an unknown name gets the default"
    );
    let seen = s.backend.received().to_ascii_lowercase();
    assert!(seen.contains("x-forwarded-proto: https\r\n"), "{seen}");
    assert!(seen.contains(";proto=https"), "{seen}");
    // The plain listener still serves, and says http.
    let reply = Http::new().get(&s.lb.url("/")).await;
    assert_eq!(reply.status, 200);
    let http = Http::new();
    let metrics = http.get(&s.lb.admin_url("/metrics")).await.text();
    assert!(
        metrics.contains("lbhost_tls_certificate_expiry_seconds{"),
        "{metrics}"
    );
    assert!(
        metrics.contains("lbhost_tls_handshakes_total{result=\"ok\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_change_on_reload_and_bad_ones_keep_the_old() {
    let s = start().await;
    let [_, a, _] = &s.files;
    let old = der(&a.0);
    s.renew_a("a");
    let renewed = s.renewal_folder();
    let reply = s.reload().await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let (_, presented) = connect(s.tls, "a.test", b"http/1.1").await;
    assert_ne!(
        presented, old,
        "a new handshake gets the renewed certificate"
    );
    assert_eq!(presented, der(&a.0));
    let current = presented;

    // A key that does not match: refused with the reason, the running certificate kept.
    let (_, other_key) = make_certificate(&renewed, "other", &["other.test"]);
    std::fs::copy(&other_key, &a.1).expect("copy the wrong key");
    s.refused_and_kept("does not match", &current).await;

    // An expired chain (with its own, matching key): refused, the running one kept.
    let (cert, key) = make_expired_certificate(&renewed, "expired", "a.test");
    std::fs::copy(&key, &a.1).expect("copy the key");
    std::fs::copy(&cert, &a.0).expect("copy the expired chain");
    s.refused_and_kept("days ago", &current).await;
}

#[tokio::test]
async fn check_refuses_bad_certificate_files_in_one_line() {
    let certs = Scratch::new();
    let (cert, key) = make_certificate(certs.path(), "a", &["a.test"]);
    let (_, wrong_key) = make_certificate(certs.path(), "b", &["b.test"]);
    let not_pem = certs.write("junk.pem", "not a certificate");
    let (expired, expired_key) = make_expired_certificate(certs.path(), "old", "a.test");
    let cases = [
        (json!({"cert": cert, "key": wrong_key}), "does not match"),
        (json!({"cert": expired, "key": expired_key}), "days ago"),
        (json!({"cert": not_pem, "key": key}), "no certificate"),
        (
            json!({"cert": certs.path().join("missing.pem"), "key": key}),
            "missing.pem",
        ),
    ];
    for (certificate, expected) in cases {
        let config = json!({
            "strategy": lbhost_e2e::strategy("round_robin"),
            "backends": [{"url": "http://127.0.0.1:9"}],
            "tls": {"listen": "127.0.0.1:0", "certificates": [certificate]},
        });
        let path = certs.write("config.json", config.to_string());
        let run = Lb::spawn_raw(["check", "--config", path.to_str().expect("UTF-8")]).await;
        assert!(!run.status.success(), "accepted: {certificate}");
        let text = run.stderr;
        assert!(text.contains("tls.certificates[0]"), "{text}");
        assert!(text.contains(expected), "{text}");
        assert_eq!(text.trim().lines().count(), 1, "{text}");
    }
}

/// Debian's own TLS clients against the listener: `openssl s_client` is given the certificate
/// its SNI names (a wildcard's, the default one for a name no certificate has) and agrees on h2
/// by ALPN; curl gets an HTTP/2 answer over TLS, and an HTTP/1.1 one when it asks for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_and_curl_see_sni_alpn_and_http2() {
    let s = start().await;
    let addr = s.tls.to_string();
    for (sni, subject) in [
        ("a.test", "CN = a.test"),
        ("x.wild.test", "CN = *.wild.test"),
        ("unknown.test", "CN = default.test"),
    ] {
        let out = Command::new("openssl")
            .args(["s_client", "-connect", &addr, "-servername", sni])
            .args(["-alpn", "h2,http/1.1"])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("subject={subject}")),
            "{sni}: {text}"
        );
        assert!(text.contains("ALPN protocol: h2"), "{sni}: {text}");
        assert!(text.contains("TLSv1.3"), "{sni}: {text}");
    }
    let port = s.tls.port();
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let out = Command::new("curl")
            .args([
                "-sk",
                flag,
                "--resolve",
                &format!("a.test:{port}:127.0.0.1"),
            ])
            .args(["-o", "/dev/null", "-w", "%{http_version} %{http_code}"])
            .arg(format!("https://a.test:{port}/"))
            .output()
            .expect("curl runs");
        let answer = String::from_utf8_lossy(&out.stdout);
        assert_eq!(answer, format!("{version} 200"), "curl {flag}");
    }
}

/// `/status` lists each certificate (names, file, expiry) and the status page shows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_the_certificates_and_the_page_shows_them() {
    let s = start().await;
    let status = Http::new().get(&s.lb.admin_url("/status")).await.json();
    let certificates = status["certificates"].as_array().expect("a list");
    assert_eq!(certificates.len(), 3, "{status}");
    for (listed, (cert, _)) in certificates.iter().zip(&s.files) {
        assert_eq!(listed["role"], "listener");
        assert_eq!(listed["file"], cert.display().to_string());
        let days = listed["expires_in_days"].as_i64().expect("days");
        assert!((28..=30).contains(&days), "{listed}");
        assert!(listed["not_after_unix"].as_i64().is_some(), "{listed}");
    }
    assert_eq!(certificates[1]["names"], json!(["a.test"]));
    assert_eq!(certificates[2]["names"], json!(["*.wild.test"]));
    let Some(chromium) = chromium() else {
        eprintln!("SKIPPED the status page part: chromium is not installed");
        return;
    };
    let dom = headless(&chromium, &s.lb.admin_url("/"), &["--dump-dom".into()]).await;
    let table = dom
        .split("id=\"certificates\"")
        .nth(1)
        .and_then(|rest| rest.split("</tbody>").next())
        .expect("the certificates table");
    for name in ["default.test", "a.test", "*.wild.test"] {
        assert!(table.contains(name), "{name} missing: {table}");
    }
    assert!(
        table.contains("(29 days)") || table.contains("(28 days)") || table.contains("(30 days)"),
        "{table}"
    );
}

/// A handshake flood: hundreds of clients that connect and never finish a handshake (silent,
/// half a ClientHello, or a whole one and then nothing) do not keep a real client from being
/// served, and each is closed at `handshake_timeout` and counted as a timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unfinished_handshakes_does_not_starve_a_real_client() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let certs = Scratch::new();
    let (cert, key) = make_certificate(certs.path(), "a", &["a.test"]);
    let backend = RecordingBackend::start().await;
    let tls = free_addr();
    let (listen, admin) = (free_addr(), free_addr());
    let config = json!({
        "listen": listen.to_string(),
        "admin": admin.to_string(),
        "workers": 1,
        "strategy": lbhost_e2e::strategy("round_robin"),
        "backends": [{"url": backend.url()}],
        "tls": {
            "listen": tls.to_string(),
            "certificates": [{"cert": cert, "key": key}],
            "handshake_timeout": "2s",
            "max_handshakes": 4,
        },
    });
    let config_path = certs.write("config.json", config.to_string());
    let lb = Lb::start_from_file(&config_path, listen, admin).await;

    // A real ClientHello, to send whole or in part.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Recorder::default()))
        .with_no_client_auth();
    let mut hello = Vec::new();
    rustls::ClientConnection::new(
        Arc::new(client_config),
        ServerName::try_from("a.test").expect("a name"),
    )
    .expect("a client")
    .write_tls(&mut hello)
    .expect("a ClientHello");
    let started = std::time::Instant::now();
    let mut flood = Vec::new();
    for i in 0..300 {
        let mut tcp = TcpStream::connect(tls).await.expect("connect");
        match i % 100 {
            // Three whole ClientHellos left unanswered: they hold three of the four slots.
            0 => tcp.write_all(&hello).await.expect("write"),
            1..=49 => tcp
                .write_all(&hello[..hello.len() / 2])
                .await
                .expect("write"),
            _ => {}
        }
        flood.push(tcp);
    }
    // A real client is served at once, again and again, while the flood holds on.
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let (stream, _) = connect(tls, "a.test", b"http/1.1").await;
        assert_eq!(get(stream, false).await, 200);
        assert!(
            t.elapsed() < std::time::Duration::from_millis(1000),
            "a real client waited {:?}",
            t.elapsed()
        );
    }
    assert!(
        started.elapsed() < std::time::Duration::from_millis(1900),
        "the flood outlived the test's premise: {:?}",
        started.elapsed()
    );
    // Each flooding connection is closed at the timeout and counted.
    for tcp in &mut flood {
        let mut buf = [0u8; 4096];
        loop {
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read(&mut buf))
                .await
                .expect("closed within the handshake timeout");
            if !matches!(read, Ok(n) if n > 0) {
                break;
            }
        }
    }
    let metrics = Http::new().get(&lb.admin_url("/metrics")).await.text();
    let timeouts = lbhost_e2e::metric(&metrics, "lbhost_tls_handshakes_total{result=\"timeout\"}");
    assert_eq!(timeouts, 300.0, "{metrics}");
    let ok = lbhost_e2e::metric(&metrics, "lbhost_tls_handshakes_total{result=\"ok\"}");
    assert_eq!(ok, 5.0, "{metrics}");
}
