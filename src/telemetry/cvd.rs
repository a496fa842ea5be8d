//! `CUDA_VISIBLE_DEVICES`: which physical GPUs a process sees, and in which order.
//!
//! CUDA's rules: unset = every device; empty = none; otherwise a comma list of indices or
//! UUIDs (`GPU-…`, `MIG-…`, a unique prefix is allowed), and parsing stops at the first entry
//! that is invalid (everything before it stays visible).

/// One entry of `CUDA_VISIBLE_DEVICES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSel {
    /// A physical NVML index.
    Index(u32),
    /// A UUID or UUID prefix, e.g. `GPU-8f2c…` (matched case-insensitively as a prefix).
    Uuid(String),
}

/// What `CUDA_VISIBLE_DEVICES` makes visible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visible {
    /// Unset: every device in NVML order.
    All,
    /// These devices, in this order (may be empty: nothing visible).
    List(Vec<DeviceSel>),
}

/// Parse the value of `CUDA_VISIBLE_DEVICES` (`None` when unset).
pub fn parse_visible_devices(value: Option<&str>) -> Visible {
    let Some(text) = value else {
        return Visible::All;
    };
    let mut out = Vec::new();
    for raw in text.split(',') {
        let item = raw.trim();
        if item.is_empty() {
            break;
        }
        if let Ok(i) = item.parse::<u32>() {
            if out.contains(&DeviceSel::Index(i)) {
                break; // CUDA treats a repeated index as invalid
            }
            out.push(DeviceSel::Index(i));
        } else if item.starts_with("GPU-") || item.starts_with("MIG-") {
            out.push(DeviceSel::Uuid(item.to_string()));
        } else if item.starts_with('-') {
            break; // "-1": hide everything from here on
        } else {
            break; // anything else ends the list, as in CUDA
        }
    }
    Visible::List(out)
}

/// Map visible devices to physical NVML indices, given every physical device's UUID (in NVML
/// order). Entries that match nothing end the list (CUDA's rule).
pub fn resolve(visible: &Visible, uuids: &[String]) -> Vec<u32> {
    match visible {
        Visible::All => (0..uuids.len() as u32).collect(),
        Visible::List(items) => {
            let mut out: Vec<u32> = Vec::new();
            for item in items {
                let found = match item {
                    DeviceSel::Index(i) => ((*i as usize) < uuids.len()).then_some(*i),
                    DeviceSel::Uuid(prefix) => {
                        let p = prefix.to_ascii_lowercase();
                        let hits: Vec<u32> = uuids
                            .iter()
                            .enumerate()
                            .filter(|(_, u)| u.to_ascii_lowercase().starts_with(&p))
                            .map(|(i, _)| i as u32)
                            .collect();
                        (hits.len() == 1).then(|| hits[0])
                    }
                };
                match found {
                    Some(i) if !out.contains(&i) => out.push(i),
                    _ => break,
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uuids() -> Vec<String> {
        vec![
            "GPU-aaaa1111".to_string(),
            "GPU-bbbb2222".to_string(),
            "GPU-bbbc3333".to_string(),
        ]
    }

    #[test]
    fn unset_means_all() {
        assert_eq!(parse_visible_devices(None), Visible::All);
        assert_eq!(resolve(&Visible::All, &uuids()), vec![0, 1, 2]);
    }

    #[test]
    fn empty_means_none() {
        assert_eq!(parse_visible_devices(Some("")), Visible::List(vec![]));
        assert!(resolve(&parse_visible_devices(Some("")), &uuids()).is_empty());
    }

    #[test]
    fn indices_keep_their_order() {
        let v = parse_visible_devices(Some("2, 0"));
        assert_eq!(
            v,
            Visible::List(vec![DeviceSel::Index(2), DeviceSel::Index(0)])
        );
        assert_eq!(resolve(&v, &uuids()), vec![2, 0]);
    }

    #[test]
    fn invalid_entry_ends_the_list() {
        assert_eq!(
            parse_visible_devices(Some("1,-1,0")),
            Visible::List(vec![DeviceSel::Index(1)])
        );
        assert_eq!(
            parse_visible_devices(Some("0,foo,1")),
            Visible::List(vec![DeviceSel::Index(0)])
        );
        assert_eq!(
            parse_visible_devices(Some("0,0,1")),
            Visible::List(vec![DeviceSel::Index(0)])
        );
        // an index past the last device also ends the list
        assert_eq!(
            resolve(&parse_visible_devices(Some("1,7,0")), &uuids()),
            vec![1]
        );
    }

    #[test]
    fn uuids_and_unique_prefixes() {
        let v = parse_visible_devices(Some("GPU-bbbc,GPU-AAAA1111"));
        assert_eq!(resolve(&v, &uuids()), vec![2, 0]);
        // ambiguous prefix (two devices start with GPU-bbb) matches nothing
        assert!(resolve(&parse_visible_devices(Some("GPU-bbb")), &uuids()).is_empty());
    }
}
