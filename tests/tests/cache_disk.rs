//! The cache's disk tier through the real binary: it is warm after a restart, and a response
//! too large for the memory tier is streamed to disk and served from there (whole and in
//! ranges).

use std::time::Duration;

use palisade_blackbox::client::{self, h1_request};
use palisade_blackbox::scripted_origin::Reply;
use palisade_blackbox::{Palisade, ScriptedOrigin, SiteConfig};

/// Site `blog` in front of `origin` with a 1 MiB memory tier beside a 64 MiB disk tier:
/// responses over 128 KiB (an eighth of the memory tier) live on disk only.
fn with_small_memory_tier(origin: &ScriptedOrigin) -> SiteConfig {
    SiteConfig::blog(origin.url())
        .server(r#"cache_memory = "1MiB""#)
        .server(r#"cache_disk = "64MiB""#)
}

fn stop(mut proxy: Palisade) {
    proxy.sigterm();
    assert!(
        proxy.wait_exit(Duration::from_secs(10)).is_some(),
        "palisade did not stop"
    );
}

#[tokio::test]
async fn restart_keeps_the_disk_tier_warm() {
    let origin = ScriptedOrigin::start(|n| {
        let body = format!("v{n}");
        Reply::keep_open(format!(
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nVary: Accept-Language\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    });
    // Both processes keep their data in one directory, so the second finds the first's.
    let data = tempfile::tempdir().unwrap();
    let config = with_small_memory_tier(&origin)
        .server(&format!("data_dir = \"{}\"", data.path().display()))
        .to_toml();
    let first = Palisade::start(&config);
    let mut german = h1_request("GET", "blog.example", "/page", client::empty());
    german
        .headers_mut()
        .insert("accept-language", "de".parse().unwrap());
    let stored = client::try_send(first.http_addr(), german).await.unwrap();
    assert_eq!(stored.text(), "v0");
    // The disk write runs beside the response; give it a moment before stopping.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop(first);

    let second = Palisade::start(&config);
    let mut german = h1_request("GET", "blog.example", "/page", client::empty());
    german
        .headers_mut()
        .insert("accept-language", "de".parse().unwrap());
    let warm = client::try_send(second.http_addr(), german).await.unwrap();

    assert_eq!(warm.text(), "v0", "served from the disk tier");
    let status = warm.header("cache-status").unwrap_or_default();
    assert!(status.contains("hit"), "{status}");
    assert_eq!(origin.requests(), 1, "the origin was not asked again");
}

#[tokio::test]
async fn a_large_response_is_stored_on_disk_and_served_whole_and_in_ranges() {
    const SIZE: usize = 3 * 1024 * 1024;
    let body: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let expected = body.clone();
    let origin = ScriptedOrigin::start(move |_| {
        let mut bytes = format!(
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: {SIZE}\r\n\r\n"
        )
        .into_bytes();
        bytes.extend_from_slice(&body);
        Reply::keep_open(bytes)
    });
    let proxy = Palisade::start(&with_small_memory_tier(&origin).to_toml());

    let first = client::get(proxy.http_addr(), "blog.example", "/big.bin").await;
    assert_eq!(first.body.len(), SIZE);
    // The streamed write commits once the last byte is on disk.
    let mut hit = None;
    for _ in 0..50 {
        let reply = client::get(proxy.http_addr(), "blog.example", "/big.bin").await;
        if reply
            .header("cache-status")
            .unwrap_or_default()
            .contains("hit")
        {
            hit = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hit = hit.expect("a hit from disk within 5 s");
    let mut ranged = h1_request("GET", "blog.example", "/big.bin", client::empty());
    ranged
        .headers_mut()
        .insert("range", "bytes=1000000-1000099".parse().unwrap());
    let part = client::try_send(proxy.http_addr(), ranged).await.unwrap();

    assert_eq!(
        &hit.body[..],
        &expected[..],
        "the whole body, byte for byte"
    );
    assert_eq!(part.status, 206);
    assert_eq!(&part.body[..], &expected[1_000_000..1_000_100]);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 1000000-1000099/{SIZE}").as_str())
    );
    assert_eq!(origin.requests(), 1);
    let rss = proxy.rss_kib();
    assert!(rss < 200 * 1024, "RSS {rss} KiB");
}
