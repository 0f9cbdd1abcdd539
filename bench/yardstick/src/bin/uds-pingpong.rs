//! The floor for one plugin hook (issue 14): ping-pongs a small message between two processes
//! over a Unix socket and prints the round-trip p50/p99 in microseconds. A hook costs at least
//! one such round trip, so scripts/bench.sh reports what a hook adds as a multiple of it.
//!
//! By default both sides block in `read` (each round trip pays the kernel's wake-ups). With
//! `--busy-poll` each side spins on a non-blocking socket instead, for at most `--spin-us`
//! microseconds per message before it falls back to a blocking read: the low-latency floor.
//!
//! Usage: `uds-pingpong [--count N] [--size BYTES] [--busy-poll] [--spin-us US]`. The echoing
//! peer is this program again, started as a child process with `--echo PATH`.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long any blocking read or accept may wait before the run is declared failed.
const WAIT_LIMIT: Duration = Duration::from_secs(5);
/// Round trips run before measuring, so that both processes are warm.
const WARM_UP: usize = 1_000;

struct Options {
    count: usize,
    size: usize,
    busy_poll: bool,
    spin: Duration,
    echo: Option<PathBuf>,
}

fn parse_options() -> anyhow::Result<Options> {
    let mut options = Options {
        count: 20_000,
        size: 64,
        busy_poll: false,
        spin: Duration::from_micros(200),
        echo: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--count" => options.count = value("--count")?.parse().context("--count")?,
            "--size" => options.size = value("--size")?.parse().context("--size")?,
            "--spin-us" => {
                options.spin = Duration::from_micros(value("--spin-us")?.parse().context("--spin-us")?)
            }
            "--busy-poll" => options.busy_poll = true,
            "--echo" => options.echo = Some(PathBuf::from(value("--echo")?)),
            other => bail!(
                "unknown argument {other}; usage: uds-pingpong [--count N] [--size BYTES] [--busy-poll] [--spin-us US]"
            ),
        }
    }
    if options.count == 0 || options.size == 0 {
        bail!("--count and --size must be above 0");
    }
    Ok(options)
}

fn main() -> anyhow::Result<()> {
    let options = parse_options()?;
    match &options.echo {
        Some(path) => echo(path, &options),
        None => measure(&options),
    }
}

/// Reads exactly `buffer.len()` bytes. With `busy_poll` the socket is non-blocking (set once by
/// the caller) and this spins up to `spin`, then falls back to a blocking read for the rest.
fn receive(
    stream: &mut UnixStream,
    buffer: &mut [u8],
    busy_poll: bool,
    spin: Duration,
) -> anyhow::Result<()> {
    let mut filled = 0;
    if busy_poll {
        let started = Instant::now();
        while filled < buffer.len() {
            match stream.read(&mut buffer[filled..]) {
                Ok(0) => bail!("peer closed the socket"),
                Ok(read) => filled += read,
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    if started.elapsed() >= spin {
                        break;
                    }
                    std::hint::spin_loop()
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Err(error.into()),
            }
        }
        if filled == buffer.len() {
            return Ok(());
        }
        stream.set_nonblocking(false)?;
    }
    while filled < buffer.len() {
        match stream.read(&mut buffer[filled..]) {
            Ok(0) => bail!("peer closed the socket"),
            Ok(read) => filled += read,
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(error).context("read (waited too long?)"),
        }
    }
    if busy_poll {
        stream.set_nonblocking(true)?;
    }
    Ok(())
}

/// The child: connects to `path` and sends back every message it receives until EOF.
fn echo(path: &PathBuf, options: &Options) -> anyhow::Result<()> {
    let mut stream = UnixStream::connect(path).context("connect")?;
    stream.set_read_timeout(Some(WAIT_LIMIT))?;
    stream.set_nonblocking(options.busy_poll)?;
    let mut buffer = vec![0u8; options.size];
    loop {
        match receive(&mut stream, &mut buffer, options.busy_poll, options.spin) {
            Ok(()) => stream.write_all(&buffer)?,
            // The parent closes the socket when it is done.
            Err(_) => return Ok(()),
        }
    }
}

/// Kills the echo child however the measurement ends.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The parent: starts the echo child, times `count` round trips and prints p50/p99.
fn measure(options: &Options) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("uds-pingpong.{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("socket");
    let result = measure_at(&path, options);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure_at(path: &PathBuf, options: &Options) -> anyhow::Result<()> {
    let listener = UnixListener::bind(path).context("bind")?;
    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg("--echo")
        .arg(path)
        .arg("--size")
        .arg(options.size.to_string());
    if options.busy_poll {
        command
            .arg("--busy-poll")
            .arg("--spin-us")
            .arg(options.spin.as_micros().to_string());
    }
    let _child = ChildGuard(command.spawn().context("start the echo process")?);
    listener.set_nonblocking(true)?;
    let started = Instant::now();
    let mut stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(error)
                if error.kind() == ErrorKind::WouldBlock && started.elapsed() < WAIT_LIMIT =>
            {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(error) => return Err(error).context("accept the echo process"),
        }
    };
    stream.set_read_timeout(Some(WAIT_LIMIT))?;
    stream.set_nonblocking(options.busy_poll)?;
    let message = vec![b'x'; options.size];
    let mut reply = vec![0u8; options.size];
    let mut round_trips = Vec::with_capacity(options.count);
    for index in 0..WARM_UP + options.count {
        let sent = Instant::now();
        stream.write_all(&message)?;
        receive(&mut stream, &mut reply, options.busy_poll, options.spin)?;
        if index >= WARM_UP {
            round_trips.push(sent.elapsed());
        }
    }
    round_trips.sort_unstable();
    let percentile = |p: usize| round_trips[(round_trips.len() - 1) * p / 100].as_secs_f64() * 1e6;
    println!(
        "mode={} count={} size={} p50_us={:.1} p99_us={:.1}",
        if options.busy_poll {
            "busy-poll"
        } else {
            "blocking"
        },
        options.count,
        options.size,
        percentile(50),
        percentile(99)
    );
    Ok(())
}
