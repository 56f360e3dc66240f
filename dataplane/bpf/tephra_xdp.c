// tephra's XDP program: IPv4 UDP datagrams for tephra's port (unfragmented)
// go to the AF_XDP socket bound to their receive queue; everything else (ARP,
// ICMP, SSH, other ports, fragments) passes to the kernel untouched. A source
// over its datagram rate (net.source_datagrams_per_s) is dropped here, at the
// driver, before it costs a copy or a place in the socket's ring.
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

// Entry 0: the per-source limit, 0 nanoseconds per datagram when off.
struct source_limit {
  __u64 ns_per_datagram;
  __u64 burst_ns;
};
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct source_limit);
} tephra_limit SEC(".maps");

// A token bucket per source address, counted in nanoseconds of credit; per
// CPU, so that no two CPUs race on one bucket (a source's flow lands on one
// receive queue). The least recently seen source makes room for a new one.
struct bucket {
  __u64 credit_ns;
  __u64 updated_ns;
};
struct {
  __uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
  __uint(max_entries, 65536);
  __type(key, __u32);
  __type(value, struct bucket);
} tephra_sources SEC(".maps");

// Entry 0: datagrams dropped for their source's rate, per CPU.
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} tephra_limited SEC(".maps");

static __always_inline int over_limit(__u32 source) {
  __u32 key = 0;
  struct source_limit *limit = bpf_map_lookup_elem(&tephra_limit, &key);
  if (!limit || limit->ns_per_datagram == 0)
    return 0;
  __u64 now = bpf_ktime_get_ns();
  struct bucket *bucket = bpf_map_lookup_elem(&tephra_sources, &source);
  if (!bucket) {
    struct bucket fresh = {.credit_ns = limit->burst_ns - limit->ns_per_datagram, .updated_ns = now};
    bpf_map_update_elem(&tephra_sources, &source, &fresh, BPF_ANY);
    return 0;
  }
  __u64 credit = bucket->credit_ns + (now - bucket->updated_ns);
  if (credit > limit->burst_ns)
    credit = limit->burst_ns;
  bucket->updated_ns = now;
  if (credit < limit->ns_per_datagram) {
    bucket->credit_ns = credit;
    __u64 *limited = bpf_map_lookup_elem(&tephra_limited, &key);
    if (limited)
      *limited += 1;
    return 1;
  }
  bucket->credit_ns = credit - limit->ns_per_datagram;
  return 0;
}

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
  if (over_limit(ip->saddr))
    return XDP_DROP;
  return bpf_redirect_map(&tephra_xsks, ctx->rx_queue_index, XDP_PASS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
