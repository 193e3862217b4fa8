//! Manifest kinds, media-type checks and platform choice.
use anyhow::{bail, Context, Result};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// Checks that a manifest's config descriptor names an image config (not, say, a Helm
/// chart or another OCI artifact that no container can run from).
pub fn check_config_media_type(m: &ImageManifest, what: &str) -> Result<()> {
    let t = m.config().media_type().to_string();
    if t != OCI_CONFIG && t != DOCKER_CONFIG {
        bail!("{}: unsupported config media type {} (not a container image)", what, t);
    }
    Ok(())
}

pub enum Parsed {
    Index(Box<ImageIndex>),
    Manifest(Box<ImageManifest>),
}

/// Decides what a manifest document is, refusing ambiguous or mislabelled ones
/// (a document that is both an index and a manifest: CVE-2021-41190).
pub fn parse(bytes: &[u8], content_type: &str, what: &str) -> Result<Parsed> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).with_context(|| format!("{}: manifest is not valid JSON", what))?;
    let has_manifests = v.get("manifests").is_some();
    let has_layers = v.get("layers").is_some() || v.get("config").is_some();
    if has_manifests && has_layers {
        bail!("{}: manifest is both an index and an image manifest; refused", what);
    }
    if v.get("schemaVersion").and_then(|s| s.as_u64()) == Some(1) {
        bail!("{}: Docker schema 1 manifests are not supported", what);
    }
    let body_type = v.get("mediaType").and_then(|m| m.as_str()).unwrap_or("");
    if !body_type.is_empty() && !content_type.is_empty() && known(content_type) && body_type != content_type {
        bail!("{}: manifest says it is {} but was served as {}", what, body_type, content_type);
    }
    let kind = if !body_type.is_empty() { body_type } else { content_type };
    match kind {
        OCI_INDEX | DOCKER_LIST => {}
        OCI_MANIFEST | DOCKER_MANIFEST => {}
        "" => {}
        t if t.starts_with("application/vnd.docker.distribution.manifest.v1") => {
            bail!("{}: Docker schema 1 manifests are not supported", what)
        }
        t => bail!("{}: unsupported manifest media type {}", what, t),
    }
    if has_manifests {
        if !matches!(kind, OCI_INDEX | DOCKER_LIST | "") {
            bail!("{}: manifest labelled {} holds an index", what, kind);
        }
        let idx: ImageIndex = serde_json::from_value(v).with_context(|| format!("{}: malformed image index", what))?;
        Ok(Parsed::Index(Box::new(idx)))
    } else if has_layers {
        if !matches!(kind, OCI_MANIFEST | DOCKER_MANIFEST | "") {
            bail!("{}: manifest labelled {} holds an image manifest", what, kind);
        }
        let m: ImageManifest =
            serde_json::from_value(v).with_context(|| format!("{}: malformed image manifest", what))?;
        Ok(Parsed::Manifest(Box::new(m)))
    } else {
        bail!("{}: document is neither an image index nor an image manifest", what)
    }
}

fn known(t: &str) -> bool {
    matches!(t, OCI_INDEX | DOCKER_LIST | OCI_MANIFEST | DOCKER_MANIFEST)
}

/// A wanted platform: `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSpec {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl PlatformSpec {
    pub fn host() -> PlatformSpec {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            other => (other, None),
        };
        PlatformSpec { os: "linux".into(), arch: arch.into(), variant: variant.map(Into::into) }
    }

    pub fn parse(s: &str) -> Result<PlatformSpec> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || anyhow::anyhow!("invalid platform {:?}: expected os/arch[/variant]", s);
        if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        Ok(PlatformSpec { os: parts[0].into(), arch: parts[1].into(), variant: parts.get(2).map(|v| v.to_string()) })
    }

    fn matches(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        if self.os != os || self.arch != arch {
            return false;
        }
        match (&self.variant, variant) {
            (Some(want), Some(have)) => want == have,
            // arm64 images usually leave the variant out; v8 is implied.
            (Some(want), None) => self.arch == "arm64" && want == "v8",
            (None, _) => true,
        }
    }
}

impl std::fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{}", v)?;
        }
        Ok(())
    }
}

fn describe(d: &Descriptor) -> Option<String> {
    let p = d.platform().as_ref()?;
    let mut s = format!("{}/{}", p.os(), p.architecture());
    if let Some(v) = p.variant() {
        s.push('/');
        s.push_str(v);
    }
    Some(s)
}

/// Picks the manifest for `want` from an index, or says which platforms there are.
pub fn choose_platform<'a>(index: &'a ImageIndex, want: &PlatformSpec, what: &str) -> Result<&'a Descriptor> {
    let found = index.manifests().iter().find(|d| {
        d.platform()
            .as_ref()
            .map(|p| want.matches(&p.os().to_string(), &p.architecture().to_string(), p.variant().as_deref()))
            .unwrap_or(false)
    });
    if let Some(d) = found {
        return Ok(d);
    }
    let available: Vec<String> = index.manifests().iter().filter_map(describe).collect();
    bail!(
        "{}: no image for platform {}; available: {}",
        what,
        want,
        if available.is_empty() { "none".to_string() } else { available.join(", ") }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_document_that_is_index_and_manifest() {
        let doc = br#"{"schemaVersion":2,"manifests":[],"layers":[],"config":{}}"#;
        assert!(parse(doc, OCI_INDEX, "x").is_err());
    }

    #[test]
    fn refuses_mislabelled_documents() {
        let doc = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert!(parse(doc, OCI_MANIFEST, "x").is_err());
        assert!(parse(doc, OCI_INDEX, "x").is_ok());
    }

    #[test]
    fn refuses_schema_1_whatever_the_content_type() {
        let doc = br#"{"schemaVersion":1,"name":"a","tag":"b","fsLayers":[],"history":[]}"#;
        for ct in ["application/vnd.docker.distribution.manifest.v1+prettyjws", "application/json", ""] {
            let err = parse(doc, ct, "x").err().expect("schema 1 refused").to_string();
            assert!(err.contains("schema 1"), "{}: {}", ct, err);
        }
    }

    #[test]
    fn config_media_type_must_be_an_image_config() {
        let doc = |t: &str| {
            format!(
                r#"{{"schemaVersion":2,"config":{{"mediaType":"{}","size":2,"digest":"sha256:{}"}},"layers":[]}}"#,
                t,
                "0".repeat(64)
            )
        };
        for (t, ok) in [(OCI_CONFIG, true), (DOCKER_CONFIG, true), ("application/vnd.cncf.helm.config.v1+json", false)]
        {
            let Parsed::Manifest(m) = parse(doc(t).as_bytes(), OCI_MANIFEST, "x").unwrap() else { panic!() };
            assert_eq!(check_config_media_type(&m, "x").is_ok(), ok, "{}", t);
        }
    }

    #[test]
    fn platform_strings() {
        assert_eq!(PlatformSpec::parse("linux/arm64/v8").unwrap().variant.as_deref(), Some("v8"));
        assert!(PlatformSpec::parse("linux").is_err());
        assert!(PlatformSpec::parse("linux//").is_err());
    }

    #[test]
    fn lists_available_platforms_when_none_fits() {
        let doc = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
          {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","platform":{"os":"linux","architecture":"arm64","variant":"v8"}}]}"#;
        let Parsed::Index(idx) = parse(doc, OCI_INDEX, "x").unwrap() else { panic!() };
        let err = choose_platform(&idx, &PlatformSpec::parse("linux/amd64").unwrap(), "x").unwrap_err();
        assert!(err.to_string().contains("linux/arm64/v8"), "{}", err);
        assert!(choose_platform(&idx, &PlatformSpec::parse("linux/arm64").unwrap(), "x").is_ok());
    }
}
