//! Rust std threads: four workers send partial sums through a channel and
//! are joined; a shared counter behind a Mutex and an Arc is checked too.
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

fn main() {
    let (tx, rx) = mpsc::channel();
    let counter = Arc::new(Mutex::new(0u64));
    let mut handles = Vec::new();
    for t in 0..4u64 {
        let tx = tx.clone();
        let counter = Arc::clone(&counter);
        handles.push(thread::spawn(move || {
            let sum: u64 = (t * 1000..(t + 1) * 1000).sum();
            *counter.lock().unwrap() += 1;
            tx.send(sum).unwrap();
            t
        }));
    }
    drop(tx);
    let total: u64 = rx.iter().sum();
    let ids: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    println!("total {total} ids {ids} counter {}", *counter.lock().unwrap());
}
