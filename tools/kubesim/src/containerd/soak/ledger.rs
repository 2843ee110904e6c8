//! Who holds which pod IP: a pod holds its IP from the moment
//! `PodSandboxStatus` reported it after RunPodSandbox until the kubelet
//! sends StopPodSandbox (the CNI DEL runs inside that call, so only then may
//! the IP go to another pod). Two holders of one IP at any instant is a
//! double allocation, the one failure no retry can hide.

use std::collections::HashMap;
use std::sync::Mutex;

/// A sandbox holding an IP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// `namespace/name` of the pod.
    pub pod: String,
    /// The node.
    pub node: String,
    /// The CRI sandbox id.
    pub sandbox_id: String,
}

/// Two live sandboxes reported the same IP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DoubleHold {
    /// The IP.
    pub ip: String,
    /// The sandbox that held it first.
    pub first: Holder,
    /// The sandbox that was given it while the first still held it.
    pub second: Holder,
}

impl std::fmt::Display for DoubleHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} held by {} ({}, sandbox {}) and {} ({}, sandbox {})",
            self.ip,
            self.first.pod,
            self.first.node,
            short(&self.first.sandbox_id),
            self.second.pod,
            self.second.node,
            short(&self.second.sandbox_id)
        )
    }
}

fn short(id: &str) -> &str {
    &id[..12.min(id.len())]
}

#[derive(Debug, Default)]
struct Inner {
    live: HashMap<String, Holder>,
    doubles: Vec<DoubleHold>,
    acquired: usize,
    distinct: std::collections::HashSet<String>,
    max_live: usize,
}

/// The live IPs of every pod, shared by the workers.
#[derive(Debug, Default)]
pub struct Ledger {
    inner: Mutex<Inner>,
}

/// Figures of a finished run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LedgerFigures {
    /// IPs handed out (one per successful sandbox).
    pub acquired: usize,
    /// Distinct IPs among them (more acquisitions than IPs = reuse).
    pub distinct: usize,
    /// Most IPs live at one time.
    pub max_live: usize,
    /// IPs still held (should be 0 after the drain).
    pub still_live: usize,
    /// Every double allocation seen.
    pub doubles: Vec<DoubleHold>,
}

impl Ledger {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A worker that panicked cannot leave the map half-updated.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `holder` now holds `ip`; a double allocation if someone else does.
    pub fn acquire(&self, ip: &str, holder: Holder) -> Result<(), Box<DoubleHold>> {
        let mut g = self.lock();
        g.acquired += 1;
        g.distinct.insert(ip.to_string());
        if let Some(first) = g.live.get(ip) {
            let d = DoubleHold {
                ip: ip.to_string(),
                first: first.clone(),
                second: holder,
            };
            g.doubles.push(d.clone());
            return Err(Box::new(d));
        }
        g.live.insert(ip.to_string(), holder);
        g.max_live = g.max_live.max(g.live.len());
        Ok(())
    }

    /// The sandbox `sandbox_id` gives `ip` up (StopPodSandbox is about to
    /// be sent). Releasing an IP someone else holds changes nothing.
    pub fn release(&self, ip: &str, sandbox_id: &str) {
        let mut g = self.lock();
        if g.live.get(ip).is_some_and(|h| h.sandbox_id == sandbox_id) {
            g.live.remove(ip);
        }
    }

    /// True while `sandbox_id` holds an IP.
    pub fn holds(&self, sandbox_id: &str) -> bool {
        self.lock()
            .live
            .values()
            .any(|h| h.sandbox_id == sandbox_id)
    }

    /// The live holders (sandbox id → IP).
    pub fn live(&self) -> HashMap<String, String> {
        self.lock()
            .live
            .iter()
            .map(|(ip, h)| (h.sandbox_id.clone(), ip.clone()))
            .collect()
    }

    /// The figures so far.
    pub fn figures(&self) -> LedgerFigures {
        let g = self.lock();
        LedgerFigures {
            acquired: g.acquired,
            distinct: g.distinct.len(),
            max_live: g.max_live,
            still_live: g.live.len(),
            doubles: g.doubles.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(id: &str) -> Holder {
        Holder {
            pod: format!("soak/{id}"),
            node: "node-1".into(),
            sandbox_id: id.into(),
        }
    }

    #[test]
    fn an_ip_reused_after_release_is_fine_and_reuse_is_counted() {
        let l = Ledger::default();
        l.acquire("10.244.1.2", h("a")).expect("first");
        l.acquire("10.244.1.3", h("b")).expect("second");
        assert!(l.holds("a"));
        l.release("10.244.1.2", "a");
        assert!(!l.holds("a"));
        l.acquire("10.244.1.2", h("c"))
            .expect("reuse after release");
        let f = l.figures();
        assert_eq!(
            (f.acquired, f.distinct, f.max_live, f.still_live),
            (3, 2, 2, 2)
        );
        assert!(f.doubles.is_empty());
    }

    #[test]
    fn a_second_live_holder_is_a_double_allocation() {
        let l = Ledger::default();
        l.acquire("10.244.1.2", h("a")).expect("first");
        let d = l.acquire("10.244.1.2", h("b")).expect_err("double");
        assert_eq!(
            (d.first.sandbox_id.as_str(), d.second.sandbox_id.as_str()),
            ("a", "b")
        );
        assert!(d.to_string().contains("10.244.1.2 held by soak/a"));
        // The stale release of someone else's IP keeps the first holder.
        l.release("10.244.1.2", "b");
        assert!(l.holds("a"));
        assert_eq!(l.figures().doubles.len(), 1);
        assert_eq!(l.live().get("a").map(String::as_str), Some("10.244.1.2"));
    }
}
