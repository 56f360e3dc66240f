//! tephra's OP Stack batcher: what the batch log's sealed blocks become on
//! L1 so that any verifier derives the chain from L1 alone.
//!
//! ```text
//!  sealed blocks ─> span batch ─> channel (0x01 ‖ brotli(rlp batches)) ─> frames ─> batcher txs
//!                                                                          │  calldata: 0x00 ‖ frame
//!                                                                          └─ blob:     blob-encoded(0x00 ‖ frame)
//! ```
//!
//! | module | what |
//! |---|---|
//! | `assembler` | frames read back from L1 into channels by Holocene's rules, and their span batches |
//! | `channel_out` | an open channel: runs of sealed blocks as span batches into one brotli stream, its exact size, closed into frames |
//! | `l1_tx` | a payload in a calldata transaction to the batch inbox: its gas, its fees and their bump, the signed bytes |
//! | `channel` | batches as a channel's content (RLP strings), brotli-compressed behind version 0x01, and read back within the content limit |
//! | `frame` | a channel cut into frames, a batcher transaction's payload, and parsing them back |
//! | `span_batch` | consecutive sealed blocks as one span batch (batch type 1), its columns, and decoding it |
//! | `blob_tx` | payloads in blobs: the EIP-7594 sidecar (KZG commitments and cell proofs), versioned hashes, the type 3 transaction to the inbox, its signed bytes with the sidecar |
//! | `blob` | the OP Stack blob encoding of a payload (4 field elements carry 127 bytes), and decoding it |

pub mod assembler;
pub mod blob;
pub mod blob_tx;
pub mod channel;
pub mod channel_out;
pub mod frame;
pub mod l1_tx;
pub mod span_batch;

pub use assembler::{
    CHANNEL_BYTES_MAX, CHANNEL_TIMEOUT_GRANITE_L1_BLOCKS, ChannelAssembler, ReadBackError, span_batches_of,
};
pub use blob::{BLOB_DATA_MAX_BYTES, BLOB_SIZE_BYTES, Blob, BlobError};
pub use blob_tx::{KzgError, blob_tx, sidecar_of, signed_blob_tx, versioned_hash_of};
pub use channel::{
    BROTLI_QUALITY_MAX, BROTLI_QUALITY_OP_BATCHER, CHANNEL_RLP_BYTES_MAX, CHANNEL_VERSION_BROTLI, ChannelError,
    batches_of, compress, content_of, decompress,
};
pub use channel_out::{ChannelOut, ChannelOutError, ClosedChannel};
pub use frame::{
    ChannelId, DERIVATION_VERSION, FRAME_OVERHEAD_BYTES, Frame, FrameError, frames_of, parse_frames, payload_of,
};
pub use l1_tx::{BLOB_FEE_BUMP_PERCENT, FEE_BUMP_PERCENT, FEE_FLOOR_WEI, Fees, calldata_gas, calldata_tx, signed_tx};
pub use span_batch::{
    BatchBlock, RawSpanBatch, SPAN_BATCH_ELEMENTS_MAX, SPAN_BATCH_TYPE, SpanBatchError, SpanBatchTxs,
};
