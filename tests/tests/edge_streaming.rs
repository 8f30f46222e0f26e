//! Bodies stream through the proxy: a 1 GiB upload or download never sits in its memory.

use std::time::Duration;

use http_body_util::BodyExt;
use palisade_blackbox::client::{self, h1_request};
use palisade_blackbox::{Origin, Palisade, SiteConfig};

const GIB: u64 = 1 << 30;

/// Far below 1 GiB: a proxy that buffers a body cannot stay under it.
const RSS_LIMIT_KIB: u64 = 200 * 1024;

/// Generous for 1 GiB through debug builds on two cores; a stalled transfer fails instead of
/// hanging.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_upload_streams_to_origin_with_bounded_proxy_memory() {
    let origin = Origin::start("a");
    // Room for the 1 GiB body: the site's default `max_body_bytes` is smaller.
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .site("max_body_bytes = 2147483648")
            .to_toml(),
    );
    let rss = proxy.sample_rss();

    let request = h1_request("POST", "blog.example", "/upload", client::generated(GIB));
    let reply = tokio::time::timeout(TRANSFER_TIMEOUT, async {
        let mut sender = client::h1_handshake(client::tcp(proxy.http_addr()).await?).await?;
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        client::collect(response).await
    })
    .await
    .expect("1 GiB upload timed out")
    .expect("1 GiB upload through the proxy");
    let peak_kib = rss.finish();
    eprintln!("proxy RSS peak during the upload: {peak_kib} KiB");

    assert_eq!(reply.status, 200, "body: {}", reply.text());
    let counted: serde_json::Value = serde_json::from_slice(&reply.body).expect("upload JSON");
    assert_eq!(counted["bytes"], GIB);
    assert!(
        peak_kib < RSS_LIMIT_KIB,
        "proxy RSS peaked at {peak_kib} KiB during a 1 GiB upload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_download_streams_to_client_with_bounded_proxy_memory() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());
    let rss = proxy.sample_rss();

    let path = format!("/bytes/{GIB}");
    let (status, received) = tokio::time::timeout(TRANSFER_TIMEOUT, async {
        let mut sender = client::h1_handshake(client::tcp(proxy.http_addr()).await?).await?;
        sender.ready().await?;
        let response = sender
            .send_request(h1_request("GET", "blog.example", &path, client::empty()))
            .await?;
        let status = response.status();
        let mut body = response.into_body();
        let mut received = 0u64;
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame?.data_ref() {
                received += data.len() as u64;
            }
        }
        Ok::<_, client::BoxError>((status, received))
    })
    .await
    .expect("1 GiB download timed out")
    .expect("1 GiB download through the proxy");
    let peak_kib = rss.finish();
    eprintln!("proxy RSS peak during the download: {peak_kib} KiB");

    assert_eq!(status, 200);
    assert_eq!(received, GIB);
    assert!(
        peak_kib < RSS_LIMIT_KIB,
        "proxy RSS peaked at {peak_kib} KiB during a 1 GiB download"
    );
}
