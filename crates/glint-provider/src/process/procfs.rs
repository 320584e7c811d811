//! Reading processes from `/proc`: identity (pid + start time), session and
//! group, pid namespace level, and the environment that carries Glint's labels.
//!
//! Everything here reads; nothing signals. Every reader tolerates the process
//! vanishing between two reads (it returns `None` or an error the caller skips).

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// What `/proc/<pid>/stat` tells about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    /// The process id (as seen from this process's pid namespace).
    pub pid: i32,
    /// One-letter state (`R`, `S`, `Z`, …).
    pub state: u8,
    /// Parent process id.
    pub ppid: i32,
    /// Process group id.
    pub pgid: i32,
    /// Session id.
    pub sid: i32,
    /// Start time in clock ticks since boot: with the pid, identifies the
    /// process across pid reuse.
    pub start_ticks: u64,
}

impl Stat {
    /// Whether the process has ended and only its zombie entry remains.
    pub fn is_zombie(&self) -> bool {
        self.state == b'Z' || self.state == b'X'
    }
}

/// Reads `/proc/<pid>/stat`.
pub(crate) fn stat(pid: i32) -> io::Result<Stat> {
    let text = std::fs::read(format!("/proc/{pid}/stat"))?;
    parse_stat(pid, &text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unreadable /proc/{pid}/stat"),
        )
    })
}

/// Parses the text of `/proc/<pid>/stat`. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after the last `)`.
fn parse_stat(pid: i32, text: &[u8]) -> Option<Stat> {
    let close = text.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(text.get(close + 1..)?).ok()?;
    // Fields from 3 (state) on; index 0 here is field 3.
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let state = *fields.first()?.as_bytes().first()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let pgid = fields.get(2)?.parse().ok()?;
    let sid = fields.get(3)?.parse().ok()?;
    let start_ticks = fields.get(19)?.parse().ok()?;
    Some(Stat {
        pid,
        state,
        ppid,
        pgid,
        sid,
        start_ticks,
    })
}

/// Whether the process `pid` still is the one that started at `start_ticks`
/// (and has not ended).
pub(crate) fn is_alive(pid: i32, start_ticks: u64) -> bool {
    matches!(stat(pid), Ok(s) if s.start_ticks == start_ticks && !s.is_zombie())
}

/// The process's pids in each pid namespace it belongs to, outermost first
/// (`NSpid` in `/proc/<pid>/status`). A process in the host namespace has one.
pub(crate) fn ns_pids(pid: i32) -> io::Result<Vec<i32>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no NSpid line"))?;
    Ok(line
        .split_ascii_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// Whether `pid` lives in a pid namespace nested in ours.
pub(crate) fn is_nested(pid: i32) -> bool {
    matches!(ns_pids(pid), Ok(v) if v.len() > 1)
}

/// Whether `pid` is the init (pid 1) of a pid namespace nested in ours.
pub(crate) fn is_nested_init(pid: i32) -> bool {
    matches!(ns_pids(pid).as_deref(), Ok([_, .., 1]))
}

fn parse_environ(raw: &[u8]) -> BTreeMap<String, String> {
    raw.split(|&b| b == 0)
        .filter_map(|entry| {
            let entry = std::str::from_utf8(entry).ok()?;
            let (k, v) = entry.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// A process whose environment says it belongs to a given store.
#[derive(Debug, Clone)]
pub(crate) struct Labelled {
    /// Its stat line.
    pub stat: Stat,
    /// Its whole environment.
    pub env: BTreeMap<String, String>,
}

/// Every live process whose environment holds `<key>=<value>`.
///
/// Processes that vanish or cannot be read while scanning are skipped.
pub(crate) fn scan_env(key: &str, value: &str) -> io::Result<Vec<Labelled>> {
    let needle = format!("{key}={value}\0");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        // The needle must start an entry: at offset 0 or after a NUL.
        let hit = raw.starts_with(needle.as_bytes())
            || raw
                .windows(needle.len() + 1)
                .any(|w| w[0] == 0 && &w[1..] == needle.as_bytes());
        if !hit {
            continue;
        }
        let Ok(stat) = stat(pid) else { continue };
        if stat.is_zombie() {
            continue;
        }
        found.push(Labelled {
            stat,
            env: parse_environ(&raw),
        });
    }
    Ok(found)
}

/// Converts a start time in clock ticks since boot into wall-clock time.
pub(crate) fn start_time(start_ticks: u64) -> SystemTime {
    let boot = boot_time().unwrap_or(SystemTime::UNIX_EPOCH);
    let hz = clock_ticks_per_second();
    boot + Duration::from_millis(start_ticks.saturating_mul(1000) / hz)
}

/// The ticks per second of `/proc` times (`_SC_CLK_TCK`; 100 on Linux).
fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).ok().filter(|&h| h > 0).unwrap_or(100)
}

/// When the machine booted (`btime` in `/proc/stat`).
fn boot_time() -> Option<SystemTime> {
    let text = std::fs::read_to_string(Path::new("/proc/stat")).ok()?;
    let secs: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line =
            b"4242 (a) b) (c) S 1 4240 4241 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let s = parse_stat(4242, line).unwrap();
        assert_eq!(s.state, b'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.pgid, 4240);
        assert_eq!(s.sid, 4241);
        assert_eq!(s.start_ticks, 987654);
    }

    #[test]
    fn own_process_is_readable_and_alive() {
        let me = std::process::id() as i32;
        let s = stat(me).unwrap();
        assert!(is_alive(me, s.start_ticks));
        assert!(!is_alive(me, s.start_ticks + 1));
        assert_eq!(ns_pids(me).unwrap().last(), Some(&me));
    }

    #[test]
    fn environ_is_split_on_nul_and_first_equals_sign() {
        let env = parse_environ(b"A=1\0B=x=y\0junk\0\0");
        assert_eq!(env.get("A").map(String::as_str), Some("1"));
        assert_eq!(env.get("B").map(String::as_str), Some("x=y"));
        assert_eq!(env.len(), 2);
    }
}
