//! Defects 3 and 4 (A10), issue 20 item 6: the sign-in limit counts attempts before the slow
//! password check, per account (whatever name or capitalisation of the e-mail address names it) and
//! client address pair, and per client address; an account guessed at from many addresses is slowed
//! down, never locked.

use std::time::{Duration, Instant};

use chatroom::metrics::Refusal;
use serde_json::{Value, json};

use crate::common::{TestApp, read};

const THROTTLED: &str = "操作过于频繁，请稍后再试";
const WRONG: &str = "用户名或密码错误";

/// A sign-in at `path` (v3 or Laravel-era), optionally relayed with `X-Forwarded-For: forwarded`;
/// returns whether it signed in and the refusal text otherwise.
async fn sign_in(
    app: &TestApp,
    path: &str,
    login: &str,
    password: &str,
    forwarded: Option<&str>,
) -> Result<Value, String> {
    let mut request = app
        .post(path)
        .json(&json!({"name": login, "password": password}));
    if let Some(ip) = forwarded {
        request = request.header("x-forwarded-for", ip);
    }
    let (status, reply) = read(request.send().await.unwrap()).await;
    assert_eq!(status, 200, "{reply}");
    if reply["errno"] == 0 {
        return Ok(reply);
    }
    let text = reply["data"].as_str().or(reply["message"].as_str());
    Err(text.unwrap_or_default().to_owned())
}

#[tokio::test]
async fn parallel_guesses_cannot_get_past_the_limit() {
    // A realistic hash cost, so that checks take long enough for guesses to overlap.
    let app = TestApp::spawn_with(|s| s.auth.bcrypt_cost = 8).await;
    app.signup("target").await;
    let url = app.url("/api/user/signin");
    let guess = |password: &'static str| {
        let http = app.http.clone();
        let url = url.clone();
        tokio::spawn(async move {
            let reply = http
                .post(url)
                .json(&json!({"name": "target", "password": password}))
                .send()
                .await
                .unwrap();
            read(reply).await.1
        })
    };
    // Guesses 1–54 are in flight at once...
    let mut replies: Vec<_> = (0..54).map(|_| guess("wrong-guess")).collect();
    // ...and once the limit has refused one of them, the right password arrives as guess 55.
    let deadline = Instant::now() + Duration::from_secs(60);
    while app.state.metrics.refusals(Refusal::SigninAccount) == 0 {
        assert!(Instant::now() < deadline, "the limit never refused a guess");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    replies.push(guess("secret123"));
    replies.extend((0..5).map(|_| guess("wrong-guess")));
    let mut checked = 0;
    let mut throttled = 0;
    for (i, reply) in futures_util::future::join_all(replies)
        .await
        .into_iter()
        .enumerate()
    {
        let reply = reply.unwrap();
        assert_eq!(reply["errno"], 1, "guess {} signed in: {reply}", i + 1);
        assert!(reply.get("token").is_none());
        match reply["data"].as_str() {
            Some(WRONG) => checked += 1,
            Some(THROTTLED) => throttled += 1,
            other => panic!("unexpected reply {other:?}"),
        }
    }
    assert_eq!(
        (checked, throttled),
        (10, 50),
        "exactly the budget was checked"
    );
    // The throttled right password did not clear anything: the account is still throttled.
    assert_eq!(
        sign_in(&app, "/api/user/signin", "target", "secret123", None)
            .await
            .err()
            .as_deref(),
        Some(THROTTLED)
    );
}

#[tokio::test]
async fn names_addresses_and_capitalisations_share_one_budget() {
    let app = TestApp::spawn_with(|s| s.auth.signin_failures = 4).await;
    app.register_legacy("Bob@Example.com").await;
    let other = app.register_legacy("carol@example.com").await;
    // Four wrong guesses under four spellings of one account, over both clients' endpoints.
    let spellings = [
        ("/api/login", "bob@example.com"),
        ("/api/user/signin", "BOB@EXAMPLE.COM"),
        ("/api/login", "Bob@Example.Com"),
        ("/api/user/signin", "bob"),
    ];
    for (path, login) in spellings {
        assert_eq!(
            sign_in(&app, path, login, "wrong-pass", None)
                .await
                .err()
                .as_deref(),
            Some(WRONG),
            "{login}"
        );
    }
    for (path, login) in spellings {
        assert_eq!(
            sign_in(&app, path, login, "secret123", None)
                .await
                .err()
                .as_deref(),
            Some(THROTTLED),
            "{path} {login}"
        );
    }
    // Other accounts are not affected, and a success clears that account's count.
    let reply = sign_in(&app, "/api/login", "CAROL@example.com", "secret123", None)
        .await
        .expect("another account signs in");
    assert_eq!(reply["user"]["id"].to_string(), other.id);
    // Unknown logins are counted alike, also case-insensitively.
    for login in ["ghost@x.io", "GHOST@x.io", "Ghost@X.io", "ghost@X.IO"] {
        assert_eq!(
            sign_in(&app, "/api/login", login, "whatever1", None)
                .await
                .err()
                .as_deref(),
            Some(WRONG)
        );
    }
    assert_eq!(
        sign_in(&app, "/api/login", "gHoSt@x.io", "whatever1", None)
            .await
            .err()
            .as_deref(),
        Some(THROTTLED)
    );
}

#[tokio::test]
async fn one_address_is_limited_across_accounts_and_proxied_clients_count_apart() {
    let app = TestApp::spawn_with(|s| {
        s.auth.signin_per_ip = 5;
        s.http.trusted_proxies =
            chatroom::config::TrustedProxies::parse(&["127.0.0.1".to_owned()]).unwrap();
    })
    .await;
    app.signup("victim").await;
    // Five guesses at five accounts from one client behind the proxy...
    for name in ["a1", "a2", "a3", "a4", "a5"] {
        assert_eq!(
            sign_in(
                &app,
                "/api/user/signin",
                name,
                "wrong-pass",
                Some("203.0.113.7")
            )
            .await
            .err()
            .as_deref(),
            Some(WRONG)
        );
    }
    // ...and that client is done for now, on every account and both endpoints.
    for path in ["/api/user/signin", "/api/login"] {
        assert_eq!(
            sign_in(&app, path, "victim", "secret123", Some("203.0.113.7"))
                .await
                .err()
                .as_deref(),
            Some(THROTTLED)
        );
    }
    assert_eq!(app.state.metrics.refusals(Refusal::SigninIp), 2);
    // Another client of the same proxy is unaffected.
    sign_in(
        &app,
        "/api/user/signin",
        "victim",
        "secret123",
        Some("198.51.100.4"),
    )
    .await
    .expect("another client signs in");
    // Signing in successfully does not refill an address's budget for more guesses elsewhere.
    for _ in 0..4 {
        sign_in(
            &app,
            "/api/user/signin",
            "victim",
            "secret123",
            Some("198.51.100.9"),
        )
        .await
        .expect("successes do not use up the budget");
    }
    for name in ["b1", "b2", "b3", "b4", "b5"] {
        assert_eq!(
            sign_in(
                &app,
                "/api/user/signin",
                name,
                "wrong-pass",
                Some("198.51.100.9")
            )
            .await
            .err()
            .as_deref(),
            Some(WRONG)
        );
    }
    assert_eq!(
        sign_in(
            &app,
            "/api/user/signin",
            "b6",
            "wrong-pass",
            Some("198.51.100.9")
        )
        .await
        .err()
        .as_deref(),
        Some(THROTTLED)
    );
}

/// An HTTP client whose connections come from the loopback address `from`.
fn client_from(from: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(from))
        .build()
        .unwrap()
}

/// A v3 sign-in through `client`; the reply, or the refusal text.
async fn sign_in_with(
    app: &TestApp,
    client: &reqwest::Client,
    login: &str,
    password: &str,
) -> Result<Value, String> {
    let request = client
        .post(app.url("/api/user/signin"))
        .json(&json!({"name": login, "password": password}));
    let (status, reply) = read(request.send().await.unwrap()).await;
    assert_eq!(status, 200, "{reply}");
    if reply["errno"] == 0 {
        return Ok(reply);
    }
    Err(reply["data"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn guesses_from_one_address_do_not_lock_the_owner_out() {
    // Issue 20 item 6: 14 wrong passwords from one address used to lock the account for everyone.
    let app = TestApp::spawn().await;
    app.signup("alice").await;
    let attacker = client_from([127, 0, 0, 2]);
    for i in 0..14 {
        let expected = if i < 10 { WRONG } else { THROTTLED };
        assert_eq!(
            sign_in_with(&app, &attacker, "alice", "wrong-pass")
                .await
                .err()
                .as_deref(),
            Some(expected),
            "guess {}",
            i + 1
        );
    }
    // Her owner, from another address, signs in with the right password.
    let owner = client_from([127, 0, 0, 3]);
    let reply = sign_in_with(&app, &owner, "alice", "secret123")
        .await
        .expect("the owner signs in from another address");
    assert!(reply["token"].as_str().is_some_and(|t| !t.is_empty()));
    // The guessing address is still refused, even with the right password, and her success did
    // not refill its budget.
    for password in ["secret123", "wrong-pass"] {
        assert_eq!(
            sign_in_with(&app, &attacker, "alice", password)
                .await
                .err()
                .as_deref(),
            Some(THROTTLED)
        );
    }
    // That address may still sign in to other accounts (its own, say).
    app.signup("mallory").await;
    sign_in_with(&app, &attacker, "mallory", "secret123")
        .await
        .expect("the address is throttled at alice only");
}

#[tokio::test]
async fn an_address_spread_guessing_run_is_slowed_not_refused() {
    let app = TestApp::spawn_with(|s| {
        s.auth.signin_failures = 2;
        s.auth.signin_account_ceiling = 8;
    })
    .await;
    app.signup("alice").await;
    let delayed = app.state.metrics.http.signin_delayed.clone();
    // Seven addresses, two wrong guesses each: every pair stays within its budget, so every guess
    // is checked and answered as wrong; past the account's ceiling (8) they are slowed down.
    for a in 0..7u8 {
        let guesser = client_from([127, 0, 4, a + 1]);
        for _ in 0..2 {
            assert_eq!(
                sign_in_with(&app, &guesser, "alice", "wrong-pass")
                    .await
                    .err()
                    .as_deref(),
                Some(WRONG)
            );
        }
    }
    assert_eq!(delayed.get(), 14 - 8, "the guesses past the ceiling waited");
    assert_eq!(app.state.metrics.refusals(Refusal::SigninAccount), 0);
    // The owner, from a fresh address, waits too but gets in.
    let reply = sign_in_with(&app, &client_from([127, 0, 4, 100]), "alice", "secret123")
        .await
        .expect("the owner signs in during the run");
    assert!(reply["token"].as_str().is_some());
    assert_eq!(delayed.get(), 14 - 8 + 1);
    // Her success does not end the slow-down for the guessers.
    assert_eq!(
        sign_in_with(&app, &client_from([127, 0, 4, 101]), "alice", "wrong-pass")
            .await
            .err()
            .as_deref(),
        Some(WRONG)
    );
    assert_eq!(delayed.get(), 14 - 8 + 2);
}

#[tokio::test]
async fn ipv6_clients_are_counted_per_network() {
    let app = TestApp::spawn_with(|s| {
        s.auth.signin_failures = 3;
        s.auth.signup_per_hour = 2;
        s.http.trusted_proxies =
            chatroom::config::TrustedProxies::parse(&["127.0.0.1".to_owned()]).unwrap();
    })
    .await;
    app.signup("alice").await;
    // Three guesses from three addresses of one /64 use up that network's budget at alice...
    for host in ["2001:db8::1", "2001:db8::2", "2001:db8::ffff:3"] {
        assert_eq!(
            sign_in(&app, "/api/user/signin", "alice", "wrong-pass", Some(host))
                .await
                .err()
                .as_deref(),
            Some(WRONG),
            "{host}"
        );
    }
    for host in ["2001:db8::4", "[2001:db8::abcd:5]:4711"] {
        assert_eq!(
            sign_in(&app, "/api/login", "alice", "secret123", Some(host))
                .await
                .err()
                .as_deref(),
            Some(THROTTLED),
            "{host}"
        );
    }
    // ...while the next /64 is another client.
    sign_in(
        &app,
        "/api/user/signin",
        "alice",
        "secret123",
        Some("2001:db8:0:1::1"),
    )
    .await
    .expect("another network signs in");
    // Sign-ups per address count the /64 too.
    let signup = |name: &'static str, host: &'static str| {
        let request = app
            .post("/api/user/signup")
            .header("x-forwarded-for", host)
            .json(&json!({"name": name, "password": "secret123"}));
        async move { read(request.send().await.unwrap()).await }
    };
    assert_eq!(signup("v6a", "2001:db8:9::1").await.1["errno"], 0);
    assert_eq!(signup("v6b", "2001:db8:9::2").await.1["errno"], 0);
    let (status, reply) = signup("v6c", "2001:db8:9::3").await;
    assert_eq!(reply["data"], THROTTLED, "{status} {reply}");
    assert_eq!(signup("v6d", "2001:db8:9:1::1").await.1["errno"], 0);
}
