//! The `[targets]` table of the configuration file: one `[targets.<name>]`
//! section per target of the registry (`registry!` in `crate::targets`), the target
//! being started when its section is present.
//!
//! A target read from there implements [`Configured`] beside [`Target`]:
//! its table as written (`Raw`), its table checked (`Section`), the check,
//! and how the target is built from its section. From the registry,
//! [`targets_table!`](targets_table) generates `RawTargets` (the table as
//! written: one optional field per target, unknown names refused) and
//! `Targets` (the sections checked, serialized back for `check-config`,
//! and started), so that registering a target is all it takes for
//! `crate::config` to read, check and write back its section and for
//! [`super::start_enabled`] to start it.
//!
//! Invariants: a target's section is checked only by its own
//! [`Configured::validate`], with messages naming `[targets.<name>]`; a
//! target is started exactly when its table is in the file.

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{SetupError, Target};
use crate::config_kit::{ConfigError, Ctx};

/// A target configured by its own `[targets.<name>]` table.
pub trait Configured: Target + Sized {
    /// The table as written: a serde image of it, with
    /// `#[serde(deny_unknown_fields)]` and every key optional (see
    /// `crate::config` for the conventions of the raw layer).
    type Raw: DeserializeOwned;

    /// The table checked and resolved; serializes to the table's keys, in
    /// forms `Raw` reads back (secrets as `<redacted>`: use
    /// [`Secret`](crate::config_kit::Secret)).
    type Section: Debug + Clone + PartialEq + Eq + Serialize + Send + Sync + 'static;

    /// Checks the table and applies its defaults. `table` is how messages
    /// name it (`[targets.<name>]`): a refusal is `ctx.invalid("<table> <key>", …)`.
    fn validate(ctx: &mut Ctx, table: &str, raw: Self::Raw) -> Result<Self::Section, ConfigError>;

    /// The target as configured; with `dry_run`, without what sending needs
    /// (credentials, HTTP clients).
    fn build(section: &Self::Section, dry_run: bool) -> Result<Self, SetupError>;

    /// What "due again" means for it, as the store applies it: how long the
    /// service keeps a report, and how soon a new sighting may queue an
    /// address it reported.
    fn store_policy(section: &Self::Section) -> crate::store::Policy;
}

/// Generates `RawTargets` and `Targets` from a list `name: Type,` (each
/// `Type` a [`Configured`] target read from `[targets.<name>]`); invoked with
/// the registry (`registry!(targets_table)`).
macro_rules! targets_table {
    ($($name:ident: $target:ty),* $(,)?) => {
        /// The name of each registered target (its table is
        /// `[targets.<name>]`), in the order of the registry.
        pub const TARGET_NAMES: &[&str] = &[$(stringify!($name)),*];

        /// `[targets]` as written: the table of each registered target,
        /// when present; any other name is refused.
        #[derive(Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct RawTargets {
            $(
                #[doc = concat!("`[targets.", stringify!($name), "]`.")]
                #[serde(default)]
                pub $name: Option<<$target as $crate::targets::Configured>::Raw>,
            )*
        }

        /// The sections of the targets read from `[targets.<name>]`,
        /// checked: a target whose section is here is started.
        /// Serializes to `[targets.<name>]` tables.
        #[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
        pub struct Targets {
            $(
                #[doc = concat!("`[targets.", stringify!($name), "]`, when present.")]
                #[serde(skip_serializing_if = "Option::is_none")]
                pub $name: Option<<$target as $crate::targets::Configured>::Section>,
            )*
        }

        impl Targets {
            /// Whether no target's table is present.
            pub fn is_empty(&self) -> bool {
                true $(&& self.$name.is_none())*
            }

            /// The names of the targets whose table is present, in the
            /// order of the registry.
            // With no target registered, there is nothing to name (and the
            // tests' own table does not use it).
            #[allow(unused_mut, dead_code)]
            pub fn names(&self) -> Vec<&'static str> {
                let mut out = Vec::new();
                $(
                    if self.$name.is_some() {
                        out.push(stringify!($name));
                    }
                )*
                out
            }

            /// Keeps target `name` alone (`flush --target`); false, and
            /// nothing changed, when its table is not present.
            #[allow(dead_code)]
            pub fn keep_only(&mut self, name: &str) -> bool {
                if !self.names().contains(&name) {
                    return false;
                }
                $(
                    if stringify!($name) != name {
                        self.$name = None;
                    }
                )*
                true
            }

            /// Checks each present table with its target's rules.
            // With no target registered, there is nothing to check.
            #[allow(unused_variables)]
            pub fn validate(
                ctx: &mut $crate::config_kit::Ctx,
                raw: RawTargets,
            ) -> Result<Targets, $crate::config_kit::ConfigError> {
                Ok(Targets {
                    $(
                        $name: match raw.$name {
                            Some(raw) => Some(
                                <$target as $crate::targets::Configured>::validate(
                                    ctx,
                                    concat!("[targets.", stringify!($name), "]"),
                                    raw,
                                )?,
                            ),
                            None => None,
                        },
                    )*
                })
            }

            /// The store's view of each present section's target, in the
            /// order of the registry.
            // With no target registered, there is nothing to add.
            #[allow(unused_mut)]
            pub fn store_specs(&self) -> Vec<$crate::store::TargetSpec> {
                let mut out = Vec::new();
                $(
                    if let Some(section) = &self.$name {
                        out.push($crate::store::TargetSpec {
                            name: stringify!($name).into(),
                            policy: <$target as $crate::targets::Configured>::store_policy(section),
                        });
                    }
                )*
                out
            }

            /// Builds the target of each present section and hands it to
            /// `starter`, in the order of the registry.
            // With no target registered, there is nothing to start.
            #[allow(unused_variables)]
            pub fn start(
                &self,
                dry_run: bool,
                starter: &mut impl $crate::targets::Starter,
            ) -> Result<(), $crate::targets::SetupError> {
                $(
                    if let Some(section) = &self.$name {
                        starter.start(<$target as $crate::targets::Configured>::build(
                            section, dry_run,
                        )?);
                    }
                )*
                Ok(())
            }
        }
    };
}
pub(crate) use targets_table;

#[cfg(test)]
pub(crate) mod tests {
    //! A target made up for the tests, read from `[targets.example]`, and
    //! the code the macro generates for it.

    use std::time::{Duration, SystemTime};

    use serde::{Deserialize, Serialize};

    use super::Configured;
    use crate::config_kit::{ConfigError, Ctx, Secret};
    use crate::ratelimit::Limit;
    use crate::store::BatchItem;
    use crate::targets::{Action, Answer, Policy, SetupError, Starter, Target};

    /// `[targets.example]` as written.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(crate) struct RawExample {
        /// Most addresses a request (default 10).
        batch_size: Option<i64>,
        /// The key sent with each request.
        api_key: Option<Secret>,
    }

    /// `[targets.example]` checked.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
    pub(crate) struct ExampleSection {
        batch_size: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        api_key: Option<Secret>,
    }

    /// The target: sends nothing, every batch is delivered.
    pub(crate) struct Example {
        batch_size: usize,
    }

    impl Target for Example {
        type Reply = ();

        fn name(&self) -> &'static str {
            "example"
        }

        fn policy(&self) -> Policy {
            Policy {
                batch_size: self.batch_size,
                flush_interval: Duration::from_secs(1),
                limit: Limit {
                    max: 1,
                    window_ms: 1000,
                },
                max_backoff: Duration::from_secs(1),
                rereport_after: Duration::ZERO,
            }
        }

        fn describe(&self) -> String {
            String::new()
        }

        async fn send(&self, _batch: &[BatchItem]) {}

        fn classify(&self, _reply: &(), _now: SystemTime) -> Answer {
            Answer {
                code: 0,
                action: Action::Delivered,
            }
        }

        fn rejects_everything_hint(&self) -> &'static str {
            "nothing to check"
        }
    }

    impl Configured for Example {
        type Raw = RawExample;
        type Section = ExampleSection;

        fn validate(
            ctx: &mut Ctx,
            table: &str,
            raw: RawExample,
        ) -> Result<ExampleSection, ConfigError> {
            let batch_size = match raw.batch_size {
                None => 10,
                Some(n) if (1..=100).contains(&n) => n as usize,
                Some(n) => {
                    let key = format!("{table} batch_size");
                    return Err(ctx.invalid(&key, format!("{key} = {n} is out of range")));
                }
            };
            Ok(ExampleSection {
                batch_size,
                api_key: raw.api_key,
            })
        }

        fn build(section: &ExampleSection, dry_run: bool) -> Result<Example, SetupError> {
            if section.api_key.is_none() && !dry_run {
                return Err(SetupError::new(std::io::Error::other("no api_key")));
            }
            Ok(Example {
                batch_size: section.batch_size,
            })
        }

        fn store_policy(_: &ExampleSection) -> crate::store::Policy {
            crate::store::Policy {
                ttl_ms: 3_600_000,
                rereport_after_ms: 0,
            }
        }
    }

    pub(crate) mod generated {
        super::super::targets_table! {
            example: super::Example,
        }
    }
    use generated::{RawTargets, Targets};

    fn ctx() -> Ctx {
        Ctx::new("tjfwd.toml")
    }

    /// `[targets]` of `text`, as the file's raw layer holds it.
    fn raw(text: &str) -> Result<RawTargets, toml::de::Error> {
        #[derive(Deserialize)]
        struct File {
            #[serde(default)]
            targets: RawTargets,
        }
        toml::from_str::<File>(text).map(|f| f.targets)
    }

    /// Records the names of the targets it is handed.
    #[derive(Default)]
    struct Names(Vec<(&'static str, usize)>);

    impl Starter for Names {
        fn start<T: Target>(&mut self, target: T) {
            self.0.push((target.name(), target.policy().batch_size));
        }
    }

    #[test]
    fn a_present_table_is_checked_written_back_and_started() {
        let text = "[targets.example]\nbatch_size = 5\napi_key = \"k3y-v4lue\"\n";
        let targets = Targets::validate(&mut ctx(), raw(text).unwrap()).unwrap();
        assert!(!targets.is_empty());
        let section = targets.example.as_ref().unwrap();
        assert_eq!(section.batch_size, 5);
        assert_eq!(section.api_key.as_ref().unwrap().expose(), "k3y-v4lue");

        #[derive(Serialize)]
        struct File<'a> {
            targets: &'a Targets,
        }
        let out = toml::to_string(&File { targets: &targets }).unwrap();
        assert_eq!(
            out,
            "[targets.example]\nbatch_size = 5\napi_key = \"<redacted>\"\n"
        );

        let mut names = Names::default();
        targets.start(false, &mut names).unwrap();
        assert_eq!(names.0, [("example", 5)]);
        assert_eq!(generated::TARGET_NAMES, ["example"]);
        // The store serves it, under the same name.
        let specs = targets.store_specs();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].name, "example");
        assert_eq!(specs[0].policy.ttl_ms, 3_600_000);
    }

    #[test]
    fn an_absent_table_is_neither_checked_nor_started() {
        let targets = Targets::validate(&mut ctx(), raw("").unwrap()).unwrap();
        assert!(targets.is_empty());
        assert_eq!(targets, Targets::default());
        let mut names = Names::default();
        targets.start(false, &mut names).unwrap();
        assert!(names.0.is_empty());
        assert!(targets.store_specs().is_empty());
    }

    #[test]
    fn the_targets_rules_and_messages_apply() {
        let err = Targets::validate(
            &mut ctx(),
            raw("[targets.example]\nbatch_size = 0").unwrap(),
        )
        .unwrap_err();
        match &err {
            ConfigError::Invalid { key, .. } => assert_eq!(key, "[targets.example] batch_size"),
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().starts_with("tjfwd.toml: "), "{err}");
        // Its build: a missing key stops a real start, not a dry run.
        let targets = Targets::validate(&mut ctx(), raw("[targets.example]").unwrap()).unwrap();
        assert!(targets.start(false, &mut Names::default()).is_err());
        let mut names = Names::default();
        targets.start(true, &mut names).unwrap();
        assert_eq!(names.0, [("example", 10)]);
    }

    #[test]
    fn unknown_targets_and_keys_are_refused() {
        let msg = raw("[targets.exampel]\n").err().unwrap().to_string();
        assert!(
            msg.contains("unknown field `exampel`, expected `example`"),
            "{msg}"
        );
        let msg = raw("[targets.example]\nbatchsize = 1\n")
            .err()
            .unwrap()
            .to_string();
        assert!(msg.contains("unknown field `batchsize`"), "{msg}");
    }
}
