//! Where log lines go: a buffer in memory that a thread of its own writes to stdout in batches.
//!
//! A request appends its line under a lock and returns. The writer thread sleeps until the buffer
//! holds something, waits [`BATCH_WAIT`] for more, and writes it all in one `write(2)`. Under load
//! that is about 200 writes and 200 wake-ups a second whatever the request rate; idle, the thread
//! sleeps. (tracing-appender's worker, used before, woke for every line and spun on
//! `sched_yield` between them: 2.1 system calls per request, measured with `strace -c` in
//! decision 0030.)
//!
//! Nothing is dropped while the output takes it: past [`MAX_BUFFERED`] bytes (stdout stalled) a
//! logging call waits for room, so a stuck pipe slows requests rather than losing lines. At exit
//! [`SinkGuard`] lets the writer write what is left, waiting at most [`EXIT_WAIT`] for an output
//! that does not take it (a process must be able to exit); lines logged after that are written
//! directly, in order.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tracing_subscriber::fmt::MakeWriter;

/// How long the writer gathers lines after the first of a batch: the most a line waits.
pub(crate) const BATCH_WAIT: Duration = Duration::from_millis(5);
/// Bytes buffered before a logging call waits for the writer.
pub(crate) const MAX_BUFFERED: usize = 4 << 20;
/// How long the exit waits for the last lines to be written.
pub(crate) const EXIT_WAIT: Duration = Duration::from_secs(1);
/// Buffers are kept at this capacity between batches; a stall's larger ones are given back.
const KEPT_CAPACITY: usize = 64 << 10;

type Output = Arc<Mutex<Box<dyn Write + Send>>>;

struct State {
    buf: Vec<u8>,
    /// The guard asked the writer to write what is left and stop.
    stopping: bool,
    /// The writer has stopped.
    done: bool,
    /// Lines are written by the caller, to the same output (after the writer, or without one).
    direct: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer: the buffer stopped being empty, or the guard asks it to stop.
    filled: Condvar,
    /// Wakes waiting callers and the guard: the writer took the buffer, or stopped.
    drained: Condvar,
    out: Output,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `bytes` to the output, retrying an output that would block; reports the first
    /// other failure on stderr (there is nowhere else to say it).
    fn write_out(&self, bytes: &[u8]) {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let mut rest = bytes;
        let mut retries = 0;
        while !rest.is_empty() {
            match out.write(rest) {
                Ok(0) => break,
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && retries < 200 => {
                    retries += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => {
                    static REPORTED: std::sync::Once = std::sync::Once::new();
                    REPORTED.call_once(|| eprintln!("tern: cannot write log lines: {e}"));
                    return;
                }
            }
        }
        let _ = out.flush();
    }
}

/// The `MakeWriter` the log layers write through. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Sink {
    shared: Arc<Shared>,
}

/// Stops the writer thread when dropped, once it wrote every buffered line (or [`EXIT_WAIT`]
/// passed).
#[must_use = "buffered lines are written when the guard is dropped"]
pub(crate) struct SinkGuard {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sink {
    /// A sink writing to `out` from a thread named `tern-log`.
    pub(crate) fn start<W: Write + Send + 'static>(out: W) -> (Sink, SinkGuard) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                buf: Vec::new(),
                stopping: false,
                done: false,
                direct: false,
            }),
            filled: Condvar::new(),
            drained: Condvar::new(),
            out: Arc::new(Mutex::new(Box::new(out))),
        });
        let writer = shared.clone();
        let thread = std::thread::Builder::new()
            .name("tern-log".into())
            .spawn(move || write_batches(&writer));
        let thread = match thread {
            Ok(t) => Some(t),
            Err(_) => {
                // No thread: every line is written by its caller.
                let mut st = shared.lock();
                st.done = true;
                st.direct = true;
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

    fn append(&self, line: &[u8]) {
        let mut st = self.shared.lock();
        while !st.direct && !st.buf.is_empty() && st.buf.len() + line.len() > MAX_BUFFERED {
            st = self
                .shared
                .drained
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if st.direct {
            drop(st);
            self.shared.write_out(line);
            return;
        }
        let was_empty = st.buf.is_empty();
        st.buf.extend_from_slice(line);
        drop(st);
        if was_empty {
            self.shared.filled.notify_one();
        }
    }
}

/// The writer thread: a batch at a time until the guard asks it to stop and nothing is left.
fn write_batches(shared: &Shared) {
    let mut spare = Vec::new();
    loop {
        let mut st = shared.lock();
        while st.buf.is_empty() && !st.stopping {
            st = shared
                .filled
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if st.buf.is_empty() {
            st.done = true;
            drop(st);
            shared.drained.notify_all();
            return;
        }
        if !st.stopping {
            // Let the batch grow; callers keep appending meanwhile.
            drop(st);
            std::thread::sleep(BATCH_WAIT);
            st = shared.lock();
        }
        std::mem::swap(&mut st.buf, &mut spare);
        drop(st);
        shared.drained.notify_all();
        shared.write_out(&spare);
        spare.clear();
        if spare.capacity() > 4 * KEPT_CAPACITY {
            spare = Vec::with_capacity(KEPT_CAPACITY);
        }
    }
}

impl Drop for SinkGuard {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.stopping = true;
        self.shared.filled.notify_one();
        let (mut st, _) = self
            .shared
            .drained
            .wait_timeout_while(st, EXIT_WAIT, |s| !s.done)
            .unwrap_or_else(PoisonError::into_inner);
        let finished = st.done;
        // From now on callers write their lines themselves; what the writer did not take
        // (it was stuck, or a line came after its last batch) is written first, in order.
        st.direct = true;
        let left = std::mem::take(&mut st.buf);
        drop(st);
        self.shared.drained.notify_all();
        if finished {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
            self.shared.write_out(&left);
        }
        // Not finished: the output does not take writes. The thread is left to end on its own
        // (it owns only its share of the sink), and the lines it could not write are lost.
    }
}

/// One logging call's writer: what it is given goes into the sink's buffer.
pub(crate) struct SinkWriter<'a>(&'a Sink);

impl Write for SinkWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.append(buf);
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
    use std::time::Instant;

    /// Everything written, the number of writes and the largest one.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<(Vec<u8>, usize, usize)>>);
    impl Capture {
        fn get(&self) -> (Vec<u8>, usize, usize) {
            self.0
                .lock()
                .map(|c| c.clone())
                .unwrap_or_else(|e| e.into_inner().clone())
        }
    }
    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut c = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            c.0.extend_from_slice(buf);
            c.1 += 1;
            c.2 = c.2.max(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_in_order_in_few_writes() {
        let out = Capture::default();
        let started = Instant::now();
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
        let elapsed = started.elapsed();
        let (bytes, writes, _) = out.get();
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
        // Each write but the last follows a BATCH_WAIT, however slow the machine.
        let bound = (elapsed.as_millis() / BATCH_WAIT.as_millis()) as usize + 2;
        assert!(writes <= bound, "{writes} writes in {elapsed:?}");
    }

    #[test]
    fn a_line_is_written_within_a_batch_without_the_guard() {
        let out = Capture::default();
        let (sink, _guard) = Sink::start(out.clone());
        sink.make_writer().write_all(b"one line\n").expect("append");
        let deadline = Instant::now() + Duration::from_secs(5);
        while out.get().0.is_empty() {
            assert!(Instant::now() < deadline, "the writer never woke");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(out.get().0, b"one line\n");
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
        let mut line = vec![b'x'; 1023];
        line.push(b'\n');
        for _ in 0..(3 * MAX_BUFFERED / 1024) {
            sink.make_writer().write_all(&line).expect("append");
        }
        drop(guard);
        let (bytes, writes, largest) = out.0.get();
        assert_eq!(bytes.len(), 3 * MAX_BUFFERED, "every line");
        assert!(largest <= MAX_BUFFERED, "a batch of {largest} bytes");
        assert!(writes >= 3, "{writes} writes");
        // After the guard, lines still go out, to the same output and after the others.
        sink.make_writer()
            .write_all(b"late line\n")
            .expect("append");
        assert!(out.0.get().0.ends_with(b"x\nlate line\n"));
    }

    #[test]
    fn an_output_that_never_takes_a_write_does_not_hold_the_exit() {
        /// An output whose writes never return.
        struct Stuck;
        impl Write for Stuck {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                loop {
                    std::thread::park();
                }
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (sink, guard) = Sink::start(Stuck);
        sink.make_writer()
            .write_all(b"never written\n")
            .expect("append");
        std::thread::sleep(BATCH_WAIT * 4);
        let t = Instant::now();
        drop(guard);
        assert!(
            t.elapsed() < EXIT_WAIT * 3,
            "the exit waited {:?}",
            t.elapsed()
        );
    }
}
