//! A section's secret (a password, an API key) read from exactly one
//! source, the first of: the inline key, its `_file` key, an environment
//! variable, and a systemd credential (`$CREDENTIALS_DIRECTORY/<name>`),
//! the same order and rules as Threat Jammer's bearer token.
//!
//! The value becomes a [`Secret`] at once: no message or warning built here
//! quotes it. A file is read with a size limit, its surrounding whitespace
//! trimmed; a file other users may read draws a warning (`chmod 600`).

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::format::KIB;
use super::{ConfigError, Ctx, Secret};

/// Largest secret file read: a secret is a few dozen bytes, and a path
/// such as /dev/zero must not make tjfwd read forever.
const MAX_SECRET_FILE: u64 = 64 * KIB;

/// Where one section's secret may come from, and how messages name it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SecretSpec<'a> {
    /// The table, as messages name it (`[targets.crowdsec]`).
    pub(crate) table: &'a str,
    /// The inline key (`password`).
    pub(crate) key: &'a str,
    /// The key naming a file that holds it (`password_file`).
    pub(crate) file_key: &'a str,
    /// The environment variable consulted when neither key is set.
    pub(crate) env: &'a str,
    /// The systemd credential consulted last.
    pub(crate) credential: &'a str,
    /// What it is, in messages (`the CrowdSec machine password`).
    pub(crate) what: &'a str,
    /// Whether a (trimmed, non-empty) value is acceptable.
    pub(crate) chars_ok: fn(&str) -> bool,
    /// Completes "… contains " when it is not: what a valid one looks like.
    pub(crate) bad_chars: &'a str,
}

/// The secret of `spec`, from `inline` or `file` (the section's two keys as
/// written), else the environment variable, else the systemd credential
/// (both from `ctx.secrets`); None when no source names one.
pub(crate) fn resolve_secret(
    ctx: &mut Ctx,
    spec: &SecretSpec<'_>,
    inline: Option<Secret>,
    file: Option<PathBuf>,
) -> Result<Option<Secret>, ConfigError> {
    let table = spec.table;
    let bad = spec.bad_chars;
    match (inline, file) {
        (Some(_), Some(_)) => {
            let key = &format!("{table} {}", spec.key);
            Err(ctx.invalid(
                key,
                format!(
                    "{key} and {table} {} are both set: keep only one ({} is preferred, so \
                     the configuration file holds no secret)",
                    spec.file_key, spec.file_key
                ),
            ))
        }
        (Some(secret), None) => {
            let key = &format!("{table} {}", spec.key);
            let t = secret.expose().trim();
            if t.is_empty() {
                return Err(ctx.invalid(
                    key,
                    format!(
                        "{key} is empty: put {} there, or remove the key and use {} or the \
                         environment variable {}",
                        spec.what, spec.file_key, spec.env
                    ),
                ));
            }
            if !(spec.chars_ok)(t) {
                return Err(ctx.invalid(key, format!("{key} contains {bad}")));
            }
            Ok(Some(Secret::new(t.to_string())))
        }
        (None, Some(p)) => {
            let key = &format!("{table} {}", spec.file_key);
            let p = ctx.path(key, p)?;
            let shown = p.display();
            let bytes = read_small(&p).map_err(|e| {
                ctx.invalid(
                    key,
                    format!(
                        "{key} = \"{shown}\": cannot read the file ({e}): check the path and \
                         that the user running tjfwd can read it"
                    ),
                )
            })?;
            let text = String::from_utf8(bytes).map_err(|_| {
                ctx.invalid(
                    key,
                    format!("{key} = \"{shown}\": the file is not UTF-8 text: {bad}"),
                )
            })?;
            let t = text.trim();
            if t.is_empty() {
                return Err(ctx.invalid(
                    key,
                    format!(
                        "{key} = \"{shown}\": the file is empty: write {} in it",
                        spec.what
                    ),
                ));
            }
            if !(spec.chars_ok)(t) {
                return Err(
                    ctx.invalid(key, format!("{key} = \"{shown}\": the file contains {bad}"))
                );
            }
            let state_dir = ctx.secrets.state_dir.clone();
            if let Some(who) = fs::metadata(&p)
                .ok()
                .and_then(|m| secret_readers(&m, &state_dir))
            {
                ctx.warnings.push(format!(
                    "{}: the file \"{shown}\" ({key}) can be read by {who}: run `chmod 600 {shown}`",
                    ctx.file
                ));
            }
            Ok(Some(Secret::new(t.to_string())))
        }
        (None, None) => {
            if let Some(t) = ctx.secrets.env(spec.env).map(str::trim) {
                if !t.is_empty() {
                    if !(spec.chars_ok)(t) {
                        return Err(ctx.invalid(
                            spec.env,
                            format!("the environment variable {} contains {bad}", spec.env),
                        ));
                    }
                    return Ok(Some(Secret::new(t.to_string())));
                }
            }
            match ctx.secrets.credentials_dir.clone() {
                Some(dir) => credential(ctx, spec, &dir.join(spec.credential)),
                None => Ok(None),
            }
        }
    }
}

/// The secret from the systemd credential file `path`; None when there is
/// no such file.
fn credential(
    ctx: &Ctx,
    spec: &SecretSpec<'_>,
    path: &Path,
) -> Result<Option<Secret>, ConfigError> {
    let key = &format!("systemd credential {}", spec.credential);
    let shown = path.display();
    let bad = spec.bad_chars;
    let bytes = match read_small(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ctx.invalid(
                key,
                format!(
                    "{key} (\"{shown}\"): cannot read it ({e}): check LoadCredential= in the \
                     unit and $CREDENTIALS_DIRECTORY"
                ),
            ))
        }
    };
    let text = String::from_utf8(bytes)
        .map_err(|_| ctx.invalid(key, format!("{key} (\"{shown}\") is not UTF-8 text: {bad}")))?;
    let t = text.trim();
    if t.is_empty() {
        return Err(ctx.invalid(
            key,
            format!(
                "{key} (\"{shown}\") is empty: write {} in the file the unit's \
                 LoadCredential={}:FILE names",
                spec.what, spec.credential
            ),
        ));
    }
    if !(spec.chars_ok)(t) {
        return Err(ctx.invalid(key, format!("{key} (\"{shown}\") contains {bad}")));
    }
    Ok(Some(Secret::new(t.to_string())))
}

/// Reads at most [`MAX_SECRET_FILE`] bytes; a longer file is an error.
fn read_small(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    fs::File::open(path)?
        .take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("longer than {} KiB: not a secret", MAX_SECRET_FILE / KIB),
        ));
    }
    Ok(bytes)
}

/// Who besides its owner can read a secret file, or None when nobody else
/// can. A group may: the group tjfwd runs as, or the group owning the state
/// directory (the service's: under the Debian package, root:tjfwd 0640 is
/// how the tjfwd user reads a file of root's). Any other group, or
/// everyone, is named.
pub(crate) fn secret_readers(meta: &fs::Metadata, state_dir: &Path) -> Option<String> {
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o004 != 0 {
        return Some(format!("every user (mode {mode:04o})"));
    }
    if mode & 0o040 != 0 {
        let gid = meta.gid();
        let ours = gid == rustix::process::getegid().as_raw();
        let service = fs::metadata(state_dir).is_ok_and(|m| m.gid() == gid);
        if !ours && !service {
            return Some(format!("the users of group {gid} (mode {mode:04o})"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_kit::SecretSources;

    const SPEC: SecretSpec<'static> = SecretSpec {
        table: "[targets.x]",
        key: "password",
        file_key: "password_file",
        env: "TJFWD_X_PASSWORD",
        credential: "x_password",
        what: "the password",
        chars_ok: |s| !s.chars().any(char::is_control),
        bad_chars: "control characters; write the password on one line",
    };

    fn ctx(dir: &Path, env: &[(&str, &str)], creds: bool) -> Ctx {
        Ctx {
            file: "tjfwd.toml".into(),
            base_dir: Some(dir.to_path_buf()),
            warnings: Vec::new(),
            secrets: SecretSources {
                env: env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                credentials_dir: creds.then(|| dir.join("creds")),
                state_dir: dir.join("state"),
                file_meta: None,
                dry_run: false,
            },
        }
    }

    fn key_of(e: ConfigError) -> (String, String) {
        match e {
            ConfigError::Invalid { key, message, .. } => (key, message),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sources_in_order_and_their_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir(d.join("creds")).unwrap();
        fs::write(d.join("creds/x_password"), "from-credential\n").unwrap();
        fs::write(d.join("pw"), "  from-file \n").unwrap();
        fs::set_permissions(d.join("pw"), fs::Permissions::from_mode(0o600)).unwrap();
        let env = [("TJFWD_X_PASSWORD", "from-env")];
        let inline = || Some(Secret::new("from-inline".into()));
        let file = || Some(PathBuf::from("pw"));

        let mut c = ctx(d, &env, true);
        let got =
            |r: Result<Option<Secret>, ConfigError>| r.unwrap().map(|s| s.expose().to_owned());
        assert_eq!(
            got(resolve_secret(&mut c, &SPEC, inline(), None)).unwrap(),
            "from-inline"
        );
        assert_eq!(
            got(resolve_secret(&mut c, &SPEC, None, file())).unwrap(),
            "from-file"
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(
            got(resolve_secret(&mut c, &SPEC, None, None)).unwrap(),
            "from-env"
        );
        let mut c = ctx(d, &[], true);
        assert_eq!(
            got(resolve_secret(&mut c, &SPEC, None, None)).unwrap(),
            "from-credential"
        );
        let mut c = ctx(d, &[], false);
        assert_eq!(got(resolve_secret(&mut c, &SPEC, None, None)), None);

        let (key, msg) = key_of(resolve_secret(&mut c, &SPEC, inline(), file()).unwrap_err());
        assert_eq!(key, "[targets.x] password");
        assert!(msg.contains("both set"), "{msg}");
        let (key, _) = key_of(
            resolve_secret(&mut c, &SPEC, None, Some(PathBuf::from("missing"))).unwrap_err(),
        );
        assert_eq!(key, "[targets.x] password_file");
        let (key, msg) = key_of(
            resolve_secret(&mut c, &SPEC, Some(Secret::new("a\u{7}b".into())), None).unwrap_err(),
        );
        assert_eq!(key, "[targets.x] password");
        assert!(!msg.contains("a\u{7}b"), "{msg}");
        fs::write(d.join("empty"), "\n").unwrap();
        let (_, msg) =
            key_of(resolve_secret(&mut c, &SPEC, None, Some(PathBuf::from("empty"))).unwrap_err());
        assert!(msg.contains("is empty"), "{msg}");
    }

    #[test]
    fn a_file_others_can_read_is_a_warning_that_quotes_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("pw"), "s3cr3t-value\n").unwrap();
        fs::set_permissions(d.join("pw"), fs::Permissions::from_mode(0o644)).unwrap();
        let mut c = ctx(d, &[], false);
        let s = resolve_secret(&mut c, &SPEC, None, Some(PathBuf::from("pw")))
            .unwrap()
            .unwrap();
        assert_eq!(s.expose(), "s3cr3t-value");
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("chmod 600"), "{:?}", c.warnings);
        assert!(!c.warnings[0].contains("s3cr3t"), "{:?}", c.warnings);
    }
}
