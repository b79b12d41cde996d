//! Evidence checks: the binding digest and one verifier per TEE.
//!
//! Mirrors `../shared/specs/kbs-protocol.md` §2 (binding: SHA-384 of the RFC 8785 canonical
//! JSON of the runtime data, compared with the TEE's report data after zero-padding to the
//! field length, Trustee `deps/verifier/src/lib.rs` `regularize_data`) and §3 (evidence
//! formats).
//!
//! **Only the `sample` verifier is what Trustee does** (no signature of any kind exists there).
//! The `tdx` and `snp` verifiers are **structural only**: they find REPORTDATA (and
//! MRCONFIGID / HOST_DATA for init-data) at the right offsets of a TD quote v4/v5 or an SNP
//! report and compare them, and they check **no signature, no certificate chain, no TCB**.
//! They exist so end-to-end tests of the TDX/SNP client code can run against fake
//! configfs-tsm trees; never mistake them for attestation.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256, Sha384, Sha512};

/// TEE names as kbs-types spells them (`Tee` serde names).
pub(crate) fn parse_tee(name: &str) -> Result<kbs_types::Tee, String> {
    serde_json::from_value(Value::String(name.to_owned()))
        .map_err(|_| format!("unknown tee {name:?}"))
}

/// The serde name of a kbs-types `Tee`.
pub(crate) fn tee_name(tee: kbs_types::Tee) -> String {
    match serde_json::to_value(tee) {
        Ok(Value::String(s)) => s,
        _ => tee.to_string(),
    }
}

/// SHA-384 of the JCS form of `runtime_data` (Trustee's built-in AS for every TEE but SE).
pub(crate) fn runtime_digest(runtime_data: &Value) -> Result<Vec<u8>, String> {
    let canonical = serde_json_canonicalizer::to_vec(runtime_data)
        .map_err(|e| format!("canonical json of the runtime data: {e}"))?;
    Ok(Sha384::digest(&canonical).to_vec())
}

/// Zero-pad or truncate `data` to `len` bytes (Trustee `regularize_data`).
pub(crate) fn regularize(data: &[u8], len: usize) -> Vec<u8> {
    let mut out = data.to_vec();
    out.resize(len, 0);
    out
}

/// Init-data as the built-in AS reads it: TOML with `algorithm`, `version`, `data`.
#[derive(Debug, Clone)]
pub(crate) struct InitDataDigest {
    /// Hash of the whole body text with the declared algorithm.
    pub(crate) digest: Vec<u8>,
    /// The `data` table as JSON (`init_data_claims`).
    pub(crate) claims: Value,
}

/// Parse and hash init-data (`../shared/specs/kbs-protocol.md` §2.4).
pub(crate) fn init_data_digest(init: &kbs_types::InitData) -> Result<InitDataDigest, String> {
    if init.format != "toml" {
        return Err(format!(
            "init-data format {:?} is not supported, only \"toml\"",
            init.format
        ));
    }
    let doc: toml::Table = init
        .body
        .parse()
        .map_err(|e| format!("init-data body is not TOML: {e}"))?;
    let algorithm = doc
        .get("algorithm")
        .and_then(toml::Value::as_str)
        .ok_or("init-data has no algorithm")?;
    let body = init.body.as_bytes();
    let digest = match algorithm {
        "sha256" => Sha256::digest(body).to_vec(),
        "sha384" => Sha384::digest(body).to_vec(),
        "sha512" => Sha512::digest(body).to_vec(),
        other => return Err(format!("init-data algorithm {other:?} is not supported")),
    };
    let mut claims = Map::new();
    if let Some(data) = doc.get("data").and_then(toml::Value::as_table) {
        for (k, v) in data {
            let v = match v {
                toml::Value::String(s) => Value::String(s.clone()),
                other => Value::String(other.to_string()),
            };
            claims.insert(k.clone(), v);
        }
    }
    Ok(InitDataDigest {
        digest,
        claims: Value::Object(claims),
    })
}

/// What a verifier found.
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    /// Parsed claims, put under `"<tee>"` in the annotated evidence.
    pub(crate) claims: Value,
    /// The report-data field as found in the evidence.
    pub(crate) report_data: Vec<u8>,
    /// Whether the verifier checked a real signature (never, here).
    pub(crate) structural_only: bool,
}

/// Verify primary evidence of `tee` against `expected` (the 48-byte digest).
pub(crate) fn verify_primary(
    tee: &str,
    evidence: &Value,
    expected: &[u8],
    init_data: Option<&InitDataDigest>,
) -> Result<Verified, String> {
    match tee {
        "sample" => verify_sample(evidence, expected, "1"),
        "tdx" => verify_tdx(evidence, expected, init_data),
        "snp" => verify_snp(evidence, expected, init_data),
        other => Err(format!(
            "test-kbs has no verifier for tee {other:?} (only sample, tdx, snp)"
        )),
    }
}

/// Verify one additional device's evidence against the device digest.
pub(crate) fn verify_device(
    tee: &str,
    evidence: &Value,
    expected: &[u8],
) -> Result<Verified, String> {
    match tee {
        "sampledevice" => verify_sample(evidence, expected, "2"),
        other => Err(format!(
            "test-kbs has no verifier for additional evidence of tee {other:?} (only sampledevice)"
        )),
    }
}

/// Trustee's sample verifier: `report_data` is standard base64 of exactly the digest.
fn verify_sample(evidence: &Value, expected: &[u8], default_svn: &str) -> Result<Verified, String> {
    let obj = evidence
        .as_object()
        .ok_or("sample evidence is not a JSON object")?;
    let b64 = obj
        .get("report_data")
        .and_then(Value::as_str)
        .ok_or("sample evidence has no report_data string")?;
    let report_data = STANDARD
        .decode(b64)
        .map_err(|e| format!("sample report_data is not standard base64: {e}"))?;
    if report_data != expected {
        return Err(format!(
            "sample report_data {} does not match the binding digest {}",
            hex::encode(&report_data),
            hex::encode(expected)
        ));
    }
    let svn = obj
        .get("svn")
        .and_then(Value::as_str)
        .unwrap_or(default_svn)
        .to_owned();
    Ok(Verified {
        claims: json!({
            "svn": svn,
            "report_data": b64,
            "launch_digest": "abcde",
            "platform_version": {"major": 1, "minor": 4},
            "debug": false,
        }),
        report_data,
        structural_only: false,
    })
}

/// TD quote layout facts (Intel TDX DCAP quote v4/v5; TD report body `TDREPORT` fields).
mod td_quote {
    /// Quote header length.
    pub(super) const HEADER_LEN: usize = 48;
    /// TEE type of a TD quote in the header (SGX is 0).
    pub(super) const TEE_TYPE_TDX: u32 = 0x81;
    /// Offsets inside the TD report body.
    pub(super) const MRTD: usize = 136;
    pub(super) const MRCONFIGID: usize = 184;
    pub(super) const RTMR0: usize = 328;
    pub(super) const REPORTDATA: usize = 520;
    /// TD 1.0 body length; TD 1.5 bodies (v5, type 3) are longer with the same prefix.
    pub(super) const BODY_MIN_LEN: usize = 584;
}

fn bytes_at<'a>(buf: &'a [u8], offset: usize, len: usize, what: &str) -> Result<&'a [u8], String> {
    offset
        .checked_add(len)
        .and_then(|end| buf.get(offset..end))
        .ok_or_else(|| {
            format!(
                "{what} at offset {offset} is past the end ({} bytes)",
                buf.len()
            )
        })
}

fn u16_le(buf: &[u8], offset: usize, what: &str) -> Result<u16, String> {
    let b = bytes_at(buf, offset, 2, what)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

fn u32_le(buf: &[u8], offset: usize, what: &str) -> Result<u32, String> {
    let b = bytes_at(buf, offset, 4, what)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Structural TDX check: REPORTDATA of a v4/v5 TD quote == pad64(digest). No signature.
fn verify_tdx(
    evidence: &Value,
    expected: &[u8],
    init_data: Option<&InitDataDigest>,
) -> Result<Verified, String> {
    use td_quote::*;
    let obj = evidence
        .as_object()
        .ok_or("tdx evidence is not a JSON object")?;
    let quote_b64 = obj
        .get("quote")
        .and_then(Value::as_str)
        .ok_or("tdx evidence has no quote string")?;
    let quote = STANDARD
        .decode(quote_b64)
        .map_err(|e| format!("tdx quote is not standard base64: {e}"))?;
    let eventlog = match obj.get("cc_eventlog") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => {
            STANDARD
                .decode(s)
                .map_err(|e| format!("tdx cc_eventlog is not standard base64: {e}"))?;
            true
        }
        Some(_) => return Err("tdx cc_eventlog is neither a string nor null".to_owned()),
    };
    let version = u16_le(&quote, 0, "quote version")?;
    let tee_type = u32_le(&quote, 4, "quote tee type")?;
    if tee_type != TEE_TYPE_TDX {
        return Err(format!("quote tee type {tee_type:#x} is not TDX (0x81)"));
    }
    let body = match version {
        4 => HEADER_LEN,
        5 => {
            let body_type = u16_le(&quote, HEADER_LEN, "v5 body type")?;
            if body_type != 2 && body_type != 3 {
                return Err(format!(
                    "quote v5 body type {body_type} is not a TD report (2 or 3)"
                ));
            }
            HEADER_LEN + 6
        }
        other => {
            return Err(format!(
                "quote version {other} is not 4 or 5 (SGX quotes are refused)"
            ));
        }
    };
    bytes_at(&quote, body, BODY_MIN_LEN, "TD report body")?;
    let report_data = bytes_at(&quote, body + REPORTDATA, 64, "REPORTDATA")?.to_vec();
    if report_data != regularize(expected, 64) {
        return Err(format!(
            "tdx REPORTDATA {} does not match the zero-padded binding digest {}",
            hex::encode(&report_data),
            hex::encode(expected)
        ));
    }
    let mrconfigid = bytes_at(&quote, body + MRCONFIGID, 48, "MRCONFIGID")?;
    if let Some(init) = init_data
        && mrconfigid != regularize(&init.digest, 48).as_slice()
    {
        return Err("tdx MRCONFIGID does not match the init-data digest".to_owned());
    }
    let mut rtmrs = Map::new();
    for i in 0..4 {
        let r = bytes_at(&quote, body + RTMR0 + 48 * i, 48, "RTMR")?;
        rtmrs.insert(format!("rtmr_{i}"), Value::String(hex::encode(r)));
    }
    let mut body_claims = Map::new();
    body_claims.insert(
        "mr_td".into(),
        Value::String(hex::encode(bytes_at(&quote, body + MRTD, 48, "MRTD")?)),
    );
    body_claims.insert(
        "mr_config_id".into(),
        Value::String(hex::encode(mrconfigid)),
    );
    body_claims.insert(
        "report_data".into(),
        Value::String(hex::encode(&report_data)),
    );
    body_claims.extend(rtmrs);
    Ok(Verified {
        claims: json!({
            "quote": {
                "header": {"version": version, "tee_type": format!("{tee_type:08x}")},
                "body": Value::Object(body_claims),
            },
            "cc_eventlog_present": eventlog,
            "test-kbs.structural-only": true,
        }),
        report_data,
        structural_only: true,
    })
}

/// SNP report offsets (AMD SEV-SNP ABI, `ATTESTATION_REPORT`).
mod snp_report {
    pub(super) const REPORT_DATA: usize = 0x50;
    pub(super) const MEASUREMENT: usize = 0x90;
    pub(super) const HOST_DATA: usize = 0xC0;
    pub(super) const LEN: usize = 0x4A0;
}

/// A byte field given as a JSON array of numbers (the `sev` crate's serde form), hex, or
/// base64 (standard or url-safe).
fn json_bytes(v: &Value, len: usize, what: &str) -> Result<Vec<u8>, String> {
    let bytes = match v {
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_u64().and_then(|n| u8::try_from(n).ok()))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| format!("{what} is an array but not of bytes"))?,
        Value::String(s) => hex::decode(s)
            .ok()
            .or_else(|| STANDARD.decode(s).ok())
            .or_else(|| URL_SAFE_NO_PAD.decode(s).ok())
            .ok_or_else(|| format!("{what} is neither hex nor base64"))?,
        _ => return Err(format!("{what} is not bytes")),
    };
    if bytes.len() != len {
        return Err(format!("{what} has {} bytes, expected {len}", bytes.len()));
    }
    Ok(bytes)
}

/// Structural SNP check: REPORT_DATA == pad64(digest). No VCEK, no signature.
fn verify_snp(
    evidence: &Value,
    expected: &[u8],
    init_data: Option<&InitDataDigest>,
) -> Result<Verified, String> {
    use snp_report::*;
    let obj = evidence
        .as_object()
        .ok_or("snp evidence is not a JSON object")?;
    let report = obj
        .get("attestation_report")
        .ok_or("snp evidence has no attestation_report")?;
    let (version, report_data, measurement, host_data) = match report {
        Value::Object(fields) => {
            let version = fields
                .get("version")
                .and_then(Value::as_u64)
                .ok_or("snp attestation_report has no numeric version")?;
            let field = |name: &str, len: usize| {
                fields
                    .get(name)
                    .ok_or_else(|| format!("snp attestation_report has no {name}"))
                    .and_then(|v| json_bytes(v, len, name))
            };
            (
                version,
                field("report_data", 64)?,
                field("measurement", 48)?,
                field("host_data", 32)?,
            )
        }
        raw @ (Value::String(_) | Value::Array(_)) => {
            let raw = json_bytes(raw, LEN, "raw attestation_report")?;
            (
                u64::from(u32_le(&raw, 0, "report version")?),
                bytes_at(&raw, REPORT_DATA, 64, "REPORT_DATA")?.to_vec(),
                bytes_at(&raw, MEASUREMENT, 48, "MEASUREMENT")?.to_vec(),
                bytes_at(&raw, HOST_DATA, 32, "HOST_DATA")?.to_vec(),
            )
        }
        _ => return Err("snp attestation_report is neither an object nor raw bytes".to_owned()),
    };
    if !(2..=5).contains(&version) {
        return Err(format!("snp report version {version} is not 2..=5"));
    }
    if report_data != regularize(expected, 64) {
        return Err(format!(
            "snp REPORT_DATA {} does not match the zero-padded binding digest {}",
            hex::encode(&report_data),
            hex::encode(expected)
        ));
    }
    if let Some(init) = init_data
        && host_data != regularize(&init.digest, 32)
    {
        return Err("snp HOST_DATA does not match the init-data digest".to_owned());
    }
    Ok(Verified {
        claims: json!({
            "report_version": version,
            "measurement": hex::encode(&measurement),
            "host_data": hex::encode(&host_data),
            "report_data": hex::encode(&report_data),
            "cert_chain_present": obj.get("cert_chain").is_some_and(|c| !c.is_null()),
            "test-kbs.structural-only": true,
        }),
        report_data,
        structural_only: true,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
    use super::*;

    #[test]
    fn spec_appendix_a_digest() {
        // ../shared/specs/kbs-protocol.md Appendix A.
        let rd = json!({
            "additional-evidence": "",
            "nonce": "q1w2e3r4t5y6u7i8o9p0AAAAAAAAAAAAAAAAAAAAAAA=",
            "tee-pubkey": {"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW",
                "x":"yTcIfMv2s8YMhy_teK65WqlOpeDGLk6Gwt3lmPQHlqA",
                "y":"e-51oxTPP7J4S3bGc2DISWhh4oo6_urDArcE4VA_5hc"}
        });
        let d = runtime_digest(&rd).unwrap();
        assert_eq!(
            hex::encode(&d),
            "564d2f258e98933907397ad04c3a7b06b19a57fc78ee844b6634b76481c7044114d26b96503a09f327afbee4c89ec115"
        );
        let ev = json!({"report_data":"Vk0vJY6YkzkHOXrQTDp7BrGaV/x47oRLZjS3ZIHHBEEU0muWUDoJ8yevvuTInsEV","svn":"1"});
        verify_primary("sample", &ev, &d, None).unwrap();
        let mut wrong = d.clone();
        wrong[0] ^= 1;
        assert!(verify_primary("sample", &ev, &wrong, None).is_err());
    }

    fn td_quote_v4(report_data: &[u8]) -> Vec<u8> {
        let mut q = vec![0u8; 48 + 584 + 100];
        q[0] = 4;
        q[4] = 0x81;
        q[48 + 520..48 + 520 + report_data.len()].copy_from_slice(report_data);
        q
    }

    #[test]
    fn tdx_structural() {
        let digest = [7u8; 48];
        let ev = json!({"quote": STANDARD.encode(td_quote_v4(&digest)), "cc_eventlog": null});
        let v = verify_primary("tdx", &ev, &digest, None).unwrap();
        assert!(v.structural_only);
        assert!(verify_primary("tdx", &ev, &[8u8; 48], None).is_err());
        let mut sgx = td_quote_v4(&digest);
        sgx[0] = 3;
        let ev = json!({"quote": STANDARD.encode(sgx)});
        assert!(verify_primary("tdx", &ev, &digest, None).is_err());
        let ev = json!({"quote": STANDARD.encode(&td_quote_v4(&digest)[..300])});
        assert!(verify_primary("tdx", &ev, &digest, None).is_err());
    }

    #[test]
    fn snp_structural_forms() {
        let digest = [9u8; 48];
        let mut raw = vec![0u8; 0x4A0];
        raw[0] = 3;
        raw[0x50..0x50 + 48].copy_from_slice(&digest);
        let ev = json!({"attestation_report": STANDARD.encode(&raw), "cert_chain": null});
        verify_primary("snp", &ev, &digest, None).unwrap();
        let ev = json!({"attestation_report": {
            "version": 3,
            "report_data": regularize(&digest, 64),
            "measurement": vec![0u8; 48],
            "host_data": vec![0u8; 32],
        }});
        verify_primary("snp", &ev, &digest, None).unwrap();
        assert!(verify_primary("snp", &ev, &[0u8; 48], None).is_err());
    }

    #[test]
    fn unknown_tee_names() {
        assert!(parse_tee("tdx").is_ok());
        assert!(parse_tee("nvidia-dpu").is_ok());
        assert!(parse_tee("TDX").is_err());
        assert_eq!(tee_name(kbs_types::Tee::AzSnpVtpm), "az-snp-vtpm");
    }
}
