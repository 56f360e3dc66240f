// tephra's XDP program: IPv4 UDP datagrams for tephra's port (unfragmented)
// go to the AF_XDP socket bound to their receive queue; everything else (ARP,
// ICMP, SSH, other ports, fragments) passes to the kernel untouched.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

// One AF_XDP socket per receive queue; tephra fills it at start.
struct {
  __uint(type, BPF_MAP_TYPE_XSKMAP);
  __uint(max_entries, 64);
  __type(key, __u32);
  __type(value, __u32);
} tephra_xsks SEC(".maps");

// Entry 0: tephra's UDP port, host byte order.
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u32);
} tephra_port SEC(".maps");

SEC("xdp")
int tephra_xdp(struct xdp_md *ctx) {
  void *data = (void *)(long)ctx->data;
  void *end = (void *)(long)ctx->data_end;
  struct ethhdr *eth = data;
  if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
    return XDP_PASS;
  struct iphdr *ip = (void *)(eth + 1);
  if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_UDP || ip->ihl < 5 ||
      (ip->frag_off & bpf_htons(0x3fff)) != 0)
    return XDP_PASS;
  struct udphdr *udp = (void *)ip + ip->ihl * 4;
  if ((void *)(udp + 1) > end)
    return XDP_PASS;
  __u32 key = 0;
  __u32 *port = bpf_map_lookup_elem(&tephra_port, &key);
  if (!port || udp->dest != bpf_htons((__u16)*port))
    return XDP_PASS;
  return bpf_redirect_map(&tephra_xsks, ctx->rx_queue_index, XDP_PASS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
