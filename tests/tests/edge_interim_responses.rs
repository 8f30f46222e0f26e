//! Interim (1xx) responses from the origin reach clients that can take them (RFC 9110 §15.2:
//! a proxy forwards them, except a 1xx it asked for itself), before the final response and
//! in order on a pipelined connection, and are never stored in the cache.

use palisade_blackbox::raw::{READ_TIMEOUT, RawConn, RawResponse};
use palisade_blackbox::scripted_origin::Reply;
use palisade_blackbox::{Palisade, ScriptedOrigin, SiteConfig};

/// `103 Early Hints` with a Link field, then `200` with body `v{n}`, in one write (as an
/// origin that has its answer ready sends them), cacheable for a minute.
fn early_hints_then_ok(n: usize) -> Reply {
    let body = format!("v{n}");
    Reply::keep_open(format!(
        "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n\
         HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

async fn next(conn: &mut RawConn) -> RawResponse {
    conn.read_interim_or_response(READ_TIMEOUT).await
}

#[tokio::test]
async fn early_hints_reach_an_http11_client_before_the_response_and_are_not_cached() {
    let origin = ScriptedOrigin::start(early_hints_then_ok);
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());
    let mut conn = RawConn::connect(proxy.http_addr()).await.unwrap();

    conn.send(b"GET /page HTTP/1.1\r\nHost: blog.example\r\n\r\n")
        .await
        .unwrap();
    let hints = next(&mut conn).await;
    assert_eq!(hints.status(), Some(103), "{hints:?}");
    assert_eq!(
        hints.header("link"),
        Some("</style.css>; rel=preload; as=style")
    );
    let page = next(&mut conn).await;
    assert_eq!(page.status(), Some(200), "{page:?}");
    assert_eq!(page.body_text(), "v0");

    // Served from the cache: the stored response, and no interim.
    conn.send(b"GET /page HTTP/1.1\r\nHost: blog.example\r\n\r\n")
        .await
        .unwrap();
    let hit = next(&mut conn).await;
    assert_eq!(
        hit.status(),
        Some(200),
        "a cache hit replayed an interim: {hit:?}"
    );
    assert_eq!(hit.body_text(), "v0");
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn interims_on_a_pipelined_connection_come_between_the_responses() {
    let origin = ScriptedOrigin::start(early_hints_then_ok);
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());
    let mut conn = RawConn::connect(proxy.http_addr()).await.unwrap();

    conn.send(
        b"GET /a HTTP/1.1\r\nHost: blog.example\r\n\r\nGET /b HTTP/1.1\r\nHost: blog.example\r\n\r\n",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    for _ in 0..4 {
        let r = next(&mut conn).await;
        got.push((r.status(), r.body_text()));
    }
    assert_eq!(
        got,
        [
            (Some(103), String::new()),
            (Some(200), "v0".to_string()),
            (Some(103), String::new()),
            (Some(200), "v1".to_string()),
        ]
    );
}

#[tokio::test]
async fn processing_is_forwarded_but_continue_and_http10_clients_get_none() {
    let origin = ScriptedOrigin::start(|n| {
        Reply::keep_open(format!(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n\
             HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Length: 2\r\n\r\nv{n}"
        ))
    });
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());

    let mut conn = RawConn::connect(proxy.http_addr()).await.unwrap();
    conn.send(b"GET /work HTTP/1.1\r\nHost: blog.example\r\n\r\n")
        .await
        .unwrap();
    let first = next(&mut conn).await;
    assert_eq!(
        first.status(),
        Some(102),
        "the origin's unasked-for 100 was passed on, or 102 was not: {first:?}"
    );
    let last = next(&mut conn).await;
    assert_eq!(last.status(), Some(200), "{last:?}");

    // RFC 9110 §15.2: never a 1xx to an HTTP/1.0 client.
    let mut old = RawConn::connect(proxy.http_addr()).await.unwrap();
    old.send(b"GET /work HTTP/1.0\r\nHost: blog.example\r\n\r\n")
        .await
        .unwrap();
    let only = next(&mut old).await;
    assert_eq!(only.status(), Some(200), "{only:?}");
}

#[tokio::test]
async fn an_origin_that_sends_interims_without_end_is_refused() {
    let origin = ScriptedOrigin::start(|_| {
        Reply::keep_open("HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n".repeat(100))
    });
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());
    let mut conn = RawConn::connect(proxy.http_addr()).await.unwrap();
    conn.send(b"GET / HTTP/1.1\r\nHost: blog.example\r\n\r\n")
        .await
        .unwrap();
    let last = conn.read_response(READ_TIMEOUT).await;
    assert_eq!(last.status(), Some(502), "{last:?}");
}

/// Over HTTP/2 (h2c here; browsers act on 103 over HTTP/2 only) the interim is a HEADERS frame
/// on the request's stream before its final one.
#[tokio::test]
async fn early_hints_reach_an_http2_client_on_the_stream_before_the_response() {
    let origin = ScriptedOrigin::start(early_hints_then_ok);
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());
    let tcp = tokio::net::TcpStream::connect(proxy.http_addr())
        .await
        .unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.expect("h2c handshake");
    tokio::spawn(connection);

    for (path, expected) in [("/h2", "v0"), ("/other", "v1")] {
        let request = hyper::Request::get(format!("http://blog.example{path}"))
            .body(())
            .unwrap();
        let (mut response, _) = client.send_request(request, true).expect("send");
        let hints = std::future::poll_fn(|cx| response.poll_informational(cx))
            .await
            .expect("an interim response before the final one")
            .expect("a well-formed interim");
        assert_eq!(hints.status(), 103);
        assert_eq!(
            hints.headers()["link"],
            "</style.css>; rel=preload; as=style"
        );
        let response = response.await.expect("the final response");
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let mut got = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.expect("body");
            let _ = body.flow_control().release_capacity(chunk.len());
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got, expected.as_bytes());
    }
}
