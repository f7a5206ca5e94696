//! The REST API through the real server: authentication, every endpoint, bad input.

use serde_json::{Value, json};
use usher_testkit::{TestApp, client};

struct Api<'a> {
    app: &'a TestApp,
    auth: String,
}

impl Api<'_> {
    fn url(&self, path: &str) -> String {
        self.app.url(&format!("/usher/api/v1{path}"))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = client()
            .get(self.url(path))
            .header("authorization", &self.auth)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = client()
            .request(method, self.url(path))
            .header("authorization", &self.auth);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

async fn setup() -> (TestApp, String) {
    let app = TestApp::spawn().await;
    let token = app.admin_token("root").await;
    app.add_user("alice", "alice-password", false).await;
    app.add_user("bob", "bob-password-1", false).await;
    (app, format!("Bearer {token}"))
}

#[tokio::test]
async fn only_admins_get_in_and_cookies_need_the_csrf_header_to_change_anything() {
    let (app, bearer) = setup().await;
    let url = app.url("/usher/api/v1/sessions");
    let r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthenticated");
    for bad in [
        "Bearer nope",
        "Bearer ush_AAAA",
        "Basic YWxpY2U6eA==",
        "Bearer ush_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let r = client()
            .get(&url)
            .header("authorization", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{bad}");
    }
    let alice_token = app.token_for("alice").await;
    let r = client()
        .get(&url)
        .header("authorization", format!("Bearer {alice_token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "not an admin");
    assert_eq!(
        client()
            .get(&url)
            .header("authorization", &bearer)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // The console's way in: an admin's cookie, plus X-CSRF-Token for changes.
    let cookie = app.login("root", "root-password").await;
    let alice = app.login("alice", "alice-password").await;
    let alice_sid = app
        .store
        .sessions_of_user(&usher_core::Username::parse("alice").unwrap())
        .await
        .unwrap()[0]
        .id;
    let me: Value = client()
        .get(app.url("/usher/api/v1/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let csrf = me["csrf_token"].as_str().unwrap().to_owned();
    let kill = format!("/usher/api/v1/sessions/{alice_sid}");
    for (what, headers) in [
        ("no token", vec![]),
        ("wrong token", vec![("x-csrf-token", "forged")]),
        (
            "foreign origin",
            vec![
                ("x-csrf-token", csrf.as_str()),
                ("origin", "https://evil.example"),
            ],
        ),
    ] {
        let mut r = client().delete(app.url(&kill)).header("cookie", &cookie);
        for (k, v) in headers {
            r = r.header(k, v);
        }
        assert_eq!(r.send().await.unwrap().status(), 403, "{what}");
    }
    assert_eq!(
        usher_testkit::status(&app.url("/"), &alice).await,
        200,
        "nothing changed"
    );
    let r = client()
        .delete(app.url(&kill))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        usher_testkit::status(&app.url("/"), &alice).await,
        401,
        "ended at once"
    );
    let alice = app.login("alice", "alice-password").await;
    let r = client()
        .get(&url)
        .header("cookie", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a user's own cookie is not an admin's");
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn sessions_list_filter_sort_page_and_explain_bad_parameters() {
    let (app, bearer) = setup().await;
    let api = Api {
        app: &app,
        auth: bearer,
    };
    let a = app.login("alice", "alice-password").await;
    app.login("alice", "alice-password").await;
    app.login("bob", "bob-password-1").await;
    for _ in 0..3 {
        usher_testkit::status(&app.url("/"), &a).await;
    }
    let (s, page) = api.get("/sessions?sort=requests&order=desc").await;
    assert_eq!(s, 200);
    assert_eq!(page["total"], 3);
    assert_eq!(page["items"][0]["requests"], 3);
    assert_eq!(page["items"][0]["user"], "alice");
    assert_eq!(page["items"][0]["type"], "web");
    assert!(page["items"][0]["expires_at"].is_string());
    assert!(page["items"][0].get("token_hash").is_none());
    let (_, page) = api.get("/sessions?user=bob").await;
    assert_eq!(page["total"], 1);
    let (_, page) = api.get("/sessions?ip=127.0.0.0/8&limit=2&offset=2").await;
    assert_eq!(
        (
            page["total"].as_u64(),
            page["items"].as_array().unwrap().len()
        ),
        (Some(3), 1)
    );
    let (_, page) = api.get("/sessions?anonymous=true").await;
    assert_eq!(page["total"], 0);
    for (query, param) in [
        ("sort=banana", "sort"),
        ("limit=0", "limit"),
        ("ip=300.1.1.1", "ip"),
        ("offset=-3", "offset"),
        ("bogus=1", "bogus"),
        ("limit=all", "limit"),
    ] {
        let (s, body) = api.get(&format!("/sessions?{query}")).await;
        assert_eq!(s, 400, "{query}");
        assert_eq!(body["error"]["param"], param, "{query}");
    }
}

#[tokio::test]
async fn sessions_can_be_read_ended_and_exported() {
    let (app, bearer) = setup().await;
    let api = Api {
        app: &app,
        auth: bearer.clone(),
    };
    let a1 = app.login("alice", "alice-password").await;
    let a2 = app.login("alice", "alice-password").await;
    let b = app.login("bob", "bob-password-1").await;
    let sid = app
        .store
        .sessions_of_user(&usher_core::Username::parse("bob").unwrap())
        .await
        .unwrap()[0]
        .id;
    let (s, one) = api.get(&format!("/sessions/{sid}")).await;
    assert_eq!((s, one["user"].as_str()), (200, Some("bob")));
    assert_eq!(api.get("/sessions/NOT-AN-ID").await.0, 400);
    assert_eq!(api.get("/sessions/aaaaaaaaaaaa").await.0, 404);
    let (s, _) = api
        .send(reqwest::Method::DELETE, &format!("/sessions/{sid}"), None)
        .await;
    assert_eq!(s, 204);
    assert_eq!(usher_testkit::status(&app.url("/"), &b).await, 401);
    let (s, _) = api
        .send(reqwest::Method::DELETE, &format!("/sessions/{sid}"), None)
        .await;
    assert_eq!(s, 404, "already ended");
    let (_, ended) = api.get(&format!("/sessions/{sid}")).await;
    assert_eq!(ended["end_reason"], "killed");
    assert_eq!(ended["ended_by"], "root");

    // CSV: every matching row; a User-Agent cannot smuggle a spreadsheet formula.
    client()
        .get(app.url("/"))
        .header("cookie", &a1)
        .header("user-agent", "=HYPERLINK(\"http://evil\")")
        .send()
        .await
        .unwrap();
    let r = client()
        .get(api.url("/sessions.csv?user=alice"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = r.text().await.unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(
        csv.contains("\"'=HYPERLINK(\"\"http://evil\"\")\""),
        "{csv}"
    );

    // End by filter: refused when empty, exact when not.
    let (s, body) = api
        .send(reqwest::Method::POST, "/sessions/end", Some(json!({})))
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (400, Some("empty_filter"))
    );
    let (s, _) = api
        .send(
            reqwest::Method::POST,
            "/sessions/end",
            Some(json!({"sort": "id"})),
        )
        .await;
    assert_eq!(s, 400);
    let r = client()
        .post(api.url("/sessions/end"))
        .header("authorization", &bearer)
        .header("content-type", "text/plain")
        .body("user=alice")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = client()
        .post(api.url("/sessions/end"))
        .header("authorization", &bearer)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (s, body) = api
        .send(
            reqwest::Method::POST,
            "/sessions/end",
            Some(json!({"user": "alice", "anonymous": false})),
        )
        .await;
    assert_eq!((s, body["ended"].as_u64()), (200, Some(2)));
    assert_eq!(usher_testkit::status(&app.url("/"), &a2).await, 401);

    let a3 = app.login("alice", "alice-password").await;
    let (s, body) = api
        .send(reqwest::Method::DELETE, "/users/alice/sessions", None)
        .await;
    assert_eq!((s, body["ended"].as_u64()), (200, Some(1)));
    assert_eq!(usher_testkit::status(&app.url("/"), &a3).await, 401);
    assert_eq!(
        api.send(reqwest::Method::DELETE, "/users/nobody/sessions", None)
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn users_are_managed_through_the_api() {
    let (app, bearer) = setup().await;
    let api = Api {
        app: &app,
        auth: bearer,
    };
    let (s, u) = api.send(reqwest::Method::POST, "/users", Some(json!({"name": "carol", "password": "carol-password", "display_name": "Carol C", "groups": ["staff"]}))).await;
    assert_eq!(s, 201, "{u}");
    assert_eq!(u["groups"], json!(["staff"]));
    assert_eq!(
        api.send(
            reqwest::Method::POST,
            "/users",
            Some(json!({"name": "carol"}))
        )
        .await
        .0,
        409
    );
    assert_eq!(
        api.send(
            reqwest::Method::POST,
            "/users",
            Some(json!({"name": "bad name"}))
        )
        .await
        .0,
        400
    );
    assert_eq!(
        api.send(
            reqwest::Method::POST,
            "/users",
            Some(json!({"name": "dave", "password": "short"}))
        )
        .await
        .0,
        422
    );
    assert_eq!(
        api.send(
            reqwest::Method::POST,
            "/users",
            Some(json!({"name": "erin", "root": true}))
        )
        .await
        .0,
        400,
        "unknown field"
    );
    let carol = app.login("carol", "carol-password").await;
    let (s, u) = api
        .send(
            reqwest::Method::PATCH,
            "/users/carol",
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!((s, u["disabled"].as_bool()), (200, Some(true)));
    assert_eq!(
        usher_testkit::status(&app.url("/"), &carol).await,
        401,
        "disabling ends sessions"
    );
    let (s, _) = api
        .send(
            reqwest::Method::PATCH,
            "/users/carol",
            Some(
                json!({"disabled": false, "password": "new-carol-password", "groups": ["admins"]}),
            ),
        )
        .await;
    assert_eq!(s, 200);
    let (_, u) = api.get("/users/carol").await;
    assert_eq!(u["groups"], json!(["admins"]));
    app.login("carol", "new-carol-password").await;
    let (_, list) = api.get("/users").await;
    assert_eq!(list.as_array().unwrap().len(), 4);
    assert_eq!(
        api.send(reqwest::Method::DELETE, "/users/carol", None)
            .await
            .0,
        204
    );
    assert_eq!(api.get("/users/carol").await.0, 404);
    assert_eq!(
        api.send(reqwest::Method::DELETE, "/users/root", None)
            .await
            .0,
        409,
        "not yourself"
    );
}

#[tokio::test]
async fn history_and_the_inactive_report() {
    let (app, bearer) = setup().await;
    let api = Api {
        app: &app,
        auth: bearer,
    };
    app.login("alice", "alice-password").await;
    let _ = app.try_login("alice", "wrong", "/").await;
    let (s, h) = api.get("/history?user=alice&limit=10").await;
    assert_eq!(s, 200);
    let kinds: Vec<&str> = h["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["login_failed", "login", "user_created"]);
    let (_, h) = api.get("/history?event=login&limit=1").await;
    assert_eq!(h["items"].as_array().unwrap().len(), 1);
    let cursor = h["next_cursor"].as_i64().unwrap();
    let (_, older) = api
        .get(&format!("/history?event=login&cursor={cursor}"))
        .await;
    assert!(
        older["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["id"].as_i64().unwrap() < cursor)
    );
    for q in [
        "event=party",
        "from=yesterday",
        "limit=5000",
        "cursor=-1",
        "ip=nope",
        "what=1",
    ] {
        assert_eq!(api.get(&format!("/history?{q}")).await.0, 400, "{q}");
    }
    let (s, r) = api.get("/reports/inactive?since=2100-01-01").await;
    assert_eq!(s, 200);
    let names: Vec<&str> = r["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob", "root"]);
    let alice = &r["items"][0];
    assert_eq!(alice["last_login_ip"], "127.0.0.1");
    assert!(alice["last_login_at"].is_string() && alice["last_activity_at"].is_string());
    assert!(
        r["items"][1]["last_login_ip"].is_null(),
        "bob never signed in"
    );
    let (_, r) = api.get("/reports/inactive?since=2000-01-01").await;
    let names: Vec<&str> = r["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bob", "root"], "never logged in");
    assert_eq!(api.get("/reports/inactive?since=soon").await.0, 400);
}

#[tokio::test]
async fn tokens_are_shown_once_recorded_and_revocable() {
    let (app, bearer) = setup().await;
    let api = Api {
        app: &app,
        auth: bearer,
    };
    let (s, t) = api
        .send(
            reqwest::Method::POST,
            "/tokens",
            Some(json!({"name": "deploy bot"})),
        )
        .await;
    assert_eq!(s, 201);
    let secret = t["token"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("ush_"));
    let id = t["id"].as_str().unwrap().to_owned();
    let bot = Api {
        app: &app,
        auth: format!("Bearer {secret}"),
    };
    assert_eq!(bot.get("/sessions").await.0, 200);
    let (_, list) = api.get("/tokens").await;
    let listed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap()
        .clone();
    assert!(listed.get("token").is_none(), "the secret is never listed");
    assert_eq!(
        api.send(reqwest::Method::DELETE, &format!("/tokens/{id}"), None)
            .await
            .0,
        204
    );
    assert_eq!(bot.get("/sessions").await.0, 401);
    assert_eq!(
        api.send(reqwest::Method::DELETE, &format!("/tokens/{id}"), None)
            .await
            .0,
        404
    );
    assert_eq!(
        api.send(reqwest::Method::POST, "/tokens", Some(json!({"name": ""})))
            .await
            .0,
        400
    );
    let (s, body) = api.get("/nope").await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}

#[tokio::test]
async fn cookieless_clients_are_counted_apart_from_sessions() {
    let (app, bearer) = setup().await;
    let api = Api {
        app: &app,
        auth: bearer,
    };
    for _ in 0..3 {
        client()
            .get(app.url("/status"))
            .header("user-agent", "Pingdom.com_bot_version_1.4")
            .send()
            .await
            .unwrap();
    }
    // A browser with a (stale) cookie, and an API caller, are not pings.
    client()
        .get(app.url("/"))
        .header("cookie", "usher_session=x")
        .send()
        .await
        .unwrap();
    let (s, list) = api.get("/clients").await;
    assert_eq!(s, 200);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["requests"], 3);
    assert_eq!(list[0]["ip"], "127.0.0.1");
    assert_eq!(list[0]["user_agent"], "Pingdom.com_bot_version_1.4");
    assert!(
        app.store.sessions_live().await.unwrap().is_empty(),
        "pings never make sessions"
    );
    let metrics = usher_testkit::metrics(&app.url("")).await;
    assert!(metrics.contains("usher_cookieless_clients 1"), "{metrics}");
}

#[tokio::test]
async fn the_openapi_document_is_served_and_bodies_must_be_objects() {
    let (app, bearer) = setup().await;
    let r = client()
        .get(app.url("/usher/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the document itself needs no credential");
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["servers"][0]["url"], "/usher/api/v1");
    for path in [
        "/sessions",
        "/sessions/{id}",
        "/sessions/end",
        "/users/{name}",
        "/history",
        "/tokens",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is documented");
    }
    let api = Api {
        app: &app,
        auth: bearer,
    };
    let r = client()
        .patch(api.url("/users/alice"))
        .header("authorization", &api.auth)
        .header("content-type", "application/json")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (s, _) = api
        .send(
            reqwest::Method::PATCH,
            "/users/alice",
            Some(json!({"password": null})),
        )
        .await;
    assert_eq!(s, 400, "null is not a value");
    let (s, _) = api
        .send(
            reqwest::Method::PATCH,
            "/users/root",
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(s, 409, "no locking yourself out");
}
