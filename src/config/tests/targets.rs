//! The `[targets]` key of the file: unknown while the registry of
//! `crate::targets` is empty (as it always was), a table of the registered
//! targets once it is not. Both expansions of `raw_config!`, the second with
//! a target made up for the tests.

/// The top-level keys of the file, but `[targets]`, as toml lists them.
const KEYS: &str = "`state_dir`, `threatjammer`, `input`, `schedule`, `filter`, `storage`, \
                    `queue`, `admin`, `feed`";

/// `raw_config!` as expanded by an empty registry.
#[allow(dead_code)]
mod empty {
    use super::KEYS;
    use crate::config::*;

    raw_config!();

    #[test]
    fn without_a_registered_target_there_is_no_targets_key() {
        let msg = toml::from_str::<RawConfig>("[targets]\n")
            .err()
            .unwrap()
            .to_string();
        assert!(
            msg.contains(&format!(
                "unknown field `targets`, expected one of {KEYS}\n"
            )),
            "{msg}"
        );
        let mut raw = toml::from_str::<RawConfig>("").unwrap();
        let mut ctx = Ctx::new(NO_FILE);
        let targets = Targets::validate(&mut ctx, raw.take_targets()).unwrap();
        assert!(targets.is_empty());
    }
}

/// `raw_config!` as expanded by a registry of one target, `example`.
#[allow(dead_code)]
mod registered {
    use super::KEYS;
    use crate::config::*;
    use crate::targets::table::tests::generated::RawTargets;

    raw_config!(example: Example,);

    #[test]
    fn a_registered_target_is_read_from_its_targets_table() {
        let mut raw = toml::from_str::<RawConfig>("[targets.example]\nbatch_size = 3\n").unwrap();
        assert!(raw.take_targets().example.is_some());
        let mut raw = toml::from_str::<RawConfig>("").unwrap();
        assert!(raw.take_targets().example.is_none());
        let msg = toml::from_str::<RawConfig>("bogus = 1\n")
            .err()
            .unwrap()
            .to_string();
        assert!(
            msg.contains(&format!(
                "unknown field `bogus`, expected one of {KEYS}, `targets`\n"
            )),
            "{msg}"
        );
    }
}
