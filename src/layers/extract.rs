// PLACEHOLDER until the real extractor lands (helper is writing it).
pub enum Ownership { Keep, Ignore }
pub struct ExtractOptions { pub ownership: Ownership, pub strip_setid: bool }
#[derive(Default, Debug)] pub struct ExtractStats { pub entries: u64, pub bytes: u64, pub unmapped_owners: u64, pub skipped_devices: u64 }
pub fn extract_layer<R: std::io::Read>(_r: R, _d: &std::path::Path, _o: &ExtractOptions) -> anyhow::Result<ExtractStats> { anyhow::bail!("placeholder") }
