//! The web pages in a real browser: Debian's Chromium, headless, driven over WebDriver by
//! chromedriver. No test tool downloads a browser of its own.

use fantoccini::{ClientBuilder, Locator};
use std::process::{Command, Stdio};
use std::time::Duration;
use tern_e2e::*;

struct Driver {
    child: std::process::Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Driver {
    let port = free_port();
    let mut cmd = Command::new("chromedriver");
    cmd.arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    tern_local::die_with_parent(&mut cmd, libc::SIGTERM);
    let child = cmd.spawn().expect(
        "chromedriver not found: install Debian's chromium and chromium-driver (.ci/run does)",
    );
    tern_local::wait_for_port(&format!("127.0.0.1:{port}"), Duration::from_secs(20))
        .expect("chromedriver listens");
    Driver { child, port }
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> fantoccini::Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                format!("--user-data-dir={}", profile.display()), "--window-size=1100,1200"
            ]
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("start headless Chromium")
}

#[tokio::test(flavor = "multi_thread")]
async fn create_an_order_in_the_browser_and_look_it_up() {
    let mut sys = System::new().await;
    let web = sys.start("web");
    let driver = chromedriver();
    let c = browser(&driver, &scratch("chromium-profile")).await;

    c.goto(&format!("{web}/")).await.unwrap();
    assert_eq!(c.title().await.unwrap(), "Orders · Tern orders");
    let email = c.find(Locator::Id("email")).await.unwrap();
    email.send_keys("grace@example.com").await.unwrap();
    c.find(Locator::Css("#create button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The form post redirects to the new order's page.
    let landed = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("code#order-id"))
        .await;
    let Ok(landed) = landed else {
        panic!(
            "no order page after the form post; the browser shows {}: {}",
            c.current_url().await.unwrap(),
            c.source().await.unwrap()
        );
    };
    let order_id = landed.text().await.unwrap();
    assert!(order_id.starts_with("ord_"), "{order_id}");
    assert_eq!(
        c.current_url().await.unwrap().path(),
        format!("/orders/{order_id}")
    );
    assert_eq!(
        c.find(Locator::Id("status"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "pending"
    );
    assert_eq!(
        c.find(Locator::Id("total"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "12.50 EUR"
    );
    let shot = c.screenshot().await.unwrap();
    std::fs::write(scratch("screenshots").join("order.png"), shot).unwrap();

    // Look it up by id from the home page.
    c.goto(&format!("{web}/")).await.unwrap();
    c.find(Locator::Id("lookup-id"))
        .await
        .unwrap()
        .send_keys(&order_id)
        .await
        .unwrap();
    c.find(Locator::Css("#lookup button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let found = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("code#order-id"))
        .await
        .unwrap();
    assert_eq!(found.text().await.unwrap(), order_id);

    // A bad email comes back as an error on the form, nothing created.
    c.goto(&format!("{web}/")).await.unwrap();
    c.find(Locator::Id("email"))
        .await
        .unwrap()
        .send_keys("not-an-email@x")
        .await
        .unwrap();
    c.execute("document.getElementById('email').type = 'text'", vec![])
        .await
        .unwrap();
    c.find(Locator::Css("#create button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let errors = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("errors"))
        .await
        .unwrap();
    assert!(errors.text().await.unwrap().contains("email"));
    c.close().await.unwrap();

    let n = sys.count("orders").await;
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_form_post_without_the_csrf_token_is_refused() {
    let mut sys = System::new().await;
    let web = sys.start("web");
    let form = [
        ("customer_email", "eve@example.com"),
        ("currency", "EUR"),
        ("sku_0", "X"),
        ("quantity_0", "1"),
        ("price_0", "1.00"),
    ];
    // No cookie, no token.
    let r = sys
        .http
        .post(format!("{web}/orders"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A cookie from the site but a forged token.
    let home = sys.http.get(format!("{web}/")).send().await.unwrap();
    let cookie = home.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let mut forged = form.to_vec();
    forged.push(("csrf", "00ff"));
    let r = sys
        .http
        .post(format!("{web}/orders"))
        .header("cookie", &cookie)
        .form(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The right token from a foreign origin.
    let html = sys
        .http
        .get(format!("{web}/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let mut good = form.to_vec();
    good.push(("csrf", &token));
    let post = |client: &reqwest::Client, url: String, headers: &[(&str, &str)]| {
        let mut req = client.post(url).header("cookie", &cookie).form(&good);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send()
    };
    let origin = sys.router.clone();
    // The right cookie and token, from the wrong place, or from nowhere said.
    for (what, headers) in [
        ("foreign Origin", vec![("origin", "http://evil.example")]),
        ("Origin null", vec![("origin", "null")]),
        ("neither Origin nor Referer", vec![]),
        (
            "foreign Referer",
            vec![("referer", "http://evil.example/orders")],
        ),
    ] {
        let r = post(&sys.http, format!("{web}/orders"), &headers)
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{what}");
    }
    // With everything right: 303 to the order page, through the router (which rewrites the host
    // to web.tern.svc.cluster.local and speaks h2c to queue-proxy)...
    let r = post(&sys.http, format!("{web}/orders"), &[("origin", &origin)])
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/orders/ord_")
    );
    // ...with only a Referer from the site...
    let referer = format!("{origin}/");
    let r = post(&sys.http, format!("{web}/orders"), &[("referer", &referer)])
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    // ...and straight to the pod over h2c with the cluster-local host, as Kourier sends it.
    let pod: std::net::SocketAddr = sys.pod_url("web")["http://".len()..].parse().unwrap();
    let h2c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .resolve("web.tern.svc.cluster.local", pod)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cluster_local = format!("http://web.tern.svc.cluster.local:{}/orders", pod.port());
    let r = post(&h2c, cluster_local.clone(), &[("origin", &origin)])
        .await
        .unwrap();
    assert_eq!(
        (r.version(), r.status().as_u16()),
        (reqwest::Version::HTTP_2, 303)
    );
    let r = post(&h2c, cluster_local, &[("origin", "http://evil.example")])
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let n = sys.count("orders").await;
    assert_eq!(n, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_carry_security_headers_and_escape_input() {
    let mut sys = System::new().await;
    let web = sys.start("web");
    let r = sys.http.get(format!("{web}/")).send().await.unwrap();
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'")
            && csp.contains("frame-ancestors 'none'")
            && !csp.contains("unsafe-inline")
    );
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.headers()["referrer-policy"], "same-origin");
    let html = r.text().await.unwrap();
    assert!(!html.contains("<script"), "no script at all");
    let r = sys
        .http
        .get(format!("{web}/orders/%3Cscript%3Ealert(1)%3C%2Fscript%3E"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(!r.text().await.unwrap().contains("<script>"));
    let r = sys
        .http
        .get(format!("{web}/orders/ord_aaaaaaaaaaaaaaaaaaaaaaaaaa"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
}

/// ISO 4217 minor units (issue 13): a yen price has no decimals, and the pages show yen as yen.
#[tokio::test(flavor = "multi_thread")]
async fn the_form_and_pages_use_each_currencys_own_decimals() {
    let mut sys = System::new().await;
    let web = sys.start("web");
    let home = sys.http.get(format!("{web}/")).send().await.unwrap();
    let cookie = home.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let html = home.text().await.unwrap();
    let token = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let origin = sys.router.clone();
    let post = |currency: &'static str, price: &'static str| {
        let form = vec![
            ("csrf", token.clone()),
            ("customer_email", "yuki@example.com".to_owned()),
            ("currency", currency.to_owned()),
            ("sku_0", "TEA-GYOKURO".to_owned()),
            ("quantity_0", "2".to_owned()),
            ("price_0", price.to_owned()),
        ];
        sys.http
            .post(format!("{web}/orders"))
            .header("cookie", &cookie)
            .header("origin", &origin)
            .form(&form)
            .send()
    };

    // Yen have no minor unit: 12.50 JPY is refused, saying what a yen price looks like.
    let r = post("JPY", "12.50").await.unwrap();
    assert_eq!(r.status(), 422);
    let page = r.text().await.unwrap();
    assert!(page.contains("must look like 1250 in JPY"), "{page}");

    // 1250 JPY × 2 is 2500 yen: stored as 2500 minor units, shown as 2500 JPY.
    let r = post("JPY", "1250").await.unwrap();
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let id = location.trim_start_matches("/orders/").to_owned();
    let page = sys
        .http
        .get(format!("{web}{location}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("1250 JPY") && page.contains("2500 JPY"),
        "{page}"
    );
    let total: i64 = sys
        .sql()
        .await
        .query_one("SELECT total_cents FROM orders WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, 2500);

    // Euros keep their cents: 12.5 EUR × 2 is 2500 cents, shown as 25.00 EUR.
    let r = post("EUR", "12.5").await.unwrap();
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let page = sys
        .http
        .get(format!("{web}{location}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("12.50 EUR") && page.contains("25.00 EUR"),
        "{page}"
    );
}

/// Issue 17, point 6: no element of the home page and an order's page sticks out of the card
/// (`section`) it sits in, at a desktop width (1280 px) and a phone's (390 px): every element's
/// box, as the browser lays it out, lies within its section's.
#[tokio::test(flavor = "multi_thread")]
async fn nothing_overflows_its_card_at_1280_and_390_pixels() {
    let mut sys = System::new().await;
    let web = sys.start("web");
    sys.start("orders-create");
    let res = sys.create_order(&web, &order_body()).await;
    assert_eq!(res.status(), 201);
    let id = res.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let driver = chromedriver();
    let c = browser(&driver, &scratch("chromium-profile-widths")).await;
    // Every element inside a section whose box crosses the section's edges (half a pixel of
    // rounding allowed), as "tag#id.class: left..right outside left..right".
    let script = r#"
        const out = [];
        for (const card of document.querySelectorAll('main section')) {
            const box = card.getBoundingClientRect();
            for (const el of card.querySelectorAll('*')) {
                const r = el.getBoundingClientRect();
                if (r.width === 0 && r.height === 0) continue;
                if (r.left < box.left - 0.5 || r.right > box.right + 0.5) {
                    out.push(`${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}${el.className ? '.' + el.className : ''}: ${r.left.toFixed(1)}..${r.right.toFixed(1)} outside ${box.left.toFixed(1)}..${box.right.toFixed(1)}`);
                }
            }
        }
        return [document.documentElement.clientWidth, out];
    "#;
    for (width, height) in [(1280u32, 900u32), (390, 844)] {
        c.set_window_size(width, height).await.unwrap();
        for page in ["/".to_owned(), format!("/orders/{id}")] {
            c.goto(&format!("{web}{page}")).await.unwrap();
            let seen = c.execute(script, vec![]).await.unwrap();
            let viewport = seen[0].as_f64().unwrap();
            // The window is that wide (less a scroll bar at most).
            assert!(
                viewport > f64::from(width) - 40.0 && viewport <= f64::from(width),
                "{width} px: the page is {viewport} px wide"
            );
            let overflowing = seen[1].as_array().unwrap();
            assert!(
                overflowing.is_empty(),
                "{width} px, {page}: elements outside their card:\n{}",
                overflowing
                    .iter()
                    .map(|v| v.as_str().unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}
