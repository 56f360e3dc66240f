/* tephra's C shim over DPDK 22.11 (see shim.h). */
#include "shim.h"

uint16_t tephra_dpdk_pktmbuf_headroom(void) { return RTE_PKTMBUF_HEADROOM; }

int tephra_dpdk_errno(void) { return rte_errno; }

uint32_t tephra_dpdk_lcore_id(void) { return rte_lcore_id(); }

uint16_t tephra_dpdk_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **packets, uint16_t count) {
	return rte_eth_rx_burst(port_id, queue_id, packets, count);
}

uint16_t tephra_dpdk_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **packets, uint16_t count) {
	return rte_eth_tx_burst(port_id, queue_id, packets, count);
}

struct rte_mbuf *tephra_dpdk_pktmbuf_alloc(struct rte_mempool *pool) { return rte_pktmbuf_alloc(pool); }

int tephra_dpdk_pktmbuf_alloc_bulk(struct rte_mempool *pool, struct rte_mbuf **mbufs, unsigned int count) {
	return rte_pktmbuf_alloc_bulk(pool, mbufs, count);
}

void tephra_dpdk_pktmbuf_free(struct rte_mbuf *mbuf) { rte_pktmbuf_free(mbuf); }

void tephra_dpdk_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned int count) {
	rte_pktmbuf_free_bulk(mbufs, count);
}

uint8_t *tephra_dpdk_mbuf_data(struct rte_mbuf *mbuf) { return rte_pktmbuf_mtod(mbuf, uint8_t *); }

uint16_t tephra_dpdk_mbuf_data_len(const struct rte_mbuf *mbuf) { return rte_pktmbuf_data_len(mbuf); }

uint32_t tephra_dpdk_mbuf_pkt_len(const struct rte_mbuf *mbuf) { return rte_pktmbuf_pkt_len(mbuf); }

uint16_t tephra_dpdk_mbuf_nb_segs(const struct rte_mbuf *mbuf) { return mbuf->nb_segs; }

uint16_t tephra_dpdk_mbuf_tailroom(const struct rte_mbuf *mbuf) { return rte_pktmbuf_tailroom(mbuf); }

int tephra_dpdk_mbuf_set_len(struct rte_mbuf *mbuf, uint16_t len) {
	if (mbuf->nb_segs != 1 || (uint32_t)mbuf->data_off + len > mbuf->buf_len)
		return -1;
	mbuf->data_len = len;
	mbuf->pkt_len = len;
	return 0;
}

const void *tephra_dpdk_pktmbuf_read(const struct rte_mbuf *mbuf, uint32_t offset, uint32_t len, void *buffer) {
	return rte_pktmbuf_read(mbuf, offset, len, buffer);
}
