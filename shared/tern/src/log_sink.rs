//! Where log lines go: a buffer in memory that a thread of its own writes to stdout in batches.
//!
//! A request appends its line under a lock and returns. The writer thread sleeps until the buffer
//! holds something, waits [`BATCH_WAIT`] for more, and writes it all in one `write(2)`. Under load
//! that is about 200 writes and 200 wake-ups a second whatever the request rate; idle, the thread
//! sleeps. (tracing-appender's worker, used before, woke for every line and spun on
//! `sched_yield` between them: 2.7 system calls per request beside the request's own 4, measured
//! with `strace -c` in decision 0030.)
//!
//! Nothing is dropped: past [`MAX_BUFFERED`] bytes (stdout stalled) a logging call waits for
//! room, so a stuck pipe slows requests rather than losing lines. [`SinkGuard`] writes what is
//! left at exit; lines logged after that go straight to stdout.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tracing_subscriber::fmt::MakeWriter;

/// How long the writer gathers lines after the first of a batch: the most a line waits.
pub(crate) const BATCH_WAIT: Duration = Duration::from_millis(5);
/// Bytes buffered before a logging call waits for the writer.
pub(crate) const MAX_BUFFERED: usize = 4 << 20;

struct State {
    buf: Vec<u8>,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer: the buffer stopped being empty, or the sink closed.
    filled: Condvar,
    /// Wakes waiting callers: the writer took the buffer.
    drained: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The `MakeWriter` the log layers write through. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Sink {
    shared: Arc<Shared>,
}

/// Stops the writer thread when dropped, after it wrote every buffered line.
#[must_use = "buffered lines are written when the guard is dropped"]
pub(crate) struct SinkGuard {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sink {
    /// A sink writing to `out` from a thread named `tern-log`.
    pub(crate) fn start<W: Write + Send + 'static>(mut out: W) -> (Sink, SinkGuard) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                buf: Vec::with_capacity(64 * 1024),
                closed: false,
            }),
            filled: Condvar::new(),
            drained: Condvar::new(),
        });
        let writer = shared.clone();
        let thread = std::thread::Builder::new()
            .name("tern-log".into())
            .spawn(move || {
                let mut spare = Vec::with_capacity(64 * 1024);
                loop {
                    let mut st = writer.lock();
                    while st.buf.is_empty() && !st.closed {
                        st = writer
                            .filled
                            .wait(st)
                            .unwrap_or_else(PoisonError::into_inner);
                    }
                    if !st.closed {
                        // Let the batch grow; callers keep appending meanwhile.
                        drop(st);
                        std::thread::sleep(BATCH_WAIT);
                        st = writer.lock();
                    }
                    std::mem::swap(&mut st.buf, &mut spare);
                    let closed = st.closed;
                    drop(st);
                    writer.drained.notify_all();
                    // A write error (stdout closed) has nowhere to be reported; the lines are dropped.
                    let _ = out.write_all(&spare).and_then(|()| out.flush());
                    spare.clear();
                    if closed && writer.lock().buf.is_empty() {
                        return;
                    }
                }
            });
        let thread = match thread {
            Ok(t) => Some(t),
            Err(_) => {
                // No thread: the sink behaves as closed and every line goes straight to stdout.
                shared.lock().closed = true;
                None
            }
        };
        (
            Sink {
                shared: shared.clone(),
            },
            SinkGuard { shared, thread },
        )
    }

    fn append(&self, line: &[u8]) -> std::io::Result<()> {
        let mut st = self.shared.lock();
        while !st.closed && !st.buf.is_empty() && st.buf.len() + line.len() > MAX_BUFFERED {
            st = self
                .shared
                .drained
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if st.closed {
            drop(st);
            return std::io::stdout().lock().write_all(line);
        }
        let was_empty = st.buf.is_empty();
        st.buf.extend_from_slice(line);
        drop(st);
        if was_empty {
            self.shared.filled.notify_one();
        }
        Ok(())
    }
}

impl Drop for SinkGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.filled.notify_one();
        self.shared.drained.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One logging call's writer: what it is given goes into the sink's buffer.
pub(crate) struct SinkWriter<'a>(&'a Sink);

impl Write for SinkWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.append(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Sink {
    type Writer = SinkWriter<'a>;
    fn make_writer(&'a self) -> Self::Writer {
        SinkWriter(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<(Vec<u8>, usize)>>);
    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut c = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            c.0.extend_from_slice(buf);
            c.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_in_order_in_few_writes() {
        let out = Capture::default();
        let (sink, guard) = Sink::start(out.clone());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    for i in 0..2_000 {
                        let line = format!("{t} {i}\n");
                        sink.make_writer()
                            .write_all(line.as_bytes())
                            .expect("append");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("a logging thread");
        }
        drop(guard);
        let (bytes, writes) = out.0.lock().map(|c| (c.0.clone(), c.1)).expect("capture");
        let text = String::from_utf8(bytes).expect("UTF-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8_000, "every line is written once");
        for t in 0..4 {
            let mine: Vec<usize> = lines
                .iter()
                .filter_map(|l| l.strip_prefix(&format!("{t} ")))
                .map(|i| i.parse().expect("a number"))
                .collect();
            assert_eq!(
                mine,
                (0..2_000).collect::<Vec<_>>(),
                "thread {t}'s lines in order"
            );
        }
        assert!(writes < 8_000 / 10, "{writes} writes for 8,000 lines");
    }

    #[test]
    fn a_stalled_output_makes_callers_wait_and_loses_nothing() {
        /// An output that takes 50 ms per write.
        #[derive(Clone, Default)]
        struct Slow(Capture);
        impl Write for Slow {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                std::thread::sleep(Duration::from_millis(50));
                self.0.write(buf)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Slow::default();
        let (sink, guard) = Sink::start(out.clone());
        let line = vec![b'x'; 1023];
        for _ in 0..(3 * MAX_BUFFERED / 1024) {
            let mut l = line.clone();
            l.push(b'\n');
            sink.make_writer().write_all(&l).expect("append");
        }
        drop(guard);
        let written = out.0.0.lock().map(|c| c.0.len()).expect("capture");
        assert_eq!(written, 3 * MAX_BUFFERED);
        // After the guard, lines still go out (straight to stdout).
        assert!(sink.make_writer().write_all(b"late line\n").is_ok());
    }
}
