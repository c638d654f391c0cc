//! Certificates made at test time with Debian's `openssl`: a private CA per folder and leaf
//! certificates signed by it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Makes a CA in `dir` (once) and a leaf certificate `name` for `dns` names (an IP address
/// becomes an IP SAN) signed by it: returns the chain and key paths. Another `dir`, another CA.
pub fn make_certificate(dir: &Path, name: &str, dns: &[&str]) -> (PathBuf, PathBuf) {
    let (ca, ca_key) = make_ca(dir);
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let cert = dir.join(format!("{name}.pem"));
    let ext = dir.join(format!("{name}.ext"));
    let san: Vec<String> = dns
        .iter()
        .map(|d| match d.parse::<std::net::IpAddr>() {
            Ok(_) => format!("IP:{d}"),
            Err(_) => format!("DNS:{d}"),
        })
        .collect();
    std::fs::write(
        &ext,
        format!(
            "subjectAltName={}\nbasicConstraints=CA:FALSE\n",
            san.join(",")
        ),
    )
    .expect("writing the extensions");
    key_and_request(&key, &csr, dns[0]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        path(&csr),
        "-CA",
        path(&ca),
        "-CAkey",
        path(&ca_key),
        "-CAcreateserial",
        "-days",
        "30",
        "-extfile",
        path(&ext),
        "-out",
        path(&cert),
    ]);
    (cert, key)
}

/// The CA of `dir`, made on first use: its certificate and key.
fn make_ca(dir: &Path) -> (PathBuf, PathBuf) {
    let ca = dir.join("ca.pem");
    let ca_key = dir.join("ca.key");
    if !ca.exists() {
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "30",
            "-subj",
            // Named after its folder: two folders' CAs are two issuers.
            &format!(
                "/CN=lbhost test CA {}",
                dir.file_name().and_then(|n| n.to_str()).unwrap_or("")
            ),
            "-keyout",
            path(&ca_key),
            "-out",
            path(&ca),
        ]);
    }
    (ca, ca_key)
}

/// A leaf certificate `name` for the DNS name `cn` (CN and SAN), signed by the CA of `dir`,
/// that expired in 2020 (`openssl ca` sets past dates, which `x509 -days` cannot): the chain
/// and key paths.
pub fn make_expired_certificate(dir: &Path, name: &str, cn: &str) -> (PathBuf, PathBuf) {
    let (ca, ca_key) = make_ca(dir);
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let cert = dir.join(format!("{name}.pem"));
    let db = dir.join(format!("{name}.db"));
    std::fs::create_dir_all(&db).expect("a folder");
    std::fs::write(db.join("index.txt"), "").expect("the CA index");
    std::fs::write(db.join("serial"), "01\n").expect("the CA serial");
    let conf = db.join("ca.cnf");
    std::fs::write(
        &conf,
        format!(
            "[ca]\ndefault_ca = here\n[here]\ndatabase = {0}/index.txt\nnew_certs_dir = {0}\n\
             serial = {0}/serial\ndefault_md = sha256\npolicy = any\nx509_extensions = leaf\n\
             [any]\ncommonName = supplied\n\
             [leaf]\nbasicConstraints = CA:FALSE\nsubjectAltName = DNS:{1}\n",
            path(&db),
            cn
        ),
    )
    .expect("the CA config");
    key_and_request(&key, &csr, cn);
    openssl(&[
        "ca",
        "-batch",
        "-notext",
        "-config",
        path(&conf),
        "-cert",
        path(&ca),
        "-keyfile",
        path(&ca_key),
        "-in",
        path(&csr),
        "-out",
        path(&cert),
        "-startdate",
        "20200101000000Z",
        "-enddate",
        "20200201000000Z",
    ]);
    (cert, key)
}

/// A new P-256 key in `key` and a certificate request for CN `cn` in `csr`.
fn key_and_request(key: &Path, csr: &Path, cn: &str) {
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        &format!("/CN={cn}"),
        "-keyout",
        path(key),
        "-out",
        path(csr),
    ]);
}

pub fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

pub fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
