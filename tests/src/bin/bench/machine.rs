//! What the bench ran on: cores, CPU model, memory and load, read from `/proc` (Linux).

/// The machine, as printed above the table.
#[derive(Debug, Clone)]
pub struct Machine {
    /// Cores this process may use (`nproc`).
    pub cores: usize,
    pub cpu_model: String,
    pub mem_total: String,
    /// The 1-minute load average at the start: other work on the machine skews timings.
    pub load: String,
}

impl Machine {
    /// Reads the figures; unknown ones read "unknown".
    pub fn probe() -> Machine {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_total = field(&meminfo, "MemTotal")
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or_else(
                || "unknown".into(),
                |kib| format!("{:.1} GiB", kib as f64 / (1u64 << 20) as f64),
            );
        let load = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().map(str::to_owned))
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cores,
            cpu_model,
            mem_total,
            load,
        }
    }

    /// One line: `nproc 2 · AMD EPYC · 23.4 GiB RAM · load 0.52`.
    pub fn line(&self) -> String {
        format!(
            "nproc {} · {} · {} RAM · load average {} at start",
            self.cores, self.cpu_model, self.mem_total, self.load
        )
    }
}

/// The value of the first `key : value` line of a `/proc` file.
fn field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_owned())
    })
}
