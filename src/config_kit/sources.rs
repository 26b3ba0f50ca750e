//! Where a target's secret (an API key, a password) may come from, and how
//! it is read: the same rules as Threat Jammer's bearer token
//! (`crate::targets::threatjammer::config`), for the targets read from
//! `[targets.<name>]`.
//!
//! A secret comes from exactly one source, the first of: the inline key
//! (`api_key`), the file key (`api_key_file`), an environment variable, and
//! a systemd credential (`$CREDENTIALS_DIRECTORY/<name>`). It is a
//! [`Secret`] from the moment it is read, so no message or warning here can
//! show it. A file holding it that other users can read draws a warning
//! (`chmod 600`), as does an inline secret in a configuration file other
//! users can read.
//!
//! [`Sources`] is what the loader knows of the surroundings (the process's
//! environment, the credentials directory, the state directory, the file
//! and its metadata, `--dry-run`), carried in [`Ctx`] for the targets'
//! checks.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{ConfigError, Ctx, Secret, KIB};

/// What the loader knows of where secrets may come from (see the module
/// doc). The default: the process's environment, no credentials directory,
/// no file, not a dry run.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Environment variables as tests set them; None: the process's.
    pub(crate) vars: Option<BTreeMap<String, String>>,
    /// `$CREDENTIALS_DIRECTORY` (systemd credentials), if set.
    pub(crate) credentials_dir: Option<PathBuf>,
    /// The state directory: a group owning it may read a secret file.
    pub(crate) state_dir: PathBuf,
    /// The configuration file and its metadata (inline secrets' warning).
    pub(crate) config_file: Option<(PathBuf, fs::Metadata)>,
    /// `--dry-run`: nothing is sent, so a missing secret is no error.
    pub(crate) dry_run: bool,
}

impl Sources {
    /// The value of environment variable `name` (trimmed; None when unset
    /// or empty).
    fn var(&self, name: &str) -> Option<String> {
        let v = match &self.vars {
            Some(vars) => vars.get(name).cloned(),
            None => std::env::var(name).ok(),
        }?;
        let v = v.trim();
        (!v.is_empty()).then(|| v.to_string())
    }
}

/// How one target's secret is named and found.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SecretSpec<'a> {
    /// What it is, for messages: "AbuseIPDB API key".
    pub(crate) what: &'a str,
    /// The inline key, as named in messages: `[targets.abuseipdb] api_key`.
    pub(crate) inline_key: &'a str,
    /// The file key: `[targets.abuseipdb] api_key_file`.
    pub(crate) file_key: &'a str,
    /// The environment variable: `TJFWD_ABUSEIPDB_KEY`.
    pub(crate) env: &'a str,
    /// The systemd credential's name: `abuseipdb_key`.
    pub(crate) credential: &'a str,
}

/// Largest secret file read: a key is a few dozen bytes, and a path such
/// as /dev/zero must not make tjfwd read forever.
const MAX_SECRET_FILE: u64 = 64 * KIB;

/// What a secret may contain: one run of visible ASCII (it is sent in an
/// HTTP header).
const BAD_CHARS: &str = "contains spaces, control or non-ASCII characters; \
                         it must be a single word of printable ASCII";

fn chars_ok(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic())
}

/// The secret of `spec` from the first source that names one (see the
/// module doc); None when none does. A missing secret is refused here
/// unless `--dry-run` (`Sources::dry_run`), with a message that lists the
/// four ways to give it.
pub(crate) fn resolve_secret(
    ctx: &mut Ctx,
    spec: SecretSpec<'_>,
    inline: Option<Secret>,
    file: Option<PathBuf>,
) -> Result<Option<Secret>, ConfigError> {
    let secret = match (inline, file) {
        (Some(_), Some(_)) => {
            return Err(ctx.invalid(
                spec.inline_key,
                format!(
                    "{} and {} are both set: keep only {} (a file holding the {}, mode 600)",
                    spec.inline_key, spec.file_key, spec.file_key, spec.what
                ),
            ))
        }
        (Some(s), None) => {
            if !chars_ok(s.expose().trim()) {
                return Err(
                    ctx.invalid(spec.inline_key, format!("{} {BAD_CHARS}", spec.inline_key))
                );
            }
            if let Some((p, meta)) = &ctx.sources.config_file {
                if let Some(who) = secret_readers(meta, &ctx.sources.state_dir) {
                    let shown = p.display();
                    ctx.warnings.push(format!(
                        "{shown}: the file holds {} and can be read by {who}: run `chmod 600 \
                         {shown}`, or move the {} to a file named by {}",
                        spec.inline_key, spec.what, spec.file_key
                    ));
                }
            }
            Some(Secret::new(s.expose().trim().to_string()))
        }
        (None, Some(p)) => Some(read_secret_file(ctx, spec, p)?),
        (None, None) => match ctx.sources.var(spec.env) {
            Some(v) => {
                if !chars_ok(&v) {
                    return Err(ctx.invalid(
                        spec.env,
                        format!("the environment variable {} {BAD_CHARS}", spec.env),
                    ));
                }
                Some(Secret::new(v))
            }
            None => match ctx.sources.credentials_dir.clone() {
                Some(dir) => read_credential(ctx, spec, &dir.join(spec.credential))?,
                None => None,
            },
        },
    };
    if secret.is_none() && !ctx.sources.dry_run {
        return Err(ctx.invalid(
            spec.inline_key,
            format!(
                "no {what}: set {file_key} (a file holding the {what}, mode 600) or {inline_key}, \
                 or the environment variable {env}, or pass the systemd credential {cred} \
                 (LoadCredential={cred}:/etc/tjfwd/{cred}), or use --dry-run",
                what = spec.what,
                file_key = spec.file_key,
                inline_key = spec.inline_key,
                env = spec.env,
                cred = spec.credential,
            ),
        ));
    }
    Ok(secret)
}

fn read_secret_file(
    ctx: &mut Ctx,
    spec: SecretSpec<'_>,
    p: PathBuf,
) -> Result<Secret, ConfigError> {
    let key = spec.file_key;
    let p = ctx.path(key, p)?;
    let shown = p.display();
    let bytes = read_small(&p).map_err(|e| {
        ctx.invalid(
            key,
            format!(
                "{key} = \"{shown}\": cannot read the file ({e}): check the path and that the \
                 user running tjfwd can read it"
            ),
        )
    })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| ctx.invalid(key, format!("{key} = \"{shown}\": the file {BAD_CHARS}")))?;
    let t = text.trim();
    if t.is_empty() {
        return Err(ctx.invalid(
            key,
            format!(
                "{key} = \"{shown}\": the file is empty: write the {} in it",
                spec.what
            ),
        ));
    }
    if !chars_ok(t) {
        return Err(ctx.invalid(key, format!("{key} = \"{shown}\": the file {BAD_CHARS}")));
    }
    if let Some(who) = fs::metadata(&p)
        .ok()
        .and_then(|m| secret_readers(&m, &ctx.sources.state_dir))
    {
        ctx.warnings.push(format!(
            "{}: the file \"{shown}\" ({key}) can be read by {who}: run `chmod 600 {shown}`",
            ctx.file
        ));
    }
    Ok(Secret::new(t.to_string()))
}

/// The secret from the systemd credential file `path`; None when there is
/// no such file.
fn read_credential(
    ctx: &Ctx,
    spec: SecretSpec<'_>,
    path: &Path,
) -> Result<Option<Secret>, ConfigError> {
    let key = &format!("systemd credential {}", spec.credential);
    let shown = path.display();
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
        .map_err(|_| ctx.invalid(key, format!("{key} (\"{shown}\") {BAD_CHARS}")))?;
    let t = text.trim();
    if t.is_empty() {
        return Err(ctx.invalid(
            key,
            format!(
                "{key} (\"{shown}\") is empty: write the {} in it",
                spec.what
            ),
        ));
    }
    if !chars_ok(t) {
        return Err(ctx.invalid(key, format!("{key} (\"{shown}\") {BAD_CHARS}")));
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
            format!("longer than {} KiB: not a key", MAX_SECRET_FILE / KIB),
        ));
    }
    Ok(bytes)
}

/// Who besides its owner can read a file holding a secret, or None when
/// nobody else can: the rule of Threat Jammer's token file (a group may:
/// tjfwd's effective group, or the group owning the state directory).
fn secret_readers(meta: &fs::Metadata, state_dir: &Path) -> Option<String> {
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

    const SPEC: SecretSpec<'static> = SecretSpec {
        what: "test key",
        inline_key: "[targets.t] api_key",
        file_key: "[targets.t] api_key_file",
        env: "TJFWD_TEST_KEY",
        credential: "test_key",
    };

    fn ctx(sources: Sources) -> Ctx {
        Ctx {
            file: "tjfwd.toml".into(),
            base_dir: None,
            warnings: Vec::new(),
            sources,
        }
    }

    fn vars(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn the_first_source_wins_and_none_is_refused_unless_dry_run() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("test_key"), "from-credential\n").unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "from-file\n").unwrap();
        std::fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        let all = Sources {
            vars: vars(&[("TJFWD_TEST_KEY", "from-env")]),
            credentials_dir: Some(dir.path().to_path_buf()),
            ..Sources::default()
        };
        let got = |sources: Sources, inline: Option<&str>, file: Option<&Path>| {
            let mut c = ctx(sources);
            resolve_secret(
                &mut c,
                SPEC,
                inline.map(|s| Secret::new(s.into())),
                file.map(Path::to_path_buf),
            )
            .map(|s| s.map(|s| s.expose().to_string()))
        };
        assert_eq!(
            got(all.clone(), Some("inline"), None).unwrap().as_deref(),
            Some("inline")
        );
        assert_eq!(
            got(all.clone(), None, Some(&file)).unwrap().as_deref(),
            Some("from-file")
        );
        assert_eq!(
            got(all.clone(), None, None).unwrap().as_deref(),
            Some("from-env")
        );
        let no_env = Sources {
            vars: vars(&[]),
            ..all.clone()
        };
        assert_eq!(
            got(no_env.clone(), None, None).unwrap().as_deref(),
            Some("from-credential")
        );
        let nothing = Sources {
            credentials_dir: None,
            ..no_env
        };
        let msg = got(nothing.clone(), None, None).unwrap_err().to_string();
        for part in [
            "no test key",
            "api_key_file",
            "TJFWD_TEST_KEY",
            "test_key",
            "--dry-run",
        ] {
            assert!(msg.contains(part), "{part}: {msg}");
        }
        let dry = Sources {
            dry_run: true,
            ..nothing
        };
        assert_eq!(got(dry, None, None).unwrap(), None);
        let msg = got(all, Some("a"), Some(&file)).unwrap_err().to_string();
        assert!(msg.contains("are both set"), "{msg}");
    }

    #[test]
    fn a_readable_key_file_is_warned_about_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "s3cr3t-value\n").unwrap();
        std::fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let mut c = ctx(Sources {
            vars: vars(&[]),
            ..Sources::default()
        });
        let s = resolve_secret(&mut c, SPEC, None, Some(file.clone())).unwrap();
        assert_eq!(s.unwrap().expose(), "s3cr3t-value");
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("chmod 600"), "{:?}", c.warnings);
        assert!(!c.warnings[0].contains("s3cr3t"), "{:?}", c.warnings);
        std::fs::write(&file, "two words\n").unwrap();
        let msg = resolve_secret(&mut c, SPEC, None, Some(file))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("printable ASCII") && !msg.contains("words"),
            "{msg}"
        );
    }
}
