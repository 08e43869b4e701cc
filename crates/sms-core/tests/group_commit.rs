//! Concurrent commits share flushes (group commit), and still every commit
//! that returned is on disk: a writer process is SIGKILLed while many of
//! its threads commit, and everything it reported committed is found when
//! the store is opened again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sms_core::store::{Batch, Store};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

const CHILD: &str = "SMS_GROUP_COMMIT_STORE";
const THREADS: u64 = 8;

/// The writer, run in a child process by the test below: each thread puts
/// its own keys and prints each key once its commit returned.
#[test]
fn writer_process() {
    let Ok(path) = std::env::var(CHILD) else {
        return;
    };
    let store = Store::open(std::path::Path::new(&path)).unwrap();
    let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, out) = (store.clone(), out.clone());
            std::thread::spawn(move || {
                // Bounded: the parent kills it long before.
                for i in 0..20_000u64 {
                    let key = t << 32 | i;
                    let mut b = Batch::new();
                    b.put("data", key.to_be_bytes(), vec![t as u8; 64]);
                    store.commit(&b).unwrap();
                    let mut o = out.lock().unwrap();
                    writeln!(o, "{key}").unwrap();
                    o.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn every_returned_commit_survives_a_kill_of_the_writer() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (round, after) in [150usize, 700, 1500, 3100, 40].into_iter().enumerate() {
        let path = dir.path().join(format!("store-{round}"));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "writer_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, &path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut reported = Vec::new();
        while reported.len() < after {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Ok(k) = l.trim().parse::<u64>() {
                        reported.push(k);
                    }
                }
                _ => panic!("the writer stopped after {} commits", reported.len()),
            }
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        // What was printed before the kill came after its commit returned.
        for l in lines.map_while(Result::ok) {
            if let Ok(k) = l.trim().parse::<u64>() {
                reported.push(k);
            }
        }
        child.wait().unwrap();
        let store = Store::open(&path).unwrap();
        let missing: Vec<u64> = reported
            .iter()
            .copied()
            .filter(|k| store.get("data", k.to_be_bytes()).unwrap().is_none())
            .collect();
        assert!(
            missing.is_empty(),
            "round {round}: {} of {} returned commits lost, e.g. {:?}",
            missing.len(),
            reported.len(),
            &missing[..missing.len().min(5)]
        );
        assert!(
            store.last_seq().unwrap() as usize >= reported.len(),
            "round {round}: the sequence is behind the commits"
        );
        println!(
            "round {round}: {} commits returned before the kill, all present",
            reported.len()
        );
    }
}
