//! Values in the config that are strings to the user and typed to us: durations, permission
//! modes, users and groups. Each parser says what it expected.

use std::time::Duration;

use super::NameOrId;

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as \"250ms\", \"5s\" or \"1m\""))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        u => return Err(format!("unknown unit {u:?} in {s:?}: use ms, s, m or h")),
    };
    if !secs.is_finite() || !(0.0..=86_400.0 * 365.0).contains(&secs) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `"=600"`, `"0600"`, `"600"`, or symbolic `"u=rw,g=r"` (clauses of `[ugoa]*[=+-][rwx]*`).
pub fn parse_permissions(s: &str) -> Result<u32, String> {
    let bad = || format!("{s:?} is not a mode such as \"=600\", \"0640\" or \"u=rw,g=rw\"");
    let t = s.trim();
    let octal = t.strip_prefix('=').unwrap_or(t);
    if !octal.is_empty() && octal.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        let m = u32::from_str_radix(octal, 8).map_err(|_| bad())?;
        if m > 0o777 {
            return Err(format!(
                "{s:?}: only permission bits (at most 0777) apply to a socket"
            ));
        }
        return Ok(m);
    }
    let mut mode = 0u32;
    for clause in t.split(',') {
        let op_at = clause.find(['=', '+', '-']).ok_or_else(bad)?;
        let (who, rest) = clause.split_at(op_at);
        let (op, perms) = rest.split_at(1);
        let mut who_mask = 0u32;
        for c in who.chars() {
            who_mask |= match c {
                'u' => 0o700,
                'g' => 0o070,
                'o' => 0o007,
                'a' => 0o777,
                _ => return Err(bad()),
            };
        }
        if who.is_empty() {
            who_mask = 0o777;
        }
        let mut bits = 0u32;
        for c in perms.chars() {
            bits |= match c {
                'r' => 0o444,
                'w' => 0o222,
                'x' => 0o111,
                _ => return Err(bad()),
            };
        }
        let bits = bits & who_mask;
        match op {
            "=" => mode = (mode & !who_mask) | bits,
            "+" => mode |= bits,
            _ => mode &= !bits,
        }
    }
    Ok(mode)
}

pub(super) enum IdKind {
    User,
    Group,
}

pub(super) fn resolve_id(v: &NameOrId, kind: IdKind) -> Result<u32, String> {
    let name = match v {
        NameOrId::Id(id) => return Ok(*id),
        NameOrId::Name(n) => n,
    };
    if let Ok(id) = name.parse::<u32>() {
        return Ok(id);
    }
    // Through NSS (getpwnam_r / getgrnam_r), as `chown` does: /etc/passwd, LDAP, systemd-userdb…
    let (found, what) = match kind {
        IdKind::User => (
            nix::unistd::User::from_name(name).map(|u| u.map(|u| u.uid.as_raw())),
            "user",
        ),
        IdKind::Group => (
            nix::unistd::Group::from_name(name).map(|g| g.map(|g| g.gid.as_raw())),
            "group",
        ),
    };
    match found {
        Ok(Some(id)) => Ok(id),
        Ok(None) => Err(format!(
            "no {what} named {name:?} on this system; give a name or a numeric id"
        )),
        Err(e) => Err(format!("cannot look up the {what} {name:?}: {e}")),
    }
}

/// Extra bytes the private bind path of a UNIX socket (see `source::unix`) adds to the socket's
/// directory: `/.rw<pid>.<index>.<nonce>/s` (at most 4 + 7 + 1 + 3 + 1 + 8 + 2 = 26). Paths are
/// checked against it when the config is validated.
pub const PRIVATE_PATH_EXTRA: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_through_nss() {
        let name = |n: &str| NameOrId::Name(n.to_string());
        assert_eq!(resolve_id(&name("root"), IdKind::User), Ok(0));
        assert_eq!(resolve_id(&name("root"), IdKind::Group), Ok(0));
        assert_eq!(resolve_id(&name("4242"), IdKind::User), Ok(4242));
        assert_eq!(resolve_id(&NameOrId::Id(7), IdKind::Group), Ok(7));
        let err = resolve_id(&name("no-such-user-ringway"), IdKind::User).unwrap_err();
        assert!(
            err.contains("no user named \"no-such-user-ringway\""),
            "{err}"
        );
    }
}
