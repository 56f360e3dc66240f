/*
 * tephra's C shim over DPDK 22.11: the `static inline` functions and macros of
 * the public headers (the fast path of ethdev and mbuf, the per-lcore errno)
 * have no symbol in the shared libraries, so Rust cannot call them directly.
 * Each is wrapped here as a plain exported function named tephra_dpdk_*.
 * Built by build_dpdk.rs with the pkg-config cflags of libdpdk, and bound
 * (with the real DPDK functions tephra calls) by bindgen.
 */
#ifndef TEPHRA_DPDK_SHIM_H
#define TEPHRA_DPDK_SHIM_H

#include <stdint.h>

#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

/* The headroom DPDK reserves in front of every mbuf's data (a build constant). */
uint16_t tephra_dpdk_pktmbuf_headroom(void);

/* rte_errno of the calling thread (a per-lcore variable behind a macro). */
int tephra_dpdk_errno(void);

/* rte_lcore_id(): the calling thread's lcore, or UINT32_MAX (LCORE_ID_ANY) off EAL threads. */
uint32_t tephra_dpdk_lcore_id(void);

/* rte_eth_rx_burst / rte_eth_tx_burst. */
uint16_t tephra_dpdk_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **packets, uint16_t count);
uint16_t tephra_dpdk_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **packets, uint16_t count);

/* rte_pktmbuf_alloc (NULL when the pool is empty) and rte_pktmbuf_alloc_bulk
 * (all `count` or none: 0 on success, a negative errno otherwise). */
struct rte_mbuf *tephra_dpdk_pktmbuf_alloc(struct rte_mempool *pool);
int tephra_dpdk_pktmbuf_alloc_bulk(struct rte_mempool *pool, struct rte_mbuf **mbufs, unsigned int count);

/* rte_pktmbuf_free (of a whole chain; NULL is ignored) and rte_pktmbuf_free_bulk. */
void tephra_dpdk_pktmbuf_free(struct rte_mbuf *mbuf);
void tephra_dpdk_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned int count);

/* rte_pktmbuf_mtod: the first segment's data. */
uint8_t *tephra_dpdk_mbuf_data(struct rte_mbuf *mbuf);
/* The first segment's data length, the whole chain's packet length, and its segment count. */
uint16_t tephra_dpdk_mbuf_data_len(const struct rte_mbuf *mbuf);
uint32_t tephra_dpdk_mbuf_pkt_len(const struct rte_mbuf *mbuf);
uint16_t tephra_dpdk_mbuf_nb_segs(const struct rte_mbuf *mbuf);
/* rte_pktmbuf_tailroom: the room after the first segment's data. */
uint16_t tephra_dpdk_mbuf_tailroom(const struct rte_mbuf *mbuf);
/* Sets a single-segment mbuf's data_len and pkt_len to `len`; -1 (and
 * unchanged) when `len` exceeds the segment's data room past its headroom. */
int tephra_dpdk_mbuf_set_len(struct rte_mbuf *mbuf, uint16_t len);

/* rte_pktmbuf_read: `len` bytes at `offset` of the chain, pointing into the
 * mbuf when contiguous, else copied into `buffer`; NULL when out of bounds. */
const void *tephra_dpdk_pktmbuf_read(const struct rte_mbuf *mbuf, uint32_t offset, uint32_t len, void *buffer);

#endif /* TEPHRA_DPDK_SHIM_H */
