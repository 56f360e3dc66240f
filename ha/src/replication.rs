//! The batch log, streamed from the leader to its standbys.
//!
//! Records travel as the log's own frames (`len | crc32c | payload`), so a
//! standby writes them verbatim and its log is a prefix of the leader's,
//! record for record. Each record belongs to the epoch of the leader that
//! wrote it (an epoch record opens a leader's run); as in Raft, two logs that
//! hold the same epoch starting at the same index agree up to where either
//! leaves it, so a standby that connects sends its epoch table and the
//! leader answers with the length of the prefix both hold. A standby keeps
//! exactly that much and truncates the rest: what a deposed leader wrote but
//! never replicated.
//!
//! A standby acknowledges the records it has made durable; in `sync` mode
//! the leader preconfirms and signs only what a standby has acknowledged.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant},
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Notify, Semaphore},
};

use crate::channel::{self, ChannelError, Receiver, Secret, Sender};

/// An epoch's first record in a log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochStart {
    pub epoch: u64,
    pub start: u64,
}

/// Whether a preconfirmation waits for a standby to hold it durably.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplicationMode {
    /// Preconfirm (and sign) only what a standby acknowledged: a failover
    /// loses nothing preconfirmed; a leader without a standby preconfirms nothing.
    Sync,
    /// Preconfirm at once: a failover may lose the newest preconfirmations.
    Async,
}

/// The longest epoch table a position may carry (one entry per leadership
/// change the log has seen).
pub const EPOCHS_MAX: usize = 1 << 16;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Standby → leader, once: how many records it holds, and their epochs.
    Position { count: u64, epochs: Vec<EpochStart> },
    /// Leader → standby, once: keep the first `common` records.
    Start { common: u64, leader_count: u64 },
    /// Leader → standby: records `first..` as log frames; `committed` is the
    /// leader's durable count.
    Records { first: u64, committed: u64, frames: Vec<u8> },
    /// Leader → standby, when idle.
    Heartbeat { committed: u64 },
    /// Standby → leader: records durable on the standby.
    Ack { durable: u64 },
    /// Either way, then the session ends.
    Refused { reason: String },
}

impl Message {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        let u64s =
            |out: &mut Vec<u8>, values: &[u64]| values.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        match self {
            Message::Position { count, epochs } => {
                out.push(1);
                u64s(out, &[*count, epochs.len() as u64]);
                for e in epochs {
                    u64s(out, &[e.epoch, e.start]);
                }
            }
            Message::Start { common, leader_count } => {
                out.push(2);
                u64s(out, &[*common, *leader_count]);
            }
            Message::Records { first, committed, frames } => {
                out.push(3);
                u64s(out, &[*first, *committed]);
                out.extend_from_slice(frames);
            }
            Message::Heartbeat { committed } => {
                out.push(4);
                u64s(out, &[*committed]);
            }
            Message::Ack { durable } => {
                out.push(5);
                u64s(out, &[*durable]);
            }
            Message::Refused { reason } => {
                out.push(6);
                out.extend_from_slice(reason.as_bytes());
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ChannelError> {
        let malformed = |what: &str| ChannelError::Malformed(what.to_string());
        let (&kind, mut rest) = bytes.split_first().ok_or_else(|| malformed("an empty message"))?;
        let mut u64_next = || -> Result<u64, ChannelError> {
            let (head, tail) = rest.split_at_checked(8).ok_or_else(|| malformed("a message cut short"))?;
            rest = tail;
            Ok(u64::from_le_bytes(head.try_into().expect("8 bytes")))
        };
        let message = match kind {
            1 => {
                let count = u64_next()?;
                let len = u64_next()?;
                if len > EPOCHS_MAX as u64 {
                    return Err(malformed("an epoch table above EPOCHS_MAX"));
                }
                let mut epochs = Vec::with_capacity(usize::try_from(len).expect("at most EPOCHS_MAX"));
                for _ in 0..len {
                    epochs.push(EpochStart { epoch: u64_next()?, start: u64_next()? });
                }
                Message::Position { count, epochs }
            }
            2 => Message::Start { common: u64_next()?, leader_count: u64_next()? },
            3 => {
                let (first, committed) = (u64_next()?, u64_next()?);
                Message::Records { first, committed, frames: rest.to_vec() }
            }
            4 => Message::Heartbeat { committed: u64_next()? },
            5 => Message::Ack { durable: u64_next()? },
            6 => Message::Refused { reason: String::from_utf8_lossy(rest).into_owned() },
            other => return Err(ChannelError::Malformed(format!("message kind {other}"))),
        };
        if !matches!(message, Message::Records { .. } | Message::Refused { .. }) && !rest.is_empty() {
            return Err(malformed("trailing bytes"));
        }
        Ok(message)
    }
}

/// How many records a standby with `standby` (holding `standby_count`
/// records) shares with a leader with `leader` (holding `leader_count`):
/// epoch by epoch, while both hold the same epoch from the same index.
pub fn common_prefix(leader: &[EpochStart], leader_count: u64, standby: &[EpochStart], standby_count: u64) -> u64 {
    let end = |table: &[EpochStart], i: usize, count: u64| table.get(i + 1).map_or(count, |next| next.start);
    let mut common = 0;
    for (i, theirs) in standby.iter().enumerate() {
        let Some(j) = leader.iter().position(|ours| ours.epoch == theirs.epoch) else { break };
        if leader[j].start != theirs.start || i != j {
            break;
        }
        let (standby_end, leader_end) = (end(standby, i, standby_count), end(leader, j, leader_count));
        common = standby_end.min(leader_end);
        if standby_end != leader_end {
            break;
        }
    }
    common.min(standby_count).min(leader_count)
}

/// Where records older than the leader's in-memory window come from: the
/// leader's batch log on disk.
pub trait LogSource: Send + Sync + std::fmt::Debug {
    /// Appends the frames of records `first..end` to `out`, stopping before
    /// `out` passes `bytes_max` (at least one record if there is one);
    /// returns how many records it appended.
    fn read_frames(&self, first: u64, end: u64, bytes_max: usize, out: &mut Vec<u8>) -> std::io::Result<u64>;
}

#[derive(Debug, Default, Clone)]
pub struct StandbyState {
    pub durable: u64,
    pub connected: bool,
}

#[derive(Debug)]
struct FeedState {
    /// The index of `frames[0]`.
    base: u64,
    frames: VecDeque<Vec<u8>>,
    bytes: usize,
    appended: u64,
    committed: u64,
    epochs: Vec<EpochStart>,
    standbys: BTreeMap<String, StandbyState>,
}

/// The leader's batch log as the replication sessions see it: the newest
/// frames in memory (at most `window_bytes_max`), the durable count, and
/// what each standby has acknowledged.
#[derive(Debug)]
pub struct Feed {
    state: Mutex<FeedState>,
    acked: Condvar,
    committed_changed: Notify,
    window_bytes_max: usize,
}

impl Feed {
    pub fn new(count: u64, epochs: Vec<EpochStart>, window_bytes_max: usize) -> Self {
        Self {
            state: Mutex::new(FeedState {
                base: count,
                frames: VecDeque::new(),
                bytes: 0,
                appended: count,
                committed: count,
                epochs,
                standbys: BTreeMap::new(),
            }),
            acked: Condvar::new(),
            committed_changed: Notify::new(),
            window_bytes_max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FeedState> {
        self.state.lock().expect("feed lock")
    }

    /// The next record to be appended opens `epoch`.
    pub fn start_epoch(&self, epoch: u64) {
        let mut state = self.lock();
        let start = state.appended;
        state.epochs.push(EpochStart { epoch, start });
    }

    /// A record's frame, just appended to the log (not yet durable).
    pub fn append(&self, frame: Vec<u8>) {
        let mut state = self.lock();
        state.bytes += frame.len();
        state.frames.push_back(frame);
        state.appended += 1;
        while state.bytes > self.window_bytes_max && state.frames.len() > 1 {
            let oldest = state.frames.pop_front().expect("more than one frame");
            state.bytes -= oldest.len();
            state.base += 1;
        }
    }

    /// Everything appended is durable: the sessions may send it.
    pub fn commit(&self) {
        let mut state = self.lock();
        if state.committed != state.appended {
            state.committed = state.appended;
            drop(state);
            self.committed_changed.notify_waiters();
        }
    }

    pub fn committed(&self) -> u64 {
        self.lock().committed
    }

    /// Blocks until some standby holds the first `count` records durably,
    /// or `timeout` passes; whether one does.
    pub fn wait_replicated(&self, count: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if state.standbys.values().any(|s| s.durable >= count) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self.acked.wait_timeout(state, left).expect("feed lock").0;
        }
    }

    /// Whether some standby is connected now.
    pub fn standby_connected(&self) -> bool {
        self.lock().standbys.values().any(|s| s.connected)
    }

    /// Each standby seen since this node leads: durable count, connected.
    pub fn standbys(&self) -> BTreeMap<String, StandbyState> {
        self.lock().standbys.clone()
    }

    fn ack(&self, standby: &str, durable: u64) {
        let mut state = self.lock();
        let entry = state.standbys.entry(standby.to_string()).or_default();
        entry.durable = entry.durable.max(durable);
        drop(state);
        self.acked.notify_all();
    }

    fn set_connected(&self, standby: &str, connected: bool, durable: u64) {
        let mut state = self.lock();
        let entry = state.standbys.entry(standby.to_string()).or_default();
        entry.connected = connected;
        // A standby that truncated holds only the common prefix.
        if connected {
            entry.durable = durable;
        }
    }

    fn position(&self) -> (Vec<EpochStart>, u64) {
        let state = self.lock();
        (state.epochs.clone(), state.committed)
    }

    /// Frames `first..committed` from memory, up to `bytes_max`; `None` if
    /// `first` has left the window.
    fn frames(&self, first: u64, bytes_max: usize, out: &mut Vec<u8>) -> Option<u64> {
        let state = self.lock();
        if first < state.base {
            return None;
        }
        let mut sent = 0;
        let skip = usize::try_from(first - state.base).expect("the window holds fewer than 2^32 frames");
        for frame in state.frames.iter().skip(skip) {
            if first + sent >= state.committed || (sent > 0 && out.len() + frame.len() > bytes_max) {
                break;
            }
            out.extend_from_slice(frame);
            sent += 1;
        }
        Some(sent)
    }
}

/// The leader's end of replication.
#[derive(Debug)]
pub struct LeaderConfig {
    pub node_id: String,
    /// The node ids allowed to follow.
    pub peers: Vec<String>,
    pub secret: Arc<Secret>,
    /// Sessions at once.
    pub standbys_max: usize,
    /// A heartbeat goes out after this long without records.
    pub heartbeat: Duration,
    /// The frame bytes one message gathers (it carries at least one record).
    pub message_bytes_max: usize,
    /// The largest frame the log writes.
    pub frame_bytes_max: usize,
}

/// Accepts standbys until the task is dropped.
pub async fn serve(listener: TcpListener, feed: Arc<Feed>, source: Arc<dyn LogSource>, config: Arc<LeaderConfig>) {
    let sessions = Arc::new(Semaphore::new(config.standbys_max));
    loop {
        let Ok((stream, peer)) = listener.accept().await else { continue };
        let Ok(permit) = sessions.clone().try_acquire_owned() else {
            tracing::warn!(%peer, standbys_max = config.standbys_max, "replication connection refused: ha.standbys_max reached");
            continue;
        };
        let (feed, source, config) = (feed.clone(), source.clone(), config.clone());
        tokio::spawn(async move {
            if let Err(error) = session(stream, &feed, &*source, &config).await {
                tracing::warn!(%peer, %error, "replication session ended");
            }
            drop(permit);
        });
    }
}

/// The handshake's bound: a peer that stalls in it is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest message body: a message's frames (up to `message_bytes_max`,
/// or one frame above it) and the header.
fn body_bytes_max(message_bytes_max: usize, frame_bytes_max: usize) -> usize {
    message_bytes_max + frame_bytes_max + 64
}

async fn session(
    stream: TcpStream,
    feed: &Feed,
    source: &dyn LogSource,
    config: &LeaderConfig,
) -> Result<(), ChannelError> {
    let body_max = body_bytes_max(config.message_bytes_max, config.frame_bytes_max);
    let (standby, mut tx, mut rx) =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, channel::accept(stream, &config.secret, &config.node_id, body_max))
            .await
            .map_err(|_| ChannelError::Auth("the handshake timed out"))??;
    let mut buffer = Vec::new();
    if !config.peers.contains(&standby) {
        Message::Refused { reason: format!("{standby} is not in ha.peers") }.encode(&mut buffer);
        tx.send(&buffer).await?;
        return Err(ChannelError::Auth("a peer not in ha.peers"));
    }
    let Message::Position { count, epochs } = Message::decode(rx.recv().await?)? else {
        return Err(ChannelError::Malformed("expected the standby's position".into()));
    };
    let (ours, leader_count) = feed.position();
    let common = common_prefix(&ours, leader_count, &epochs, count);
    Message::Start { common, leader_count }.encode(&mut buffer);
    tx.send(&buffer).await?;
    tracing::info!(standby, held = count, common, leader_count, "standby following");
    feed.set_connected(&standby, true, common);
    let result = stream_records(&standby, tx, rx, common, feed, source, config).await;
    feed.set_connected(&standby, false, 0);
    result
}

async fn stream_records(
    standby: &str,
    mut tx: Sender,
    mut rx: Receiver,
    mut cursor: u64,
    feed: &Feed,
    source: &dyn LogSource,
    config: &LeaderConfig,
) -> Result<(), ChannelError> {
    let acks = async {
        loop {
            match Message::decode(rx.recv().await?)? {
                Message::Ack { durable } => feed.ack(standby, durable),
                other => return Err(ChannelError::Malformed(format!("a standby sent {other:?}"))),
            }
        }
    };
    let sends = async {
        let mut frames = Vec::new();
        let mut buffer = Vec::new();
        loop {
            let changed = feed.committed_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let committed = feed.committed();
            if cursor < committed {
                frames.clear();
                let sent = match feed.frames(cursor, config.message_bytes_max, &mut frames) {
                    Some(sent) => sent,
                    None => source.read_frames(cursor, committed, config.message_bytes_max, &mut frames)?,
                };
                if sent == 0 {
                    return Err(ChannelError::Malformed(format!("record {cursor} is missing from the log")));
                }
                Message::Records { first: cursor, committed, frames: std::mem::take(&mut frames) }.encode(&mut buffer);
                tx.send(&buffer).await?;
                cursor += sent;
                continue;
            }
            if tokio::time::timeout(config.heartbeat, changed).await.is_err() {
                Message::Heartbeat { committed }.encode(&mut buffer);
                tx.send(&buffer).await?;
            }
        }
    };
    tokio::select! {
        result = acks => result,
        result = sends => result,
    }
}

/// A standby's session with its leader.
#[derive(Debug)]
pub struct Follower {
    pub leader_id: String,
    /// Records both hold: the standby keeps these and truncates the rest.
    pub common: u64,
    pub leader_count: u64,
    tx: Sender,
    rx: Receiver,
    buffer: Vec<u8>,
}

impl Follower {
    /// Connects, authenticates, and agrees on the common prefix.
    pub async fn connect(
        address: &str,
        secret: &Secret,
        node_id: &str,
        count: u64,
        epochs: Vec<EpochStart>,
        message_bytes_max: usize,
        frame_bytes_max: usize,
    ) -> Result<Self, ChannelError> {
        let handshake = async {
            let stream = TcpStream::connect(address).await?;
            let (leader_id, mut tx, mut rx) =
                channel::connect(stream, secret, node_id, body_bytes_max(message_bytes_max, frame_bytes_max)).await?;
            let mut buffer = Vec::new();
            Message::Position { count, epochs }.encode(&mut buffer);
            tx.send(&buffer).await?;
            match Message::decode(rx.recv().await?)? {
                Message::Start { common, leader_count } => Ok(Self { leader_id, common, leader_count, tx, rx, buffer }),
                Message::Refused { reason } => Err(ChannelError::Malformed(format!("the leader refused: {reason}"))),
                other => Err(ChannelError::Malformed(format!("expected the start, got {other:?}"))),
            }
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
            .await
            .map_err(|_| ChannelError::Auth("the handshake timed out"))?
    }

    /// The next message from the leader.
    pub async fn next(&mut self) -> Result<Message, ChannelError> {
        Message::decode(self.rx.recv().await?)
    }

    /// Tells the leader the first `durable` records are durable here.
    pub async fn ack(&mut self, durable: u64) -> Result<(), ChannelError> {
        Message::Ack { durable }.encode(&mut self.buffer);
        self.tx.send(&self.buffer).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(u64, u64)]) -> Vec<EpochStart> {
        entries.iter().map(|&(epoch, start)| EpochStart { epoch, start }).collect()
    }

    #[test]
    fn the_common_prefix_follows_the_epochs() {
        let leader = table(&[(0, 0), (5, 10), (9, 20)]);
        // A standby behind in the same epoch keeps everything.
        assert_eq!(common_prefix(&leader, 30, &table(&[(0, 0), (5, 10)]), 15), 15);
        // Caught up.
        assert_eq!(common_prefix(&leader, 30, &table(&[(0, 0), (5, 10), (9, 20)]), 30), 30);
        // The deposed leader of epoch 5 wrote 4 records past what epoch 9 kept.
        assert_eq!(common_prefix(&leader, 30, &table(&[(0, 0), (5, 10)]), 24), 20);
        // A deposed leader whose own epoch never reached anyone.
        assert_eq!(common_prefix(&leader, 30, &table(&[(0, 0), (5, 10), (7, 18)]), 19), 18);
        // Nothing in common beyond genesis's epoch.
        assert_eq!(common_prefix(&table(&[(0, 0), (3, 2)]), 9, &table(&[(0, 0), (4, 2)]), 5), 2);
        // A log ahead of the leader is cut to the leader's length.
        assert_eq!(common_prefix(&table(&[(0, 0)]), 4, &table(&[(0, 0)]), 9), 4);
        assert_eq!(common_prefix(&leader, 30, &[], 0), 0);
    }

    #[test]
    fn messages_round_trip_and_garbage_is_refused() {
        let messages = [
            Message::Position { count: 7, epochs: table(&[(0, 0), (4, 3)]) },
            Message::Start { common: 3, leader_count: 9 },
            Message::Records { first: 3, committed: 9, frames: vec![1, 2, 3] },
            Message::Heartbeat { committed: 9 },
            Message::Ack { durable: 8 },
            Message::Refused { reason: "no".into() },
        ];
        let mut buffer = Vec::new();
        for message in messages {
            message.encode(&mut buffer);
            assert_eq!(Message::decode(&buffer).unwrap(), message);
            if !matches!(message, Message::Records { .. } | Message::Refused { .. }) {
                assert!(Message::decode(&buffer[..buffer.len() - 1]).is_err());
            }
        }
        assert!(Message::decode(&[]).is_err());
        assert!(Message::decode(&[9]).is_err());
        let mut huge = vec![1];
        huge.extend_from_slice(&0u64.to_le_bytes());
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(Message::decode(&huge).is_err());
    }

    #[test]
    fn the_window_is_bounded_and_waits_see_acks() {
        let feed = Feed::new(0, table(&[(0, 0)]), 10);
        for _ in 0..5 {
            feed.append(vec![0; 4]);
        }
        feed.commit();
        let mut out = Vec::new();
        // Only the newest frames fit the 10-byte window.
        assert_eq!(feed.frames(0, 100, &mut out), None);
        assert_eq!(feed.frames(3, 100, &mut out), Some(2));
        assert!(!feed.wait_replicated(5, Duration::from_millis(10)));
        feed.set_connected("b", true, 0);
        feed.ack("b", 5);
        assert!(feed.wait_replicated(5, Duration::from_millis(10)));
    }
}
