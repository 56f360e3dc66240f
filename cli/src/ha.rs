//! `tephra ha status` and `tephra ha step-down`: a high-availability pair
//! as etcd holds it (docs/operators.md).

use tephra_ha::Election;
use tephra_node::config::Config;

/// `tephra ha status`: the leader and every node's published status.
pub fn status(config: &Config) -> Result<String, String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let election = Election::connect(config.ha.etcd()).await.map_err(|e| e.to_string())?;
        let leader = election.leader().await.map_err(|e| e.to_string())?;
        let mut out = match leader {
            Some(l) => format!(
                "leader  {} epoch {} (rpc {}, replication {})\n",
                l.value.node_id, l.epoch, l.value.rpc, l.value.replication
            ),
            None => "leader  none (an election is due)\n".to_string(),
        };
        let signed = election.signed_height().await.map_err(|e| e.to_string())?;
        out.push_str(&format!("signed  up to block {signed} (a node lacking a block below cannot lead)\n"));
        for (node, json) in election.statuses().await.map_err(|e| e.to_string())? {
            out.push_str(&format!("node    {node} {json}\n"));
        }
        Ok(out)
    })
}

/// `tephra ha step-down`: the leader's key goes (only if it is still the
/// epoch read); the leader stops and a caught-up standby takes over.
pub fn step_down(config: &Config) -> Result<String, String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let election = Election::connect(config.ha.etcd()).await.map_err(|e| e.to_string())?;
        let Some(leader) = election.leader().await.map_err(|e| e.to_string())? else {
            return Err("no leader to step down".to_string());
        };
        if election.delete_leader(leader.epoch).await.map_err(|e| e.to_string())? {
            Ok(format!("{} (epoch {}) stepped down", leader.value.node_id, leader.epoch))
        } else {
            Err("the leader changed meanwhile; nothing done".to_string())
        }
    })
}
