//! The config rewrite of a reproducible build: new diff_ids, and the `created` and history times
//! clamped to the epoch. RFC 3339 times are parsed and printed by `jiff`.

use crate::error::ConvertError;
use layerlift_manifest::Digest;

/// The config with `diff_ids` and its `created` and history times clamped to `epoch`; `None`
/// when nothing changes (then the original bytes, and the image ID, stay).
pub(crate) fn rewrite_config(
    bytes: &[u8],
    diff_ids: &[Digest],
    epoch: u64,
) -> Result<Option<Vec<u8>>, ConvertError> {
    let mut config: serde_json::Value =
        serde_json::from_slice(bytes).map_err(ConvertError::ConfigNotJson)?;
    let mut changed = false;
    let ids: Vec<serde_json::Value> = diff_ids
        .iter()
        .map(|d| serde_json::Value::String(d.to_string()))
        .collect();
    if let Some(slot) = config.get_mut("rootfs").and_then(|r| r.get_mut("diff_ids"))
        && slot.as_array() != Some(&ids)
    {
        *slot = serde_json::Value::Array(ids);
        changed = true;
    }
    if let Some(created) = config.get_mut("created") {
        changed |= clamp_time(created, epoch);
    }
    if let Some(history) = config.get_mut("history").and_then(|h| h.as_array_mut()) {
        for entry in history {
            if let Some(created) = entry.get_mut("created") {
                changed |= clamp_time(created, epoch);
            }
        }
    }
    if !changed {
        return Ok(None);
    }
    serde_json::to_vec(&config)
        .map(Some)
        .map_err(ConvertError::ConfigNotJson)
}

/// Replace an RFC 3339 time later than `epoch` by `epoch`; true if it did. A value that is not an
/// RFC 3339 time is left as it is.
fn clamp_time(value: &mut serde_json::Value, epoch: u64) -> bool {
    let Some(time) = value
        .as_str()
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
    else {
        return false;
    };
    // An epoch past what a timestamp can hold (year 9999) is later than every time.
    let Some(epoch) = epoch_time(epoch) else {
        return false;
    };
    if time > epoch {
        *value = serde_json::Value::String(epoch.to_string());
        true
    } else {
        false
    }
}

/// `epoch` (seconds since 1970) as a timestamp; `None` past year 9999.
pub(crate) fn epoch_time(epoch: u64) -> Option<jiff::Timestamp> {
    jiff::Timestamp::from_second(i64::try_from(epoch).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_later_than_the_epoch_are_clamped() {
        let clamp = |s: &str, epoch: u64| {
            let mut v = serde_json::Value::String(s.into());
            clamp_time(&mut v, epoch).then(|| v.as_str().unwrap().to_string())
        };
        assert_eq!(clamp("2001-09-09T01:46:40Z", 1_000_000_000), None);
        assert_eq!(
            clamp("2001-09-09T01:46:40.000000001Z", 1_000_000_000).as_deref(),
            Some("2001-09-09T01:46:40Z")
        );
        assert_eq!(
            clamp("2001-09-09T03:46:41+02:00", 1_000_000_000).as_deref(),
            Some("2001-09-09T01:46:40Z")
        );
        assert_eq!(
            clamp("2024-02-29T12:00:00.000Z", 0).as_deref(),
            Some("1970-01-01T00:00:00Z")
        );
        assert_eq!(clamp("2024-02-29T12:00:00Z", u64::MAX), None);
        // Not times: left alone.
        assert_eq!(clamp("yesterday", 0), None);
        assert_eq!(clamp("2024-13-45T99:99:99Z", 0), None);
    }

    #[test]
    fn config_rewrite() {
        let config = br#"{"created":"2023-11-14T22:13:20.5Z","history":[{"created":"1999-01-01T00:00:00Z"},{"created":"2023-01-01T00:00:00Z"}],"rootfs":{"type":"layers","diff_ids":["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]}}"#;
        let same = [Digest::of(b"")];
        assert_eq!(rewrite_config(config, &same, 2_000_000_000).unwrap(), None);
        let out = rewrite_config(config, &same, 1_000_000_000)
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["created"], "2001-09-09T01:46:40Z");
        assert_eq!(v["history"][0]["created"], "1999-01-01T00:00:00Z");
        assert_eq!(v["history"][1]["created"], "2001-09-09T01:46:40Z");
        let other = [Digest::of(b"x")];
        let out = rewrite_config(config, &other, 2_000_000_000)
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["rootfs"]["diff_ids"][0], Digest::of(b"x").to_string());
        assert!(v.get("architecture").is_none(), "no fields invented");
    }

    #[test]
    fn a_config_that_is_not_json_is_an_error() {
        let err = rewrite_config(b"{", &[], 0).unwrap_err();
        assert!(matches!(err, ConvertError::ConfigNotJson(_)), "{err}");
    }
}
