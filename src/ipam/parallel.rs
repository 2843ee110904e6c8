//! Spreads per-file work of large stores over a few threads: reading or
//! writing 65 000 small files is syscall-bound, and the kernel serves them
//! in parallel. Small stores (the common case) stay on one thread and never
//! ask how many CPUs there are (that reads cgroup files).

/// Below this many items one thread does all the work.
pub const THRESHOLD: usize = 2048;

/// `items.iter().map(f)` in order, on up to 8 threads when `items` is large.
/// A panic in a worker is resumed on the caller.
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    if items.len() < THRESHOLD {
        return items.iter().map(f).collect();
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    if threads < 2 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_order_small_and_large() {
        for n in [0, 5, super::THRESHOLD + 7] {
            let items: Vec<usize> = (0..n).collect();
            assert_eq!(
                super::map(&items, |x| x * 2),
                (0..n).map(|x| x * 2).collect::<Vec<_>>()
            );
        }
    }
}
