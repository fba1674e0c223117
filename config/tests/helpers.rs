//! The pure helpers other crates call: wave sizes, thresholds, warnings.

use std::path::Path;

use shipwatch_config::{Amount, Batch, Config, Threshold, load_str};

fn config(text: &str) -> Config {
    load_str(text, "test.toml", Path::new("/srv/cfg")).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn wave_sizes_repeat_the_last_item_and_sum_to_total() {
    use Amount::*;
    let batch = Batch(vec![Count(1), Percent(25), Percent(100)]);
    assert_eq!(batch.wave_sizes(20), vec![1, 5, 14]);
    assert_eq!(
        Batch(vec![Count(1), Count(5)]).wave_sizes(20),
        vec![1, 5, 5, 5, 4]
    );
    assert_eq!(Batch(vec![Count(5)]).wave_sizes(3), vec![3]);
    assert_eq!(
        Batch(vec![Percent(25)]).wave_sizes(3),
        vec![1, 1, 1],
        "min 1"
    );
    assert_eq!(Batch(vec![Percent(30)]).wave_sizes(10), vec![3, 3, 3, 1]);
    assert_eq!(Batch(vec![Percent(100)]).wave_sizes(7), vec![7]);
    assert_eq!(Batch(vec![Count(2)]).wave_sizes(0), Vec::<usize>::new());
    for total in 0..60 {
        let sizes = Batch(vec![Count(1), Percent(33), Count(4)]).wave_sizes(total);
        assert_eq!(sizes.iter().sum::<usize>(), total);
        assert!(sizes.iter().all(|&s| s >= 1));
    }
}

#[test]
fn threshold_resolves_percent_rounding_down() {
    assert_eq!(Threshold(Amount::Count(3)).resolve(20), 3);
    assert_eq!(Threshold(Amount::Percent(10)).resolve(20), 2);
    assert_eq!(Threshold(Amount::Percent(10)).resolve(5), 0);
    assert_eq!(Threshold(Amount::Percent(100)).resolve(7), 7);
    assert_eq!(Threshold(Amount::Count(0)).resolve(7), 0);
}

#[test]
fn warnings_flag_anonymous_admin_on_a_public_address() {
    let open = config(
        "[server]\nlisten = \"0.0.0.0:8080\"\npublic_url = \"https://d.example\"\n[auth]\nanonymous = \"operator\"\n",
    );
    assert_eq!(
        open.warnings(),
        vec![
            "auth.anonymous = \"operator\" lets anyone who reaches 0.0.0.0:8080 act as operator without logging in"
        ]
    );
    let loopback = config("[auth]\nanonymous = \"admin\"\n");
    assert!(loopback.warnings().is_empty());
}

#[test]
fn a_hash_made_by_the_argon2_crate_is_accepted() {
    use argon2::PasswordHasher;
    let salt = argon2::password_hash::SaltString::encode_b64(b"sixteen byte salt").unwrap();
    let hash = argon2::Argon2::default()
        .hash_password(b"hunter2", &salt)
        .unwrap()
        .to_string();
    assert!(hash.starts_with("$argon2id$"));
    let text =
        format!("[[users]]\nname = \"alice\"\npassword_hash = \"{hash}\"\nrole = \"admin\"\n");
    let config = config(&text);
    assert_eq!(config.users[0].password_hash, hash);
}
