//! Provider scale from outside: the real binary with a file of 10,000 sites, generated here
//! (two host names, one origin and one rule each), changed through the API. A suspension is in
//! force within one second of the API's answer, and a create, an update and a delete each
//! answer within one second; the site list comes in pages that the CLI follows. (This is a
//! debug build on a shared machine: `bench/sites.sh` holds a release build to the tighter
//! goal, 50 ms at 100,000 sites.)

use std::time::{Duration, Instant};

use palisade_blackbox::cli::palisade;
use palisade_blackbox::client;
use palisade_blackbox::control::api;
use palisade_blackbox::{Origin, Palisade};
use serde_json::{Value, json};

const SITES: usize = 10_000;
/// What one change may take to answer, and a suspension to be in force after it.
const WITHIN: Duration = Duration::from_secs(1);

fn file_of_sites(origin: &str) -> String {
    let mut toml = String::from("[server]\nlisten = [\"127.0.0.1:0\"]\n");
    for i in 0..SITES {
        toml.push_str(&format!(
            "[[site]]\nname = \"s{i}\"\nhosts = [\"s{i}.example\", \"www.s{i}.example\"]\n\
             origins = [\"{origin}\"]\n[[site.rule]]\nid = \"no-admin\"\n\
             expr = 'http.request.uri.path starts_with \"/wp-admin\"'\naction = \"block\"\n"
        ));
    }
    toml
}

/// Runs one API call, and fails the test when it is refused or slower than [`WITHIN`].
async fn timed(proxy: &Palisade, method: &str, path: &str, body: Option<Value>) -> Value {
    let started = Instant::now();
    let (status, answer) = api(proxy, method, path, body).await;
    let took = started.elapsed();
    assert!(status < 300, "{method} {path}: {status} {answer}");
    assert!(
        took < WITHIN,
        "{method} {path} took {took:?} at {SITES} sites"
    );
    eprintln!("{method} {path}: {took:?}");
    answer
}

#[tokio::test]
async fn at_ten_thousand_sites_changes_answer_and_a_suspension_is_in_force_within_a_second() {
    let origin = Origin::start("scale");
    let proxy = Palisade::start_large(&file_of_sites(&origin.url()), Duration::from_secs(120));
    let addr = proxy.http_addr();
    let status =
        |host: &'static str| async move { client::get(addr, host, "/echo").await.status.as_u16() };
    assert_eq!(status("s9999.example").await, 200);
    assert_eq!(status("www.s0.example").await, 200);

    let document = json!({
        "name": "fresh",
        "hosts": ["fresh.example"],
        "origins": [origin.url()],
        "rule": [{"id": "no-admin", "action": "block",
                  "expr": "http.request.uri.path starts_with \"/wp-admin\""}]
    });
    timed(&proxy, "POST", "/api/sites", Some(document.clone())).await;
    assert_eq!(status("fresh.example").await, 200, "created, then served");

    let mut moved = document.clone();
    moved["hosts"] = json!(["fresh.example", "also.fresh.example"]);
    timed(&proxy, "PUT", "/api/sites/fresh", Some(moved)).await;
    assert_eq!(
        status("also.fresh.example").await,
        200,
        "updated, then served"
    );

    // In force from the answer on: polled without pause, the first request after it is
    // refused already, and certainly within the second.
    timed(
        &proxy,
        "POST",
        "/api/sites/s5000/suspend",
        Some(json!({"reason": "scale test"})),
    )
    .await;
    let answered = Instant::now();
    loop {
        let code = status("s5000.example").await;
        if code == 403 {
            break;
        }
        assert!(
            answered.elapsed() < WITHIN,
            "s5000 still answered {code} {:?} after its suspension",
            answered.elapsed()
        );
    }
    assert_eq!(
        status("s5001.example").await,
        200,
        "its neighbours are untouched"
    );

    timed(&proxy, "DELETE", "/api/sites/fresh", None).await;
    assert_eq!(
        status("fresh.example").await,
        421,
        "deleted: no site claims the name"
    );

    // The list comes in pages; the CLI follows them (10,001 sites: two of its pages).
    timed(&proxy, "POST", "/api/sites", Some(document)).await;
    let page = timed(&proxy, "GET", "/api/sites", None).await;
    assert_eq!(page["sites"].as_array().map(Vec::len), Some(1_000));
    assert_eq!(page["next"], "s999");
    let listed = palisade(&proxy, &["site", "list", "--json"]).json();
    let names: Vec<&str> = listed["sites"]
        .as_array()
        .expect("sites")
        .iter()
        .map(|s| s["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names.len(), SITES + 1, "every site once");
    assert_eq!(names.first(), Some(&"s0"));
    assert_eq!(names.last(), Some(&"fresh"));
}
