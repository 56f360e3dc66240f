//! `tephra ready`: whether the running node is ready, asked over HTTP as
//! any health check would (the appliance's boot assessment runs it).

use std::time::{Duration, Instant};

use tephra_node::config::Config;

/// How often `ask_ready` asks again.
const READY_POLL: Duration = Duration::from_millis(500);

/// Asks a running node's /ready (at `metrics.listen`) until it answers ready
/// or `wait` has passed: `tephra ready`, the health check of boot assessment.
pub fn ask_ready(config: &Config, wait: Duration) -> Result<String, String> {
    let mut address = config.metrics.listen;
    if address.ip().is_unspecified() {
        address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let url = format!("http://{address}/ready");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    let deadline = Instant::now() + wait;
    loop {
        let (ready, answer) = match agent.get(&url).call() {
            Ok(mut response) => {
                let body = response.body_mut().read_to_string().unwrap_or_default();
                (response.status() == 200, body.trim().to_string())
            }
            Err(error) => (false, format!("{url}: {error}")),
        };
        if ready {
            return Ok(answer);
        }
        if Instant::now() >= deadline {
            return Err(answer);
        }
        std::thread::sleep(READY_POLL);
    }
}
