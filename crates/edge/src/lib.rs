//! The edge: the data plane every visitor's request crosses.
//!
//! It accepts connections (cleartext HTTP/1.1 and h2c, TLS with SNI), runs each request through
//! the phases in [`pipeline`] (route, shield, cache, forward to an origin, respond, log), and reads all its
//! settings from one immutable [`Snapshot`] that a reload swaps atomically. It is not the control
//! plane: it never writes configuration, it only serves what it was handed.
//!
//! ## A request's path, as functions
//! ```text
//! listener::accept_loop            accept, connection caps and accept rate (conn_guard)
//! conn::serve / serve_parkable     TLS (tls), the protocol by preface or ALPN, timeouts,
//!                                  parking, lingering close; HTTP/1.1 on hyper, HTTP/2 on h2
//!                                  (h2_conn, h2_flood, h2_writes); the client's JA4 and HTTP/2
//!                                  fingerprints (fingerprint)
//! pipeline::handle                 the phases, in order:
//!   phases::framing::refuse_ambiguous      400 on framing two parsers could read two ways
//!   phases::route::route                   Host/:authority → site (421, 405 for CONNECT)
//!   phases::reserved::answer_own_endpoints challenge answers, abuse reports
//!   phases::route::apply_site_state        suspended → notice; paused → plain proxy
//!   phases::turn::wait_if_short            short of CPU: sites under attack (or above
//!                                          their share) wait their turn (cpu_priority)
//!   phases::shield::gate                   lists, rules, rate limits, mitigations, challenge
//!   phases::limits::refuse_oversized_body  413
//!   phases::cache::look_up                 hit, stale, or a fill (policy: phases::cache)
//!   phases::forward::to_origin             body read ahead, origin cap and its queue
//!                                          (origin_gate), origin::fields, origin::Upstream
//!   phases::respond::deliver               store, revalidate, invalidate, frame for client
//! phases::log::RequestLog::finish_with     attached to the response; when its body ends
//!                                          (body::to_client): metrics, analytics, access log
//! ```
//!
//! ## Module map: who may use whom
//! A module may use its own row and the rows below it, never a row above; there is no import
//! cycle between modules (`tests/module_map.rs` checks both on every test run).
//!
//! | layer | modules | job |
//! |---|---|---|
//! | start | [`server`] | starts listeners and the tasks below, reload, graceful shutdown |
//! | beside the path | `operator` ([`admin`], `purge_api`, [`explain`]), `attack_watch`, `cpu_watch` | the admin listener, purges, `palisade explain`; the once-a-second attack and origin-pressure watch; the scheduling-lag probe. Never called by a phase |
//! | connections | `listener`, `conn`, `h2_conn`, `h2_flood`, `h2_writes` | accept and serve client connections (HTTP/2's small writes gathered into one per turn); they call the pipeline |
//! | request | [`pipeline`], `phases` (`phases::request`: the per-request context) | the phases in order, one module each |
//! | below the phases | `own_responses`, `abuse_intake`, `protection`, `origin_gate`, `cpu_priority`, `snapshot`, `tls`, `site_table`, `router`, `state`, `tunnel` | the edge's own pages; the abuse intake's limits and pages; per-site protection state; the origin cap and its fair waiting line; the line deprioritised sites wait in when the edge is short of CPU; the config snapshot (built whole, or changed site by site), certificates, the sites by index, host and name, routing; what outlives snapshots; WebSocket tunnels |
//! | streams | `body`, `origin` (pools, health, selection, `fields`: what the origin receives, the HTTP/1.1 client), `conn_context` | bodies both ways, origins, what one client connection knows |
//! | foundation | `http`, [`metrics`], [`access_log`], `clock`, `conn_guard`, [`fingerprint`] | wire-level HTTP, counters, the access log, the clock, connection permits, the client's TLS (JA4) and HTTP/2 fingerprints |
//!
//! Crates below the edge: `cache` (RFC 9111 policy and storage), `shield` (guards, limits,
//! challenge crypto, events), `analytics` (per-minute aggregation, taken by the control
//! plane), `model` (configuration and shared types).
//!
//! ## Invariants (each pinned by a named test)
//! 1. Never an open proxy: a request whose host no site claims gets 421 and no origin is
//!    contacted (the operator's hostname, when set, reaches only the abuse intake); CONNECT is
//!    refused; on TLS the Host must belong to the site SNI chose.
//!    (`router::tests::unknown_host_routes_nowhere`; black-box
//!    `unknown_host_gets_421_and_origin_sees_nothing`,
//!    `the_operator_hostname_serves_the_form_and_nothing_else_while_unknown_hosts_get_421`,
//!    `absolute_form_naming_unknown_host_gets_421_despite_known_host_header`,
//!    `connect_method_is_refused_and_origin_sees_nothing`,
//!    `host_naming_another_site_than_sni_gets_421`.)
//! 2. Ambiguous framing is rejected before routing, judged on the bytes as sent (hyper
//!    normalises some shapes away): Content-Length with Transfer-Encoding, repeated
//!    Content-Length, a Transfer-Encoding other than exactly `chunked`, Connection naming
//!    Content-Length or Host → 400 and the connection closes. (`phases::framing::tests::*`;
//!    black-box `edge_smuggling::*`.)
//! 3. Hop-by-hop headers, including those named in Connection, never cross the edge in either
//!    direction; Connection never removes framing, routing or the edge's own forwarding
//!    fields; framing, routing and forwarding fields never cross as trailers.
//!    (`origin::fields::tests::strips_hop_by_hop_and_connection_named_fields`,
//!    `connection_cannot_remove_framing_routing_or_the_edges_own_fields`,
//!    `rfc9110_6_5_1_fields_that_frame_route_or_control_never_cross_as_trailers`; black-box
//!    `hop_by_hop_request_headers_do_not_reach_origin`,
//!    `hop_by_hop_response_headers_do_not_reach_client`,
//!    `connection_cannot_remove_the_forwarding_fields_the_edge_sets`,
//!    `framing_fields_in_trailers_are_dropped_both_ways`.)
//! 4. Client-supplied forwarding headers are replaced unless the peer is a trusted proxy.
//!    (`origin::fields::tests::untrusted_peer_cannot_spoof_forwarding_headers`; black-box
//!    `forwarding_headers_from_untrusted_peer_are_replaced`.)
//! 5. Error pages never show an origin's address.
//!    (`phases::respond::tests::error_pages_say_nothing_about_origins_and_are_not_stored`;
//!    black-box `origin_down_gets_502_without_revealing_origin_address`.)
//! 6. Never panic on network input: every parse of a header value is fallible, and hostile
//!    hosts are refused before they reach the router or the logs.
//!    (`model::host::tests::normalize_refuses_hostile_values`; black-box `edge_smuggling::*`.)
//! 7. Requests in flight finish on the snapshot they started with; a reload never drops one.
//!    (black-box `reload_under_load_switches_origins_without_failing_a_request`.)
//! 8. A request that reached an origin is never sent again.
//!    (black-box `post_that_could_not_connect_is_not_retried_on_another_origin`.)
//! 9. Parking an idle connection is invisible to its client: it happens only at a message
//!    boundary with nothing of a next request read.
//!    (black-box `parked_keep_alive_connection_keeps_serving_gets_posts_and_pipelines`.)
//! 10. An origin connection is reused only when its last response was framed beyond doubt and
//!     read to the end; anything else (no length, a broken chunk, both TE and CL, HTTP/1.0
//!     without keep-alive, an early answer to an unfinished upload) closes it.
//!     (`origin::codec::tests::rfc9112_*`; black-box
//!     `malformed_chunked_body_cuts_the_client_response_short_and_is_not_reused`,
//!     `close_delimited_body_reaches_client_whole_and_the_next_request_uses_a_new_connection`.)
//! 11. A client cannot hold the edge's resources by being slow or by flooding: a header is
//!     complete within `header_read_timeout`, a body keeps `min_request_body_rate`, a response
//!     moves within `send_timeout` (HTTP/2 flow control included), an address opens at most
//!     `max_new_connections_per_ip` per period, and HTTP/2 PING, SETTINGS and reset floods
//!     close the connection; each is cut without slowing anyone else.
//!     (`conn_guard::tests::accept_rate_*`, `h2_flood::tests::*`, `body::tests::*`,
//!     `conn::tests::*`; black-box `shield_connection_guard::*`,
//!     `five_thousand_slowloris_connections_from_fifty_addresses_while_browsers_are_served`.)
//! 12. The abuse intake (`/.well-known/palisade/abuse`) never reaches an origin, is never
//!     challenged, and bounds what a reporter costs: 64 KiB within `request_body_timeout`, 5
//!     reports per 10 minutes per address in fixed memory. (`phases::abuse::tests::*`;
//!     black-box `abuse_intake::*`.)
//! 13. A suspended site's hosts get its notice (451 or 403) and nothing else: no cached
//!     response, no origin contact, from the request after the snapshot swap; a paused site
//!     skips the shield and the cache. (black-box
//!     `a_suspended_site_under_load_never_reaches_its_origin_and_reinstating_restores_it`,
//!     `a_legal_suspension_answers_451_and_a_reason_is_required`,
//!     `a_site_change_reaches_the_edge_within_one_second_without_a_restart`.)
//! 14. The per-address cache-miss limit refuses no one while the site's origin copes; while
//!     the origin is under pressure (requests in flight near its cap, or latency rising), a
//!     client past it gets the challenge if it can take one and 429 otherwise, and a cleared
//!     browser is counted on its cookie with an allowance of its own.
//!     (`phases::shield::tests::*`, `shield::pressure::tests::*`; black-box
//!     `a_crawler_fetching_twenty_new_urls_a_second_for_a_minute_from_one_address_is_never_refused`,
//!     `with_its_origin_near_the_concurrency_cap_a_client_past_its_miss_limit_is_challenged_or_refused`,
//!     `with_its_origin_latency_rising_a_client_past_its_miss_limit_gets_429`,
//!     `under_origin_pressure_each_cleared_browser_behind_a_busy_address_has_a_miss_allowance_of_its_own`,
//!     `a_cache_busting_flood_on_the_default_miss_limit_is_challenged_once_it_presses_the_origin`.)
//! 15. The admin listener's every answer says `X-Content-Type-Options: nosniff`, and the edge
//!     never reparses an API request the control plane has decided on: security events and
//!     purges are typed calls on the site it authorized. (black-box
//!     `every_answer_of_the_admin_listener_says_nosniff`,
//!     `every_operation_under_every_credential_keeps_a_site_limited_token_inside_its_site`.)
//! 16. What an origin receives is exactly the requests the edge accepted, one for one: the
//!     Host and the body's framing are written by the edge (from the routed authority and the
//!     body it forwards), never copied, so no body is ever read as another request on a pooled
//!     origin connection. (`fuzzing::tests::a_forwarded_request_reaches_the_origin_as_exactly_one_request`,
//!     fuzz target `forward_request`; black-box
//!     `what_the_origin_receives_is_exactly_what_the_edge_accepted_and_logged`,
//!     `connection_naming_content_length_is_refused_and_smuggles_nothing_onto_a_pooled_connection`,
//!     `content_length_to_the_origin_is_written_by_the_edge`.)
//! 17. An origin's interim (1xx) responses reach HTTP/1.1 and HTTP/2 clients before the final
//!     response, in order on a pipelined connection, never an HTTP/1.0 client, and are never
//!     stored. (black-box `edge_interim_responses::*`.)
//! 18. On TLS, ALPN decides the protocol: `h2` is served HTTP/2 only (anything but the preface
//!     gets GOAWAY PROTOCOL_ERROR), `http/1.1` or none HTTP/1.1 only. (`conn::tests::the_first_bytes_tell_the_protocol_and_are_replayed_whole`;
//!     black-box `an_http1_head_after_alpn_h2_gets_goaway_protocol_error`,
//!     `the_h2_preface_after_alpn_http1_is_not_served_as_h2`.)
//! 19. The access log never slows a request: lines are buffered per thread and written by a
//!     thread of its own; what it cannot keep up with is dropped and counted, never waited
//!     for. Every line is written once (SIGUSR1 reopens included) or counted as dropped.
//!     ([`access_log`]'s invariants; black-box
//!     `a_blocked_stdout_pipe_never_slows_requests_and_dropped_lines_are_counted`,
//!     `rotation_by_sigusr1_under_load_loses_no_line_and_duplicates_none`.)
//! 20. A client's fingerprints (the JA4 of its ClientHello, its HTTP/2 SETTINGS) are read from
//!     the bytes on their way to rustls and h2, never changing or holding them back: what
//!     cannot be read gives no fingerprint, never a refused connection, and every request on
//!     a connection, its first included, sees both. ([`fingerprint`]'s invariants; black-box
//!     `edge_fingerprints::*`.)

mod abuse_intake;
pub mod access_log;
mod attack_watch;
mod body;
mod clock;
mod conn;
mod conn_context;
mod conn_guard;
mod cpu_priority;
mod cpu_watch;
pub mod fingerprint;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod h2_conn;
mod h2_flood;
mod h2_writes;
mod http;
mod listener;
pub mod metrics;
mod operator;
mod origin;
mod origin_gate;
mod own_responses;
mod phases;
pub mod pipeline;
mod protection;
mod router;
pub mod server;
mod site_table;
mod snapshot;
mod state;
#[cfg(test)]
mod test_input;
mod tls;
mod tunnel;

pub use abuse_intake::{Receipt, ReportSink, SubmitError, SubmitFuture};
pub use operator::purge_api::{
    MAX_BODY_BYTES as MAX_PURGE_BODY_BYTES, PurgeBodyError, PurgeError, Purged,
};
pub use operator::{admin, explain};
pub use origin::UpstreamError;
pub use server::{Edge, EdgeError, PreparedChange, ReloadError};
pub use shield::events::{EventQuery, SecurityEvent};
pub use snapshot::{Snapshot, SnapshotError};
pub use tls::{CertError, TlsError};
