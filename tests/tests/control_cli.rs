//! The CLI against a running instance, as an operator types it: `palisade site`, `token`,
//! `suspend`/`reinstate`, `reports`, `audit list` and `audit verify` (offline, on the store
//! file, before and after tampering), `apply` (dry run, then for real), and `analytics`.
//!
//! Every command gets the admin API from `PALISADE_ADMIN_URL` and the suite's admin token
//! from `PALISADE_TOKEN`, as a script would; tests that are about tokens pass others.

use std::path::Path;
use std::time::Duration;

use palisade_blackbox::cli::{palisade, palisade_as};
use palisade_blackbox::{Origin, Palisade, SiteConfig, TestCa, client};
use serde_json::Value;

/// Writes `text` to `name` in the instance's directory; returns the path as an argument.
fn write(proxy: &Palisade, name: &str, text: &str) -> String {
    let path = proxy.dir().join(name);
    std::fs::write(&path, text).expect("write a file for the CLI");
    path.display().to_string()
}

fn site_toml(name: &str, origin: &Origin, extra: &str) -> String {
    format!(
        "[[site]]\nname = \"{name}\"\nhosts = [\"{name}.example\"]\norigins = [\"{}\"]\n{extra}",
        origin.url()
    )
}

/// The site names `site list --json` shows, sorted.
fn site_names(proxy: &Palisade) -> Vec<String> {
    let list = palisade(proxy, &["site", "list", "--json"]).json();
    let mut names: Vec<String> = list["sites"]
        .as_array()
        .expect("sites")
        .iter()
        .map(|s| s["name"].as_str().expect("name").to_string())
        .collect();
    names.sort();
    names
}

/// The lines of a table whose first column is `key`.
fn row<'a>(table: &'a str, key: &str) -> Option<&'a str> {
    table
        .lines()
        .find(|line| line.split_whitespace().next() == Some(key))
}

fn proxy_with_blog(origin: &Origin) -> Palisade {
    Palisade::start(&SiteConfig::blog(origin.url()).to_toml())
}

#[tokio::test]
async fn a_site_is_created_from_toml_listed_shown_patched_and_deleted() {
    let origin = Origin::start("o");
    let proxy = proxy_with_blog(&origin);
    let file = write(&proxy, "shop.toml", &site_toml("shop", &origin, ""));

    let created = palisade(&proxy, &["site", "create", "--file", &file]).ok();
    assert_eq!(created.trim(), "created site shop");
    let served = client::get(proxy.http_addr(), "shop.example", "/echo").await;
    assert_eq!(served.status, 200, "{}", served.text());

    let table = palisade(&proxy, &["site", "list"]).ok();
    assert!(
        table.starts_with("NAME  STATE   SOURCE  HOSTS"),
        "a header row: {table}"
    );
    let blog = row(&table, "blog").expect("blog listed");
    let shop = row(&table, "shop").expect("shop listed");
    assert!(blog.contains("active") && blog.contains(" file "), "{blog}");
    assert!(
        shop.contains(" api ") && shop.contains("shop.example"),
        "{shop}"
    );

    let shown = palisade(&proxy, &["site", "show", "shop", "--json"]).json();
    assert_eq!(shown["name"], "shop");
    assert_eq!(shown["hosts"][0], "shop.example");
    assert_eq!(shown["source"], "api");
    let as_toml = palisade(&proxy, &["site", "show", "shop"]).ok();
    assert!(as_toml.contains("[[site]]\nname = \"shop\""), "{as_toml}");

    let patched = palisade(
        &proxy,
        &[
            "site",
            "patch",
            "shop",
            "--set",
            "cache.ttl=5m",
            "--set",
            "max_body_bytes=2048",
        ],
    )
    .ok();
    assert_eq!(patched.trim(), "updated site shop");
    palisade(&proxy, &["site", "state", "shop", "paused"]).ok();
    let shown = palisade(&proxy, &["site", "show", "shop", "--json"]).json();
    assert_eq!(shown["cache"]["ttl"], "5m");
    assert_eq!(shown["max_body_bytes"], 2048);
    assert_eq!(shown["state"], "paused");

    // Refusals print the server's error and field, and exit 1.
    let invalid = palisade(
        &proxy,
        &["site", "patch", "shop", "--set", "cache.ttl=soon"],
    )
    .refused();
    assert!(
        invalid.contains("(422)") && invalid.contains("cache.ttl"),
        "{invalid}"
    );
    let file_site = palisade(&proxy, &["site", "patch", "blog", "--set", "state=paused"]).refused();
    assert!(
        file_site.contains("(409)")
            && file_site.contains("palisade.toml")
            && file_site.contains("palisade site state blog"),
        "{file_site}"
    );

    assert_eq!(
        palisade(&proxy, &["site", "delete", "shop"]).ok().trim(),
        "deleted site shop"
    );
    assert_eq!(site_names(&proxy), ["blog"]);
    let gone = palisade(&proxy, &["site", "show", "shop"]).refused();
    assert!(gone.contains("(404)"), "{gone}");
}

#[tokio::test]
async fn certificate_files_named_in_a_site_file_are_uploaded() {
    let origin = Origin::start("o");
    let proxy = proxy_with_blog(&origin);
    let ca = TestCa::new();
    let leaf = ca.issue(&["tls.example"]);
    let file = write(
        &proxy,
        "tls.toml",
        &site_toml("tls", &origin, &format!("tls = {}\n", leaf.toml())),
    );

    palisade(&proxy, &["site", "create", "--file", &file]).ok();

    let shown = palisade(&proxy, &["site", "show", "tls", "--json"]).json();
    let stored = Path::new(shown["tls"]["cert"].as_str().expect("a stored path"));
    assert!(
        stored.starts_with(proxy.dir().join("data").join("certs").join("tls")),
        "stored in the data directory, not the file's path: {shown}"
    );
    // What `show --json` printed goes back unchanged: the server keeps its certificate.
    let round_trip = write(&proxy, "tls.json", &shown.to_string());
    palisade(&proxy, &["site", "update", "tls", "--file", &round_trip]).ok();
    let again = palisade(&proxy, &["site", "show", "tls", "--json"]).json();
    assert_eq!(again["tls"], shown["tls"]);
}

#[tokio::test]
async fn a_token_made_by_the_cli_reads_but_cannot_edit_and_stops_working_once_revoked() {
    let origin = Origin::start("o");
    let proxy = proxy_with_blog(&origin);

    let missing = palisade_as(&proxy, None, &["site", "list"]).refused();
    assert!(
        missing.contains("--token") && missing.contains("PALISADE_TOKEN"),
        "says how to pass a token: {missing}"
    );

    let created = palisade(
        &proxy,
        &["token", "create", "--name", "ci", "--scope", "read"],
    )
    .ok();
    let secret = created
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("pal_"))
        .unwrap_or_else(|| panic!("no secret on a line of its own: {created}"))
        .to_string();
    let id = created
        .strip_prefix("created token ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no token id: {created}"))
        .to_string();
    assert!(created.contains("shown this once"), "{created}");

    let listed = palisade_as(&proxy, Some(&secret), &["site", "list"]).ok();
    assert!(row(&listed, "blog").is_some(), "{listed}");
    let file = write(&proxy, "shop.toml", &site_toml("shop", &origin, ""));
    let edit = palisade_as(&proxy, Some(&secret), &["site", "create", "--file", &file]).refused();
    assert!(edit.contains("(403)") && edit.contains("edit"), "{edit}");

    let tokens = palisade(&proxy, &["token", "list"]).ok();
    let line = row(&tokens, &id).unwrap_or_else(|| panic!("{id} not listed: {tokens}"));
    assert!(
        line.contains("ci") && line.contains("read") && line.ends_with('-'),
        "{line}"
    );
    assert!(!tokens.contains(&secret), "a listing never shows a secret");

    palisade(&proxy, &["token", "revoke", &id]).ok();
    let revoked = palisade_as(&proxy, Some(&secret), &["site", "list"]).refused();
    assert!(revoked.contains("(401)"), "{revoked}");
}

#[tokio::test]
async fn suspend_gives_the_notice_and_reinstate_brings_the_origin_back() {
    let origin = Origin::start("origin-a");
    let proxy = proxy_with_blog(&origin);
    let before = client::get(proxy.http_addr(), "blog.example", "/echo").await;
    assert_eq!(before.origin_id(), Some("origin-a"));

    let said = palisade(&proxy, &["suspend", "blog", "--reason", "phishing kit"]).ok();
    assert!(
        said.contains("suspended site blog") && said.contains("403"),
        "{said}"
    );
    let notice = client::get(proxy.http_addr(), "blog.example", "/echo?1").await;
    assert_eq!(notice.status, 403, "{}", notice.text());
    assert_eq!(notice.origin_id(), None);
    let shown = palisade(&proxy, &["site", "show", "blog", "--json"]).json();
    assert_eq!(shown["state"], "suspended");
    assert_eq!(shown["suspension"]["reason"], "phishing kit");

    palisade(&proxy, &["reinstate", "blog", "--reason", "kit removed"]).ok();
    let after = client::get(proxy.http_addr(), "blog.example", "/echo?2").await;
    assert_eq!(after.status, 200);
    assert_eq!(after.origin_id(), Some("origin-a"));
    let not_suspended = palisade(&proxy, &["reinstate", "blog"]).refused();
    assert!(not_suspended.contains("(409)"), "{not_suspended}");
}

#[tokio::test]
async fn a_report_posted_to_the_intake_is_listed_triaged_and_cited() {
    let origin = Origin::start("o");
    let proxy = proxy_with_blog(&origin);
    let mut request = client::h1_request(
        "POST",
        "blog.example",
        "/.well-known/palisade/abuse",
        client::full(
            r#"{"category":"violent_threat","urls":["http://blog.example/x"],"description":"a threat\nagainst a named person"}"#,
        ),
    );
    request
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    let reply = client::try_send(proxy.http_addr(), request).await.unwrap();
    assert_eq!(reply.status, 201, "{}", reply.text());
    let id = serde_json::from_slice::<Value>(&reply.body).unwrap()["id"]
        .as_i64()
        .unwrap()
        .to_string();

    let queue = palisade(&proxy, &["reports", "list"]).ok();
    assert!(queue.starts_with("ID"), "{queue}");
    let line = row(&queue, &id).unwrap_or_else(|| panic!("report {id} not listed: {queue}"));
    for expected in [
        "URGENT",
        "blog",
        "violent_threat",
        "new",
        "http://blog.example/x",
    ] {
        assert!(line.contains(expected), "{expected} missing: {line}");
    }
    let full = palisade(&proxy, &["reports", "show", &id]).ok();
    assert!(
        full.contains("description:\n  a threat\n  against a named person"),
        "{full}"
    );

    palisade(
        &proxy,
        &[
            "reports",
            "update",
            &id,
            "--status",
            "reviewing",
            "--notes",
            "looking",
        ],
    )
    .ok();
    let reviewing = palisade(
        &proxy,
        &["reports", "list", "--status", "reviewing", "--json"],
    )
    .json();
    assert_eq!(reviewing["reports"][0]["notes"], "looking");

    palisade(
        &proxy,
        &["suspend", "blog", "--reason", "threats", "--report", &id],
    )
    .ok();
    let cited = palisade(&proxy, &["reports", "show", &id, "--json"]).json();
    assert_eq!(cited["status"], "actioned");
    let bad_status = palisade(&proxy, &["reports", "update", &id, "--status", "done"]).refused();
    assert!(bad_status.contains("status"), "{bad_status}");
}

#[tokio::test]
async fn the_audit_log_is_listed_and_verify_catches_an_edited_entry() {
    let origin = Origin::start("o");
    let mut proxy = proxy_with_blog(&origin);
    palisade(&proxy, &["suspend", "blog", "--reason", "first reason"]).ok();
    palisade(&proxy, &["reinstate", "blog"]).ok();

    let log = palisade(&proxy, &["audit", "list", "--target", "site:blog"]).ok();
    assert!(log.starts_with("SEQ"), "{log}");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        lines.len(),
        3,
        "two entries for site:blog, newest first: {log}"
    );
    assert!(lines[1].contains("site.reinstate"), "{log}");
    assert!(
        lines[2].contains("site.suspend") && lines[2].contains("first reason"),
        "{log}"
    );

    let data = proxy.dir().join("data");
    let data_arg = data.display().to_string();
    // While the server runs: verify reads the file beside it.
    let live = palisade(&proxy, &["audit", "verify", "--data", &data_arg]).ok();
    assert!(live.contains("ok: the chain is intact"), "{live}");
    let head = live
        .lines()
        .find_map(|l| l.strip_prefix("head: "))
        .unwrap_or_else(|| panic!("no head printed: {live}"))
        .to_string();
    let entries: u64 = live
        .lines()
        .find_map(|l| l.strip_prefix("entries checked: "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count printed: {live}"));
    assert!(entries >= 2, "{live}");
    assert!(head.starts_with(&format!("{entries}:")), "{head}");

    proxy.sigterm();
    assert!(
        proxy.wait_exit(Duration::from_secs(10)).is_some(),
        "palisade did not stop"
    );
    let kept = palisade(
        &proxy,
        &["audit", "verify", "--data", &data_arg, "--head", &head],
    )
    .ok();
    assert!(kept.contains("found in the chain, unchanged"), "{kept}");
    let (seq, hash) = head.split_once(':').unwrap();
    let beyond = format!("{}:{hash}", seq.parse::<u64>().unwrap() + 1);
    let cut = palisade(
        &proxy,
        &["audit", "verify", "--data", &data_arg, "--head", &beyond],
    );
    cut.refused();
    assert!(cut.stdout().contains("PROBLEM --head"), "{}", cut.stdout());

    // Tamper as someone with the file would: around the append-only triggers.
    let db = rusqlite::Connection::open(data.join("palisade.db")).unwrap();
    db.execute_batch(
        "DROP TRIGGER audit_entries_never_change; DROP TRIGGER audit_entries_never_go;
         UPDATE audit SET reason = 'nothing to see' WHERE action = 'site.suspend';",
    )
    .unwrap();
    drop(db);

    let tampered = palisade(&proxy, &["audit", "verify", "--data", &data_arg]);
    let stderr = tampered.refused();
    assert!(stderr.contains("NOT intact"), "{stderr}");
    let report = tampered.stdout();
    let suspend_seq = lines[2].split_whitespace().next().unwrap();
    assert!(
        report.contains(&format!(
            "PROBLEM entry {suspend_seq}: its content does not match its hash"
        )),
        "{report}"
    );
}

#[tokio::test]
async fn apply_prints_its_plan_and_changes_nothing_on_a_dry_run_then_syncs() {
    let origin = Origin::start("o");
    let proxy = proxy_with_blog(&origin);
    for name in ["old", "shop"] {
        let file = write(
            &proxy,
            &format!("{name}.toml"),
            &site_toml(name, &origin, ""),
        );
        palisade(&proxy, &["site", "create", "--file", &file]).ok();
    }
    let sites = write(
        &proxy,
        "sites.toml",
        &format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n\n{}\n{}",
            site_toml("shop", &origin, "[site.cache]\nttl = \"5m\"\n"),
            site_toml("news", &origin, "")
        ),
    );

    let dry = palisade(&proxy, &["apply", "-f", &sites, "--dry-run"]);
    let plan = dry.ok();
    assert_eq!(
        plan,
        "- old\n~ shop (changed: cache)\n+ news\n\
         plan: 1 to create, 1 to replace, 1 to delete, 0 unchanged\ndry run: nothing changed\n"
    );
    assert!(
        dry.stderr().contains("[server]"),
        "notes what it ignores: {}",
        dry.stderr()
    );
    assert_eq!(site_names(&proxy), ["blog", "old", "shop"]);

    let applied = palisade(&proxy, &["apply", "-f", &sites]).ok();
    assert!(applied.ends_with("applied: 3 changes\n"), "{applied}");
    assert_eq!(site_names(&proxy), ["blog", "news", "shop"]);
    let shop = palisade(&proxy, &["site", "show", "shop", "--json"]).json();
    assert_eq!(shop["cache"]["ttl"], "5m");
    let news = client::get(proxy.http_addr(), "news.example", "/echo").await;
    assert_eq!(news.status, 200, "{}", news.text());

    let again = palisade(&proxy, &["apply", "-f", &sites]).ok();
    assert_eq!(
        again,
        "= shop (unchanged)\n= news (unchanged)\n\
         plan: 0 to create, 0 to replace, 0 to delete, 2 unchanged\napplied: 0 changes\n"
    );

    let claims_blog = write(&proxy, "blog.toml", &site_toml("blog", &origin, ""));
    let refused = palisade(&proxy, &["apply", "-f", &claims_blog, "--dry-run"]).refused();
    assert!(
        refused.contains("\"blog\"") && refused.contains("--config"),
        "names the file's site: {refused}"
    );
    let invalid = write(&proxy, "bad.toml", "[[site]]\nname = \"x\"\nhosts = []\n");
    let refused = palisade(&proxy, &["apply", "-f", &invalid]).refused();
    assert!(refused.contains("bad.toml"), "{refused}");
    assert_eq!(site_names(&proxy), ["blog", "news", "shop"]);
}

#[tokio::test]
async fn analytics_prints_its_sections() {
    let origin = Origin::start("o");
    let proxy = proxy_with_blog(&origin);
    for _ in 0..3 {
        client::get(proxy.http_addr(), "blog.example", "/echo").await;
    }

    let text = palisade(&proxy, &["analytics", "blog", "--since", "1h"]).ok();
    assert!(text.starts_with("site blog since "), "{text}");
    for heading in [
        "TOTALS",
        "\nrequests ",
        "STATUS",
        "\n2xx ",
        "CACHE",
        "\nhit ",
        "BLOCKED (reason)",
        "CHALLENGED (reason)",
        "TOP PATHS (last hour)",
        "TOP CLIENTS (last hour)",
    ] {
        assert!(text.contains(heading), "{heading:?} missing:\n{text}");
    }
    let json = palisade(&proxy, &["analytics", "blog", "--json"]).json();
    assert_eq!(json["site"], "blog");
    assert!(json["totals"].is_object(), "{json}");
    let bad = palisade(&proxy, &["analytics", "blog", "--since", "soon"]).refused();
    assert!(bad.contains("since"), "{bad}");
}
