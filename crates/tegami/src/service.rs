//! Running as a service: where the data directory may come from and how it is created,
//! systemd's readiness and watchdog protocol (`sd_notify`), and, when started as root, the
//! switch to the configured `[server] user` once every listener is bound.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::path::{Component, Path};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tracing::{debug, info, warn};

use crate::services::Services;
use ops::config::ServerSettings;

/// The data directory when nobody names one: the quick start's, in the current directory.
pub const DEFAULT_DATA: &str = "tegami-data";

// ---------------------------------------------------------------------------------------
// The data directory

/// Refuses a relative data directory that does not exist, unless it is the quick-start
/// default: a service started from another working directory must not quietly begin again
/// with an empty store beside the real one.
pub fn check_data_dir(data: &Path) -> anyhow::Result<()> {
    if data.is_absolute() || is_default(data) || std::fs::symlink_metadata(data).is_ok() {
        return Ok(());
    }
    let cwd = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_else(|_| "the current directory".into());
    bail!(
        "data directory {} does not exist in {cwd}; name an existing directory, or give an \
         absolute path (--data or TEGAMI_DATA) to start a new store there",
        data.display()
    )
}

/// `tegami-data` or `./tegami-data`.
fn is_default(data: &Path) -> bool {
    let mut parts = data
        .components()
        .filter(|c| !matches!(c, Component::CurDir));
    matches!(
        (parts.next(), parts.next()),
        (Some(Component::Normal(name)), None) if name == OsStr::new(DEFAULT_DATA)
    )
}

/// Creates the data directory when it is missing: mode 0700, since it holds everyone's mail,
/// and owned by `owner` (uid, gid) when given. An existing directory is left as it is.
pub fn create_data_dir(data: &Path, owner: Option<(u32, u32)>) -> anyhow::Result<()> {
    if data.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data)
        .with_context(|| format!("cannot create data directory {}", data.display()))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(data, Some(uid), Some(gid))
            .with_context(|| format!("cannot give {} to uid {uid}", data.display()))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// sd_notify

/// The service manager's notification socket ($NOTIFY_SOCKET), if there is one. Messages are
/// best effort: a manager that went away must not stop the mail server.
pub struct Notifier {
    target: Option<(UnixDatagram, UnixAddr)>,
}

impl Notifier {
    pub fn from_env() -> anyhow::Result<Arc<Notifier>> {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(Arc::new(Notifier { target: None }));
        };
        let addr = notify_address(&path).with_context(|| {
            format!(
                "NOTIFY_SOCKET={} is not usable (expected /path or @abstract-name); unset it \
                 when not running under systemd",
                path.display()
            )
        })?;
        let socket = UnixDatagram::unbound().context("cannot create the notification socket")?;
        Ok(Arc::new(Notifier {
            target: Some((socket, addr)),
        }))
    }

    /// Sends one message (`READY=1`, `STOPPING=1`, `STATUS=...`), newline-separated lines.
    pub fn notify(&self, state: &str) {
        if let Some((socket, addr)) = &self.target {
            match socket.send_to_addr(state.as_bytes(), addr) {
                Ok(_) => debug!(state, "sd_notify"),
                Err(e) => warn!(state, error = %e, "cannot notify the service manager"),
            }
        }
    }

    /// Pings the watchdog at half its timeout (WATCHDOG_USEC), for as long as the runtime runs
    /// tasks and its blocking pool (where the store works) answers; a wedged server stops
    /// pinging and systemd restarts it.
    pub fn start_watchdog(self: &Arc<Self>, services: &mut Services) {
        if self.target.is_none() {
            return;
        }
        let Some(interval) = watchdog_interval(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        ) else {
            return;
        };
        info!(
            every_ms = interval.as_millis() as u64,
            "pinging the service manager's watchdog"
        );
        let me = self.clone();
        services.start("watchdog", |mut stop| async move {
            while stop.pause(tokio::time::sleep(interval)).await {
                let pool = tokio::time::timeout(interval, tokio::task::spawn_blocking(|| ()));
                if matches!(pool.await, Ok(Ok(()))) {
                    me.notify("WATCHDOG=1");
                } else {
                    warn!("the blocking pool did not answer in time: skipping a watchdog ping");
                }
            }
        });
    }
}

/// `/run/systemd/notify` or `@name` (Linux's abstract namespace).
fn notify_address(path: &OsStr) -> io::Result<UnixAddr> {
    let bytes = path.as_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        UnixAddr::from_abstract_name(name)
    } else if bytes.starts_with(b"/") {
        UnixAddr::from_pathname(path)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "neither an absolute path nor an abstract name",
        ))
    }
}

/// Half of WATCHDOG_USEC, when the watchdog is meant for this process (WATCHDOG_PID, if set,
/// names it).
fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok() != Some(me)
    {
        return None;
    }
    Some(Duration::from_micros(usec / 2))
}

// ---------------------------------------------------------------------------------------
// Privileges

/// Who `serve` runs as. Started as root with `[server] user`, it works with that user's
/// effective ids from the start (so every file it creates is the user's), takes root back
/// only to bind the listeners, and then gives root up for good.
pub struct Privileges {
    target: Option<Target>,
    root_without_user: bool,
}

struct Target {
    name: String,
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
}

impl Privileges {
    /// Looks the user up, checks the data directory is theirs, and creates it (0700, theirs)
    /// when missing.
    pub fn resolve(settings: &ServerSettings, data: &Path) -> anyhow::Result<Privileges> {
        let euid = rustix::process::geteuid().as_raw();
        let Some(name) = &settings.user else {
            create_data_dir(data, None)?;
            return Ok(Privileges {
                target: None,
                root_without_user: euid == 0,
            });
        };
        let user = lookup_user(name)?;
        let gid = match &settings.group {
            Some(group) => lookup_group(group)?,
            None => user.gid,
        };
        if euid != 0 {
            if euid != user.uid {
                bail!(
                    "[server] user is {name} (uid {}), but tegami was started as uid {euid}: \
                     start it as root (it switches to {name} once its listeners are bound) or \
                     as {name}",
                    user.uid
                );
            }
            create_data_dir(data, None)?;
            return Ok(Privileges {
                target: None,
                root_without_user: false,
            });
        }
        match std::fs::metadata(data) {
            Ok(meta) if meta.uid() != user.uid => bail!(
                "data directory {} belongs to uid {}, not to {name} (uid {}), the [server] \
                 user: chown -R {name}: {}",
                data.display(),
                meta.uid(),
                user.uid,
                data.display()
            ),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                create_data_dir(data, Some((user.uid, gid)))?
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", data.display()));
            }
        }
        let groups = group_list(name, gid)?;
        Ok(Privileges {
            target: Some(Target {
                name: name.to_string(),
                uid: user.uid,
                gid,
                groups,
            }),
            root_without_user: false,
        })
    }

    /// Root with a target: takes on the user's groups and effective ids, keeping root as the
    /// real and saved ids so the bind phase can take it back. Called before any other thread
    /// exists; glibc applies these calls to every thread anyway.
    pub fn assume(&self) -> anyhow::Result<()> {
        let Some(t) = &self.target else {
            return Ok(());
        };
        // SAFETY: plain system calls on values we own; each result is checked.
        unsafe {
            check(
                libc::setgroups(t.groups.len(), t.groups.as_ptr()),
                "setgroups",
            )?;
            check(libc::setresgid(u32::MAX, t.gid, u32::MAX), "setresgid")?;
            check(libc::setresuid(u32::MAX, t.uid, u32::MAX), "setresuid")?;
        }
        Ok(())
    }

    /// Says, once logging runs, what the process runs as.
    pub fn report(&self) {
        if self.root_without_user {
            warn!(
                "running as root: set [server] user (or use dist/tegami.service) so that a \
                 flaw in a session cannot reach the whole machine"
            );
        }
        if let Some(t) = &self.target {
            info!(user = %t.name, uid = t.uid, gid = t.gid, "started as root: switching to this user once the listeners are bound");
        }
    }

    /// Before the listeners are bound: root again, for ports below 1024. Only for the bind
    /// phase, a few system calls long, during which no session runs yet.
    pub fn before_bind(&self) -> anyhow::Result<()> {
        if self.target.is_some() {
            // SAFETY: as in `assume`; the saved uid is root, so this is allowed.
            unsafe { check(libc::setresuid(u32::MAX, 0, u32::MAX), "setresuid")? };
        }
        Ok(())
    }

    /// After every listener is bound: the user's ids, real, effective and saved, process-wide
    /// (glibc's set*id reach every thread), and a check that root cannot be taken back.
    pub fn after_bind(&self) -> anyhow::Result<()> {
        let Some(t) = &self.target else {
            return Ok(());
        };
        // SAFETY: as in `assume`.
        unsafe {
            check(libc::setresgid(t.gid, t.gid, t.gid), "setresgid")?;
            check(libc::setresuid(t.uid, t.uid, t.uid), "setresuid")?;
            if libc::setuid(0) == 0 {
                bail!("still able to become root after switching to {}", t.name);
            }
        }
        info!(user = %t.name, uid = t.uid, gid = t.gid, "listeners bound: now running as this user");
        Ok(())
    }
}

fn check(rc: libc::c_int, call: &str) -> anyhow::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error()).with_context(|| format!("{call} failed"))
    }
}

#[derive(Debug)]
struct User {
    uid: libc::uid_t,
    gid: libc::gid_t,
}

fn lookup_user(name: &str) -> anyhow::Result<User> {
    let cname = CString::new(name).context("[server] user contains a NUL byte")?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: getpwnam_r fills `pwd` with pointers into `buf`, both alive for this block.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        );
        if result.is_null() {
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc))
                    .with_context(|| format!("cannot look up user {name}"));
            }
            bail!(
                "[server] user {name} does not exist: create it (useradd --system --home-dir \
                 /var/lib/tegami --shell /usr/sbin/nologin {name}) or change the config"
            );
        }
        Ok(User {
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        })
    }
}

fn lookup_group(name: &str) -> anyhow::Result<libc::gid_t> {
    let cname = CString::new(name).context("[server] group contains a NUL byte")?;
    let mut buf = vec![0 as libc::c_char; 64 * 1024];
    // SAFETY: as in `lookup_user`.
    unsafe {
        let mut grp: libc::group = std::mem::zeroed();
        let mut result: *mut libc::group = std::ptr::null_mut();
        let rc = libc::getgrnam_r(
            cname.as_ptr(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        );
        if result.is_null() {
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc))
                    .with_context(|| format!("cannot look up group {name}"));
            }
            bail!("[server] group {name} does not exist: create it or change the config");
        }
        Ok(grp.gr_gid)
    }
}

/// The user's supplementary groups, `gid` first, as initgroups(3) would set them.
fn group_list(name: &str, gid: libc::gid_t) -> anyhow::Result<Vec<libc::gid_t>> {
    let cname = CString::new(name)?;
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    for _ in 0..4 {
        let mut n = groups.len() as libc::c_int;
        // SAFETY: getgrouplist writes at most `n` entries and reports how many it needs.
        let rc = unsafe { libc::getgrouplist(cname.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        if rc >= 0 {
            groups.truncate(n.max(0) as usize);
            return Ok(groups);
        }
        groups.resize((n.max(0) as usize).max(groups.len() * 2), 0);
    }
    bail!("cannot list the groups of {name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_quick_start_default_may_be_relative_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let here = std::env::current_dir().unwrap();
        assert!(is_default(Path::new("tegami-data")));
        assert!(is_default(Path::new("./tegami-data")));
        assert!(!is_default(Path::new("data/tegami-data")));
        assert!(!is_default(Path::new("tegami-data2")));
        assert!(check_data_dir(Path::new("tegami-data")).is_ok());
        assert!(check_data_dir(&dir.path().join("new")).is_ok(), "absolute");
        let relative = Path::new("no-such-dir-for-tegami-tests/data");
        let e = check_data_dir(relative).unwrap_err().to_string();
        assert!(
            e.contains("does not exist") && e.contains("absolute path"),
            "{e}"
        );
        assert_eq!(std::env::current_dir().unwrap(), here);
    }

    #[test]
    fn users_and_groups_are_looked_up_by_name() {
        let root = lookup_user("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(lookup_group("root").unwrap(), 0);
        assert!(group_list("root", 0).unwrap().contains(&0));
        let e = lookup_user("no-such-tegami-user").unwrap_err().to_string();
        assert!(e.contains("does not exist") && e.contains("useradd"), "{e}");
        let e = lookup_group("no-such-tegami-group")
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
    }

    #[test]
    fn a_new_data_directory_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a/data");
        create_data_dir(&data, None).unwrap();
        let mode = std::fs::metadata(&data).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn watchdog_pings_at_half_the_timeout_for_this_process_only() {
        let half = Some(Duration::from_secs(15));
        assert_eq!(watchdog_interval(Some("30000000"), None, 7), half);
        assert_eq!(watchdog_interval(Some("30000000"), Some("7"), 7), half);
        assert_eq!(watchdog_interval(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
    }

    #[test]
    fn notify_socket_addresses() {
        use std::os::linux::net::SocketAddrExt;
        let abs = notify_address(OsStr::new("@tegami/test")).unwrap();
        assert_eq!(abs.as_abstract_name(), Some(&b"tegami/test"[..]));
        let path = notify_address(OsStr::new("/run/systemd/notify")).unwrap();
        assert_eq!(path.as_pathname(), Some(Path::new("/run/systemd/notify")));
        assert!(notify_address(OsStr::new("relative")).is_err());
    }

    #[test]
    fn notifier_sends_datagrams_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("tegami-test-{}", std::process::id());
        let listener =
            UnixDatagram::bind_addr(&UnixAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let notifier = Notifier {
            target: Some((
                UnixDatagram::unbound().unwrap(),
                notify_address(OsStr::new(&format!("@{name}"))).unwrap(),
            )),
        };
        notifier.notify("READY=1");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
