//! Starts threads that all exit before the main thread, which then exits with status 7.
fn main() {
    let threads: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(20 + 5 * i));
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread panicked");
    }
    std::process::exit(7);
}
