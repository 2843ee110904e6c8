//! Result conversion between CNI versions: parse any JSON as a result of any
//! version, emit it in every version. Must never panic, and whatever we emit
//! must parse back and re-emit identically (a runtime feeds our output back
//! to us as `prevResult`).
#![no_main]

use cni::spec::{CniResult, SUPPORTED_VERSIONS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    for default in SUPPORTED_VERSIONS {
        let Ok(r) = CniResult::from_json_any(&v, default) else {
            continue;
        };
        for out in SUPPORTED_VERSIONS {
            let Ok(j) = r.to_json_version(out) else {
                continue;
            };
            let text = r
                .to_string_version(out)
                .expect("to_json ok but to_string failed");
            let reparsed: serde_json::Value =
                serde_json::from_str(&text).expect("emitted invalid JSON");
            assert_eq!(reparsed, j, "to_string and to_json disagree for {out}");
            let back = CniResult::from_json_any(&j, out)
                .unwrap_or_else(|e| panic!("our {out} output does not parse back: {e}\n{j}"));
            let again = back
                .to_json_version(out)
                .unwrap_or_else(|e| panic!("re-emitting {out} failed: {e}\n{j}"));
            assert_eq!(again, j, "conversion to {out} is not stable");
        }
    }
});
