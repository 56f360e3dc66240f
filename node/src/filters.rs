//! Polling filters (eth_newFilter, eth_newBlockFilter,
//! eth_newPendingTransactionFilter): the one owner of every filter's kind,
//! place and owner. Bounded in all and per client address, removed when not
//! polled for `rpc.filter_idle_timeout_s`, and kept in a journal in the data
//! dir, so that a restart, even a kill -9, neither loses a filter nor
//! delivers anything twice: a filter's new place is durable before the
//! changes that reach it are answered.
//!
//! ```text
//! install ──> Install record ─┐
//! poll: changes from the view, ├─> filters.jsonl (one JSON record a line, written under the lock;
//!   Advance record, answer     │    rewritten whole, atomically, when mostly dead lines)
//! rewind: Removed record ──────┤  then, the lock released: Durable::wait, one fdatasync for every
//! uninstall, idle: Uninstall ──┘    line written before it (group commit), before the answer leaves
//! ```
//!
//! As with geth, delivery is at most once: a poll whose answer is lost in
//! flight (the node killed after the new place is durable, or the client
//! gone) is not answered again.
//!
//! Invariants: every filter in the table has its latest place in the
//! journal; at most `filters_max` filters, at most `filters_per_client_max`
//! of one client address; a filter's place only moves forward, except when
//! the chain is rewound below it.

use std::{
    collections::HashMap,
    fs::{self, File, OpenOptions},
    io::{self, BufRead, BufReader, Write},
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use alloy_primitives::{B128, keccak256};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A filter's id, as geth gives them: 16 bytes, hex.
pub type FilterId = B128;

/// A journal with more dead lines than this beyond twice its live filters
/// is rewritten.
pub const JOURNAL_SLACK_LINES: usize = 1024;

/// What a filter watches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum FilterSpec {
    /// eth_newFilter: logs of new sealed blocks, its object as the client
    /// sent it (read again on a restart).
    Logs { request: Value },
    /// eth_newBlockFilter: the hashes of new sealed blocks.
    Blocks,
    /// eth_newPendingTransactionFilter: the hashes of newly preconfirmed
    /// transactions.
    PendingTransactions,
}

/// Where a filter's next changes start: block `block` (for pending
/// transactions, at its transaction `index`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Place {
    pub block: u64,
    pub index: u64,
}

impl Place {
    pub fn block(block: u64) -> Self {
        Self { block, index: 0 }
    }
}

/// One installed filter.
#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    pub spec: FilterSpec,
    pub place: Place,
    pub client: IpAddr,
    /// A log filter's logs that a rewind took back after they were
    /// delivered: answered (`removed: true`) before the next new ones.
    pub removed: Vec<Value>,
    polled: Instant,
}

/// The bounds on filters (`[rpc]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterLimits {
    pub filters_max: usize,
    pub filters_per_client_max: usize,
    pub idle_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("filter not found")]
    NotFound,
    #[error("{0} filters are installed, the most this node keeps (rpc.filters_max)")]
    TooMany(usize),
    #[error("this client address has {0} filters installed, the most it may (rpc.filters_per_client_max)")]
    TooManyForClient(usize),
    #[error("filter journal {path}: {source}")]
    Journal { path: PathBuf, source: io::Error },
    #[error("filter journal {path}, line {line}: {reason}; move the file away to start without its filters")]
    Corrupt { path: PathBuf, line: usize, reason: String },
}

/// One line of the journal.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
enum Record {
    Install {
        id: FilterId,
        client: IpAddr,
        spec: FilterSpec,
        place: Place,
    },
    /// Its changes up to `place` were answered (and its removed logs, if any).
    Advance {
        id: FilterId,
        place: Place,
    },
    /// A rewind moved it back to `place`, with `logs` to answer as removed.
    Rewound {
        id: FilterId,
        place: Place,
        logs: Vec<Value>,
    },
    Uninstall {
        id: FilterId,
    },
}

/// The installed filters and their journal; see the module comment.
#[derive(Debug)]
pub struct Filters {
    filters: HashMap<FilterId, Filter>,
    per_client: HashMap<IpAddr, usize>,
    limits: FilterLimits,
    journal: Journal,
    /// New ids: keccak(seed, counter), unguessable by other clients.
    seed: [u8; 32],
    next_id: u64,
}

impl Filters {
    /// The filters the journal at `path` holds (none if it does not exist),
    /// each counted as polled at `now`; the journal is rewritten with them
    /// alone. `seed` makes the new ids.
    pub fn open(path: &Path, limits: FilterLimits, seed: [u8; 32], now: Instant) -> Result<Self, FilterError> {
        let mut filters = HashMap::new();
        for record in Journal::read(path)? {
            apply(&mut filters, record, now);
        }
        let mut per_client = HashMap::new();
        for filter in filters.values() {
            *per_client.entry(filter.client).or_default() += 1;
        }
        let journal = Journal::rewrite(path, &filters)?;
        Ok(Self { filters, per_client, limits, journal, seed, next_id: 0 })
    }

    pub fn len(&self) -> usize {
        self.filters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// Installs a filter for `client`, starting at `place` (durable at the
    /// next `Durable::wait`).
    pub fn install(
        &mut self,
        client: IpAddr,
        spec: FilterSpec,
        place: Place,
        now: Instant,
    ) -> Result<FilterId, FilterError> {
        self.remove_idle(now)?;
        if self.filters.len() >= self.limits.filters_max {
            return Err(FilterError::TooMany(self.filters.len()));
        }
        let owned = self.per_client.get(&client).copied().unwrap_or(0);
        if owned >= self.limits.filters_per_client_max {
            return Err(FilterError::TooManyForClient(owned));
        }
        let id = self.new_id();
        self.record(Record::Install { id, client, spec, place }, now)?;
        Ok(id)
    }

    /// Removes a filter; whether it was installed.
    pub fn uninstall(&mut self, id: FilterId, now: Instant) -> Result<bool, FilterError> {
        if !self.filters.contains_key(&id) {
            return Ok(false);
        }
        self.record(Record::Uninstall { id }, now)?;
        Ok(true)
    }

    /// A filter being polled at `now` (its idle time starts again); not
    /// found when idle too long.
    pub fn poll(&mut self, id: FilterId, now: Instant) -> Result<&Filter, FilterError> {
        let idle = self.filters.get(&id).ok_or(FilterError::NotFound)?.is_idle(now, self.limits.idle_timeout);
        if idle {
            self.record(Record::Uninstall { id }, now)?;
            return Err(FilterError::NotFound);
        }
        let filter = self.filters.get_mut(&id).ok_or(FilterError::NotFound)?;
        filter.polled = now;
        Ok(filter)
    }

    /// Where the journal stands now: every change made so far is durable
    /// once the point's `wait` returns. Taken under the filters' lock, waited
    /// on after it, so that concurrent changes share one fdatasync.
    pub fn durable(&self) -> Durable {
        Durable { point: self.journal.sync.clone(), line: self.journal.sync.written.load(Ordering::Acquire) }
    }

    /// A filter, without counting as a poll.
    pub fn get(&self, id: &FilterId) -> Option<&Filter> {
        self.filters.get(id)
    }

    /// The filter's changes up to `place` are about to be answered (and its
    /// removed logs): durable at the next `Durable::wait`, which the answer
    /// waits for.
    pub fn advance(&mut self, id: FilterId, place: Place, now: Instant) -> Result<(), FilterError> {
        let filter = self.filters.get(&id).ok_or(FilterError::NotFound)?;
        if filter.place == place && filter.removed.is_empty() {
            return Ok(());
        }
        self.record(Record::Advance { id, place }, now)
    }

    /// The chain was rewound: each filter placed beyond `place` goes back
    /// to it, a log filter with `removed(filter, delivered_below)` queued to
    /// answer as removed (logs it delivered from the abandoned blocks).
    pub fn rewind(
        &mut self,
        place: Place,
        mut removed: impl FnMut(&Filter, u64) -> Vec<Value>,
        now: Instant,
    ) -> Result<(), FilterError> {
        let behind: Vec<(FilterId, Vec<Value>)> = self
            .filters
            .iter()
            .filter(|(_, filter)| filter.place > place)
            .map(|(id, filter)| {
                let mut logs = filter.removed.clone();
                logs.extend(removed(filter, filter.place.block));
                (*id, logs)
            })
            .collect();
        for (id, logs) in behind {
            self.record(Record::Rewound { id, place, logs }, now)?;
        }
        Ok(())
    }

    /// Removes every filter idle at `now`.
    pub fn remove_idle(&mut self, now: Instant) -> Result<(), FilterError> {
        let timeout = self.limits.idle_timeout;
        let idle: Vec<FilterId> =
            self.filters.iter().filter(|(_, filter)| filter.is_idle(now, timeout)).map(|(id, _)| *id).collect();
        for id in idle {
            self.record(Record::Uninstall { id }, now)?;
        }
        Ok(())
    }

    fn new_id(&mut self) -> FilterId {
        loop {
            let mut input = self.seed.to_vec();
            input.extend_from_slice(&self.next_id.to_be_bytes());
            self.next_id += 1;
            let id = FilterId::from_slice(&keccak256(input)[..16]);
            if !self.filters.contains_key(&id) {
                return id;
            }
        }
    }

    /// Writes `record` (durable at the next `Durable::wait`), then applies
    /// it; rewrites the journal when it has grown mostly dead.
    fn record(&mut self, record: Record, now: Instant) -> Result<(), FilterError> {
        self.journal.append(&record)?;
        match &record {
            Record::Install { client, .. } => *self.per_client.entry(*client).or_default() += 1,
            Record::Uninstall { id } => {
                if let Some(filter) = self.filters.get(id) {
                    let client = filter.client;
                    let owned = self.per_client.entry(client).or_default();
                    *owned = owned.saturating_sub(1);
                    if *owned == 0 {
                        self.per_client.remove(&client);
                    }
                }
            }
            Record::Advance { .. } | Record::Rewound { .. } => {}
        }
        apply(&mut self.filters, record, now);
        if self.journal.lines > 2 * self.filters.len() + JOURNAL_SLACK_LINES {
            self.journal = Journal::rewrite(&self.journal.path, &self.filters)?;
        }
        Ok(())
    }
}

impl Filter {
    fn is_idle(&self, now: Instant, timeout: Duration) -> bool {
        now.saturating_duration_since(self.polled) > timeout
    }
}

/// Applies one record to the table (as written, or as read back).
fn apply(filters: &mut HashMap<FilterId, Filter>, record: Record, now: Instant) {
    match record {
        Record::Install { id, client, spec, place } => {
            filters.insert(id, Filter { spec, place, client, removed: Vec::new(), polled: now });
        }
        Record::Advance { id, place } => {
            if let Some(filter) = filters.get_mut(&id) {
                filter.place = place;
                filter.removed.clear();
            }
        }
        Record::Rewound { id, place, logs } => {
            if let Some(filter) = filters.get_mut(&id) {
                filter.place = place;
                filter.removed = logs;
            }
        }
        Record::Uninstall { id } => {
            filters.remove(&id);
        }
    }
}

/// The journal file: appended a line at a time, fdatasync'd by groups.
#[derive(Debug)]
struct Journal {
    path: PathBuf,
    file: File,
    lines: usize,
    sync: Arc<SyncPoint>,
}

/// How far a journal file is written and how far it is durable, in lines.
#[derive(Debug)]
struct SyncPoint {
    path: PathBuf,
    file: File,
    written: AtomicU64,
    /// Lines durable; held while an fdatasync runs, so that one waiter
    /// syncs for all those behind it.
    synced: Mutex<u64>,
}

/// A point of the journal (`Filters::durable`).
#[derive(Debug)]
#[must_use = "a change is durable only once waited on"]
pub struct Durable {
    point: Arc<SyncPoint>,
    line: u64,
}

impl Durable {
    /// Returns once every line written before the point is on disk.
    pub fn wait(self) -> Result<(), FilterError> {
        let point = &self.point;
        let mut synced = point.synced.lock().expect("journal sync lock");
        if *synced >= self.line {
            return Ok(());
        }
        let target = point.written.load(Ordering::Acquire);
        point.file.sync_data().map_err(|source| FilterError::Journal { path: point.path.clone(), source })?;
        *synced = target;
        Ok(())
    }
}

impl Journal {
    /// Every whole record in the file. A torn last line (a crash while it was
    /// written) is dropped; a bad line before it is an error.
    fn read(path: &Path) -> Result<Vec<Record>, FilterError> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(FilterError::Journal { path: path.into(), source }),
        };
        let lines: Vec<String> = BufReader::new(file)
            .lines()
            .collect::<Result<_, _>>()
            .map_err(|source| FilterError::Journal { path: path.into(), source })?;
        let mut records = Vec::with_capacity(lines.len());
        for (number, line) in lines.iter().enumerate() {
            match serde_json::from_str(line) {
                Ok(record) => records.push(record),
                Err(_) if number + 1 == lines.len() => break,
                Err(error) => {
                    return Err(FilterError::Corrupt {
                        path: path.into(),
                        line: number + 1,
                        reason: error.to_string(),
                    });
                }
            }
        }
        Ok(records)
    }

    /// Writes `filters` alone to a new file and puts it in `path`'s place.
    fn rewrite(path: &Path, filters: &HashMap<FilterId, Filter>) -> Result<Self, FilterError> {
        let error = |source| FilterError::Journal { path: path.into(), source };
        let fresh = path.with_extension("jsonl.new");
        let mut text = String::new();
        for (id, filter) in filters {
            let install =
                Record::Install { id: *id, client: filter.client, spec: filter.spec.clone(), place: filter.place };
            push_line(&mut text, &install);
            if !filter.removed.is_empty() {
                push_line(&mut text, &Record::Rewound { id: *id, place: filter.place, logs: filter.removed.clone() });
            }
        }
        let mut file = File::create(&fresh).map_err(error)?;
        file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(error)?;
        fs::rename(&fresh, path).map_err(error)?;
        if let Some(dir) = path.parent() {
            File::open(dir).and_then(|dir| dir.sync_all()).map_err(error)?;
        }
        let file = OpenOptions::new().append(true).open(path).map_err(error)?;
        let lines = text.lines().count();
        // What the rewrite wrote is durable already.
        let sync = Arc::new(SyncPoint {
            path: path.into(),
            file: file.try_clone().map_err(error)?,
            written: AtomicU64::new(lines as u64),
            synced: Mutex::new(lines as u64),
        });
        Ok(Self { path: path.into(), file, lines, sync })
    }

    /// Writes `record`'s line; durable at the next `Durable::wait`.
    fn append(&mut self, record: &Record) -> Result<(), FilterError> {
        let mut line = String::new();
        push_line(&mut line, record);
        self.file
            .write_all(line.as_bytes())
            .map_err(|source| FilterError::Journal { path: self.path.clone(), source })?;
        self.lines += 1;
        self.sync.written.fetch_add(1, Ordering::Release);
        Ok(())
    }
}

fn push_line(text: &mut String, record: &Record) {
    text.push_str(&serde_json::to_string(record).expect("a record serialises"));
    text.push('\n');
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use serde_json::json;

    use super::*;

    const LIMITS: FilterLimits =
        FilterLimits { filters_max: 4, filters_per_client_max: 2, idle_timeout: Duration::from_secs(300) };
    const ALICE: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const BOB: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    fn journal(name: &str) -> PathBuf {
        tephra_testkit::fresh_dir(&format!("filters-{name}")).join("filters.jsonl")
    }

    /// A fresh journal named `name`, now, and the (empty) filters it opens to.
    fn opened(name: &str) -> (PathBuf, Instant, Filters) {
        let path = journal(name);
        let now = Instant::now();
        let filters = Filters::open(&path, LIMITS, [1; 32], now).unwrap();
        (path, now, filters)
    }

    fn logs_spec() -> FilterSpec {
        FilterSpec::Logs { request: json!({"address": "0x00000000000000000000000000000000000000aa"}) }
    }

    #[test]
    fn filters_and_their_places_survive_a_reopen() {
        let (path, now, mut filters) = opened("reopen");
        let logs = filters.install(ALICE, logs_spec(), Place::block(5), now).unwrap();
        let blocks = filters.install(BOB, FilterSpec::Blocks, Place::block(5), now).unwrap();
        let gone = filters.install(BOB, FilterSpec::PendingTransactions, Place { block: 5, index: 3 }, now).unwrap();
        let before_advance = filters.durable();
        filters.advance(logs, Place::block(9), now).unwrap();
        assert!(filters.uninstall(gone, now).unwrap());
        assert!(!filters.uninstall(gone, now).unwrap(), "a second uninstall finds nothing");
        // One fdatasync for all of them: the last point's wait syncs every
        // line written, an earlier point's then finds them synced.
        let point = filters.durable();
        let written = point.line;
        point.wait().unwrap();
        assert_eq!(*filters.journal.sync.synced.lock().unwrap(), written);
        before_advance.wait().unwrap();
        assert_eq!(*filters.journal.sync.synced.lock().unwrap(), written, "no sync backwards");
        drop(filters);

        let later = now + Duration::from_secs(1000);
        let mut reopened = Filters::open(&path, LIMITS, [2; 32], later).unwrap();
        assert_eq!(reopened.len(), 2);
        assert_eq!(reopened.poll(logs, later).unwrap().place, Place::block(9));
        assert_eq!(reopened.poll(logs, later).unwrap().spec, logs_spec());
        assert_eq!(reopened.poll(blocks, later).unwrap().place, Place::block(5));
        assert!(matches!(reopened.poll(gone, later), Err(FilterError::NotFound)));
        // Counted against its client again: Bob has one, may install one more.
        reopened.install(BOB, FilterSpec::Blocks, Place::block(9), later).unwrap();
        assert!(matches!(
            reopened.install(BOB, FilterSpec::Blocks, Place::block(9), later),
            Err(FilterError::TooManyForClient(2))
        ));
    }

    #[test]
    fn bounds_hold_in_all_and_per_client() {
        let (_, now, mut filters) = opened("bounds");
        for client in [ALICE, BOB] {
            for _ in 0..2 {
                filters.install(client, FilterSpec::Blocks, Place::block(1), now).unwrap();
            }
        }
        let carol = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3));
        assert!(matches!(
            filters.install(carol, FilterSpec::Blocks, Place::block(1), now),
            Err(FilterError::TooMany(4))
        ));
    }

    #[test]
    fn an_idle_filter_is_removed_and_its_place_given_back() {
        let (path, now, mut filters) = opened("idle");
        let polled = filters.install(ALICE, FilterSpec::Blocks, Place::block(1), now).unwrap();
        let forgotten = filters.install(ALICE, FilterSpec::Blocks, Place::block(1), now).unwrap();
        let half = now + Duration::from_secs(200);
        filters.poll(polled, half).unwrap();
        let late = now + Duration::from_secs(400);
        filters.poll(polled, late).unwrap();
        assert!(matches!(filters.poll(forgotten, late), Err(FilterError::NotFound)));
        // Alice's place is free again, and the removal is in the journal.
        filters.install(ALICE, FilterSpec::Blocks, Place::block(2), late).unwrap();
        drop(filters);
        let reopened = Filters::open(&path, LIMITS, [1; 32], late).unwrap();
        assert!(reopened.get(&forgotten).is_none());
        assert!(reopened.get(&polled).is_some());
    }

    #[test]
    fn a_rewind_moves_filters_back_with_their_removed_logs_until_answered() {
        let (path, now, mut filters) = opened("rewind");
        let ahead = filters.install(ALICE, logs_spec(), Place::block(10), now).unwrap();
        let behind = filters.install(BOB, logs_spec(), Place::block(4), now).unwrap();
        filters.rewind(Place::block(6), |_, below| vec![json!({"below": below})], now).unwrap();
        assert_eq!(filters.get(&ahead).unwrap().place, Place::block(6));
        assert_eq!(filters.get(&ahead).unwrap().removed, vec![json!({"below": 10})]);
        assert_eq!(filters.get(&behind).unwrap().place, Place::block(4), "not beyond the rewind");
        drop(filters);
        let mut reopened = Filters::open(&path, LIMITS, [1; 32], now).unwrap();
        assert_eq!(reopened.get(&ahead).unwrap().removed, vec![json!({"below": 10})]);
        reopened.advance(ahead, Place::block(6), now).unwrap();
        assert!(reopened.get(&ahead).unwrap().removed.is_empty(), "answered once");
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_a_bad_earlier_one_refused() {
        let (path, now, mut filters) = opened("torn");
        let id = filters.install(ALICE, FilterSpec::Blocks, Place::block(1), now).unwrap();
        drop(filters);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"op":"advance","id":"0x"#).unwrap();
        let reopened = Filters::open(&path, LIMITS, [1; 32], now).unwrap();
        assert_eq!(reopened.get(&id).unwrap().place, Place::block(1));
        drop(reopened);

        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, format!("not json\n{text}")).unwrap();
        let refused = Filters::open(&path, LIMITS, [1; 32], now).unwrap_err();
        assert!(matches!(refused, FilterError::Corrupt { line: 1, .. }), "{refused}");
    }

    #[test]
    fn the_journal_is_rewritten_when_mostly_dead() {
        let (path, now, mut filters) = opened("compact");
        let id = filters.install(ALICE, FilterSpec::Blocks, Place::block(0), now).unwrap();
        for block in 1..=(3 * JOURNAL_SLACK_LINES as u64) {
            filters.advance(id, Place::block(block), now).unwrap();
        }
        let lines = fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= JOURNAL_SLACK_LINES + 3, "{lines} lines");
        drop(filters);
        let reopened = Filters::open(&path, LIMITS, [1; 32], now).unwrap();
        assert_eq!(reopened.get(&id).unwrap().place, Place::block(3 * JOURNAL_SLACK_LINES as u64));
    }
}
