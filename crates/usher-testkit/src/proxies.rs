//! Real front proxies for tests: Debian's nginx and Caddy, run as child processes on a
//! free loopback port, with the example configurations from `docs/proxies/` (their
//! ports rewritten). They are killed when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct FrontProxy {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl Drop for FrontProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl FrontProxy {
    /// What the proxy wrote to its error log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The repository's `docs/proxies/NAME`, with Usher's and the app's addresses replaced.
pub fn example(name: &str, usher: SocketAddr, app: SocketAddr) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/proxies")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace("127.0.0.1:8080", &usher.to_string())
        .replace("127.0.0.1:3000", &app.to_string())
}

fn require(binary: &str, package: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"] {
        let p = Path::new(dir).join(binary);
        if p.exists() {
            return p;
        }
    }
    panic!("{binary} is not installed: `apt-get install {package}` (.ci/run does this)");
}

fn wait_for(port: u16, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the proxy exited with {status}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the proxy did not listen on {port}"
        );
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

/// nginx with `site` (a `server {}` block) inside a minimal main configuration.
pub fn nginx(site: &str) -> FrontProxy {
    let bin = require("nginx", "nginx");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let d = dir.path().display();
    let site = site.replace("listen 80;", &format!("listen 127.0.0.1:{port};"));
    std::fs::write(dir.path().join("site.conf"), site).unwrap();
    let main = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\nevents {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         include {d}/site.conf;\n}}\n"
    );
    std::fs::write(dir.path().join("nginx.conf"), main).unwrap();
    let log = dir.path().join("error.log");
    let mut child = Command::new(bin)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(dir.path().join("nginx.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx starts");
    wait_for(port, &mut child, &log);
    FrontProxy {
        port,
        child,
        dir,
        log,
    }
}

/// Caddy with `site` (a Caddyfile site block for `http://app.example.com`).
pub fn caddy(site: &str) -> FrontProxy {
    let bin = require("caddy", "caddy");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let d = dir.path().display();
    let site = site.replace(
        "http://app.example.com",
        &format!("http://app.example.com:{port}"),
    );
    let file =
        format!("{{\n\tadmin off\n\tauto_https off\n\tstorage file_system {d}/data\n}}\n\n{site}");
    std::fs::write(dir.path().join("Caddyfile"), file).unwrap();
    let log = dir.path().join("caddy.log");
    let mut child = Command::new(bin)
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(dir.path().join("Caddyfile"))
        .env("HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("caddy starts");
    wait_for(port, &mut child, &log);
    FrontProxy {
        port,
        child,
        dir,
        log,
    }
}

/// A client for `http://app.example.com:PORT` that reaches the proxy on loopback.
pub fn client_for(proxy: &FrontProxy) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .resolve(
            "app.example.com",
            SocketAddr::from(([127, 0, 0, 1], proxy.port)),
        )
        .build()
        .unwrap()
}
