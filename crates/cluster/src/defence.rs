//! Attack state shared by every edge: when one edge's detector trips for a site, every edge
//! challenges for that site within a second, and the hold ends cluster-wide once no edge
//! reports the attack any more.
//!
//! Each node announces the sites its own detection holds under attack on the
//! `palisade:defence` stream: at once on each switch, and again every [`REFRESH`] while the
//! attack lasts. Every node reads the stream and holds a site while some other node's latest
//! word on it is "on" and younger than [`EXPIRE`] (a node that dies mid-attack lets go by
//! itself). Messages are signed and carry their time: one older than [`EXPIRE`] is refused,
//! so a replayed "on" cannot hold a site for good.

use crate::envelope::{Envelope, Refused};
use crate::link;
use crate::secret::Keys;
use crate::status::{Status, now_ms};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The stream of attack announcements.
pub const DEFENCE_KEY: &str = "palisade:defence";
/// Announcements the stream keeps (about).
const KEEP: u64 = 1_000;
/// How often a node repeats that an attack it sees goes on.
pub const REFRESH: Duration = Duration::from_secs(2);
/// How long a node's "on" holds without being repeated.
pub const EXPIRE: Duration = Duration::from_secs(10);
/// The message kind of an announcement.
pub const KIND: &str = "attack";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Announcement {
    site: String,
    on: bool,
    /// When it was sent, Unix milliseconds.
    at: u64,
}

/// Shares this node's attack state with the cluster's and applies the others'.
pub struct Defence {
    /// This node's name.
    pub node: String,
    /// The cluster's keys.
    pub keys: Arc<Keys>,
    /// The cluster's Redis.
    pub client: redis::Client,
    /// Where refusals are counted.
    pub status: Arc<Status>,
    /// The edge whose detection is shared and which holds what the others detect.
    pub edge: Arc<edge::Edge>,
}

impl Defence {
    /// Starts announcing and following; runs until the process ends.
    pub fn start(self) {
        let (switched, switches) = tokio::sync::mpsc::unbounded_channel();
        self.edge
            .set_attack_hook(Arc::new(move |site: &str, on: bool| {
                let _ = switched.send((site.to_string(), on));
            }));
        let this = Arc::new(self);
        tokio::spawn(Arc::clone(&this).announce(switches));
        tokio::spawn(this.follow());
    }

    async fn announce(
        self: Arc<Self>,
        mut switches: tokio::sync::mpsc::UnboundedReceiver<(String, bool)>,
    ) {
        let mut wait = link::MIN_BACKOFF;
        let mut refresh = tokio::time::interval(REFRESH);
        loop {
            let mut con =
                link::connect_retrying(&self.client, link::RESPONSE_TIMEOUT, &mut wait).await;
            loop {
                let sent = tokio::select! {
                    switch = switches.recv() => match switch {
                        Some((site, on)) => self.send(&mut con, site, on).await,
                        None => return,
                    },
                    _ = refresh.tick() => {
                        let mut sent = Ok(());
                        for site in self.edge.attacked_sites() {
                            sent = self.send(&mut con, site, true).await;
                            if sent.is_err() {
                                break;
                            }
                        }
                        sent
                    }
                };
                if sent.is_err() {
                    // What was lost is said again at the next refresh.
                    break;
                }
            }
            link::back_off(&mut wait).await;
        }
    }

    async fn send(
        &self,
        con: &mut redis::aio::MultiplexedConnection,
        site: String,
        on: bool,
    ) -> redis::RedisResult<()> {
        let body = serde_json::to_vec(&Announcement {
            site,
            on,
            at: now_ms(),
        })
        .expect("an announcement serialises");
        let sealed = Envelope::new(KIND, &self.node, 0, body).seal(&self.keys);
        redis::cmd("XADD")
            .arg(DEFENCE_KEY)
            .arg("MAXLEN")
            .arg("~")
            .arg(KEEP)
            .arg("*")
            .arg("m")
            .arg(sealed)
            .query_async::<String>(con)
            .await
            .map(|_| ())
    }

    async fn follow(self: Arc<Self>) {
        // Per site, the other nodes' latest word: on or off, and when.
        let mut words: HashMap<String, HashMap<String, (bool, u64)>> = HashMap::new();
        let mut wait = link::MIN_BACKOFF;
        // Where reading goes on from: the stream's end when first connected (older
        // announcements have expired or will be repeated), then the last one read, so that a
        // reconnection reads what came meanwhile.
        let mut cursor: Option<String> = None;
        loop {
            let Ok(mut con) =
                link::connect(&self.client, link::RESPONSE_TIMEOUT + link::BLOCK).await
            else {
                self.expire(&mut words);
                link::back_off(&mut wait).await;
                continue;
            };
            if cursor.is_none() {
                // Not `$` in each read: that means "after whatever is last when this read
                // starts", and an announcement made between two reads would be missed.
                match link::last_id(&mut con, DEFENCE_KEY).await {
                    Ok(id) => cursor = Some(id),
                    Err(_) => {
                        link::back_off(&mut wait).await;
                        continue;
                    }
                }
            }
            wait = link::MIN_BACKOFF;
            let cursor = cursor.get_or_insert_with(|| "0-0".into());
            loop {
                let reply: redis::RedisResult<Option<redis::streams::StreamReadReply>> =
                    redis::cmd("XREAD")
                        .arg("COUNT")
                        .arg(256)
                        .arg("BLOCK")
                        .arg(link::BLOCK.as_millis() as u64)
                        .arg("STREAMS")
                        .arg(DEFENCE_KEY)
                        .arg(&*cursor)
                        .query_async(&mut con)
                        .await;
                let Ok(reply) = reply else { break };
                for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                    *cursor = entry.id.clone();
                    let Some(redis::Value::BulkString(bytes)) = entry.map.get("m") else {
                        self.status.refused(Refused::Malformed);
                        continue;
                    };
                    if let Some((node, word)) = self.open(bytes) {
                        let site = word.site.clone();
                        words
                            .entry(word.site)
                            .or_default()
                            .insert(node, (word.on, word.at));
                        self.apply(&site, words.get(&site));
                    }
                }
                self.expire(&mut words);
            }
            link::back_off(&mut wait).await;
        }
    }

    /// A verified announcement from another node.
    fn open(&self, bytes: &[u8]) -> Option<(String, Announcement)> {
        let message = match Envelope::open(bytes, &self.keys) {
            Ok(message) if message.kind == KIND => message,
            Ok(_) => {
                self.status.refused(Refused::Unexpected);
                return None;
            }
            Err(reason) => {
                self.status.refused(reason);
                return None;
            }
        };
        if message.node == self.node {
            return None;
        }
        let Ok(word) = serde_json::from_slice::<Announcement>(&message.body) else {
            self.status.refused(Refused::Body);
            return None;
        };
        if now_ms().saturating_sub(word.at) > EXPIRE.as_millis() as u64 {
            // Too old to believe: a replay, or a node whose clock is far behind.
            self.status.refused(Refused::Unexpected);
            return None;
        }
        Some((message.node, word))
    }

    /// Holds the site while some other node's fresh word is "on".
    fn apply(&self, site: &str, words: Option<&HashMap<String, (bool, u64)>>) {
        let now = now_ms();
        let held = words.is_some_and(|words| {
            words
                .values()
                .any(|(on, at)| *on && now.saturating_sub(*at) <= EXPIRE.as_millis() as u64)
        });
        self.edge.hold_for_cluster(site, held);
    }

    /// Lets go of the sites whose every "on" has expired.
    fn expire(&self, words: &mut HashMap<String, HashMap<String, (bool, u64)>>) {
        let now = now_ms();
        let expire = EXPIRE.as_millis() as u64;
        words.retain(|site, by_node| {
            by_node.retain(|_, (_, at)| now.saturating_sub(*at) <= expire);
            if by_node.values().any(|(on, _)| *on) {
                return true;
            }
            self.edge.hold_for_cluster(site, false);
            false
        });
    }
}
