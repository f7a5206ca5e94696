//! The console in a real browser: Debian's Chromium driven over WebDriver. Checks what
//! only a browser can: that hostile User-Agents stay text, and that the script's live
//! refresh, keyboard shortcuts and select-all work.

use fantoccini::{Client, ClientBuilder, Locator};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use usher_testkit::{TestApp, client};

struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Driver {
    assert!(
        std::path::Path::new("/usr/bin/chromedriver").exists(),
        "chromedriver is not installed: apt-get install chromium chromium-driver (.ci/run does this)"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("/usr/bin/chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        std::thread::park_timeout(Duration::from_millis(50));
    }
    Driver {
        child,
        port,
        _profile: tempfile::tempdir().unwrap(),
    }
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-quic",
                format!("--user-data-dir={}", driver._profile.path().display()),
            ]
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a browser session")
}

async fn js(b: &Client, script: &str) -> serde_json::Value {
    b.execute(script, vec![]).await.unwrap()
}

#[tokio::test]
async fn the_console_works_in_a_real_browser() {
    let app = TestApp::spawn().await;
    app.add_user("root", "root-password", true).await;
    app.add_user("bob", "bob-password-1", false).await;
    let hostile = "<img src=x onerror=alert(1)><script>alert(2)</script>";
    let bob = app.login("bob", "bob-password-1").await;
    client()
        .get(app.url("/"))
        .header("cookie", &bob)
        .header("user-agent", hostile)
        .send()
        .await
        .unwrap();
    app.flush().await;

    let driver = chromedriver();
    let b = browser(&driver).await;
    // Signing in the way people do: the app sends us to the form, the form sends us back.
    b.goto(&app.url("/somewhere")).await.unwrap();
    assert!(
        b.current_url()
            .await
            .unwrap()
            .as_str()
            .contains("/usher/login")
    );
    b.find(Locator::Css("input[name=username]"))
        .await
        .unwrap()
        .send_keys("root")
        .await
        .unwrap();
    b.find(Locator::Css("input[name=password]"))
        .await
        .unwrap()
        .send_keys("root-password")
        .await
        .unwrap();
    b.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b
        .current_url()
        .await
        .unwrap()
        .as_str()
        .ends_with("/somewhere")
    {
        assert!(
            Instant::now() < deadline,
            "not sent back: {}",
            b.source().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(b.source().await.unwrap().contains("Hello, root"));

    b.goto(&app.url("/usher/admin/sessions")).await.unwrap();
    // The hostile User-Agent is text: no element was made from it, nothing ran.
    assert_eq!(
        js(
            &b,
            "return document.querySelectorAll('table img, table script').length"
        )
        .await,
        0
    );
    assert!(b.get_alert_text().await.is_err(), "no dialog opened");
    let titles = js(
        &b,
        "return Array.from(document.querySelectorAll('td[title]')).map(t => t.title).join('|')",
    )
    .await;
    assert!(
        titles.as_str().unwrap().contains(hostile),
        "shown as text: {titles}"
    );

    // Keyboard: "/" focuses the filter; select-all ticks every row.
    b.find(Locator::Css("body"))
        .await
        .unwrap()
        .send_keys("/")
        .await
        .unwrap();
    assert_eq!(js(&b, "return document.activeElement.name").await, "user");
    js(&b, "document.activeElement.blur()").await;
    b.find(Locator::Id("select-all"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(
        js(&b, "return Array.from(document.querySelectorAll('tbody input[type=checkbox]')).every(c => c.checked)").await,
        true
    );

    // Live: a new session appears without a reload, and the ticks survive the refresh.
    let count = || async { js(&b, "return document.querySelector('.count').textContent").await };
    assert!(count().await.as_str().unwrap().contains("of 2"));
    app.login("bob", "bob-password-1").await;
    let deadline = Instant::now() + Duration::from_secs(12);
    while !count().await.as_str().unwrap().contains("of 3") {
        assert!(
            Instant::now() < deadline,
            "the table never refreshed: {}",
            count().await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        js(&b, "return document.querySelectorAll('tbody tr').length").await,
        3
    );
    assert_eq!(
        js(
            &b,
            "return document.querySelectorAll('tbody input:checked').length"
        )
        .await,
        2,
        "selection kept"
    );
    b.close().await.unwrap();
}
