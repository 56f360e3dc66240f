//! The results of a run (`results.json`), the goals judged on them, the
//! markdown report and its SVG plots.

use std::{fmt::Write as _, fs, path::Path};

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{
    floor::Floor,
    measure::{LatencySummary, Phase},
};

pub const RESULTS_FILE: &str = "results.json";
pub const REPORT_FILE: &str = "report.md";
pub const PLOT_LATENCY: &str = "latency_cdf.svg";
pub const PLOT_THROUGHPUT: &str = "throughput.svg";
pub const PLOT_STAGES: &str = "stage_costs.svg";

/// Everything a run measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Results {
    /// The command line that produced them.
    pub command: String,
    pub machine: Machine,
    /// tephra's block time and the block signer's latency, for the signed
    /// block goal: the node's own mean block signature at half load (its
    /// signer as configured), else the bare key's in-process cost.
    pub block_time_ms: f64,
    pub signing_latency_ms: f64,
    pub floors: Vec<Floor>,
    /// This disk's group commit alone, the floor under a durable
    /// preconfirmation.
    #[serde(default)]
    pub disk_commit: Option<LatencySummary>,
    pub phases: Vec<Phase>,
    /// The UDP sweep: names of its phases (its steps in offered order, then
    /// the probes that refine the knee); and the knee.
    pub sweep: Vec<String>,
    pub knee_tx_per_s: Option<f64>,
    /// JSON-RPC reads, idle and under half the UDP maximum.
    #[serde(default)]
    pub reads: Option<crate::reads::Reads>,
    /// Goal 1's alternating closed loops, in order.
    #[serde(default)]
    pub ingress: Vec<IngressRound>,
    pub goals: Vec<Goal>,
}

/// One round of goal 1: the UDP closed loop, then the JSON-RPC one.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct IngressRound {
    pub udp_tx_per_s: f64,
    pub rpc_tx_per_s: f64,
}

impl IngressRound {
    pub fn ratio(&self) -> f64 {
        self.rpc_tx_per_s / self.udp_tx_per_s.max(f64::MIN_POSITIVE)
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub kernel: String,
}

impl Machine {
    pub fn this() -> Self {
        let cpu = fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
            .unwrap_or_default();
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
        Self { cores: std::thread::available_parallelism().map_or(1, usize::from), cpu, kernel }
    }
}

/// One goal of the harness, judged.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Goal {
    pub name: String,
    pub measured: String,
    pub target: String,
    pub met: bool,
}

impl Results {
    pub fn phase(&self, name: &str) -> Option<&Phase> {
        self.phases.iter().find(|p| p.label.name == name)
    }

    /// The round with the median JSON-RPC/UDP ratio (the lower middle of an
    /// even count).
    pub fn ingress_median(&self) -> Option<IngressRound> {
        let mut rounds = self.ingress.clone();
        rounds.sort_by(|a, b| a.ratio().total_cmp(&b.ratio()));
        rounds.get(rounds.len().saturating_sub(1) / 2).copied()
    }

    pub fn write(&self, dir: &Path) -> Result<(), String> {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let json = serde_json::to_string_pretty(self).expect("serialisable");
        fs::write(dir.join(RESULTS_FILE), json).map_err(|e| e.to_string())?;
        plot_latency(self, &dir.join(PLOT_LATENCY))?;
        plot_throughput(self, &dir.join(PLOT_THROUGHPUT))?;
        plot_stages(self, &dir.join(PLOT_STAGES))?;
        fs::write(dir.join(REPORT_FILE), self.markdown()).map_err(|e| e.to_string())
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let _ = writeln!(md, "# tephra-bench report\n");
        let _ = writeln!(md, "`{}`\n", self.command);
        let _ = writeln!(md, "Machine: {} cores, {}, Linux {}.\n", m.cores, m.cpu, m.kernel);
        if !self.goals.is_empty() {
            let _ = writeln!(md, "## Goals\n\n| goal | measured | target | |\n|---|---|---|---|");
            for g in &self.goals {
                let verdict = if g.met { "met" } else { "**missed**" };
                let _ = writeln!(md, "| {} | {} | {} | {verdict} |", g.name, g.measured, g.target);
            }
            md.push('\n');
        }
        if !self.floors.is_empty() {
            let _ = writeln!(
                md,
                "## Floor: in-process cost per transaction (us)\n\n| workload | decode | recover | execute | state root | block roots | signing | total | ceiling on {} cores (tx/s) |\n|---|---|---|---|---|---|---|---|---|",
                self.floors[0].cores
            );
            for f in &self.floors {
                let _ = writeln!(
                    md,
                    "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.3} | {:.2} | {:.0} |",
                    f.workload,
                    f.decode_us,
                    f.recover_us,
                    f.execute_us,
                    f.state_root_us,
                    f.block_roots_us,
                    f.signing_us,
                    f.total_us,
                    f.ceiling_tx_per_s
                );
            }
            if let Some(c) = &self.disk_commit {
                let _ = writeln!(
                    md,
                    "\nThis disk's group commit alone ({} appends of {} bytes, each followed by fdatasync): p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms.",
                    c.count,
                    crate::floor::COMMIT_BYTES,
                    c.p50,
                    c.p99,
                    c.p999,
                    c.max
                );
            }
            let _ = writeln!(md, "\n![stage costs]({PLOT_STAGES})\n");
        }
        if !self.phases.is_empty() {
            let _ = writeln!(
                md,
                "## Phases\n\nLatency in ms from the (scheduled) send. `included` counts until the last accepted transaction's receipt.\n\n| phase | peer | workload | driver | offered tx/s | accepted tx/s | included tx/s | accepted/sent | refused | lost | preconf p50 / p90 / p99 / p99.9 / max | sealed p50 / p99 | signed p50 / p99 | RSS MiB |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
            );
            for p in &self.phases {
                let l = &p.label;
                let summary = |s: &Option<LatencySummary>, full: bool| match s {
                    Some(s) if full => {
                        format!("{:.2} / {:.2} / {:.2} / {:.2} / {:.2}", s.p50, s.p90, s.p99, s.p999, s.max)
                    }
                    Some(s) => format!("{:.2} / {:.2}", s.p50, s.p99),
                    None => "-".into(),
                };
                let refused = if p.rejected.is_empty() {
                    "0".to_string()
                } else {
                    p.rejected.iter().map(|(r, n)| format!("{n} {r}")).collect::<Vec<_>>().join("; ")
                };
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {:.0} | {} | {}/{} | {refused} | {} | {} | {} | {} | {} |",
                    l.name,
                    l.peer,
                    l.workload,
                    l.driver.name(),
                    l.offered_tx_per_s.map_or_else(|| "closed loop".into(), |r| format!("{r:.0}")),
                    p.achieved_tx_per_s,
                    p.included_tx_per_s.map_or_else(|| "-".into(), |r| format!("{r:.0}")),
                    p.accepted,
                    p.sent,
                    p.lost,
                    summary(&p.preconf_ms, true),
                    summary(&p.sealed_ms, false),
                    summary(&p.signed_ms, false),
                    p.rss_mib,
                );
            }
            md.push_str(&inside_tephra(&self.phases));
            let _ = writeln!(
                md,
                "\n![latency CDF]({PLOT_LATENCY})\n\n![throughput against offered load]({PLOT_THROUGHPUT})"
            );
        }
        md
    }
}

/// The node's own view of each tephra phase: how much of the latency a
/// client sees is the node, and where in it (group commits, seals).
fn inside_tephra(phases: &[Phase]) -> String {
    let mut md = String::from(
        "\n### Inside tephra\n\nFrom the node's own histograms, in us (p99 is the upper bound of its bucket; the buckets double from 10 us).\n\n| phase | receive to preconfirmed: mean / p99 <= | group commits: count, mean / p99 <= | seals: count, mean / p99 <= | block signatures: mean / p99 <= | seal to signature published: mean / p99 <= |\n|---|---|---|---|---|---|\n",
    );
    for p in phases {
        if let Some(n) = &p.node {
            let _ = writeln!(
                md,
                "| {} | {:.0} / {:.0} | {}, {:.0} / {:.0} | {}, {:.0} / {:.0} | {:.0} / {:.0} | {:.0} / {:.0} |",
                p.label.name,
                n.preconf.mean_us,
                n.preconf.p99_us_at_most,
                n.fsync.count,
                n.fsync.mean_us,
                n.fsync.p99_us_at_most,
                n.seal.count,
                n.seal.mean_us,
                n.seal.p99_us_at_most,
                n.block_sign.mean_us,
                n.block_sign.p99_us_at_most,
                n.block_signed.mean_us,
                n.block_signed.p99_us_at_most
            );
        }
    }
    md
}

fn plot_error(e: impl std::fmt::Display) -> String {
    format!("plot: {e}")
}

/// Latency by quantile for every phase with latencies (the HDR plot: x is
/// 1 / (1 - quantile) on a log scale, so the tail has room).
fn plot_latency(results: &Results, path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut series = Vec::new();
    for phase in &results.phases {
        for (kind, summary) in
            [("preconf", &phase.preconf_ms), ("sealed", &phase.sealed_ms), ("signed", &phase.signed_ms)]
        {
            if let Some(s) = summary
                && phase.label.offered_tx_per_s.is_some()
                && !results.sweep.contains(&phase.label.name)
            {
                series.push((format!("{} {kind}", phase.label.name), s.cdf.clone()));
            }
        }
    }
    let y_max = series.iter().flat_map(|(_, c)| c.iter().map(|p| p.1)).fold(1.0f64, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption("latency by percentile (open loop)", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((1f64..1000f64).log_scale(), (0.01f64..y_max).log_scale())
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .x_label_formatter(&|x| format!("{:.1}%", 100.0 - 100.0 / x))
        .y_desc("latency (ms)")
        .draw()
        .map_err(plot_error)?;
    for (i, (name, cdf)) in series.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        let points = cdf.iter().filter(|(q, _)| *q < 0.9995).map(|(q, ms)| (1.0 / (1.0 - q), ms.max(0.01)));
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(plot_error)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(plot_error)?;
    root.present().map_err(plot_error)
}

/// The UDP sweep: achieved against offered, beside the line where they are equal.
fn plot_throughput(results: &Results, path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (800, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut points: Vec<(f64, f64)> = results
        .sweep
        .iter()
        .filter_map(|name| results.phase(name))
        .filter_map(|p| Some((p.label.offered_tx_per_s?, p.achieved_tx_per_s)))
        .collect();
    // The knee's probes come after the steps.
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let top = points.iter().map(|p| p.0.max(p.1)).fold(1.0f64, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption("UDP transfers: accepted against offered", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..top, 0f64..top)
        .map_err(plot_error)?;
    chart.configure_mesh().x_desc("offered (tx/s)").y_desc("accepted (tx/s)").draw().map_err(plot_error)?;
    chart
        .draw_series(LineSeries::new([(0.0, 0.0), (top, top)], BLACK.mix(0.3)))
        .map_err(plot_error)?
        .label("accepted = offered")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.3)));
    chart
        .draw_series(LineSeries::new(points.clone(), BLUE.stroke_width(2)))
        .map_err(plot_error)?
        .label("tephra")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart.draw_series(points.iter().map(|p| Circle::new(*p, 4, BLUE.filled()))).map_err(plot_error)?;
    if let Some(knee) = results.knee_tx_per_s {
        chart
            .draw_series(LineSeries::new([(knee, 0.0), (knee, top)], RED.mix(0.6)))
            .map_err(plot_error)?
            .label(format!("knee {knee:.0} tx/s"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.mix(0.6)));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(plot_error)?;
    root.present().map_err(plot_error)
}

/// Stage costs per workload, stacked.
fn plot_stages(results: &Results, path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let rows = results.floors.len().max(1);
    let x_max = results.floors.iter().map(|f| f.total_us).fold(1.0f64, f64::max) * 1.15;
    let names: Vec<String> = results.floors.iter().map(|f| f.workload.clone()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption("in-process cost per transaction, by stage", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(90)
        .build_cartesian_2d(0f64..x_max, 0f64..rows as f64)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(rows * 2 + 1)
        .y_label_formatter(&|y| {
            let row = y - 0.5;
            if (row - row.round()).abs() < 0.01 && row >= 0.0 {
                names.get(row.round() as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc("microseconds")
        .draw()
        .map_err(plot_error)?;
    let stage_names = results.floors.first().map(|f| f.stages().map(|(n, _)| n)).unwrap_or_default();
    for (s, stage) in stage_names.iter().enumerate() {
        let colour = Palette99::pick(s).to_rgba();
        let bars: Vec<Rectangle<(f64, f64)>> = results
            .floors
            .iter()
            .enumerate()
            .map(|(row, f)| {
                let stages = f.stages();
                let from: f64 = stages[..s].iter().map(|(_, us)| us).sum();
                let y = row as f64;
                Rectangle::new([(from, y + 0.2), (from + stages[s].1, y + 0.8)], colour.filled())
            })
            .collect();
        chart
            .draw_series(bars)
            .map_err(plot_error)?
            .label(*stage)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], colour.filled()));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(plot_error)?;
    root.present().map_err(plot_error)
}
