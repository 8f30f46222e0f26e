//! Palisade's HTTP cache: a shared cache in the sense of RFC 9111, sitting in front of a site's
//! origins.
//!
//! What it is for: deciding, per RFC 9111 (with RFC 5861's stale-while-revalidate and
//! stale-if-error), whether a response may be stored, whether a stored response may answer a
//! request, and how to revalidate it; keeping stored responses in a memory tier and a disk tier
//! bounded in bytes; coalescing concurrent misses; purging.
//!
//! What it is not: an HTTP client or server. It never opens a socket; the edge asks it questions
//! and hands it bodies.
//!
//! | module | job |
//! |---|---|
//! | `policy` | the RFC's decisions, section by section, as pure functions (and RFC 9213's targeted fields) |
//! | `key` | primary cache keys: site, URL, keyed fields |
//! | `vary` | secondary keys from Vary (§4.1), Accept-Encoding normalised |
//! | `object` | a stored response |
//! | `memory` | the memory tier: bounded in bytes, scan-resistant |
//! | `meta` | what the disk tier keeps as an object's metadata |
//! | `persist` | writing stored responses to the disk tier (whole or streamed) and reading them back |
//! | `disk` | the disk tier: objects under `data_dir`, checksummed, bounded, warm after restart |
//! | `range` | Range requests answered from a stored complete response (206, 416) |
//! | `purge` | purge rules (URL, prefix, host, tag, site; hard or soft) applied without a scan |
//! | `coalesce` | fill locks: one origin request per missing object |
//! | `store` | the cache as the edge uses it: lookup, lock, store |
//! | `write_order` | the disk tier's copy of each object kept in step with the memory tier's |
//!
//! ## Invariants
//! Each is pinned by the tests named (black-box ones in `tests/tests/cache_*.rs`).
//!
//! 1. **Nothing §3 forbids is stored or shared**: no-store, private, a response to an
//!    Authorization request without public/must-revalidate/s-maxage, `Vary: *`, a Set-Cookie
//!    response unless the site or the origin allows it. `policy::storable::tests`,
//!    `s5_2_2_5_no_store_response_always_reaches_the_origin`,
//!    `s3_5_a_response_to_an_authorized_request_is_not_shared_without_public`,
//!    `set_cookie_responses_are_not_handed_to_other_clients`.
//! 2. **No stale response where §4.2.4 forbids one** (must-revalidate, proxy-revalidate,
//!    s-maxage, no-cache), whatever the stale allowances and always-online say.
//!    `s4_2_4_must_revalidate_proxy_revalidate_and_s_maxage_forbid_stale`,
//!    `s4_2_4_must_revalidate_forbids_serving_stale_on_error`.
//! 3. **A torn or corrupted disk object is never served**: checked per block as it is read.
//!    `disk::tests::torn_body_block_is_never_served`, `flipped_byte_in_meta_makes_object_absent`.
//! 4. **Both tiers stay within their bounds** (the disk tier in allocation units).
//!    `store::tests::the_memory_tier_stays_within_its_bound`,
//!    `disk::tests::eviction_keeps_the_bound_and_drops_the_least_recently_used`.
//! 5. **One origin request per missing object, and no waiter waits past `lock_timeout`** or
//!    behind a response that cannot be stored. `coalesce::tests`,
//!    `herd_of_500_misses_reaches_the_origin_once_and_waiters_get_the_answer_at_once`,
//!    `waiters_on_an_uncacheable_response_go_to_the_origin_without_queueing`.
//! 6. **A purge applies to every request once it returns**, fills already in flight included.
//!    `purge::tests::a_fill_started_before_a_purge_is_purged_when_it_lands`,
//!    `store::tests::a_response_fetched_across_a_purge_is_not_stored`,
//!    `purge_by_url_removes_that_url_only`.
//! 7. **No panic on what arrives**: header values, stored metadata and files on disk are read
//!    defensively. `garbage_never_panics_and_unknown_directives_are_ignored`,
//!    `meta::tests::truncated_or_foreign_records_are_refused_never_a_panic`,
//!    `disk::tests::garbage_and_foreign_files_are_removed_at_open`.
//! 8. **Invalid freshness information makes a response stale, never fresher**: an invalid
//!    `Expires`, `max-age` or `Age` (whose first member is what counts, §5.1), and every date
//!    field is read in all three HTTP-date formats (RFC 9110 §5.6.7), so an obsolete format is
//!    not mistaken for an invalid date. `s5_3_invalid_expires_means_already_expired`,
//!    `s4_2_1_invalid_max_age_is_stale_not_ignored`,
//!    `s5_1_invalid_age_makes_the_response_stale_rather_than_new`,
//!    `s5_1_a_list_valued_age_uses_its_first_member`,
//!    `date::tests::rfc9110_5_6_7_all_three_formats_are_accepted`,
//!    `rfc9110_5_6_7_expires_is_read_in_all_three_date_formats`.
//! 9. **A client never gets a 304 it did not ask for** (the edge answers a client's conditions
//!    from the cache and never passes them on with a fill): a 304 naming a representation the
//!    cache does not hold refreshes nothing and the request is made again without validators
//!    (§4.3.4); one nothing asked for is a 502.
//!    `validation::tests::s4_3_4_a_304_with_another_entity_tag_does_not_apply`,
//!    `s4_3_4_a_304_naming_another_representation_is_refetched_unconditionally`,
//!    `s4_3_4_a_304_to_a_request_that_cannot_have_earned_one_is_not_passed_to_the_client`.
//! 10. **`stored` in Cache-Status means stored**, empty bodies (a 204) included.
//!     `rfc9110_15_3_5_a_stored_204_is_reused`, `an_empty_200_said_to_be_stored_is_reused`.
//! 11. **A targeted field decides for this edge and for nothing after it**: the site's own
//!     field, else `CDN-Cache-Control`, when valid, replaces Cache-Control and Expires for
//!     storing and reuse (also across a 304 and a restart), and neither, nor the purge tags,
//!     reaches a client.
//!     `targeted::tests::rfc9213_2_2_a_targeted_field_replaces_cache_control`,
//!     `meta::tests::directives_from_a_targeted_field_survive_a_round_trip`,
//!     `rfc9213_cdn_cache_control_overrides_cache_control_for_the_edge`,
//!     `rfc9213_cdn_cache_control_is_not_forwarded_to_clients`,
//!     `purge_tags_never_reach_clients_whether_stored_or_not`.
//! 12. **No response is stored on the cache's own judgement where web cache deception could
//!     exploit it** (unless the site turns the armour off): without a lifetime from the origin
//!     or the operator, nothing answering a request with credentials, nor a response whose type
//!     belies the path's extension. `deception::tests`,
//!     `storable::tests::deception_armour_stores_only_what_names_a_lifetime`,
//!     `deception_armour_gives_no_heuristic_freshness_to_a_response_to_a_cookie`,
//!     `deception_armour_gives_no_heuristic_freshness_when_the_type_belies_the_extension`.
//! 13. **The disk tier never brings back what the memory tier replaced or dropped**: an
//!     invalidated object is not promoted from a disk copy whose removal is still on its way,
//!     a promotion never lands on a newer store, and two changes to one object reach the disk
//!     in the order they were made. `write_order::tests`,
//!     `store::tests::an_invalidated_object_is_not_read_back_while_its_removal_is_on_its_way`,
//!     `store::tests::the_disk_ends_with_the_last_of_many_quick_changes_to_one_object`,
//!     `s4_3_4_a_background_refresh_answered_304_for_another_representation_fetches_it`.

pub mod coalesce;
pub mod disk;
pub mod key;
pub mod memory;
pub mod meta;
pub mod object;
pub mod outcome;
pub mod persist;
pub mod policy;
pub mod purge;
pub mod range;
pub mod store;
pub mod vary;
pub mod write_order;

pub use key::{CacheKey, ObjectId};
pub use object::StoredObject;
pub use outcome::CacheOutcome;
pub use purge::{Purge, PurgeScope};
pub use store::{Cache, Loaded, Lookup};
