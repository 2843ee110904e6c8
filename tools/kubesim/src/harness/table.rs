//! Plain-text tables for `status` and `demo`.

use super::state::State;

/// A table with a header row; columns are padded to their widest cell.
#[derive(Clone, Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row (missing cells are blank).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders with two spaces between columns and a rule under the header.
    pub fn render(&self) -> String {
        let cols = self.header.len();
        let mut width: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(cols) {
                width[i] = width[i].max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (i, w) in width.iter().enumerate() {
                let cell = cells.get(i).map(String::as_str).unwrap_or("");
                if i + 1 == cols {
                    out.push_str(cell);
                } else {
                    out.push_str(&format!("{cell:<w$}  "));
                }
            }
            out.trim_end().to_string() + "\n"
        };
        let mut out = line(&self.header);
        let total: usize = width.iter().sum::<usize>() + 2 * cols.saturating_sub(1);
        out.push_str(&"-".repeat(total));
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

/// The nodes table of `status` and `demo`.
pub fn nodes_table(state: &State) -> String {
    let mut t = Table::new(&[
        "NODE",
        "NETNS INODE",
        "UNDERLAY IP",
        "POD CIDR",
        "BRIDGE",
        "PODS",
    ]);
    for n in &state.nodes {
        let pods = state.pods.iter().filter(|p| p.node == n.name).count();
        t.row(vec![
            n.name.clone(),
            n.netns_inode.to_string(),
            n.underlay_ip.clone(),
            n.pod_cidrs.join(","),
            n.bridge.clone(),
            pods.to_string(),
        ]);
    }
    t.render()
}

/// The pods table of `status` and `demo`.
pub fn pods_table(state: &State) -> String {
    let mut t = Table::new(&["POD", "NODE", "SANDBOX", "IP", "CONTAINERS"]);
    for p in &state.pods {
        let containers: Vec<String> = p
            .containers
            .iter()
            .map(|c| {
                let st = if c.process.is_some() { "" } else { " stopped" };
                format!("{}:{} (restarts {}){st}", c.name, c.port, c.restarts)
            })
            .collect();
        t.row(vec![
            p.key(),
            p.node.clone(),
            p.short_id().to_string(),
            if p.ips.is_empty() {
                "-".into()
            } else {
                p.ips.join(",")
            },
            containers.join(", "),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_columns() {
        let mut t = Table::new(&["A", "BB"]);
        t.row(vec!["xyz".into(), "1".into()]);
        assert_eq!(t.render(), "A    BB\n-------\nxyz  1\n");
    }
}
