//! The `unix_socket_server` listener: safe creation of the socket file, and its removal on exit.
//!
//! In: a [`UnixServerConfig`]. Out: a listening [`std::os::unix::net::UnixListener`] at the
//! configured path, with the configured mode and owner from its first moment. What it does not
//! do: accept or read (the io_uring and epoll loops do).
//!
//! The path is `lstat`ed first: nothing there is fine; a socket that accepts a connection is a
//! live gateway (refused); a socket that refuses one is stale (replaced); anything else, a regular
//! file, a directory or a symlink, is refused and left untouched. The socket is bound in a private
//! directory (mode 0700) beside the target, given its mode and owner there, and renamed into
//! place, so there is no moment at which it is reachable with looser permissions. At shutdown the
//! file is removed first (new clients get ENOENT), then the connections already queued on the
//! listener are accepted and read like any other, so nothing a client wrote is left unread.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use crate::config::UnixServerConfig;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("source {source_name}: socket path {path} is in use by a live process (a connection to it succeeded); stop it or choose another path")]
    Live { source_name: String, path: PathBuf },
    #[error("source {source_name}: socket path {path} is {what}; refusing to replace it")]
    NotASocket {
        source_name: String,
        path: PathBuf,
        what: &'static str,
    },
    #[error("source {source_name}: socket path {path} exists and a test connection failed with \"{err}\", so it may belong to a live process; refusing to replace it (remove it if it is stale)")]
    Unsure {
        source_name: String,
        path: PathBuf,
        err: io::Error,
    },
    #[error("source {source_name}: socket path {path} changed while ringway was binding (another process created or replaced it); refusing to replace it")]
    Raced { source_name: String, path: PathBuf },
    #[error("source {source_name}: cannot {action} {path}: {err}")]
    Io {
        source_name: String,
        action: &'static str,
        path: PathBuf,
        err: io::Error,
    },
}

/// A bound listener whose socket file is removed on drop, if it is still ours.
pub struct BoundSocket {
    pub listener: UnixListener,
    pub path: PathBuf,
    dev_ino: (u64, u64),
}

impl BoundSocket {
    /// Remove the socket file, if it is still ours, so that no new client can connect. The
    /// listener stays open: connections already queued on it are still accepted and read.
    pub fn remove_path(&self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if (m.dev(), m.ino()) == self.dev_ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        self.remove_path();
    }
}

/// What is at the socket path before we bind.
enum Existing {
    Nothing,
    /// A socket that refused a connection (ECONNREFUSED): stale; its identity, to replace only it.
    Stale((u64, u64)),
}

pub fn bind(cfg: &UnixServerConfig, index: usize) -> Result<BoundSocket, Error> {
    bind_socket(&Spec::from(cfg), index)
}

/// What a socket file is bound with (a source's, or the control socket's).
pub struct Spec<'a> {
    pub name: &'a str,
    pub path: &'a Path,
    pub permissions: u32,
    pub owner: Option<u32>,
    pub group: Option<u32>,
    pub backlog: u32,
}

impl<'a> From<&'a UnixServerConfig> for Spec<'a> {
    fn from(c: &'a UnixServerConfig) -> Spec<'a> {
        Spec {
            name: &c.name,
            path: &c.path,
            permissions: c.permissions,
            owner: c.owner,
            group: c.group,
            backlog: c.backlog,
        }
    }
}

/// Bind `cfg.path` safely (see the module's doc); `index` keeps private names apart.
pub fn bind_socket(cfg: &Spec<'_>, index: usize) -> Result<BoundSocket, Error> {
    let path = cfg.path;
    let io_err = |action: &'static str, p: &Path, err: io::Error| Error::Io {
        source_name: cfg.name.to_string(),
        action,
        path: p.to_owned(),
        err,
    };
    let existing = inspect(cfg)?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    // A fresh, unpredictable name; never a directory someone else made.
    let mut attempt = 0u32;
    let private = loop {
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
            ^ attempt.wrapping_mul(0x9e37_79b9);
        let dir = parent.join(format!(".rw{}.{index}.{nonce:08x}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => break dir,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 16 => attempt += 1,
            Err(e) => return Err(io_err("create a private directory in", &parent, e)),
        }
    };
    let result = (|| {
        let tmp = private.join("s");
        let listener = UnixListener::bind(&tmp).map_err(|e| io_err("bind", path, e))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(cfg.permissions))
            .map_err(|e| io_err("set permissions on", path, e))?;
        if cfg.owner.is_some() || cfg.group.is_some() {
            std::os::unix::fs::chown(&tmp, cfg.owner, cfg.group)
                .map_err(|e| io_err("change the owner of", path, e))?;
        }
        // Our socket's identity, taken before it is visible at `path`.
        let ours = std::fs::symlink_metadata(&tmp).map_err(|e| io_err("inspect", path, e))?;
        let cwd = rustix::fs::CWD;
        let raced = || Error::Raced {
            source_name: cfg.name.to_string(),
            path: path.to_path_buf(),
        };
        match existing {
            // Nothing was there: take the path only if it is still free.
            Existing::Nothing => {
                match rustix::fs::renameat_with(
                    cwd,
                    &tmp,
                    cwd,
                    path,
                    rustix::fs::RenameFlags::NOREPLACE,
                ) {
                    Ok(()) => {}
                    Err(rustix::io::Errno::EXIST) => return Err(raced()),
                    // A filesystem without RENAME_NOREPLACE: link(2) never replaces either.
                    Err(rustix::io::Errno::INVAL) => match std::fs::hard_link(&tmp, path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(raced()),
                        Err(e) => return Err(io_err("move the socket into", path, e)),
                    },
                    Err(e) => return Err(io_err("move the socket into", path, e.into())),
                }
            }
            // Replace the stale socket only if it is still the one we looked at.
            Existing::Stale(dev_ino) => {
                let still = std::fs::symlink_metadata(path)
                    .map(|m| m.file_type().is_socket() && (m.dev(), m.ino()) == dev_ino)
                    .unwrap_or(false);
                if !still {
                    return Err(raced());
                }
                std::fs::rename(&tmp, path).map_err(|e| io_err("move the socket into", path, e))?
            }
        }
        Ok((listener, ours))
    })();
    let _ = std::fs::remove_dir_all(&private);
    let (listener, m) = result?;
    // The backlog std gives (128) is raised to the configured one.
    let _ = rustix::net::listen(&listener, cfg.backlog.min(i32::MAX as u32) as i32);
    // Non-blocking, so the queue can be drained at shutdown without waiting.
    listener
        .set_nonblocking(true)
        .map_err(|e| io_err("configure", path, e))?;
    Ok(BoundSocket {
        listener,
        path: path.to_path_buf(),
        dev_ino: (m.dev(), m.ino()),
    })
}

/// `lstat` the path and decide: free, stale (replace), or refuse.
fn inspect(cfg: &Spec<'_>) -> Result<Existing, Error> {
    let path = cfg.path;
    let m = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Existing::Nothing),
        Err(err) => {
            return Err(Error::Io {
                source_name: cfg.name.to_string(),
                action: "inspect",
                path: path.to_path_buf(),
                err,
            })
        }
        Ok(m) => m,
    };
    let ft = m.file_type();
    let what = if ft.is_socket() {
        None
    } else if ft.is_symlink() {
        Some("a symbolic link")
    } else if ft.is_dir() {
        Some("a directory")
    } else if ft.is_file() {
        Some("a regular file")
    } else {
        Some("not a socket")
    };
    if let Some(what) = what {
        return Err(Error::NotASocket {
            source_name: cfg.name.to_string(),
            path: path.to_path_buf(),
            what,
        });
    }
    // A non-blocking connect: a live server with a full backlog must not hang start-up.
    let probe = || -> rustix::io::Result<()> {
        use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )?;
        rustix::net::connect(&fd, &SocketAddrUnix::new(path)?)
    };
    match probe() {
        Ok(()) => Err(Error::Live {
            source_name: cfg.name.to_string(),
            path: path.to_path_buf(),
        }),
        // Only a refused connection proves nobody listens; EACCES, EAGAIN (a full backlog)
        // and the like may well be a live gateway.
        Err(rustix::io::Errno::CONNREFUSED) => Ok(Existing::Stale((m.dev(), m.ino()))),
        Err(err) => Err(Error::Unsure {
            source_name: cfg.name.to_string(),
            path: path.to_path_buf(),
            err: err.into(),
        }),
    }
}

use std::os::unix::fs::DirBuilderExt;
