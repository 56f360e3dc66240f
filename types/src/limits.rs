//! Limits shared by every stage. A limit that an operator may tune lives in the
//! node's config; these are the hard ceilings: the protocol's first, then one
//! for every numeric config key, grouped by config section.

/// Largest encoded transaction accepted, in bytes. Geth's pool uses the same
/// 128 KiB bound; it keeps a UDP datagram batch and a pool slot bounded.
pub const TX_SIZE_MAX_BYTES: usize = 128 * 1024;

/// EIP-7825 (Osaka): the most gas a single transaction may ask for.
pub const TX_GAS_LIMIT_CAP: u64 = 1 << 24;

/// EIP-3860: the largest init code a creation may carry.
pub const INITCODE_SIZE_MAX_BYTES: usize = 2 * 24_576;

/// How many recent block hashes the BLOCKHASH opcode can see.
pub const BLOCK_HASH_HISTORY: u64 = 256;

/// Largest `extraData` in a header (yellow paper, section 4.3.4).
pub const EXTRA_DATA_MAX_BYTES: usize = 32;

// The ceilings of the node's config: one per tunable numeric key, checked at
// load through the table in node/src/config.rs (`Config::bounds`), which
// refuses a value out of its range naming the key, the value and the range.
// Each is generous above the default and anything the tests, benchmarks or
// docs set, and low enough that memory stays bounded: a ceiling is what turns
// a typo (three zeros too many) into a refusal at start instead of an
// allocation that fails, a core that cannot be pinned, or a timeout of
// days. Config values are u64 here, as the table compares them.

// [block]

/// `block.block_time_s`: a minute. Blocks carry the state roots that bridges
/// and indexers wait for; past a minute it is a typo of the 1 s default.
/// The floor is 1 s: a header's timestamp is whole seconds, strictly above
/// its parent's.
pub const BLOCK_TIME_S_MAX: u64 = 60;

/// `block.snapshot_interval_blocks`: a restart re-executes up to this many
/// blocks after its snapshot; a million (about eleven days at 1 s) is
/// already a restart of hours.
pub const SNAPSHOT_INTERVAL_BLOCKS_MAX: u64 = 1_000_000;

// [pool]

/// `pool.capacity`: each pooled transaction holds up to `TX_SIZE_MAX_BYTES`;
/// 16 times the default, a million ordinary transactions, is about a GiB.
pub const POOL_CAPACITY_MAX: u64 = 1 << 20;

/// `pool.per_sender_max`: a thousand times the default, as many as the
/// default pool holds in all; enough for one backend sending everything.
pub const POOL_PER_SENDER_MAX: u64 = 1 << 16;

/// `pool.nonce_gap_max`: a transaction this far ahead waits behind every
/// nonce before it, which `per_sender_max` bounds anyway.
pub const POOL_NONCE_GAP_MAX: u64 = POOL_PER_SENDER_MAX;

/// `pool.queued_lifetime_ms`: three hours, geth's pool lifetime; a gapped
/// transaction kept longer only holds memory.
pub const POOL_QUEUED_LIFETIME_MS_MAX: u64 = 3 * 60 * 60 * 1000;

/// `pool.mini_block_txs_max`: a mini-block is one Batch record, so this many
/// transactions of `TX_SIZE_MAX_BYTES` must fit the batch log's record limit
/// (64 MiB: 511 would, asserted at compile time in node/src/config.rs).
pub const MINI_BLOCK_TXS_MAX: u64 = 500;

/// `pool.mini_block_gas_max`: a mini-block executes whole before any of it
/// preconfirms; a billion gas (the dev chain's whole block) takes seconds.
pub const MINI_BLOCK_GAS_MAX: u64 = 1_000_000_000;

/// `pool.mini_block_wait_ms`: ten seconds, ten thousand times the default: a
/// transaction may wait this long before anything preconfirms it.
pub const MINI_BLOCK_WAIT_MS_MAX: u64 = 10_000;

// [exec]

/// `exec.shards`: the parallel executor's conflict sets are 64-bit masks
/// (`tephra_exec::parallel::SHARDS_MAX`, asserted equal).
pub const EXEC_SHARDS_MAX: u64 = 64;

// [sequencer]

/// `sequencer.submission_queue_depth`: each waiting submission holds a
/// verified transaction; 64 times the default.
pub const SUBMISSION_QUEUE_DEPTH_MAX: u64 = 1 << 20;

// [log]

/// `log.segment_size_max_bytes`, its floor: below a MiB a segment holds a
/// handful of mini-blocks and the log is mostly file boundaries.
pub const SEGMENT_SIZE_MIN_BYTES: u64 = 1 << 20;

/// `log.segment_size_max_bytes`: truncation and a standby's read-back behind
/// the replication window read a segment whole into memory; 16 times the
/// default.
pub const SEGMENT_SIZE_MAX_BYTES: u64 = 1 << 30;

/// `log.disk_free_min_bytes`: a terabyte, more than an appliance's data
/// disk; a reserve above the disk's size would stop the node for good.
pub const DISK_FREE_RESERVE_MAX_BYTES: u64 = 1 << 40;

// [rpc]

/// `rpc.request_size_max_bytes`: a body is buffered whole; a batch of 100
/// hex-encoded transactions of `TX_SIZE_MAX_BYTES` is 25 MiB.
pub const RPC_REQUEST_SIZE_MAX_BYTES: u64 = 64 << 20;

/// `rpc.response_size_max_bytes`: a response is built whole in memory; 25
/// times the default.
pub const RPC_RESPONSE_SIZE_MAX_BYTES: u64 = 256 << 20;

/// `rpc.batch_size_max`: a batch is answered whole, in one response; 100
/// times the default.
pub const RPC_BATCH_SIZE_MAX: u64 = 10_000;

/// `rpc.connections_max` and `rpc.connections_per_client_max`: a connection
/// is a file descriptor and a task; 64 Ki is a service's usual descriptor
/// limit.
pub const RPC_CONNECTIONS_MAX: u64 = 1 << 16;

/// `rpc.client_requests_per_s` (0: no limit): ten million calls a second is
/// more than a node answers on all its cores, so a limit above it would never
/// act.
pub const RPC_CLIENT_REQUESTS_PER_S_MAX: u64 = 10_000_000;

/// `rpc.client_burst_requests`: a second of the highest rate.
pub const RPC_CLIENT_BURST_REQUESTS_MAX: u64 = RPC_CLIENT_REQUESTS_PER_S_MAX;

/// `rpc.clients_max`: the rate limiter's table is allocated at start, as the
/// net tile's is (`NET_SOURCES_MAX`).
pub const RPC_CLIENTS_MAX: u64 = 1 << 22;

/// `rpc.history_blocks_max`: blocks kept in memory (headers, transactions,
/// receipts) and replayed into it at restart; a million is about eleven days
/// at 1 s, ten times the default.
pub const HISTORY_BLOCKS_MAX: u64 = 1_000_000;

/// `rpc.get_logs_block_range_max`: a query sees only the blocks kept.
pub const GET_LOGS_BLOCK_RANGE_MAX: u64 = HISTORY_BLOCKS_MAX;

/// `rpc.get_logs_results_max`: the logs are gathered in memory before the
/// response's size limit applies; a hundred times the default.
pub const GET_LOGS_RESULTS_MAX: u64 = 1_000_000;

/// `rpc.send_raw_sync_timeout_ms_max` and `_default`: a waiting call holds
/// its connection; clients and proxies give up long before five minutes.
pub const SEND_RAW_SYNC_TIMEOUT_MS_MAX: u64 = 300_000;

/// `rpc.subscription_buffer_max`: the node's event channel is allocated
/// whole at start, and each subscribing client may buffer as many; 64 times
/// the default.
pub const SUBSCRIPTION_BUFFER_MAX: u64 = 1 << 16;

/// `rpc.filters_max`: every filter is kept in memory and in the data dir's
/// filter journal, which is rewritten whole when it grows; 64 times the
/// default.
pub const RPC_FILTERS_MAX: u64 = 1 << 18;

/// `rpc.filter_idle_timeout_s`: a filter nobody polls holds its place; a
/// day is far beyond any polling client's interval.
pub const RPC_FILTER_IDLE_TIMEOUT_S_MAX: u64 = 86_400;

/// `rpc.filter_changes_max`: one poll's changes are gathered in memory, as
/// eth_getLogs's are.
pub const RPC_FILTER_CHANGES_MAX: u64 = GET_LOGS_RESULTS_MAX;

// [history]

/// `history.cache_bytes`: redb's page cache for the state history; below a
/// megabyte every lookup reads the disk, above 16 GiB it holds memory the
/// node's state needs.
pub const HISTORY_CACHE_BYTES_MIN: u64 = 1 << 20;
pub const HISTORY_CACHE_BYTES_MAX: u64 = 16 << 30;

// [trace]

/// The most wall time a trace request may be allowed (`trace.timeout_ms`).
pub const TRACE_TIMEOUT_MS_MAX: u64 = 10 * 60 * 1000;
/// The most EVM steps and frames one traced transaction may be allowed
/// (`trace.steps_max`): a block's gas buys at most a few tens of millions.
pub const TRACE_STEPS_MAX: u64 = 100_000_000;
/// The most bytes a tracer may be allowed to record (`trace.recorded_bytes_max`).
pub const TRACE_RECORDED_BYTES_MAX: u64 = 16 << 30;
/// The most trace requests that may be allowed at once (`trace.concurrent_max`).
pub const TRACE_CONCURRENT_MAX: u64 = 64;

// [udp]

/// `udp.inflight_datagrams_max`: each datagram being answered holds a packet
/// buffer; 64 times the default.
pub const UDP_INFLIGHT_DATAGRAMS_MAX: u64 = 1 << 16;

/// `udp.preconf_timeout_ms`: a datagram waiting this long holds its buffer
/// and an in-flight slot; a minute is no longer a preconfirmation.
pub const UDP_PRECONF_TIMEOUT_MS_MAX: u64 = 60_000;

/// `udp.source_txs_per_s` (0: the bucket never refills; it does not turn the
/// limit off): a billion a second is beyond any NIC; the benchmarks' "out of
/// the way" is 10^8.
pub const UDP_SOURCE_TXS_PER_S_MAX: u64 = 1_000_000_000;

/// `udp.source_burst_txs`: as the rate (the benchmarks set 10^7).
pub const UDP_SOURCE_BURST_TXS_MAX: u64 = UDP_SOURCE_TXS_PER_S_MAX;

/// `udp.sources_max`: the table is allocated at start, as the net tile's.
pub const UDP_SOURCES_MAX: u64 = NET_SOURCES_MAX;

// [net]: tephra_dataplane::NetConfig. Its `check()` keeps the bounds that
// depend on other keys (packet buffers for both rings and bursts, the floors
// that apply while its rate limit is on); the backends check theirs when
// they start (AF_XDP frames a power of two, DPDK's floors).

/// `net.packet_buffers`: 4 KiB each, allocated at start: 4 GiB
/// (`tephra_dataplane::PACKET_BUFFERS_MAX`, asserted equal).
pub const NET_PACKET_BUFFERS_MAX: u64 = 1 << 20;

/// `net.ingress_ring_depth`, `net.egress_ring_depth`: as many slots as there
/// may be buffers (`tephra_dataplane::RING_DEPTH_MAX`).
pub const NET_RING_DEPTH_MAX: u64 = 1 << 20;

/// `net.burst`: the net tile's burst arrays are this long
/// (`tephra_dataplane::net::NET_BURST_MAX`).
pub const NET_BURST_MAX: u64 = 256;

/// `net.idle_sleep_us`: an idle tile sleeping a second between polls adds a
/// second to the first datagram after a lull.
pub const NET_IDLE_SLEEP_US_MAX: u64 = 1_000_000;

/// `net.socket_rx_slots`, `net.socket_tx_slots`: io_uring's buffer ring
/// (`tephra_dataplane::backend::socket::SOCKET_SLOTS_MAX`).
pub const NET_SOCKET_SLOTS_MAX: u64 = 4096;

/// `net.source_datagrams_per_s` (0: off): beyond any NIC, as for UDP.
pub const NET_SOURCE_DATAGRAMS_PER_S_MAX: u64 = 1_000_000_000;

/// `net.source_burst_datagrams`: as the rate.
pub const NET_SOURCE_BURST_DATAGRAMS_MAX: u64 = NET_SOURCE_DATAGRAMS_PER_S_MAX;

/// `net.sources_max`: the table is allocated at start, a few hundred MiB at
/// most (`tephra_dataplane::SOURCES_MAX`).
pub const NET_SOURCES_MAX: u64 = 1 << 22;

/// `net.af_xdp.queue` (below it) and `host.nic_channels`: no NIC has more
/// channels; past it the value could only fail at bind or in ethtool.
pub const NIC_QUEUES_MAX: u64 = 4096;

/// `net.af_xdp.frames`: the backend's own range (64 to 65536, a power of
/// two, checked when it starts): 256 MiB of UMEM.
pub const AF_XDP_FRAMES_MAX: u64 = 65_536;

/// `net.dpdk.port_id`: DPDK numbers ports below RTE_MAX_ETHPORTS, 32 in a
/// default build; 1024 leaves room for builds that raise it.
pub const DPDK_PORT_ID_MAX: u64 = 1023;

/// `net.dpdk.rx_queue_depth`, `tx_queue_depth`: no NIC's descriptor ring is
/// longer (mlx5: 32 Ki); the backend then adjusts to the device's limits.
pub const DPDK_QUEUE_DEPTH_MAX: u64 = 32_768;

/// `net.dpdk.mbufs`: at 2 KiB of data room each, a million is 2 GiB of huge
/// pages.
pub const DPDK_MBUFS_MAX: u64 = 1 << 20;

/// `net.dpdk.burst_size`: the backend's mbuf arrays are this long
/// (`tephra_dataplane::backend::dpdk::BURST_SIZE_MAX`).
pub const DPDK_BURST_SIZE_MAX: u64 = 512;

/// `net.dpdk.mbuf_data_room`: an mbuf's buffer, this plus 128 bytes of
/// headroom (RTE_PKTMBUF_HEADROOM), has a u16 length.
pub const DPDK_MBUF_DATA_ROOM_MAX_BYTES: u64 = 65_535 - 128;

// [topology]

/// `topology.*`, each core listed: threads are pinned through a cpu_set_t,
/// which holds CPUs 0 to 1023 (glibc's CPU_SETSIZE); a higher core could not
/// be pinned.
pub const CPU_INDEX_MAX: u64 = 1023;

// [host]

/// `host.hugepages_2m`: a TiB of huge pages, more memory than an appliance
/// has.
pub const HOST_HUGEPAGES_2M_MAX: u64 = 1 << 19;

/// `host.memlock_bytes_min`: a TiB, more memory than an appliance has.
pub const HOST_MEMLOCK_MAX_BYTES: u64 = 1 << 40;

/// `host.socket_buffer_bytes`: net.core.rmem_max and friends are C ints.
pub const HOST_SOCKET_BUFFER_MAX_BYTES: u64 = i32::MAX as u64;

// [signer]

/// `signer.unsigned_blocks_max`: sealed blocks waiting for a signature are
/// held in memory; 1024 is seventeen minutes of blocks at 1 s.
pub const SIGNER_UNSIGNED_BLOCKS_MAX: u64 = 1024;

/// `signer.sign_timeout_ms`: a signature this late has stalled sealing for a
/// minute; the slowest HSM answers in 125 ms.
pub const SIGN_TIMEOUT_MS_MAX: u64 = 60_000;

/// `signer.sign_retry_ms`: a failed signer is asked again at least once a
/// minute, so sealing resumes soon after it recovers.
pub const SIGN_RETRY_MS_MAX: u64 = 60_000;

/// `signer.delegation_epoch_blocks`: a hot key lives one epoch; a million
/// blocks (about eleven days at 1 s) is a long exposure already.
pub const DELEGATION_EPOCH_BLOCKS_MAX: u64 = 1_000_000;

// [ha]: checked only with `ha.enabled`, as before: a single node never reads
// these keys.

/// `ha.etcd_request_timeout_ms`: a minute; a leader's lease is shorter.
pub const HA_ETCD_REQUEST_TIMEOUT_MS_MAX: u64 = 60_000;

/// `ha.lease_ttl_s`, its floor: etcd's minimum lease.
pub const HA_LEASE_TTL_S_MIN: u64 = 2;

/// `ha.lease_ttl_s`: a standby takes over within about two of these; past a
/// minute that is an outage, not a failover.
pub const HA_LEASE_TTL_S_MAX: u64 = 60;

/// `ha.sync_ack_timeout_ms`: five minutes before a sync leader says why it
/// preconfirms nothing (the tests use 30 s).
pub const HA_SYNC_ACK_TIMEOUT_MS_MAX: u64 = 300_000;

/// `ha.campaign_lag_records_max`: a billion records is years of log, so it
/// means "whatever the lag" (the tests' use).
pub const HA_CAMPAIGN_LAG_RECORDS_MAX: u64 = 1_000_000_000;

/// `ha.replication_window_bytes_max`: kept in the leader's memory; 64 times
/// the default.
pub const HA_REPLICATION_WINDOW_MAX_BYTES: u64 = 4 << 30;

/// `ha.replication_message_bytes_max`: each standby buffers a message whole
/// (plus one frame); a record's limit, 64 times the default.
pub const HA_REPLICATION_MESSAGE_MAX_BYTES: u64 = 64 << 20;

/// `ha.standbys_max`: each standby is a connection and a feed the leader
/// serves; a pair has one.
pub const HA_STANDBYS_MAX: u64 = 64;

/// `ha.heartbeat_ms`: a standby hears the leader's log length at least this
/// often; ten seconds is five default leases.
pub const HA_HEARTBEAT_MS_MAX: u64 = 10_000;

/// `ha.status_interval_ms`: `tephra ha status` is at most a minute old.
pub const HA_STATUS_INTERVAL_MS_MAX: u64 = 60_000;

/// `l1.confirmation_depth`: 64 L1 blocks (two epochs of the beacon chain,
/// past finality): a deeper wait only delays deposits.
pub const L1_CONFIRMATION_DEPTH_MAX: u64 = 64;

/// `l1.poll_interval_ms`: a minute; an L1 block comes every 12 s.
pub const L1_POLL_INTERVAL_MS_MAX: u64 = 60_000;

/// `l1.request_timeout_ms`: a minute.
pub const L1_REQUEST_TIMEOUT_MS_MAX: u64 = 60_000;

/// `l1.blob_base_fee_update_fraction`: ten times Prague's.
pub const L1_BLOB_BASE_FEE_UPDATE_FRACTION_MAX: u64 = 50_077_160;

/// Flashblocks stream subscribers at once (`rpc.flashblocks_listen`): each
/// costs a task and a buffer of `rpc.subscription_buffer_max` messages; an
/// appliance feeds a few indexers and builders, not the public.
pub const FLASHBLOCKS_SUBSCRIBERS_MAX: usize = 256;

/// `batcher.frame_size_max_bytes`: a frame and the version byte fill one
/// blob (130,044 bytes), or one L1 transaction's calldata, which an L1
/// node's pool takes up to 128 KiB.
pub const BATCHER_FRAME_SIZE_MAX_BYTES: u64 = 130_043;

/// The smallest `batcher.frame_size_max_bytes`: a frame's 23 bytes of
/// overhead and some data.
pub const BATCHER_FRAME_SIZE_MIN_BYTES: u64 = 1_000;

/// `batcher.channel_target_frames`: a channel of more frames than this
/// needs more transactions than land well within a channel timeout.
pub const BATCHER_CHANNEL_TARGET_FRAMES_MAX: u64 = 64;

/// `batcher.channel_duration_max_l1_blocks`: a day of 12 s L1 blocks; the
/// sequencing window closes a channel sooner anyway.
pub const BATCHER_CHANNEL_DURATION_MAX_L1_BLOCKS: u64 = 7_200;

/// `batcher.sub_safety_margin_l1_blocks`: an hour of L1 blocks.
pub const BATCHER_SUB_SAFETY_MARGIN_MAX_L1_BLOCKS: u64 = 300;

/// `batcher.txs_in_flight_max`: batcher transactions sent and not yet
/// included. Each holds at most one frame (128 KiB).
pub const BATCHER_TXS_IN_FLIGHT_MAX: u64 = 64;

/// `batcher.poll_interval_ms`: a minute.
pub const BATCHER_POLL_INTERVAL_MS_MAX: u64 = 60_000;

/// `batcher.resubmit_timeout_ms`: ten minutes; op-batcher's default is 48 s.
pub const BATCHER_RESUBMIT_TIMEOUT_MS_MAX: u64 = 600_000;

/// `batcher.max_fee_per_gas_cap_gwei`: 10,000 gwei, a fee no L1 has seen
/// for long.
pub const BATCHER_FEE_CAP_GWEI_MAX: u64 = 10_000;

/// `batcher.read_back_l1_blocks_per_poll_max`: L1 blocks read back in one
/// poll, so that a node catching up answers its health checks.
pub const BATCHER_READ_BACK_BLOCKS_PER_POLL_MAX: u64 = 10_000;
