use super::{Ctx, Format};
use crate::layers::images::{list, split_name};
use crate::util::{human_ago, human_size, parse_rfc3339};
use anyhow::Result;
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct ImagesArgs {
    #[command(flatten)]
    pub list: super::ListFlags,
}

pub fn run(ctx: &Ctx, args: ImagesArgs) -> Result<i32> {
    let args = args.list;
    let store = ctx.store()?;
    let images = list(&store)?;
    let id = |full: &str| {
        if args.no_trunc {
            full.to_string()
        } else {
            full[7..19].to_string()
        }
    };
    if args.quiet {
        for img in &images {
            println!("{}", id(img.id()));
        }
        return Ok(0);
    }
    if args.format == Format::Json {
        let rows: Vec<_> = images
            .iter()
            .map(|img| {
                json!({
                    "Id": img.id(),
                    "Names": img.names,
                    "Digest": img.manifest_digest,
                    "Created": img.config.created(),
                    "Size": img.size(&store),
                    "Architecture": img.config.architecture().to_string(),
                    "Os": img.config.os().to_string(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    let mut rows = vec![["REPOSITORY".to_string(), "TAG".into(), "IMAGE ID".into(), "CREATED".into(), "SIZE".into()]];
    for img in &images {
        let created = img.config.created().as_deref().and_then(parse_rfc3339).map(human_ago).unwrap_or_default();
        let size = human_size(img.size(&store));
        let names = if img.names.is_empty() { vec!["<none>:<none>".to_string()] } else { img.names.clone() };
        for n in names {
            let (repo, tag) = if n == "<none>:<none>" { ("<none>".into(), "<none>".into()) } else { split_name(&n) };
            rows.push([repo, tag, id(img.id()), created.clone(), size.clone()]);
        }
    }
    print_table(&rows);
    Ok(0)
}

/// Prints rows with columns padded like Docker's tables (three spaces apart).
pub fn print_table<const N: usize>(rows: &[[String; N]]) {
    let mut widths = [0usize; N];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == N {
                line.push_str(c);
            } else {
                line.push_str(&format!("{:<w$}   ", c, w = widths[i]));
            }
        }
        println!("{}", line.trim_end());
    }
}
