//! Launch Debian's `docker-registry` (distribution 2.8) for one test: 127.0.0.1, a free port, a
//! fresh temporary storage directory and YAML config, one of three auth modes (anonymous,
//! htpasswd Basic with bcrypt hashes, token auth backed by [`TokenServer`]), optionally TLS with a
//! generated CA. The process is killed and reaped on drop.

use crate::TokenServer;
use crate::tls::{ClientCertPem, TestCerts, generate_mtls_certs, generate_server_certs};
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How the registry authenticates clients.
#[derive(Debug, Clone, Default)]
pub enum Auth {
    #[default]
    Anonymous,
    /// htpasswd Basic auth with these users (name, password).
    Htpasswd(Vec<(String, String)>),
    /// Bearer tokens from a [`TokenServer`] that knows these users; anonymous callers may pull.
    Token {
        users: Vec<(String, String)>,
        expires_in: u64,
    },
}

/// What to start.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    pub auth: Auth,
    /// Serve HTTPS with a certificate from a generated CA ([`Registry::ca_cert_path`]).
    pub tls: bool,
}

/// TLS for [`Registry::start_with_tls`]: files made by the caller (e.g. by `openssl req -x509`),
/// and optionally a CA that client certificates must be signed by (mutual TLS).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// `http.tls.clientcas`: the registry then requires a client certificate signed by it.
    pub client_ca: Option<PathBuf>,
}

/// A running registry.
pub struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    token: Option<TokenServer>,
    certs: Option<TestCerts>,
    https: bool,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Registry({})", self.addr())
    }
}

/// The registry binary: `$LAYERLIFT_REGISTRY_BIN`, else `/usr/bin/docker-registry`.
pub fn registry_binary() -> PathBuf {
    std::env::var_os("LAYERLIFT_REGISTRY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/docker-registry"))
}

impl Registry {
    /// An anonymous registry over plain HTTP.
    pub fn anonymous() -> Self {
        Self::start(RegistryOptions::default())
    }

    /// A registry with htpasswd Basic auth for one user.
    pub fn htpasswd(user: &str, password: &str) -> Self {
        Self::start(RegistryOptions {
            auth: Auth::Htpasswd(vec![(user.into(), password.into())]),
            tls: false,
        })
    }

    /// A registry with token auth for one user.
    pub fn token(user: &str, password: &str) -> Self {
        Self::start(RegistryOptions {
            auth: Auth::Token {
                users: vec![(user.into(), password.into())],
                expires_in: 300,
            },
            tls: false,
        })
    }

    /// Start a registry; panics with the registry's log when it does not come up.
    pub fn start(opts: RegistryOptions) -> Self {
        Self::start_inner(opts, None)
    }

    /// Start a registry serving HTTPS with the caller's certificate and key (`opts.tls` is
    /// ignored; [`Registry::ca_cert_path`] is None).
    pub fn start_with_tls(auth: Auth, tls: TlsFiles) -> Self {
        Self::start_inner(RegistryOptions { auth, tls: false }, Some(&tls))
    }

    fn start_inner(opts: RegistryOptions, files: Option<&TlsFiles>) -> Self {
        let bin = registry_binary();
        assert!(
            bin.exists(),
            "{} not found: install Debian's docker-registry package (apt-get install docker-registry) or set LAYERLIFT_REGISTRY_BIN",
            bin.display()
        );
        // A few attempts in case another process grabs the port between probe and bind.
        for _ in 0..5 {
            let dir = tempfile::Builder::new()
                .prefix("layerlift-registry-")
                .tempdir()
                .expect("temp dir");
            let storage = dir.path().join("storage");
            std::fs::create_dir_all(&storage).expect("storage dir");
            let port = crate::free_port();
            let mut token = None;
            let mut certs = None;
            let mut yaml = format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: layerlift-testkit-secret\n",
                storage.display()
            );
            if opts.tls {
                let c = generate_server_certs();
                write(dir.path(), "server.crt", &c.cert_pem);
                write(dir.path(), "server.key", &c.key_pem);
                write(dir.path(), "ca.crt", &c.ca_pem);
                yaml.push_str(&format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    dir.path().join("server.crt").display(),
                    dir.path().join("server.key").display()
                ));
                certs = Some(c);
            }
            if let Some(f) = files {
                yaml.push_str(&format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    f.cert.display(),
                    f.key.display()
                ));
                if let Some(ca) = &f.client_ca {
                    yaml.push_str(&format!("    clientcas:\n      - {}\n", ca.display()));
                }
            }
            match &opts.auth {
                Auth::Anonymous => {}
                Auth::Htpasswd(users) => {
                    let mut text = String::new();
                    for (u, p) in users {
                        let h = bcrypt::hash_with_result(p, 4)
                            .expect("bcrypt")
                            .format_for_version(bcrypt::Version::TwoY);
                        text.push_str(&format!("{u}:{h}\n"));
                    }
                    write(dir.path(), "htpasswd", &text);
                    yaml.push_str(&format!(
                        "auth:\n  htpasswd:\n    realm: layerlift-test\n    path: {}\n",
                        dir.path().join("htpasswd").display()
                    ));
                }
                Auth::Token { users, expires_in } => {
                    let refs: Vec<(&str, &str)> = users
                        .iter()
                        .map(|(u, p)| (u.as_str(), p.as_str()))
                        .collect();
                    let ts = TokenServer::start("layerlift-test-registry", &refs, *expires_in)
                        .expect("token server");
                    write(dir.path(), "token.crt", ts.cert_pem());
                    yaml.push_str(&format!(
                        "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                        ts.realm(),
                        ts.service(),
                        ts.issuer(),
                        dir.path().join("token.crt").display()
                    ));
                    token = Some(ts);
                }
            }
            write(dir.path(), "config.yml", &yaml);
            let child = serve(dir.path());
            let https = certs.is_some() || files.is_some();
            let mut reg = Registry {
                child,
                port,
                dir,
                token,
                certs,
                https,
            };
            match reg.wait_ready(Duration::from_secs(20)) {
                Ok(()) => return reg,
                Err(port_taken) => {
                    let log = reg.log();
                    drop(reg);
                    if !port_taken {
                        panic!("docker-registry did not start:\n{log}");
                    }
                }
            }
        }
        panic!("docker-registry could not bind a free port");
    }

    /// Wait until the port accepts connections. Err(true) when the port was already in use.
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), bool> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(_)) = self.child.try_wait() {
                let log = self.log();
                return Err(log.contains("address already in use"));
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Err(false)
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>` or `https://…`.
    pub fn base_url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.addr())
    }

    /// The CA that signed the registry's certificate (TLS mode only).
    pub fn ca_cert_path(&self) -> Option<PathBuf> {
        self.certs.as_ref().map(|_| self.dir.path().join("ca.crt"))
    }

    pub fn token_server(&self) -> Option<&TokenServer> {
        self.token.as_ref()
    }

    /// Where blobs and manifests are stored.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Registry {
    /// SIGKILL the registry process (its storage stays), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start the registry again on the same port, storage and configuration (after
    /// [`Registry::kill`]); its log goes on in the same file.
    pub fn restart(&mut self) {
        self.kill();
        self.child = serve(self.dir.path());
        if let Err(port_taken) = self.wait_ready(Duration::from_secs(20)) {
            panic!(
                "docker-registry did not start again (port taken: {port_taken}):\n{}",
                self.log()
            );
        }
    }
}

/// `docker-registry serve DIR/config.yml`, logging to `DIR/registry.log` (appended).
fn serve(dir: &Path) -> Child {
    let bin = registry_binary();
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(dir.join("registry.log"))
        .expect("log file");
    Command::new(&bin)
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .env_remove("REGISTRY_HTTP_ADDR")
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()))
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    let mut f = std::fs::File::create(dir.join(name)).expect("write test file");
    f.write_all(text.as_bytes()).expect("write test file");
}

/// A registry on 127.0.0.1 over TLS that requires a client certificate signed by its CA
/// (`http.tls.clientcas`), with a fresh CA, server and client certificate.
pub struct MutualTls {
    /// The running registry.
    pub registry: Registry,
    /// The CA's PEM file (it signed the server's and the client's certificates).
    pub ca: PathBuf,
    /// A client certificate the registry accepts.
    pub client: ClientCertPem,
    /// Holds the files.
    _dir: tempfile::TempDir,
}

/// Start a [`MutualTls`] registry with anonymous access.
pub fn mutual_tls_registry() -> MutualTls {
    let dir = tempfile::tempdir().expect("temp dir");
    let (certs, client) = generate_mtls_certs();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("writing a test certificate");
        path
    };
    let ca = write("ca.crt", &certs.ca_pem);
    let registry = Registry::start_with_tls(
        Auth::Anonymous,
        TlsFiles {
            cert: write("server.crt", &certs.cert_pem),
            key: write("server.key", &certs.key_pem),
            client_ca: Some(ca.clone()),
        },
    );
    MutualTls {
        registry,
        ca,
        client,
        _dir: dir,
    }
}
